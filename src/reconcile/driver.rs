//! The one converge and the one cleanup, for every kind and both hosts.
//!
//! *Resolve* (the object's Account, an Account's parent, a stored link: asked of the [`Host`]) →
//! *observe* (the portal) → *plan* (the kind's pure `plan`) → *execute* (unless the host only
//! shows plans, as `diff` does) → *store the link* (if one was issued) → *re-plan* from what the
//! portal answered → the status and outcome to record. A refusal the spec causes is recorded in
//! the status with its generation, so it is not sent again until the spec changes.
//!
//! A kind is a [`Kind`] impl next to its plan; a host (the cluster's caches and Secrets, or a
//! folder of manifests with a state file and 0600 link files) is a [`Host`] impl.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use kube::{Resource, ResourceExt};

use super::refs::{self, Refs};
use super::{ExecuteError, Lifecycle, Outcome, Plan, Refusal};
use crate::crd::{Account, AccountRef};
use crate::portal_client::{PortalApi, PortalError, PortalResult};

/// The object a kind's plan reads: the object, its recorded status, what its references
/// resolved to, and whether it is live or being deleted.
pub struct Input<'a, K: Kind> {
    pub object: &'a K,
    pub status: &'a K::Status,
    pub refs: &'a Refs,
    pub lifecycle: Lifecycle,
}

/// One kind of object the operator reconciles against the portal.
pub trait Kind: Resource<DynamicType = ()> + Send + Sync + Sized {
    type Spec;
    type Status: Clone + Default + PartialEq + std::fmt::Debug + serde::Serialize + Send + Sync;
    /// What the portal holds for one object.
    type Observed: Default + Send + Sync;
    /// One portal write (not to be confused with kube-runtime's `Action`, a requeue); `Display`
    /// is how `diff` and `apply` describe it.
    type Write: Display + Send + Sync;
    /// What carrying out a plan yields (usually the portal's objects as they now stand).
    type Executed: Send + Sync;

    /// What observing is, in an error message ("find the portal invitation").
    const OBSERVE: &'static str;

    fn spec(&self) -> &Self::Spec;
    fn status(&self) -> Option<&Self::Status>;
    /// The status as recorded (the default one before any was written).
    fn recorded_status(&self) -> Self::Status {
        self.status().cloned().unwrap_or_default()
    }
    /// The Account this object lives under (none for an Account itself).
    fn account_ref(&self) -> Option<&AccountRef>;
    /// An Account's parent.
    fn parent_ref(&self) -> Option<&AccountRef> {
        None
    }
    /// Whether a stored link matters now (a pending Link invitation).
    fn link_matters(&self) -> bool {
        false
    }
    /// The refusal recorded in `status`, to be kept or replaced.
    fn refused(status: &mut Self::Status) -> &mut Option<Refusal>;

    /// What the portal holds for `object` under the portal account `account`.
    fn observe_under(
        portal: &impl PortalApi,
        account: &str,
        object: &Self,
    ) -> impl Future<Output = PortalResult<Self::Observed>> + Send;
    /// What the portal holds for a live `object`: nothing while its Account is not ready.
    fn observe(
        portal: &impl PortalApi,
        object: &Self,
        refs: &Refs,
    ) -> impl Future<Output = PortalResult<Self::Observed>> + Send {
        async move {
            match &refs.account {
                refs::AccountState::Ready { portal_id } => {
                    Self::observe_under(portal, portal_id, object).await
                }
                _ => Ok(Self::Observed::default()),
            }
        }
    }
    /// What cleanup removes: by reference under the Account's portal account, whatever its
    /// delegation now (kinds that record an id look there first).
    fn observe_for_cleanup(
        portal: &impl PortalApi,
        object: &Self,
        refs: &Refs,
    ) -> impl Future<Output = PortalResult<Self::Observed>> + Send {
        async move {
            match &refs.account_portal_id {
                Some(account) => Self::observe_under(portal, account, object).await,
                None => Ok(Self::Observed::default()),
            }
        }
    }
    fn plan(
        input: &Input<'_, Self>,
        observed: &Self::Observed,
        now_millis: i64,
    ) -> Plan<Self::Write, Self::Status>;
    fn execute(
        portal: &impl PortalApi,
        plan: &Plan<Self::Write, Self::Status>,
        observed: Self::Observed,
    ) -> impl Future<Output = Result<Self::Executed, ExecuteError>> + Send;
    /// The plan after acting, from what the portal answered (the status to record, and any
    /// work that remains). `input.status` is the first plan's status.
    fn after(
        input: &Input<'_, Self>,
        executed: &Self::Executed,
        now_millis: i64,
    ) -> Plan<Self::Write, Self::Status>;
    /// The outcome of a refusal just recorded in `status` (which the kind may annotate), and
    /// when to look again: by default Stalled with the portal's words, until the spec changes.
    fn refusal_outcome(
        &self,
        refusal: &Refusal,
        _status: &mut Self::Status,
    ) -> (Outcome, Option<Duration>) {
        refusal.settled()
    }
    /// The link the portal just issued (shown only once), if any.
    fn take_link(_executed: &mut Self::Executed) -> Option<String> {
        None
    }
    /// Whether `action` changed the portal (a grant to someone not an admin yet did not).
    fn made(_action: &Self::Write, _executed: &Self::Executed) -> bool {
        true
    }
    /// What kind of change `write` is, for `diff`'s `+` / `~` / `-`.
    fn mark(_write: &Self::Write) -> Mark {
        Mark::Add
    }
    /// What `action` waits for, when it only waits for a person (it was tried before and is
    /// tried again when they act, e.g. "ann@… accepts an invitation"): `diff` shows it as
    /// waiting, not as a change.
    fn awaits(_status: &Self::Status, _action: &Self::Write) -> Option<String> {
        None
    }
}

/// What kind of change a portal write is: something made (`+`), changed in place (`~`), or
/// taken away (`-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    Add,
    Change,
    Remove,
}

impl Mark {
    pub fn sign(self) -> char {
        match self {
            Mark::Add => '+',
            Mark::Change => '~',
            Mark::Remove => '-',
        }
    }
}

/// What differs between running in a cluster and from a folder of manifests.
pub trait Host: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    fn now_millis(&self) -> i64;
    /// Whether plans are carried out (`apply`, the operator) or only shown (`diff`).
    fn acts(&self) -> bool;
    /// The Account object named `name`, as this host knows it.
    fn account(&self, name: &str) -> Option<Arc<Account>>;
    /// The portal id of the Account named `name`, whatever its delegation (cleanup looks there).
    fn account_portal_id(&self, name: &str) -> Option<String> {
        refs::portal_id(self.account(name).as_deref())
    }
    fn link_stored<K: Kind>(
        &self,
        object: &K,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
    /// Keeps the link where only the right people read it (an owned Secret, a 0600 file).
    fn store_link<K: Kind>(
        &self,
        object: &K,
        link: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Removes a stored link of an object cleaned up (a Secret goes with its owner: nothing).
    fn forget_link<K: Kind>(
        &self,
        object: &K,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Why a converge or cleanup failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError<E: std::error::Error + 'static> {
    #[error("{step}")]
    Observe {
        step: &'static str,
        #[source]
        source: PortalError,
    },
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error("{step}")]
    Host {
        step: &'static str,
        #[source]
        source: E,
    },
}

impl<E: std::error::Error + 'static> ConvergeError<E> {
    /// The portal's error, if the portal failed.
    pub fn portal(&self) -> Option<&PortalError> {
        match self {
            ConvergeError::Observe { source, .. } => Some(source),
            ConvergeError::Execute(error) => Some(&error.source),
            ConvergeError::Host { .. } => None,
        }
    }
}

/// What one converge decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Converged<S> {
    /// The status to record (conditions aside).
    pub status: S,
    pub outcome: Outcome,
    /// When to look again without an event; zero when work remains after acting.
    pub requeue_after: Option<Duration>,
    /// What was done (or, when the host does not act, would be done), in the actions' words.
    pub changes: Vec<(Mark, String)>,
    /// What waits for a person, when the host does not act.
    pub waiting: Vec<String>,
}

/// What `object`'s references resolve to as `host` knows them (a stored link not looked up).
pub fn references<K: Kind, H: Host>(host: &H, object: &K) -> Refs {
    let namespace = object.namespace().unwrap_or_default();
    let account = object.account_ref().and_then(|r| host.account(&r.name));
    let parent = object.parent_ref().and_then(|r| host.account(&r.name));
    Refs {
        account: refs::account_state(account.as_deref(), &namespace),
        parent: refs::parent_state(object.parent_ref(), parent.as_deref()),
        account_holds_contracts: refs::holds_contracts(account.as_deref()),
        account_portal_id: object
            .account_ref()
            .and_then(|r| host.account_portal_id(&r.name)),
        link_stored: true,
    }
}

/// What the host resolves for `object`, with the stored link looked up when it matters.
async fn resolve<K: Kind, H: Host>(
    host: &H,
    object: &K,
    lifecycle: Lifecycle,
) -> Result<Refs, ConvergeError<H::Error>> {
    let mut refs = references(host, object);
    if lifecycle == Lifecycle::Live && object.link_matters() {
        refs.link_stored =
            host.link_stored(object)
                .await
                .map_err(|source| ConvergeError::Host {
                    step: "read the stored invitation link",
                    source,
                })?;
    }
    Ok(refs)
}

/// Brings the portal in line with a live `object` (or, when the host does not act, says what
/// that would take).
pub async fn converge<K: Kind, H: Host>(
    host: &H,
    portal: &impl PortalApi,
    object: &K,
) -> Result<Converged<K::Status>, ConvergeError<H::Error>> {
    let recorded = object.recorded_status();
    let mut refs = resolve(host, object, Lifecycle::Live).await?;
    let observed =
        K::observe(portal, object, &refs)
            .await
            .map_err(|source| ConvergeError::Observe {
                step: K::OBSERVE,
                source,
            })?;
    let input = Input {
        object,
        status: &recorded,
        refs: &refs,
        lifecycle: Lifecycle::Live,
    };
    let first = K::plan(&input, &observed, host.now_millis());
    if first.actions.is_empty() || !host.acts() {
        let mut changes = Vec::new();
        let mut waiting = Vec::new();
        for action in &first.actions {
            match K::awaits(&recorded, action) {
                Some(awaited) => waiting.push(format!("{action} once {awaited}")),
                None => changes.push((K::mark(action), action.to_string())),
            }
        }
        return Ok(Converged {
            status: first.status,
            outcome: first.outcome,
            requeue_after: first.requeue_after,
            changes,
            waiting,
        });
    }
    let mut executed = match K::execute(portal, &first, observed).await {
        Ok(executed) => executed,
        Err(error) if !error.is_transient() => {
            let refusal = error.refusal(object.meta().generation);
            let mut status = first.status;
            let (outcome, requeue_after) = object.refusal_outcome(&refusal, &mut status);
            *K::refused(&mut status) = Some(refusal);
            return Ok(Converged {
                status,
                outcome,
                requeue_after,
                changes: Vec::new(),
                waiting: Vec::new(),
            });
        }
        Err(error) => return Err(error.into()),
    };
    if let Some(link) = K::take_link(&mut executed) {
        host.store_link(object, &link)
            .await
            .map_err(|source| ConvergeError::Host {
                step: "store the invitation link",
                source,
            })?;
        refs.link_stored = true;
    }
    let changes = first
        .actions
        .iter()
        .filter(|action| K::made(action, &executed))
        .map(|action| (K::mark(action), action.to_string()))
        .collect();
    let after = K::after(
        &Input {
            object,
            status: &first.status,
            refs: &refs,
            lifecycle: Lifecycle::Live,
        },
        &executed,
        host.now_millis(),
    );
    Ok(Converged {
        status: after.status,
        outcome: after.outcome,
        requeue_after: if after.actions.is_empty() {
            after.requeue_after
        } else {
            Some(Duration::ZERO)
        },
        changes,
        waiting: Vec::new(),
    })
}

/// Undoes in the portal what a deleted `object` made, as its deletion policy says (or, when the
/// host does not act, says what that would take): the actions' words.
pub async fn cleanup<K: Kind, H: Host>(
    host: &H,
    portal: &impl PortalApi,
    object: &K,
) -> Result<Vec<String>, ConvergeError<H::Error>> {
    let recorded = object.recorded_status();
    let refs = resolve(host, object, Lifecycle::Deleting).await?;
    let observed = K::observe_for_cleanup(portal, object, &refs)
        .await
        .map_err(|source| ConvergeError::Observe {
            step: K::OBSERVE,
            source,
        })?;
    let plan = K::plan(
        &Input {
            object,
            status: &recorded,
            refs: &refs,
            lifecycle: Lifecycle::Deleting,
        },
        &observed,
        host.now_millis(),
    );
    let changes = plan.actions.iter().map(ToString::to_string).collect();
    if host.acts() {
        K::execute(portal, &plan, observed).await?;
        host.forget_link(object)
            .await
            .map_err(|source| ConvergeError::Host {
                step: "remove the stored invitation link",
                source,
            })?;
    }
    Ok(changes)
}

/// What a plan of `object` says about it from an observation made elsewhere (the resync's bulk
/// lists): whether the portal drifted from the recorded status.
pub fn plan_from<K: Kind>(
    object: &K,
    refs: &Refs,
    observed: &K::Observed,
    now_millis: i64,
) -> Plan<K::Write, K::Status> {
    let recorded = object.recorded_status();
    K::plan(
        &Input {
            object,
            status: &recorded,
            refs,
            lifecycle: Lifecycle::Live,
        },
        observed,
        now_millis,
    )
}

#[cfg(test)]
mod tests {
    //! The driver with a scripted kind and host: what it does is decided by the plans and the
    //! host, the same for every kind.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::api::{Problem, ProblemType};
    use crate::portal_client::HttpPortal;

    /// A kind for the driver alone: its spec scripts what the portal holds and answers.
    #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
    #[kube(
        group = "test.portal.dev",
        version = "v1",
        kind = "Widget",
        namespaced,
        status = "WidgetStatus"
    )]
    struct WidgetSpec {
        account: AccountRef,
        /// The writes the first plan asks for; the first names the portal's answer
        /// ("refused", "down", or anything else: done).
        writes: Vec<String>,
        /// The writes still wanted after acting.
        left: Vec<String>,
        /// A link the portal issues.
        link: Option<String>,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
    struct WidgetStatus {
        made: Vec<String>,
        link_stored: bool,
        refused: Option<Refusal>,
    }

    /// The portal writes the scripted kind made, by object name.
    static WRITES: Mutex<BTreeMap<String, Vec<String>>> = Mutex::new(BTreeMap::new());

    struct Scripted(String);

    impl Display for Scripted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "write {}", self.0)
        }
    }

    fn refused(status: u16, problem_type: ProblemType) -> PortalError {
        PortalError::Refused {
            status,
            problem: Problem::new(problem_type, "no"),
            retry_after: None,
        }
    }

    impl Kind for Widget {
        type Status = WidgetStatus;
        type Observed = ();
        type Spec = WidgetSpec;
        type Write = Scripted;
        type Executed = (Vec<String>, Option<String>);
        const OBSERVE: &'static str = "find the widget";

        fn spec(&self) -> &WidgetSpec {
            &self.spec
        }
        fn status(&self) -> Option<&WidgetStatus> {
            self.status.as_ref()
        }
        fn account_ref(&self) -> Option<&AccountRef> {
            Some(&self.spec.account)
        }
        fn link_matters(&self) -> bool {
            self.spec.link.is_some()
        }
        fn refused(status: &mut WidgetStatus) -> &mut Option<Refusal> {
            &mut status.refused
        }
        async fn observe_under(_: &impl PortalApi, _: &str, _: &Self) -> PortalResult<()> {
            Ok(())
        }
        fn plan(input: &Input<'_, Self>, _: &(), _: i64) -> Plan<Scripted, WidgetStatus> {
            let spec = &input.object.spec;
            let writes = match input.lifecycle {
                Lifecycle::Deleting => vec![format!("remove-{}", input.object.name_any())],
                Lifecycle::Live => spec.writes.clone(),
            };
            Plan {
                actions: writes.into_iter().map(Scripted).collect(),
                status: WidgetStatus {
                    link_stored: input.refs.link_stored,
                    ..input.status.clone()
                },
                outcome: Outcome::Reconciling {
                    reason: "Writing".into(),
                    message: String::new(),
                },
                requeue_after: Some(Duration::from_secs(60)),
            }
        }
        async fn execute(
            _: &impl PortalApi,
            plan: &Plan<Scripted, WidgetStatus>,
            _: (),
        ) -> Result<Self::Executed, ExecuteError> {
            let name = plan
                .actions
                .first()
                .map(|w| w.0.clone())
                .unwrap_or_default();
            let failure = match name.as_str() {
                "refused" => Some(refused(409, ProblemType::EmailConflict)),
                "down" => Some(refused(503, ProblemType::ServiceUnavailable)),
                _ => None,
            };
            if let Some(source) = failure {
                return Err(ExecuteError::new("write the widget")(source));
            }
            let made: Vec<String> = plan.actions.iter().map(|w| w.0.clone()).collect();
            WRITES
                .lock()
                .unwrap()
                .entry(name)
                .or_default()
                .extend(made.clone());
            Ok((
                made,
                Some("https://portal.example/accept#token=secret".into()),
            ))
        }
        fn after(
            input: &Input<'_, Self>,
            executed: &Self::Executed,
            _: i64,
        ) -> Plan<Scripted, WidgetStatus> {
            Plan {
                actions: input
                    .object
                    .spec
                    .left
                    .iter()
                    .cloned()
                    .map(Scripted)
                    .collect(),
                status: WidgetStatus {
                    made: executed.0.clone(),
                    link_stored: input.refs.link_stored,
                    refused: None,
                },
                outcome: Outcome::Ready {
                    reason: "Written".into(),
                    message: String::new(),
                },
                requeue_after: Some(Duration::from_secs(60)),
            }
        }
        fn take_link(executed: &mut Self::Executed) -> Option<String> {
            executed.1.take()
        }
    }

    #[derive(Default)]
    struct TestHost {
        diff: bool,
        links: Mutex<Vec<String>>,
        forgotten: Mutex<usize>,
    }

    impl Host for TestHost {
        type Error = std::io::Error;
        fn now_millis(&self) -> i64 {
            0
        }
        fn acts(&self) -> bool {
            !self.diff
        }
        fn account(&self, _: &str) -> Option<Arc<Account>> {
            None
        }
        async fn link_stored<K: Kind>(&self, _: &K) -> std::io::Result<bool> {
            Ok(!self.links.lock().unwrap().is_empty())
        }
        async fn store_link<K: Kind>(&self, _: &K, link: &str) -> std::io::Result<()> {
            self.links.lock().unwrap().push(link.to_owned());
            Ok(())
        }
        async fn forget_link<K: Kind>(&self, _: &K) -> std::io::Result<()> {
            *self.forgotten.lock().unwrap() += 1;
            Ok(())
        }
    }

    fn widget(first_write: &str, left: &[&str], link: bool) -> Widget {
        let mut widget = Widget::new(
            first_write,
            WidgetSpec {
                account: AccountRef {
                    name: "contoso".into(),
                },
                writes: vec![first_write.to_owned(), "second".to_owned()],
                left: left.iter().map(|s| (*s).to_owned()).collect(),
                link: link.then(|| "yes".to_owned()),
            },
        );
        widget.metadata.namespace = Some("team".into());
        widget.metadata.generation = Some(4);
        widget
    }

    fn portal() -> HttpPortal {
        // Never called: the scripted kind answers for the portal.
        HttpPortal::new("http://127.0.0.1:9", "key").unwrap()
    }

    fn writes(name: &str) -> Vec<String> {
        WRITES
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_host_that_does_not_act_writes_nothing_and_says_what_it_would_do() {
        let host = TestHost {
            diff: true,
            ..TestHost::default()
        };
        let object = widget("shown", &[], true);
        let converged = converge(&host, &portal(), &object).await.unwrap();
        assert_eq!(
            converged.changes,
            [
                (Mark::Add, "write shown".to_owned()),
                (Mark::Add, "write second".to_owned())
            ]
        );
        assert!(writes("shown").is_empty(), "diff made a portal write");
        assert!(host.links.lock().unwrap().is_empty());
        assert_eq!(converged.requeue_after, Some(Duration::from_secs(60)));
        let cleaned = cleanup(&host, &portal(), &object).await.unwrap();
        assert_eq!(cleaned, ["write remove-shown"]);
        assert!(writes("remove-shown").is_empty());
        assert_eq!(*host.forgotten.lock().unwrap(), 0);
    }

    #[tokio::test]
    async fn acting_records_what_the_portal_answered_and_stores_the_link_with_the_host() {
        let host = TestHost::default();
        let converged = converge(&host, &portal(), &widget("acted", &[], true))
            .await
            .unwrap();
        assert_eq!(writes("acted"), ["acted", "second"]);
        assert_eq!(converged.status.made, ["acted", "second"]);
        assert_eq!(
            converged.changes,
            [
                (Mark::Add, "write acted".to_owned()),
                (Mark::Add, "write second".to_owned())
            ]
        );
        assert_eq!(
            *host.links.lock().unwrap(),
            ["https://portal.example/accept#token=secret"]
        );
        assert!(
            converged.status.link_stored,
            "re-planned with the link stored"
        );
        assert!(
            !format!("{converged:?}").contains("token="),
            "the link reached what is recorded"
        );
        assert_eq!(converged.requeue_after, Some(Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn work_left_after_acting_is_looked_at_again_at_once() {
        let converged = converge(
            &TestHost::default(),
            &portal(),
            &widget("unfinished", &["more"], false),
        )
        .await
        .unwrap();
        assert_eq!(converged.requeue_after, Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn a_refusal_is_recorded_with_its_generation_and_a_transient_failure_is_an_error() {
        let converged = converge(
            &TestHost::default(),
            &portal(),
            &widget("refused", &[], false),
        )
        .await
        .unwrap();
        let refusal = converged.status.refused.expect("the refusal is recorded");
        assert_eq!(
            (refusal.generation, refusal.reason.as_str()),
            (4, "EmailConflict")
        );
        assert!(
            matches!(converged.outcome, Outcome::Stalled { ref reason, .. } if reason == "EmailConflict")
        );
        assert_eq!(
            converged.requeue_after, None,
            "no retry until the spec changes"
        );
        assert!(converged.changes.is_empty(), "nothing was changed");

        let down = converge(&TestHost::default(), &portal(), &widget("down", &[], false)).await;
        assert!(
            matches!(&down, Err(ConvergeError::Execute(error)) if error.is_transient()),
            "{down:?}"
        );
    }

    #[tokio::test]
    async fn cleanup_acts_and_forgets_the_link_only_when_the_host_acts() {
        let host = TestHost::default();
        let cleaned = cleanup(&host, &portal(), &widget("cleaned", &[], true))
            .await
            .unwrap();
        assert_eq!(cleaned, ["write remove-cleaned"]);
        assert_eq!(writes("remove-cleaned"), ["remove-cleaned"]);
        assert_eq!(*host.forgotten.lock().unwrap(), 1);
    }
}
