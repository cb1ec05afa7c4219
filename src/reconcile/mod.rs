//! The reconcile core shared by the controllers and the `apply`/`diff` CLI: one pure
//! `plan(desired, observed, now) -> Plan` per kind, decided with no I/O, each kind's [`Kind`]
//! impl (how it is observed and how a plan is carried out), and the one [`driver`] that runs
//! observe → plan → execute → re-plan for every kind and both hosts.

pub mod account;
pub mod account_manager;
pub mod admin_invitation;
pub mod driver;
pub mod refs;
pub mod role_binding;
pub mod subscription;
pub mod team;
pub mod user;
pub mod user_role;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};

pub use crate::crd::Refusal;
pub use driver::{Host, Input, Kind};
pub use refs::{AccountState, ParentState, Refs};

/// Whether the object is live (converge it) or being deleted (clean up after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Live,
    Deleting,
}

/// Who an object is: what portal references and idempotency keys are made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    /// Empty for a cluster-scoped kind (Account).
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: Option<i64>,
}

/// The object as every kind's pure plan reads it: who it is, its spec and recorded status,
/// whether it is being deleted, and what its references resolved to.
#[derive(Debug, Clone)]
pub struct Desired<'a, Spec, Status> {
    pub id: Identity<'a>,
    pub spec: &'a Spec,
    pub status: &'a Status,
    pub deleting: bool,
    pub refs: Refs,
}

impl<'a> Identity<'a> {
    pub fn of(meta: &'a ObjectMeta) -> Identity<'a> {
        Identity {
            namespace: meta.namespace.as_deref().unwrap_or_default(),
            name: meta.name.as_deref().unwrap_or_default(),
            uid: meta.uid.as_deref().unwrap_or_default(),
            generation: meta.generation,
        }
    }
}

impl<'a, Spec, Status> Desired<'a, Spec, Status> {
    /// What a kind's plan reads of `input`.
    pub fn of<K: Kind<Spec = Spec, Status = Status>>(input: &Input<'a, K>) -> Self {
        Desired {
            id: Identity::of(input.object.meta()),
            spec: input.object.spec(),
            status: input.status,
            deleting: input.lifecycle == Lifecycle::Deleting,
            refs: input.refs.clone(),
        }
    }
}

/// What one kind's `plan` decided: the portal writes to make, the status and outcome as this
/// observation shows them, and when to look again without an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<A, S> {
    pub actions: Vec<A>,
    pub status: S,
    pub outcome: Outcome,
    /// When to look again without an event: at an expiry, or soon while waiting for an Account.
    pub requeue_after: Option<Duration>,
}

/// How soon to look again at an object whose Account (or parent) is missing or not in the
/// portal yet. Watches usually bring the change sooner; this covers a cache that lagged.
pub const WAIT_FOR_ACCOUNT: std::time::Duration = std::time::Duration::from_secs(5);

/// kstatus condition types.
pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// The three kstatus conditions for one outcome: exactly one of ready / reconciling / stalled
/// describes the object; the others are False.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The portal matches the spec.
    Ready { reason: String, message: String },
    /// Work is under way (or waiting for something that will happen by itself).
    Reconciling { reason: String, message: String },
    /// A person must act: the spec cannot be carried out as written (a refusal), or it settled
    /// as something other than what it asked for (an invitation that expired or was revoked).
    Stalled { reason: String, message: String },
}

impl Outcome {
    /// The reason of the condition that describes the object (e.g. `Pending`, `EmailConflict`).
    pub fn reason(&self) -> &str {
        match self {
            Outcome::Ready { reason, .. }
            | Outcome::Reconciling { reason, .. }
            | Outcome::Stalled { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Outcome::Ready { message, .. }
            | Outcome::Reconciling { message, .. }
            | Outcome::Stalled { message, .. } => message,
        }
    }

    /// The conditions to record, keeping `lastTransitionTime` of any condition whose status did
    /// not change (so a steady state writes nothing new).
    pub fn conditions(
        &self,
        previous: &[Condition],
        generation: Option<i64>,
        now: &Time,
    ) -> Vec<Condition> {
        let (ready, reconciling, stalled, reason, message) = match self {
            Outcome::Ready { reason, message } => ("True", "False", "False", reason, message),
            Outcome::Reconciling { reason, message } => ("False", "True", "False", reason, message),
            Outcome::Stalled { reason, message } => ("False", "False", "True", reason, message),
        };
        [
            (READY, ready),
            (RECONCILING, reconciling),
            (STALLED, stalled),
        ]
        .into_iter()
        .map(|(kind, status)| {
            let (reason, message) = if status == "True" || kind == READY {
                (reason.clone(), message.clone())
            } else {
                (format!("Not{kind}"), String::new())
            };
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == kind && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: kind.into(),
                status: status.into(),
                reason,
                message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
    }
}

/// The portal's refusal recorded for this generation, if any: a spec the portal refused is not
/// sent again until it changes (no retry storm). A refusal of an older generation is void.
pub fn refused_at(refused: Option<&Refusal>, generation: Option<i64>) -> Option<Outcome> {
    refused
        .filter(|r| Some(r.generation) == generation && !r.waits_for_another_object())
        .map(Refusal::outcome)
}

/// How soon to try again a write refused because an object it names is not in the portal yet
/// (a user role, a team, a user), when no event says it came.
pub const WAIT_FOR_REFERENCE: Duration = Duration::from_secs(60);

impl Refusal {
    /// Whether the refusal named an object that is not in the portal yet (a user role, a team, a
    /// user): the spec is right, another object is late, so it is retried rather than held
    /// until the spec changes.
    pub fn waits_for_another_object(&self) -> bool {
        self.reason == crate::api::ProblemType::UnknownReference.reason()
    }

    /// The outcome to record for this refusal and when to look again: Stalled, retried later
    /// only when another object is late.
    pub fn settled(&self) -> (Outcome, Option<Duration>) {
        (
            self.outcome(),
            self.waits_for_another_object()
                .then_some(WAIT_FOR_REFERENCE),
        )
    }

    /// The Stalled outcome that says what was refused.
    pub fn outcome(&self) -> Outcome {
        Outcome::Stalled {
            reason: self.reason.clone(),
            message: self.message.clone(),
        }
    }
}

/// Why carrying out a plan failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}")]
pub struct ExecuteError {
    /// What was being done, e.g. "create the portal invitation".
    pub step: &'static str,
    #[source]
    pub source: crate::portal_client::PortalError,
}

impl ExecuteError {
    pub fn new(step: &'static str) -> impl FnOnce(crate::portal_client::PortalError) -> Self {
        move |source| ExecuteError { step, source }
    }

    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        self.source.is_transient()
    }

    /// The refusal of `generation` this error is: the portal's reason and words.
    pub fn refusal(&self, generation: Option<i64>) -> Refusal {
        Refusal {
            generation: generation.unwrap_or_default(),
            reason: self
                .source
                .problem_type()
                .map(crate::api::ProblemType::reason)
                .unwrap_or_else(|| "Refused".into()),
            message: format!("{}: {}", self.step, self.source.detail()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_holds_until_the_generation_changes() {
        let refused = Refusal {
            generation: 2,
            reason: "EmailConflict".into(),
            message: "why".into(),
        };
        assert_eq!(
            refused_at(Some(&refused), Some(2)),
            Some(Outcome::Stalled {
                reason: "EmailConflict".into(),
                message: "why".into()
            })
        );
        assert_eq!(refused_at(Some(&refused), Some(3)), None);
        assert_eq!(refused_at(None, Some(2)), None);
    }
}
