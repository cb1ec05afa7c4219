//! The operator at scale: N AdminInvitations over M Accounts (default 10,000 over 100), all in
//! one process — the Kubernetes API server double (over HTTP, the committed CRDs, admission on
//! every write), the portal on SQLite (over HTTP) and the operator. The objects are created in
//! the double first, then the operator starts; the figure is the time until every invitation is
//! `Pending` with its status' `observedGeneration` (seen by a watch, not by polling).
//!
//! In the same run, on a fresh double and portal with the same objects, a **direct-call
//! baseline** makes the same portal creates and status patches (accounts first, then the
//! invitations, as many at a time as the operator's per-controller concurrency) with no controller
//! machinery; the ratio of the two is the headline. A second baseline sends, by direct calls,
//! every request the operator sends per invitation (the finalizer's JSON patch, the create, the
//! status as a server-side apply, the Event): what is left between it and the operator is the
//! controller machinery (watches, caches, queues), and between the two baselines the requests
//! the operator's design adds.
//!
//! Then, with everything converged and the operator still running, three more scenarios:
//! - **resync**: the next periodic bulk resync (every 60 s here), counting every request to
//!   both servers while it runs: target 0 writes, one paged list per account and kind;
//! - **acceptance burst**: 1,000 invitees accept at once (32 in flight, ID tokens minted
//!   beforehand by the OpenID provider); for each, the time from the portal answering the
//!   accept until a watch sees the object `Accepted`: p50 and p99 (target p99 ≤ 1 s);
//! - **expiry**: 1,000 invitations made with `expiresAfter: 1h`; the portal's injected clock is
//!   moved past it, and for each, the time until a watch sees it `Expired` (target p99 ≤ 1 s).
//!   The portal's expiry sweeper looks at least every 500 ms, so with a moved clock up to
//!   500 ms of the lag is the sweeper noticing; with a real clock it wakes at the expiry itself.
//!
//! Run: `cargo bench --bench operator_scale` or `cargo bench --bench operator_scale -- 2000 20`.
//! Needs Node (the OpenID provider of `tests/peers`).

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
use support::{Backend, OidcProvider, Options, TestPortal};

/// Requests in flight: the operator's per-controller concurrency and the baseline's, the same
/// (`BENCH_CONCURRENCY` to try another).
fn concurrency() -> usize {
    std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(portal_operator::controller::Config::default().concurrency as usize)
}
/// How many invitations the burst accepts and the expiry scenario lets expire.
const BURST: usize = 1_000;
/// The resync period of the operator run (long enough not to fall inside the convergence).
const RESYNC: Duration = Duration::from_secs(60);

/// Invitation `i`'s expiry: the second thousand expire in the expiry scenario.
fn expires_after(i: usize) -> Option<&'static str> {
    (BURST..2 * BURST).contains(&i).then_some("1h")
}

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
        let idp = OidcProvider::start().await;
        // `BENCH_ONLY=operator` or `baseline` runs one part (e.g. to profile it alone).
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        if only == "baseline" {
            baseline_run(invitations, accounts, Baseline::Minimal).await;
            return;
        }
        if only == "same-requests" {
            baseline_run(invitations, accounts, Baseline::SameRequests).await;
            return;
        }
        let operator = operator_run(invitations, accounts, &idp, only != "operator").await;
        let peak = peak_rss_mib();
        if only == "operator" {
            return;
        }
        let baseline = baseline_run(invitations, accounts, Baseline::Minimal).await;
        let same = baseline_run(invitations, accounts, Baseline::SameRequests).await;
        println!(
            "operator: {:.2} s to all Pending; baseline (direct calls): {:.2} s; ratio {:.2}x",
            operator.as_secs_f64(),
            baseline.as_secs_f64(),
            operator.as_secs_f64() / baseline.as_secs_f64()
        );
        println!(
            "baseline with the operator's requests: {:.2} s; operator / it {:.2}x; it / baseline {:.2}x",
            same.as_secs_f64(),
            operator.as_secs_f64() / same.as_secs_f64(),
            same.as_secs_f64() / baseline.as_secs_f64()
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

async fn world(accounts: usize, idp: Option<&OidcProvider>) -> World {
    let portal = TestPortal::start_with_options(
        Backend::Sqlite,
        Options {
            oidc: idp.map(|idp| idp.issuer.clone()),
            accept_attempts_per_minute: Some(1_000_000),
            ..Options::default()
        },
    )
    .await;
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
            let mut object = json!({
                "apiVersion": "access.portal.dev/v1alpha1", "kind": "AdminInvitation",
                "metadata": { "name": format!("admin-{i:05}"), "namespace": namespace },
                "spec": { "accountRef": { "name": format!("account-{a:03}") },
                          "email": email(i, accounts),
                          "firstName": "Admin", "lastName": format!("Number{i}") }
            });
            if let Some(after) = expires_after(i) {
                object["spec"]["expiresAfter"] = json!(after);
            }
            let object: DynamicObject = serde_json::from_value(object).unwrap();
            dynamic(kube, "AdminInvitation", Some(&namespace))
                .create(&PostParams::default(), &object)
                .await
                .unwrap();
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

fn email(i: usize, accounts: usize) -> String {
    format!("admin-{i:05}@account-{:03}.example", i % accounts)
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

async fn operator_run(
    invitations: usize,
    accounts: usize,
    idp: &OidcProvider,
    scenarios: bool,
) -> Duration {
    let world = world(accounts, Some(idp)).await;
    seed(&world.client, invitations, accounts).await;
    world.kube.reset_counters();
    let (portal, counts) = counting(&world.portal);
    let metrics = Arc::new(portal_operator::controller::metrics::Metrics::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let operator = tokio::spawn(portal_operator::controller::run(
        world.kube.client(),
        portal,
        metrics.clone(),
        portal_operator::controller::Config {
            resync: RESYNC,
            concurrency: concurrency() as u16,
            ..Default::default()
        },
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
    let portal_metrics = reqwest::get(format!("{}/metrics", world.portal.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in portal_metrics
        .lines()
        .filter(|l| l.starts_with("portal_http_requests_total{"))
    {
        println!("  {line}");
    }
    if metrics.resyncs() > 0 {
        println!("(a resync ran during the convergence: the figure includes it)");
    }
    if scenarios {
        resync(&world, &counts, &metrics, accounts).await;
        if invitations >= 2 * BURST {
            let phases = Phases::watch(&world.kube);
            burst(&world, idp, accounts, &phases).await;
            expiry(&world, &phases).await;
        } else {
            println!(
                "(fewer than {} invitations: no burst or expiry scenario)",
                2 * BURST
            );
        }
    }
    for line in metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("portal_operator_reconcile_errors"))
    {
        println!("  {line}");
    }
    let _ = stop.send(());
    let _ = operator.await;
    world.kube.stop().await;
    world.portal.stop().await;
    elapsed
}

/// The next periodic resync of the converged objects: every request to both servers while it
/// runs.
async fn resync(
    world: &World,
    counts: &BTreeMap<&'static str, AtomicU64>,
    metrics: &portal_operator::controller::metrics::Metrics,
    accounts: usize,
) {
    // Let the last Events and feed echoes settle, then count from zero.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = metrics.resyncs();
    world.kube.reset_counters();
    for count in counts.values() {
        count.store(0, Ordering::Relaxed);
    }
    let started = Instant::now();
    while metrics.resyncs() == before {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = started.elapsed();
    let portal: BTreeMap<&str, u64> = counts
        .iter()
        .map(|(method, count)| (*method, count.load(Ordering::Relaxed)))
        .collect();
    let portal_writes: u64 = portal
        .iter()
        .filter(|(method, _)| **method != "GET")
        .map(|(_, n)| n)
        .sum();
    // Per account, a paged list of each kind it holds objects of (here: invitations), and the
    // accounts listed once per parent.
    let lists_per_account = portal["GET"] as f64 / accounts as f64;
    println!(
        "resync (after waiting {:.1} s for it): {} triggered; API server writes {}, requests {:?}; portal writes {portal_writes}, GETs {} ({lists_per_account:.2} per account)",
        waited.as_secs_f64(),
        metrics.resync_triggers(),
        world.kube.writes(),
        world.kube.counters(),
        portal["GET"],
    );
}

/// When a watch first saw each invitation in each phase.
struct Phases {
    seen: Arc<std::sync::Mutex<BTreeMap<(String, String), Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Phases {
    fn watch(kube: &ApiServer) -> Phases {
        let seen: Arc<std::sync::Mutex<BTreeMap<(String, String), Instant>>> = Arc::default();
        let api: Api<AdminInvitation> = Api::all(kube.client());
        let noted = seen.clone();
        let task = tokio::spawn(async move {
            let mut stream =
                kube::runtime::watcher(api, kube::runtime::watcher::Config::default()).boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                if let kube::runtime::watcher::Event::Apply(object)
                | kube::runtime::watcher::Event::InitApply(object) = event
                    && let Some(phase) = object.status.as_ref().and_then(|s| s.phase)
                {
                    let name = object.metadata.name.clone().unwrap_or_default();
                    noted
                        .lock()
                        .unwrap()
                        .entry((name, format!("{phase:?}")))
                        .or_insert_with(Instant::now);
                }
            }
        });
        Phases { seen, task }
    }

    /// Waits until every name is seen in `phase`; how long after `from(name)` each was.
    async fn lags(
        &self,
        names: &[String],
        phase: AdminInvitationPhase,
        from: impl Fn(&str) -> Instant,
    ) -> Vec<Duration> {
        loop {
            {
                let seen = self.seen.lock().unwrap();
                let at: Vec<Instant> = names
                    .iter()
                    .filter_map(|n| seen.get(&(n.clone(), format!("{phase:?}"))).copied())
                    .collect();
                if at.len() == names.len() {
                    return names
                        .iter()
                        .zip(at)
                        .map(|(name, at)| at.saturating_duration_since(from(name)))
                        .collect();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Phases {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn report(what: &str, mut lags: Vec<Duration>) {
    lags.sort();
    println!(
        "{what}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} objects)",
        percentile(&lags, 0.5).as_secs_f64() * 1000.0,
        percentile(&lags, 0.99).as_secs_f64() * 1000.0,
        lags.last().unwrap().as_secs_f64() * 1000.0,
        lags.len()
    );
}

/// The first BURST invitees accept at once; acceptance → `Accepted` for each.
async fn burst(world: &World, idp: &OidcProvider, accounts: usize, phases: &Phases) {
    let platform = world.portal.platform();
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    for message in platform.all_pages("/v1/outbox").await {
        let body = message["body"].as_str().unwrap_or_default();
        if let Some((_, rest)) = body.split_once("#token=") {
            let token: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            tokens.insert(message["to"].as_str().unwrap_or_default().to_owned(), token);
        }
    }
    let pairs: Vec<(String, String, String)> = futures::stream::iter(0..BURST)
        .map(|i| {
            let email = email(i, accounts);
            let token = tokens
                .get(&email)
                .unwrap_or_else(|| panic!("no invitation email to {email}"))
                .clone();
            async move {
                let id_token = idp
                    .id_token(json!({ "sub": format!("admin-{i}"), "email": email }))
                    .await;
                (format!("admin-{i:05}"), token, id_token)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let answered: Arc<std::sync::Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let anonymous = world.portal.anonymous();
    let started = Instant::now();
    futures::stream::iter(pairs)
        .map(|(name, token, id_token)| {
            let anonymous = anonymous.clone();
            let answered = answered.clone();
            async move {
                let reply = anonymous
                    .post(
                        "/v1/invitations/accept",
                        json!({ "token": token, "idToken": id_token }),
                    )
                    .await;
                assert_eq!(
                    reply.status.as_u16(),
                    200,
                    "accept {name}: {:#}",
                    reply.body
                );
                answered.lock().unwrap().insert(name, Instant::now());
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let accepting = started.elapsed();
    let names: Vec<String> = (0..BURST).map(|i| format!("admin-{i:05}")).collect();
    let answered = answered.lock().unwrap().clone();
    let lags = phases
        .lags(&names, AdminInvitationPhase::Accepted, |name| {
            answered[name]
        })
        .await;
    println!(
        "burst: {BURST} accepts answered in {:.2} s; all Accepted {:.2} s after the first was sent",
        accepting.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    report("acceptance → Accepted", lags);
}

/// The second BURST invitations' expiry passes (the portal's clock moved past it).
async fn expiry(world: &World, phases: &Phases) {
    let names: Vec<String> = (BURST..2 * BURST)
        .map(|i| format!("admin-{i:05}"))
        .collect();
    let moved = Instant::now();
    world.portal.clock.advance(Duration::from_secs(3601));
    let lags = phases
        .lags(&names, AdminInvitationPhase::Expired, |_| moved)
        .await;
    report("expiresAt → Expired", lags);
}

/// What a baseline sends per invitation.
#[derive(Clone, Copy, PartialEq)]
enum Baseline {
    /// The portal create and a status merge patch.
    Minimal,
    /// Every request the operator sends: the finalizer's JSON patch, the portal create, the
    /// status as a forced server-side apply (the operator's body) and an Event.
    SameRequests,
}

/// The same portal creates and status patches, made directly.
async fn baseline_run(invitations: usize, accounts: usize, baseline: Baseline) -> Duration {
    let world = world(accounts, None).await;
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
            let invitations = dynamic(kube, "AdminInvitation", Some(&namespace));
            if baseline == Baseline::SameRequests {
                let add: json_patch::Patch = serde_json::from_value(json!([
                    { "op": "test", "path": "/metadata/finalizers", "value": null },
                    { "op": "add", "path": "/metadata/finalizers", "value": [portal_operator::controller::FINALIZER] },
                ]))
                .unwrap();
                invitations
                    .patch(&name, &PatchParams::default(), &Patch::Json::<()>(add))
                    .await
                    .unwrap();
            }
            let made = portal
                .create_invitation(
                    &account_ids[a],
                    &portal_operator::api::CreateInvitation {
                        email: email(i, accounts),
                        first_name: "Admin".into(),
                        last_name: format!("Number{i}"),
                        roles: None,
                        delivery: None,
                        expires_after: expires_after(i).map(str::to_owned),
                        external_ref: Some(format!("AdminInvitation/{namespace}/{name}/uid-{i}/1")),
                    },
                    &format!("baseline-{i}"),
                )
                .await
                .unwrap();
            let status = json!({
                "phase": "Pending", "portalId": made.id, "observedGeneration": 1,
                "conditions": [{ "type": "Ready", "status": "True", "reason": "Pending",
                                 "message": "waiting for the invitee", "lastTransitionTime": "2026-01-01T00:00:00Z" }]
            });
            match baseline {
                Baseline::Minimal => invitations
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "status": status })),
                    )
                    .await
                    .unwrap(),
                Baseline::SameRequests => invitations
                    .patch_status(
                        &name,
                        &PatchParams::apply("portal-operator").force(),
                        &Patch::Apply(json!({
                            "apiVersion": "access.portal.dev/v1alpha1",
                            "kind": "AdminInvitation",
                            "status": status,
                        })),
                    )
                    .await
                    .unwrap(),
            };
            if baseline == Baseline::SameRequests {
                let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
                    "metadata": { "name": format!("{name}.baseline"), "namespace": namespace },
                    "eventTime": "2026-01-01T00:00:00.000000Z",
                    "type": "Normal", "reason": "Pending", "action": "Reconcile",
                    "note": "waiting for the invitee",
                    "reportingController": "portal-operator", "reportingInstance": "baseline",
                    "regarding": { "apiVersion": "access.portal.dev/v1alpha1", "kind": "AdminInvitation",
                                   "namespace": namespace, "name": name },
                }))
                .unwrap();
                Api::<k8s_openapi::api::events::v1::Event>::namespaced(kube.clone(), &namespace)
                    .create(&PostParams::default(), &event)
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(concurrency())
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed();
    let label = match baseline {
        Baseline::Minimal => "baseline",
        Baseline::SameRequests => "baseline with the operator's requests",
    };
    println!("{label} run: {:.2} s", elapsed.as_secs_f64());
    world.kube.stop().await;
    world.portal.stop().await;
    elapsed
}
