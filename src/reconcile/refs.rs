//! Where the objects an object refers to stand: its Account (and, for an Account, its parent),
//! decided from the referenced objects as a host knows them. Pure, and the only place both hosts
//! (the cluster's caches, the CLI's manifests) resolve references.

use crate::crd::{Account, AccountRef, AccountType};

/// What a host resolved for one object before planning: its Account, an Account's parent, and
/// whether a Link invitation's link is stored. Named, so a plan reads `refs.account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refs {
    /// The Account the object lives under (namespaced kinds).
    pub account: AccountState,
    /// An Account's parent.
    pub parent: ParentState,
    /// Whether the object's Account holds contracts (where the subscription roles function).
    pub account_holds_contracts: bool,
    /// The Account's portal id whatever its delegation: where cleanup looks.
    pub account_portal_id: Option<String>,
    /// With Link delivery: whether the link is stored. A link lost to a crash before it was
    /// stored, or to a deleted Secret, is replaced by a resend.
    pub link_stored: bool,
}

impl Default for Refs {
    fn default() -> Refs {
        Refs {
            account: AccountState::Missing,
            parent: ParentState::TopLevel,
            account_holds_contracts: false,
            account_portal_id: None,
            link_stored: true,
        }
    }
}

impl Refs {
    /// An object whose Account is ready in the portal as `portal_id`.
    pub fn ready(portal_id: &str) -> Refs {
        Refs {
            account: AccountState::Ready {
                portal_id: portal_id.to_owned(),
            },
            account_portal_id: Some(portal_id.to_owned()),
            ..Refs::default()
        }
    }
}

/// Where the referenced Account stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountState {
    /// No Account object of that name (yet).
    Missing,
    /// The Account does not list this object's namespace in `spec.namespaces`.
    NotDelegated,
    /// The Account exists but has no portal id yet (or is being deleted).
    NotReady,
    Ready {
        portal_id: String,
    },
}

impl AccountState {
    /// The portal account a namespaced object acts under, or — while there is none — the outcome
    /// to record and when to look again (soon for an Account on its way; never for one that
    /// does not delegate the namespace, which waits for a spec change).
    pub fn portal_account(
        &self,
        account_name: &str,
        namespace: &str,
    ) -> Result<String, (super::Outcome, Option<std::time::Duration>)> {
        let waiting = |message: String| {
            Err((
                super::Outcome::Reconciling {
                    reason: "WaitingForAccount".into(),
                    message,
                },
                Some(super::WAIT_FOR_ACCOUNT),
            ))
        };
        match self {
            AccountState::Ready { portal_id } => Ok(portal_id.clone()),
            AccountState::Missing => waiting(format!("Account {account_name} does not exist yet")),
            AccountState::NotReady => {
                waiting(format!("Account {account_name} is not in the portal yet"))
            }
            AccountState::NotDelegated => Err((
                super::Outcome::Stalled {
                    reason: "AccountNotDelegated".into(),
                    message: format!(
                        "Account {account_name} does not list namespace {namespace} in spec.namespaces; nothing was sent to the portal"
                    ),
                },
                None,
            )),
        }
    }
}

/// Where the parent Account stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentState {
    /// No parentRef: a top-level account.
    TopLevel,
    /// No Account object of that name (yet).
    Missing,
    /// The parent has no portal account yet.
    NotReady,
    Ready {
        portal_id: String,
        path: String,
    },
}

/// The Account `account` as an object in `namespace` may use it.
pub fn account_state(account: Option<&Account>, namespace: &str) -> AccountState {
    let Some(account) = account else {
        return AccountState::Missing;
    };
    if !account.spec.namespaces.iter().any(|n| n == namespace) {
        return AccountState::NotDelegated;
    }
    match portal_id(Some(account)) {
        Some(portal_id) if account.metadata.deletion_timestamp.is_none() => {
            AccountState::Ready { portal_id }
        }
        _ => AccountState::NotReady,
    }
}

/// The parent an Account names in `parent_ref`, found as `parent`.
pub fn parent_state(parent_ref: Option<&AccountRef>, parent: Option<&Account>) -> ParentState {
    if parent_ref.is_none() {
        return ParentState::TopLevel;
    }
    let Some(parent) = parent else {
        return ParentState::Missing;
    };
    match portal_id(Some(parent)) {
        Some(portal_id) => ParentState::Ready {
            portal_id,
            path: parent
                .status
                .as_ref()
                .and_then(|s| s.path.clone())
                .unwrap_or_else(|| parent.spec.display_name.clone()),
        },
        None => ParentState::NotReady,
    }
}

/// The portal account of `account`, whatever its delegation: what cleanup looks under, since an
/// object made while delegated is removed even after the delegation ends.
pub fn portal_id(account: Option<&Account>) -> Option<String> {
    account.and_then(|a| a.status.as_ref().and_then(|s| s.portal_id.clone()))
}

/// Whether the account holds contracts (a partner, or a client with a sub-contract), where the
/// subscription roles function.
pub fn holds_contracts(account: Option<&Account>) -> bool {
    account.is_some_and(|a| a.spec.account_type == AccountType::Partner || a.spec.sub_contract)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AccountSpec, AccountStatus};

    fn account(namespaces: &[&str], portal_id: Option<&str>) -> Account {
        let mut account = Account::new(
            "contoso",
            serde_json::from_value::<AccountSpec>(serde_json::json!({
                "displayName": "Contoso", "type": "Client",
                "parentRef": { "name": "northwind" },
                "namespaces": namespaces,
            }))
            .unwrap(),
        );
        account.status = Some(AccountStatus {
            portal_id: portal_id.map(str::to_owned),
            path: portal_id.map(|_| "Northwind / Contoso".to_owned()),
            ..AccountStatus::default()
        });
        account
    }

    #[test]
    fn an_account_is_ready_only_when_delegated_and_in_the_portal() {
        assert_eq!(account_state(None, "team"), AccountState::Missing);
        assert_eq!(
            account_state(Some(&account(&["other"], Some("acc-1"))), "team"),
            AccountState::NotDelegated
        );
        assert_eq!(
            account_state(Some(&account(&["team"], None)), "team"),
            AccountState::NotReady
        );
        assert_eq!(
            account_state(Some(&account(&["team"], Some("acc-1"))), "team"),
            AccountState::Ready {
                portal_id: "acc-1".into()
            }
        );
        let mut deleting = account(&["team"], Some("acc-1"));
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(
            account_state(Some(&deleting), "team"),
            AccountState::NotReady
        );
        assert_eq!(portal_id(Some(&deleting)).as_deref(), Some("acc-1"));
    }

    #[test]
    fn a_parent_gives_its_portal_id_and_path() {
        let child = account(&[], None);
        assert_eq!(
            parent_state(child.spec.parent_ref.as_ref(), None),
            ParentState::Missing
        );
        assert_eq!(
            parent_state(child.spec.parent_ref.as_ref(), Some(&account(&[], None))),
            ParentState::NotReady
        );
        assert_eq!(
            parent_state(
                child.spec.parent_ref.as_ref(),
                Some(&account(&[], Some("acc-p")))
            ),
            ParentState::Ready {
                portal_id: "acc-p".into(),
                path: "Northwind / Contoso".into()
            }
        );
        let top = Account {
            spec: AccountSpec {
                parent_ref: None,
                ..child.spec.clone()
            },
            ..child
        };
        assert_eq!(
            parent_state(top.spec.parent_ref.as_ref(), None),
            ParentState::TopLevel
        );
    }
}
