//! RoleBinding: grant the spec's roles to every subject, with this object as the grants'
//! `source`, so that removing a role, a subject or the object revokes exactly what it granted.
//!
//! Two pure steps: [`plan`] decides the grants to make and revoke from the portal's grants by
//! this source; [`settle`] turns what the portal answered into the status (a subject that is not
//! an admin yet is WaitingForSubject and is granted when its invitation is accepted; a refusal
//! such as escalation is Stalled with the portal's reason, and not retried until the spec
//! changes).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::api::{ExternalRef, GrantView, ProblemType};
use crate::crd::{
    EffectiveRole, GrantState, RoleBinding, RoleBindingSpec, RoleBindingStatus, Scope,
    SubjectStatus,
};
use crate::domain::{Account, AccountKind, AccountTree, Grant, GrantScope, Role, effective_access};

use super::driver::{Input, Kind, Mark};
use super::refs::{AccountState, Refs};
use super::{ExecuteError, Outcome, Refusal};
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

pub type Desired<'a> = super::Desired<'a, RoleBindingSpec, RoleBindingStatus>;

/// The grants' `source` for `object`.
pub fn source_of(object: &RoleBinding) -> String {
    let id = super::Identity::of(&object.metadata);
    source(id.namespace, id.name, id.uid)
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The portal's grants whose source is this object.
    pub grants: Vec<GrantView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Grant {
        /// The portal account.
        account: String,
        email: String,
        roles: Vec<Role>,
        scope: GrantScope,
        source: String,
        idempotency_key: String,
    },
    Revoke {
        grant_id: String,
        /// What the grant gave and to whom (for the description).
        role: Role,
        subject: String,
    },
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Grant {
                email,
                roles,
                scope,
                ..
            } => write!(
                f,
                "grant {} to {email} ({scope:?})",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Write::Revoke { role, subject, .. } => {
                write!(f, "revoke {} from {subject}", role.as_str())
            }
        }
    }
}

fn revoke(grant: &GrantView) -> Write {
    Write::Revoke {
        grant_id: grant.id.clone(),
        role: grant.role,
        subject: grant
            .email
            .clone()
            .unwrap_or_else(|| grant.admin_id.clone()),
    }
}

pub type Plan = super::Plan<Write, RoleBindingStatus>;

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
    let source = source(desired.id.namespace, desired.id.name, desired.id.uid);
    let quiet = |outcome: Outcome, requeue_after| Plan {
        actions: Vec::new(),
        status: desired.status.clone(),
        outcome,
        requeue_after,
    };
    if desired.deleting {
        // Revoke exactly what this object granted.
        return Plan {
            actions: observed.grants.iter().map(revoke).collect(),
            status: desired.status.clone(),
            outcome: Outcome::Reconciling {
                reason: "Deleting".into(),
                message: "revoking the grants this binding made".into(),
            },
            requeue_after: None,
        };
    }
    let waiting = |message: String| {
        quiet(
            Outcome::Reconciling {
                reason: "WaitingForAccount".into(),
                message,
            },
            Some(super::WAIT_FOR_ACCOUNT),
        )
    };
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
                None,
            );
        }
        AccountState::Missing => {
            return waiting(format!(
                "Account {} does not exist yet",
                desired.spec.account_ref.name
            ));
        }
        AccountState::NotReady => {
            return waiting(format!(
                "Account {} is not in the portal yet",
                desired.spec.account_ref.name
            ));
        }
        AccountState::Ready { portal_id } => portal_id.clone(),
    };
    // A spec the portal already refused is not retried until it changes.
    if let Some(outcome) = super::refused_at(desired.status.refused.as_ref(), desired.id.generation)
    {
        return quiet(outcome, None);
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
            actions.push(revoke(grant));
        }
    }
    for email in &wanted_emails {
        let missing: Vec<Role> = wanted_roles
            .iter()
            .copied()
            .filter(|r| !held.get(email).is_some_and(|h| h.contains(r)))
            .collect();
        if !missing.is_empty() {
            actions.push(Write::Grant {
                account: account.clone(),
                email: email.clone(),
                // The roles are part of the key: a retry after partial progress asks for fewer
                // roles, which is a different request and must not reuse the first one's key.
                idempotency_key: format!(
                    "{source}/{}/{email}/{}",
                    desired.id.generation.unwrap_or(0),
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
        let (status, outcome) = settle(desired, &BTreeMap::new());
        return Plan {
            actions,
            status,
            outcome,
            requeue_after: None,
        };
    }
    let only_waiting = actions
        .iter()
        .all(|action| waits_for_person(desired.status, action));
    if only_waiting {
        // Tried before: the subjects are not admins yet; granted when they accept.
        let waiting: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Write::Grant { email, .. } => Some(email.as_str()),
                Write::Revoke { .. } => None,
            })
            .collect();
        return Plan {
            status: desired.status.clone(),
            outcome: Outcome::Ready {
                reason: "WaitingForSubject".into(),
                message: format!("waiting for {} to accept an invitation", waiting.join(", ")),
            },
            actions,
            requeue_after: None,
        };
    }
    // The status if every action succeeds; what the portal answers settles it.
    let (status, _) = settle(desired, &BTreeMap::new());
    Plan {
        outcome: Outcome::Reconciling {
            reason: "Granting".into(),
            message: format!("{} grant(s) to make or revoke", actions.len()),
        },
        actions,
        status,
        requeue_after: None,
    }
}

/// Whether `action` is a grant to a subject that was not an admin last time.
fn waits_for_person(status: &RoleBindingStatus, action: &Write) -> bool {
    match action {
        Write::Grant { email, .. } => status
            .subjects
            .iter()
            .any(|s| s.subject == *email && s.state == GrantState::WaitingForSubject),
        Write::Revoke { .. } => false,
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
    let mut refused = None;
    for subject in &desired.spec.subjects {
        let name = subject_name(subject);
        let (entry, reason) = if subject.account_manager_ref.is_some() {
            (
                SubjectStatus {
                    subject: name,
                    state: GrantState::Refused,
                    message: Some("the portal grants admin roles to admins only; an account manager already has account-wide access".into()),
                },
                Some("Refused".to_owned()),
            )
        } else {
            match results.get(&name) {
                Some(GrantResult::NotAnAdmin) => (
                    SubjectStatus {
                        subject: name,
                        state: GrantState::WaitingForSubject,
                        message: Some(
                            "not an admin yet; the roles are granted when their invitation is accepted"
                                .into(),
                        ),
                    },
                    None,
                ),
                Some(GrantResult::Refused { problem, detail }) => (
                    SubjectStatus {
                        subject: name,
                        state: GrantState::Refused,
                        message: Some(format!(
                            "{}: {detail}",
                            problem.map_or("refused", ProblemType::slug)
                        )),
                    },
                    Some(problem.map_or_else(|| "Refused".into(), ProblemType::reason)),
                ),
                Some(GrantResult::Granted) | None => (
                    SubjectStatus {
                        subject: name,
                        state: GrantState::Granted,
                        message: None,
                    },
                    None,
                ),
            }
        };
        if let (None, Some(reason)) = (&refused, reason) {
            refused = Some(Refusal {
                generation: desired.id.generation.unwrap_or_default(),
                reason,
                message: format!(
                    "{}: {}",
                    entry.subject,
                    entry.message.clone().unwrap_or_default()
                ),
            });
        }
        subjects.push(entry);
    }
    let status = RoleBindingStatus {
        observed_generation: desired.id.generation,
        account_portal_id: match &desired.refs.account {
            AccountState::Ready { portal_id } => Some(portal_id.clone()),
            _ => desired.status.account_portal_id.clone(),
        },
        subjects,
        effective_roles: effective_roles(desired),
        refused,
        conditions: desired.status.conditions.clone(),
    };
    let outcome = if let Some(refusal) = &status.refused {
        Outcome::Stalled {
            reason: refusal.reason.clone(),
            message: refusal.message.clone(),
        }
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
        // Done right, waiting for a person: Ready (kstatus Current), with the reason.
        Outcome::Ready {
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

/// The spec's roles on the account itself, expanded with the catalog's implications, with the
/// origin of each (granted or implied, and through what).
fn effective_roles(desired: &Desired) -> Vec<EffectiveRole> {
    let account = Account {
        kind: if desired.refs.account_holds_contracts {
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

impl Kind for RoleBinding {
    type Status = RoleBindingStatus;
    type Observed = Observed;
    type Spec = RoleBindingSpec;
    type Write = Write;
    type Executed = BTreeMap<String, GrantResult>;

    const OBSERVE: &'static str = "list the binding's grants";

    fn spec(&self) -> &RoleBindingSpec {
        &self.spec
    }
    fn status(&self) -> Option<&RoleBindingStatus> {
        self.status.as_ref()
    }
    fn account_ref(&self) -> Option<&crate::crd::AccountRef> {
        Some(&self.spec.account_ref)
    }
    fn refused(status: &mut RoleBindingStatus) -> &mut Option<Refusal> {
        &mut status.refused
    }
    /// The grants `object` made (by source).
    async fn observe_under(
        portal: &impl PortalApi,
        account: &str,
        object: &Self,
    ) -> PortalResult<Observed> {
        Ok(Observed {
            grants: portal.grants_by_source(account, &source_of(object)).await?,
        })
    }
    /// The grants this binding made, on the portal account it recorded (or else its Account's).
    /// An account already gone took its grants with it.
    async fn observe_for_cleanup(
        portal: &impl PortalApi,
        object: &Self,
        refs: &Refs,
    ) -> PortalResult<Observed> {
        let recorded = object
            .status
            .as_ref()
            .and_then(|s| s.account_portal_id.clone());
        let Some(account) = recorded.or_else(|| refs.account_portal_id.clone()) else {
            return Ok(Observed::default());
        };
        match Self::observe_under(portal, &account, object).await {
            Err(error) if error.is_not_found() => Ok(Observed::default()),
            observed => observed,
        }
    }
    fn plan(input: &Input<'_, Self>, observed: &Observed, _now_millis: i64) -> Plan {
        plan(&Desired::of(input), observed)
    }
    /// Carries out `plan`: what the portal answered per subject email. A grant the spec causes
    /// the portal to refuse is recorded, not an error; a transient failure, or a refused revoke,
    /// stops here with the error.
    async fn execute(
        portal: &impl PortalApi,
        plan: &Plan,
        _observed: Observed,
    ) -> Result<Self::Executed, ExecuteError> {
        let mut results = BTreeMap::new();
        for action in &plan.actions {
            match action {
                Write::Grant {
                    account,
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
                        Err(error)
                            if error.problem_type() == Some(ProblemType::SubjectNotFound) =>
                        {
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
                Write::Revoke { grant_id, .. } => portal
                    .revoke_grant(grant_id)
                    .await
                    .map_err(ExecuteError::new("revoke a grant this binding made"))?,
            }
        }
        Ok(results)
    }
    /// Settles the status from what the portal answered per subject.
    fn after(input: &Input<'_, Self>, executed: &Self::Executed, _now_millis: i64) -> Plan {
        let (status, outcome) = settle(&Desired::of(input), executed);
        Plan {
            actions: Vec::new(),
            status,
            outcome,
            requeue_after: None,
        }
    }
    fn mark(write: &Write) -> Mark {
        match write {
            Write::Grant { .. } => Mark::Add,
            Write::Revoke { .. } => Mark::Remove,
        }
    }
    fn made(action: &Write, executed: &Self::Executed) -> bool {
        match action {
            Write::Grant { email, .. } => {
                matches!(executed.get(email), Some(GrantResult::Granted))
            }
            Write::Revoke { .. } => true,
        }
    }
    fn awaits(status: &RoleBindingStatus, action: &Write) -> Option<String> {
        match action {
            Write::Grant { email, .. } if waits_for_person(status, action) => {
                Some(format!("{email} accepts an invitation"))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AccountManagerRef, AccountRef, Subject};
    use crate::reconcile::Identity;

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
            id: Identity {
                namespace: "team-a",
                name: "owners",
                uid: "uid-1",
                generation: Some(1),
            },
            spec,
            status,
            deleting: false,
            refs: Refs::ready("acc"),
        }
    }

    #[test]
    fn waiting_for_the_account_looks_again_soon_and_sends_nothing() {
        let spec = spec(&["ann@contoso.example"], &[Role::ServiceViewer]);
        let status = RoleBindingStatus::default();
        for account in [AccountState::Missing, AccountState::NotReady] {
            let mut desired = desired(&spec, &status);
            desired.refs.account = account;
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
                Write::Grant {
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
                Write::Grant { email, roles, .. } => Some((email.clone(), roles.clone())),
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
                .all(|a| !matches!(a, Write::Revoke { .. }))
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
        let (status, outcome) = (plan.status, plan.outcome);
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
                Write::Revoke { grant_id, .. } => Some(grant_id.as_str()),
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
            Write::Grant {
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
            matches!(outcome, Outcome::Ready { ref reason, .. } if reason == "WaitingForSubject")
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
        assert!(matches!(again.outcome, Outcome::Stalled { .. }));
        // A changed spec (new generation) tries again.
        let mut newer = desired(&spec, &status);
        newer.id.generation = Some(2);
        assert_eq!(plan(&newer, &Observed::default()).actions.len(), 1);
    }

    #[test]
    fn undelegated_accounts_stall_and_nothing_is_sent() {
        let spec = spec(&["ann@contoso.example"], &[Role::ServiceViewer]);
        let status = RoleBindingStatus::default();
        let mut d = desired(&spec, &status);
        d.refs.account = AccountState::NotDelegated;
        let plan = plan(&d, &Observed::default());
        assert!(plan.actions.is_empty());
        assert!(
            matches!(plan.outcome, Outcome::Stalled { ref reason, .. } if reason == "AccountNotDelegated")
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
            [Write::Revoke {
                grant_id: "g1".into(),
                role: Role::ServiceViewer,
                subject: "ann@contoso.example".into(),
            }]
        );
        assert!(plan.requeue_after.is_none());
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
