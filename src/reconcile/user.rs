//! User: create the portal user (it takes a licence; the portal sends the activation email
//! unless the user is kept prepared), keep its settings as the spec says, send its invitation
//! when `spec.invite` turns true, resend the activation when `spec.resendActivation` is raised,
//! and delete it with the object (which cannot be undone).
//!
//! A licence shortage is not a refusal that waits for a spec change: the fix is on the
//! Subscription. The user stays Stalled (`LicenseExhausted`, naming the subscription to raise)
//! and is created as soon as its observation shows a free licence.
//!
//! The portal object is found by its `externalRef` (`User/{namespace}/{name}/{uid}`) and created
//! with the idempotency key `{uid}/create`.

use std::fmt;
use std::time::Duration;

use crate::api::time::parse_millis;
use crate::api::{CreateUser, ExternalRef, Patch, ProblemType, UpdateUser, UserState, UserView};
use crate::crd::{LicenseStatus, User, UserPhase, UserSpec, UserStatus, WithOrigins};
use crate::domain::LicenseType;
use crate::portal_client::{PortalApi, PortalResult};

use super::driver::{Input, Kind, Mark};
use super::{ExecuteError, Identity, Outcome, Refusal};

pub type Desired<'a> = super::Desired<'a, UserSpec, UserStatus>;
pub type Plan = super::Plan<Write, UserStatus>;

/// How soon to look again at a user waiting for a licence when no event says one came free.
pub const WAIT_FOR_LICENSE: Duration = Duration::from_secs(60);

/// The externalRef of `object`'s portal user.
pub fn reference(object: &User) -> String {
    external_ref(&Identity::of(&object.metadata))
}

fn external_ref(id: &Identity) -> String {
    ExternalRef::User {
        namespace: id.namespace.to_owned(),
        name: id.name.to_owned(),
        uid: id.uid.to_owned(),
    }
    .to_string()
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub user: Option<UserView>,
    /// Free licences of the spec's type on the account (`None`: no subscription of that type).
    pub free_licenses: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Create {
        account: String,
        user: Box<CreateUser>,
        idempotency_key: String,
    },
    Update {
        id: String,
        changes: Box<UpdateUser>,
        /// The fields changed, for the description.
        fields: Vec<&'static str>,
        version: i64,
    },
    SendInvitation {
        account: String,
        id: String,
        idempotency_key: String,
    },
    ResendActivation {
        id: String,
        idempotency_key: String,
    },
    Delete {
        id: String,
        user_id: String,
    },
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Create { user, .. } if user.invite => write!(
                f,
                "create user {} with a {} licence (the portal emails a temporary password)",
                user.user_id, user.license_type
            ),
            Write::Create { user, .. } => write!(
                f,
                "create prepared user {} with a {} licence (no email until invited)",
                user.user_id, user.license_type
            ),
            Write::Update { fields, .. } => write!(f, "change {}", fields.join(", ")),
            Write::SendInvitation { .. } => f.write_str("send the invitation (activation email)"),
            Write::ResendActivation { .. } => f.write_str("send a new activation email"),
            Write::Delete { user_id, .. } => {
                write!(f, "delete user {user_id} (this cannot be undone)")
            }
        }
    }
}

fn quiet(outcome: Outcome, status: UserStatus) -> Plan {
    Plan {
        actions: Vec::new(),
        status,
        outcome,
        requeue_after: None,
    }
}

fn create_body(desired: &Desired) -> CreateUser {
    let spec = desired.spec;
    CreateUser {
        user_id: spec.user_id.clone(),
        first_name: spec.first_name.clone(),
        last_name: spec.last_name.clone(),
        extra: spec.extra.clone(),
        license_type: spec.license_type,
        mobile_number: spec.mobile_number.clone(),
        landline_number: spec.landline_number.clone(),
        linked_number: spec.linked_number.clone(),
        mex: spec.mex,
        display_numbers: spec.display_numbers.clone(),
        country_code: spec.country_code.clone(),
        permissions: spec.permissions.clone(),
        roles: spec.roles.clone(),
        teams: spec.teams.clone(),
        language: Some(spec.language),
        time_zone: spec.time_zone.clone(),
        invite: spec.invite,
        external_ref: Some(external_ref(&desired.id)),
    }
}

/// What differs between the spec and the portal user, as a merge patch and the fields' names.
fn changes(spec: &UserSpec, user: &UserView) -> (UpdateUser, Vec<&'static str>) {
    let mut changes = UpdateUser::default();
    let mut fields = Vec::new();
    let optional = |wanted: &Option<String>, held: &Option<String>| -> Patch<String> {
        match (wanted, held) {
            (a, b) if a.as_deref().map(str::trim) == b.as_deref() => Patch::Absent,
            (None, Some(_)) => Patch::Null,
            (Some(value), _) => Patch::Value(value.clone()),
            (None, None) => Patch::Absent,
        }
    };
    if spec.first_name.trim() != user.first_name {
        changes.first_name = Some(spec.first_name.clone());
        fields.push("firstName");
    }
    if spec.last_name.trim() != user.last_name {
        changes.last_name = Some(spec.last_name.clone());
        fields.push("lastName");
    }
    if spec.extra != user.extra {
        changes.extra = Some(spec.extra.clone());
        fields.push("extra");
    }
    if spec.license_type != user.license_type {
        changes.license_type = Some(spec.license_type);
        fields.push("licenseType");
    }
    for (field, wanted, held, patch) in [
        (
            "mobileNumber",
            &spec.mobile_number,
            &user.mobile_number,
            &mut changes.mobile_number,
        ),
        (
            "landlineNumber",
            &spec.landline_number,
            &user.landline_number,
            &mut changes.landline_number,
        ),
        (
            "linkedNumber",
            &spec.linked_number,
            &user.linked_number,
            &mut changes.linked_number,
        ),
        (
            "countryCode",
            &spec.country_code,
            &user.country_code,
            &mut changes.country_code,
        ),
        (
            "timeZone",
            &spec.time_zone,
            &user.time_zone,
            &mut changes.time_zone,
        ),
    ] {
        *patch = optional(wanted, held);
        if !patch.is_absent() {
            fields.push(field);
        }
    }
    if spec.mex != user.mex {
        changes.mex = Some(spec.mex);
        fields.push("mex");
    }
    let trimmed: Vec<String> = spec
        .display_numbers
        .iter()
        .map(|n| n.trim().to_owned())
        .collect();
    if trimmed != user.display_numbers {
        changes.display_numbers = Some(spec.display_numbers.clone());
        fields.push("displayNumbers");
    }
    let mut permissions = spec.permissions.clone();
    permissions.sort();
    permissions.dedup();
    if permissions != user.permissions {
        changes.permissions = Some(spec.permissions.clone());
        fields.push("permissions");
    }
    // Names are matched as the portal matches them: trimmed, in any case, in any order.
    let names = |names: &[String]| {
        let mut names: Vec<String> = names.iter().map(|n| n.trim().to_lowercase()).collect();
        names.sort();
        names.dedup();
        names
    };
    if names(&spec.roles) != names(&user.roles) {
        changes.roles = Some(spec.roles.clone());
        fields.push("roles");
    }
    if names(&spec.teams) != names(&user.teams) {
        changes.teams = Some(spec.teams.clone());
        fields.push("teams");
    }
    if spec.language != user.language {
        changes.language = Some(spec.language);
        fields.push("language");
    }
    let disabled = user.state == UserState::Disabled;
    if spec.disabled != disabled {
        changes.disabled = Some(spec.disabled);
        fields.push(if spec.disabled {
            "disable the user"
        } else {
            "enable the user"
        });
    }
    (changes, fields)
}

fn phase(state: UserState) -> UserPhase {
    match state {
        UserState::Prepared => UserPhase::Prepared,
        UserState::Invited => UserPhase::Invited,
        UserState::ActivationExpired => UserPhase::ActivationExpired,
        UserState::Active => UserPhase::Active,
        UserState::Disabled => UserPhase::Disabled,
    }
}

/// Records what the portal holds for `user` in `status`.
fn record(status: &mut UserStatus, user: &UserView) {
    status.portal_id = Some(user.id.clone());
    status.phase = Some(phase(user.state));
    status.activation_expires_at = user.activation_expires_at.clone();
    status.license = Some(LicenseStatus {
        license_type: Some(user.license_type.to_string()),
        assigned: !user.waiting_for_license,
        reason: user.waiting_for_license.then(|| {
            format!(
                "waiting for a free {} licence; it takes one as soon as one is free",
                user.license_type
            )
        }),
    });
    status.permissions = user
        .effective
        .permissions
        .iter()
        .map(|p| WithOrigins {
            name: p.permission.to_string(),
            origins: p.origins.iter().map(ToString::to_string).collect(),
        })
        .collect();
    status.teams = user
        .effective
        .teams
        .iter()
        .map(|t| WithOrigins {
            name: t.team.clone(),
            origins: t.origins.iter().map(ToString::to_string).collect(),
        })
        .collect();
}

/// Whether the refusal recorded is a licence shortage (retried once a licence is free).
fn short_of_licenses(refusal: &Refusal) -> bool {
    refusal.reason == ProblemType::LicenseExhausted.reason()
}

fn waiting_for_license(desired: &Desired, mut status: UserStatus, refusal: &Refusal) -> Plan {
    let (outcome, requeue_after) =
        license_shortage(desired.spec.license_type, refusal, &mut status);
    status.refused = Some(refusal.clone());
    Plan {
        actions: Vec::new(),
        outcome,
        status,
        requeue_after,
    }
}

/// What a licence shortage looks like on the User: no licence assigned and why, Stalled naming
/// the Subscription to raise, looked at again now and then (the feed's licence events usually
/// come first).
fn license_shortage(
    license: LicenseType,
    refusal: &Refusal,
    status: &mut UserStatus,
) -> (Outcome, Option<Duration>) {
    status.license = Some(LicenseStatus {
        license_type: Some(license.to_string()),
        assigned: false,
        reason: Some(refusal.message.clone()),
    });
    (
        Outcome::Stalled {
            reason: refusal.reason.clone(),
            message: format!(
                "{}; raise the quantity of the account's {license} Subscription (or free a licence) and the user is created",
                refusal.message
            ),
        },
        Some(WAIT_FOR_LICENSE),
    )
}

pub fn plan(desired: &Desired, observed: &Observed, now_millis: i64) -> Plan {
    let spec = desired.spec;
    let mut status = desired.status.clone();
    status.refused = None;
    let found = observed.user.as_ref();
    if desired.deleting {
        return Plan {
            actions: found
                .map(|u| Write::Delete {
                    id: u.id.clone(),
                    user_id: u.user_id.clone(),
                })
                .into_iter()
                .collect(),
            status,
            outcome: Outcome::Reconciling {
                reason: "Deleting".into(),
                message: "deleting the user from the portal".into(),
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
    // A refusal that named a role or team not in the portal yet is retried, not held.
    let recorded =
        desired.status.refused.as_ref().filter(|r| {
            Some(r.generation) == desired.id.generation && !r.waits_for_another_object()
        });
    let Some(user) = found else {
        match recorded {
            // Retried as soon as a licence of the type is free.
            Some(refusal)
                if short_of_licenses(refusal) && observed.free_licenses.unwrap_or(0) <= 0 =>
            {
                return waiting_for_license(desired, status, refusal);
            }
            Some(refusal) if !short_of_licenses(refusal) => {
                status.refused = Some(refusal.clone());
                return quiet(refusal.outcome(), status);
            }
            _ => {}
        }
        status.observed_resend_activation = spec.resend_activation;
        return Plan {
            actions: vec![Write::Create {
                account,
                user: Box::new(create_body(desired)),
                idempotency_key: format!("{}/create", desired.id.uid),
            }],
            status,
            outcome: Outcome::Reconciling {
                reason: "Creating".into(),
                message: format!("creating user {}", spec.user_id),
            },
            requeue_after: None,
        };
    };
    record(&mut status, user);
    if let Some(refusal) = recorded {
        status.refused = Some(refusal.clone());
        return quiet(refusal.outcome(), status);
    }
    let mut actions = Vec::new();
    let (patch, fields) = changes(spec, user);
    if !fields.is_empty() {
        actions.push(Write::Update {
            id: user.id.clone(),
            changes: Box::new(patch),
            fields,
            version: user.version,
        });
    }
    if spec.invite && user.state == UserState::Prepared && !spec.disabled {
        actions.push(Write::SendInvitation {
            account,
            id: user.id.clone(),
            idempotency_key: format!("{}/invite", desired.id.uid),
        });
    }
    let resend_wanted = spec.resend_activation > desired.status.observed_resend_activation;
    let resendable = matches!(
        user.state,
        UserState::Invited | UserState::ActivationExpired
    );
    if resend_wanted && resendable {
        actions.push(Write::ResendActivation {
            id: user.id.clone(),
            idempotency_key: format!("{}/resend/{}", desired.id.uid, spec.resend_activation),
        });
    }
    // A resend asked of a user with nothing to resend is served all the same.
    status.observed_resend_activation = spec
        .resend_activation
        .max(desired.status.observed_resend_activation);
    if !actions.is_empty() {
        return Plan {
            actions,
            status,
            outcome: Outcome::Reconciling {
                reason: "Updating".into(),
                message: format!("bringing user {} in line with the spec", spec.user_id),
            },
            requeue_after: None,
        };
    }
    let expires_in = user
        .activation_expires_at
        .as_deref()
        .and_then(parse_millis)
        .map(|at| Duration::from_millis((at - now_millis).max(0) as u64));
    match user.state {
        UserState::Prepared => quiet(
            Outcome::Ready {
                reason: "Prepared".into(),
                message: format!(
                    "{} holds a {} licence and is kept prepared; set spec.invite: true to send the invitation",
                    user.user_id, user.license_type
                ),
            },
            status,
        ),
        UserState::Invited => Plan {
            actions: Vec::new(),
            outcome: Outcome::Ready {
                reason: "ActivationPending".into(),
                message: format!(
                    "{} to {}; the temporary password expires at {}",
                    // A mobile user ID gets a text, which the portal queues for its SMS relay.
                    if user.user_id.starts_with('+') {
                        "activation message queued as a text"
                    } else {
                        "activation email sent"
                    },
                    user.user_id,
                    user.activation_expires_at.as_deref().unwrap_or("an unknown time")
                ),
            },
            status,
            requeue_after: expires_in,
        },
        UserState::ActivationExpired => quiet(
            Outcome::Stalled {
                reason: "ActivationExpired".into(),
                message: "the temporary password expired before it was used; raise spec.resendActivation by one to send a new one".into(),
            },
            status,
        ),
        UserState::Active => quiet(
            Outcome::Ready {
                reason: "Active".into(),
                message: format!("{} has activated their account", user.user_id),
            },
            status,
        ),
        UserState::Disabled => quiet(
            Outcome::Ready {
                reason: "Disabled".into(),
                message: format!("{} is disabled and keeps its licence", user.user_id),
            },
            status,
        ),
    }
}

impl Kind for User {
    type Status = UserStatus;
    type Observed = Observed;
    type Spec = UserSpec;
    type Write = Write;
    type Executed = Observed;

    const OBSERVE: &'static str = "find the user";

    fn spec(&self) -> &UserSpec {
        &self.spec
    }
    fn status(&self) -> Option<&UserStatus> {
        self.status.as_ref()
    }
    fn account_ref(&self) -> Option<&crate::crd::AccountRef> {
        Some(&self.spec.account_ref)
    }
    fn refused(status: &mut UserStatus) -> &mut Option<Refusal> {
        &mut status.refused
    }
    async fn observe_under(
        portal: &impl PortalApi,
        account: &str,
        object: &Self,
    ) -> PortalResult<Observed> {
        let user = portal.user_by_ref(account, &reference(object)).await?;
        // Only a user still to be created needs to know whether a licence is free.
        let free_licenses = match &user {
            Some(_) => None,
            None => portal
                .subscriptions(account)
                .await?
                .into_iter()
                .find(|s| s.license_type == object.spec.license_type)
                .map(|s| s.free),
        };
        Ok(Observed {
            user,
            free_licenses,
        })
    }
    fn plan(input: &Input<'_, Self>, observed: &Observed, now_millis: i64) -> Plan {
        plan(&Desired::of(input), observed, now_millis)
    }
    fn refusal_outcome(
        &self,
        refusal: &Refusal,
        status: &mut UserStatus,
    ) -> (Outcome, Option<Duration>) {
        if short_of_licenses(refusal) {
            license_shortage(self.spec.license_type, refusal, status)
        } else {
            refusal.settled()
        }
    }
    async fn execute(
        portal: &impl PortalApi,
        plan: &Plan,
        mut observed: Observed,
    ) -> Result<Observed, ExecuteError> {
        for action in &plan.actions {
            let user = match action {
                Write::Create {
                    account,
                    user,
                    idempotency_key,
                } => Some(
                    portal
                        .create_user(account, user, idempotency_key)
                        .await
                        .map_err(ExecuteError::new("create the user"))?,
                ),
                Write::Update {
                    id,
                    changes,
                    version,
                    ..
                } => Some(
                    portal
                        .update_user(id, changes, *version)
                        .await
                        .map_err(ExecuteError::new("change the user"))?,
                ),
                Write::SendInvitation {
                    account,
                    id,
                    idempotency_key,
                } => portal
                    .send_user_invitations(account, std::slice::from_ref(id), idempotency_key)
                    .await
                    .map_err(ExecuteError::new("send the user's invitation"))?
                    .into_iter()
                    .next(),
                Write::ResendActivation {
                    id,
                    idempotency_key,
                } => Some(
                    portal
                        .resend_user_activation(id, idempotency_key)
                        .await
                        .map_err(ExecuteError::new("send a new activation email"))?,
                ),
                Write::Delete { id, .. } => {
                    portal
                        .delete_user(id)
                        .await
                        .map_err(ExecuteError::new("delete the user"))?;
                    None
                }
            };
            observed.user = user;
        }
        Ok(observed)
    }
    fn mark(write: &Write) -> Mark {
        match write {
            Write::Create { .. } => Mark::Add,
            Write::Update { .. }
            | Write::SendInvitation { .. }
            | Write::ResendActivation { .. } => Mark::Change,
            Write::Delete { .. } => Mark::Remove,
        }
    }
    fn after(input: &Input<'_, Self>, executed: &Observed, now_millis: i64) -> Plan {
        plan(&Desired::of(input), executed, now_millis)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::time::format_millis;
    use crate::crd::AccountRef;
    use crate::domain::{EffectiveService, Language, UserPermission};
    use crate::reconcile::{AccountState, Refs};

    const NOW: i64 = 1_795_000_000_000;

    fn spec() -> UserSpec {
        UserSpec {
            account_ref: AccountRef {
                name: "contoso".into(),
            },
            user_id: "ann@contoso.example".into(),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            extra: BTreeMap::new(),
            license_type: LicenseType::Standard,
            mobile_number: Some("+44 7700 900123".into()),
            landline_number: None,
            linked_number: None,
            mex: false,
            display_numbers: Vec::new(),
            country_code: None,
            permissions: vec![UserPermission::VoicemailManage],
            roles: vec!["agent ".into()],
            teams: Vec::new(),
            language: Language::En,
            time_zone: Some("Europe/London".into()),
            invite: true,
            disabled: false,
            resend_activation: 0,
        }
    }

    fn portal(state: UserState) -> UserView {
        UserView {
            id: "u-1".into(),
            account_id: "acc-1".into(),
            user_id: "ann@contoso.example".into(),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            extra: BTreeMap::new(),
            license_type: LicenseType::Standard,
            mobile_number: Some("+44 7700 900123".into()),
            landline_number: None,
            linked_number: None,
            mex: false,
            display_numbers: Vec::new(),
            country_code: None,
            permissions: vec![UserPermission::VoicemailManage],
            roles: vec!["Agent".into()],
            teams: Vec::new(),
            language: Language::En,
            time_zone: Some("Europe/London".into()),
            state,
            waiting_for_license: false,
            provisioned_by: crate::api::Provisioner::Api,
            activation_expires_at: Some(format_millis(NOW + 60_000)),
            invited_at: None,
            activated_at: None,
            activation_sends: 1,
            effective: EffectiveService::default(),
            external_ref: Some("User/team/ann/uid-1".into()),
            created_at: format_millis(NOW),
            version: 3,
        }
    }

    fn run(spec: &UserSpec, status: &UserStatus, observed: Observed) -> Plan {
        plan(
            &Desired {
                id: Identity {
                    namespace: "team",
                    name: "ann",
                    uid: "uid-1",
                    generation: Some(2),
                },
                spec,
                status,
                deleting: false,
                refs: Refs {
                    account: AccountState::Ready {
                        portal_id: "acc-1".into(),
                    },
                    ..Refs::default()
                },
            },
            &observed,
            NOW,
        )
    }

    fn found(state: UserState) -> Observed {
        Observed {
            user: Some(portal(state)),
            free_licenses: None,
        }
    }

    fn exhausted() -> UserStatus {
        UserStatus {
            refused: Some(Refusal {
                generation: 2,
                reason: "LicenseExhausted".into(),
                message: "create the user: no Standard licence is free on account acc-1: all 5 are assigned".into(),
            }),
            ..UserStatus::default()
        }
    }

    #[test]
    fn a_new_user_is_created_with_its_reference_and_nothing_else_is_planned() {
        let plan = run(&spec(), &UserStatus::default(), Observed::default());
        let [
            Write::Create {
                account,
                user,
                idempotency_key,
            },
        ] = &plan.actions[..]
        else {
            panic!("{:?}", plan.actions)
        };
        assert_eq!(account, "acc-1");
        assert_eq!(user.external_ref.as_deref(), Some("User/team/ann/uid-1"));
        assert!(user.invite);
        assert_eq!(idempotency_key, "uid-1/create");
    }

    #[test]
    fn a_licence_shortage_waits_for_a_free_licence_not_for_a_spec_change() {
        // (free licences observed, expected: retried?)
        for (free, retried) in [(None, false), (Some(0), false), (Some(1), true)] {
            let plan = run(
                &spec(),
                &exhausted(),
                Observed {
                    user: None,
                    free_licenses: free,
                },
            );
            assert_eq!(
                !plan.actions.is_empty(),
                retried,
                "free {free:?}: {:?}",
                plan.actions
            );
            if !retried {
                assert_eq!(plan.outcome.reason(), "LicenseExhausted");
                assert!(
                    plan.outcome.message().contains("Standard Subscription"),
                    "{}",
                    plan.outcome.message()
                );
                assert_eq!(plan.requeue_after, Some(WAIT_FOR_LICENSE));
                let license = plan.status.license.as_ref().unwrap();
                assert!(!license.assigned && license.reason.as_deref().unwrap().contains("all 5"));
            }
        }
        // Any other refusal holds until the spec changes.
        let mut conflict = exhausted();
        conflict.refused.as_mut().unwrap().reason = "UserIdConflict".into();
        let plan = run(
            &spec(),
            &conflict,
            Observed {
                user: None,
                free_licenses: Some(3),
            },
        );
        assert!(plan.actions.is_empty());
        assert_eq!(plan.outcome.reason(), "UserIdConflict");
    }

    #[test]
    fn phases_follow_the_portal_and_a_settled_user_plans_nothing() {
        // (portal state, spec.invite, expected reason, expected writes)
        let cases = [
            (UserState::Prepared, false, "Prepared", 0),
            (UserState::Prepared, true, "Updating", 1),
            (UserState::Invited, true, "ActivationPending", 0),
            (UserState::ActivationExpired, true, "ActivationExpired", 0),
            (UserState::Active, true, "Active", 0),
        ];
        for (state, invite, reason, writes) in cases {
            let spec = UserSpec { invite, ..spec() };
            let plan = run(&spec, &UserStatus::default(), found(state));
            assert_eq!(plan.outcome.reason(), reason, "{state:?}");
            assert_eq!(plan.actions.len(), writes, "{state:?}: {:?}", plan.actions);
            assert_eq!(plan.status.license.as_ref().map(|l| l.assigned), Some(true));
        }
        let invited = run(&spec(), &UserStatus::default(), found(UserState::Invited));
        assert_eq!(
            invited.requeue_after,
            Some(Duration::from_secs(60)),
            "requeued at expiry"
        );
    }

    #[test]
    fn only_the_fields_that_differ_are_patched() {
        let spec = UserSpec {
            license_type: LicenseType::Premium,
            time_zone: None,
            mobile_number: Some(" +44 7700 900123".into()),
            disabled: true,
            ..spec()
        };
        let plan = run(&spec, &UserStatus::default(), found(UserState::Active));
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
        assert_eq!(*version, 3);
        assert_eq!(fields, &["licenseType", "timeZone", "disable the user"]);
        assert_eq!(changes.time_zone, Patch::Null, "cleared");
        assert!(
            changes.mobile_number.is_absent(),
            "the same number written with a space"
        );
    }

    #[test]
    fn raising_the_counter_resends_once_and_deleting_says_it_cannot_be_undone() {
        let spec = UserSpec {
            resend_activation: 1,
            ..spec()
        };
        let plan = run(
            &spec,
            &UserStatus::default(),
            found(UserState::ActivationExpired),
        );
        assert!(
            matches!(&plan.actions[..], [Write::ResendActivation { idempotency_key, .. }] if idempotency_key == "uid-1/resend/1")
        );
        let again = run(&spec, &plan.status, found(UserState::Invited));
        assert!(again.actions.is_empty(), "{:?}", again.actions);
        let delete = Write::Delete {
            id: "u-1".into(),
            user_id: "ann@contoso.example".into(),
        };
        assert_eq!(
            delete.to_string(),
            "delete user ann@contoso.example (this cannot be undone)"
        );
    }

    #[test]
    fn a_user_waiting_for_a_licence_says_so_in_its_status() {
        let mut user = portal(UserState::Prepared);
        user.waiting_for_license = true;
        let mut status = UserStatus::default();
        record(&mut status, &user);
        let license = status.license.clone().expect("recorded");
        assert!(!license.assigned);
        assert!(
            license
                .reason
                .is_some_and(|r| r.contains("waiting for a free Standard licence")),
        );
        user.waiting_for_license = false;
        record(&mut status, &user);
        assert!(
            status
                .license
                .is_some_and(|l| l.assigned && l.reason.is_none())
        );
    }
}
