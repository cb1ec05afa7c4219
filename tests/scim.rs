//! SCIM 2.0 at /scim/v2 over real HTTP on SQLite and PostgreSQL: the outside conformance suite
//! (scim2-tester through scim2-cli, pinned in tests/peers/scim-requirements.txt), Microsoft
//! Entra's documented request shapes replayed from tests/fixtures, users waiting for a licence,
//! SCIM and operator-managed users that never share a login, and bad input answered with SCIM
//! errors (never a 500, never another account's data).

mod support;

use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Api, Backend, Reply, TestPortal};

on_both_backends!(
    the_outside_conformance_suite_passes,
    entra_request_shapes_are_answered_as_entra_expects,
    a_user_with_no_licence_free_is_created_waiting_and_takes_one_when_freed,
    scim_and_operator_managed_users_never_share_a_login,
    bad_input_gets_scim_errors_and_other_accounts_see_nothing,
);

struct World {
    portal: TestPortal,
    account: String,
    token: String,
}

impl World {
    fn scim(&self) -> Api {
        Api {
            base: format!("{}/scim/v2", self.portal.platform().base),
            key: Some(self.token.clone()),
            client: reqwest::Client::new(),
        }
    }
}

async fn world(backend: Backend, licences: i64) -> World {
    let portal = TestPortal::start(backend).await;
    let platform = portal.platform();
    let account = platform
        .account(json!({ "type": "Partner", "displayName": "Contoso" }))
        .await;
    platform
        .post(
            &format!("/v1/accounts/{account}/subscriptions"),
            json!({ "licenseType": "Standard", "quantity": licences }),
        )
        .await
        .expect(201);
    let token = platform
        .post(
            &format!("/v1/accounts/{account}/scim-tokens"),
            json!({ "name": "Entra provisioning" }),
        )
        .await
        .expect(201);
    World {
        token: token.body["key"].as_str().unwrap().to_owned(),
        portal,
        account,
    }
}

#[track_caller]
fn scim_error(reply: &Reply, status: u16, scim_type: Option<&str>) {
    assert_eq!(reply.status.as_u16(), status, "{:#}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("application/scim+json"),
        "SCIM errors are application/scim+json"
    );
    assert_eq!(
        reply.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(reply.body["status"], status.to_string());
    assert_eq!(
        reply.body["scimType"].as_str(),
        scim_type,
        "{:#}",
        reply.body
    );
    assert!(reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

async fn the_outside_conformance_suite_passes(backend: Backend) {
    let w = world(backend, 10_000).await;
    let python = support::scim2_python();
    let scim = w.scim();
    let base = scim.base.clone();
    let token = w.token.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-c", support::SCIM2_CLI, "--url", &base, "test"])
            // The header through the environment, as scim2-cli advises: not on a command line.
            .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {token}"))
            .output()
            .expect("run scim2-cli")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    let failures: Vec<&str> = report
        .lines()
        .filter(|line| line.starts_with("ERROR") || line.starts_with("CRITICAL"))
        .collect();
    assert!(
        output.status.success() && failures.is_empty(),
        "scim2-tester reported failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let passed = report.lines().filter(|l| l.starts_with("SUCCESS")).count();
    assert!(
        passed >= 100,
        "the suite ran its checks ({passed} passed):\n{report}"
    );
    w.portal.stop().await;
}

fn substitute(text: &str, saved: &[(String, String)]) -> String {
    saved.iter().fold(text.to_owned(), |text, (name, id)| {
        text.replace(&format!("{{{name}}}"), id)
    })
}

async fn entra_request_shapes_are_answered_as_entra_expects(backend: Backend) {
    let w = world(backend, 10).await;
    let scim = w.scim();
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/entra-scim-requests.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut saved: Vec<(String, String)> = Vec::new();
    let mut answers = std::collections::HashMap::new();
    for step in fixture["steps"].as_array().unwrap() {
        let name = step["name"].as_str().unwrap();
        let path = substitute(step["path"].as_str().unwrap(), &saved);
        let body = step
            .get("body")
            .map(|b| serde_json::from_str::<Value>(&substitute(&b.to_string(), &saved)).unwrap());
        let method = Method::from_bytes(step["method"].as_str().unwrap().as_bytes()).unwrap();
        let reply = scim.send(method, &path, body, &[]).await;
        assert_eq!(
            reply.status.as_u16() as u64,
            step["status"].as_u64().unwrap(),
            "{name}: {:#}",
            reply.body
        );
        if reply.status.is_success() && reply.status.as_u16() != 204 {
            assert_eq!(
                reply.header("content-type"),
                Some("application/scim+json"),
                "{name}"
            );
        }
        if let Some(total) = step.get("total") {
            assert_eq!(
                reply.body["totalResults"], *total,
                "{name}: {:#}",
                reply.body
            );
        }
        if let Some(save) = step["save"].as_str() {
            saved.push((
                save.to_owned(),
                reply.body["id"].as_str().unwrap().to_owned(),
            ));
        }
        answers.insert(name.to_owned(), reply);
    }
    let created = &answers["create user"];
    assert!(
        created
            .header("etag")
            .is_some_and(|e| e.starts_with("W/\""))
    );
    assert_eq!(
        created.body["meta"]["location"],
        format!(
            "{}/Users/{}",
            scim.base,
            created.body["id"].as_str().unwrap()
        )
    );
    assert_eq!(
        created.body["phoneNumbers"],
        json!([{ "type": "mobile", "value": "+1 (425) 555-0100" }, { "type": "work", "value": "425-555-0199" }]),
        "numbers kept exactly as sent"
    );
    let updated = &answers["replace without a path, dotted keys"].body;
    assert_eq!(updated["name"]["givenName"], "Updated");
    assert_eq!(updated["name"]["familyName"], "updatedFamilyName");
    assert_eq!(updated["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(
        updated["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Support"
    );
    assert_eq!(answers["disable user"].body["active"], false);
    assert_eq!(
        answers["a disabled user is still returned"].body["Resources"][0]["active"],
        false
    );
    let group = &answers["get group"].body;
    assert!(
        group.get("members").is_none(),
        "excludedAttributes=members: {group:#}"
    );
    let user2 = &saved.iter().find(|(n, _)| n == "user2").unwrap().1;
    assert_eq!(
        answers["update group, remove members by value"].body["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [user2.as_str()]
    );
    assert_eq!(
        answers["update group, non-member attributes"].body["displayName"],
        "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    );

    // What the REST API shows of what Entra provisioned: the login from the userName as
    // created, E.164 numbers in the portal's fields, disabled, provisioned by SCIM.
    let users = w
        .portal
        .platform()
        .all_pages(&format!("/v1/accounts/{}/users", w.account))
        .await;
    let user = users
        .iter()
        .find(|u| u["id"] == *user2)
        .expect("the second user is visible to the REST API");
    assert_eq!(user["provisionedBy"], "Scim");
    assert_eq!(user["userId"], "Test_User_2@testuser.com");
    let mobile = &saved.iter().find(|(n, _)| n == "mobile").unwrap().1;
    let mobile = users.iter().find(|u| u["id"] == *mobile).unwrap();
    assert_eq!(
        mobile["userId"], "+447700900999",
        "the login is the mobile number"
    );
    assert_eq!(mobile["mobileNumber"], "+44 7700 900999");
    assert_eq!(
        (mobile["firstName"].as_str(), mobile["state"].as_str()),
        (Some("User"), Some("Invited")),
        "no name sent: a placeholder name, and invited by text all the same"
    );
    w.portal.stop().await;
}

async fn a_user_with_no_licence_free_is_created_waiting_and_takes_one_when_freed(backend: Backend) {
    let w = world(backend, 1).await;
    let scim = w.scim();
    let platform = w.portal.platform();
    let user = |name: &str| {
        json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("{name}@contoso.example"),
                "name": { "givenName": name, "familyName": "Test" }, "active": true })
    };
    let first = scim.post("/Users", user("ann")).await.expect(201);
    let second = scim.post("/Users", user("bob")).await.expect(201);
    let first_id = first.body["id"].as_str().unwrap();
    let second_id = second.body["id"].as_str().unwrap();
    let rest = |id: &str| format!("/v1/users/{id}");
    let ann = platform.get(&rest(first_id)).await.expect(200);
    assert_eq!(ann.body["waitingForLicense"], false);
    assert_eq!(ann.body["state"], "Invited");
    let bob = platform.get(&rest(second_id)).await.expect(200);
    assert_eq!(
        bob.body["waitingForLicense"], true,
        "created, not refused: {:#}",
        bob.body
    );
    assert_eq!(
        bob.body["state"], "Prepared",
        "not invited without a licence"
    );
    let subscriptions = platform
        .get(&format!("/v1/accounts/{}/subscriptions", w.account))
        .await
        .expect(200);
    assert_eq!(
        subscriptions.body["items"][0]["assigned"], 1,
        "a waiting user holds no licence"
    );

    // The export says so too.
    let export = platform
        .client
        .get(format!(
            "{}/v1/accounts/{}/users/export",
            platform.base, w.account
        ))
        .bearer_auth(platform.key.as_deref().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut workbook: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(export.to_vec())).unwrap();
    use calamine::Reader;
    let rows: Vec<Vec<String>> = workbook
        .worksheet_range("Users")
        .unwrap()
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    let licence = rows[0].iter().position(|h| h == "Licence").unwrap();
    let bob_row = rows.iter().find(|r| r[0] == "bob@contoso.example").unwrap();
    assert_eq!(bob_row[licence], "Waiting for a licence");
    assert_eq!(
        bob_row[rows[0].iter().position(|h| h == "Provisioned by").unwrap()],
        "SCIM"
    );

    // A waiting user is not invited by hand: it has no licence.
    let refused = platform
        .post(
            &format!("/v1/accounts/{}/users/send-invitations", w.account),
            json!({ "users": [second_id] }),
        )
        .await
        .expect_problem(409, "license-exhausted");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("waits for a Standard licence"),
        "{:#}",
        refused.body
    );

    // Deleting the first user frees its licence: the second takes it and is invited.
    scim.delete(&format!("/Users/{first_id}")).await.expect(204);
    let bob = platform.get(&rest(second_id)).await.expect(200);
    assert_eq!(bob.body["waitingForLicense"], false, "{:#}", bob.body);
    assert_eq!(bob.body["state"], "Invited");
    let outbox = platform.get("/v1/outbox").await.expect(200);
    assert!(
        outbox.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["to"] == "bob@contoso.example"),
        "bob's activation was queued"
    );

    // A bigger subscription serves the next one waiting.
    let carol = scim.post("/Users", user("carol")).await.expect(201);
    let carol_id = carol.body["id"].as_str().unwrap();
    assert_eq!(
        platform.get(&rest(carol_id)).await.body["waitingForLicense"],
        true
    );
    let subscription = subscriptions.body["items"][0]["id"].as_str().unwrap();
    let etag = platform
        .get(&format!("/v1/subscriptions/{subscription}"))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    platform
        .patch(
            &format!("/v1/subscriptions/{subscription}"),
            json!({ "quantity": 2 }),
            Some(&etag),
        )
        .await
        .expect(200);
    let carol = platform.get(&rest(carol_id)).await.expect(200);
    assert_eq!(carol.body["waitingForLicense"], false);
    assert_eq!(carol.body["state"], "Invited");

    // A waiting user moved (through the REST API) to a type with a licence free takes it.
    let dave = scim.post("/Users", user("dave")).await.expect(201);
    let dave_id = dave.body["id"].as_str().unwrap();
    platform
        .post(
            &format!("/v1/accounts/{}/subscriptions", w.account),
            json!({ "licenseType": "Premium", "quantity": 1 }),
        )
        .await
        .expect(201);
    let etag = platform
        .get(&rest(dave_id))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let moved = platform
        .patch(
            &rest(dave_id),
            json!({ "licenseType": "Premium" }),
            Some(&etag),
        )
        .await
        .expect(200);
    assert_eq!(moved.body["licenseType"], "Premium");
    assert_eq!(moved.body["waitingForLicense"], false, "the answer says so");
    let dave = platform.get(&rest(dave_id)).await.expect(200);
    assert_eq!(dave.body["waitingForLicense"], false, "{:#}", dave.body);
    assert_eq!(dave.body["state"], "Invited");
    w.portal.stop().await;
}

async fn scim_and_operator_managed_users_never_share_a_login(backend: Backend) {
    let w = world(backend, 10).await;
    let scim = w.scim();
    let platform = w.portal.platform();
    // A user portal-operator manages (it sends an externalRef), then Entra provisions the same
    // person: refused, naming who holds the login.
    platform
        .post(
            &format!("/v1/accounts/{}/users", w.account),
            json!({ "userId": "ann@contoso.example", "firstName": "Ann", "lastName": "Lee",
                    "licenseType": "Standard", "invite": false,
                    "externalRef": "User/team-contoso/ann/2f0c1b7e-0000-4000-8000-000000000001" }),
        )
        .await
        .expect(201);
    let refused = scim
        .post(
            "/Users",
            json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "Ann@Contoso.example", "active": true }),
        )
        .await;
    scim_error(&refused, 409, Some("uniqueness"));
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("managed by portal-operator") && detail.contains("User/team-contoso/ann"),
        "{detail}"
    );
    // SCIM sees only what it provisioned.
    let listed = scim.get("/Users").await.expect(200);
    assert_eq!(listed.body["totalResults"], 0);

    // The other way round: Entra first, then a manifest names the same user ID.
    scim.post(
        "/Users",
        json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob@contoso.example" }),
    )
    .await
    .expect(201);
    let refused = platform
        .post(
            &format!("/v1/accounts/{}/users", w.account),
            json!({ "userId": "bob@contoso.example", "firstName": "Bob", "lastName": "Ray", "licenseType": "Standard" }),
        )
        .await
        .expect_problem(409, "user-id-conflict");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("provisioned by an identity provider through SCIM"),
        "{:#}",
        refused.body
    );
    // Two SCIM users with one userName, in any case: refused.
    let twice = scim
        .post(
            "/Users",
            json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "BOB@contoso.example" }),
        )
        .await;
    scim_error(&twice, 409, Some("uniqueness"));
    w.portal.stop().await;
}

async fn bad_input_gets_scim_errors_and_other_accounts_see_nothing(backend: Backend) {
    let w = world(backend, 10).await;
    let scim = w.scim();
    let created = scim
        .post(
            "/Users",
            json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ann@contoso.example" }),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();

    for filter in [
        "userName eq",
        "userName equals \"a\"",
        "(userName eq \"a\"",
        "userName eq unquoted",
        "favouriteColour eq \"red\"",
    ] {
        let reply = scim
            .get(&format!("/Users?filter={}", urlencode(filter)))
            .await;
        scim_error(&reply, 400, Some("invalidFilter"));
    }
    scim_error(
        &scim.get("/Users?attributes=favouriteColour").await,
        400,
        Some("invalidValue"),
    );
    scim_error(
        &scim.get("/Users?colour=red").await,
        400,
        Some("invalidValue"),
    );
    scim_error(
        &scim
            .post(
                "/Users",
                json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "b@contoso.example", "favouriteColour": "red" }),
            )
            .await,
        400,
        Some("invalidSyntax"),
    );
    scim_error(
        &scim
            .post(
                "/Users",
                json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"] }),
            )
            .await,
        400,
        Some("invalidValue"),
    );
    scim_error(
        &scim
            .send(
                Method::PATCH,
                &format!("/Users/{id}"),
                Some(json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{ "op": "frobnicate", "path": "active" }] })),
                &[],
            )
            .await,
        400,
        Some("invalidSyntax"),
    );
    scim_error(
        &scim
            .send(
                Method::PATCH,
                &format!("/Users/{id}"),
                Some(json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{ "op": "replace", "path": "active", "value": true }] })),
                &[("if-match", "W/\"999\"")],
            )
            .await,
        412,
        None,
    );
    // Not JSON, and too large.
    let raw = |body: Vec<u8>| {
        scim.client
            .post(format!("{}/Users", scim.base))
            .bearer_auth(&w.token)
            .header("content-type", "application/scim+json")
            .body(body)
            .send()
    };
    let not_json = raw(b"{ userName: ".to_vec()).await.unwrap();
    assert_eq!(not_json.status(), 400);
    let too_large = raw(vec![b' '; 2 * 1024 * 1024]).await.unwrap();
    assert_eq!(too_large.status(), 413);
    assert_eq!(too_large.headers()["content-type"], "application/scim+json");
    scim_error(&scim.get("/Users/does-not-exist").await, 404, None);
    scim_error(&scim.get("/Widgets").await, 404, None);
    scim_error(
        &scim.send(Method::DELETE, "/Schemas", None, &[]).await,
        405,
        None,
    );

    // Tokens: none, a plain API key, and a SCIM token used on the REST API.
    let anonymous = Api {
        key: None,
        ..scim.clone()
    };
    scim_error(&anonymous.get("/Users").await, 401, None);
    let platform_key = Api {
        key: w.portal.platform().key,
        ..scim.clone()
    };
    scim_error(&platform_key.get("/Users").await, 401, None);
    let on_rest = Api {
        key: Some(w.token.clone()),
        ..w.portal.platform()
    };
    on_rest
        .get(&format!("/v1/accounts/{}", w.account))
        .await
        .expect_problem(401, "unauthenticated");

    // Another account's token sees nothing of this one.
    let platform = w.portal.platform();
    let other = platform
        .account(json!({ "type": "Partner", "displayName": "Fabrikam" }))
        .await;
    let other_token = platform
        .post(
            &format!("/v1/accounts/{other}/scim-tokens"),
            json!({ "name": "other" }),
        )
        .await
        .expect(201)
        .body["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_scim = Api {
        key: Some(other_token),
        ..scim.clone()
    };
    assert_eq!(
        other_scim.get("/Users").await.expect(200).body["totalResults"],
        0
    );
    scim_error(&other_scim.get(&format!("/Users/{id}")).await, 404, None);
    scim_error(
        &other_scim
            .send(Method::DELETE, &format!("/Users/{id}"), None, &[])
            .await,
        404,
        None,
    );
    scim.get(&format!("/Users/{id}")).await.expect(200);

    // A revoked token stops working.
    let tokens = platform
        .get(&format!("/v1/accounts/{}/scim-tokens", w.account))
        .await
        .expect(200);
    let token_id = tokens.body["items"][0]["id"].as_str().unwrap();
    assert!(
        tokens.body["items"][0].get("key").is_none(),
        "secrets are shown once"
    );
    platform
        .delete(&format!(
            "/v1/accounts/{}/scim-tokens/{token_id}",
            w.account
        ))
        .await
        .expect(204);
    scim_error(&scim.get("/Users").await, 401, None);
    w.portal.stop().await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
