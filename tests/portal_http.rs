//! The portal over real HTTP on 127.0.0.1, each scenario against a SQLite file and against
//! PostgreSQL.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::{Backend, TestPortal};

on_both_backends!(
    accounts_form_a_tree_with_etags_and_pagination,
    account_updates_need_a_current_if_match,
    account_delete_refuses_non_empty_accounts_unless_cascading,
    requests_without_a_valid_key_are_refused,
    a_key_never_reaches_accounts_outside_its_grants,
    escalation_and_unassignable_roles_are_refused_and_nothing_is_written,
    the_last_owner_of_a_partner_cannot_be_removed,
    revoking_by_source_removes_only_that_sources_grants,
    access_is_explained_with_its_path,
    invitation_by_link_shows_the_link_once,
    invitation_expires_exactly_at_expires_at,
    pending_invitation_roles_change_with_if_match_and_revoke_is_idempotent,
    idempotency_key_replays_the_first_response,
    bad_input_is_a_problem_and_writes_nothing,
    concurrent_creates_all_succeed,
    concurrent_writes_commit_whole_and_refused_ones_leave_nothing,
    a_refusal_is_answered_once_what_it_ran_into_can_be_read,
    one_create_sent_eight_times_at_once_with_one_key_makes_one_account,
    the_platform_cannot_revoke_its_last_key_and_a_server_can_recover_it,
    every_refusal_is_a_problem_document_and_authentication_comes_first,
    the_document_declares_exactly_the_query_parameters_each_handler_takes,
    every_body_constraint_the_document_states_is_enforced,
);

/// A partner with an owner "olivia", a client with a sub-contract and one without.
struct World {
    portal: TestPortal,
    partner: String,
    client: String,
    sub_client: String,
    owner_key: String,
}

async fn world(backend: Backend) -> World {
    let portal = TestPortal::start(backend).await;
    let platform = portal.platform();
    let partner = platform
        .account(json!({ "type": "Partner", "displayName": "Northwind Partner", "externalId": "northwind" }))
        .await;
    let client = platform
        .account(
            json!({ "type": "Client", "parentId": partner, "displayName": "Contoso",
                         "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47" }),
        )
        .await;
    let sub_client = platform
        .account(json!({ "type": "Client", "parentId": partner, "displayName": "Fabrikam", "subContract": true }))
        .await;
    let (_, owner_key) = platform
        .admin_with_key(&partner, "olivia@northwind.example", &["AccountOwner"])
        .await;
    World {
        portal,
        partner,
        client,
        sub_client,
        owner_key,
    }
}

async fn accounts_form_a_tree_with_etags_and_pagination(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let reply = platform
        .get(&format!("/v1/accounts/{}", w.client))
        .await
        .expect(200);
    assert_eq!(reply.body["parentId"], w.partner.as_str());
    assert_eq!(
        reply.body["tenantId"],
        "72f988bf-86f1-41af-91ab-2d7cd011db47"
    );
    assert_eq!(reply.header("etag"), Some("\"1\""));

    for n in 0..5 {
        platform
            .account(json!({ "type": "Client", "parentId": w.sub_client, "displayName": format!("Sub {n}") }))
            .await;
    }
    let mut seen = Vec::new();
    let mut path = format!("/v1/accounts?parentId={}&limit=2", w.sub_client);
    loop {
        let page = platform.get(&path).await.expect(200);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|a| a["displayName"].as_str().unwrap().to_owned()),
        );
        match page.body["nextCursor"].as_str() {
            Some(cursor) => {
                path = format!(
                    "/v1/accounts?parentId={}&limit=2&cursor={cursor}",
                    w.sub_client
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, ["Sub 0", "Sub 1", "Sub 2", "Sub 3", "Sub 4"]);

    let found = platform
        .get("/v1/accounts?externalId=northwind")
        .await
        .expect(200);
    assert_eq!(found.body["items"][0]["id"], w.partner.as_str());
    let none = platform
        .get("/v1/accounts?externalId=nobody")
        .await
        .expect(200);
    assert_eq!(none.body["items"], json!([]));

    platform
        .post(
            "/v1/accounts",
            json!({ "type": "Partner", "displayName": "Dup", "externalId": "northwind" }),
        )
        .await
        .expect_problem(409, "external-id-conflict");
    platform
        .post(
            "/v1/accounts",
            json!({ "type": "Partner", "parentId": w.client, "displayName": "Reseller" }),
        )
        .await
        .expect_problem(422, "account-tree");
    platform
        .post(
            "/v1/accounts",
            json!({ "type": "Client", "parentId": "no-such-account", "displayName": "X" }),
        )
        .await
        .expect_problem(404, "not-found");
    let metrics = w
        .portal
        .anonymous()
        .client
        .get(format!("{}/metrics", w.portal.base))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(
            r#"portal_http_requests_total{method="POST",route="/v1/accounts",status="201"} 8"#
        ),
        "{text}"
    );
    assert!(
        text.contains("portal_http_request_duration_seconds_bucket"),
        "{text}"
    );
    w.portal.stop().await;
}

async fn account_updates_need_a_current_if_match(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let path = format!("/v1/accounts/{}", w.client);
    platform
        .patch(&path, json!({ "displayName": "Contoso Ltd" }), None)
        .await
        .expect_problem(428, "precondition-required");
    platform
        .patch(
            &path,
            json!({ "displayName": "Contoso Ltd" }),
            Some("\"7\""),
        )
        .await
        .expect_problem(412, "precondition-failed");
    let updated = platform
        .patch(
            &path,
            json!({ "displayName": "Contoso Ltd", "tenantId": null }),
            Some("\"1\""),
        )
        .await
        .expect(200);
    assert_eq!(updated.body["displayName"], "Contoso Ltd");
    assert_eq!(updated.body["tenantId"], json!(null));
    assert_eq!(updated.header("etag"), Some("\"2\""));
    // The old ETag is stale now.
    platform
        .patch(&path, json!({ "displayName": "Again" }), Some("\"1\""))
        .await
        .expect_problem(412, "precondition-failed");
    // `*` matches whatever version is current (RFC 9110), and a list matches any of its tags.
    let any = platform
        .patch(&path, json!({ "displayName": "Any" }), Some("*"))
        .await
        .expect(200);
    assert_eq!(any.header("etag"), Some("\"3\""));
    platform
        .patch(
            &path,
            json!({ "displayName": "Listed" }),
            Some("\"1\", W/\"3\""),
        )
        .await
        .expect(200);
    // A client's own owner cannot give it a sub-contract: that is the partner's decision.
    let (_, client_owner) = platform
        .admin_with_key(&w.client, "carl@contoso.example", &["AccountOwner"])
        .await;
    w.portal
        .api(&client_owner)
        .patch(&path, json!({ "subContract": true }), Some("\"4\""))
        .await
        .expect_problem(403, "forbidden");
    w.portal.stop().await;
}

async fn account_delete_refuses_non_empty_accounts_unless_cascading(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let grandchild = platform
        .account(json!({ "type": "Client", "parentId": w.sub_client, "displayName": "Leaf" }))
        .await;
    platform
        .delete(&format!("/v1/accounts/{}", w.sub_client))
        .await
        .expect_problem(409, "account-not-empty");
    platform
        .delete(&format!("/v1/accounts/{}?cascade=true", w.sub_client))
        .await
        .expect(204);
    platform
        .get(&format!("/v1/accounts/{grandchild}"))
        .await
        .expect_problem(404, "not-found");
    platform
        .delete(&format!("/v1/accounts/{}", w.client))
        .await
        .expect(204);
    w.portal.stop().await;
}

async fn requests_without_a_valid_key_are_refused(backend: Backend) {
    let w = world(backend).await;
    w.portal
        .anonymous()
        .get("/v1/accounts")
        .await
        .expect_problem(401, "unauthenticated");
    w.portal
        .api("pk_nothing")
        .get("/v1/accounts")
        .await
        .expect_problem(401, "unauthenticated");
    let forged = format!("{}x", &w.owner_key[..w.owner_key.len() - 1]);
    w.portal
        .api(&forged)
        .get("/v1/accounts")
        .await
        .expect_problem(401, "unauthenticated");
    // A valid key says whom it acts as; revoked, it stops working.
    let owner = w.portal.api(&w.owner_key);
    let me = owner.get("/v1/whoami").await.expect(200);
    assert_eq!(me.body["platform"], false, "{:#}", me.body);
    let platform_self = w.portal.platform().get("/v1/whoami").await.expect(200);
    assert_eq!(platform_self.body["platform"], true);
    assert_ne!(me.body["id"], platform_self.body["id"]);
    let keys = owner.get("/v1/api-keys").await.expect(200);
    let id = keys.body["items"][0]["id"].as_str().unwrap().to_owned();
    assert!(
        keys.body["items"][0].get("key").is_none(),
        "keys are never listed"
    );
    owner
        .delete(&format!("/v1/api-keys/{id}"))
        .await
        .expect(204);
    owner
        .get("/v1/accounts")
        .await
        .expect_problem(401, "unauthenticated");
    w.portal.stop().await;
}

async fn a_key_never_reaches_accounts_outside_its_grants(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let (_, contoso_key) = platform
        .admin_with_key(&w.client, "carl@contoso.example", &["AccountOwner"])
        .await;
    let contoso = w.portal.api(&contoso_key);
    contoso
        .get(&format!("/v1/accounts/{}", w.client))
        .await
        .expect(200);
    // The sibling client and the partner are invisible: 404, not 403.
    contoso
        .get(&format!("/v1/accounts/{}", w.sub_client))
        .await
        .expect_problem(404, "not-found");
    contoso
        .get(&format!("/v1/accounts/{}", w.partner))
        .await
        .expect_problem(404, "not-found");
    contoso
        .get(&format!("/v1/accounts/{}/invitations", w.sub_client))
        .await
        .expect_problem(404, "not-found");
    contoso
        .post(
            &format!("/v1/accounts/{}/invitations", w.sub_client),
            json!({ "email": "x@fabrikam.example", "firstName": "X", "lastName": "Y" }),
        )
        .await
        .expect_problem(404, "not-found");
    let listed = contoso.get("/v1/accounts").await.expect(200);
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [w.client.as_str()]);
    // Only the platform creates top-level accounts.
    contoso
        .post(
            "/v1/accounts",
            json!({ "type": "Partner", "displayName": "Mine" }),
        )
        .await
        .expect_problem(403, "forbidden");
    // The partner owner reaches both clients by inheritance.
    let owner = w.portal.api(&w.owner_key);
    owner
        .get(&format!("/v1/accounts/{}", w.sub_client))
        .await
        .expect(200);
    w.portal.stop().await;
}

async fn escalation_and_unassignable_roles_are_refused_and_nothing_is_written(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let (_, helper_key) = platform
        .admin_with_key(&w.client, "sam@contoso.example", &["ServiceContributor"])
        .await;
    let helper = w.portal.api(&helper_key);
    let invitations = format!("/v1/accounts/{}/invitations", w.client);
    let refused = helper
        .post(
            &invitations,
            json!({ "email": "eve@contoso.example", "firstName": "Eve", "lastName": "Smith" }),
        )
        .await
        .expect_problem(403, "escalation-denied");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("AccountOwner"),
        "{}",
        refused.body
    );
    // A role it holds is fine.
    helper
        .post(
            &invitations,
            json!({ "email": "vic@contoso.example", "firstName": "Vic", "lastName": "Jones", "roles": ["ServiceViewer"] }),
        )
        .await
        .expect(201);
    // A subscription role on a client without a sub-contract does not function there.
    let owner = w.portal.api(&w.owner_key);
    owner
        .post(
            &format!("/v1/accounts/{}/invitations", w.client),
            json!({ "email": "bill@contoso.example", "firstName": "Bill", "lastName": "Ray", "roles": ["SubscriptionViewer"] }),
        )
        .await
        .expect_problem(422, "role-not-assignable");
    // And an owner without SubscriptionContributor cannot hand it out where it would function.
    owner
        .post(
            &format!("/v1/accounts/{}/invitations", w.sub_client),
            json!({ "email": "bill@fabrikam.example", "firstName": "Bill", "lastName": "Ray", "roles": ["SubscriptionContributor"] }),
        )
        .await
        .expect_problem(403, "escalation-denied");
    let listed = platform.get(&invitations).await.expect(200);
    let emails: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        ["vic@contoso.example"],
        "refused requests wrote nothing"
    );
    w.portal.stop().await;
}

async fn the_last_owner_of_a_partner_cannot_be_removed(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let admins = platform
        .get(&format!("/v1/accounts/{}/admins", w.partner))
        .await
        .expect(200);
    let olivia = admins.body["items"][0]["id"].as_str().unwrap().to_owned();
    platform
        .delete(&format!("/v1/accounts/{}/admins/{olivia}", w.partner))
        .await
        .expect_problem(409, "last-owner");
    let (peter, _) = platform
        .admin_with_key(&w.partner, "peter@northwind.example", &["AccountOwner"])
        .await;
    platform
        .delete(&format!("/v1/accounts/{}/admins/{olivia}", w.partner))
        .await
        .expect(204);
    platform
        .delete(&format!("/v1/accounts/{}/admins/{peter}", w.partner))
        .await
        .expect_problem(409, "last-owner");
    w.portal.stop().await;
}

async fn revoking_by_source_removes_only_that_sources_grants(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let (dana, _) = platform
        .admin_with_key(&w.client, "dana@contoso.example", &["ServiceViewer"])
        .await;
    let grants = format!("/v1/accounts/{}/grants", w.client);
    let owner = w.portal.api(&w.owner_key);
    owner
        .post(&grants, json!({ "adminId": dana, "roles": ["ServiceContributor"], "source": "RoleBinding/team-a/svc/uid-1" }))
        .await
        .expect(201);
    owner
        .post(&grants, json!({ "email": "DANA@contoso.example", "roles": ["AccountOwner"], "source": "RoleBinding/team-b/own/uid-2" }))
        .await
        .expect(201);
    // Granting again is a no-op, not a duplicate.
    owner
        .post(&grants, json!({ "adminId": dana, "roles": ["ServiceContributor"], "source": "RoleBinding/team-a/svc/uid-1" }))
        .await
        .expect(201);
    // An owner cannot hand out a role it does not hold (SyncContributor is not implied by AccountOwner).
    let refused = owner
        .post(
            &grants,
            json!({ "adminId": dana, "roles": ["SyncContributor"] }),
        )
        .await
        .expect_problem(403, "escalation-denied");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("you may only grant roles you hold yourself"),
        "{}",
        refused.body
    );
    let revoked = owner
        .send(
            Method::DELETE,
            &format!("{grants}?source=RoleBinding/team-a/svc/uid-1"),
            None,
            &[],
        )
        .await
        .expect(200);
    assert_eq!(revoked.body["revoked"], 1);
    let left = owner
        .get(&format!("{grants}?adminId={dana}"))
        .await
        .expect(200);
    let mut roles: Vec<&str> = left.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["role"].as_str().unwrap())
        .collect();
    roles.sort_unstable();
    assert_eq!(roles, ["AccountOwner", "ServiceViewer"]);
    owner
        .post(
            &grants,
            json!({ "email": "nobody@contoso.example", "roles": ["ServiceViewer"] }),
        )
        .await
        .expect_problem(404, "subject-not-found");
    w.portal.stop().await;
}

async fn access_is_explained_with_its_path(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let (_, _) = platform
        .admin_with_key(
            &w.partner,
            "sue@northwind.example",
            &["SubscriptionContributor"],
        )
        .await;
    let access = platform
        .get(&format!(
            "/v1/access?subject=sue@northwind.example&account={}",
            w.client
        ))
        .await
        .expect(200);
    let path = &access.body["permissions"]["api_keys.write"][0];
    assert_eq!(path["grantedRole"], "SubscriptionContributor");
    assert_eq!(path["inherited"], true);
    assert_eq!(
        path["implicationChain"],
        json!(["SubscriptionContributor", "AccountOwner"])
    );
    assert!(
        access.body["permissions"]
            .get("subscriptions.write")
            .is_none(),
        "no financial changes on a plain client"
    );
    let roles = w.portal.anonymous().get("/v1/roles").await.expect(200);
    assert_eq!(roles.body.as_array().unwrap().len(), 7);
    w.portal.stop().await;
}

async fn invitation_by_link_shows_the_link_once(backend: Backend) {
    let w = world(backend).await;
    let owner = w.portal.api(&w.owner_key);
    let created = owner
        .post(
            &format!("/v1/accounts/{}/invitations", w.client),
            json!({ "email": "Ann@Contoso.EXAMPLE", "firstName": "Ann", "lastName": "Lee", "delivery": "Link",
                    "expiresAfter": "4h", "externalRef": "AdminInvitation/team-a/ann/uid-9" }),
        )
        .await
        .expect(201);
    let link = created.body["link"].as_str().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("{}/invitations/accept#token=", w.portal.base)),
        "the link is the portal's accept page with a token (not printed: it is a credential)"
    );
    assert!(link.len() > 60, "the token carries at least 256 bits");
    assert_eq!(created.body["email"], "Ann@contoso.example");
    assert_eq!(created.body["roles"], json!(["AccountOwner"]));
    assert_eq!(created.body["state"], "Pending");
    let id = created.body["id"].as_str().unwrap().to_owned();
    let read = owner
        .get(&format!("/v1/invitations/{id}"))
        .await
        .expect(200);
    assert!(
        read.body.get("link").is_none(),
        "the link is never shown again"
    );
    let resent = owner
        .post(&format!("/v1/invitations/{id}/resend"), json!({}))
        .await
        .expect(200);
    let new_link = resent.body["link"].as_str().unwrap();
    assert_ne!(new_link, link, "resend issues a new token");
    assert_eq!(resent.body["sends"], 2);
    assert_eq!(
        resent.body["expiresAt"], created.body["expiresAt"],
        "resend does not move the expiry"
    );
    let by_ref = owner
        .get(&format!(
            "/v1/accounts/{}/invitations?externalRef=AdminInvitation/team-a/ann/uid-9",
            w.client
        ))
        .await
        .expect(200);
    assert_eq!(by_ref.body["items"][0]["id"], id.as_str());
    owner
        .post(
            &format!("/v1/accounts/{}/invitations", w.client),
            json!({ "email": "ann2@contoso.example", "firstName": "Ann", "lastName": "Lee",
                    "externalRef": "AdminInvitation/team-a/ann/uid-9" }),
        )
        .await
        .expect_problem(409, "external-ref-conflict");
    w.portal.stop().await;
}

async fn invitation_expires_exactly_at_expires_at(backend: Backend) {
    let w = world(backend).await;
    let owner = w.portal.api(&w.owner_key);
    let created = owner
        .post(
            &format!("/v1/accounts/{}/invitations", w.client),
            json!({ "email": "bob@contoso.example", "firstName": "Bob", "lastName": "Ray", "expiresAfter": "1h" }),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/invitations/{id}");
    w.portal
        .clock
        .advance(Duration::from_secs(3600) - Duration::from_millis(1));
    assert_eq!(owner.get(&path).await.expect(200).body["state"], "Pending");
    w.portal.clock.advance(Duration::from_millis(1));
    assert_eq!(
        owner.get(&path).await.expect(200).body["state"],
        "Expired",
        "expired at expiresAt, on every read"
    );
    // The default list shows pending and expired invitations; accepted ones would leave it.
    let listed = owner
        .get(&format!(
            "/v1/accounts/{}/invitations?state=Expired",
            w.client
        ))
        .await
        .expect(200);
    assert_eq!(listed.body["items"][0]["id"], id.as_str());
    let pending = owner
        .get(&format!(
            "/v1/accounts/{}/invitations?state=Pending",
            w.client
        ))
        .await
        .expect(200);
    assert_eq!(pending.body["items"], json!([]));
    owner
        .post(&format!("{path}/resend"), json!({}))
        .await
        .expect_problem(410, "invitation-expired");
    w.portal.stop().await;
}

async fn pending_invitation_roles_change_with_if_match_and_revoke_is_idempotent(backend: Backend) {
    let w = world(backend).await;
    let owner = w.portal.api(&w.owner_key);
    let created = owner
        .post(
            &format!("/v1/accounts/{}/invitations", w.client),
            json!({ "email": "cy@contoso.example", "firstName": "Cy", "lastName": "Ng", "roles": ["ServiceViewer"] }),
        )
        .await
        .expect(201);
    let path = format!("/v1/invitations/{}", created.body["id"].as_str().unwrap());
    let updated = owner
        .patch(
            &path,
            json!({ "roles": ["ServiceContributor", "ServiceViewer"] }),
            Some("\"1\""),
        )
        .await
        .expect(200);
    assert_eq!(
        updated.body["roles"],
        json!(["ServiceContributor", "ServiceViewer"])
    );
    owner
        .patch(
            &path,
            json!({ "roles": ["BrandContributor"] }),
            Some("\"2\""),
        )
        .await
        .expect_problem(403, "escalation-denied");
    owner
        .patch(&path, json!({ "roles": ["NotARole"] }), Some("\"2\""))
        .await
        .expect_problem(422, "unknown-role");
    owner.delete(&path).await.expect(204);
    owner.delete(&path).await.expect(204);
    assert_eq!(owner.get(&path).await.expect(200).body["state"], "Revoked");
    owner
        .patch(&path, json!({ "roles": ["ServiceViewer"] }), Some("\"3\""))
        .await
        .expect_problem(409, "invitation-not-pending");
    w.portal.stop().await;
}

async fn idempotency_key_replays_the_first_response(backend: Backend) {
    let w = world(backend).await;
    let owner = w.portal.api(&w.owner_key);
    let path = format!("/v1/accounts/{}/invitations", w.client);
    let body = json!({ "email": "dee@contoso.example", "firstName": "Dee", "lastName": "Ox", "delivery": "Link" });
    let first = owner
        .send(
            Method::POST,
            &path,
            Some(body.clone()),
            &[("idempotency-key", "uid-1/0")],
        )
        .await
        .expect(201);
    let again = owner
        .send(
            Method::POST,
            &path,
            Some(body.clone()),
            &[("idempotency-key", "uid-1/0")],
        )
        .await
        .expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["id"], first.body["id"]);
    assert!(first.body["link"].is_string());
    assert!(
        again.body.get("link").is_none(),
        "a replay never repeats the link"
    );
    assert!(again.body["linkRedacted"].is_string());
    let other = json!({ "email": "other@contoso.example", "firstName": "O", "lastName": "P" });
    owner
        .send(
            Method::POST,
            &path,
            Some(other),
            &[("idempotency-key", "uid-1/0")],
        )
        .await
        .expect_problem(422, "idempotency-key-reused");
    let listed = owner.get(&path).await.expect(200);
    assert_eq!(
        listed.body["items"].as_array().unwrap().len(),
        1,
        "one invitation, not two"
    );
    // An API key is a secret too: the stored response keeps no copy of it.
    let platform = w.portal.platform();
    let admins = owner
        .get(&format!("/v1/accounts/{}/admins", w.partner))
        .await
        .expect(200);
    let admin_id = admins.body["items"][0]["id"].as_str().unwrap().to_owned();
    let key_request = json!({ "name": "ci", "adminId": admin_id });
    let created = platform
        .send(
            Method::POST,
            "/v1/api-keys",
            Some(key_request.clone()),
            &[("idempotency-key", "key-1")],
        )
        .await
        .expect(201);
    assert!(created.body["key"].is_string());
    let replayed = platform
        .send(
            Method::POST,
            "/v1/api-keys",
            Some(key_request),
            &[("idempotency-key", "key-1")],
        )
        .await
        .expect(201);
    assert_eq!(replayed.body["id"], created.body["id"]);
    assert!(
        replayed.body.get("key").is_none(),
        "a replay never repeats the key"
    );
    assert!(replayed.body["keyRedacted"].is_string());
    w.portal.stop().await;
}

async fn bad_input_is_a_problem_and_writes_nothing(backend: Backend) {
    let w = world(backend).await;
    let owner = w.portal.api(&w.owner_key);
    let path = format!("/v1/accounts/{}/invitations", w.client);
    let cases: Vec<(serde_json::Value, u16, &str, &str)> = vec![
        (
            json!({ "email": "not-an-email", "firstName": "A", "lastName": "B" }),
            422,
            "validation-failed",
            "/email",
        ),
        (
            json!({ "email": "a@b.example", "firstName": " ", "lastName": "B" }),
            422,
            "validation-failed",
            "/firstName",
        ),
        (
            json!({ "email": "a@b.example", "firstName": "A", "lastName": "B", "roles": ["Owner"] }),
            422,
            "unknown-role",
            "/roles/0",
        ),
        (
            json!({ "email": "a@b.example", "firstName": "A", "lastName": "B", "roles": [] }),
            422,
            "validation-failed",
            "/roles",
        ),
        (
            json!({ "email": "a@b.example", "firstName": "A", "lastName": "B", "expiresAfter": "97h" }),
            422,
            "validation-failed",
            "/expiresAfter",
        ),
        (
            json!({ "email": "a@b.example", "firstName": "A", "lastName": "B", "expiresAfter": "4d" }),
            422,
            "validation-failed",
            "/expiresAfter",
        ),
        (
            json!({ "email": "a@b.example", "firstName": "A", "lastName": "B", "surprise": true }),
            400,
            "malformed-request",
            "",
        ),
        (
            json!({ "email": "a@b.example", "firstName": "A", "lastName": "B", "delivery": "Fax" }),
            400,
            "malformed-request",
            "",
        ),
        (json!(["not", "an", "object"]), 400, "malformed-request", ""),
    ];
    for (body, status, slug, field) in cases {
        let reply = owner
            .post(&path, body.clone())
            .await
            .expect_problem(status, slug);
        if !field.is_empty() {
            assert_eq!(reply.body["field"], field, "{body}");
        }
        assert!(!reply.body["detail"].as_str().unwrap().is_empty());
    }
    let raw = owner
        .client
        .post(format!("{}{path}", w.portal.base))
        .bearer_auth(&w.owner_key)
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let text = owner
        .client
        .post(format!("{}{path}", w.portal.base))
        .bearer_auth(&w.owner_key)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status().as_u16(), 415);
    let huge = owner
        .client
        .post(format!("{}{path}", w.portal.base))
        .bearer_auth(&w.owner_key)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"email\": \"{}\"}}",
            "a".repeat(2 * 1024 * 1024)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status().as_u16(), 413);
    assert_eq!(
        huge.headers()["connection"],
        "close",
        "the unread body ends the connection"
    );
    owner
        .get(&format!("{path}?limit=501"))
        .await
        .expect_problem(422, "validation-failed");
    owner
        .get(&format!("{path}?limit=0"))
        .await
        .expect_problem(422, "validation-failed");
    owner
        .get(&format!("{path}?cursor=%%%"))
        .await
        .expect_problem(422, "validation-failed");
    owner
        .get("/v1/nothing-here")
        .await
        .expect_problem(404, "not-found");
    let all = w
        .portal
        .platform()
        .get(&format!("{path}?state=Pending,Expired,Accepted,Revoked"))
        .await
        .expect(200);
    assert_eq!(
        all.body["items"],
        json!([]),
        "no refused request wrote anything"
    );
    w.portal.stop().await;
}

async fn concurrent_creates_all_succeed(backend: Backend) {
    let w = world(backend).await;
    let owner = w.portal.api(&w.owner_key);
    let path = format!("/v1/accounts/{}/invitations", w.client);
    let mut tasks = Vec::new();
    for n in 0..16 {
        let owner = owner.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for m in 0..5 {
                let reply = owner
                    .send(
                        Method::POST,
                        &path,
                        Some(json!({ "email": format!("user{n}-{m}@contoso.example"), "firstName": "U", "lastName": "V" })),
                        &[("idempotency-key", &format!("key-{n}-{m}"))],
                    )
                    .await;
                statuses.push(reply.status.as_u16());
            }
            statuses
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), [201; 5]);
    }
    assert_eq!(owner.all_pages(&path).await.len(), 80);
    w.portal.stop().await;
}

/// Thirty creates at once (on SQLite they share commits): the ones refused for a taken
/// externalRef write nothing (no invitation, email or event, no gap in the feed's numbering);
/// four with one Idempotency-Key create one invitation and all answer with it.
async fn concurrent_writes_commit_whole_and_refused_ones_leave_nothing(backend: Backend) {
    let w = world(backend).await;
    let owner = w.portal.api(&w.owner_key);
    let platform = w.portal.platform();
    let path = format!("/v1/accounts/{}/invitations", w.client);
    let body = |n: usize, external_ref: &str| {
        json!({ "email": format!("c{n}@contoso.example"), "firstName": "C", "lastName": "W",
                "externalRef": external_ref })
    };
    owner
        .post(&path, body(0, "AdminInvitation/team/taken"))
        .await
        .expect(201);
    let events_before = platform.all_events().await.len();
    let outbox_before = platform.all_pages("/v1/outbox").await.len();

    let shares_a_key = |n: usize| matches!(n, 1 | 2 | 4 | 5);
    let mut tasks = Vec::new();
    for n in 1..=30usize {
        let owner = owner.clone();
        let path = path.clone();
        let (request, key) = if n % 3 == 0 {
            (body(n, "AdminInvitation/team/taken"), format!("key-{n}"))
        } else if shares_a_key(n) {
            (
                body(1, "AdminInvitation/team/shared"),
                "shared-key".to_owned(),
            )
        } else {
            (
                body(n, &format!("AdminInvitation/team/n{n}")),
                format!("key-{n}"),
            )
        };
        tasks.push(tokio::spawn(async move {
            let reply = owner
                .send(
                    Method::POST,
                    &path,
                    Some(request),
                    &[("idempotency-key", &key)],
                )
                .await;
            (n, reply)
        }));
    }
    let mut created = BTreeSet::new();
    let mut shared = BTreeSet::new();
    for task in tasks {
        let (n, reply) = task.await.unwrap();
        if n % 3 == 0 {
            reply.expect_problem(409, "external-ref-conflict");
        } else {
            let id = reply.expect(201).body["id"].as_str().unwrap().to_owned();
            if shares_a_key(n) {
                shared.insert(id.clone());
            }
            created.insert(id);
        }
    }
    assert_eq!(
        shared.len(),
        1,
        "one invitation for the shared key: {shared:?}"
    );
    assert_eq!(created.len(), 17);

    let listed: BTreeSet<String> = owner
        .all_pages(&path)
        .await
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed.len(), 18, "the first invitation and the 17 created");
    assert!(created.is_subset(&listed));
    let events = platform.all_events().await;
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no numbers taken by refused writes: {seqs:?}"
    );
    let new: BTreeSet<String> = events[events_before..]
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "invitation.created");
            e["objectId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(new, created, "one event per created invitation");
    assert_eq!(
        platform.all_pages("/v1/outbox").await.len() - outbox_before,
        17,
        "one email per created invitation"
    );
    let metrics = reqwest::get(format!("{}/metrics", w.portal.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counter = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.parse::<u64>().ok())
    };
    match backend {
        Backend::Sqlite => {
            let writes = counter("portal_sqlite_writes_total").expect("the writer's counters");
            let commits = counter("portal_sqlite_commits_total").expect("the writer's counters");
            // The world's set-up, the first invitation and the 17 created here, at least.
            assert!(writes >= 18, "{writes} writes");
            assert!(
                commits >= 1 && commits <= writes,
                "{commits} commits for {writes} writes"
            );
        }
        Backend::Postgres => assert_eq!(counter("portal_sqlite_writes_total"), None),
    }
    w.portal.stop().await;
}

/// Eight creates of one externalId at once: one wins, and each of the others, refused with
/// `external-id-conflict`, can at once find the account it ran into (on SQLite the winner may
/// still be waiting to commit with its group when the others are refused).
async fn a_refusal_is_answered_once_what_it_ran_into_can_be_read(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let mut tasks = Vec::new();
    for n in 0..8 {
        let platform = platform.clone();
        let partner = w.partner.clone();
        tasks.push(tokio::spawn(async move {
            let reply = platform
                .post(
                    "/v1/accounts",
                    json!({ "type": "Client", "parentId": partner, "displayName": format!("Tailspin {n}"),
                            "externalId": "tailspin" }),
                )
                .await;
            if reply.status.as_u16() == 201 {
                return (reply, None);
            }
            let found = platform.get("/v1/accounts?externalId=tailspin").await;
            (reply, Some(found))
        }));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            (_, None) => winners += 1,
            (refused, Some(found)) => {
                refused.expect_problem(409, "external-id-conflict");
                let found = found.expect(200);
                assert_eq!(
                    found.body["items"].as_array().unwrap().len(),
                    1,
                    "the account a refusal names is readable when the refusal arrives"
                );
            }
        }
    }
    assert_eq!(winners, 1);
    w.portal.stop().await;
}

/// The same create sent eight times at once with one Idempotency-Key: all get the one account,
/// none is told its externalId is taken (by its own twin).
async fn one_create_sent_eight_times_at_once_with_one_key_makes_one_account(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let platform = platform.clone();
        let partner = w.partner.clone();
        tasks.push(tokio::spawn(async move {
            platform
                .send(
                    Method::POST,
                    "/v1/accounts",
                    Some(
                        json!({ "type": "Client", "parentId": partner, "displayName": "Wingtip",
                                 "externalId": "wingtip" }),
                    ),
                    &[("idempotency-key", "Account/wingtip/uid-7")],
                )
                .await
        }));
    }
    let mut ids = BTreeSet::new();
    for task in tasks {
        let reply = task.await.unwrap().expect(201);
        ids.insert(reply.body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "one account: {ids:?}");
    w.portal.stop().await;
}

async fn the_platform_cannot_revoke_its_last_key_and_a_server_can_recover_it(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let keys = platform.get("/v1/api-keys").await.expect(200);
    assert_eq!(keys.body["items"].as_array().unwrap().len(), 1);
    let bootstrap = keys.body["items"][0]["id"].as_str().unwrap().to_owned();
    platform
        .delete(&format!("/v1/api-keys/{bootstrap}"))
        .await
        .expect_problem(409, "last-platform-key");
    platform.get("/v1/accounts").await.expect(200);
    // Rotation: a second key first, then the first one can go.
    let second = platform
        .post("/v1/api-keys", json!({ "name": "rotation" }))
        .await
        .expect(201);
    let second_key = second.body["key"].as_str().unwrap().to_owned();
    platform
        .delete(&format!("/v1/api-keys/{bootstrap}"))
        .await
        .expect(204);
    let rotated = w.portal.api(&second_key);
    rotated.get("/v1/accounts").await.expect(200);
    let second_id = second.body["id"].as_str().unwrap().to_owned();
    rotated
        .delete(&format!("/v1/api-keys/{second_id}"))
        .await
        .expect_problem(409, "last-platform-key");
    // Recovery on the server, against its database: a new key that works.
    let recovered = portal_operator::portal::reset_platform_key(&w.portal.database_url)
        .await
        .unwrap();
    w.portal
        .api(&recovered)
        .get("/v1/accounts")
        .await
        .expect(200);
    rotated.get("/v1/accounts").await.expect(200);
    w.portal.stop().await;
}

async fn every_refusal_is_a_problem_document_and_authentication_comes_first(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    // A missing or malformed query parameter, or an unknown one, names it.
    let missing = platform
        .get(&format!("/v1/access?account={}", w.client))
        .await
        .expect_problem(400, "malformed-request");
    assert!(
        missing.body["detail"].as_str().unwrap().contains("subject"),
        "{:#}",
        missing.body
    );
    let unknown = platform
        .get("/v1/accounts?limt=5")
        .await
        .expect_problem(400, "malformed-request");
    assert!(
        unknown.body["detail"].as_str().unwrap().contains("limt"),
        "{:#}",
        unknown.body
    );
    platform
        .delete(&format!("/v1/accounts/{}?cascade=perhaps", w.client))
        .await
        .expect_problem(400, "malformed-request");
    // A method the endpoint does not take: 405, and the document says 405.
    let method = platform
        .send(Method::PUT, "/v1/accounts", Some(json!({})), &[])
        .await
        .expect_problem(405, "method-not-allowed");
    assert_eq!(method.body["status"], 405);
    // Who is asking is settled before anything else about the request.
    w.portal
        .anonymous()
        .send(
            Method::POST,
            "/v1/accounts",
            Some(json!({ "type": "Partner", "displayName": "X" })),
            &[("idempotency-key", "")],
        )
        .await
        .expect_problem(401, "unauthenticated");
    platform
        .send(
            Method::POST,
            "/v1/accounts",
            Some(json!({ "type": "Partner", "displayName": "X" })),
            &[("idempotency-key", "")],
        )
        .await
        .expect_problem(422, "validation-failed");
    w.portal.stop().await;
}

/// The query parameters of every operation, as the OpenAPI document declares them, are what the
/// handler enforces: a parameter it does not declare is refused, and so is a request without
/// one it marks required.
async fn the_document_declares_exactly_the_query_parameters_each_handler_takes(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let document = portal_operator::portal::openapi_document();
    let mut checked = 0;
    let template = regex::Regex::new(r"\{[^}]+\}").unwrap();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let query: Vec<&serde_json::Value> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .collect();
            if query.is_empty() {
                continue;
            }
            let concrete = template.replace_all(path, "x");
            let required: Vec<&str> = query
                .iter()
                .filter(|p| p["required"] == true)
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let send = |names: Vec<&str>, extra: Option<&str>| {
                let mut pairs: Vec<String> = names.iter().map(|n| format!("{n}=x")).collect();
                pairs.extend(extra.map(str::to_owned));
                let url = format!("{concrete}?{}", pairs.join("&"));
                let method = method.clone();
                let platform = platform.clone();
                async move { platform.send(method, &url, None, &[]).await }
            };
            let unknown = send(required.clone(), Some("zzUndeclared=1"))
                .await
                .expect_problem(400, "malformed-request");
            assert!(
                unknown.body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("zzUndeclared"),
                "{method} {path}: {:#}",
                unknown.body
            );
            for missing in &required {
                let others: Vec<&str> = required.iter().copied().filter(|n| n != missing).collect();
                let refused = send(others, None)
                    .await
                    .expect_problem(400, "malformed-request");
                assert!(
                    refused.body["detail"].as_str().unwrap().contains(missing),
                    "{method} {path} without {missing}: {:#}",
                    refused.body
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 9,
        "only {checked} operations take query parameters"
    );
    w.portal.stop().await;
}

/// What the document says of request bodies (lengths, formats, item counts, required fields),
/// the server enforces: for each stated constraint of each create operation, a body that breaks
/// only that one is refused with a problem pointing at the field, and nothing is created.
async fn every_body_constraint_the_document_states_is_enforced(backend: Backend) {
    let w = world(backend).await;
    let platform = w.portal.platform();
    let document = portal_operator::portal::openapi_document();
    let schemas = &document["components"]["schemas"];
    let cases = [
        (
            "/v1/accounts".to_owned(),
            json!({ "type": "Client", "parentId": w.partner, "displayName": "Valid Ltd" }),
        ),
        (
            format!("/v1/accounts/{}/invitations", w.client),
            json!({ "email": "val@contoso.example", "firstName": "Val", "lastName": "Id", "roles": ["ServiceViewer"] }),
        ),
        (
            format!("/v1/accounts/{}/account-managers", w.client),
            json!({ "email": "vam@contoso.example", "firstName": "Val", "lastName": "Id" }),
        ),
        ("/v1/api-keys".to_owned(), json!({ "name": "valid" })),
    ];
    let mut checked = 0;
    let account_path = regex::Regex::new(r"/v1/accounts/[^/]+/").unwrap();
    for (path, valid) in cases {
        let template = account_path.replace(&path, "/v1/accounts/{id}/");
        let reference = document["paths"][template.as_ref()]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{template} documents its body"));
        let schema = &schemas[reference.rsplit('/').next().unwrap()];
        let mut broken: Vec<(String, serde_json::Value)> = Vec::new();
        for required in schema["required"].as_array().into_iter().flatten() {
            let mut body = valid.clone();
            body.as_object_mut()
                .unwrap()
                .remove(required.as_str().unwrap());
            broken.push((format!("without {required}"), body));
        }
        for (field, property) in schema["properties"].as_object().unwrap() {
            let mut with = |what: String, value: serde_json::Value| {
                let mut body = valid.clone();
                body[field] = value;
                broken.push((format!("{field} {what}"), body));
            };
            if let Some(max) = property["maxLength"].as_u64() {
                with(
                    format!("longer than {max}"),
                    json!("a".repeat(max as usize + 1)),
                );
            }
            if property["minLength"].as_u64() == Some(1) {
                with("empty".into(), json!(""));
            }
            if property["format"] == "email" {
                with("not an email".into(), json!("not-an-email"));
            }
            if property["minItems"].as_u64() == Some(1) {
                with("with no items".into(), json!([]));
            }
        }
        for (what, body) in broken {
            let reply = platform.post(&path, body.clone()).await;
            assert!(
                reply.status.is_client_error(),
                "{path} {what}: {} {:#}",
                reply.status,
                reply.body
            );
            assert_eq!(
                reply.header("content-type"),
                Some("application/problem+json"),
                "{path} {what}"
            );
            checked += 1;
        }
        // The valid body itself is accepted: the refusals were the constraints'.
        platform.post(&path, valid).await.expect(201);
    }
    assert!(checked >= 15, "only {checked} constraints checked");
    w.portal.stop().await;
}
