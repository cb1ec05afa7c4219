//! RoleBinding: grant the spec's roles to every subject, with this object as the grants'
//! `source`, so that removing a role, a subject or the object revokes exactly what it granted.
//!
//! Two pure steps: [`plan`] decides the grants to make and revoke from the portal's grants by
//! this source; [`settle`] turns what the portal answered into the status (a subject that is not
//! an admin yet is WaitingForSubject and is granted when its invitation is accepted; a refusal
//! such as escalation is Stalled with the portal's reason, and not retried until the spec
//! changes).

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{ExternalRef, GrantView, ProblemType};
use crate::crd::{
    EffectiveRole, GrantState, RoleBinding, RoleBindingSpec, RoleBindingStatus, Scope,
    SubjectStatus,
};
use crate::domain::{Account, AccountKind, AccountTree, Grant, GrantScope, Role, effective_access};

use super::refs::AccountState;
use super::{ExecuteError, Outcome};
use crate::portal_client::{PortalApi, PortalResult};

/// The grants' `source` for this object.
pub fn source(namespace: &str, name: &str, uid: &str) -> String {
    ExternalRef::RoleBinding {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
    }
    .to_string()
}

pub struct Desired<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a RoleBindingSpec,
    pub status: &'a RoleBindingStatus,
    pub deleting: bool,
    pub account_ref: &'a str,
    pub account: AccountState,
    /// Whether the account holds contracts (a partner, or a client with a sub-contract).
    pub account_holds_contracts: bool,
}

impl<'a> Desired<'a> {
    /// The binding as the pure core sees it, with `status` as its recorded status.
    pub fn of(
        object: &'a RoleBinding,
        status: &'a RoleBindingStatus,
        account: AccountState,
        account_holds_contracts: bool,
        deleting: bool,
    ) -> Desired<'a> {
        Desired {
            namespace: object.metadata.namespace.as_deref().unwrap_or_default(),
            name: object.metadata.name.as_deref().unwrap_or_default(),
            uid: object.metadata.uid.as_deref().unwrap_or_default(),
            generation: object.metadata.generation,
            spec: &object.spec,
            status,
            deleting,
            account_ref: &object.spec.account_ref.name,
            account,
            account_holds_contracts,
        }
    }
}

/// The grants' `source` for `object`.
pub fn source_of(object: &RoleBinding) -> String {
    source(
        object.metadata.namespace.as_deref().unwrap_or_default(),
        object.metadata.name.as_deref().unwrap_or_default(),
        object.metadata.uid.as_deref().unwrap_or_default(),
    )
}

/// The grants `object` made on the portal account `account`.
pub async fn observe(
    portal: &impl PortalApi,
    account: &str,
    object: &RoleBinding,
) -> PortalResult<Observed> {
    Ok(Observed {
        grants: portal.grants_by_source(account, &source_of(object)).await?,
    })
}

/// What cleanup revokes: the grants this binding made, on the portal account it recorded (or
/// `account`, the Account's portal account, when it recorded none). An account already gone
/// took its grants with it.
pub async fn observe_for_cleanup(
    portal: &impl PortalApi,
    account: Option<&str>,
    object: &RoleBinding,
) -> PortalResult<(Option<String>, Observed)> {
    let recorded = object
        .status
        .as_ref()
        .and_then(|s| s.account_portal_id.clone());
    let Some(account) = recorded.or_else(|| account.map(str::to_owned)) else {
        return Ok((None, Observed::default()));
    };
    match observe(portal, &account, object).await {
        Ok(observed) => Ok((Some(account), observed)),
        Err(error) if error.is_not_found() => Ok((None, Observed::default())),
        Err(error) => Err(error),
    }
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The portal's grants whose source is this object.
    pub grants: Vec<GrantView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Grant {
        email: String,
        roles: Vec<Role>,
        scope: GrantScope,
        source: String,
        idempotency_key: String,
    },
    Revoke {
        grant_id: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// When to look again without an event: soon while waiting for the parent or Account.
    pub requeue_after: Option<std::time::Duration>,
    pub release_finalizer: bool,
    /// When nothing needs doing, the status and outcome are final; otherwise [`settle`] makes them.
    pub settled: Option<(RoleBindingStatus, Outcome)>,
}

fn scope(spec: &RoleBindingSpec) -> GrantScope {
    match spec.scope {
        Scope::AccountAndDescendants => GrantScope::AccountAndDescendants,
        Scope::AccountOnly => GrantScope::AccountOnly,
    }
}

fn subject_name(subject: &crate::crd::Subject) -> String {
    match (&subject.admin_email, &subject.account_manager_ref) {
        (Some(email), _) => email.to_lowercase(),
        (None, Some(manager)) => format!("AccountManager/{}", manager.name),
        (None, None) => String::new(),
    }
}

pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    let source = source(desired.namespace, desired.name, desired.uid);
    if desired.deleting {
        // Revoke exactly what this object granted.
        return Plan {
            actions: observed
                .grants
                .iter()
                .map(|g| Action::Revoke {
                    grant_id: g.id.clone(),
                })
                .collect(),
            release_finalizer: true,
            requeue_after: None,
            settled: None,
        };
    }
    let stalled = |reason: &str, message: String| Plan {
        actions: Vec::new(),
        release_finalizer: false,
        requeue_after: None,
        settled: Some((
            desired.status.clone(),
            Outcome::Stalled {
                reason: reason.into(),
                message,
            },
        )),
    };
    let waiting = |message: String| Plan {
        actions: Vec::new(),
        release_finalizer: false,
        requeue_after: Some(super::WAIT_FOR_ACCOUNT),
        settled: Some((
            desired.status.clone(),
            Outcome::Reconciling {
                reason: "WaitingForAccount".into(),
                message,
            },
        )),
    };
    match &desired.account {
        AccountState::NotDelegated => {
            return stalled(
                "AccountNotDelegated",
                format!(
                    "Account {} does not list namespace {} in spec.namespaces; nothing was sent to the portal",
                    desired.account_ref, desired.namespace
                ),
            );
        }
        AccountState::Missing => {
            return waiting(format!(
                "Account {} does not exist yet",
                desired.account_ref
            ));
        }
        AccountState::NotReady => {
            return waiting(format!(
                "Account {} is not in the portal yet",
                desired.account_ref
            ));
        }
        AccountState::Ready { .. } => {}
    }
    // A spec the portal already refused is not retried until it changes.
    let refused_generation = desired
        .status
        .subjects
        .iter()
        .any(|s| s.state == GrantState::Refused)
        .then_some(desired.status.observed_generation)
        .flatten();
    if refused_generation.is_some() && refused_generation == desired.generation {
        return Plan {
            actions: Vec::new(),
            release_finalizer: false,
            requeue_after: None,
            settled: Some((desired.status.clone(), refused_outcome(desired.status))),
        };
    }
    let scope = scope(desired.spec);
    let wanted_roles: BTreeSet<Role> = desired.spec.roles.iter().copied().collect();
    let wanted_emails: BTreeSet<String> = desired
        .spec
        .subjects
        .iter()
        .filter_map(|s| s.admin_email.as_ref().map(|e| e.to_lowercase()))
        .collect();
    let mut actions = Vec::new();
    let mut held: BTreeMap<String, BTreeSet<Role>> = BTreeMap::new();
    for grant in &observed.grants {
        let email = grant.email.clone().unwrap_or_default().to_lowercase();
        let keep = wanted_emails.contains(&email)
            && wanted_roles.contains(&grant.role)
            && grant.scope == scope;
        if keep {
            held.entry(email).or_default().insert(grant.role);
        } else {
            actions.push(Action::Revoke {
                grant_id: grant.id.clone(),
            });
        }
    }
    for email in &wanted_emails {
        let missing: Vec<Role> = wanted_roles
            .iter()
            .copied()
            .filter(|r| !held.get(email).is_some_and(|h| h.contains(r)))
            .collect();
        if !missing.is_empty() {
            actions.push(Action::Grant {
                email: email.clone(),
                // The roles are part of the key: a retry after partial progress asks for fewer
                // roles, which is a different request and must not reuse the first one's key.
                idempotency_key: format!(
                    "{source}/{}/{email}/{}",
                    desired.generation.unwrap_or(0),
                    missing
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                roles: missing,
                scope,
                source: source.clone(),
            });
        }
    }
    if actions.is_empty() {
        let results = BTreeMap::new();
        return Plan {
            actions,
            release_finalizer: false,
            requeue_after: None,
            settled: Some(settle(desired, &results)),
        };
    }
    Plan {
        actions,
        release_finalizer: false,
        requeue_after: None,
        settled: None,
    }
}

/// What the portal answered to a grant, per subject email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantResult {
    Granted,
    /// The portal has no admin with that email yet.
    NotAnAdmin,
    /// A refusal the spec causes: the problem type and the portal's words.
    Refused {
        problem: Option<ProblemType>,
        detail: String,
    },
}

/// The status after acting (or when nothing needed doing): one entry per subject, and the
/// roles in effect on the account with their origin.
pub fn settle(
    desired: &Desired,
    results: &BTreeMap<String, GrantResult>,
) -> (RoleBindingStatus, Outcome) {
    let mut subjects = Vec::new();
    for subject in &desired.spec.subjects {
        let name = subject_name(subject);
        let entry = if subject.account_manager_ref.is_some() {
            SubjectStatus {
                subject: name,
                state: GrantState::Refused,
                message: Some("the portal grants admin roles to admins only; an account manager already has account-wide access".into()),
            }
        } else {
            match results.get(&name) {
                Some(GrantResult::NotAnAdmin) => SubjectStatus {
                    subject: name,
                    state: GrantState::WaitingForSubject,
                    message: Some(
                        "not an admin yet; the roles are granted when their invitation is accepted"
                            .into(),
                    ),
                },
                Some(GrantResult::Refused { problem, detail }) => SubjectStatus {
                    subject: name,
                    state: GrantState::Refused,
                    message: Some(format!(
                        "{}: {detail}",
                        problem.map_or("refused", ProblemType::slug)
                    )),
                },
                Some(GrantResult::Granted) | None => SubjectStatus {
                    subject: name,
                    state: GrantState::Granted,
                    message: None,
                },
            }
        };
        subjects.push(entry);
    }
    let status = RoleBindingStatus {
        observed_generation: desired.generation,
        account_portal_id: match &desired.account {
            AccountState::Ready { portal_id } => Some(portal_id.clone()),
            _ => desired.status.account_portal_id.clone(),
        },
        subjects,
        effective_roles: effective_roles(desired),
        conditions: desired.status.conditions.clone(),
    };
    let outcome = if status
        .subjects
        .iter()
        .any(|s| s.state == GrantState::Refused)
    {
        refused_outcome(&status)
    } else if status
        .subjects
        .iter()
        .any(|s| s.state == GrantState::WaitingForSubject)
    {
        let waiting: Vec<&str> = status
            .subjects
            .iter()
            .filter(|s| s.state == GrantState::WaitingForSubject)
            .map(|s| s.subject.as_str())
            .collect();
        Outcome::Reconciling {
            reason: "WaitingForSubject".into(),
            message: format!("waiting for {} to accept an invitation", waiting.join(", ")),
        }
    } else {
        Outcome::Ready {
            reason: "Granted".into(),
            message: format!("{} subject(s) hold the roles", status.subjects.len()),
        }
    };
    (status, outcome)
}

fn refused_outcome(status: &RoleBindingStatus) -> Outcome {
    let first = status
        .subjects
        .iter()
        .find(|s| s.state == GrantState::Refused);
    let message = first
        .map(|s| format!("{}: {}", s.subject, s.message.clone().unwrap_or_default()))
        .unwrap_or_default();
    // The subject's message starts with the portal's problem type, e.g. "escalation-denied: …".
    let reason = first
        .and_then(|s| s.message.as_deref())
        .and_then(|m| m.split_once(':'))
        .and_then(|(problem, _)| ProblemType::from_slug(problem.trim()))
        .map(ProblemType::reason)
        .unwrap_or_else(|| "Refused".into());
    Outcome::Stalled { reason, message }
}

/// The spec's roles on the account itself, expanded with the catalog's implications, with the
/// origin of each (granted or implied, and through what).
fn effective_roles(desired: &Desired) -> Vec<EffectiveRole> {
    let account = Account {
        kind: if desired.account_holds_contracts {
            AccountKind::Partner
        } else {
            AccountKind::Client
        },
        ..Account::partner("account")
    };
    let Ok(tree) = AccountTree::new([account]) else {
        return Vec::new();
    };
    let grants: Vec<Grant> = desired
        .spec
        .roles
        .iter()
        .map(|role| Grant::new("subject", "account", *role))
        .collect();
    let Ok(access) = effective_access(&grants, &tree, &"subject".into(), &"account".into()) else {
        return Vec::new();
    };
    access
        .roles
        .iter()
        .map(|(role, paths)| {
            let path = &paths[0];
            EffectiveRole {
                role: *role,
                origin: if path.implied() {
                    "Implied".into()
                } else {
                    "Granted".into()
                },
                via: path
                    .implication_chain
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" → "),
            }
        })
        .collect()
}

/// Carries out `plan` on the portal account `account`: what the portal answered per subject
/// email. A grant the spec causes the portal to refuse is recorded, not an error; a transient
/// failure, or a refused revoke, stops here with the error.
pub async fn execute(
    portal: &impl PortalApi,
    account: &str,
    plan: &Plan,
) -> Result<BTreeMap<String, GrantResult>, ExecuteError> {
    let mut results = BTreeMap::new();
    for action in &plan.actions {
        match action {
            Action::Grant {
                email,
                roles,
                scope,
                source,
                idempotency_key,
            } => {
                let result = match portal
                    .grant(account, email, roles, *scope, source, idempotency_key)
                    .await
                {
                    Ok(_) => GrantResult::Granted,
                    Err(error) if error.problem_type() == Some(ProblemType::SubjectNotFound) => {
                        GrantResult::NotAnAdmin
                    }
                    Err(error) if !error.is_transient() => GrantResult::Refused {
                        problem: error.problem_type(),
                        detail: error.detail(),
                    },
                    Err(error) => return Err(ExecuteError::new("grant the roles")(error)),
                };
                results.insert(email.clone(), result);
            }
            Action::Revoke { grant_id } => portal
                .revoke_grant(grant_id)
                .await
                .map_err(ExecuteError::new("revoke a grant this binding made"))?,
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AccountManagerRef, AccountRef, Subject};

    fn spec(emails: &[&str], roles: &[Role]) -> RoleBindingSpec {
        RoleBindingSpec {
            account_ref: AccountRef {
                name: "contoso".into(),
            },
            subjects: emails
                .iter()
                .map(|e| Subject {
                    admin_email: Some((*e).into()),
                    account_manager_ref: None,
                })
                .collect(),
            roles: roles.to_vec(),
            scope: Scope::AccountAndDescendants,
        }
    }

    fn grant(id: &str, email: &str, role: Role) -> GrantView {
        GrantView {
            id: id.into(),
            admin_id: format!("admin-{email}"),
            email: Some(email.into()),
            account_id: "acc".into(),
            role,
            scope: GrantScope::AccountAndDescendants,
            source: source("team-a", "owners", "uid-1"),
            created_at: "2026-11-22T00:00:00Z".into(),
        }
    }

    fn desired<'a>(spec: &'a RoleBindingSpec, status: &'a RoleBindingStatus) -> Desired<'a> {
        Desired {
            namespace: "team-a",
            name: "owners",
            uid: "uid-1",
            generation: Some(1),
            spec,
            status,
            deleting: false,
            account_ref: "contoso",
            account: AccountState::Ready {
                portal_id: "acc".into(),
            },
            account_holds_contracts: false,
        }
    }

    #[test]
    fn waiting_for_the_account_looks_again_soon_and_sends_nothing() {
        let spec = spec(&["ann@contoso.example"], &[Role::ServiceViewer]);
        let status = RoleBindingStatus::default();
        for account in [AccountState::Missing, AccountState::NotReady] {
            let desired = Desired {
                account,
                ..desired(&spec, &status)
            };
            let plan = plan(&desired, &Observed::default());
            assert!(plan.actions.is_empty());
            assert_eq!(plan.requeue_after, Some(crate::reconcile::WAIT_FOR_ACCOUNT));
        }
        let ready = plan(&desired(&spec, &status), &Observed::default());
        assert_eq!(ready.requeue_after, None);
    }

    #[test]
    fn grant_keys_differ_when_the_request_does() {
        let spec = spec(
            &["ann@contoso.example"],
            &[Role::ServiceViewer, Role::SyncContributor],
        );
        let status = RoleBindingStatus::default();
        let key =
            |grants: Vec<GrantView>| match &plan(&desired(&spec, &status), &Observed { grants })
                .actions[0]
            {
                Action::Grant {
                    idempotency_key, ..
                } => idempotency_key.clone(),
                other => panic!("{other:?}"),
            };
        let both = key(vec![]);
        assert_eq!(both, key(vec![]), "the same request keeps its key");
        assert_ne!(
            both,
            key(vec![grant(
                "g1",
                "ann@contoso.example",
                Role::ServiceViewer
            )]),
            "after partial progress, a new key"
        );
    }

    #[test]
    fn grants_what_is_missing_and_nothing_more() {
        let spec = spec(
            &["Ann@Contoso.example", "bob@contoso.example"],
            &[Role::ServiceViewer, Role::SyncContributor],
        );
        let status = RoleBindingStatus::default();
        let observed = Observed {
            grants: vec![grant("g1", "ann@contoso.example", Role::ServiceViewer)],
        };
        let plan = plan(&desired(&spec, &status), &observed);
        let granted: Vec<(String, Vec<Role>)> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Grant { email, roles, .. } => Some((email.clone(), roles.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            granted,
            [
                (
                    "ann@contoso.example".to_owned(),
                    vec![Role::SyncContributor]
                ),
                (
                    "bob@contoso.example".to_owned(),
                    vec![Role::ServiceViewer, Role::SyncContributor]
                ),
            ]
        );
        assert!(
            plan.actions
                .iter()
                .all(|a| !matches!(a, Action::Revoke { .. }))
        );
    }

    #[test]
    fn converged_binding_plans_nothing_and_is_ready() {
        let spec = spec(&["ann@contoso.example"], &[Role::ServiceViewer]);
        let status = RoleBindingStatus::default();
        let observed = Observed {
            grants: vec![grant("g1", "ann@contoso.example", Role::ServiceViewer)],
        };
        let plan = plan(&desired(&spec, &status), &observed);
        assert!(plan.actions.is_empty(), "steady state makes no writes");
        let (status, outcome) = plan.settled.unwrap();
        assert!(matches!(outcome, Outcome::Ready { .. }));
        assert_eq!(status.subjects[0].state, GrantState::Granted);
    }

    #[test]
    fn removed_roles_subjects_and_scope_changes_revoke_only_this_sources_grants() {
        let mut spec = spec(&["ann@contoso.example"], &[Role::ServiceViewer]);
        spec.scope = Scope::AccountOnly;
        let status = RoleBindingStatus::default();
        let observed = Observed {
            grants: vec![
                grant("g1", "ann@contoso.example", Role::ServiceViewer),
                grant("g2", "ann@contoso.example", Role::SyncContributor),
                grant("g3", "gone@contoso.example", Role::ServiceViewer),
            ],
        };
        let plan = plan(&desired(&spec, &status), &observed);
        let revoked: BTreeSet<&str> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Revoke { grant_id } => Some(grant_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            revoked,
            BTreeSet::from(["g1", "g2", "g3"]),
            "scope changed: every old grant goes"
        );
        assert!(plan.actions.iter().any(|a| matches!(
            a,
            Action::Grant {
                scope: GrantScope::AccountOnly,
                ..
            }
        )));
    }

    #[test]
    fn a_subject_that_is_not_an_admin_yet_waits() {
        let spec = spec(&["new@contoso.example"], &[Role::ServiceViewer]);
        let status = RoleBindingStatus::default();
        let results = BTreeMap::from([("new@contoso.example".to_owned(), GrantResult::NotAnAdmin)]);
        let (status, outcome) = settle(&desired(&spec, &status), &results);
        assert_eq!(status.subjects[0].state, GrantState::WaitingForSubject);
        assert!(
            matches!(outcome, Outcome::Reconciling { ref reason, .. } if reason == "WaitingForSubject")
        );
    }

    #[test]
    fn an_escalation_is_stalled_with_the_portals_reason_and_not_retried() {
        let spec = spec(&["ann@contoso.example"], &[Role::SubscriptionContributor]);
        let status = RoleBindingStatus::default();
        let results = BTreeMap::from([(
            "ann@contoso.example".to_owned(),
            GrantResult::Refused {
                problem: Some(ProblemType::EscalationDenied),
                detail: "you may only grant roles you hold yourself".into(),
            },
        )]);
        let (status, outcome) = settle(&desired(&spec, &status), &results);
        assert!(
            matches!(&outcome, Outcome::Stalled { reason, message } if reason == "EscalationDenied" && message.contains("you may only grant"))
        );
        // The same generation again: no retry storm.
        let again = plan(&desired(&spec, &status), &Observed::default());
        assert!(again.actions.is_empty());
        assert!(matches!(again.settled.unwrap().1, Outcome::Stalled { .. }));
        // A changed spec (new generation) tries again.
        let mut newer = desired(&spec, &status);
        newer.generation = Some(2);
        assert_eq!(plan(&newer, &Observed::default()).actions.len(), 1);
    }

    #[test]
    fn undelegated_accounts_stall_and_nothing_is_sent() {
        let spec = spec(&["ann@contoso.example"], &[Role::ServiceViewer]);
        let status = RoleBindingStatus::default();
        let mut d = desired(&spec, &status);
        d.account = AccountState::NotDelegated;
        let plan = plan(&d, &Observed::default());
        assert!(plan.actions.is_empty());
        assert!(
            matches!(plan.settled.unwrap().1, Outcome::Stalled { ref reason, .. } if reason == "AccountNotDelegated")
        );
    }

    #[test]
    fn deleting_revokes_only_its_own_grants() {
        let spec = spec(&["ann@contoso.example"], &[Role::ServiceViewer]);
        let status = RoleBindingStatus::default();
        let mut d = desired(&spec, &status);
        d.deleting = true;
        let plan = plan(
            &d,
            &Observed {
                grants: vec![grant("g1", "ann@contoso.example", Role::ServiceViewer)],
            },
        );
        assert_eq!(
            plan.actions,
            [Action::Revoke {
                grant_id: "g1".into()
            }]
        );
        assert!(plan.release_finalizer);
    }

    #[test]
    fn effective_roles_show_their_origin() {
        let spec = spec(&["ann@contoso.example"], &[Role::AccountOwner]);
        let status = RoleBindingStatus::default();
        let (status, _) = settle(&desired(&spec, &status), &BTreeMap::new());
        let shown: Vec<(Role, &str, &str)> = status
            .effective_roles
            .iter()
            .map(|e| (e.role, e.origin.as_str(), e.via.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (Role::AccountOwner, "Granted", "AccountOwner"),
                (
                    Role::ServiceContributor,
                    "Implied",
                    "AccountOwner → ServiceContributor"
                ),
                (
                    Role::ServiceViewer,
                    "Implied",
                    "AccountOwner → ServiceViewer"
                ),
            ]
        );
    }

    #[test]
    fn account_manager_subjects_are_refused_with_a_reason() {
        let mut spec = spec(&[], &[Role::ServiceViewer]);
        spec.subjects.push(Subject {
            admin_email: None,
            account_manager_ref: Some(AccountManagerRef {
                name: "camille".into(),
            }),
        });
        let status = RoleBindingStatus::default();
        let (status, outcome) = settle(&desired(&spec, &status), &BTreeMap::new());
        assert_eq!(status.subjects[0].subject, "AccountManager/camille");
        assert_eq!(status.subjects[0].state, GrantState::Refused);
        assert!(matches!(outcome, Outcome::Stalled { .. }));
    }
}
