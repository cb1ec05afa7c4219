//! UserRole: create the account's user role, keep its name, permissions, team and team
//! permissions as the spec says, and delete it with the object. What a change of its team or its
//! deletion takes away (the team memberships that came only from it) is computed with the
//! domain's own function from the account's users, roles and teams, and named in the plan, so
//! `diff` says exactly which memberships go before anything is done.
//!
//! The portal object is found by its `externalRef` (`UserRole/{namespace}/{name}/{uid}`) and
//! created with the idempotency key `{uid}/create`.

use std::fmt;

use crate::api::{
    CreateUserRole, ExternalRef, LostMembership, Patch, TeamView, UpdateUserRole, UserRoleView,
    UserView,
};
use crate::crd::{UserRole, UserRoleSpec, UserRoleStatus};
use crate::domain::{RoleDef, TeamDef, UserAssignment, memberships_lost};
use crate::portal_client::{PortalApi, PortalResult};

use super::driver::{Input, Kind, Mark};
use super::{ExecuteError, Identity, Outcome, Refusal};

pub type Desired<'a> = super::Desired<'a, UserRoleSpec, UserRoleStatus>;
pub type Plan = super::Plan<Write, UserRoleStatus>;

/// The externalRef of `object`'s portal user role.
pub fn reference(object: &UserRole) -> String {
    external_ref(&Identity::of(&object.metadata))
}

fn external_ref(id: &Identity) -> String {
    ExternalRef::UserRole {
        namespace: id.namespace.to_owned(),
        name: id.name.to_owned(),
        uid: id.uid.to_owned(),
    }
    .to_string()
}

/// The account's service configuration, read when a change may end memberships.
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub users: Vec<UserView>,
    pub roles: Vec<UserRoleView>,
    pub teams: Vec<TeamView>,
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub role: Option<UserRoleView>,
    /// Read only when the role's team changes or the role is deleted.
    pub account: Option<Account>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Create {
        account: String,
        role: CreateUserRole,
        idempotency_key: String,
    },
    Update {
        id: String,
        changes: UpdateUserRole,
        fields: Vec<&'static str>,
        version: i64,
        lost: Vec<LostMembership>,
    },
    Delete {
        id: String,
        name: String,
        holders: usize,
        lost: Vec<LostMembership>,
    },
}

fn describe_lost(lost: &[LostMembership]) -> String {
    if lost.is_empty() {
        return "no team membership ends".into();
    }
    let each: Vec<String> = lost
        .iter()
        .map(|l| format!("{} leaves {}", l.user_id, l.team))
        .collect();
    each.join(", ")
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Create { role, .. } => match &role.team {
                Some(team) => write!(f, "create user role {} (belongs to team {team})", role.name),
                None => write!(f, "create user role {}", role.name),
            },
            Write::Update { fields, lost, .. } => {
                write!(f, "change {}", fields.join(", "))?;
                if fields.contains(&"team") {
                    write!(f, " ({})", describe_lost(lost))?;
                }
                Ok(())
            }
            Write::Delete {
                name,
                holders,
                lost,
                ..
            } => write!(
                f,
                "delete user role {name}, removing it from {holders} user(s) ({})",
                describe_lost(lost)
            ),
        }
    }
}

fn sorted<T: Ord>(mut values: Vec<T>) -> Vec<T> {
    values.sort();
    values.dedup();
    values
}

fn lower(name: &Option<String>) -> Option<String> {
    name.as_deref().map(|n| n.trim().to_lowercase())
}

/// The memberships that end when the role `id` changes to `after` (`None`: deleted).
pub fn lost_by(account: &Account, id: &str, after: Option<&RoleDef>) -> Vec<LostMembership> {
    let roles: Vec<RoleDef> = account
        .roles
        .iter()
        .map(|r| RoleDef {
            name: r.name.clone(),
            permissions: r.permissions.clone(),
            team: r.team.clone(),
            team_permissions: r.team_permissions.clone(),
        })
        .collect();
    let teams: Vec<TeamDef> = account
        .teams
        .iter()
        .map(|t| TeamDef {
            name: t.name.clone(),
            roles: t.roles.clone(),
            members: t.members.clone(),
            disabled: t.disabled,
        })
        .collect();
    let name = account.roles.iter().find(|r| r.id == id).map(|r| &r.name);
    let changed: Vec<RoleDef> = roles
        .iter()
        .filter(|r| Some(&r.name) != name)
        .cloned()
        .chain(after.cloned())
        .collect();
    // Deleted: the role is gone from every user too.
    let users: Vec<(String, UserAssignment)> = account
        .users
        .iter()
        .map(|u| {
            (
                u.user_id.clone(),
                UserAssignment {
                    user_id: u.user_id.clone(),
                    roles: u.roles.clone(),
                    teams: u.teams.clone(),
                    permissions: Vec::new(),
                },
            )
        })
        .collect();
    memberships_lost(&users, (&roles, &teams), (&changed, &teams))
        .into_iter()
        .map(|l| LostMembership {
            user_id: l.user,
            team: l.team,
        })
        .collect()
}

fn quiet(outcome: Outcome, status: UserRoleStatus) -> Plan {
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
    let found = observed.role.as_ref();
    if desired.deleting {
        let actions = found
            .map(|role| Write::Delete {
                id: role.id.clone(),
                name: role.name.clone(),
                holders: role.holders.len(),
                lost: observed
                    .account
                    .as_ref()
                    .map(|account| lost_by(account, &role.id, None))
                    .unwrap_or_default(),
            })
            .into_iter()
            .collect();
        return Plan {
            actions,
            ..quiet(
                Outcome::Reconciling {
                    reason: "Deleting".into(),
                    message: "deleting the user role from the portal".into(),
                },
                status,
            )
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
    let Some(role) = found else {
        if let Some(outcome) = refused {
            status.refused = desired.status.refused.clone();
            return quiet(outcome, status);
        }
        return Plan {
            actions: vec![Write::Create {
                account,
                role: CreateUserRole {
                    name: spec.display_name.clone(),
                    permissions: spec.permissions.clone(),
                    team: spec.team.clone(),
                    team_permissions: spec.team_permissions.clone(),
                    external_ref: Some(external_ref(&desired.id)),
                },
                idempotency_key: format!("{}/create", desired.id.uid),
            }],
            ..quiet(
                Outcome::Reconciling {
                    reason: "Creating".into(),
                    message: format!("creating user role {}", spec.display_name),
                },
                status,
            )
        };
    };
    status.portal_id = Some(role.id.clone());
    status.holders = role.holders.clone();
    status.holder_count = Some(role.holders.len() as i64);
    if let Some(outcome) = refused {
        status.refused = desired.status.refused.clone();
        return quiet(outcome, status);
    }
    let mut changes = UpdateUserRole::default();
    let mut fields = Vec::new();
    if spec.display_name.trim() != role.name {
        changes.name = Some(spec.display_name.clone());
        fields.push("name");
    }
    if sorted(spec.permissions.clone()) != role.permissions {
        changes.permissions = Some(spec.permissions.clone());
        fields.push("permissions");
    }
    if lower(&spec.team) != lower(&role.team) {
        changes.team = match &spec.team {
            Some(team) => Patch::Value(team.clone()),
            None => Patch::Null,
        };
        fields.push("team");
    }
    if sorted(spec.team_permissions.clone()) != role.team_permissions {
        changes.team_permissions = Some(spec.team_permissions.clone());
        fields.push("teamPermissions");
    }
    if !fields.is_empty() {
        let after = RoleDef {
            name: spec.display_name.trim().to_owned(),
            permissions: spec.permissions.clone(),
            team: spec.team.clone(),
            team_permissions: spec.team_permissions.clone(),
        };
        let lost = observed
            .account
            .as_ref()
            .map(|account| lost_by(account, &role.id, Some(&after)))
            .unwrap_or_default();
        return Plan {
            actions: vec![Write::Update {
                id: role.id.clone(),
                changes,
                fields,
                version: role.version,
                lost,
            }],
            ..quiet(
                Outcome::Reconciling {
                    reason: "Updating".into(),
                    message: format!("updating user role {}", spec.display_name),
                },
                status,
            )
        };
    }
    quiet(
        Outcome::Ready {
            reason: "Provisioned".into(),
            message: format!(
                "user role {} is held by {} user(s)",
                role.name,
                role.holders.len()
            ),
        },
        status,
    )
}

/// The role by its reference, and — when a change may end memberships (`deleting`, or the
/// role's team changes) — who holds what in the account.
async fn observe_role(
    portal: &impl PortalApi,
    account: &str,
    object: &UserRole,
    deleting: bool,
) -> PortalResult<Observed> {
    let role = portal.user_role_by_ref(account, &reference(object)).await?;
    let team_changes = role
        .as_ref()
        .is_some_and(|r| lower(&r.team) != lower(&object.spec.team));
    let account = if role.is_some() && (team_changes || deleting) {
        Some(Account {
            users: portal.users(account).await?,
            roles: portal.user_roles(account).await?,
            teams: portal.teams(account).await?,
        })
    } else {
        None
    };
    Ok(Observed { role, account })
}

impl Kind for UserRole {
    type Status = UserRoleStatus;
    type Observed = Observed;
    type Spec = UserRoleSpec;
    type Write = Write;
    type Executed = Observed;

    const OBSERVE: &'static str = "find the user role";

    fn spec(&self) -> &UserRoleSpec {
        &self.spec
    }
    fn status(&self) -> Option<&UserRoleStatus> {
        self.status.as_ref()
    }
    fn account_ref(&self) -> Option<&crate::crd::AccountRef> {
        Some(&self.spec.account_ref)
    }
    fn refused(status: &mut UserRoleStatus) -> &mut Option<Refusal> {
        &mut status.refused
    }
    async fn observe_under(
        portal: &impl PortalApi,
        account: &str,
        object: &Self,
    ) -> PortalResult<Observed> {
        observe_role(
            portal,
            account,
            object,
            object.metadata.deletion_timestamp.is_some(),
        )
        .await
    }
    async fn observe_for_cleanup(
        portal: &impl PortalApi,
        object: &Self,
        refs: &super::Refs,
    ) -> PortalResult<Observed> {
        match &refs.account_portal_id {
            Some(account) => observe_role(portal, account, object, true).await,
            None => Ok(Observed::default()),
        }
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
                    role,
                    idempotency_key,
                } => {
                    observed.role = Some(
                        portal
                            .create_user_role(account, role, idempotency_key)
                            .await
                            .map_err(ExecuteError::new("create the user role"))?,
                    );
                }
                Write::Update {
                    id,
                    changes,
                    version,
                    ..
                } => {
                    observed.role = Some(
                        portal
                            .update_user_role(id, changes, *version)
                            .await
                            .map_err(ExecuteError::new("change the user role"))?,
                    );
                }
                Write::Delete { id, .. } => {
                    portal
                        .delete_user_role(id)
                        .await
                        .map_err(ExecuteError::new("delete the user role"))?;
                    observed.role = None;
                }
            }
        }
        observed.account = None;
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
    use crate::domain::{EffectiveService, LicenseType, UserPermission};

    fn role(id: &str, name: &str, team: Option<&str>) -> UserRoleView {
        UserRoleView {
            id: id.into(),
            account_id: "acc".into(),
            name: name.into(),
            permissions: Vec::new(),
            team: team.map(Into::into),
            team_permissions: Vec::new(),
            holders: Vec::new(),
            external_ref: None,
            created_at: String::new(),
            version: 1,
        }
    }

    fn team(name: &str) -> TeamView {
        TeamView {
            id: name.into(),
            account_id: "acc".into(),
            name: name.into(),
            avatar: None,
            channels: Vec::new(),
            disabled: false,
            members: Vec::new(),
            roles: Vec::new(),
            effective_members: Vec::new(),
            external_ref: None,
            created_at: String::new(),
            version: 1,
        }
    }

    fn user(id: &str, roles: &[&str]) -> UserView {
        serde_json::from_value(serde_json::json!({
            "id": id, "accountId": "acc", "userId": id, "firstName": "A", "lastName": "B",
            "extra": {}, "licenseType": LicenseType::Standard, "mobileNumber": null,
            "landlineNumber": null, "linkedNumber": null, "mex": false, "displayNumbers": [],
            "countryCode": null, "permissions": Vec::<UserPermission>::new(), "roles": roles,
            "teams": [], "language": "en", "timeZone": null, "state": "Active",
            "activationExpiresAt": null, "invitedAt": null, "activatedAt": null,
            "activationSends": 1, "effective": EffectiveService::default(), "externalRef": null,
            "createdAt": "", "version": 1
        }))
        .unwrap()
    }

    #[test]
    fn a_deletion_names_exactly_the_memberships_it_ends() {
        let account = Account {
            users: vec![user("ann", &["Agent"]), user("bob", &["Agent", "Lead"])],
            roles: vec![
                role("r1", "Agent", Some("Queue")),
                role("r2", "Lead", Some("Queue")),
            ],
            teams: vec![team("Queue")],
        };
        let lost = lost_by(&account, "r1", None);
        assert_eq!(
            lost,
            [LostMembership {
                user_id: "ann".into(),
                team: "Queue".into()
            }],
            "bob keeps Queue through Lead"
        );
        let write = Write::Delete {
            id: "r1".into(),
            name: "Agent".into(),
            holders: 2,
            lost,
        };
        assert_eq!(
            write.to_string(),
            "delete user role Agent, removing it from 2 user(s) (ann leaves Queue)"
        );
        // Moving the role to another team ends the same membership.
        let moved = RoleDef {
            name: "Agent".into(),
            team: Some("Sales".into()),
            ..RoleDef::default()
        };
        assert_eq!(lost_by(&account, "r1", Some(&moved)).len(), 1);
    }
}
