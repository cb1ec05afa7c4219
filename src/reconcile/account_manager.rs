//! AccountManager: create the portal account manager (the portal sends the activation email
//! with a temporary password, which never reaches Kubernetes), send a new activation when
//! `spec.resendActivation` is raised, and delete it with the object.
//!
//! The portal object is found by its `externalRef` (`AccountManager/{namespace}/{name}/{uid}`)
//! and created with the idempotency key `{uid}/create`.

use std::fmt;
use std::time::Duration;

use crate::api::time::parse_millis;
use crate::api::{AccountManagerState, AccountManagerView};
use crate::api::{CreateAccountManager, ExternalRef};
use crate::crd::{AccountManager, AccountManagerPhase, AccountManagerSpec, AccountManagerStatus};
use crate::portal_client::{PortalApi, PortalResult};

use super::driver::{Input, Kind, Mark};
use super::refs::AccountState;
use super::{ExecuteError, Outcome, Refusal};

pub type Desired<'a> = super::Desired<'a, AccountManagerSpec, AccountManagerStatus>;

/// The externalRef of `object`'s portal account manager.
pub fn reference(object: &AccountManager) -> String {
    let id = super::Identity::of(&object.metadata);
    external_ref(id.namespace, id.name, id.uid)
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub manager: Option<AccountManagerView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Create {
        account: String,
        manager: CreateAccountManager,
        idempotency_key: String,
    },
    ResendActivation {
        id: String,
        idempotency_key: String,
    },
    Delete {
        id: String,
        /// Who it is (for the description).
        email: String,
    },
}

pub type Plan = super::Plan<Write, AccountManagerStatus>;

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Create { manager, .. } => write!(
                f,
                "create account manager {} (the portal emails a temporary password)",
                manager.email
            ),
            Write::ResendActivation { .. } => f.write_str("send a new activation email"),
            Write::Delete { email, .. } => write!(f, "delete account manager {email}"),
        }
    }
}

pub fn external_ref(namespace: &str, name: &str, uid: &str) -> String {
    ExternalRef::AccountManager {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
    }
    .to_string()
}

use super::WAIT_FOR_ACCOUNT;

pub fn plan(desired: &Desired, observed: &Observed, now_millis: i64) -> Plan {
    let mut status = desired.status.clone();
    status.refused = None;
    let found = observed.manager.as_ref();
    let quiet = |outcome: Outcome, status: AccountManagerStatus| Plan {
        actions: Vec::new(),
        status,
        outcome,
        requeue_after: None,
    };
    if desired.deleting {
        return Plan {
            actions: found
                .map(|m| Write::Delete {
                    id: m.id.clone(),
                    email: m.email.clone(),
                })
                .into_iter()
                .collect(),
            status,
            outcome: Outcome::Reconciling {
                reason: "Deleting".into(),
                message: "removing the account manager from the portal".into(),
            },
            requeue_after: None,
        };
    }
    let account = match &desired.refs.account {
        AccountState::NotDelegated => {
            return quiet(
                Outcome::Stalled {
                    reason: "AccountNotDelegated".into(),
                    message: format!(
                        "Account {} does not list namespace {} in spec.namespaces; nothing was sent to the portal",
                        desired.spec.account_ref.name, desired.id.namespace
                    ),
                },
                status,
            );
        }
        AccountState::Missing | AccountState::NotReady => {
            let mut plan = quiet(
                Outcome::Reconciling {
                    reason: "WaitingForAccount".into(),
                    message: format!(
                        "Account {} is not in the portal yet",
                        desired.spec.account_ref.name
                    ),
                },
                status,
            );
            plan.requeue_after = Some(WAIT_FOR_ACCOUNT);
            return plan;
        }
        AccountState::Ready { portal_id } => portal_id.clone(),
    };
    status.observed_generation = desired.id.generation;
    let refused = super::refused_at(desired.status.refused.as_ref(), desired.id.generation);
    let Some(manager) = found else {
        if let Some(outcome) = refused {
            status.refused = desired.status.refused.clone();
            return quiet(outcome, status);
        }
        // The create sends the first activation email: the counter as it is now is served.
        status.observed_resend_activation = desired.spec.resend_activation;
        return Plan {
            actions: vec![Write::Create {
                account,
                manager: CreateAccountManager {
                    first_name: desired.spec.first_name.clone(),
                    last_name: desired.spec.last_name.clone(),
                    email: desired.spec.email.clone(),
                    language: Some(desired.spec.language),
                    branding_domain: desired.spec.branding_domain.clone(),
                    external_ref: Some(external_ref(
                        desired.id.namespace,
                        desired.id.name,
                        desired.id.uid,
                    )),
                },
                idempotency_key: format!("{}/create", desired.id.uid),
            }],
            status,
            outcome: Outcome::Reconciling {
                reason: "Creating".into(),
                message: format!("creating account manager {}", desired.spec.email),
            },
            requeue_after: None,
        };
    };
    status.portal_id = Some(manager.id.clone());
    status.activation_expires_at = manager.activation_expires_at.clone();
    status.phase = Some(match manager.state {
        AccountManagerState::ActivationPending => AccountManagerPhase::ActivationPending,
        AccountManagerState::Active => AccountManagerPhase::Active,
        AccountManagerState::ActivationExpired => AccountManagerPhase::ActivationExpired,
    });
    if let Some(outcome) = refused {
        status.refused = desired.status.refused.clone();
        return quiet(outcome, status);
    }
    let resend_wanted = desired.spec.resend_activation > desired.status.observed_resend_activation;
    if resend_wanted && manager.state != AccountManagerState::Active {
        status.observed_resend_activation = desired.spec.resend_activation;
        return Plan {
            actions: vec![Write::ResendActivation {
                id: manager.id.clone(),
                idempotency_key: format!(
                    "{}/resend/{}",
                    desired.id.uid, desired.spec.resend_activation
                ),
            }],
            status,
            outcome: Outcome::Reconciling {
                reason: "ResendingActivation".into(),
                message: "sending a new activation email with a new temporary password".into(),
            },
            requeue_after: None,
        };
    }
    // Nothing to resend to someone already active; the request is served all the same.
    status.observed_resend_activation = desired
        .spec
        .resend_activation
        .max(desired.status.observed_resend_activation);
    let differs = manager.first_name != desired.spec.first_name
        || manager.last_name != desired.spec.last_name
        || manager.language != desired.spec.language
        || manager.branding_domain != desired.spec.branding_domain;
    if differs {
        return quiet(
            Outcome::Stalled {
                reason: "CannotUpdate".into(),
                message: "the portal cannot change an account manager's name, language or branding domain after creation; restore the spec, or delete and re-create this object".into(),
            },
            status,
        );
    }
    match manager.state {
        AccountManagerState::ActivationPending => Plan {
            actions: Vec::new(),
            outcome: Outcome::Ready {
                reason: "ActivationPending".into(),
                message: format!(
                    "activation email sent to {}; the temporary password expires at {}",
                    manager.email,
                    manager.activation_expires_at.as_deref().unwrap_or("an unknown time")
                ),
            },
            requeue_after: manager
                .activation_expires_at
                .as_deref()
                .and_then(parse_millis)
                .map(|at| Duration::from_millis((at - now_millis).max(0) as u64)),
            status,
        },
        AccountManagerState::Active => quiet(
            Outcome::Ready {
                reason: "Active".into(),
                message: format!("{} has activated their account", manager.email),
            },
            status,
        ),
        AccountManagerState::ActivationExpired => quiet(
            Outcome::Stalled {
                reason: "ActivationExpired".into(),
                message: "the temporary password expired before it was used; raise spec.resendActivation by one to send a new one".into(),
            },
            status,
        ),
    }
}

impl Kind for AccountManager {
    type Status = AccountManagerStatus;
    type Observed = Observed;
    type Spec = AccountManagerSpec;
    type Write = Write;
    type Executed = Observed;

    const OBSERVE: &'static str = "find the account manager";

    fn spec(&self) -> &AccountManagerSpec {
        &self.spec
    }
    fn status(&self) -> Option<&AccountManagerStatus> {
        self.status.as_ref()
    }
    fn account_ref(&self) -> Option<&crate::crd::AccountRef> {
        Some(&self.spec.account_ref)
    }
    fn refused(status: &mut AccountManagerStatus) -> &mut Option<Refusal> {
        &mut status.refused
    }
    async fn observe_under(
        portal: &impl PortalApi,
        account: &str,
        object: &Self,
    ) -> PortalResult<Observed> {
        Ok(Observed {
            manager: portal
                .account_manager_by_ref(account, &reference(object))
                .await?,
        })
    }
    fn plan(input: &Input<'_, Self>, observed: &Observed, now_millis: i64) -> Plan {
        plan(&Desired::of(input), observed, now_millis)
    }
    /// Carries out `plan`; the portal account manager as it now stands.
    async fn execute(
        portal: &impl PortalApi,
        plan: &Plan,
        mut observed: Observed,
    ) -> Result<Observed, ExecuteError> {
        for action in &plan.actions {
            match action {
                Write::Create {
                    account,
                    manager,
                    idempotency_key,
                } => {
                    observed.manager = Some(
                        portal
                            .create_account_manager(account, manager, idempotency_key)
                            .await
                            .map_err(ExecuteError::new("create the account manager"))?,
                    );
                }
                Write::ResendActivation {
                    id,
                    idempotency_key,
                } => {
                    observed.manager = Some(
                        portal
                            .resend_activation(id, idempotency_key)
                            .await
                            .map_err(ExecuteError::new("send a new activation email"))?,
                    );
                }
                Write::Delete { id, .. } => {
                    portal
                        .delete_account_manager(id)
                        .await
                        .map_err(ExecuteError::new("delete the account manager"))?;
                    observed.manager = None;
                }
            }
        }
        Ok(observed)
    }
    fn mark(write: &Write) -> Mark {
        match write {
            Write::Create { .. } => Mark::Add,
            Write::ResendActivation { .. } => Mark::Change,
            Write::Delete { .. } => Mark::Remove,
        }
    }
    fn after(input: &Input<'_, Self>, executed: &Observed, now_millis: i64) -> Plan {
        plan(&Desired::of(input), executed, now_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::time::format_millis;
    use crate::crd::AccountRef;
    use crate::domain::Language;
    use crate::reconcile::{Identity, Refs};

    const NOW: i64 = 1_795_000_000_000;

    fn spec() -> AccountManagerSpec {
        AccountManagerSpec {
            account_ref: AccountRef {
                name: "fabrikam".into(),
            },
            first_name: "Mia".into(),
            last_name: "Wong".into(),
            email: "mia@fabrikam.example".into(),
            language: Language::En,
            branding_domain: None,
            resend_activation: 0,
        }
    }

    fn portal(state: AccountManagerState) -> AccountManagerView {
        AccountManagerView {
            id: "am-1".into(),
            account_id: "acc-3".into(),
            email: "mia@fabrikam.example".into(),
            first_name: "Mia".into(),
            last_name: "Wong".into(),
            language: Language::En,
            branding_domain: None,
            state,
            activation_expires_at: Some(format_millis(NOW + 60_000)),
            external_ref: Some(external_ref("team", "mia", "uid-3")),
            created_at: format_millis(NOW),
            activated_at: None,
            activation_sends: 1,
            version: 1,
        }
    }

    fn run(
        spec: &AccountManagerSpec,
        status: &AccountManagerStatus,
        account: AccountState,
        found: Option<AccountManagerView>,
    ) -> Plan {
        plan(
            &Desired {
                id: Identity {
                    namespace: "team",
                    name: "mia",
                    uid: "uid-3",
                    generation: Some(1),
                },
                spec,
                status,
                deleting: false,
                refs: Refs {
                    account,
                    ..Refs::default()
                },
            },
            &Observed { manager: found },
            NOW,
        )
    }

    fn ready() -> AccountState {
        AccountState::Ready {
            portal_id: "acc-3".into(),
        }
    }

    fn reason(plan: &Plan) -> &str {
        match &plan.outcome {
            Outcome::Ready { reason, .. }
            | Outcome::Reconciling { reason, .. }
            | Outcome::Stalled { reason, .. } => reason,
        }
    }

    #[test]
    fn phases_follow_the_portal() {
        let status = AccountManagerStatus::default();
        let pending = run(
            &spec(),
            &status,
            ready(),
            Some(portal(AccountManagerState::ActivationPending)),
        );
        assert_eq!(reason(&pending), "ActivationPending");
        assert_eq!(
            pending.requeue_after,
            Some(Duration::from_secs(60)),
            "requeued at expiry"
        );
        let active = run(
            &spec(),
            &status,
            ready(),
            Some(portal(AccountManagerState::Active)),
        );
        assert_eq!(active.status.phase, Some(AccountManagerPhase::Active));
        let expired = run(
            &spec(),
            &status,
            ready(),
            Some(portal(AccountManagerState::ActivationExpired)),
        );
        assert!(matches!(expired.outcome, Outcome::Stalled { .. }));
        assert!(expired.actions.is_empty());
    }

    #[test]
    fn created_with_the_object_reference_and_no_password() {
        let plan = run(&spec(), &AccountManagerStatus::default(), ready(), None);
        let [
            Write::Create {
                account,
                manager,
                idempotency_key,
            },
        ] = &plan.actions[..]
        else {
            panic!("{:?}", plan.actions)
        };
        assert_eq!(account, "acc-3");
        assert_eq!(
            manager.external_ref.as_deref(),
            Some("AccountManager/team/mia/uid-3")
        );
        assert_eq!(idempotency_key, "uid-3/create");
    }

    #[test]
    fn raising_the_counter_resends_once() {
        let spec = AccountManagerSpec {
            resend_activation: 1,
            ..spec()
        };
        let plan = run(
            &spec,
            &AccountManagerStatus::default(),
            ready(),
            Some(portal(AccountManagerState::ActivationExpired)),
        );
        assert_eq!(
            plan.actions,
            vec![Write::ResendActivation {
                id: "am-1".into(),
                idempotency_key: "uid-3/resend/1".into()
            }]
        );
        assert_eq!(plan.status.observed_resend_activation, 1);
        let again = run(
            &spec,
            &plan.status,
            ready(),
            Some(portal(AccountManagerState::ActivationPending)),
        );
        assert!(again.actions.is_empty(), "served once: {:?}", again.actions);
    }

    #[test]
    fn undelegated_or_refused_sends_nothing() {
        let plan = run(
            &spec(),
            &AccountManagerStatus::default(),
            AccountState::NotDelegated,
            None,
        );
        assert_eq!(reason(&plan), "AccountNotDelegated");
        assert!(plan.actions.is_empty());
        let refused = AccountManagerStatus {
            refused: Some(Refusal {
                generation: 1,
                reason: "EmailConflict".into(),
                message: "taken".into(),
            }),
            ..AccountManagerStatus::default()
        };
        let plan = run(&spec(), &refused, ready(), None);
        assert_eq!(reason(&plan), "EmailConflict");
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn name_changes_the_portal_cannot_make_stall() {
        let spec = AccountManagerSpec {
            last_name: "Wong-Li".into(),
            ..spec()
        };
        let plan = run(
            &spec,
            &AccountManagerStatus::default(),
            ready(),
            Some(portal(AccountManagerState::Active)),
        );
        assert_eq!(reason(&plan), "CannotUpdate");
        assert!(plan.actions.is_empty());
    }
}
