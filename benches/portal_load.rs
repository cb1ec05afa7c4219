//! Load figures for the reference portal, over real HTTP on 127.0.0.1 against a SQLite file and
//! a PostgreSQL cluster with fsync on. Run: `cargo bench --bench portal_load` (add a scenario
//! name — creates, list, accept — to run only that one). Each scenario runs three times on a
//! fresh portal; the median run is reported. Client and server share this machine's two cores.

#[path = "../tests/support/mod.rs"]
#[allow(unused_macros)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Backend, OidcProvider, Options, TestPortal};

const RUNS: usize = 3;
/// Requests sent and not counted before a latency measurement (connection set-up, first plans).
const WARM_UP: usize = 20;

fn cold_first_ms(cold: &[Duration]) -> f64 {
    cold.first()
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

struct Figures {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

fn figures(mut latencies: Vec<Duration>, wall: Duration) -> Figures {
    latencies.sort();
    Figures {
        per_second: latencies.len() as f64 / wall.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
    }
}

fn median(mut runs: Vec<Figures>, key: impl Fn(&Figures) -> f64) -> Figures {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    runs.swap_remove(runs.len() / 2)
}

/// A partner with one client, and the platform's API.
async fn setup(portal: &TestPortal) -> String {
    let platform = portal.platform();
    let partner = platform
        .account(json!({ "type": "Partner", "displayName": "Northwind" }))
        .await;
    platform
        .account(json!({ "type": "Client", "parentId": partner, "displayName": "Contoso" }))
        .await
}

async fn creates(backend: Backend, clients: usize, total: usize) -> Figures {
    let portal = TestPortal::start(backend).await;
    let account = setup(&portal).await;
    let path = format!("/v1/accounts/{account}/invitations");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let api = portal.platform();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for n in 0..total / clients {
                let id = format!("{client}-{n}");
                let body = json!({ "email": format!("user{id}@contoso.example"), "firstName": "Load", "lastName": "Test",
                                   "externalRef": format!("AdminInvitation/load/{id}") });
                let sent = Instant::now();
                let headers: Vec<(&str, &str)> = if std::env::var_os("NO_IDEM").is_some() { vec![] } else { vec![("idempotency-key", id.as_str())] };
                let reply = api.send(reqwest::Method::POST, &path, Some(body), &headers).await;
                assert_eq!(reply.status.as_u16(), 201, "{:#}", reply.body);
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let wall = started.elapsed();
    portal.stop().await;
    figures(latencies, wall)
}

/// Writes `count` invitations straight into the database (the API path is measured above).
async fn seed_invitations(database_url: &str, account: &str, count: usize) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url).await.unwrap();
    let now = 1_795_000_000_000i64;
    let ids: Vec<String> = (0..count)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let mut tx = pool.begin().await.unwrap();
    for chunk in ids.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO invitations (id, account_id, email, email_canonical, first_name, last_name, roles, delivery, \
             state, created_by, created_at, expires_at, sends, version) VALUES ",
        );
        for (i, _) in chunk.iter().enumerate() {
            let b = i * 4;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, 'Seed', 'Row', 'AccountOwner', 'Email', 'Pending', 'bench', {now}, {}, 1, 1)",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                now + 48 * 3_600_000 * 1000
            ));
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            let email = format!("{id}@seed.example");
            query = query
                .bind(id.clone())
                .bind(account.to_owned())
                .bind(email.clone())
                .bind(email);
        }
        query.execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    // A production table has statistics; give the seeded one its own, as autovacuum would.
    sqlx::query("ANALYZE invitations")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    ids
}

async fn list_pages(backend: Backend) -> Figures {
    let portal = TestPortal::start(backend).await;
    let account = setup(&portal).await;
    let ids = seed_invitations(&portal.database_url, &account, 100_000).await;
    let api = portal.platform();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut latencies = Vec::new();
    let mut started = Instant::now();
    let mut cold = Vec::new();
    for n in 0..(WARM_UP + 400) {
        if n == WARM_UP {
            cold = std::mem::take(&mut latencies);
            started = Instant::now();
        }
        // Pages from all over the 100,000: the first, and after a spread of cursors.
        let path = if n == 0 {
            format!("/v1/accounts/{account}/invitations?limit=100")
        } else {
            use base64::Engine;
            let cursor = engine.encode(&ids[(n * 7919) % (ids.len() - 100)]);
            format!("/v1/accounts/{account}/invitations?limit=100&cursor={cursor}")
        };
        let sent = Instant::now();
        let reply = api.get(&path).await;
        latencies.push(sent.elapsed());
        assert_eq!(reply.status.as_u16(), 200);
        assert_eq!(reply.body["items"].as_array().unwrap().len(), 100);
    }
    let wall = started.elapsed();
    cold.sort();
    eprintln!(
        "  {backend:?} list: first request {:.1} ms, slowest of {WARM_UP} warm-up requests {:.1} ms",
        cold_first_ms(&cold),
        cold.last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or_default()
    );
    if std::env::var_os("SHOW_SLOWEST").is_some() {
        let mut indexed: Vec<(usize, Duration)> = latencies.iter().copied().enumerate().collect();
        indexed.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
        eprintln!("slowest: {:?}", &indexed[..6]);
    }
    portal.stop().await;
    figures(latencies, wall)
}

async fn accepts(backend: Backend, idp: &OidcProvider) -> Figures {
    let portal = TestPortal::start_with_options(
        backend,
        Options {
            oidc: Some(idp.issuer.clone()),
            accept_attempts_per_minute: Some(1_000_000),
            ..Options::default()
        },
    )
    .await;
    let account = setup(&portal).await;
    let api = portal.platform();
    let mut pairs = Vec::new();
    for n in 0..200 {
        let reply = api
            .post(
                &format!("/v1/accounts/{account}/invitations"),
                json!({ "email": format!("acc{n}@contoso.example"), "firstName": "A", "lastName": "B", "delivery": "Link" }),
            )
            .await
            .expect(201);
        let token = reply.body["link"]
            .as_str()
            .unwrap()
            .split_once("#token=")
            .unwrap()
            .1
            .to_owned();
        let id_token = idp.id_token(json!({ "sub": format!("person-{n}") })).await;
        pairs.push((token, id_token));
    }
    let anonymous = portal.anonymous();
    let mut latencies = Vec::new();
    let started = Instant::now();
    for (token, id_token) in pairs {
        let sent = Instant::now();
        let reply = anonymous
            .post(
                "/v1/invitations/accept",
                json!({ "token": token, "idToken": id_token }),
            )
            .await;
        latencies.push(sent.elapsed());
        assert_eq!(reply.status.as_u16(), 200, "{:#}", reply.body);
    }
    let wall = started.elapsed();
    portal.stop().await;
    figures(latencies, wall)
}

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let scenarios: Vec<&String> = only
        .iter()
        .filter(|o| *o != "sqlite" && *o != "postgres")
        .collect();
    let wanted = |name: &str| scenarios.is_empty() || scenarios.iter().any(|o| *o == name);
    support::durable_pg();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let idp = if wanted("accept") {
            Some(Arc::new(OidcProvider::start().await))
        } else {
            None
        };
        println!("| scenario | backend | throughput (req/s) | p50 (ms) | p99 (ms) |");
        println!("|---|---|---:|---:|---:|");
        let backends: Vec<Backend> = [Backend::Sqlite, Backend::Postgres]
            .into_iter()
            .filter(|b| {
                let named = |n: &str| only.iter().any(|o| o == n);
                match b {
                    Backend::Sqlite => !named("postgres") || named("sqlite"),
                    Backend::Postgres => !named("sqlite") || named("postgres"),
                }
            })
            .collect();
        for backend in backends {
            let name = if backend == Backend::Sqlite {
                "SQLite"
            } else {
                "PostgreSQL"
            };
            let report = |scenario: &str, f: Figures| {
                println!(
                    "| {scenario} | {name} | {:.0} | {:.2} | {:.2} |",
                    f.per_second, f.p50_ms, f.p99_ms
                );
            };
            if wanted("creates") {
                let mut runs = Vec::new();
                for _ in 0..RUNS {
                    runs.push(creates(backend, 1, 400).await);
                }
                report(
                    "invitation create, 1 client",
                    median(runs, |f| f.per_second),
                );
                let mut runs = Vec::new();
                for _ in 0..RUNS {
                    runs.push(creates(backend, 16, 2000).await);
                }
                report(
                    "invitation create, 16 clients",
                    median(runs, |f| f.per_second),
                );
            }
            if wanted("list") {
                let mut runs = Vec::new();
                for _ in 0..RUNS {
                    runs.push(list_pages(backend).await);
                }
                report(
                    "list page of 100 (100,000 invitations in the account)",
                    median(runs, |f| f.p99_ms),
                );
            }
            if let Some(idp) = &idp {
                let mut runs = Vec::new();
                for _ in 0..RUNS {
                    runs.push(accepts(backend, idp).await);
                }
                report(
                    "accept (ID token verified, admin + grants written)",
                    median(runs, |f| f.p99_ms),
                );
            }
        }
    });
}
