//! Accepting invitations with ID tokens from a real OpenID Connect provider (oauth2-mock-server
//! over HTTP on 127.0.0.1), on SQLite and PostgreSQL.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Api, Backend, OidcProvider, TestPortal};

on_both_backends!(
    accepting_with_the_accounts_tenant_makes_an_admin_with_the_roles,
    wrong_tenant_is_refused_with_the_seeds_remedy_and_recorded,
    identity_provider_refusal_aadsts50105_is_recorded_with_its_remedy,
    expired_revoked_and_replaced_invitations_cannot_be_accepted,
    id_tokens_are_verified_against_the_issuer,
    the_same_person_accepting_twice_is_one_admin,
    accept_attempts_are_rate_limited_per_address,
);

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

struct World {
    portal: TestPortal,
    idp: OidcProvider,
    client: String,
    other_client: String,
    owner: Api,
}

async fn world(backend: Backend) -> World {
    let idp = OidcProvider::start().await;
    let portal = TestPortal::start_with(backend, Some(idp.issuer.clone())).await;
    let platform = portal.platform();
    let partner = platform
        .account(json!({ "type": "Partner", "displayName": "Northwind" }))
        .await;
    let client = platform
        .account(json!({ "type": "Client", "parentId": partner, "displayName": "Contoso", "tenantId": TENANT }))
        .await;
    let other_client = platform
        .account(json!({ "type": "Client", "parentId": partner, "displayName": "Fabrikam" }))
        .await;
    let (_, key) = platform
        .admin_with_key(&partner, "olivia@northwind.example", &["AccountOwner"])
        .await;
    let owner = portal.api(&key);
    World {
        portal,
        idp,
        client,
        other_client,
        owner,
    }
}

/// Invites by link; returns (invitation id, token).
async fn invite(owner: &Api, account: &str, email: &str, roles: &[&str]) -> (String, String) {
    let reply = owner
        .post(
            &format!("/v1/accounts/{account}/invitations"),
            json!({ "email": email, "firstName": "New", "lastName": "Admin", "roles": roles, "delivery": "Link" }),
        )
        .await
        .expect(201);
    let link = reply.body["link"].as_str().unwrap();
    let token = link.split_once("#token=").unwrap().1.to_owned();
    (reply.body["id"].as_str().unwrap().to_owned(), token)
}

async fn accept(portal: &TestPortal, token: &str, id_token: &str) -> support::Reply {
    portal
        .anonymous()
        .post(
            "/v1/invitations/accept",
            json!({ "token": token, "idToken": id_token }),
        )
        .await
}

async fn accepting_with_the_accounts_tenant_makes_an_admin_with_the_roles(backend: Backend) {
    let w = world(backend).await;
    let (id, token) = invite(
        &w.owner,
        &w.client,
        "ann@contoso.example",
        &["ServiceContributor"],
    )
    .await;
    let id_token = w
        .idp
        .id_token(
            json!({ "sub": "ann-oid", "tid": TENANT, "email": "ann@contoso.onmicrosoft.example" }),
        )
        .await;
    let accepted = accept(&w.portal, &token, &id_token).await.expect(200);
    assert_eq!(accepted.body["invitation"]["state"], "Accepted");
    let admin_id = accepted.body["adminId"].as_str().unwrap().to_owned();
    assert_eq!(accepted.body["invitation"]["acceptedBy"], admin_id.as_str());

    let invitation = w
        .owner
        .get(&format!("/v1/invitations/{id}"))
        .await
        .expect(200);
    assert_eq!(invitation.body["state"], "Accepted");
    assert!(invitation.body["acceptedAt"].is_string());
    // Accepted invitations leave the default list.
    let listed = w
        .owner
        .get(&format!("/v1/accounts/{}/invitations", w.client))
        .await
        .expect(200);
    assert_eq!(listed.body["items"], json!([]));
    // The admin is listed with the invitation's email and roles, and has the access they give.
    let admins = w
        .owner
        .get(&format!("/v1/accounts/{}/admins", w.client))
        .await
        .expect(200);
    assert_eq!(admins.body["items"][0]["email"], "ann@contoso.example");
    assert_eq!(
        admins.body["items"][0]["roles"],
        json!(["ServiceContributor"])
    );
    let access = w
        .owner
        .get(&format!(
            "/v1/access?subject=ann@contoso.example&account={}",
            w.client
        ))
        .await
        .expect(200);
    assert!(access.body["permissions"]["admin_invitations.write"].is_array());
    assert!(access.body["permissions"].get("api_keys.write").is_none());
    // The link works once.
    accept(&w.portal, &token, &id_token)
        .await
        .expect_problem(409, "invitation-already-used");
    w.portal.stop().await;
}

async fn wrong_tenant_is_refused_with_the_seeds_remedy_and_recorded(backend: Backend) {
    let w = world(backend).await;
    let (id, token) = invite(
        &w.owner,
        &w.client,
        "bob@contoso.example",
        &["AccountOwner"],
    )
    .await;
    let wrong = w
        .idp
        .id_token(json!({ "sub": "bob-personal", "tid": OTHER_TENANT }))
        .await;
    let refused = accept(&w.portal, &token, &wrong)
        .await
        .expect_problem(403, "wrong-tenant");
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("Sign out of all Microsoft accounts"),
        "{detail}"
    );
    assert!(detail.contains("private browsing window"), "{detail}");
    assert!(
        detail.contains(OTHER_TENANT),
        "names the tenant used: {detail}"
    );
    assert!(
        !detail.contains(TENANT),
        "does not reveal the account's tenant: {detail}"
    );
    let invitation = w
        .owner
        .get(&format!("/v1/invitations/{id}"))
        .await
        .expect(200);
    assert_eq!(
        invitation.body["state"], "Pending",
        "a failed attempt does not use the invitation"
    );
    assert_eq!(invitation.body["lastFailure"]["reason"], "WrongTenant");
    // No tenant claim at all is the wrong tenant too.
    let none = w.idp.id_token(json!({ "sub": "bob-personal" })).await;
    accept(&w.portal, &token, &none)
        .await
        .expect_problem(403, "wrong-tenant");
    // Then the right tenant works.
    let right = w
        .idp
        .id_token(json!({ "sub": "bob-work", "tid": TENANT.to_uppercase() }))
        .await;
    accept(&w.portal, &token, &right).await.expect(200);
    w.portal.stop().await;
}

async fn identity_provider_refusal_aadsts50105_is_recorded_with_its_remedy(backend: Backend) {
    let w = world(backend).await;
    let (id, token) = invite(&w.owner, &w.client, "cy@contoso.example", &["AccountOwner"]).await;
    let refused = w
        .portal
        .anonymous()
        .post(
            "/v1/invitations/accept",
            json!({ "token": token, "idpError": "access_denied: AADSTS50105: The signed in user is not assigned to a role for the application." }),
        )
        .await
        .expect_problem(403, "idp-refused");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("Users and groups")
    );
    let invitation = w
        .owner
        .get(&format!("/v1/invitations/{id}"))
        .await
        .expect(200);
    assert_eq!(
        invitation.body["lastFailure"]["reason"],
        "NotAssignedToApplication"
    );
    assert_eq!(invitation.body["state"], "Pending");
    w.portal.stop().await;
}

async fn expired_revoked_and_replaced_invitations_cannot_be_accepted(backend: Backend) {
    let w = world(backend).await;
    let id_token = w.idp.id_token(json!({ "sub": "dee", "tid": TENANT })).await;
    let (_, expiring) = invite(
        &w.owner,
        &w.client,
        "dee@contoso.example",
        &["AccountOwner"],
    )
    .await;
    let (revoked_id, revoked) = invite(
        &w.owner,
        &w.client,
        "dee2@contoso.example",
        &["AccountOwner"],
    )
    .await;
    let (replaced_id, replaced) = invite(
        &w.owner,
        &w.client,
        "dee3@contoso.example",
        &["AccountOwner"],
    )
    .await;
    w.owner
        .delete(&format!("/v1/invitations/{revoked_id}"))
        .await
        .expect(204);
    accept(&w.portal, &revoked, &id_token)
        .await
        .expect_problem(409, "invitation-not-pending");
    let resent = w
        .owner
        .post(&format!("/v1/invitations/{replaced_id}/resend"), json!({}))
        .await
        .expect(200);
    accept(&w.portal, &replaced, &id_token)
        .await
        .expect_problem(404, "not-found");
    let new_token = resent.body["link"]
        .as_str()
        .unwrap()
        .split_once("#token=")
        .unwrap()
        .1
        .to_owned();
    w.portal.clock.advance(Duration::from_secs(48 * 3600));
    let refused = accept(&w.portal, &expiring, &id_token)
        .await
        .expect_problem(410, "invitation-expired");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("create a new invitation")
    );
    accept(&w.portal, &new_token, &id_token)
        .await
        .expect_problem(410, "invitation-expired");
    accept(&w.portal, "no-such-token", &id_token)
        .await
        .expect_problem(404, "not-found");
    w.portal.stop().await;
}

async fn id_tokens_are_verified_against_the_issuer(backend: Backend) {
    let w = world(backend).await;
    let (_, token) = invite(
        &w.owner,
        &w.other_client,
        "eve@fabrikam.example",
        &["AccountOwner"],
    )
    .await;
    let wrong_audience = w
        .idp
        .id_token(json!({ "sub": "eve", "aud": "some-other-app" }))
        .await;
    accept(&w.portal, &token, &wrong_audience)
        .await
        .expect_problem(401, "invalid-token");
    let expired = w
        .idp
        .id_token(json!({ "sub": "eve", "lifetime_seconds": -600 }))
        .await;
    let reply = accept(&w.portal, &token, &expired)
        .await
        .expect_problem(401, "invalid-token");
    assert!(
        reply.body["detail"].as_str().unwrap().contains("expired"),
        "{}",
        reply.body
    );
    accept(&w.portal, &token, "not.a.jwt")
        .await
        .expect_problem(401, "invalid-token");
    // A token from another issuer, even a well-formed and signed one, is refused.
    let stranger = OidcProvider::start().await;
    let foreign = stranger.id_token(json!({ "sub": "eve" })).await;
    accept(&w.portal, &token, &foreign)
        .await
        .expect_problem(401, "invalid-token");
    // A tampered token fails its signature.
    let good = w.idp.id_token(json!({ "sub": "eve" })).await;
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value = serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
        claims["sub"] = json!("mallory");
        engine.encode(claims.to_string())
    };
    accept(&w.portal, &token, &parts.join("."))
        .await
        .expect_problem(401, "invalid-token");
    // An account without a tenant accepts any tenant; the good token works.
    accept(&w.portal, &token, &good).await.expect(200);
    w.portal.stop().await;
}

async fn the_same_person_accepting_twice_is_one_admin(backend: Backend) {
    let w = world(backend).await;
    let (_, first) = invite(
        &w.owner,
        &w.client,
        "fay@contoso.example",
        &["ServiceViewer"],
    )
    .await;
    let (_, second) = invite(
        &w.owner,
        &w.other_client,
        "fay@fabrikam.example",
        &["ServiceContributor"],
    )
    .await;
    let id_token = w
        .idp
        .id_token(json!({ "sub": "fay-oid", "tid": TENANT }))
        .await;
    let one = accept(&w.portal, &first, &id_token).await.expect(200);
    let two = accept(&w.portal, &second, &id_token).await.expect(200);
    assert_eq!(
        one.body["adminId"], two.body["adminId"],
        "one identity, one admin"
    );
    let admin = one.body["adminId"].as_str().unwrap();
    let roles_on = |account: String| {
        let owner = w.owner.clone();
        async move {
            let reply = owner
                .get(&format!("/v1/accounts/{account}/grants?adminId={admin}"))
                .await
                .expect(200);
            reply.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["role"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(roles_on(w.client.clone()).await, ["ServiceViewer"]);
    assert_eq!(
        roles_on(w.other_client.clone()).await,
        ["ServiceContributor"]
    );
    w.portal.stop().await;
}

async fn accept_attempts_are_rate_limited_per_address(backend: Backend) {
    let w = world(backend).await;
    let mut statuses = Vec::new();
    for _ in 0..21 {
        statuses.push(accept(&w.portal, "guess", "guess").await.status.as_u16());
    }
    assert!(statuses[..20].iter().all(|s| *s == 404), "{statuses:?}");
    let limited = accept(&w.portal, "guess", "guess")
        .await
        .expect_problem(429, "too-many-requests");
    assert!(limited.header("retry-after").is_some());
    w.portal.stop().await;
}
