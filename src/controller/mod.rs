//! The operator: one kube-runtime controller per kind, fed by watches, by the portal's change
//! feed (an event about an object reconciles it at once) and by a periodic bulk resync.
//!
//! Every reconcile is the same pipeline: *dereference* (the object's Account from the shared
//! store) → *observe* (the portal) → *plan* (pure, in [`crate::reconcile`]) → *execute* (the
//! plan's writes) → *record* (status by server-side apply, written only when it changed; an
//! Event only when the Ready reason changes) → *requeue* (exactly at an expiry, or on the next
//! change). Transient failures back off per object with jitter (capped at 5 minutes, honouring
//! Retry-After); a refusal the spec causes is Stalled until the spec changes.

mod cluster;
pub mod events;
pub mod feed;
pub mod metrics;
pub mod resync;
mod run;

pub use cluster::{Cluster, reconcile};

pub use run::{Config, LeaderElection, RunError, run};

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::time::{Clock, SystemClock};
use crate::crd::{
    Account, AccountManager, AdminInvitation, RoleBinding, Subscription, Team, User, UserRole,
};
use crate::portal_client::PortalError;
use crate::portal_client::bulk::Snapshot;
use crate::reconcile::refs::{self, AccountState};
use crate::reconcile::{ExecuteError, Kind, Outcome, READY};

/// The field manager of every write the operator makes.
pub const MANAGER: &str = "portal-operator";
/// The finalizer on every object the operator manages.
pub const FINALIZER: &str = "access.portal.dev/cleanup";

/// What the controllers share.
pub struct Context<P> {
    pub client: kube::Client,
    pub portal: P,
    pub events: events::Events,
    pub metrics: Arc<metrics::Metrics>,
    pub accounts: Store<Account>,
    pub invitations: Store<AdminInvitation>,
    pub role_bindings: Store<RoleBinding>,
    pub account_managers: Store<AccountManager>,
    pub subscriptions: Store<Subscription>,
    pub users: Store<User>,
    pub user_roles: Store<UserRole>,
    pub teams: Store<Team>,
    /// Where "now" comes from (expiry, feed lag); tests move it instead of waiting.
    pub clock: Arc<dyn Clock>,
    /// Consecutive transient failures per object, for its backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The longest an object waits after failing (see [`backoff`]).
    pub max_backoff: Duration,
    /// Each account's bulk lists, answering the first reconcile of each object after a start
    /// (one list per account and kind instead of one portal read per object).
    pub snapshot: Snapshot,
}

impl<P> Context<P> {
    pub fn new(
        client: kube::Client,
        portal: P,
        events: events::Events,
        metrics: Arc<metrics::Metrics>,
        stores: Stores,
    ) -> Context<P> {
        Context {
            client,
            portal,
            events,
            metrics,
            accounts: stores.accounts,
            invitations: stores.invitations,
            role_bindings: stores.role_bindings,
            account_managers: stores.account_managers,
            subscriptions: stores.subscriptions,
            users: stores.users,
            user_roles: stores.user_roles,
            teams: stores.teams,
            clock: Arc::new(SystemClock),
            failures: Mutex::new(HashMap::new()),
            max_backoff: MAX_BACKOFF,
            snapshot: Snapshot::first_reads(),
        }
    }

    /// Where the Account named `name` stands for an object in `namespace`.
    pub fn account_state(&self, name: &str, namespace: &str) -> AccountState {
        refs::account_state(
            self.accounts.get(&ObjectRef::new(name)).as_deref(),
            namespace,
        )
    }

    /// The portal id of the Account named `name`, whatever its delegation (for cleanup of what
    /// was made while it was delegated).
    pub fn account_portal_id(&self, name: &str) -> Option<String> {
        refs::portal_id(self.accounts.get(&ObjectRef::new(name)).as_deref())
    }

    /// The Account object whose portal account is `portal_id`.
    pub fn account_by_portal_id(&self, portal_id: &str) -> Option<Arc<Account>> {
        self.accounts.find(|a| {
            a.status
                .as_ref()
                .and_then(|s| s.portal_id.as_deref())
                .is_some_and(|id| id == portal_id)
        })
    }
}

/// The caches the controllers fill, shared with the feed and the resync.
pub struct Stores {
    pub accounts: Store<Account>,
    pub invitations: Store<AdminInvitation>,
    pub role_bindings: Store<RoleBinding>,
    pub account_managers: Store<AccountManager>,
    pub subscriptions: Store<Subscription>,
    pub users: Store<User>,
    pub user_roles: Store<UserRole>,
    pub teams: Store<Team>,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("observe the portal")]
    Observe(#[source] PortalError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error("{step}")]
    Kube {
        step: &'static str,
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the finalizer failed.
    #[error("{step}")]
    Finalizer {
        step: &'static str,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    pub fn kube(step: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kube { step, source }
    }

    fn finalizer(step: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Finalizer { step, source }
    }

    /// A short label for metrics and Event reasons, by cause, so that the Event says what to
    /// fix: the API key (`PortalUnauthorized`), its permissions (`PortalForbidden`), the portal
    /// being down or busy (`PortalUnavailable`), a refusal the spec causes (`PortalRefused`).
    pub fn category(&self) -> &'static str {
        match self {
            Error::Observe(error) => portal_category(error),
            Error::Execute(error) => portal_category(&error.source),
            Error::Kube { .. } | Error::Finalizer { .. } => "KubernetesApi",
        }
    }

    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Observe(error) => error.is_transient(),
            Error::Execute(error) => error.is_transient(),
            Error::Kube { .. } | Error::Finalizer { .. } => true,
        }
    }

    /// Whether this is the operator's own view lagging the API server's: a finalizer patch
    /// whose JSON-patch `test` failed (422) or that conflicted (409) because the cache had not
    /// seen the latest write yet, or a 404 for an object deleted since it was queued. Nothing is
    /// wrong that a person could fix: the next reconcile, from a fresher cache, goes through.
    /// These are retried soon and quietly (no Warning Event, no failure streak).
    pub fn is_stale_view(&self) -> bool {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } => matches!(status.code, 404 | 409),
            Error::Finalizer {
                source: kube::Error::Api(status),
                ..
            } => matches!(status.code, 404 | 409 | 422),
            _ => false,
        }
    }

    /// What the portal asked for, if it named a time to come back.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Observe(error) => error.retry_after(),
            Error::Execute(error) => error.source.retry_after(),
            Error::Kube { .. } | Error::Finalizer { .. } => None,
        }
    }
}

fn portal_category(error: &PortalError) -> &'static str {
    if error.is_unauthorized() {
        "PortalUnauthorized"
    } else if error.is_forbidden() {
        "PortalForbidden"
    } else if error.is_transient() {
        "PortalUnavailable"
    } else {
        "PortalRefused"
    }
}

/// The default cap of an object's backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Backoff after `failures` consecutive failures: 1 s doubling, capped at `cap` (by default
/// [`MAX_BACKOFF`]), with up to 25 % jitter so that objects failing together do not retry
/// together.
pub fn backoff(failures: u32, jitter: f64, cap: Duration) -> Duration {
    let cap = cap.as_secs_f64();
    let base = 2f64
        .powi(failures.saturating_sub(1).min(16) as i32)
        .min(cap);
    Duration::from_secs_f64((base * (1.0 + 0.25 * jitter.clamp(0.0, 1.0))).min(cap))
}

fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// The metrics category of a retry because the operator's cache lagged ([`Error::is_stale_view`]).
pub const STALE_VIEW: &str = "StaleCache";
/// How soon such a retry comes (up to twice this, jittered).
const STALE_VIEW_RETRY: Duration = Duration::from_millis(250);

/// The error policy of every controller: per-object exponential backoff with jitter.
pub fn error_policy<K, P>(object: Arc<K>, error: &Error, ctx: Arc<Context<P>>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    if error.is_stale_view() {
        ctx.metrics.error(K::kind(&()).as_ref(), STALE_VIEW);
        tracing::debug!(
            object = %key(object.as_ref()),
            error = %error_chain(error),
            "the cache lagged the API server; reconciling again"
        );
        return Action::requeue(STALE_VIEW_RETRY.mul_f64(1.0 + rand::random::<f64>()));
    }
    let failures = {
        let mut failures = ctx.failures.lock().expect("failure counts");
        let count = failures.entry(key(object.as_ref())).or_insert(0);
        *count += 1;
        *count
    };
    ctx.metrics.error(K::kind(&()).as_ref(), error.category());
    let wait = backoff(failures, rand::random::<f64>(), ctx.max_backoff);
    let wait = error.retry_after().map_or(wait, |asked| asked.max(wait));
    tracing::warn!(
        object = %key(object.as_ref()),
        error = %error_chain(error),
        retry_in = ?wait,
        "reconcile failed"
    );
    Action::requeue(wait)
}

/// An error and its causes on one line (for logs; never holds a secret: the portal's problem
/// documents carry none).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Many errors already print their cause; do not say it twice.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl<P> Context<P> {
    fn succeeded<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.failures
            .lock()
            .expect("failure counts")
            .remove(&key(object));
    }

    /// Forgets the backoff of objects that are gone from the caches (deleted while failing, so
    /// no successful reconcile ever cleared it). Called by each resync.
    pub fn forget_deleted(&self) {
        let mut known: std::collections::HashSet<String> = std::collections::HashSet::new();
        known.extend(self.accounts.state().iter().map(|o| key(o.as_ref())));
        known.extend(self.invitations.state().iter().map(|o| key(o.as_ref())));
        known.extend(self.role_bindings.state().iter().map(|o| key(o.as_ref())));
        known.extend(
            self.account_managers
                .state()
                .iter()
                .map(|o| key(o.as_ref())),
        );
        known.extend(self.subscriptions.state().iter().map(|o| key(o.as_ref())));
        known.extend(self.users.state().iter().map(|o| key(o.as_ref())));
        known.extend(self.user_roles.state().iter().map(|o| key(o.as_ref())));
        known.extend(self.teams.state().iter().map(|o| key(o.as_ref())));
        retain_known(&mut self.failures.lock().expect("failure counts"), &known);
    }

    fn failures<K: Resource<DynamicType = ()>>(&self, object: &K) -> u32 {
        self.failures
            .lock()
            .expect("failure counts")
            .get(&key(object))
            .copied()
            .unwrap_or(0)
    }
}

fn retain_known(failures: &mut HashMap<String, u32>, known: &std::collections::HashSet<String>) {
    failures.retain(|object, _| known.contains(object));
}

/// A kind whose status the operator records.
pub trait Managed:
    Kind + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static
{
    fn conditions(status: &<Self as Kind>::Status) -> &[Condition];
    /// Sets the conditions and the status-level `observedGeneration` (the only generation
    /// kstatus reads) together: every status written describes the generation it was made for.
    fn set_conditions(
        status: &mut <Self as Kind>::Status,
        conditions: Vec<Condition>,
        generation: Option<i64>,
    );
    /// The API that serves this object (in its namespace, for a namespaced kind).
    fn api(&self, client: &kube::Client) -> Api<Self>;
}

macro_rules! managed {
    ($kind:ty, $status:ty, |$object:ident, $client:ident| $api:expr) => {
        impl Managed for $kind {
            fn conditions(status: &$status) -> &[Condition] {
                &status.conditions
            }
            fn set_conditions(
                status: &mut $status,
                conditions: Vec<Condition>,
                generation: Option<i64>,
            ) {
                status.conditions = conditions;
                status.observed_generation = generation;
            }
            fn api(&self, client: &kube::Client) -> Api<Self> {
                let ($object, $client) = (self, client.clone());
                $api
            }
        }
    };
}

managed!(Account, crate::crd::AccountStatus, |_object, client| {
    Api::all(client)
});
managed!(
    AdminInvitation,
    crate::crd::AdminInvitationStatus,
    |object, client| Api::namespaced(client, &object.namespace().unwrap_or_default())
);
managed!(
    RoleBinding,
    crate::crd::RoleBindingStatus,
    |object, client| Api::namespaced(client, &object.namespace().unwrap_or_default())
);
managed!(
    AccountManager,
    crate::crd::AccountManagerStatus,
    |object, client| Api::namespaced(client, &object.namespace().unwrap_or_default())
);
managed!(
    Subscription,
    crate::crd::SubscriptionStatus,
    |object, client| Api::namespaced(client, &object.namespace().unwrap_or_default())
);
managed!(User, crate::crd::UserStatus, |object, client| {
    Api::namespaced(client, &object.namespace().unwrap_or_default())
});
managed!(UserRole, crate::crd::UserRoleStatus, |object, client| {
    Api::namespaced(client, &object.namespace().unwrap_or_default())
});
managed!(Team, crate::crd::TeamStatus, |object, client| {
    Api::namespaced(client, &object.namespace().unwrap_or_default())
});

/// The status to record: `status` with the outcome's conditions, keeping transition times.
pub fn with_conditions<K: Managed>(
    object: &K,
    mut status: <K as Kind>::Status,
    outcome: &Outcome,
) -> <K as Kind>::Status {
    let previous = object.status().map(K::conditions).unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let conditions = outcome.conditions(previous, object.meta().generation, &now);
    K::set_conditions(&mut status, conditions, object.meta().generation);
    status
}

/// Records `status` (server-side apply on the status subresource, one field manager) when it
/// differs from what the object holds, and publishes an Event when the Ready reason changes.
/// A converged object writes nothing.
pub async fn record<K: Managed, P>(
    ctx: &Context<P>,
    object: &K,
    status: <K as Kind>::Status,
    outcome: &Outcome,
) -> Result<(), Error> {
    if !write_status(ctx, object, status, outcome).await? {
        return Ok(());
    }
    let warning = matches!(outcome, Outcome::Stalled { .. });
    if ready_reason(object) != Some(outcome.reason()) {
        publish(ctx, object, outcome.reason(), outcome.message(), warning).await;
    }
    Ok(())
}

/// The reason of the object's recorded Ready condition.
fn ready_reason<K: Managed>(object: &K) -> Option<&str> {
    object
        .status()
        .map(K::conditions)
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| c.reason.as_str())
}

/// Writes `status` with the outcome's conditions when it differs from what the object holds;
/// whether it wrote.
async fn write_status<K: Managed, P>(
    ctx: &Context<P>,
    object: &K,
    status: <K as Kind>::Status,
    outcome: &Outcome,
) -> Result<bool, Error> {
    let status = with_conditions(object, status, outcome);
    if object.status() == Some(&status) {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    object
        .api(&ctx.client)
        .patch_status(
            &object.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::kube("write the status"))?;
    Ok(true)
}

/// Records that reconciling `object` failed, so that no tool reads an object that never got a
/// status as healthy: `Reconciling` while retrying, `Stalled` for a refusal, with the error's
/// category as the reason. Written when the reason changes, never per retry; the Event is the
/// caller's. A failure to write it is logged (the reconcile error is what counts).
pub async fn record_failure<K: Managed, P>(ctx: &Context<P>, object: &K, error: &Error) {
    let reason = error.category();
    if matches!(error, Error::Kube { .. } | Error::Finalizer { .. })
        || ready_reason(object) == Some(reason)
    {
        return;
    }
    let message = error_chain(error);
    let outcome = if error.is_transient() {
        Outcome::Reconciling {
            reason: reason.into(),
            message,
        }
    } else {
        Outcome::Stalled {
            reason: reason.into(),
            message,
        }
    };
    if let Err(error) = write_status(ctx, object, object.recorded_status(), &outcome).await {
        tracing::debug!(error = %error_chain(&error), "record the failure in the status");
    }
}

/// Queues an Event about `object` (published off the reconcile's path).
pub async fn publish<K: Managed, P>(
    ctx: &Context<P>,
    object: &K,
    reason: &str,
    message: &str,
    warning: bool,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_owned(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.events.publish(event, object.object_ref(&())).await;
}

/// Waits until `store` holds its initial list. kube-runtime 5's readiness signal wakes only the
/// last task that waited on it, so each wait is re-polled briefly instead of parked for good.
pub async fn filled<K>(store: &Store<K>)
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    while tokio::time::timeout(Duration::from_millis(50), store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// Runs one reconcile with its span, duration and outcome counted, and resets the object's
/// backoff when it succeeds.
pub async fn instrumented<K, P, F>(
    ctx: &Context<P>,
    object: &K,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Managed,
    F: Future<Output = Result<Action, Error>>,
{
    use tracing::Instrument;
    let kind = K::kind(&());
    let span = tracing::info_span!(
        "reconcile",
        kind = %kind,
        namespace = %object.namespace().unwrap_or_default(),
        name = %object.name_any(),
    );
    // Decisions about references need the Accounts known first (after a restart too).
    filled(&ctx.accounts).await;
    let started = Instant::now();
    let result = reconcile.instrument(span).await;
    ctx.metrics.reconciled(kind.as_ref(), started.elapsed());
    tracing::debug!(object = %key(object), took = ?started.elapsed(), ok = result.is_ok(), "reconciled");
    match &result {
        Ok(_) => ctx.succeeded(object),
        // The cache lagged: a quiet retry, not something to chase.
        Err(error) if error.is_stale_view() => {}
        Err(error) if ctx.failures(object) == 0 => {
            // The first failure of a streak is worth an Event; the retries are not.
            publish(ctx, object, error.category(), &error_chain(error), true).await;
        }
        Err(_) => {}
    }
    result
}

/// Adds or removes the finalizer around the kind's apply and cleanup steps. The finalizer is
/// added in the reconcile that applies, before anything is sent to the portal, rather than in a
/// reconcile of its own that the finalizer's watch event would have to wake again: one
/// reconcile per new object instead of two.
pub async fn finalized<K, ApplyFut, CleanupFut>(
    client: &kube::Client,
    object: Arc<K>,
    apply: impl FnOnce(Arc<K>) -> ApplyFut,
    cleanup: impl FnOnce(Arc<K>) -> CleanupFut,
) -> Result<Action, Error>
where
    K: Managed,
    ApplyFut: Future<Output = Result<Action, Error>>,
    CleanupFut: Future<Output = Result<Action, Error>>,
{
    let held = object.finalizers().iter().position(|f| f == FINALIZER);
    let deleting = object.meta().deletion_timestamp.is_some();
    match (deleting, held) {
        (false, Some(_)) => apply(object).await,
        (false, None) => {
            let added = object
                .api(client)
                .patch(
                    &object.name_any(),
                    &PatchParams::default(),
                    &Patch::Json::<()>(adding_finalizer(object.finalizers())),
                )
                .await
                .map_err(Error::finalizer("add the finalizer"))?;
            apply(Arc::new(added)).await
        }
        (true, Some(index)) => {
            let action = cleanup(object.clone()).await?;
            object
                .api(client)
                .patch(
                    &object.name_any(),
                    &PatchParams::default(),
                    &Patch::Json::<()>(removing_finalizer(index)),
                )
                .await
                .map_err(Error::finalizer("remove the finalizer"))?;
            Ok(action)
        }
        // Deleted, and ours is no longer in the way: nothing to do.
        (true, None) => Ok(Action::await_change()),
    }
}

/// Appends the finalizer, if the list is still the one the operator saw (the API server
/// refuses the patch otherwise, and the next reconcile sees the fresh list).
fn adding_finalizer(seen: &[String]) -> json_patch::Patch {
    let operations = if seen.is_empty() {
        serde_json::json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
        ])
    } else {
        serde_json::json!([
            { "op": "test", "path": "/metadata/finalizers", "value": seen },
            { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER },
        ])
    };
    serde_json::from_value(operations).expect("a JSON patch")
}

/// Removes the finalizer at `index`, if it is still there.
fn removing_finalizer(index: usize) -> json_patch::Patch {
    let path = format!("/metadata/finalizers/{index}");
    serde_json::from_value(serde_json::json!([
        { "op": "test", "path": path, "value": FINALIZER },
        { "op": "remove", "path": path },
    ]))
    .expect("a JSON patch")
}

/// One reconcile of `object`: instrumented, with the finalizer added before `apply` and removed
/// after a successful `cleanup`.
pub async fn reconcile_object<K, P, ApplyFut, CleanupFut>(
    ctx: &Context<P>,
    object: Arc<K>,
    apply: impl FnOnce(Arc<K>) -> ApplyFut,
    cleanup: impl FnOnce(Arc<K>) -> CleanupFut,
) -> Result<Action, Error>
where
    K: Managed,
    ApplyFut: Future<Output = Result<Action, Error>>,
    CleanupFut: Future<Output = Result<Action, Error>>,
{
    instrumented(
        ctx,
        object.as_ref(),
        finalized(&ctx.client, object.clone(), apply, cleanup),
    )
    .await
}

/// After acting: at once when the plan made from the portal's answer still has work (a reissue
/// after an expiry, say), otherwise as that plan says.
pub fn then<A>(remaining: &[A], requeue_after: Option<Duration>) -> Action {
    if remaining.is_empty() {
        requeue(requeue_after)
    } else {
        Action::requeue(Duration::ZERO)
    }
}

/// Requeue after `after`, if any; otherwise wait for a change (watch, feed or resync).
pub fn requeue(after: Option<Duration>) -> Action {
    match after {
        // A moment past the instant, so the portal reads the new state.
        Some(after) => Action::requeue(after + Duration::from_millis(50)),
        None => Action::await_change(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Problem, ProblemType};

    fn refused(problem_type: ProblemType) -> Error {
        Error::Observe(PortalError::Refused {
            status: problem_type.status(),
            problem: Problem::new(problem_type, "why"),
            retry_after: None,
        })
    }

    #[test]
    fn the_backoff_of_deleted_objects_is_dropped() {
        let mut failures = HashMap::from([
            ("AdminInvitation/team/ann".to_owned(), 3),
            ("AdminInvitation/team/gone".to_owned(), 7),
        ]);
        let known = ["AdminInvitation/team/ann".to_owned()]
            .into_iter()
            .collect();
        retain_known(&mut failures, &known);
        assert_eq!(
            failures,
            HashMap::from([("AdminInvitation/team/ann".to_owned(), 3)])
        );
    }

    #[test]
    fn errors_are_labelled_by_what_to_fix() {
        assert_eq!(
            refused(ProblemType::Unauthenticated).category(),
            "PortalUnauthorized"
        );
        assert_eq!(
            refused(ProblemType::Forbidden).category(),
            "PortalForbidden"
        );
        assert_eq!(
            refused(ProblemType::ServiceUnavailable).category(),
            "PortalUnavailable"
        );
        assert_eq!(
            refused(ProblemType::TooManyRequests).category(),
            "PortalUnavailable"
        );
        let conflict = Error::Execute(ExecuteError {
            step: "create the account manager",
            source: PortalError::Refused {
                status: 409,
                problem: Problem::new(ProblemType::EmailConflict, "taken"),
                retry_after: None,
            },
        });
        assert_eq!(conflict.category(), "PortalRefused");
    }

    #[test]
    fn only_the_caches_own_lag_is_a_quiet_retry() {
        let api = |code: u16| {
            kube::Error::Api(
                kube::core::Status {
                    code,
                    ..kube::core::Status::failure("refused", "Refused")
                }
                .boxed(),
            )
        };
        let status_write = |code| Error::Kube {
            step: "write the status",
            source: api(code),
        };
        let add = |code| Error::Finalizer {
            step: "add the finalizer",
            source: api(code),
        };
        let remove = |code| Error::Finalizer {
            step: "remove the finalizer",
            source: api(code),
        };
        let table = [
            ("status write of a deleted object", status_write(404), true),
            ("status write that conflicted", status_write(409), true),
            (
                "status write refused by admission",
                status_write(422),
                false,
            ),
            (
                "status write the API server failed",
                status_write(500),
                false,
            ),
            ("finalizer test that failed", add(422), true),
            ("finalizer patch that conflicted", add(409), true),
            ("finalizer removal of a deleted object", remove(404), true),
            ("finalizer patch forbidden", add(403), false),
            ("finalizer patch the API server failed", remove(503), false),
            (
                "the portal refusing",
                refused(ProblemType::Forbidden),
                false,
            ),
        ];
        for (what, error, stale) in table {
            assert_eq!(error.is_stale_view(), stale, "{what}");
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_five_minutes() {
        assert_eq!(backoff(1, 0.0, MAX_BACKOFF), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.0, MAX_BACKOFF), Duration::from_secs(2));
        assert_eq!(backoff(5, 0.0, MAX_BACKOFF), Duration::from_secs(16));
        assert_eq!(backoff(40, 1.0, MAX_BACKOFF), Duration::from_secs(300));
        assert!(
            backoff(3, 1.0, MAX_BACKOFF) > backoff(3, 0.0, MAX_BACKOFF),
            "jitter spreads retries"
        );
    }
}
