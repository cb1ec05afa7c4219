//! The operator at scale: N AdminInvitations over M Accounts (default 10,000 over 100), all in
//! one process — the Kubernetes API server double (over HTTP, the committed CRDs, admission on
//! every write), the portal on SQLite (over HTTP) and the operator. The objects are created in
//! the double first, then the operator starts; the figure is the time until every invitation is
//! `Pending` with its status' `observedGeneration` (seen by a watch, not by polling).
//!
//! In the same run, on a fresh double and portal with the same objects, a **direct-call
//! baseline** makes the same portal creates and status patches (accounts first, then the
//! invitations, 8 at a time like the operator's per-controller concurrency) with no controller
//! machinery; the ratio of the two is the headline.
//!
//! Run: `cargo bench --bench operator_scale` or `cargo bench --bench operator_scale -- 2000 20`.

#[path = "../tests/support/mod.rs"]
#[allow(unused_macros)]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use portal_operator::crd::{AdminInvitation, AdminInvitationPhase};
use portal_operator::portal_client::{HttpPortal, PortalApi};
use portal_operator::testing::apiserver::ApiServer;
use serde_json::json;
use support::{Backend, TestPortal};

const CONCURRENCY: usize = 8;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let invitations: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let accounts: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("{invitations} AdminInvitations over {accounts} Accounts");
        let operator = operator_run(invitations, accounts).await;
        let peak = peak_rss_mib();
        let baseline = baseline_run(invitations, accounts).await;
        println!(
            "operator: {:.2} s to all Pending; baseline (direct calls): {:.2} s; ratio {:.2}x",
            operator.as_secs_f64(),
            baseline.as_secs_f64(),
            operator.as_secs_f64() / baseline.as_secs_f64()
        );
        println!("peak RSS of the process after the operator run: {peak} MiB");
    });
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

struct World {
    portal: TestPortal,
    kube: ApiServer,
    /// One client for the seeding and the baseline (making one per request loads the TLS roots
    /// each time, which would dominate the baseline).
    client: kube::Client,
}

async fn world(accounts: usize) -> World {
    let portal = TestPortal::start(Backend::Sqlite).await;
    let kube = support::kube_double((0..accounts).map(|a| format!("ns-{a:03}"))).await;
    let client = kube.client();
    World {
        portal,
        kube,
        client,
    }
}

fn dynamic(client: &kube::Client, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "access.portal.dev",
        "v1alpha1",
        kind,
    ));
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// The Accounts and AdminInvitations, created in the double.
async fn seed(kube: &kube::Client, invitations: usize, accounts: usize) {
    for a in 0..accounts {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "access.portal.dev/v1alpha1", "kind": "Account",
            "metadata": { "name": format!("account-{a:03}") },
            "spec": { "displayName": format!("Account {a:03}"), "type": "Partner", "namespaces": [format!("ns-{a:03}")] }
        }))
        .unwrap();
        dynamic(kube, "Account", None)
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
    }
    futures::stream::iter(0..invitations)
        .map(|i| async move {
            let a = i % accounts;
            let namespace = format!("ns-{a:03}");
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "access.portal.dev/v1alpha1", "kind": "AdminInvitation",
                "metadata": { "name": format!("admin-{i:05}"), "namespace": namespace },
                "spec": { "accountRef": { "name": format!("account-{a:03}") },
                          "email": format!("admin-{i:05}@account-{a:03}.example"),
                          "firstName": "Admin", "lastName": format!("Number{i}") }
            }))
            .unwrap();
            dynamic(kube, "AdminInvitation", Some(&namespace))
                .create(&PostParams::default(), &object)
                .await
                .unwrap();
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// Counts the portal's requests by method.
fn counting(portal: &TestPortal) -> (HttpPortal, Arc<BTreeMap<&'static str, AtomicU64>>) {
    let counts: Arc<BTreeMap<&'static str, AtomicU64>> = Arc::new(
        ["GET", "POST", "PATCH", "DELETE"]
            .into_iter()
            .map(|m| (m, AtomicU64::new(0)))
            .collect(),
    );
    let seen = counts.clone();
    let client = HttpPortal::new(&portal.base, &portal.platform_key)
        .unwrap()
        .with_observer(Arc::new(move |method, _| {
            if let Some(count) = seen.get(method.as_str()) {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    (client, counts)
}

/// Waits until every invitation is Pending with its observedGeneration, by watching.
async fn all_pending(kube: &ApiServer, invitations: usize) {
    let api: Api<AdminInvitation> = Api::all(kube.client());
    let mut done: HashSet<String> = HashSet::new();
    let mut stream = kube::runtime::watcher(api, kube::runtime::watcher::Config::default()).boxed();
    while done.len() < invitations {
        let event = stream.try_next().await.unwrap().unwrap();
        let objects = match event {
            kube::runtime::watcher::Event::Apply(o)
            | kube::runtime::watcher::Event::InitApply(o) => {
                vec![o]
            }
            _ => Vec::new(),
        };
        for object in objects {
            let converged = object.status.as_ref().is_some_and(|s| {
                s.phase == Some(AdminInvitationPhase::Pending)
                    && s.observed_generation == object.metadata.generation
            });
            let key = format!(
                "{}/{}",
                object.metadata.namespace.clone().unwrap_or_default(),
                object.metadata.name.clone().unwrap_or_default()
            );
            if converged {
                done.insert(key);
            }
        }
    }
}

async fn operator_run(invitations: usize, accounts: usize) -> Duration {
    let world = world(accounts).await;
    seed(&world.client, invitations, accounts).await;
    world.kube.reset_counters();
    let (portal, counts) = counting(&world.portal);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let operator = tokio::spawn(portal_operator::controller::run(
        world.kube.client(),
        portal,
        Arc::new(portal_operator::controller::metrics::Metrics::default()),
        portal_operator::controller::Config::default(),
        async {
            let _ = stopped.await;
        },
    ));
    all_pending(&world.kube, invitations).await;
    let elapsed = started.elapsed();
    let portal_requests: Vec<String> = counts
        .iter()
        .map(|(method, count)| format!("{method} {}", count.load(Ordering::Relaxed)))
        .collect();
    let mut kube_requests: BTreeMap<String, u64> = BTreeMap::new();
    for ((verb, _resource), count) in world.kube.counters() {
        *kube_requests.entry(verb).or_default() += count;
    }
    println!(
        "operator run: {:.2} s; portal requests: {}; API server requests by verb: {:?}",
        elapsed.as_secs_f64(),
        portal_requests.join(", "),
        kube_requests
    );
    // The portal's own count of requests by route, to see what the operator asks for.
    let metrics = reqwest::get(format!("{}/metrics", world.portal.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("portal_http_requests_total{"))
    {
        println!("  {line}");
    }
    let _ = stop.send(());
    let _ = operator.await;
    world.kube.stop().await;
    world.portal.stop().await;
    elapsed
}

/// The same portal creates and status patches, made directly.
async fn baseline_run(invitations: usize, accounts: usize) -> Duration {
    let world = world(accounts).await;
    seed(&world.client, invitations, accounts).await;
    let (portal, _) = counting(&world.portal);
    let started = Instant::now();
    let mut account_ids = Vec::new();
    for a in 0..accounts {
        let account = portal
            .create_account(
                &portal_operator::api::CreateAccount {
                    parent_id: None,
                    account_type: portal_operator::domain::AccountKind::Partner,
                    display_name: format!("Account {a:03}"),
                    tenant_id: None,
                    sub_contract: false,
                    external_id: None,
                },
                &format!("baseline-account-{a}"),
            )
            .await
            .unwrap();
        dynamic(&world.client, "Account", None)
            .patch_status(
                &format!("account-{a:03}"),
                &PatchParams::apply("baseline"),
                &Patch::Merge(
                    json!({ "status": { "portalId": account.id, "observedGeneration": 1 } }),
                ),
            )
            .await
            .unwrap();
        account_ids.push(account.id);
    }
    let account_ids = &account_ids;
    let portal = &portal;
    let kube = &world.client;
    futures::stream::iter(0..invitations)
        .map(|i| async move {
            let a = i % accounts;
            let namespace = format!("ns-{a:03}");
            let name = format!("admin-{i:05}");
            let made = portal
                .create_invitation(
                    &account_ids[a],
                    &portal_operator::api::CreateInvitation {
                        email: format!("admin-{i:05}@account-{a:03}.example"),
                        first_name: "Admin".into(),
                        last_name: format!("Number{i}"),
                        roles: None,
                        delivery: None,
                        expires_after: None,
                        external_ref: Some(format!("AdminInvitation/{namespace}/{name}/uid-{i}/1")),
                    },
                    &format!("baseline-{i}"),
                )
                .await
                .unwrap();
            dynamic(kube, "AdminInvitation", Some(&namespace))
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": {
                        "phase": "Pending", "portalId": made.id, "observedGeneration": 1,
                        "conditions": [{ "type": "Ready", "status": "True", "reason": "Pending",
                                         "message": "waiting for the invitee", "lastTransitionTime": "2026-01-01T00:00:00Z" }]
                    } })),
                )
                .await
                .unwrap();
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed();
    println!("baseline run: {:.2} s", elapsed.as_secs_f64());
    world.kube.stop().await;
    world.portal.stop().await;
    elapsed
}
