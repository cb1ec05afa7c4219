//! Starting the operator: the four controllers with their triggers (watches, the change feed,
//! the resync), the metrics and health listener, and leader election on a Lease.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use futures::StreamExt;
use kube::runtime::controller::Controller;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio::sync::{Notify, watch};

use super::metrics::Metrics;
use super::{Context, MANAGER, Managed, Stores, error_policy, feed, resync};
use crate::crd::{
    Account, AccountManager, AdminInvitation, RoleBinding, Subscription, Team, User, UserRole,
};
use crate::portal_client::PortalApi;

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// How often the bulk resync looks at everything.
    pub resync: Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (none: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// Run only while holding this Lease.
    pub leader_election: Option<LeaderElection>,
    /// Reconciles in flight at once, per controller.
    pub concurrency: u16,
    /// The longest an object waits before it is retried after failing (its backoff doubles
    /// from 1 s up to this).
    pub max_backoff: Duration,
}

#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub lease_name: String,
    pub namespace: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            resync: Duration::from_secs(600),
            metrics_listen: None,
            leader_election: None,
            concurrency: 16,
            max_backoff: super::MAX_BACKOFF,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("serve metrics on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("take part in leader election on Lease {lease}")]
    Lease {
        lease: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("lost the leader Lease {0}; stopping so that only one replica acts")]
    LostLease(String),
}

/// Runs until `shutdown` resolves (or leadership is lost).
pub async fn run<P>(
    client: kube::Client,
    portal: P,
    metrics: Arc<Metrics>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError>
where
    P: PortalApi + 'static,
{
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop.send_replace(true);
    });
    let ready = Arc::new(Readiness::default());
    let server = match config.metrics_listen {
        Some(addr) => {
            Some(serve_health(addr, metrics.clone(), ready.clone(), stopped.clone()).await?)
        }
        None => None,
    };
    let result = match &config.leader_election {
        None => {
            controllers(client, portal, metrics, &config, ready, stopped).await;
            Ok(())
        }
        Some(election) => led(client, portal, metrics, &config, election, ready, stopped).await,
    };
    if let Some(server) = server {
        server.abort();
    }
    result
}

/// Runs the controllers only while this replica holds the Lease.
async fn led<P: PortalApi + 'static>(
    client: kube::Client,
    portal: P,
    metrics: Arc<Metrics>,
    config: &Config,
    election: &LeaderElection,
    ready: Arc<Readiness>,
    stopped: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let lease_error = |source| RunError::Lease {
        lease: election.lease_name.clone(),
        source,
    };
    let manager =
        kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &election.lease_name)
            .with_namespace(&election.namespace)
            .with_identity(&election.identity)
            .with_field_manager(MANAGER)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await
            .map_err(lease_error)?;
    let (mut leader, _task) = manager.watch().await;
    ready
        .standby
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut waiting = stopped.clone();
    tokio::select! {
        became = leader.wait_for(|is_leader| *is_leader) => {
            if became.is_err() {
                return Err(RunError::LostLease(election.lease_name.clone()));
            }
        }
        _ = waiting.wait_for(|stop| *stop) => return Ok(()),
    }
    tracing::info!(identity = %election.identity, "became the leader");
    ready
        .standby
        .store(false, std::sync::atomic::Ordering::Relaxed);
    // Stop when asked, or when the Lease is lost.
    let (stop_all, stop_rx) = watch::channel(false);
    let mut lost = leader.clone();
    let mut asked = stopped.clone();
    let watcher = tokio::spawn(async move {
        let lost_lease = tokio::select! {
            _ = lost.wait_for(|is_leader| !*is_leader) => true,
            _ = asked.wait_for(|stop| *stop) => false,
        };
        stop_all.send_replace(true);
        lost_lease
    });
    controllers(client, portal, metrics, config, ready, stop_rx).await;
    match watcher.await {
        Ok(true) => Err(RunError::LostLease(election.lease_name.clone())),
        _ => Ok(()),
    }
}

/// Ready: a standby waiting for the Lease (ready to take over, so rolling updates and
/// disruption budgets count it), or the leader with its caches filled and the change feed
/// connected.
#[derive(Default)]
struct Readiness {
    standby: std::sync::atomic::AtomicBool,
    caches: std::sync::atomic::AtomicBool,
    feed: std::sync::atomic::AtomicBool,
}

impl Readiness {
    fn is_ready(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.standby.load(Relaxed) || (self.caches.load(Relaxed) && self.feed.load(Relaxed))
    }
}

async fn serve_health(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<Readiness>,
    mut stopped: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving /metrics, /healthz and /readyz");
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.is_ready() {
                        (StatusCode::OK, "ok")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "caches filling or change feed not connected",
                        )
                    }
                }
            }),
        );
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await;
    }))
}

/// What every kind's controller shares.
struct Shared<'a, P> {
    accounts: &'a Api<Account>,
    watched: &'a watcher::Config,
    settings: &'a kube::runtime::controller::Config,
    stopped: &'a watch::Receiver<bool>,
    ctx: &'a Arc<Context<P>>,
}

/// Runs one kind's controller until stopped: reconciled when it changes, when an Account it
/// refers to (or, for an Account, its parent) changes, and when the feed or the resync asks.
fn drive<K: Managed, P: PortalApi + 'static>(
    controller: Controller<K>,
    store: Store<K>,
    asked: futures::channel::mpsc::UnboundedReceiver<ObjectRef<K>>,
    shared: &Shared<'_, P>,
) -> impl Future<Output = ()> + use<K, P> {
    let mut stopped = shared.stopped.clone();
    controller
        .with_config(shared.settings.clone())
        .watches(
            shared.accounts.clone(),
            shared.watched.clone(),
            move |account| {
                let name = account.name_any();
                store
                    .state_filter(|o| {
                        o.account_ref()
                            .or_else(|| o.parent_ref())
                            .is_some_and(|r| r.name == name)
                    })
                    .iter()
                    .map(|o| ObjectRef::from_obj(o.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .reconcile_on(asked)
        .graceful_shutdown_on(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .run(super::reconcile, error_policy, shared.ctx.clone())
        .for_each(|_| async {})
}

/// A kind's controller, reconciling an object when its spec changes (its generation), when
/// another party's finalizer is added or removed, or when its deletion starts — not when only its status or
/// other metadata changes: each of the controller's own status writes used to come back as a
/// reconcile that observed the portal again and found nothing to do (2.7 portal reads per
/// invitation converging at 10,000). The feed, the resync and the Accounts it refers to still
/// trigger it. The store holds every change.
fn controller_of<K: Managed>(api: Api<K>, watched: &watcher::Config) -> Controller<K> {
    use kube::runtime::WatchStreamExt as _;
    let (reader, writer) = kube::runtime::reflector::store();
    let changes = kube::runtime::watcher(api, watched.clone())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(spec_or_lifecycle::<K>, Default::default());
    Controller::for_stream(changes, reader)
}

/// What a reconcile depends on besides the status it writes itself.
fn spec_or_lifecycle<K: kube::Resource>(object: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = object.meta();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    // Without a generation (not a custom resource), every change counts.
    match meta.generation {
        Some(generation) => generation.hash(&mut hasher),
        None => meta.resource_version.hash(&mut hasher),
    }
    // Its own finalizer is added in the reconcile that applies: that change needs no other.
    for finalizer in meta.finalizers.iter().flatten() {
        if finalizer != super::FINALIZER {
            finalizer.hash(&mut hasher);
        }
    }
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

/// The controllers, the feed follower and the resync, until `stopped`.
async fn controllers<P: PortalApi + 'static>(
    client: kube::Client,
    portal: P,
    metrics: Arc<Metrics>,
    config: &Config,
    ready: Arc<Readiness>,
    stopped: watch::Receiver<bool>,
) {
    let watched = watcher::Config::default().any_semantic();
    let accounts: Api<Account> = Api::all(client.clone());
    let account_controller = controller_of(accounts.clone(), &watched);
    let invitation_controller =
        controller_of(Api::<AdminInvitation>::all(client.clone()), &watched);
    let binding_controller = controller_of(Api::<RoleBinding>::all(client.clone()), &watched);
    let manager_controller = controller_of(Api::<AccountManager>::all(client.clone()), &watched);
    let subscription_controller = controller_of(Api::<Subscription>::all(client.clone()), &watched);
    let user_controller = controller_of(Api::<User>::all(client.clone()), &watched);
    let role_controller = controller_of(Api::<UserRole>::all(client.clone()), &watched);
    let team_controller = controller_of(Api::<Team>::all(client.clone()), &watched);
    let stores = Stores {
        accounts: account_controller.store(),
        invitations: invitation_controller.store(),
        role_bindings: binding_controller.store(),
        account_managers: manager_controller.store(),
        subscriptions: subscription_controller.store(),
        users: user_controller.store(),
        user_roles: role_controller.store(),
        teams: team_controller.store(),
    };
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let events = super::events::Events::start(&client, &reporter);
    let mut ctx = Context::new(client.clone(), portal, events, metrics, stores);
    ctx.max_backoff = config.max_backoff;
    let ctx = Arc::new(ctx);
    let (triggers, streams) = feed::triggers();
    let resync_now = Arc::new(Notify::new());

    let settings = kube::runtime::controller::Config::default().concurrency(config.concurrency);

    // An Account change reconciles its child Accounts and the objects that reference it. Link
    // Secrets are not watched (that would need list/watch on every Secret in the cluster): the
    // resync reads a pending Link invitation's Secret by name and reissues a lost link.
    let shared = Shared {
        accounts: &accounts,
        watched: &watched,
        settings: &settings,
        stopped: &stopped,
        ctx: &ctx,
    };
    let accounts_run = drive(
        account_controller,
        ctx.accounts.clone(),
        streams.accounts,
        &shared,
    );
    let invitations_run = drive(
        invitation_controller,
        ctx.invitations.clone(),
        streams.invitations,
        &shared,
    );
    let bindings_run = drive(
        binding_controller,
        ctx.role_bindings.clone(),
        streams.role_bindings,
        &shared,
    );
    let managers_run = drive(
        manager_controller,
        ctx.account_managers.clone(),
        streams.account_managers,
        &shared,
    );
    let subscriptions_run = drive(
        subscription_controller,
        ctx.subscriptions.clone(),
        streams.subscriptions,
        &shared,
    );
    let users_run = drive(user_controller, ctx.users.clone(), streams.users, &shared);
    let roles_run = drive(
        role_controller,
        ctx.user_roles.clone(),
        streams.user_roles,
        &shared,
    );
    let teams_run = drive(team_controller, ctx.teams.clone(), streams.teams, &shared);

    let (connected, mut connection) = watch::channel(false);
    let feed_task = tokio::spawn(feed::follow(
        ctx.clone(),
        triggers.clone(),
        connected,
        resync_now.clone(),
    ));
    let feed_ready = ready.clone();
    let readiness_task = tokio::spawn(async move {
        while connection.changed().await.is_ok() {
            let connected = *connection.borrow();
            tracing::debug!(connected, "change feed");
            feed_ready
                .feed
                .store(connected, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let caches = ctx.clone();
    let caches_ready = ready.clone();
    let caches_task = tokio::spawn(async move {
        super::filled(&caches.accounts).await;
        super::filled(&caches.invitations).await;
        super::filled(&caches.role_bindings).await;
        super::filled(&caches.account_managers).await;
        super::filled(&caches.subscriptions).await;
        super::filled(&caches.users).await;
        super::filled(&caches.user_roles).await;
        super::filled(&caches.teams).await;
        caches_ready
            .caches
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!("caches filled");
    });
    let resync_task = tokio::spawn(resync::every(
        ctx.clone(),
        triggers,
        config.resync,
        resync_now,
    ));

    tracing::info!("controllers started");
    futures::join!(
        accounts_run,
        invitations_run,
        bindings_run,
        managers_run,
        subscriptions_run,
        users_run,
        roles_run,
        teams_run
    );
    for task in [feed_task, readiness_task, caches_task, resync_task] {
        task.abort();
    }
    ctx.events.flushed(Duration::from_secs(5)).await;
    tracing::info!("controllers stopped");
}
