//! Subscription: create the account's subscription of a licence type, keep its quantity as the
//! spec says, and record what is assigned and free. Deleting the object leaves the subscription
//! unless `deletionPolicy: Delete`.
//!
//! The portal object is found by its `externalRef` (`Subscription/{namespace}/{name}/{uid}`) and
//! created with the idempotency key `{uid}/create`.

use std::fmt;

use crate::api::{CreateSubscription, ExternalRef, SubscriptionView};
use crate::crd::{DeletionPolicy, Subscription, SubscriptionSpec, SubscriptionStatus};
use crate::portal_client::{PortalApi, PortalResult};

use super::driver::{Input, Kind, Mark};
use super::{ExecuteError, Outcome, Refusal};

pub type Desired<'a> = super::Desired<'a, SubscriptionSpec, SubscriptionStatus>;
pub type Plan = super::Plan<Write, SubscriptionStatus>;

/// The externalRef of `object`'s portal subscription.
pub fn reference(object: &Subscription) -> String {
    external_ref(&super::Identity::of(&object.metadata))
}

fn external_ref(id: &super::Identity) -> String {
    ExternalRef::Subscription {
        namespace: id.namespace.to_owned(),
        name: id.name.to_owned(),
        uid: id.uid.to_owned(),
    }
    .to_string()
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub subscription: Option<SubscriptionView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Create {
        account: String,
        subscription: CreateSubscription,
        idempotency_key: String,
    },
    SetQuantity {
        id: String,
        from: i64,
        to: i64,
        version: i64,
    },
    Delete {
        id: String,
        license: String,
    },
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Create { subscription, .. } => write!(
                f,
                "create a {} subscription of {} licences",
                subscription.license_type, subscription.quantity
            ),
            Write::SetQuantity { from, to, .. } => {
                write!(f, "change the quantity from {from} to {to} licences")
            }
            Write::Delete { license, .. } => write!(f, "delete the {license} subscription"),
        }
    }
}

fn quiet(outcome: Outcome, status: SubscriptionStatus) -> Plan {
    Plan {
        actions: Vec::new(),
        status,
        outcome,
        requeue_after: None,
    }
}

pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    let spec = desired.spec;
    let mut status = desired.status.clone();
    status.refused = None;
    let found = observed.subscription.as_ref();
    if desired.deleting {
        let actions = match (found, spec.deletion_policy) {
            (Some(s), DeletionPolicy::Delete) => vec![Write::Delete {
                id: s.id.clone(),
                license: s.license_type.to_string(),
            }],
            _ => Vec::new(),
        };
        return Plan {
            actions,
            status,
            outcome: Outcome::Reconciling {
                reason: "Deleting".into(),
                message: "cleaning up as spec.deletionPolicy says".into(),
            },
            requeue_after: None,
        };
    }
    let account = match desired
        .refs
        .account
        .portal_account(&spec.account_ref.name, desired.id.namespace)
    {
        Ok(account) => account,
        Err((outcome, requeue_after)) => {
            return Plan {
                requeue_after,
                ..quiet(outcome, status)
            };
        }
    };
    status.observed_generation = desired.id.generation;
    let refused = super::refused_at(desired.status.refused.as_ref(), desired.id.generation);
    let Some(found) = found else {
        if let Some(outcome) = refused {
            status.refused = desired.status.refused.clone();
            return quiet(outcome, status);
        }
        return Plan {
            actions: vec![Write::Create {
                account,
                subscription: CreateSubscription {
                    license_type: spec.license_type,
                    quantity: spec.quantity,
                    external_ref: Some(external_ref(&desired.id)),
                },
                idempotency_key: format!("{}/create", desired.id.uid),
            }],
            status,
            outcome: Outcome::Reconciling {
                reason: "Creating".into(),
                message: format!(
                    "creating a {} subscription of {} licences",
                    spec.license_type, spec.quantity
                ),
            },
            requeue_after: None,
        };
    };
    status.portal_id = Some(found.id.clone());
    status.quantity = Some(found.quantity);
    status.assigned = Some(found.assigned);
    status.free = Some(found.free);
    if let Some(outcome) = refused {
        status.refused = desired.status.refused.clone();
        return quiet(outcome, status);
    }
    if found.quantity != spec.quantity {
        return Plan {
            actions: vec![Write::SetQuantity {
                id: found.id.clone(),
                from: found.quantity,
                to: spec.quantity,
                version: found.version,
            }],
            status,
            outcome: Outcome::Reconciling {
                reason: "Updating".into(),
                message: format!(
                    "changing the quantity from {} to {}",
                    found.quantity, spec.quantity
                ),
            },
            requeue_after: None,
        };
    }
    quiet(
        Outcome::Ready {
            reason: "Provisioned".into(),
            message: format!(
                "{} {} licences: {} assigned, {} free",
                found.quantity, found.license_type, found.assigned, found.free
            ),
        },
        status,
    )
}

impl Kind for Subscription {
    type Status = SubscriptionStatus;
    type Observed = Observed;
    type Spec = SubscriptionSpec;
    type Write = Write;
    type Executed = Observed;

    const OBSERVE: &'static str = "find the subscription";

    fn spec(&self) -> &SubscriptionSpec {
        &self.spec
    }
    fn status(&self) -> Option<&SubscriptionStatus> {
        self.status.as_ref()
    }
    fn account_ref(&self) -> Option<&crate::crd::AccountRef> {
        Some(&self.spec.account_ref)
    }
    fn refused(status: &mut SubscriptionStatus) -> &mut Option<Refusal> {
        &mut status.refused
    }
    async fn observe_under(
        portal: &impl PortalApi,
        account: &str,
        object: &Self,
    ) -> PortalResult<Observed> {
        Ok(Observed {
            subscription: portal
                .subscription_by_ref(account, &reference(object))
                .await?,
        })
    }
    fn plan(input: &Input<'_, Self>, observed: &Observed, _now_millis: i64) -> Plan {
        plan(&Desired::of(input), observed)
    }
    async fn execute(
        portal: &impl PortalApi,
        plan: &Plan,
        mut observed: Observed,
    ) -> Result<Observed, ExecuteError> {
        for action in &plan.actions {
            match action {
                Write::Create {
                    account,
                    subscription,
                    idempotency_key,
                } => {
                    observed.subscription = Some(
                        portal
                            .create_subscription(account, subscription, idempotency_key)
                            .await
                            .map_err(ExecuteError::new("create the subscription"))?,
                    );
                }
                Write::SetQuantity {
                    id, to, version, ..
                } => {
                    observed.subscription = Some(
                        portal
                            .update_subscription(id, *to, *version)
                            .await
                            .map_err(ExecuteError::new("change the subscription's quantity"))?,
                    );
                }
                Write::Delete { id, .. } => {
                    portal
                        .delete_subscription(id)
                        .await
                        .map_err(ExecuteError::new("delete the subscription"))?;
                    observed.subscription = None;
                }
            }
        }
        Ok(observed)
    }
    fn mark(write: &Write) -> Mark {
        match write {
            Write::Create { .. } => Mark::Add,
            Write::SetQuantity { .. } => Mark::Change,
            Write::Delete { .. } => Mark::Remove,
        }
    }
    fn after(input: &Input<'_, Self>, executed: &Observed, _now_millis: i64) -> Plan {
        plan(&Desired::of(input), executed)
    }
}
