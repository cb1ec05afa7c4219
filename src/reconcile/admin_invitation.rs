//! AdminInvitation: what to do, decided from the object, the portal's invitation and the time.
//!
//! Each issued invitation is one portal invitation whose `externalRef` names this object and
//! the attempt (`AdminInvitation/{namespace}/{name}/{uid}/{attempt}`), created with the
//! idempotency key `{uid}/{attempt}`: a crash between the portal write and the status write is
//! found again by reference, never created twice. Expiry is requeued exactly at `expiresAt`.

use std::fmt;
use std::time::Duration;

use crate::api::time::parse_millis;
use crate::api::{CreateInvitation, ExternalRef};
use crate::api::{InvitationState, InvitationView};
use crate::crd::{
    AdminInvitation, AdminInvitationPhase, AdminInvitationSpec, AdminInvitationStatus, Delivery,
    Reissue, SecretRef,
};
use crate::domain::Role;
use crate::portal_client::{PortalApi, PortalResult};

use super::driver::{Input, Kind, Mark};
pub use super::refs::AccountState;
use super::refs::Refs;
use super::{ExecuteError, Outcome, Refusal};

pub type Desired<'a> = super::Desired<'a, AdminInvitationSpec, AdminInvitationStatus>;

/// The externalRef of the object's current attempt.
pub fn current_ref(object: &AdminInvitation) -> String {
    let id = super::Identity::of(&object.metadata);
    let attempt = object.status.as_ref().map_or(1, |s| s.attempts.max(1));
    external_ref(id.namespace, id.name, id.uid, attempt)
}

/// What the portal holds for the current attempt (found by its externalRef).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub invitation: Option<InvitationView>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Invite (attempt `attempt`); with Link delivery the executor writes the returned link to
    /// the Secret named in the status.
    Create {
        account: String,
        invitation: CreateInvitation,
        idempotency_key: String,
        attempt: i32,
    },
    UpdateRoles {
        id: String,
        roles: Vec<Role>,
        version: i64,
    },
    Revoke {
        id: String,
    },
    /// Issue a new link for the same invitation (the old one stops working).
    Resend {
        id: String,
        idempotency_key: String,
    },
}

pub type Plan = super::Plan<Write, AdminInvitationStatus>;

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Create {
                invitation,
                attempt,
                ..
            } => {
                write!(
                    f,
                    "invite {} as {} by {} (expires after {})",
                    invitation.email,
                    roles_text(invitation.roles.as_deref().unwrap_or_default()),
                    invitation.delivery.unwrap_or_default(),
                    invitation.expires_after.as_deref().unwrap_or_default(),
                )?;
                if *attempt > 1 {
                    write!(f, ", attempt {attempt}")?;
                }
                Ok(())
            }
            Write::UpdateRoles { roles, .. } => write!(
                f,
                "change the pending invitation's roles to {}",
                roles_text(roles)
            ),
            Write::Revoke { id } => write!(f, "revoke pending invitation {id}"),
            Write::Resend { .. } => f.write_str("issue a new link (the stored one is missing)"),
        }
    }
}

/// The portal reference of one attempt.
pub fn external_ref(namespace: &str, name: &str, uid: &str, attempt: i32) -> String {
    ExternalRef::AdminInvitation {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        attempt,
    }
    .to_string()
}

/// The Secret that holds a Link invitation's link.
pub fn link_secret_name(name: &str) -> String {
    format!("{name}-invitation-link")
}

use super::WAIT_FOR_ACCOUNT;

pub fn plan(desired: &Desired, observed: &Observed, now_millis: i64) -> Plan {
    let attempt = desired.status.attempts.max(1);
    let mut status = desired.status.clone();
    status.attempts = attempt;
    status.refused = None;
    let invitation = observed.invitation.as_ref();
    if desired.deleting {
        // A pending (or expired, still listed) invitation is withdrawn; an accepted one leaves
        // the admin in place; one already gone needs nothing.
        let actions = match invitation {
            Some(found)
                if matches!(
                    found.state,
                    InvitationState::Pending | InvitationState::Expired
                ) =>
            {
                vec![Write::Revoke {
                    id: found.id.clone(),
                }]
            }
            _ => Vec::new(),
        };
        return Plan {
            actions,
            outcome: Outcome::Reconciling {
                reason: "Deleting".into(),
                message: "cleaning up in the portal".into(),
            },
            status,
            requeue_after: None,
        };
    }
    let waiting = |reason: &str, message: String, status: AdminInvitationStatus| Plan {
        actions: Vec::new(),
        outcome: Outcome::Reconciling {
            reason: reason.into(),
            message,
        },
        status,
        requeue_after: Some(WAIT_FOR_ACCOUNT),
    };
    let account = match &desired.refs.account {
        AccountState::Missing => {
            return waiting(
                "WaitingForAccount",
                format!(
                    "Account {} does not exist yet",
                    desired.spec.account_ref.name
                ),
                status,
            );
        }
        AccountState::NotReady => {
            return waiting(
                "WaitingForAccount",
                format!(
                    "Account {} is not in the portal yet",
                    desired.spec.account_ref.name
                ),
                status,
            );
        }
        AccountState::NotDelegated => {
            return Plan {
                actions: Vec::new(),
                outcome: Outcome::Stalled {
                    reason: "AccountNotDelegated".into(),
                    message: format!(
                        "Account {} does not list namespace {} in spec.namespaces; nothing was sent to the portal",
                        desired.spec.account_ref.name, desired.id.namespace
                    ),
                },
                status,
                requeue_after: None,
            };
        }
        AccountState::Ready { portal_id } => portal_id.clone(),
    };
    status.observed_generation = desired.id.generation;
    if desired.spec.delivery == Delivery::Link {
        status.link_secret_ref = Some(SecretRef {
            name: link_secret_name(desired.id.name),
        });
    }
    // A spec the portal refused is not sent again until it changes.
    let refused = super::refused_at(desired.status.refused.as_ref(), desired.id.generation);
    let Some(found) = invitation else {
        if let Some(outcome) = refused {
            status.refused = desired.status.refused.clone();
            return Plan {
                actions: Vec::new(),
                outcome,
                status,
                requeue_after: None,
            };
        }
        return create(desired, account, attempt, status, "Inviting");
    };
    status.portal_id = Some(found.id.clone());
    status.sent_at = Some(found.created_at.clone());
    status.expires_at = Some(found.expires_at.clone());
    match found.state {
        InvitationState::Pending => {
            status.phase = Some(AdminInvitationPhase::Pending);
            let mut actions = Vec::new();
            if refused.is_none() && !same_roles(&found.roles, &desired.spec.roles) {
                actions.push(Write::UpdateRoles {
                    id: found.id.clone(),
                    roles: desired.spec.roles.clone(),
                    version: found.version,
                });
            }
            if desired.spec.delivery == Delivery::Link && !desired.refs.link_stored {
                actions.push(Write::Resend {
                    id: found.id.clone(),
                    idempotency_key: format!("{}/{attempt}/resend/{}", desired.id.uid, found.sends),
                });
            }
            // A Link invitation is sent by whoever shares the link, not by the portal.
            let mut message = match found.delivery {
                crate::api::Delivery::Link => format!(
                    "invitation link for {} created, to be shared; it expires at {}",
                    found.email, found.expires_at
                ),
                _ => format!(
                    "invitation sent to {}; it expires at {}",
                    found.email, found.expires_at
                ),
            };
            let mut reason = "Pending".to_owned();
            if let Some(failure) = &found.last_failure {
                // Still pending and as specified, but the invitee needs the seeds' remedy.
                reason = failure.reason.clone();
                message.push_str(&format!(
                    ". Last attempt to accept failed ({}): {}",
                    failure.reason, failure.message
                ));
            }
            let requeue_after = parse_millis(&found.expires_at)
                .map(|expires| Duration::from_millis((expires - now_millis).max(0) as u64));
            if refused.is_some() {
                status.refused = desired.status.refused.clone();
            }
            Plan {
                outcome: if let Some(outcome) = refused {
                    outcome
                } else if actions.is_empty() {
                    Outcome::Ready { reason, message }
                } else {
                    Outcome::Reconciling {
                        reason: "Updating".into(),
                        message: "bringing the pending invitation in line with the spec".into(),
                    }
                },
                actions,
                status,
                requeue_after,
            }
        }
        InvitationState::Accepted => {
            status.phase = Some(AdminInvitationPhase::Accepted);
            status.accepted_at = found.accepted_at.clone();
            status.accepted_by = found.accepted_by.clone();
            Plan {
                actions: Vec::new(),
                outcome: Outcome::Ready {
                    reason: "Accepted".into(),
                    message: format!(
                        "accepted at {}",
                        found.accepted_at.as_deref().unwrap_or("an unknown time")
                    ),
                },
                status,
                requeue_after: None,
            }
        }
        InvitationState::Expired => {
            let reissues_used = attempt - 1;
            if desired.spec.reissue == Reissue::OnExpiry
                && reissues_used < desired.spec.max_reissues
            {
                let mut status = status;
                status.portal_id = None;
                return create(desired, account, attempt + 1, status, "Reissuing");
            }
            status.phase = Some(AdminInvitationPhase::Expired);
            Plan {
                actions: Vec::new(),
                outcome: Outcome::Stalled {
                    reason: "Expired".into(),
                    message: format!(
                        "the invitation expired at {} without being accepted; an expired invitation must be recreated: delete and re-apply this object, or set spec.reissue: OnExpiry",
                        found.expires_at
                    ),
                },
                status,
                requeue_after: None,
            }
        }
        InvitationState::Revoked => {
            status.phase = Some(AdminInvitationPhase::Revoked);
            Plan {
                actions: Vec::new(),
                outcome: Outcome::Stalled {
                    reason: "Revoked".into(),
                    message: "the invitation was revoked in the portal; delete and re-apply this object to invite again".into(),
                },
                status,
                requeue_after: None,
            }
        }
    }
}

fn create(
    desired: &Desired,
    account: String,
    attempt: i32,
    mut status: AdminInvitationStatus,
    reason: &str,
) -> Plan {
    status.attempts = attempt;
    let invitation = CreateInvitation {
        email: desired.spec.email.clone(),
        first_name: desired.spec.first_name.clone(),
        last_name: desired.spec.last_name.clone(),
        roles: Some(desired.spec.roles.clone()),
        delivery: Some(desired.spec.delivery),
        expires_after: Some(desired.spec.expires_after.clone()),
        external_ref: Some(external_ref(
            desired.id.namespace,
            desired.id.name,
            desired.id.uid,
            attempt,
        )),
    };
    Plan {
        actions: vec![Write::Create {
            account,
            invitation,
            idempotency_key: format!("{}/{attempt}", desired.id.uid),
            attempt,
        }],
        outcome: Outcome::Reconciling {
            reason: reason.into(),
            message: format!("sending invitation {attempt} to {}", desired.spec.email),
        },
        status,
        requeue_after: Some(Duration::ZERO),
    }
}

fn same_roles(a: &[Role], b: &[Role]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

/// What carrying out a plan produced: the portal's invitation as it now stands, and the link
/// when one was just issued (the only time the portal shows it).
#[derive(Debug, Default)]
pub struct Executed {
    pub observed: Observed,
    pub link: Option<String>,
}

impl Kind for AdminInvitation {
    type Status = AdminInvitationStatus;
    type Observed = Observed;
    type Spec = AdminInvitationSpec;
    type Write = Write;
    type Executed = Executed;

    const OBSERVE: &'static str = "find the portal invitation";

    fn spec(&self) -> &AdminInvitationSpec {
        &self.spec
    }
    fn status(&self) -> Option<&AdminInvitationStatus> {
        self.status.as_ref()
    }
    fn account_ref(&self) -> Option<&crate::crd::AccountRef> {
        Some(&self.spec.account_ref)
    }
    /// Only a pending Link invitation's link matters; once accepted or expired, none is read.
    fn link_matters(&self) -> bool {
        self.spec.delivery == Delivery::Link
            && matches!(
                self.status.as_ref().and_then(|s| s.phase),
                None | Some(AdminInvitationPhase::Pending)
            )
    }
    fn refused(status: &mut AdminInvitationStatus) -> &mut Option<Refusal> {
        &mut status.refused
    }
    /// The invitation of the object's current attempt, by its externalRef.
    async fn observe_under(
        portal: &impl PortalApi,
        account: &str,
        object: &Self,
    ) -> PortalResult<Observed> {
        Ok(Observed {
            invitation: portal
                .invitation_by_ref(account, &current_ref(object))
                .await?,
        })
    }
    /// The invitation recorded in the status, or, when the status was never written (a crash
    /// after the create), the current attempt's invitation found by reference.
    async fn observe_for_cleanup(
        portal: &impl PortalApi,
        object: &Self,
        refs: &Refs,
    ) -> PortalResult<Observed> {
        let recorded = object.status.as_ref().and_then(|s| s.portal_id.as_deref());
        let invitation = match (recorded, refs.account_portal_id.as_deref()) {
            (Some(id), _) => portal.invitation(id).await?,
            (None, Some(account)) => {
                Self::observe_under(portal, account, object)
                    .await?
                    .invitation
            }
            (None, None) => None,
        };
        Ok(Observed { invitation })
    }
    fn plan(input: &Input<'_, Self>, observed: &Observed, now_millis: i64) -> Plan {
        plan(&Desired::of(input), observed, now_millis)
    }
    /// Carries out `plan` through the portal, stopping at the first failure.
    async fn execute(
        portal: &impl PortalApi,
        plan: &Plan,
        mut observed: Observed,
    ) -> Result<Executed, ExecuteError> {
        let mut link = None;
        for action in &plan.actions {
            match action {
                Write::Create {
                    account,
                    invitation,
                    idempotency_key,
                    ..
                } => {
                    let mut created = portal
                        .create_invitation(account, invitation, idempotency_key)
                        .await
                        .map_err(ExecuteError::new("create the portal invitation"))?;
                    link = created.link.take();
                    observed.invitation = Some(created);
                }
                Write::UpdateRoles { id, roles, version } => {
                    let updated = portal
                        .update_invitation_roles(id, roles, *version)
                        .await
                        .map_err(ExecuteError::new("change the pending invitation's roles"))?;
                    observed.invitation = Some(updated);
                }
                Write::Revoke { id } => {
                    portal
                        .revoke_invitation(id)
                        .await
                        .map_err(ExecuteError::new("revoke the portal invitation"))?;
                    observed.invitation = None;
                }
                Write::Resend {
                    id,
                    idempotency_key,
                } => {
                    let mut resent = portal
                        .resend_invitation(id, idempotency_key)
                        .await
                        .map_err(ExecuteError::new("issue a new invitation link"))?;
                    link = resent.link.take();
                    observed.invitation = Some(resent);
                }
            }
        }
        Ok(Executed { observed, link })
    }
    fn after(input: &Input<'_, Self>, executed: &Executed, now_millis: i64) -> Plan {
        plan(&Desired::of(input), &executed.observed, now_millis)
    }
    fn mark(write: &Write) -> Mark {
        match write {
            Write::Create { .. } => Mark::Add,
            Write::UpdateRoles { .. } | Write::Resend { .. } => Mark::Change,
            Write::Revoke { .. } => Mark::Remove,
        }
    }
    fn take_link(executed: &mut Executed) -> Option<String> {
        executed.link.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AcceptFailure, Delivery as PortalDelivery};
    use crate::crd::AccountRef;
    use crate::reconcile::Identity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const NOW: i64 = 1_795_000_000_000;

    fn spec() -> AdminInvitationSpec {
        AdminInvitationSpec {
            account_ref: AccountRef {
                name: "contoso".into(),
            },
            email: "ann@contoso.example".into(),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            roles: vec![Role::AccountOwner],
            delivery: Delivery::Email,
            expires_after: "48h".into(),
            reissue: Reissue::Never,
            max_reissues: 3,
        }
    }

    fn portal(state: InvitationState) -> InvitationView {
        InvitationView {
            id: "inv-1".into(),
            account_id: "acc-1".into(),
            email: "ann@contoso.example".into(),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            roles: vec![Role::AccountOwner],
            delivery: PortalDelivery::Email,
            state,
            external_ref: Some(external_ref("team-a", "ann", "uid-1", 1)),
            created_at: crate::api::time::format_millis(NOW - 3_600_000),
            expires_at: crate::api::time::format_millis(NOW + 7_200_000),
            accepted_at: (state == InvitationState::Accepted)
                .then(|| crate::api::time::format_millis(NOW - 60_000)),
            accepted_by: (state == InvitationState::Accepted).then(|| "admin-9".into()),
            revoked_at: None,
            last_failure: None,
            sends: 1,
            version: 1,
            link: None,
            link_redacted: None,
        }
    }

    struct Case {
        name: &'static str,
        spec: AdminInvitationSpec,
        status: AdminInvitationStatus,
        deleting: bool,
        account: AccountState,
        found: Option<InvitationView>,
        link_stored: bool,
    }

    fn case(name: &'static str) -> Case {
        Case {
            name,
            spec: spec(),
            status: AdminInvitationStatus::default(),
            deleting: false,
            account: AccountState::Ready {
                portal_id: "acc-1".into(),
            },
            found: None,
            link_stored: true,
        }
    }

    fn run(case: &Case) -> Plan {
        let desired = Desired {
            id: Identity {
                namespace: "team-a",
                name: "ann",
                uid: "uid-1",
                generation: Some(1),
            },
            spec: &case.spec,
            status: &case.status,
            deleting: case.deleting,
            refs: Refs {
                account: case.account.clone(),
                link_stored: case.link_stored,
                ..Refs::default()
            },
        };
        plan(
            &desired,
            &Observed {
                invitation: case.found.clone(),
            },
            NOW,
        )
    }

    fn reason(plan: &Plan) -> (&'static str, &str) {
        match &plan.outcome {
            Outcome::Ready { reason, .. } => ("Ready", reason),
            Outcome::Reconciling { reason, .. } => ("Reconciling", reason),
            Outcome::Stalled { reason, .. } => ("Stalled", reason),
        }
    }

    #[test]
    fn outcomes_per_situation() {
        let table: Vec<(Case, (&str, &str), usize)> = vec![
            (case("new object: invite"), ("Reconciling", "Inviting"), 1),
            (
                Case {
                    account: AccountState::NotDelegated,
                    ..case("undelegated account: stall, send nothing")
                },
                ("Stalled", "AccountNotDelegated"),
                0,
            ),
            (
                Case {
                    account: AccountState::Missing,
                    ..case("missing account: wait")
                },
                ("Reconciling", "WaitingForAccount"),
                0,
            ),
            (
                Case {
                    account: AccountState::NotReady,
                    ..case("account not in portal yet: wait")
                },
                ("Reconciling", "WaitingForAccount"),
                0,
            ),
            (
                Case {
                    found: Some(portal(InvitationState::Pending)),
                    ..case("pending and matching: ready, silent")
                },
                ("Ready", "Pending"),
                0,
            ),
            (
                Case {
                    found: Some(portal(InvitationState::Accepted)),
                    ..case("accepted: ready")
                },
                ("Ready", "Accepted"),
                0,
            ),
            (
                Case {
                    found: Some(portal(InvitationState::Expired)),
                    ..case("expired, no reissue: not ready")
                },
                ("Stalled", "Expired"),
                0,
            ),
            (
                Case {
                    found: Some(portal(InvitationState::Revoked)),
                    ..case("revoked elsewhere: not ready")
                },
                ("Stalled", "Revoked"),
                0,
            ),
        ];
        for (case, expected, actions) in table {
            let plan = run(&case);
            assert_eq!(reason(&plan), expected, "{}", case.name);
            assert_eq!(
                plan.actions.len(),
                actions,
                "{}: {:?}",
                case.name,
                plan.actions
            );
        }
    }

    #[test]
    fn create_is_idempotent_per_attempt_and_names_the_object() {
        let plan = run(&case("new"));
        let Write::Create {
            invitation,
            idempotency_key,
            attempt,
            account,
        } = &plan.actions[0]
        else {
            panic!("{:?}", plan.actions);
        };
        assert_eq!(
            (idempotency_key.as_str(), *attempt, account.as_str()),
            ("uid-1/1", 1, "acc-1")
        );
        assert_eq!(
            invitation.external_ref.as_deref(),
            Some("AdminInvitation/team-a/ann/uid-1/1")
        );
        assert_eq!(invitation.expires_after.as_deref(), Some("48h"));
        assert_eq!(
            plan.requeue_after,
            Some(Duration::ZERO),
            "look again at once to record the result"
        );
    }

    #[test]
    fn a_pending_invitation_is_requeued_exactly_at_its_expiry() {
        let plan = run(&Case {
            found: Some(portal(InvitationState::Pending)),
            ..case("pending")
        });
        assert_eq!(plan.requeue_after, Some(Duration::from_millis(7_200_000)));
        assert_eq!(plan.status.phase, Some(AdminInvitationPhase::Pending));
        assert_eq!(plan.status.portal_id.as_deref(), Some("inv-1"));
    }

    #[test]
    fn role_changes_while_pending_update_the_portal_invitation() {
        let changed = AdminInvitationSpec {
            roles: vec![Role::ServiceContributor, Role::ServiceViewer],
            ..spec()
        };
        let plan = run(&Case {
            spec: changed,
            found: Some(portal(InvitationState::Pending)),
            ..case("roles changed")
        });
        assert_eq!(
            plan.actions,
            [Write::UpdateRoles {
                id: "inv-1".into(),
                roles: vec![Role::ServiceContributor, Role::ServiceViewer],
                version: 1
            }]
        );
        // The same roles in another order change nothing.
        let same = AdminInvitationSpec {
            roles: vec![Role::AccountOwner, Role::AccountOwner],
            ..spec()
        };
        assert!(
            run(&Case {
                spec: same,
                found: Some(portal(InvitationState::Pending)),
                ..case("same")
            })
            .actions
            .is_empty()
        );
    }

    #[test]
    fn expiry_reissues_up_to_max_reissues_with_a_new_reference() {
        let spec = AdminInvitationSpec {
            reissue: Reissue::OnExpiry,
            max_reissues: 2,
            ..spec()
        };
        let status = |attempts| AdminInvitationStatus {
            attempts,
            ..AdminInvitationStatus::default()
        };
        let second = run(&Case {
            spec: spec.clone(),
            status: status(1),
            found: Some(portal(InvitationState::Expired)),
            ..case("reissue 1")
        });
        let Write::Create {
            idempotency_key,
            invitation,
            ..
        } = &second.actions[0]
        else {
            panic!()
        };
        assert_eq!(idempotency_key, "uid-1/2");
        assert_eq!(
            invitation.external_ref.as_deref(),
            Some("AdminInvitation/team-a/ann/uid-1/2")
        );
        assert_eq!(second.status.attempts, 2);
        let third = run(&Case {
            spec: spec.clone(),
            status: status(2),
            found: Some(portal(InvitationState::Expired)),
            ..case("reissue 2")
        });
        assert_eq!(third.actions.len(), 1);
        let spent = run(&Case {
            spec,
            status: status(3),
            found: Some(portal(InvitationState::Expired)),
            ..case("spent")
        });
        assert!(spent.actions.is_empty());
        assert_eq!(reason(&spent), ("Stalled", "Expired"));
    }

    #[test]
    fn deleting_revokes_pending_and_keeps_accepted() {
        let pending = run(&Case {
            deleting: true,
            found: Some(portal(InvitationState::Pending)),
            ..case("delete pending")
        });
        assert_eq!(pending.actions, [Write::Revoke { id: "inv-1".into() }]);
        assert!(pending.requeue_after.is_none());
        let accepted = run(&Case {
            deleting: true,
            found: Some(portal(InvitationState::Accepted)),
            ..case("delete accepted")
        });
        assert!(
            accepted.actions.is_empty(),
            "deleting an accepted invitation removes nothing"
        );
        assert!(accepted.requeue_after.is_none());
        let gone = run(&Case {
            deleting: true,
            ..case("delete, gone upstream")
        });
        assert!(
            gone.actions.is_empty() && gone.requeue_after.is_none(),
            "cleanup tolerates an upstream object already gone"
        );
        let undelegated = run(&Case {
            deleting: true,
            account: AccountState::NotDelegated,
            ..case("delete undelegated")
        });
        assert!(
            undelegated.actions.is_empty() && undelegated.requeue_after.is_none(),
            "deletion never waits on delegation"
        );
    }

    #[test]
    fn a_failed_acceptance_shows_its_remedy_while_pending() {
        let mut found = portal(InvitationState::Pending);
        found.last_failure = Some(AcceptFailure {
            reason: "WrongTenant".into(),
            message: "Sign out of all Microsoft accounts, or open the invitation link in a private browsing window".into(),
            at: crate::api::time::format_millis(NOW),
        });
        let plan = run(&Case {
            found: Some(found),
            ..case("wrong tenant")
        });
        let Outcome::Ready { reason, message } = &plan.outcome else {
            panic!("{:?}", plan.outcome)
        };
        assert_eq!(reason, "WrongTenant");
        assert!(
            message.contains("(WrongTenant): Sign out of all Microsoft accounts"),
            "{message}"
        );
    }

    #[test]
    fn link_delivery_names_its_secret_never_the_link() {
        let spec = AdminInvitationSpec {
            delivery: Delivery::Link,
            ..spec()
        };
        // What the portal answers right after issuing the link carries it: the status and the
        // outcome made from that answer must not.
        let secret = "tok_3f1d9c0a7b_never_in_status";
        let issued = InvitationView {
            delivery: PortalDelivery::Link,
            link: Some(format!(
                "http://127.0.0.1:8080/invitations/accept#token={secret}"
            )),
            ..portal(InvitationState::Pending)
        };
        for found in [None, Some(issued)] {
            let plan = run(&Case {
                spec: spec.clone(),
                found,
                ..case("link")
            });
            assert_eq!(
                plan.status.link_secret_ref,
                Some(SecretRef {
                    name: "ann-invitation-link".into()
                })
            );
            let text =
                serde_json::to_string(&plan.status).unwrap() + &format!("{:?}", plan.outcome);
            // The message never echoes what it guards.
            assert!(
                !text.contains(secret) && !text.contains("accept#token"),
                "the link leaked into the status or the outcome"
            );
        }
    }

    #[test]
    fn conditions_keep_their_transition_time_when_nothing_changes() {
        let earlier = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
        let outcome = Outcome::Ready {
            reason: "Pending".into(),
            message: "m".into(),
        };
        let first = outcome.conditions(&[], Some(1), &earlier);
        let second = outcome.conditions(&first, Some(1), &later);
        assert_eq!(first, second, "a steady state writes the same conditions");
        let stalled = Outcome::Stalled {
            reason: "AccountNotDelegated".into(),
            message: "x".into(),
        }
        .conditions(&second, Some(2), &later);
        let ready = stalled.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), &ready.last_transition_time),
            ("False", &later)
        );
        assert_eq!(
            stalled
                .iter()
                .find(|c| c.type_ == "Stalled")
                .unwrap()
                .status,
            "True"
        );
    }

    fn stalled_at(generation: i64) -> AdminInvitationStatus {
        AdminInvitationStatus {
            observed_generation: Some(generation),
            refused: Some(Refusal {
                generation,
                reason: "EscalationDenied".into(),
                message: "create the portal invitation: you cannot grant SubscriptionContributor"
                    .into(),
            }),
            ..AdminInvitationStatus::default()
        }
    }

    #[test]
    fn a_refused_spec_is_not_sent_again_until_it_changes() {
        let held = run(&Case {
            status: stalled_at(1),
            ..case("refused at this generation")
        });
        assert_eq!(reason(&held), ("Stalled", "EscalationDenied"));
        assert!(held.actions.is_empty(), "{:?}", held.actions);
        assert_eq!(held.requeue_after, None, "no retry storm");

        let mut refused_update = portal(InvitationState::Pending);
        refused_update.roles = vec![Role::ServiceViewer];
        let held = run(&Case {
            status: stalled_at(1),
            found: Some(refused_update),
            ..case("role update refused at this generation")
        });
        assert_eq!(reason(&held), ("Stalled", "EscalationDenied"));
        assert!(held.actions.is_empty(), "{:?}", held.actions);

        let retried = run(&Case {
            status: stalled_at(0),
            ..case("the spec changed since")
        });
        assert!(matches!(retried.actions[..], [Write::Create { .. }]));
    }

    #[test]
    fn a_lost_link_is_replaced_by_a_resend_of_the_same_invitation() {
        let spec = AdminInvitationSpec {
            delivery: Delivery::Link,
            ..spec()
        };
        let plan = run(&Case {
            spec,
            found: Some(portal(InvitationState::Pending)),
            link_stored: false,
            ..case("pending, Secret missing")
        });
        assert_eq!(
            plan.actions,
            vec![Write::Resend {
                id: "inv-1".into(),
                idempotency_key: "uid-1/1/resend/1".into()
            }]
        );
        let email = run(&Case {
            found: Some(portal(InvitationState::Pending)),
            link_stored: false,
            ..case("email delivery has no link to lose")
        });
        assert!(email.actions.is_empty());
    }
}
