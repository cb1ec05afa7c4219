//! The reconcile core shared by the controllers and the `apply`/`diff` CLI: one pure
//! `plan(desired, observed, now) -> Plan` per kind, decided here with no I/O, and carried out by
//! a short executor elsewhere.

pub mod account;
pub mod account_manager;
pub mod admin_invitation;
pub mod refs;
pub mod role_binding;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

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
    /// The spec cannot be carried out as written; a person must change it.
    Stalled { reason: String, message: String },
    /// Settled, but not what the spec asked for (e.g. an invitation that expired).
    NotReady { reason: String, message: String },
}

impl Outcome {
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
            Outcome::NotReady { reason, message } => ("False", "False", "False", reason, message),
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

/// Stalled reasons that describe what was observed (and are re-evaluated on every pass), as
/// opposed to a refusal by the portal, which is not retried until the spec changes.
const OBSERVED_STALLS: &[&str] = &["AccountNotDelegated", "AccountMismatch", "CannotUpdate"];

/// The portal's refusal recorded for this generation, if any: a spec the portal refused is not
/// sent again until it changes (no retry storm).
pub fn refused_at(conditions: &[Condition], generation: Option<i64>) -> Option<Outcome> {
    conditions
        .iter()
        .find(|c| {
            c.type_ == STALLED
                && c.status == "True"
                && c.observed_generation == generation
                && !OBSERVED_STALLS.contains(&c.reason.as_str())
        })
        .map(|c| Outcome::Stalled {
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
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

    /// The Stalled outcome for a refusal the spec causes: the portal's reason and words.
    pub fn refusal(&self) -> Outcome {
        let reason = self
            .source
            .problem_type()
            .map(crate::api::ProblemType::reason)
            .unwrap_or_else(|| "Refused".into());
        Outcome::Stalled {
            reason,
            message: format!("{}: {}", self.step, self.source.detail()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stalled(reason: &str, generation: i64) -> Condition {
        Condition {
            type_: STALLED.into(),
            status: "True".into(),
            reason: reason.into(),
            message: "why".into(),
            observed_generation: Some(generation),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn a_refusal_holds_until_the_generation_changes() {
        let conditions = [stalled("EmailConflict", 2)];
        assert!(refused_at(&conditions, Some(2)).is_some());
        assert!(refused_at(&conditions, Some(3)).is_none());
        let observed = [stalled("AccountNotDelegated", 2)];
        assert!(
            refused_at(&observed, Some(2)).is_none(),
            "what was observed is looked at again"
        );
    }
}
