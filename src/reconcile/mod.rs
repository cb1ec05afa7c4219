//! The reconcile core shared by the controllers and the `apply`/`diff` CLI: one pure
//! `plan(desired, observed, now) -> Plan` per kind, decided here with no I/O, and carried out by
//! a short executor elsewhere.

pub mod admin_invitation;
pub mod role_binding;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

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
