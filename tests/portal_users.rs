//! Subscriptions and service users (seed 003) over real HTTP, on SQLite and PostgreSQL:
//! licences taken and given back, exhaustion naming who holds them, the financial-change rule,
//! prepared users invited in bulk, activation through a real SMTP server, uniqueness of logins
//! across users, account managers and admins, and bad input for every field.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Backend, Maildev, Options, TestPortal};

on_both_backends!(
    a_user_takes_a_licence_and_gives_it_back_and_exhaustion_names_the_holders,
    only_a_functioning_subscription_contributor_changes_subscriptions,
    prepared_users_are_invited_together_and_activate_with_the_emailed_password,
    logins_are_unique_across_users_account_managers_and_admins,
    every_user_field_is_checked_and_a_refused_write_leaves_nothing,
    user_updates_move_licences_and_disable_with_if_match,
    an_invited_users_activation_expires_and_resend_issues_a_new_password,
    roles_and_teams_give_permissions_and_memberships_with_their_origin,
    deleting_a_role_removes_it_from_every_user_and_only_the_memberships_it_gave,
    teams_and_roles_refuse_bad_input_and_write_nothing,
);

struct World {
    portal: TestPortal,
    partner: String,
    client: String,
}

async fn world(backend: Backend, options: Options) -> World {
    let portal = TestPortal::start_with_options(backend, options).await;
    let platform = portal.platform();
    let partner = platform
        .account(json!({ "type": "Partner", "displayName": "Northwind" }))
        .await;
    let client = platform
        .account(json!({ "type": "Client", "parentId": partner, "displayName": "Contoso" }))
        .await;
    World {
        portal,
        partner,
        client,
    }
}

fn user(user_id: &str, license: &str) -> Value {
    json!({ "userId": user_id, "firstName": "Test", "lastName": "User", "licenseType": license, "invite": false })
}

async fn subscription(w: &World, account: &str, license: &str, quantity: i64) -> Value {
    w.portal
        .platform()
        .post(
            &format!("/v1/accounts/{account}/subscriptions"),
            json!({ "licenseType": license, "quantity": quantity }),
        )
        .await
        .expect(201)
        .body
}

async fn a_user_takes_a_licence_and_gives_it_back_and_exhaustion_names_the_holders(
    backend: Backend,
) {
    let w = world(backend, Options::default()).await;
    let platform = w.portal.platform();
    let users = format!("/v1/accounts/{}/users", w.client);
    // No subscription of the type at all: refused, saying what to add.
    let none = platform
        .post(&users, user("ann@contoso.example", "Standard"))
        .await
        .expect_problem(409, "license-exhausted");
    assert!(
        none.body["detail"]
            .as_str()
            .unwrap()
            .contains("no Standard subscription"),
        "{}",
        none.body
    );
    let sub = subscription(&w, &w.client, "Standard", 2).await;
    assert_eq!(
        (sub["assigned"].as_i64(), sub["free"].as_i64()),
        (Some(0), Some(2))
    );
    let sub_path = format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap());
    let ann = platform
        .post(&users, user("ann@contoso.example", "Standard"))
        .await
        .expect(201);
    platform
        .post(&users, user("+44 7700 900123", "Standard"))
        .await
        .expect(201);
    let read = platform.get(&sub_path).await.expect(200);
    assert_eq!(
        (read.body["assigned"].as_i64(), read.body["free"].as_i64()),
        (Some(2), Some(0))
    );
    let full = platform
        .post(&users, user("cat@contoso.example", "Standard"))
        .await
        .expect_problem(409, "license-exhausted");
    let detail = full.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("all 2 are assigned")
            && detail.contains("ann@contoso.example")
            && detail.contains("+447700900123"),
        "the refusal names the total and the holders: {detail}"
    );
    assert_eq!(full.body["field"], "/licenseType", "{}", full.body);
    // A quantity below what is assigned is refused; deleting a user gives its licence back.
    let etag = read.header("etag").unwrap().to_owned();
    platform
        .patch(&sub_path, json!({ "quantity": 1 }), Some(&etag))
        .await
        .expect_problem(409, "license-in-use");
    platform
        .delete(&format!("/v1/users/{}", ann.body["id"].as_str().unwrap()))
        .await
        .expect(204);
    let read = platform.get(&sub_path).await.expect(200);
    assert_eq!(
        (read.body["assigned"].as_i64(), read.body["free"].as_i64()),
        (Some(1), Some(1))
    );
    platform
        .post(&users, user("cat@contoso.example", "Standard"))
        .await
        .expect(201);
    // One subscription per licence type.
    platform
        .post(
            &format!("/v1/accounts/{}/subscriptions", w.client),
            json!({ "licenseType": "Standard", "quantity": 5 }),
        )
        .await
        .expect_problem(409, "subscription-exists");
    // Deleting a subscription whose licences are held is refused; the account cannot be deleted
    // with its users unless asked to cascade.
    platform
        .delete(&sub_path)
        .await
        .expect_problem(409, "license-in-use");
    let refused = platform
        .delete(&format!("/v1/accounts/{}", w.client))
        .await
        .expect_problem(409, "account-not-empty");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be undone"),
        "{}",
        refused.body
    );
    let listed = platform
        .all_pages(&format!("/v1/accounts/{}/subscriptions", w.client))
        .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["assigned"], 2);
    // The change feed says what happened.
    let types: Vec<String> = platform
        .all_events()
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    for expected in ["subscription.created", "user.created", "user.deleted"] {
        assert!(
            types.iter().any(|t| t == expected),
            "no {expected} in {types:?}"
        );
    }
}

async fn only_a_functioning_subscription_contributor_changes_subscriptions(backend: Backend) {
    let w = world(backend, Options::default()).await;
    let platform = w.portal.platform();
    let sub_client = platform
        .account(json!({ "type": "Client", "parentId": w.partner, "displayName": "Fabrikam", "subContract": true }))
        .await;
    let (_, partner_seller) = platform
        .admin_with_key(
            &w.partner,
            "sam@northwind.example",
            &["SubscriptionContributor"],
        )
        .await;
    let (_, client_owner) = platform
        .admin_with_key(&w.client, "cleo@contoso.example", &["AccountOwner"])
        .await;
    let (_, sub_owner) = platform
        .admin_with_key(
            &sub_client,
            "fay@fabrikam.example",
            &["SubscriptionContributor"],
        )
        .await;
    let (_, viewer) = platform
        .admin_with_key(&w.partner, "vic@northwind.example", &["SubscriptionViewer"])
        .await;
    let body = json!({ "licenseType": "Premium", "quantity": 3 });
    // The partner's contributor on the partner itself.
    w.portal
        .api(&partner_seller)
        .post(
            &format!("/v1/accounts/{}/subscriptions", w.partner),
            body.clone(),
        )
        .await
        .expect(201);
    // A client without a sub-contract: no financial change there, neither by its own owner nor
    // by the partner's contributor (whose role does not function on it); the refusal says why.
    w.portal
        .api(&client_owner)
        .post(
            &format!("/v1/accounts/{}/subscriptions", w.client),
            body.clone(),
        )
        .await
        .expect_problem(403, "forbidden");
    let refused = w
        .portal
        .api(&partner_seller)
        .post(
            &format!("/v1/accounts/{}/subscriptions", w.client),
            body.clone(),
        )
        .await
        .expect_problem(403, "forbidden");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("no sub-contract"),
        "{}",
        refused.body
    );
    assert!(
        platform
            .all_pages(&format!("/v1/accounts/{}/subscriptions", w.client))
            .await
            .is_empty(),
        "nothing was written"
    );
    // A client with a sub-contract may.
    w.portal
        .api(&sub_owner)
        .post(
            &format!("/v1/accounts/{sub_client}/subscriptions"),
            body.clone(),
        )
        .await
        .expect(201);
    // A viewer reads and may not write.
    let viewer = w.portal.api(&viewer);
    assert_eq!(
        viewer
            .all_pages(&format!("/v1/accounts/{}/subscriptions", w.partner))
            .await
            .len(),
        1
    );
    viewer
        .post(
            &format!("/v1/accounts/{}/subscriptions", w.partner),
            json!({ "licenseType": "Standard", "quantity": 1 }),
        )
        .await
        .expect_problem(403, "forbidden");
    // The client's owner manages users (ServiceContributor through AccountOwner) but a licence
    // must exist first.
    subscription(&w, &w.client, "Standard", 1).await;
    w.portal
        .api(&client_owner)
        .post(
            &format!("/v1/accounts/{}/users", w.client),
            user("dan@contoso.example", "Standard"),
        )
        .await
        .expect(201);
    let viewer_users = viewer
        .post(
            &format!("/v1/accounts/{}/users", w.partner),
            user("eve@northwind.example", "Premium"),
        )
        .await
        .expect_problem(403, "forbidden");
    assert!(
        viewer_users.body["detail"]
            .as_str()
            .unwrap()
            .contains("service_users.write")
    );
}

fn temporary_password(email: &Value) -> String {
    email["text"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Temporary password: "))
        .expect("the email carries the temporary password")
        .trim()
        .to_owned()
}

async fn prepared_users_are_invited_together_and_activate_with_the_emailed_password(
    backend: Backend,
) {
    let smtp = Maildev::start().await;
    let w = world(
        backend,
        Options {
            smtp_url: Some(smtp.smtp_url()),
            ..Options::default()
        },
    )
    .await;
    let platform = w.portal.platform();
    subscription(&w, &w.client, "Standard", 5).await;
    let users = format!("/v1/accounts/{}/users", w.client);
    let mut ids = Vec::new();
    for email in ["gus@contoso.example", "hal@contoso.example"] {
        let created = platform
            .post(&users, user(email, "Standard"))
            .await
            .expect(201);
        assert_eq!(created.body["state"], "Prepared");
        assert_eq!(created.body["activationSends"], 0);
        ids.push(created.body["id"].as_str().unwrap().to_owned());
    }
    // All or nothing: one id that is not a prepared user of the account refuses the batch.
    platform
        .post(
            &format!("{users}/send-invitations"),
            json!({ "users": [ids[0], "no-such-user"] }),
        )
        .await
        .expect_problem(404, "not-found");
    let gus = platform
        .get(&format!("/v1/users/{}", ids[0]))
        .await
        .expect(200);
    assert_eq!(
        gus.body["state"], "Prepared",
        "the refused batch invited nobody"
    );
    let sent = platform
        .post(
            &format!("{users}/send-invitations"),
            json!({ "users": ids }),
        )
        .await
        .expect(200);
    let states: Vec<&str> = sent.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["Invited", "Invited"]);
    // Sending again is refused: they are no longer prepared.
    platform
        .post(
            &format!("{users}/send-invitations"),
            json!({ "users": [ids[0]] }),
        )
        .await
        .expect_problem(409, "user-not-prepared");
    let email = smtp.wait_for_email_to("gus@contoso.example").await;
    let text = email["text"].as_str().unwrap();
    assert!(
        text.contains("User ID: gus@contoso.example") && text.contains("/users/activate"),
        "the email says how to sign in"
    );
    let password = temporary_password(&email);
    assert!(
        !sent.body.to_string().contains(&password),
        "the API never shows the temporary password"
    );
    let anonymous = w.portal.anonymous();
    anonymous
        .post("/v1/users/activate", json!({ "username": "gus@contoso.example", "temporaryPassword": "not-the-password", "newPassword": "a-long-new-password" }))
        .await
        .expect_problem(401, "invalid-credentials");
    anonymous
        .post("/v1/users/activate", json!({ "username": "gus@contoso.example", "temporaryPassword": password, "newPassword": "short" }))
        .await
        .expect_problem(422, "validation-failed");
    let active = anonymous
        .post("/v1/users/activate", json!({ "username": "gus@contoso.example", "temporaryPassword": password, "newPassword": "a-long-new-password" }))
        .await
        .expect(200);
    assert_eq!(active.body["state"], "Active");
    anonymous
        .post("/v1/users/activate", json!({ "username": "gus@contoso.example", "temporaryPassword": password, "newPassword": "another-long-password" }))
        .await
        .expect_problem(401, "invalid-credentials");
    let types: Vec<String> = platform
        .all_events()
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types.iter().filter(|t| *t == "user.invited").count(),
        2,
        "{types:?}"
    );
    assert!(types.iter().any(|t| t == "user.activated"), "{types:?}");
}

async fn logins_are_unique_across_users_account_managers_and_admins(backend: Backend) {
    let w = world(backend, Options::default()).await;
    let platform = w.portal.platform();
    subscription(&w, &w.client, "Standard", 10).await;
    platform
        .admin_with_key(&w.partner, "olivia@northwind.example", &["AccountOwner"])
        .await;
    platform
        .post(
            &format!("/v1/accounts/{}/account-managers", w.client),
            json!({ "firstName": "Mia", "lastName": "Wong", "email": "mia@contoso.example" }),
        )
        .await
        .expect(201);
    let users = format!("/v1/accounts/{}/users", w.client);
    for (taken, by) in [
        ("Olivia@Northwind.example", "an admin"),
        ("mia@contoso.example", "an account manager"),
    ] {
        let refused = platform
            .post(&users, user(taken, "Standard"))
            .await
            .expect_problem(409, "user-id-conflict");
        assert!(
            refused.body["detail"].as_str().unwrap().contains(by),
            "{}",
            refused.body
        );
    }
    platform
        .post(&users, user("+1 425 555 0100", "Standard"))
        .await
        .expect(201);
    // The same number written another way is the same login.
    platform
        .post(&users, user("+1 (425) 555-0100", "Standard"))
        .await
        .expect_problem(409, "user-id-conflict");
    platform
        .post(&users, user("nia@contoso.example", "Standard"))
        .await
        .expect(201);
    let refused = platform
        .post(
            &format!("/v1/accounts/{}/account-managers", w.client),
            json!({ "firstName": "Nia", "lastName": "Obi", "email": "NIA@contoso.example" }),
        )
        .await
        .expect_problem(409, "email-conflict");
    assert!(
        refused.body["detail"].as_str().unwrap().contains("a user"),
        "{}",
        refused.body
    );
    let found = platform
        .get(&format!("{users}?userId=%2B14255550100"))
        .await
        .expect(200);
    assert_eq!(
        found.body["items"].as_array().unwrap().len(),
        1,
        "found by user ID in any spelling"
    );
}

async fn every_user_field_is_checked_and_a_refused_write_leaves_nothing(backend: Backend) {
    let w = world(backend, Options::default()).await;
    let platform = w.portal.platform();
    subscription(&w, &w.client, "Standard", 10).await;
    let users = format!("/v1/accounts/{}/users", w.client);
    let with = |extra: Value| {
        let mut body = user("ivy@contoso.example", "Standard");
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    // (change, status, problem, words the detail must hold)
    let cases = [
        (
            json!({ "userId": "ivy" }),
            422,
            "validation-failed",
            "\"ivy\" is not a user ID",
        ),
        (
            json!({ "userId": "+0 123 456 789" }),
            422,
            "validation-failed",
            "never starts with 0",
        ),
        (
            json!({ "firstName": "" }),
            422,
            "validation-failed",
            "firstName",
        ),
        (
            json!({ "licenseType": "Gold" }),
            422,
            "validation-failed",
            "unknown licence type \"Gold\"",
        ),
        (
            json!({ "mobileNumber": "07700 900123" }),
            422,
            "validation-failed",
            "mobileNumber: \"07700 900123\"",
        ),
        (
            json!({ "linkedNumber": "+447700900123" }),
            422,
            "validation-failed",
            "set landlineNumber too",
        ),
        (
            json!({ "landlineNumber": "+442079460000", "mex": true }),
            422,
            "validation-failed",
            "set linkedNumber too",
        ),
        (
            json!({ "mobileNumber": "+442079460000", "landlineNumber": "+44 20 7946 0000" }),
            422,
            "validation-failed",
            "same as the mobile",
        ),
        (
            json!({ "displayNumbers": ["+442079460001", "nope"] }),
            422,
            "validation-failed",
            "\"nope\"",
        ),
        (
            json!({ "countryCode": "44" }),
            422,
            "validation-failed",
            "country-code prefix",
        ),
        (
            json!({ "timeZone": "Europe/Atlantis" }),
            422,
            "validation-failed",
            "IANA time zone",
        ),
        (
            json!({ "language": "de" }),
            422,
            "validation-failed",
            "\"de\"",
        ),
        (
            json!({ "permissions": ["users_teams.manage", "root"] }),
            422,
            "validation-failed",
            "unknown user permission \"root\"",
        ),
        (
            json!({ "extra": { "job title": "x" } }),
            422,
            "validation-failed",
            "\"job title\"",
        ),
        (
            json!({ "roles": ["Agent"] }),
            422,
            "unknown-reference",
            "no user role \"Agent\"",
        ),
        (
            json!({ "role": ["Agent"] }),
            400,
            "malformed-request",
            "unknown field `role`",
        ),
    ];
    for (change, status, problem, words) in cases {
        let reply = platform
            .post(&users, with(change.clone()))
            .await
            .expect_problem(status, problem);
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(detail.contains(words), "{change}: {detail}");
    }
    assert!(
        platform.all_pages(&users).await.is_empty(),
        "no refused create wrote a user"
    );
    let created = platform
        .post(
            &users,
            with(json!({ "mobileNumber": "+44 7700 900123", "landlineNumber": "+44 20 7946 0000", "linkedNumber": "+44 7700 900123",
                         "mex": true, "displayNumbers": ["+44 20 7946 0999"], "countryCode": "+44", "timeZone": "Europe/London",
                         "language": "fr", "permissions": ["voicemail.manage", "users_teams.manage"],
                         "extra": { "department": "Sales", "jobTitle": "Lead" } })),
        )
        .await
        .expect(201);
    let body = &created.body;
    assert_eq!(
        body["mobileNumber"], "+44 7700 900123",
        "numbers come back as sent"
    );
    assert_eq!(body["timeZone"], "Europe/London");
    assert_eq!(body["extra"]["jobTitle"], "Lead");
    assert_eq!(
        body["effective"]["permissions"],
        json!([
            { "permission": "users_teams.manage", "origins": [{ "type": "direct" }] },
            { "permission": "voicemail.manage", "origins": [{ "type": "direct" }] },
        ])
    );
}

async fn user_updates_move_licences_and_disable_with_if_match(backend: Backend) {
    let w = world(backend, Options::default()).await;
    let platform = w.portal.platform();
    let standard = subscription(&w, &w.client, "Standard", 1).await;
    let premium = subscription(&w, &w.client, "Premium", 1).await;
    let users = format!("/v1/accounts/{}/users", w.client);
    let joe = platform
        .post(&users, user("joe@contoso.example", "Standard"))
        .await
        .expect(201);
    let path = format!("/v1/users/{}", joe.body["id"].as_str().unwrap());
    let etag = joe.header("etag").unwrap().to_owned();
    platform
        .patch(&path, json!({ "licenseType": "Premium" }), None)
        .await
        .expect_problem(428, "precondition-required");
    platform
        .patch(&path, json!({ "licenseType": "Premium" }), Some("\"99\""))
        .await
        .expect_problem(412, "precondition-failed");
    let moved = platform
        .patch(
            &path,
            json!({ "licenseType": "Premium", "timeZone": "America/New_York" }),
            Some(&etag),
        )
        .await
        .expect(200);
    assert_eq!(moved.body["licenseType"], "Premium");
    for (sub, assigned) in [(&standard, 0), (&premium, 1)] {
        let read = platform
            .get(&format!(
                "/v1/subscriptions/{}",
                sub["id"].as_str().unwrap()
            ))
            .await
            .expect(200);
        assert_eq!(read.body["assigned"], assigned, "{}", read.body);
    }
    // The Standard licence is free again for someone else; Premium has none left.
    platform
        .post(&users, user("kim@contoso.example", "Standard"))
        .await
        .expect(201);
    let etag = moved.header("etag").unwrap().to_owned();
    let refused = platform
        .patch(&path, json!({ "licenseType": "Standard" }), Some(&etag))
        .await
        .expect_problem(409, "license-exhausted");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("kim@contoso.example")
    );
    let disabled = platform
        .patch(&path, json!({ "disabled": true }), Some(&etag))
        .await
        .expect(200);
    assert_eq!(disabled.body["state"], "Disabled");
    assert_eq!(
        disabled.body["licenseType"], "Premium",
        "a disabled user keeps its licence"
    );
    let etag = disabled.header("etag").unwrap().to_owned();
    let enabled = platform
        .patch(&path, json!({ "disabled": false }), Some(&etag))
        .await
        .expect(200);
    assert_eq!(enabled.body["state"], "Prepared", "back to where it was");
    let same = platform
        .patch(&path, json!({ "disabled": false }), Some("*"))
        .await
        .expect(200);
    assert_eq!(
        same.body["version"], enabled.body["version"],
        "no change, no new version"
    );
}

async fn an_invited_users_activation_expires_and_resend_issues_a_new_password(backend: Backend) {
    let w = world(backend, Options::default()).await;
    let platform = w.portal.platform();
    subscription(&w, &w.client, "Standard", 2).await;
    let users = format!("/v1/accounts/{}/users", w.client);
    let mut body = user("liv@contoso.example", "Standard");
    body["invite"] = json!(true);
    let liv = platform.post(&users, body).await.expect(201);
    assert_eq!(liv.body["state"], "Invited");
    let path = format!("/v1/users/{}", liv.body["id"].as_str().unwrap());
    w.portal.clock.advance(Duration::from_secs(73 * 3600));
    support::wait_for(
        Duration::from_secs(10),
        "user.activation_expired",
        || async {
            let events = platform.all_events().await;
            events
                .iter()
                .any(|e| e["type"] == "user.activation_expired")
                .then_some(())
        },
    )
    .await;
    let expired = platform.get(&path).await.expect(200);
    assert_eq!(expired.body["state"], "ActivationExpired");
    assert!(
        expired.body["activationExpiresAt"].is_string(),
        "{}",
        expired.body
    );
    let resent = platform
        .post(&format!("{path}/resend-activation"), json!({}))
        .await
        .expect(200);
    assert_eq!(resent.body["state"], "Invited");
    assert_eq!(resent.body["activationSends"], 2);
    let types: Vec<String> = platform
        .all_events()
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        types.iter().any(|t| t == "user.activation_expired"),
        "{types:?}"
    );
    // A user whose ID is its mobile number gets the activation as a text, kept in the outbox.
    let mut body = user("+44 7700 900999", "Standard");
    body["invite"] = json!(true);
    platform.post(&users, body).await.expect(201);
    let outbox = platform.all_pages("/v1/outbox").await;
    let text = outbox
        .iter()
        .find(|m| m["to"] == "+447700900999")
        .expect("the text in the outbox");
    assert!(
        text["body"]
            .as_str()
            .unwrap()
            .contains("Temporary password: ")
    );
    // The outbox holds both activation emails for the platform (no SMTP configured).
    let outbox = platform.all_pages("/v1/outbox").await;
    assert_eq!(
        outbox
            .iter()
            .filter(|m| m["to"] == "liv@contoso.example")
            .count(),
        2,
        "{outbox:?}"
    );
}

/// A one-pixel PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

async fn service_world(backend: Backend) -> (World, String) {
    let w = world(backend, Options::default()).await;
    subscription(&w, &w.client, "Standard", 10).await;
    let users = format!("/v1/accounts/{}/users", w.client);
    (w, users)
}

async fn roles_and_teams_give_permissions_and_memberships_with_their_origin(backend: Backend) {
    let (w, users) = service_world(backend).await;
    let platform = w.portal.platform();
    let account = format!("/v1/accounts/{}", w.client);
    let support = platform
        .post(
            &format!("{account}/teams"),
            json!({ "name": "Support", "avatar": { "mediaType": "image/png", "data": PNG },
                    "channels": [{ "name": "General", "visibility": "Public" }, { "name": "Escalations", "visibility": "Private" }] }),
        )
        .await
        .expect(201);
    assert_eq!(support.body["avatar"]["mediaType"], "image/png");
    let agent = platform
        .post(
            &format!("{account}/user-roles"),
            json!({ "name": "Agent", "permissions": ["call_queues.answer"], "team": "support",
                    "teamPermissions": ["members.manage"] }),
        )
        .await
        .expect(201);
    assert_eq!(
        agent.body["team"], "Support",
        "found by name in any case, shown as named"
    );
    platform
        .post(
            &format!("{account}/teams"),
            json!({ "name": "Sales", "roles": ["Agent"] }),
        )
        .await
        .expect(201);
    let mut ann = user("ann@contoso.example", "Standard");
    ann["roles"] = json!(["Agent"]);
    ann["teams"] = json!(["Sales"]);
    ann["permissions"] = json!(["call_queues.answer", "voicemail.manage"]);
    let ann = platform.post(&users, ann).await.expect(201);
    let effective = &ann.body["effective"];
    assert_eq!(
        effective["permissions"],
        json!([
            { "permission": "call_queues.answer", "origins": [{ "type": "direct" }, { "type": "role", "role": "Agent" }] },
            { "permission": "voicemail.manage", "origins": [{ "type": "direct" }] },
        ]),
        "{effective:#}"
    );
    assert_eq!(
        effective["teams"],
        json!([
            { "team": "Sales", "origins": [{ "type": "direct" }, { "type": "teamRole", "role": "Agent" }], "disabled": false, "permissions": [] },
            { "team": "Support", "origins": [{ "type": "teamRole", "role": "Agent" }], "disabled": false,
              "permissions": [{ "permission": "members.manage", "roles": ["Agent"] }] },
        ]),
        "{effective:#}"
    );
    assert_eq!(ann.body["roles"], json!(["Agent"]));
    // A team listing a user makes it a member; the team's view says how each member got there.
    platform
        .post(&users, user("bob@contoso.example", "Standard"))
        .await
        .expect(201);
    let etag = support.header("etag").unwrap().to_owned();
    let support_path = format!("/v1/teams/{}", support.body["id"].as_str().unwrap());
    let listed = platform
        .patch(
            &support_path,
            json!({ "members": ["BOB@contoso.example"] }),
            Some(&etag),
        )
        .await
        .expect(200);
    assert_eq!(
        listed.body["effectiveMembers"],
        json!([
            { "userId": "ann@contoso.example", "origins": [{ "type": "teamRole", "role": "Agent" }] },
            { "userId": "bob@contoso.example", "origins": [{ "type": "member" }] },
        ])
    );
    // Disabled: members keep their membership, marked disabled; the avatar is served as sent.
    let etag = listed.header("etag").unwrap().to_owned();
    platform
        .patch(&support_path, json!({ "disabled": true }), Some(&etag))
        .await
        .expect(200);
    let bob = platform
        .all_pages(&format!("{users}?userId=bob%40contoso.example"))
        .await;
    assert_eq!(bob[0]["effective"]["teams"][0]["disabled"], true);
    let avatar = reqwest::Client::new()
        .get(format!("{}{support_path}/avatar", w.portal.base))
        .bearer_auth(&w.portal.platform_key)
        .send()
        .await
        .unwrap();
    assert_eq!(avatar.headers()["content-type"], "image/png");
    assert!(avatar.bytes().await.unwrap().starts_with(b"\x89PNG"));
    // The role's view lists who holds it.
    let role = platform
        .get(&format!(
            "/v1/user-roles/{}",
            agent.body["id"].as_str().unwrap()
        ))
        .await
        .expect(200);
    assert_eq!(role.body["holders"], json!(["ann@contoso.example"]));
    // Renamed, the role keeps its holders; a team read alone is as listed; deleted, it is gone.
    let role_path = format!("/v1/user-roles/{}", agent.body["id"].as_str().unwrap());
    let renamed = platform
        .patch(
            &role_path,
            json!({ "name": "Senior agent" }),
            role.header("etag"),
        )
        .await
        .expect(200);
    assert_eq!(renamed.body["holders"], json!(["ann@contoso.example"]));
    let read = platform.get(&support_path).await.expect(200);
    assert_eq!(read.body["disabled"], true);
    assert_eq!(read.body["name"], "Support");
    platform.delete(&support_path).await.expect(204);
    platform
        .get(&support_path)
        .await
        .expect_problem(404, "not-found");
}

async fn deleting_a_role_removes_it_from_every_user_and_only_the_memberships_it_gave(
    backend: Backend,
) {
    let (w, users) = service_world(backend).await;
    let platform = w.portal.platform();
    let account = format!("/v1/accounts/{}", w.client);
    platform
        .post(&format!("{account}/teams"), json!({ "name": "Queue" }))
        .await
        .expect(201);
    let agent = platform
        .post(
            &format!("{account}/user-roles"),
            json!({ "name": "Agent", "team": "Queue" }),
        )
        .await
        .expect(201);
    platform
        .post(
            &format!("{account}/user-roles"),
            json!({ "name": "Lead", "team": "Queue" }),
        )
        .await
        .expect(201);
    for (id, roles, teams) in [
        ("ann@contoso.example", json!(["Agent"]), json!([])),
        ("bob@contoso.example", json!(["Agent", "Lead"]), json!([])),
        ("cat@contoso.example", json!(["Agent"]), json!(["Queue"])),
    ] {
        let mut body = user(id, "Standard");
        body["roles"] = roles;
        body["teams"] = teams;
        platform.post(&users, body).await.expect(201);
    }
    let deleted = platform
        .delete(&format!(
            "/v1/user-roles/{}",
            agent.body["id"].as_str().unwrap()
        ))
        .await
        .expect(200);
    assert_eq!(
        deleted.body,
        json!({
            "removedFrom": ["ann@contoso.example", "bob@contoso.example", "cat@contoso.example"],
            "lostMemberships": [{ "userId": "ann@contoso.example", "team": "Queue" }],
        })
    );
    let ann = &platform
        .all_pages(&format!("{users}?userId=ann%40contoso.example"))
        .await[0];
    assert_eq!(ann["roles"], json!([]));
    assert_eq!(ann["effective"]["teams"], json!([]));
    let events = platform.all_events().await;
    let event = events
        .iter()
        .find(|e| e["type"] == "user_role.deleted")
        .expect("user_role.deleted");
    assert_eq!(
        event["data"]["lostMemberships"],
        deleted.body["lostMemberships"]
    );
}

async fn teams_and_roles_refuse_bad_input_and_write_nothing(backend: Backend) {
    let (w, users) = service_world(backend).await;
    let platform = w.portal.platform();
    let account = format!("/v1/accounts/{}", w.client);
    platform
        .post(&format!("{account}/teams"), json!({ "name": "Sales" }))
        .await
        .expect(201);
    let big = "A".repeat(400_000);
    // (path, body, status, problem, words)
    let cases = [
        (
            "teams",
            json!({ "name": "sales" }),
            409,
            "name-conflict",
            "already has a team named \"sales\"",
        ),
        (
            "teams",
            json!({ "name": "" }),
            422,
            "validation-failed",
            "1 to 100",
        ),
        (
            "teams",
            json!({ "name": "X", "avatar": { "mediaType": "image/gif", "data": PNG } }),
            422,
            "validation-failed",
            "image/png or image/jpeg",
        ),
        (
            "teams",
            json!({ "name": "X", "avatar": { "mediaType": "image/jpeg", "data": PNG } }),
            422,
            "validation-failed",
            "not a image/jpeg image",
        ),
        (
            "teams",
            json!({ "name": "X", "avatar": { "mediaType": "image/png", "data": "%%%" } }),
            422,
            "validation-failed",
            "base64",
        ),
        (
            "teams",
            json!({ "name": "X", "avatar": { "mediaType": "image/png", "data": big } }),
            422,
            "validation-failed",
            "at most 262144",
        ),
        (
            "teams",
            json!({ "name": "X", "channels": [{ "name": "a", "visibility": "Public" }, { "name": "A", "visibility": "Private" }] }),
            422,
            "validation-failed",
            "two channels",
        ),
        (
            "teams",
            json!({ "name": "X", "channels": [{ "name": "a", "visibility": "Secret" }] }),
            400,
            "malformed-request",
            "Secret",
        ),
        (
            "teams",
            json!({ "name": "X", "members": ["nobody@contoso.example"] }),
            422,
            "unknown-reference",
            "no user \"nobody@contoso.example\"",
        ),
        (
            "teams",
            json!({ "name": "X", "roles": ["Ghost"] }),
            422,
            "unknown-reference",
            "no user role \"Ghost\"",
        ),
        (
            "user-roles",
            json!({ "name": "R", "team": "Nowhere" }),
            422,
            "unknown-reference",
            "no team \"Nowhere\": the account has Sales",
        ),
        (
            "user-roles",
            json!({ "name": "R", "teamPermissions": ["members.manage"] }),
            422,
            "validation-failed",
            "set team too",
        ),
        (
            "user-roles",
            json!({ "name": "R", "permissions": ["root"] }),
            422,
            "validation-failed",
            "unknown user permission \"root\"",
        ),
    ];
    for (path, body, status, problem, words) in cases {
        let reply = platform
            .post(&format!("{account}/{path}"), body.clone())
            .await
            .expect_problem(status, problem);
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(detail.contains(words), "{body}: {detail}");
    }
    assert_eq!(
        platform.all_pages(&format!("{account}/teams")).await.len(),
        1,
        "no refused team was written"
    );
    assert!(
        platform
            .all_pages(&format!("{account}/user-roles"))
            .await
            .is_empty()
    );
    let mut body = user("dan@contoso.example", "Standard");
    body["roles"] = json!(["Ghost"]);
    let refused = platform
        .post(&users, body)
        .await
        .expect_problem(422, "unknown-reference");
    assert_eq!(refused.body["field"], "/roles/0");
    assert!(
        platform.all_pages(&users).await.is_empty(),
        "nor the user, nor its licence"
    );
}
