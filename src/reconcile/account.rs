//! Account: create the portal account, or adopt the one with the spec's `externalId`, under the
//! parent's portal account; keep its display name, tenant and sub-contract as the spec says; on
//! delete, orphan it (the default) or delete it.
//!
//! The portal account is found by its external id: `spec.externalId` when adopting, otherwise
//! `Account/{name}`, so re-creating an orphaned object adopts its account again instead of
//! making a second one.

use std::fmt;

use crate::api::AccountView;
use crate::api::{CreateAccount, ExternalRef, Patch, UpdateAccount};
use crate::crd::{Account, AccountRef, AccountSpec, AccountStatus, AccountType, DeletionPolicy};
use crate::domain::AccountKind;
use crate::portal_client::{PortalApi, PortalResult};

use super::driver::{Input, Kind, Mark};
pub use super::refs::ParentState;
use super::refs::Refs;
use super::{ExecuteError, Outcome, Refusal};

pub type Desired<'a> = super::Desired<'a, AccountSpec, AccountStatus>;

/// The portal account found by `object`'s external id.
pub async fn observe(portal: &impl PortalApi, object: &Account) -> PortalResult<Observed> {
    let name = object.metadata.name.as_deref().unwrap_or_default();
    Ok(Observed {
        account: portal
            .account_by_external_id(&external_id(name, &object.spec))
            .await?,
    })
}

/// The portal account with this object's external id, if any.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub account: Option<AccountView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Create {
        account: CreateAccount,
        idempotency_key: String,
        /// The parent Account's name, as the manifests say it (for the description).
        under: Option<String>,
    },
    Update {
        id: String,
        changes: UpdateAccount,
        version: i64,
    },
    Delete {
        id: String,
    },
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Create { account, under, .. } => {
                write!(
                    f,
                    "create {} account {:?}",
                    account.account_type, account.display_name
                )?;
                match under {
                    Some(parent) => write!(f, " under {parent}"),
                    None => Ok(()),
                }
            }
            Write::Update { changes, .. } => write!(
                f,
                "update {}",
                serde_json::to_string(changes).unwrap_or_default()
            ),
            Write::Delete { id } => write!(f, "delete portal account {id}"),
        }
    }
}

pub type Plan = super::Plan<Write, AccountStatus>;

/// The external id that finds this object's portal account.
pub fn external_id(name: &str, spec: &AccountSpec) -> String {
    spec.external_id.clone().unwrap_or_else(|| {
        ExternalRef::Account {
            name: name.to_owned(),
        }
        .to_string()
    })
}

fn kind(account_type: AccountType) -> AccountKind {
    match account_type {
        AccountType::Partner => AccountKind::Partner,
        AccountType::Client => AccountKind::Client,
    }
}

pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    let mut status = desired.status.clone();
    status.observed_generation = desired.id.generation;
    status.refused = None;
    let found = observed.account.as_ref();
    if desired.deleting {
        let actions = match (desired.spec.deletion_policy, found) {
            (DeletionPolicy::Delete, Some(account)) => vec![Write::Delete {
                id: account.id.clone(),
            }],
            _ => Vec::new(),
        };
        return Plan {
            actions,
            status,
            outcome: Outcome::Reconciling {
                reason: "Deleting".into(),
                message: match desired.spec.deletion_policy {
                    DeletionPolicy::Orphan => "leaving the portal account in place".into(),
                    DeletionPolicy::Delete => "deleting the portal account".into(),
                },
            },
            requeue_after: None,
        };
    }
    let waiting = |message: String, status: AccountStatus| Plan {
        actions: Vec::new(),
        status,
        outcome: Outcome::Reconciling {
            reason: "WaitingForParent".into(),
            message,
        },
        requeue_after: Some(super::WAIT_FOR_ACCOUNT),
    };
    let parent_ref = desired
        .spec
        .parent_ref
        .as_ref()
        .map(|p| p.name.as_str())
        .unwrap_or_default();
    let (parent_id, parent_path) = match &desired.refs.parent {
        ParentState::TopLevel => (None, None),
        ParentState::Missing => {
            return waiting(
                format!("parent Account {parent_ref} does not exist yet"),
                status,
            );
        }
        ParentState::NotReady => {
            return waiting(
                format!("parent Account {parent_ref} is not in the portal yet"),
                status,
            );
        }
        ParentState::Ready { portal_id, path } => (Some(portal_id.clone()), Some(path.clone())),
    };
    status.path = Some(match &parent_path {
        Some(path) => format!("{path} / {}", desired.spec.display_name),
        None => desired.spec.display_name.clone(),
    });
    let refused = super::refused_at(desired.status.refused.as_ref(), desired.id.generation);
    let Some(account) = found else {
        if let Some(outcome) = refused {
            status.refused = desired.status.refused.clone();
            return Plan {
                actions: Vec::new(),
                status,
                outcome,
                requeue_after: None,
            };
        }
        status.portal_id = None;
        // A create that follows a portal account deleted behind our back is a new request.
        let after = desired.status.portal_id.as_deref().unwrap_or("none");
        return Plan {
            actions: vec![Write::Create {
                account: CreateAccount {
                    parent_id,
                    account_type: kind(desired.spec.account_type),
                    display_name: desired.spec.display_name.clone(),
                    tenant_id: desired.spec.tenant_id.clone(),
                    sub_contract: desired.spec.sub_contract,
                    external_id: Some(external_id(desired.id.name, desired.spec)),
                },
                idempotency_key: format!("{}/account/after/{after}", desired.id.uid),
                under: desired.spec.parent_ref.as_ref().map(|p| p.name.clone()),
            }],
            status,
            outcome: Outcome::Reconciling {
                reason: "Creating".into(),
                message: "creating the portal account".into(),
            },
            requeue_after: None,
        };
    };
    status.portal_id = Some(account.id.clone());
    // What the portal cannot change: an account's type and its place in the tree.
    let mismatch = if account.account_type != kind(desired.spec.account_type) {
        Some(format!(
            "portal account {} is a {:?} but spec.type is {:?}; an account cannot change type",
            account.id, account.account_type, desired.spec.account_type
        ))
    } else if account.parent_id != parent_id {
        Some(format!(
            "portal account {} sits under {} but spec.parentRef names {}; accounts do not move in the tree",
            account.id,
            account.parent_id.as_deref().unwrap_or("no parent"),
            parent_id.as_deref().unwrap_or("no parent"),
        ))
    } else {
        None
    };
    if let Some(message) = mismatch {
        return Plan {
            actions: Vec::new(),
            status,
            outcome: Outcome::Stalled {
                reason: "AccountMismatch".into(),
                message,
            },
            requeue_after: None,
        };
    }
    let changes = UpdateAccount {
        display_name: (account.display_name != desired.spec.display_name)
            .then(|| desired.spec.display_name.clone()),
        tenant_id: Patch::from_change(
            (account.tenant_id != desired.spec.tenant_id).then(|| desired.spec.tenant_id.clone()),
        ),
        sub_contract: (account.sub_contract != desired.spec.sub_contract)
            .then_some(desired.spec.sub_contract),
        external_id: Patch::Absent,
    };
    if let Some(outcome) = refused {
        status.refused = desired.status.refused.clone();
        return Plan {
            actions: Vec::new(),
            status,
            outcome,
            requeue_after: None,
        };
    }
    if !changes.is_empty() {
        return Plan {
            actions: vec![Write::Update {
                id: account.id.clone(),
                changes,
                version: account.version,
            }],
            status,
            outcome: Outcome::Reconciling {
                reason: "Updating".into(),
                message: "bringing the portal account in line with the spec".into(),
            },
            requeue_after: None,
        };
    }
    Plan {
        actions: Vec::new(),
        status,
        outcome: Outcome::Ready {
            reason: "InSync".into(),
            message: format!("portal account {}", account.id),
        },
        requeue_after: None,
    }
}

impl Kind for Account {
    type Status = AccountStatus;
    type Observed = Observed;
    type Spec = AccountSpec;
    type Write = Write;
    type Executed = Observed;

    const OBSERVE: &'static str = "find the portal account";

    fn spec(&self) -> &AccountSpec {
        &self.spec
    }
    fn status(&self) -> Option<&AccountStatus> {
        self.status.as_ref()
    }
    fn account_ref(&self) -> Option<&AccountRef> {
        None
    }
    fn parent_ref(&self) -> Option<&AccountRef> {
        self.spec.parent_ref.as_ref()
    }
    fn refused(status: &mut AccountStatus) -> &mut Option<Refusal> {
        &mut status.refused
    }
    /// An Account is found by its external id wherever it sits in the tree.
    async fn observe_under(
        portal: &impl PortalApi,
        _parent: &str,
        object: &Self,
    ) -> PortalResult<Observed> {
        observe(portal, object).await
    }
    async fn observe(
        portal: &impl PortalApi,
        object: &Self,
        _refs: &Refs,
    ) -> PortalResult<Observed> {
        observe(portal, object).await
    }
    async fn observe_for_cleanup(
        portal: &impl PortalApi,
        object: &Self,
        _refs: &Refs,
    ) -> PortalResult<Observed> {
        observe(portal, object).await
    }
    fn plan(input: &Input<'_, Self>, observed: &Observed, _now_millis: i64) -> Plan {
        plan(&Desired::of(input), observed)
    }
    /// Carries out `plan`; the portal account as it now stands.
    async fn execute(
        portal: &impl PortalApi,
        plan: &Plan,
        mut observed: Observed,
    ) -> Result<Observed, ExecuteError> {
        for action in &plan.actions {
            match action {
                Write::Create {
                    account,
                    idempotency_key,
                    ..
                } => {
                    observed.account = Some(
                        portal
                            .create_account(account, idempotency_key)
                            .await
                            .map_err(ExecuteError::new("create the portal account"))?,
                    );
                }
                Write::Update {
                    id,
                    changes,
                    version,
                } => {
                    observed.account = Some(
                        portal
                            .update_account(id, changes, *version)
                            .await
                            .map_err(ExecuteError::new("update the portal account"))?,
                    );
                }
                Write::Delete { id } => {
                    portal
                        .delete_account(id)
                        .await
                        .map_err(ExecuteError::new("delete the portal account"))?;
                    observed.account = None;
                }
            }
        }
        Ok(observed)
    }
    fn mark(write: &Write) -> Mark {
        match write {
            Write::Create { .. } => Mark::Add,
            Write::Update { .. } => Mark::Change,
            Write::Delete { .. } => Mark::Remove,
        }
    }
    fn after(input: &Input<'_, Self>, executed: &Observed, _now_millis: i64) -> Plan {
        plan(&Desired::of(input), executed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AccountRef;
    use crate::reconcile::Identity;

    fn spec() -> AccountSpec {
        AccountSpec {
            display_name: "Contoso".into(),
            account_type: AccountType::Client,
            parent_ref: Some(AccountRef {
                name: "northwind".into(),
            }),
            tenant_id: None,
            sub_contract: false,
            namespaces: vec!["team-contoso".into()],
            deletion_policy: DeletionPolicy::Orphan,
            external_id: None,
        }
    }

    fn portal_account() -> AccountView {
        AccountView {
            id: "acc-2".into(),
            parent_id: Some("acc-1".into()),
            account_type: AccountKind::Client,
            display_name: "Contoso".into(),
            tenant_id: None,
            sub_contract: false,
            external_id: Some("Account/contoso".into()),
            version: 4,
            created_at: "2026-11-22T00:00:00Z".into(),
            updated_at: "2026-11-22T00:00:00Z".into(),
        }
    }

    fn parent() -> ParentState {
        ParentState::Ready {
            portal_id: "acc-1".into(),
            path: "Northwind".into(),
        }
    }

    fn run(
        spec: &AccountSpec,
        status: &AccountStatus,
        parent: ParentState,
        found: Option<AccountView>,
        deleting: bool,
    ) -> Plan {
        plan(
            &Desired {
                id: Identity {
                    namespace: "",
                    name: "contoso",
                    uid: "uid-7",
                    generation: Some(1),
                },
                spec,
                status,
                deleting,
                refs: Refs {
                    parent,
                    ..Refs::default()
                },
            },
            &Observed { account: found },
        )
    }

    #[test]
    fn a_new_account_is_created_under_its_parent_with_its_external_id() {
        let plan = run(&spec(), &AccountStatus::default(), parent(), None, false);
        let [
            Write::Create {
                account,
                idempotency_key,
                ..
            },
        ] = &plan.actions[..]
        else {
            panic!("{:?}", plan.actions)
        };
        assert_eq!(account.parent_id.as_deref(), Some("acc-1"));
        assert_eq!(account.account_type, AccountKind::Client);
        assert_eq!(account.external_id.as_deref(), Some("Account/contoso"));
        assert_eq!(idempotency_key, "uid-7/account/after/none");
        assert_eq!(plan.status.path.as_deref(), Some("Northwind / Contoso"));
    }

    #[test]
    fn an_account_deleted_in_the_portal_is_recreated_with_a_new_key() {
        let status = AccountStatus {
            portal_id: Some("acc-gone".into()),
            ..AccountStatus::default()
        };
        let plan = run(&spec(), &status, parent(), None, false);
        let [
            Write::Create {
                idempotency_key, ..
            },
        ] = &plan.actions[..]
        else {
            panic!("{:?}", plan.actions)
        };
        assert_eq!(idempotency_key, "uid-7/account/after/acc-gone");
    }

    #[test]
    fn adoption_uses_the_spec_external_id() {
        let spec = AccountSpec {
            external_id: Some("crm-4711".into()),
            ..spec()
        };
        assert_eq!(external_id("contoso", &spec), "crm-4711");
    }

    #[test]
    fn waits_for_the_parent() {
        for parent in [ParentState::Missing, ParentState::NotReady] {
            let plan = run(&spec(), &AccountStatus::default(), parent, None, false);
            assert!(plan.actions.is_empty());
            assert!(
                matches!(&plan.outcome, Outcome::Reconciling { reason, .. } if reason == "WaitingForParent")
            );
            assert_eq!(
                plan.requeue_after,
                Some(crate::reconcile::WAIT_FOR_ACCOUNT),
                "the plan, not the host, says to look again soon"
            );
        }
        let ready = run(&spec(), &AccountStatus::default(), parent(), None, false);
        assert_eq!(ready.requeue_after, None);
    }

    #[test]
    fn in_sync_is_ready_and_silent() {
        let plan = run(
            &spec(),
            &AccountStatus::default(),
            parent(),
            Some(portal_account()),
            false,
        );
        assert!(plan.actions.is_empty());
        assert!(matches!(&plan.outcome, Outcome::Ready { reason, .. } if reason == "InSync"));
        assert_eq!(plan.status.portal_id.as_deref(), Some("acc-2"));
    }

    #[test]
    fn drift_in_mutable_fields_is_updated_with_the_version_read() {
        let spec = AccountSpec {
            display_name: "Contoso Ltd".into(),
            sub_contract: true,
            ..spec()
        };
        let plan = run(
            &spec,
            &AccountStatus::default(),
            parent(),
            Some(portal_account()),
            false,
        );
        assert_eq!(
            plan.actions,
            vec![Write::Update {
                id: "acc-2".into(),
                changes: UpdateAccount {
                    display_name: Some("Contoso Ltd".into()),
                    sub_contract: Some(true),
                    ..UpdateAccount::default()
                },
                version: 4,
            }]
        );
    }

    #[test]
    fn type_or_parent_mismatch_stalls_without_writing() {
        let partner = AccountSpec {
            account_type: AccountType::Partner,
            ..spec()
        };
        let plan = run(
            &partner,
            &AccountStatus::default(),
            parent(),
            Some(portal_account()),
            false,
        );
        assert!(plan.actions.is_empty());
        assert!(
            matches!(&plan.outcome, Outcome::Stalled { reason, .. } if reason == "AccountMismatch")
        );
        let elsewhere = ParentState::Ready {
            portal_id: "acc-9".into(),
            path: "Other".into(),
        };
        let plan = run(
            &spec(),
            &AccountStatus::default(),
            elsewhere,
            Some(portal_account()),
            false,
        );
        assert!(
            matches!(&plan.outcome, Outcome::Stalled { message, .. } if message.contains("do not move"))
        );
    }

    #[test]
    fn deletion_orphans_by_default_and_deletes_when_asked() {
        let orphan = run(
            &spec(),
            &AccountStatus::default(),
            parent(),
            Some(portal_account()),
            true,
        );
        assert!(orphan.actions.is_empty());
        assert!(orphan.requeue_after.is_none());
        let delete = AccountSpec {
            deletion_policy: DeletionPolicy::Delete,
            ..spec()
        };
        let plan = run(
            &delete,
            &AccountStatus::default(),
            parent(),
            Some(portal_account()),
            true,
        );
        assert_eq!(plan.actions, vec![Write::Delete { id: "acc-2".into() }]);
        let gone = run(&delete, &AccountStatus::default(), parent(), None, true);
        assert!(gone.actions.is_empty(), "already gone: nothing to do");
    }
}
