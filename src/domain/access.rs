//! What an admin may do on an account, and why: the one function every other part calls.
//!
//! The rules, from seeds 000/001/002:
//! 1. A grant of role R on account G reaches G and, with scope [`GrantScope::AccountAndDescendants`]
//!    (the seeds' inheritance, and the default), every account below G.
//! 2. At each account reached, R brings the roles it implies, transitively. An implication marked
//!    [`ImplicationScope::ChildAccountsOnly`] is followed only on accounts strictly below G.
//! 3. A role that functions only on contract-holding accounts (the subscription roles) grants
//!    nothing on a Client without a sub-contract. When R itself is such a role and G holds no
//!    contracts, the whole grant is inert: it reaches nothing. When R is inherited down to a
//!    client without a contract, R grants nothing there but its implications still apply, so
//!    SubscriptionContributor on a partner is AccountOwner on every client below it.
//!
//! Every role and permission in the result carries the paths that give it.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::permission::Permission;
use super::roles::{Applicability, ImplicationScope, Role};
use super::tree::{Account, AccountId, AccountTree};

/// The admin a grant is for (the portal's admin id or the admin's email; the domain only
/// compares them).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct SubjectId(pub String);

impl SubjectId {
    pub fn new(id: impl Into<String>) -> Self {
        SubjectId(id.into())
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SubjectId {
    fn from(id: &str) -> Self {
        SubjectId(id.to_owned())
    }
}

/// How far down the tree a grant reaches.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum GrantScope {
    /// The account and every account below it (the seeds' inheritance).
    #[default]
    AccountAndDescendants,
    /// The account alone.
    AccountOnly,
}

/// A role granted to a subject on an account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub subject: SubjectId,
    pub account: AccountId,
    pub role: Role,
    pub scope: GrantScope,
    /// Who or what made the grant (e.g. an operator object's externalRef); carried into the
    /// explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Grant {
    pub fn new(subject: impl Into<String>, account: impl Into<String>, role: Role) -> Self {
        Grant {
            subject: SubjectId::new(subject),
            account: AccountId::new(account),
            role,
            scope: GrantScope::AccountAndDescendants,
            source: None,
        }
    }

    pub fn account_only(mut self) -> Self {
        self.scope = GrantScope::AccountOnly;
        self
    }

    pub fn from_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Whether this grant reaches `account` at all (ignoring whether its role functions there).
    pub fn reaches(&self, tree: &AccountTree, account: &AccountId) -> bool {
        match self.scope {
            GrantScope::AccountOnly => &self.account == account,
            GrantScope::AccountAndDescendants => tree.is_self_or_ancestor(&self.account, account),
        }
    }
}

/// How one grant gives one role on one account: the grant, then the chain of implications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessPath {
    pub granted_on: AccountId,
    pub granted_role: Role,
    pub scope: GrantScope,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The grant was made on an ancestor of the account asked about.
    pub inherited: bool,
    /// `[granted_role, implied, implied-by-implied, …]`; the last one is the role this path gives.
    pub implication_chain: Vec<Role>,
}

impl AccessPath {
    /// The role this path ends in.
    pub fn role(&self) -> Role {
        *self
            .implication_chain
            .last()
            .expect("a path holds at least its granted role")
    }

    /// Whether the role was implied rather than granted.
    pub fn implied(&self) -> bool {
        self.implication_chain.len() > 1
    }
}

impl fmt::Display for AccessPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} granted on {}", self.granted_role, self.granted_on)?;
        if self.inherited {
            f.write_str(" (inherited)")?;
        }
        for implied in &self.implication_chain[1..] {
            write!(f, " → implies {implied}")?;
        }
        Ok(())
    }
}

/// A role that reached the account but does not function there, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InertRole {
    pub path: AccessPath,
    pub reason: String,
}

/// What a subject may do on one account, with the paths that give each role and permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveAccess {
    pub subject: SubjectId,
    pub account: AccountId,
    /// Each effective role, with every path that gives it, shortest first.
    pub roles: BTreeMap<Role, Vec<AccessPath>>,
    /// Each permission, with every role path that gives it, shortest first.
    pub permissions: BTreeMap<Permission, Vec<AccessPath>>,
    /// Roles that reached the account but grant nothing there.
    pub inert: Vec<InertRole>,
}

impl EffectiveAccess {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains_key(&role)
    }

    pub fn has_permission(&self, permission: Permission) -> bool {
        self.permissions.contains_key(&permission)
    }

    /// The shortest path that gives `permission`, if any.
    pub fn explain(&self, permission: Permission) -> Option<&AccessPath> {
        self.permissions
            .get(&permission)
            .and_then(|paths| paths.first())
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }
}

/// The account asked about is not in the tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account {0} does not exist")]
pub struct UnknownAccount(pub AccountId);

/// What `subject` may do on `account`, given every grant in `grants` (grants of other subjects
/// are skipped).
pub fn effective_access(
    grants: &[Grant],
    tree: &AccountTree,
    subject: &SubjectId,
    account: &AccountId,
) -> Result<EffectiveAccess, UnknownAccount> {
    let target = tree
        .get(account)
        .ok_or_else(|| UnknownAccount(account.clone()))?;
    let mut access = EffectiveAccess {
        subject: subject.clone(),
        account: account.clone(),
        roles: BTreeMap::new(),
        permissions: BTreeMap::new(),
        inert: Vec::new(),
    };
    for grant in grants
        .iter()
        .filter(|g| &g.subject == subject && g.reaches(tree, account))
    {
        expand_grant(grant, tree, target, &mut access);
    }
    for paths in access
        .roles
        .values_mut()
        .chain(access.permissions.values_mut())
    {
        paths.sort_by(path_order);
        paths.dedup();
    }
    access.inert.sort_by(|a, b| path_order(&a.path, &b.path));
    access.inert.dedup();
    Ok(access)
}

fn path_order(a: &AccessPath, b: &AccessPath) -> std::cmp::Ordering {
    (
        a.implication_chain.len(),
        a.inherited,
        &a.granted_on,
        a.granted_role,
        a.scope,
        &a.implication_chain,
    )
        .cmp(&(
            b.implication_chain.len(),
            b.inherited,
            &b.granted_on,
            b.granted_role,
            b.scope,
            &b.implication_chain,
        ))
}

/// The roles a single grant gives on `target` (which it is known to reach), breadth first so
/// each role is found by its shortest chain.
fn expand_grant(grant: &Grant, tree: &AccountTree, target: &Account, access: &mut EffectiveAccess) {
    let inherited = grant.account != target.id;
    let path_for = |chain: Vec<Role>| AccessPath {
        granted_on: grant.account.clone(),
        granted_role: grant.role,
        scope: grant.scope,
        source: grant.source.clone(),
        inherited,
        implication_chain: chain,
    };
    let Some(granted_on) = tree.get(&grant.account) else {
        return;
    };
    if !functions_on(grant.role, granted_on) {
        access.inert.push(InertRole {
            path: path_for(vec![grant.role]),
            reason: not_functioning_reason(grant.role, granted_on),
        });
        return;
    }
    let mut seen = HashSet::from([grant.role]);
    let mut queue = VecDeque::from([vec![grant.role]]);
    while let Some(chain) = queue.pop_front() {
        let role = *chain.last().expect("chains are never empty");
        let spec = role.spec();
        let path = path_for(chain.clone());
        if functions_on(role, target) {
            for permission in spec.permissions {
                access
                    .permissions
                    .entry(*permission)
                    .or_default()
                    .push(path.clone());
            }
            access.roles.entry(role).or_default().push(path);
        } else {
            access.inert.push(InertRole {
                path,
                reason: not_functioning_reason(role, target),
            });
        }
        for implication in spec.implies {
            let applies = match implication.scope {
                ImplicationScope::Everywhere => true,
                ImplicationScope::ChildAccountsOnly => inherited,
            };
            if applies && seen.insert(implication.role) {
                let mut next = chain.clone();
                next.push(implication.role);
                queue.push_back(next);
            }
        }
    }
}

/// Whether `role` can function on `account` at all.
pub fn functions_on(role: Role, account: &Account) -> bool {
    match role.spec().applicability {
        Applicability::AnyAccount => true,
        Applicability::ContractHoldingAccount => account.holds_contracts(),
    }
}

fn not_functioning_reason(role: Role, account: &Account) -> String {
    format!(
        "{role} does not function on client account {} because it has no sub-contract",
        account.id
    )
}

/// What a grant is being made through; each needs its own permission on the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantAction {
    /// Inviting an administrator with roles (needs `admin_invitations.write`).
    Invite,
    /// Granting roles to an existing administrator (needs `admin_users.write`).
    Grant,
}

impl GrantAction {
    pub fn required_permission(self) -> Permission {
        match self {
            GrantAction::Invite => Permission::AdminInvitationsWrite,
            GrantAction::Grant => Permission::AdminUsersWrite,
        }
    }
}

/// Why a grant is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("account {0} does not exist")]
    UnknownAccount(AccountId),
    #[error("no roles were given; name at least one role (AccountOwner is the usual default)")]
    NoRoles,
    #[error("{granter} lacks {permission} on account {account}")]
    MissingPermission {
        granter: SubjectId,
        account: AccountId,
        permission: Permission,
    },
    #[error("{role} cannot be assigned on account {account}: {reason}")]
    NotAssignable {
        role: Role,
        account: AccountId,
        reason: String,
    },
    #[error("{granter} may only grant roles it holds itself; it does not hold {}", describe_missing(.missing))]
    Escalation {
        granter: SubjectId,
        /// Each role the grant would give, on the account where the granter lacks it.
        missing: Vec<(Role, AccountId)>,
    },
}

fn describe_missing(missing: &[(Role, AccountId)]) -> String {
    const SHOWN: usize = 5;
    let mut text = missing
        .iter()
        .take(SHOWN)
        .map(|(role, account)| format!("{role} on account {account}"))
        .collect::<Vec<_>>()
        .join(", ");
    if missing.len() > SHOWN {
        text.push_str(&format!(" and {} more", missing.len() - SHOWN));
    }
    text
}

/// Checks that `granter` may give `roles` on `account` with `scope` through `action`.
///
/// Refused: an unknown account, no roles, a granter without the action's permission on the
/// account, a role that cannot function on the account, and escalation — the new grant would
/// give the grantee, on the account or any account below it that it reaches, a role the granter
/// does not effectively hold there.
pub fn check_grant(
    grants: &[Grant],
    tree: &AccountTree,
    granter: &SubjectId,
    action: GrantAction,
    account: &AccountId,
    roles: &[Role],
    scope: GrantScope,
) -> Result<(), GrantError> {
    let target = tree
        .get(account)
        .ok_or_else(|| GrantError::UnknownAccount(account.clone()))?;
    if roles.is_empty() {
        return Err(GrantError::NoRoles);
    }
    // Only the granter's own grants decide what it holds; filtering once keeps the per-account
    // walk below proportional to the granter's grants, not the whole portal's.
    let grants: Vec<Grant> = grants
        .iter()
        .filter(|g| &g.subject == granter)
        .cloned()
        .collect();
    let grants = grants.as_slice();
    let here = effective_access(grants, tree, granter, account)
        .map_err(|UnknownAccount(id)| GrantError::UnknownAccount(id))?;
    let permission = action.required_permission();
    if !here.has_permission(permission) {
        return Err(GrantError::MissingPermission {
            granter: granter.clone(),
            account: account.clone(),
            permission,
        });
    }
    if let Some(role) = roles
        .iter()
        .copied()
        .find(|role| !functions_on(*role, target))
    {
        return Err(GrantError::NotAssignable {
            role,
            account: account.clone(),
            reason: format!(
                "it functions only on partner accounts and on client accounts with a sub-contract, and {account} is a client without one"
            ),
        });
    }
    let mut reached = vec![target];
    if scope == GrantScope::AccountAndDescendants {
        reached.extend(tree.descendants(account));
    }
    let mut missing = Vec::new();
    for reached_account in reached {
        let granter_there = if reached_account.id == *account {
            here.clone()
        } else {
            effective_access(grants, tree, granter, &reached_account.id)
                .expect("descendants come from the tree")
        };
        for role in roles {
            let proposed = [Grant {
                subject: SubjectId::new(""),
                account: account.clone(),
                role: *role,
                scope,
                source: None,
            }];
            let given = effective_access(&proposed, tree, &SubjectId::new(""), &reached_account.id)
                .expect("descendants come from the tree");
            for given_role in given.roles.keys() {
                if !granter_there.has_role(*given_role)
                    && !missing.contains(&(*given_role, reached_account.id.clone()))
                {
                    missing.push((*given_role, reached_account.id.clone()));
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        missing.sort();
        Err(GrantError::Escalation {
            granter: granter.clone(),
            missing,
        })
    }
}

/// A revocation would leave an account that must have an owner without one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "account {account} would be left with no AccountOwner; grant AccountOwner to another admin first"
)]
pub struct LastOwner {
    pub account: AccountId,
}

/// Checks that removing the grants for which `removed` is true leaves every partner and every
/// top-level account that had an effective AccountOwner with at least one.
pub fn check_revoke(
    grants: &[Grant],
    tree: &AccountTree,
    removed: impl Fn(&Grant) -> bool,
) -> Result<(), LastOwner> {
    let (gone, kept): (Vec<&Grant>, Vec<&Grant>) = grants.iter().partition(|g| removed(g));
    let kept: Vec<Grant> = kept.into_iter().cloned().collect();
    let mut checked = HashSet::new();
    for grant in gone {
        let Some(granted_on) = tree.get(&grant.account) else {
            continue;
        };
        let mut reached = vec![granted_on];
        if grant.scope == GrantScope::AccountAndDescendants {
            reached.extend(tree.descendants(&grant.account));
        }
        for account in reached {
            let must_have_owner =
                account.is_top_level() || account.kind == super::tree::AccountKind::Partner;
            if !must_have_owner || !checked.insert(account.id.clone()) {
                continue;
            }
            if has_owner(grants, tree, &account.id) && !has_owner(&kept, tree, &account.id) {
                return Err(LastOwner {
                    account: account.id.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Whether any subject effectively holds AccountOwner on `account`.
pub fn has_owner(grants: &[Grant], tree: &AccountTree, account: &AccountId) -> bool {
    let subjects: HashSet<&SubjectId> = grants
        .iter()
        .filter(|g| g.reaches(tree, account))
        .map(|g| &g.subject)
        .collect();
    subjects.into_iter().any(|subject| {
        effective_access(grants, tree, subject, account)
            .map(|access| access.has_role(Role::AccountOwner))
            .unwrap_or(false)
    })
}
