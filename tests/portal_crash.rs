//! The portal binary killed with SIGKILL in the middle of a burst of writes, then restarted on
//! the same database: every acknowledged write is there, the database is consistent, and
//! retrying the unacknowledged requests with their Idempotency-Keys creates nothing twice.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::processes::PortalProcess;
use support::{Api, Backend, pg_database, wait_for};

on_both_backends!(
    acknowledged_writes_survive_sigkill_and_retries_do_not_duplicate,
    clients_that_hang_up_mid_write_leave_the_portal_writing
);

fn api(base: &str, key: &str) -> Api {
    Api {
        base: base.to_owned(),
        key: Some(key.to_owned()),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    }
}

fn invitation_body(n: usize) -> serde_json::Value {
    json!({
        "email": format!("burst{n}@contoso.example"), "firstName": "Burst", "lastName": format!("N{n}"),
        "delivery": if n % 2 == 0 { "Email" } else { "Link" }, "externalRef": format!("AdminInvitation/burst/{n}"),
    })
}

async fn acknowledged_writes_survive_sigkill_and_retries_do_not_duplicate(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("portal.db").display()),
        Backend::Postgres => pg_database().await,
    };
    let key = portal_operator::portal::new_api_key();
    let mut server = PortalProcess::start(&database_url, &key).await;
    let platform = api(&server.base, &key);
    let partner = platform
        .account(json!({ "type": "Partner", "displayName": "Northwind" }))
        .await;
    let client = platform
        .account(json!({ "type": "Client", "parentId": partner, "displayName": "Contoso" }))
        .await;
    let path = format!("/v1/accounts/{client}/invitations");

    // Eight writers, each sending its own numbered requests until the server dies.
    let acknowledged: Arc<Mutex<BTreeMap<usize, String>>> = Arc::default();
    let attempted: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..8 {
        let platform = platform.clone();
        let path = path.clone();
        let acknowledged = acknowledged.clone();
        let attempted = attempted.clone();
        writers.push(tokio::spawn(async move {
            for round in 0.. {
                let n = round * 8 + writer;
                attempted.lock().unwrap().insert(n);
                let key = format!("burst-{n}");
                let reply = platform
                    .client
                    .post(format!("{}{path}", platform.base))
                    .bearer_auth(platform.key.as_deref().unwrap())
                    .header("idempotency-key", &key)
                    .json(&invitation_body(n))
                    .send()
                    .await;
                match reply {
                    Ok(reply) if reply.status().as_u16() == 201 => {
                        let body: serde_json::Value = reply.json().await.unwrap();
                        acknowledged
                            .lock()
                            .unwrap()
                            .insert(n, body["id"].as_str().unwrap().to_owned());
                    }
                    Ok(reply) => panic!("unexpected {} during the burst", reply.status()),
                    Err(_) => return,
                }
            }
        }));
    }
    wait_for(
        Duration::from_secs(30),
        "some writes to be acknowledged",
        || {
            let count = acknowledged.lock().unwrap().len();
            async move { (count >= 40).then_some(()) }
        },
    )
    .await;
    server.kill().await;
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(
        attempted.len() > acknowledged.len(),
        "the kill must land with requests in flight ({} attempted, {} acknowledged)",
        attempted.len(),
        acknowledged.len()
    );

    server.restart().await;
    let platform = api(&server.base, &key);
    for (n, id) in &acknowledged {
        let reply = platform
            .get(&format!("/v1/invitations/{id}"))
            .await
            .expect(200);
        assert_eq!(reply.body["email"], format!("burst{n}@contoso.example"));
    }
    // Retrying every attempted request with its key: acknowledged ones replay, the rest run now.
    for n in &attempted {
        let reply = platform
            .send(
                Method::POST,
                &path,
                Some(invitation_body(*n)),
                &[("idempotency-key", &format!("burst-{n}"))],
            )
            .await;
        // A request committed just before the kill, its response lost, replays too: its
        // Idempotency-Key was recorded in the same transaction as the invitation.
        assert_eq!(
            reply.status.as_u16(),
            201,
            "retrying request {n}: {:#}",
            reply.body
        );
        if let Some(id) = acknowledged.get(n) {
            assert_eq!(
                reply.body["id"],
                id.as_str(),
                "a replay returns the first invitation"
            );
        }
    }
    let invitations = platform.all_pages(&path).await;
    let refs: BTreeSet<String> = invitations
        .iter()
        .map(|i| i["externalRef"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(refs.len(), invitations.len(), "no invitation twice");
    assert_eq!(
        invitations.len(),
        attempted.len(),
        "every attempted request exists exactly once after the retries"
    );
    // Every invitation has its creation event, and every Email invitation its message.
    let events = platform.all_events().await;
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "event ids strictly increase"
    );
    let created: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["type"] == "invitation.created")
        .map(|e| e["objectId"].as_str().unwrap())
        .collect();
    for invitation in &invitations {
        assert!(
            created.contains(invitation["id"].as_str().unwrap()),
            "creation event for {}",
            invitation["id"]
        );
    }
    let outbox = platform.all_pages("/v1/outbox").await.len();
    let by_email = invitations
        .iter()
        .filter(|i| i["delivery"] == "Email")
        .count();
    assert_eq!(
        outbox, by_email,
        "one message per Email invitation, none for the others"
    );
    drop(server);
}

/// Clients that hang up while their create is in flight (an operator killed mid-request) cancel
/// the server's handler wherever it is, the write lock held; the portal must go on writing.
async fn clients_that_hang_up_mid_write_leave_the_portal_writing(backend: Backend) {
    let portal = support::TestPortal::start(backend).await;
    let platform = portal.platform();
    let account = platform
        .account(json!({ "type": "Partner", "displayName": "Northwind" }))
        .await;
    let path = format!("/v1/accounts/{account}/invitations");
    let url = format!("{}{path}", portal.base);
    let mut hung_up = 0;
    for round in 0..40 {
        // Each round: 8 creates, each dropped after a different short while.
        let mut attempts = Vec::new();
        for n in 0..8 {
            let client = reqwest::Client::new();
            let request = client
                .post(&url)
                .bearer_auth(&portal.platform_key)
                .header("idempotency-key", format!("hang-up-{round}-{n}"))
                .json(&invitation_body(round * 8 + n))
                .send();
            let after = Duration::from_micros(200 + (round as u64 * 97 + n as u64 * 331) % 3_000);
            attempts.push(tokio::spawn(async move {
                tokio::time::timeout(after, request).await.is_err()
            }));
        }
        for attempt in attempts {
            if attempt.await.unwrap() {
                hung_up += 1;
            }
        }
    }
    assert!(hung_up > 0, "no request was cut off");
    // Whatever was cut off, a create now goes through.
    let reply = platform
        .send(
            Method::POST,
            &path,
            Some(invitation_body(10_000)),
            &[("idempotency-key", "after-the-hang-ups")],
        )
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{:#}", reply.body);
    portal.stop().await;
}
