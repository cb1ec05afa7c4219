//! Team: create the account's team, keep its name, members, roles, channels, avatar and
//! disabled flag as the spec says, and delete it with the object. The team's own lists are kept
//! apart in the portal from what Users list, so a Team and a User never undo each other; the
//! status shows every member with the origin of its membership.
//!
//! The portal object is found by its `externalRef` (`Team/{namespace}/{name}/{uid}`) and created
//! with the idempotency key `{uid}/create`.

use std::fmt;

use base64::Engine;
use sha2::Digest;

use crate::api::{AvatarUpload, Channel, CreateTeam, ExternalRef, Patch, TeamView, UpdateTeam};
use crate::crd::{Team, TeamSpec, TeamStatus, WithOrigins};
use crate::domain::UserId;
use crate::portal_client::{PortalApi, PortalResult};

use super::driver::{Input, Kind, Mark};
use super::{ExecuteError, Identity, Outcome, Refusal};

pub type Desired<'a> = super::Desired<'a, TeamSpec, TeamStatus>;
pub type Plan = super::Plan<Write, TeamStatus>;

/// The externalRef of `object`'s portal team.
pub fn reference(object: &Team) -> String {
    external_ref(&Identity::of(&object.metadata))
}

fn external_ref(id: &Identity) -> String {
    ExternalRef::Team {
        namespace: id.namespace.to_owned(),
        name: id.name.to_owned(),
        uid: id.uid.to_owned(),
    }
    .to_string()
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub team: Option<TeamView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Create {
        account: String,
        team: Box<CreateTeam>,
        idempotency_key: String,
    },
    Update {
        id: String,
        changes: Box<UpdateTeam>,
        fields: Vec<&'static str>,
        version: i64,
    },
    Delete {
        id: String,
        name: String,
    },
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Create { team, .. } => write!(
                f,
                "create team {} with {} listed member(s)",
                team.name,
                team.members.len()
            ),
            Write::Update { fields, .. } => write!(f, "change {}", fields.join(", ")),
            Write::Delete { name, .. } => write!(f, "delete team {name}"),
        }
    }
}

fn avatar_of(spec: &TeamSpec) -> Option<AvatarUpload> {
    spec.avatar.as_ref().map(|a| AvatarUpload {
        media_type: a.media_type.clone(),
        data: a.data.clone(),
    })
}

fn channels_of(spec: &TeamSpec) -> Vec<Channel> {
    spec.channels
        .iter()
        .map(|c| Channel {
            name: c.name.clone(),
            visibility: c.visibility,
        })
        .collect()
}

/// The SHA-256 the portal reports for the spec's avatar (`None`: not base64).
fn avatar_sha256(data: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    Some(
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// User IDs as the portal compares them.
fn logins(ids: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = ids
        .iter()
        .map(|id| UserId::parse(id).map_or_else(|_| id.clone(), |id| id.canonical()))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn names(names: &[String]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.trim().to_lowercase()).collect();
    names.sort();
    names.dedup();
    names
}

fn changes(spec: &TeamSpec, team: &TeamView) -> (UpdateTeam, Vec<&'static str>) {
    let mut changes = UpdateTeam::default();
    let mut fields = Vec::new();
    if spec.display_name.trim() != team.name {
        changes.name = Some(spec.display_name.clone());
        fields.push("name");
    }
    if logins(&spec.members) != logins(&team.members) {
        changes.members = Some(spec.members.clone());
        fields.push("members");
    }
    if names(&spec.roles) != names(&team.roles) {
        changes.roles = Some(spec.roles.clone());
        fields.push("roles");
    }
    let channels = channels_of(spec);
    if channels != team.channels {
        changes.channels = Some(channels);
        fields.push("channels");
    }
    let wanted = spec.avatar.as_ref().and_then(|a| avatar_sha256(&a.data));
    let held = team.avatar.as_ref().map(|a| a.sha256.clone());
    if wanted != held || (spec.avatar.is_some() && wanted.is_none()) {
        changes.avatar = match avatar_of(spec) {
            Some(avatar) => Patch::Value(avatar),
            None => Patch::Null,
        };
        fields.push("avatar");
    }
    if spec.disabled != team.disabled {
        changes.disabled = Some(spec.disabled);
        fields.push(if spec.disabled {
            "disable the team"
        } else {
            "enable the team"
        });
    }
    (changes, fields)
}

fn quiet(outcome: Outcome, status: TeamStatus) -> Plan {
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
    let found = observed.team.as_ref();
    if desired.deleting {
        return Plan {
            actions: found
                .map(|t| Write::Delete {
                    id: t.id.clone(),
                    name: t.name.clone(),
                })
                .into_iter()
                .collect(),
            ..quiet(
                Outcome::Reconciling {
                    reason: "Deleting".into(),
                    message: "deleting the team from the portal".into(),
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
    let Some(team) = found else {
        if let Some(outcome) = refused {
            status.refused = desired.status.refused.clone();
            return quiet(outcome, status);
        }
        return Plan {
            actions: vec![Write::Create {
                account,
                team: Box::new(CreateTeam {
                    name: spec.display_name.clone(),
                    avatar: avatar_of(spec),
                    channels: channels_of(spec),
                    disabled: spec.disabled,
                    members: spec.members.clone(),
                    roles: spec.roles.clone(),
                    external_ref: Some(external_ref(&desired.id)),
                }),
                idempotency_key: format!("{}/create", desired.id.uid),
            }],
            ..quiet(
                Outcome::Reconciling {
                    reason: "Creating".into(),
                    message: format!("creating team {}", spec.display_name),
                },
                status,
            )
        };
    };
    status.portal_id = Some(team.id.clone());
    status.members = team
        .effective_members
        .iter()
        .map(|m| WithOrigins {
            name: m.user_id.clone(),
            origins: m.origins.iter().map(ToString::to_string).collect(),
        })
        .collect();
    status.member_count = Some(team.effective_members.len() as i64);
    if let Some(outcome) = refused {
        status.refused = desired.status.refused.clone();
        return quiet(outcome, status);
    }
    let (patch, fields) = changes(spec, team);
    if !fields.is_empty() {
        return Plan {
            actions: vec![Write::Update {
                id: team.id.clone(),
                changes: Box::new(patch),
                fields,
                version: team.version,
            }],
            ..quiet(
                Outcome::Reconciling {
                    reason: "Updating".into(),
                    message: format!("updating team {}", spec.display_name),
                },
                status,
            )
        };
    }
    let (reason, state) = if team.disabled {
        ("Disabled", "disabled (invisible to its members)")
    } else {
        ("Provisioned", "active")
    };
    quiet(
        Outcome::Ready {
            reason: reason.into(),
            message: format!(
                "team {} is {state} with {} member(s)",
                team.name,
                team.effective_members.len()
            ),
        },
        status,
    )
}

impl Kind for Team {
    type Status = TeamStatus;
    type Observed = Observed;
    type Spec = TeamSpec;
    type Write = Write;
    type Executed = Observed;

    const OBSERVE: &'static str = "find the team";

    fn spec(&self) -> &TeamSpec {
        &self.spec
    }
    fn status(&self) -> Option<&TeamStatus> {
        self.status.as_ref()
    }
    fn account_ref(&self) -> Option<&crate::crd::AccountRef> {
        Some(&self.spec.account_ref)
    }
    fn refused(status: &mut TeamStatus) -> &mut Option<Refusal> {
        &mut status.refused
    }
    async fn observe_under(
        portal: &impl PortalApi,
        account: &str,
        object: &Self,
    ) -> PortalResult<Observed> {
        Ok(Observed {
            team: portal.team_by_ref(account, &reference(object)).await?,
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
                    team,
                    idempotency_key,
                } => {
                    observed.team = Some(
                        portal
                            .create_team(account, team, idempotency_key)
                            .await
                            .map_err(ExecuteError::new("create the team"))?,
                    );
                }
                Write::Update {
                    id,
                    changes,
                    version,
                    ..
                } => {
                    observed.team = Some(
                        portal
                            .update_team(id, changes, *version)
                            .await
                            .map_err(ExecuteError::new("change the team"))?,
                    );
                }
                Write::Delete { id, .. } => {
                    portal
                        .delete_team(id)
                        .await
                        .map_err(ExecuteError::new("delete the team"))?;
                    observed.team = None;
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
    use crate::api::{AvatarInfo, ChannelVisibility};
    use crate::crd::{AccountRef, TeamAvatar, TeamChannel};
    use crate::reconcile::{AccountState, Refs};

    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

    fn spec() -> TeamSpec {
        TeamSpec {
            account_ref: AccountRef {
                name: "contoso".into(),
            },
            display_name: "Support".into(),
            members: vec!["Ann@Contoso.example".into(), "+44 7700 900123".into()],
            roles: vec!["agent".into()],
            channels: vec![TeamChannel {
                name: "General".into(),
                visibility: ChannelVisibility::Public,
            }],
            avatar: Some(TeamAvatar {
                media_type: "image/png".into(),
                data: PNG.into(),
            }),
            disabled: false,
        }
    }

    fn portal() -> TeamView {
        TeamView {
            id: "t-1".into(),
            account_id: "acc".into(),
            name: "Support".into(),
            avatar: Some(AvatarInfo {
                media_type: "image/png".into(),
                bytes: 70,
                sha256: avatar_sha256(PNG).unwrap(),
            }),
            channels: vec![Channel {
                name: "General".into(),
                visibility: ChannelVisibility::Public,
            }],
            disabled: false,
            members: vec!["+447700900123".into(), "ann@contoso.example".into()],
            roles: vec!["Agent".into()],
            effective_members: Vec::new(),
            external_ref: None,
            created_at: String::new(),
            version: 4,
        }
    }

    fn run(spec: &TeamSpec, found: Option<TeamView>) -> Plan {
        plan(
            &Desired {
                id: Identity {
                    namespace: "team",
                    name: "support",
                    uid: "uid-9",
                    generation: Some(1),
                },
                spec,
                status: &TeamStatus::default(),
                deleting: false,
                refs: Refs {
                    account: AccountState::Ready {
                        portal_id: "acc".into(),
                    },
                    ..Refs::default()
                },
            },
            &Observed { team: found },
        )
    }

    #[test]
    fn the_same_team_written_another_way_plans_nothing() {
        let plan = run(&spec(), Some(portal()));
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(plan.outcome.reason(), "Provisioned");
    }

    #[test]
    fn only_what_differs_is_patched_and_a_removed_avatar_is_cleared() {
        let spec = TeamSpec {
            avatar: None,
            disabled: true,
            members: vec!["ann@contoso.example".into()],
            ..spec()
        };
        let plan = run(&spec, Some(portal()));
        let [
            Write::Update {
                changes,
                fields,
                version,
                ..
            },
        ] = &plan.actions[..]
        else {
            panic!("{:?}", plan.actions)
        };
        assert_eq!(fields, &["members", "avatar", "disable the team"]);
        assert_eq!(changes.avatar, Patch::Null);
        assert_eq!(*version, 4);
    }

    #[test]
    fn a_new_team_is_created_with_its_reference() {
        let plan = run(&spec(), None);
        let [
            Write::Create {
                team,
                idempotency_key,
                ..
            },
        ] = &plan.actions[..]
        else {
            panic!("{:?}", plan.actions)
        };
        assert_eq!(
            team.external_ref.as_deref(),
            Some("Team/team/support/uid-9")
        );
        assert_eq!(idempotency_key, "uid-9/create");
    }
}
