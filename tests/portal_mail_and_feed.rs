//! Email over real SMTP (maildev), the outbox, account managers and the change feed, on SQLite
//! and PostgreSQL.

mod support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use support::{Backend, Maildev, OidcProvider, Options, TestPortal, wait_for};

on_both_backends!(
    invitation_email_arrives_over_smtp_and_its_link_accepts,
    without_smtp_mail_waits_in_the_outbox_for_the_platform,
    account_manager_activates_with_the_emailed_temporary_password,
    account_manager_email_is_unique_and_fields_are_checked,
    account_manager_activation_expires_and_resend_issues_a_new_password,
    change_feed_resumes_from_a_cursor_and_is_scoped_to_the_callers_accounts,
    change_feed_streams_server_sent_events_including_expiry,
);

async fn partner_and_client(portal: &TestPortal) -> (String, String) {
    let platform = portal.platform();
    let partner = platform
        .account(json!({ "type": "Partner", "displayName": "Northwind" }))
        .await;
    let client = platform
        .account(json!({ "type": "Client", "parentId": partner, "displayName": "Contoso" }))
        .await;
    (partner, client)
}

fn body_text(email: &Value) -> String {
    email["text"].as_str().unwrap_or_default().to_owned()
}

async fn invitation_email_arrives_over_smtp_and_its_link_accepts(backend: Backend) {
    let smtp = Maildev::start().await;
    let idp = OidcProvider::start().await;
    let portal = TestPortal::start_with_options(
        backend,
        Options {
            oidc: Some(idp.issuer.clone()),
            smtp_url: Some(smtp.smtp_url()),
            ..Options::default()
        },
    )
    .await;
    let (_, client) = partner_and_client(&portal).await;
    let platform = portal.platform();
    let created = platform
        .post(
            &format!("/v1/accounts/{client}/invitations"),
            json!({ "email": "gina@contoso.example", "firstName": "Gina", "lastName": "Park" }),
        )
        .await
        .expect(201);
    assert!(
        created.body.get("link").is_none(),
        "email delivery never returns the link"
    );
    let email = smtp.wait_for_email_to("gina@contoso.example").await;
    assert_eq!(email["subject"], "You are invited to administer Contoso");
    let text = body_text(&email);
    assert!(
        text.contains("Hello Gina"),
        "the greeting is missing (the email is not printed: it carries the link)"
    );
    assert!(
        text.contains("private window"),
        "the email carries the seeds' advice (not printed: it carries the link)"
    );
    let token = text
        .split("#token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the email carries the link")
        .to_owned();
    // Delivered messages are erased from the outbox: no link at rest.
    let outbox = wait_for(
        Duration::from_secs(10),
        "the outbox to record delivery",
        || async {
            let reply = platform.get("/v1/outbox").await.expect(200);
            let message = reply.body["items"][0].clone();
            message["deliveredAt"].is_string().then_some(message)
        },
    )
    .await;
    assert_eq!(outbox["body"], "");
    let id_token = idp.id_token(json!({ "sub": "gina" })).await;
    portal
        .anonymous()
        .post(
            "/v1/invitations/accept",
            json!({ "token": token, "idToken": id_token }),
        )
        .await
        .expect(200);
    portal.stop().await;
}

async fn without_smtp_mail_waits_in_the_outbox_for_the_platform(backend: Backend) {
    let portal = TestPortal::start(backend).await;
    let (partner, client) = partner_and_client(&portal).await;
    let platform = portal.platform();
    platform
        .post(
            &format!("/v1/accounts/{client}/invitations"),
            json!({ "email": "hal@contoso.example", "firstName": "Hal", "lastName": "Ode" }),
        )
        .await
        .expect(201);
    let outbox = platform.get("/v1/outbox").await.expect(200);
    let message = &outbox.body["items"][0];
    assert_eq!(message["to"], "hal@contoso.example");
    assert!(
        message["body"]
            .as_str()
            .unwrap()
            .contains("/invitations/accept#token=")
    );
    assert_eq!(message["deliveredAt"], Value::Null);
    let (_, owner_key) = platform
        .admin_with_key(&partner, "olivia@northwind.example", &["AccountOwner"])
        .await;
    portal
        .api(&owner_key)
        .get("/v1/outbox")
        .await
        .expect_problem(403, "forbidden");
    // No live credential at rest: once the invitation can no longer be accepted, the link is
    // gone from the outbox, in the answer at once and in the database by the next sweep.
    portal
        .clock
        .advance(std::time::Duration::from_secs(48 * 3600));
    let outbox = platform.get("/v1/outbox").await.expect(200);
    assert_eq!(outbox.body["items"][0]["body"], "", "{:#}", outbox.body);
    sqlx::any::install_default_drivers();
    let database = sqlx::AnyPool::connect(&portal.database_url).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM outbox")
            .fetch_all(&database)
            .await
            .unwrap();
        if bodies.iter().all(|b| !b.contains("#token=")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the link stayed in the outbox table"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    database.close().await;
    portal.stop().await;
}

async fn account_manager_activates_with_the_emailed_temporary_password(backend: Backend) {
    let smtp = Maildev::start().await;
    let portal = TestPortal::start_with_options(
        backend,
        Options {
            smtp_url: Some(smtp.smtp_url()),
            ..Options::default()
        },
    )
    .await;
    let (_, client) = partner_and_client(&portal).await;
    let platform = portal.platform();
    let created = platform
        .post(
            &format!("/v1/accounts/{client}/account-managers"),
            json!({ "firstName": "Inès", "lastName": "Roy", "email": "ines@contoso.example", "language": "fr",
                    "externalRef": "AccountManager/team-a/ines/uid-3" }),
        )
        .await
        .expect(201);
    assert_eq!(created.body["state"], "ActivationPending");
    assert_eq!(created.body["language"], "fr");
    let email = smtp.wait_for_email_to("ines@contoso.example").await;
    let text = body_text(&email);
    assert!(
        email["subject"].as_str().unwrap().starts_with("Activez"),
        "French, as asked: {}",
        email["subject"]
    );
    let password = text
        .lines()
        .find_map(|line| line.strip_prefix("Mot de passe temporaire : "))
        .expect("the email carries the temporary password")
        .trim()
        .to_owned();
    assert!(
        text.contains("Nom d'utilisateur : ines@contoso.example"),
        "the username line is missing (the email is not printed: it carries a password)"
    );
    assert!(
        !created.body.to_string().contains(&password),
        "the API never shows the temporary password"
    );
    let anonymous = portal.anonymous();
    anonymous
        .post(
            "/v1/account-managers/activate",
            json!({ "username": "ines@contoso.example", "temporaryPassword": "wrong-password", "newPassword": "a-long-new-password" }),
        )
        .await
        .expect_problem(401, "invalid-credentials");
    anonymous
        .post(
            "/v1/account-managers/activate",
            json!({ "username": "nobody@contoso.example", "temporaryPassword": password, "newPassword": "a-long-new-password" }),
        )
        .await
        .expect_problem(401, "invalid-credentials");
    anonymous
        .post(
            "/v1/account-managers/activate",
            json!({ "username": "ines@contoso.example", "temporaryPassword": password, "newPassword": "short" }),
        )
        .await
        .expect_problem(422, "validation-failed");
    // Two activations at once (the password checks run outside the write): one wins, the other
    // is told the account is already active.
    let activate = |new_password: &'static str| {
        let anonymous = anonymous.clone();
        let password = password.clone();
        tokio::spawn(async move {
            anonymous
                .post(
                    "/v1/account-managers/activate",
                    json!({ "username": "INES@contoso.example", "temporaryPassword": password, "newPassword": new_password }),
                )
                .await
        })
    };
    let (one, other) = (
        activate("a-long-new-password"),
        activate("another-long-password"),
    );
    let mut replies = vec![one.await.unwrap(), other.await.unwrap()];
    replies.sort_by_key(|reply| reply.status.as_u16());
    let conflict = replies.pop().unwrap();
    let active = replies.pop().unwrap().expect(200);
    assert_eq!(active.body["state"], "Active");
    conflict.expect_problem(409, "already-active");
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(
        platform
            .get(&format!("/v1/account-managers/{id}"))
            .await
            .expect(200)
            .body["state"],
        "Active"
    );
    portal.stop().await;
}

async fn account_manager_email_is_unique_and_fields_are_checked(backend: Backend) {
    let portal = TestPortal::start_with_options(
        backend,
        Options {
            branding_domains: vec![
                "voice.northwind.example".into(),
                "voice.contoso.example".into(),
            ],
            ..Options::default()
        },
    )
    .await;
    let (partner, client) = partner_and_client(&portal).await;
    let platform = portal.platform();
    platform
        .admin_with_key(&partner, "olivia@northwind.example", &["AccountOwner"])
        .await;
    let path = format!("/v1/accounts/{client}/account-managers");
    let manager = |email: &str, extra: Value| {
        let mut body = json!({ "firstName": "Jo", "lastName": "Kim", "email": email, "brandingDomain": "voice.contoso.example" });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    platform
        .post(&path, manager("jo@contoso.example", json!({})))
        .await
        .expect(201);
    platform
        .post(&path, manager("JO@Contoso.example", json!({})))
        .await
        .expect_problem(409, "email-conflict");
    let taken = platform
        .post(&path, manager("olivia@northwind.example", json!({})))
        .await
        .expect_problem(409, "email-conflict");
    assert!(taken.body["detail"].as_str().unwrap().contains("an admin"));
    platform
        .post(
            &path,
            manager("kim@contoso.example", json!({ "language": "de" })),
        )
        .await
        .expect_problem(422, "validation-failed");
    let mut no_domain = manager("kim@contoso.example", json!({}));
    no_domain.as_object_mut().unwrap().remove("brandingDomain");
    let refused = platform
        .post(&path, no_domain)
        .await
        .expect_problem(422, "validation-failed");
    assert_eq!(refused.body["field"], "/brandingDomain");
    platform
        .post(
            &path,
            manager(
                "kim@contoso.example",
                json!({ "brandingDomain": "evil.example" }),
            ),
        )
        .await
        .expect_problem(422, "validation-failed");
    let listed = platform.get(&path).await.expect(200);
    assert_eq!(
        listed.body["items"].as_array().unwrap().len(),
        1,
        "refusals wrote nothing"
    );
    portal.stop().await;
}

async fn account_manager_activation_expires_and_resend_issues_a_new_password(backend: Backend) {
    let portal = TestPortal::start(backend).await;
    let (_, client) = partner_and_client(&portal).await;
    let platform = portal.platform();
    let created = platform
        .post(
            &format!("/v1/accounts/{client}/account-managers"),
            json!({ "firstName": "Lee", "lastName": "Moss", "email": "lee@contoso.example" }),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let password_in_outbox = |index: usize| {
        let platform = platform.clone();
        async move {
            let outbox = platform.get("/v1/outbox").await.expect(200);
            let body = outbox.body["items"][index]["body"]
                .as_str()
                .unwrap()
                .to_owned();
            body.lines()
                .find_map(|line| line.strip_prefix("Temporary password: "))
                .unwrap()
                .trim()
                .to_owned()
        }
    };
    let first = password_in_outbox(0).await;
    portal.clock.advance(Duration::from_secs(72 * 3600));
    assert_eq!(
        platform
            .get(&format!("/v1/account-managers/{id}"))
            .await
            .expect(200)
            .body["state"],
        "ActivationExpired"
    );
    let activate = |password: String| {
        let anonymous = portal.anonymous();
        async move {
            anonymous
                .post(
                    "/v1/account-managers/activate",
                    json!({ "username": "lee@contoso.example", "temporaryPassword": password, "newPassword": "lee-chose-this-one" }),
                )
                .await
        }
    };
    activate(first.clone())
        .await
        .expect_problem(410, "activation-expired");
    let resent = platform
        .post(
            &format!("/v1/account-managers/{id}/resend-activation"),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(resent.body["state"], "ActivationPending");
    assert_eq!(resent.body["activationSends"], 2);
    let second = password_in_outbox(1).await;
    assert_ne!(first, second);
    activate(first)
        .await
        .expect_problem(401, "invalid-credentials");
    activate(second).await.expect(200);
    platform
        .post(
            &format!("/v1/account-managers/{id}/resend-activation"),
            json!({}),
        )
        .await
        .expect_problem(409, "already-active");
    portal.stop().await;
}

async fn change_feed_resumes_from_a_cursor_and_is_scoped_to_the_callers_accounts(backend: Backend) {
    let portal = TestPortal::start(backend).await;
    let (partner, client) = partner_and_client(&portal).await;
    let platform = portal.platform();
    let sibling = platform
        .account(json!({ "type": "Client", "parentId": partner, "displayName": "Fabrikam" }))
        .await;
    let (_, contoso_key) = platform
        .admin_with_key(&client, "carl@contoso.example", &["AccountOwner"])
        .await;
    let invite = |account: String, email: &'static str, reference: &'static str| {
        let platform = platform.clone();
        async move {
            platform
                .post(
                    &format!("/v1/accounts/{account}/invitations"),
                    json!({ "email": email, "firstName": "A", "lastName": "B", "externalRef": reference }),
                )
                .await
                .expect(201)
        }
    };
    let json_page = |api: support::Api, after: i64| async move {
        api.send(
            reqwest::Method::GET,
            &format!("/v1/events?after={after}"),
            None,
            &[("accept", "application/json")],
        )
        .await
        .expect(200)
        .body
    };
    invite(
        client.clone(),
        "one@contoso.example",
        "AdminInvitation/a/one/u1",
    )
    .await;
    let page = json_page(platform.clone(), 0).await;
    let cursor = page["next"].as_i64().unwrap();
    let created: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "invitation.created")
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["externalRef"], "AdminInvitation/a/one/u1");
    assert_eq!(created[0]["objectKind"], "AdminInvitation");
    assert!(
        !created[0].to_string().contains("token"),
        "events carry no secrets"
    );

    invite(
        client.clone(),
        "two@contoso.example",
        "AdminInvitation/a/two/u2",
    )
    .await;
    invite(
        sibling.clone(),
        "three@fabrikam.example",
        "AdminInvitation/b/three/u3",
    )
    .await;
    let later = json_page(platform.clone(), cursor).await;
    let refs: Vec<&str> = later["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["externalRef"].as_str())
        .collect();
    assert_eq!(
        refs,
        ["AdminInvitation/a/two/u2", "AdminInvitation/b/three/u3"],
        "resumes after the cursor, in order"
    );
    // The client's admin sees its own account's events only.
    let scoped = json_page(portal.api(&contoso_key), cursor).await;
    let refs: Vec<&str> = scoped["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["externalRef"].as_str())
        .collect();
    assert_eq!(refs, ["AdminInvitation/a/two/u2"]);
    platform
        .send(
            reqwest::Method::GET,
            "/v1/events?after=banana",
            None,
            &[("accept", "application/json")],
        )
        .await
        .expect_problem(422, "validation-failed");
    portal.stop().await;
}

/// Reads server-sent events until `want` of them have arrived; returns (id, type) pairs.
async fn read_sse(response: reqwest::Response, want: usize) -> Vec<(i64, String)> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.len() < want {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events arrive within 20s")
            .expect("the stream stays open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .and_then(|v| v.parse().ok());
            let kind = block.lines().find_map(|l| l.strip_prefix("event: "));
            if let (Some(id), Some(kind)) = (id, kind) {
                events.push((id, kind.to_owned()));
            }
        }
    }
    events
}

async fn change_feed_streams_server_sent_events_including_expiry(backend: Backend) {
    let portal = TestPortal::start(backend).await;
    let (_, client) = partner_and_client(&portal).await;
    let platform = portal.platform();
    let open = |last_event_id: Option<i64>| {
        let platform = platform.clone();
        async move {
            let mut request = platform
                .client
                .get(format!("{}/v1/events", platform.base))
                .bearer_auth(platform.key.as_deref().unwrap())
                .header("accept", "text/event-stream");
            if let Some(id) = last_event_id {
                request = request.header("last-event-id", id.to_string());
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            response
        }
    };
    let history = read_sse(open(None).await, 2).await;
    assert_eq!(
        history.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        ["account.created", "account.created"]
    );
    let live = open(Some(history[1].0)).await;
    let created = platform
        .post(
            &format!("/v1/accounts/{client}/invitations"),
            json!({ "email": "max@contoso.example", "firstName": "Max", "lastName": "Orr", "expiresAfter": "1h" }),
        )
        .await
        .expect(201);
    assert_eq!(created.body["state"], "Pending");
    portal.clock.advance(Duration::from_secs(3600));
    let events = read_sse(live, 2).await;
    let kinds: Vec<&str> = events.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        kinds,
        ["invitation.created", "invitation.expired"],
        "the sweeper announces the expiry"
    );
    assert!(events[0].0 > history[1].0 && events[1].0 > events[0].0);
    portal.stop().await;
}
