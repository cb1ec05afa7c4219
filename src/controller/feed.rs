//! The portal's change feed, turned into reconciles: each event names the object it concerns by
//! its externalRef (or its account), and that object is reconciled at once
//! (`Controller::reconcile_on`). The feed is resumed by cursor after a disconnect, with backoff;
//! if it was never positioned (no event seen yet), a resync covers the gap.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{Notify, watch};

use super::Context;
use crate::api::time::parse_millis;
use crate::api::{Event, EventType, ExternalRef};
use crate::crd::{
    Account, AccountManager, AdminInvitation, GrantState, RoleBinding, Subscription, Team, User,
    UserRole,
};
use crate::portal_client::{FeedItem, PortalApi};

/// What one feed event asks to reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Invitation {
        namespace: String,
        name: String,
    },
    AccountManager {
        namespace: String,
        name: String,
    },
    RoleBinding {
        namespace: String,
        name: String,
    },
    Subscription {
        namespace: String,
        name: String,
    },
    User {
        namespace: String,
        name: String,
    },
    UserRole {
        namespace: String,
        name: String,
    },
    Team {
        namespace: String,
        name: String,
    },
    /// The Users, UserRoles and Teams on this portal account whose write named an object that
    /// was not in the portal yet (one may be now).
    WaitingForReferencesOn(String),
    /// The Teams and UserRoles on this portal account (their members and holders may have
    /// changed), and with `users` its Users (their effective permissions and teams).
    ServiceOn {
        account: String,
        users: bool,
    },
    /// The Subscriptions on this portal account (a licence was taken or given back).
    SubscriptionsOn(String),
    /// The Users on this portal account still waiting for a licence (one may be free now).
    UsersWaitingOn(String),
    /// The RoleBindings on this portal account (its grants or admins changed).
    RoleBindingsOn(String),
    /// The RoleBindings waiting for a subject (someone accepted an invitation).
    WaitingRoleBindings,
    /// The Account object of this portal account.
    Account(String),
}

/// The objects an event concerns. Pure, so the mapping is tested on its own.
pub fn targets(event: &Event) -> Vec<Target> {
    let mut targets = Vec::new();
    // An object the operator manages is created only by its own reconcile, which records what
    // it made: the `created` event coming back would only make it observe again (one portal
    // read per object, 10,000 at scale). A crash before the status write is retried anyway.
    let own_create = matches!(
        event.event_type,
        EventType::InvitationCreated
            | EventType::AccountManagerCreated
            | EventType::SubscriptionCreated
            | EventType::UserCreated
            | EventType::UserRoleCreated
            | EventType::TeamCreated
    );
    let reference = event
        .external_ref
        .as_deref()
        .filter(|_| !own_create)
        .and_then(|r| r.parse::<ExternalRef>().ok());
    match reference {
        Some(ExternalRef::AdminInvitation {
            namespace, name, ..
        }) => targets.push(Target::Invitation { namespace, name }),
        Some(ExternalRef::AccountManager {
            namespace, name, ..
        }) => targets.push(Target::AccountManager { namespace, name }),
        Some(ExternalRef::RoleBinding {
            namespace, name, ..
        }) => targets.push(Target::RoleBinding { namespace, name }),
        Some(ExternalRef::Subscription {
            namespace, name, ..
        }) => targets.push(Target::Subscription { namespace, name }),
        Some(ExternalRef::User {
            namespace, name, ..
        }) => targets.push(Target::User { namespace, name }),
        Some(ExternalRef::UserRole {
            namespace, name, ..
        }) => targets.push(Target::UserRole { namespace, name }),
        Some(ExternalRef::Team {
            namespace, name, ..
        }) => targets.push(Target::Team { namespace, name }),
        Some(ExternalRef::Account { .. }) | None => {}
    }
    if let Some(account) = &event.account_id {
        // Licences change hands: the Subscriptions' counts move, and a user waiting for a
        // licence may find one.
        if event.event_type.moves_licenses() {
            targets.push(Target::SubscriptionsOn(account.clone()));
        }
        if event.event_type.frees_licenses() {
            targets.push(Target::UsersWaitingOn(account.clone()));
        }
        if event.event_type.makes_references() {
            targets.push(Target::WaitingForReferencesOn(account.clone()));
        }
        if event.event_type.moves_memberships() {
            targets.push(Target::ServiceOn {
                account: account.clone(),
                users: event.event_type.reshapes_teams(),
            });
        }
    }
    if event.event_type == EventType::InvitationAccepted {
        targets.push(Target::WaitingRoleBindings);
    } else if event.event_type.changes_grants() {
        if let Some(account) = &event.account_id {
            targets.push(Target::RoleBindingsOn(account.clone()));
        }
    } else if event.event_type.is_account() {
        targets.push(Target::Account(event.object_id.clone()));
    }
    targets
}

/// The senders feeding each controller's `reconcile_on`.
#[derive(Clone)]
pub struct Triggers {
    pub accounts: UnboundedSender<ObjectRef<Account>>,
    pub invitations: UnboundedSender<ObjectRef<AdminInvitation>>,
    pub role_bindings: UnboundedSender<ObjectRef<RoleBinding>>,
    pub account_managers: UnboundedSender<ObjectRef<AccountManager>>,
    pub subscriptions: UnboundedSender<ObjectRef<Subscription>>,
    pub users: UnboundedSender<ObjectRef<User>>,
    pub user_roles: UnboundedSender<ObjectRef<UserRole>>,
    pub teams: UnboundedSender<ObjectRef<Team>>,
}

/// The receiving ends, one per controller.
pub struct TriggerStreams {
    pub accounts: UnboundedReceiver<ObjectRef<Account>>,
    pub invitations: UnboundedReceiver<ObjectRef<AdminInvitation>>,
    pub role_bindings: UnboundedReceiver<ObjectRef<RoleBinding>>,
    pub account_managers: UnboundedReceiver<ObjectRef<AccountManager>>,
    pub subscriptions: UnboundedReceiver<ObjectRef<Subscription>>,
    pub users: UnboundedReceiver<ObjectRef<User>>,
    pub user_roles: UnboundedReceiver<ObjectRef<UserRole>>,
    pub teams: UnboundedReceiver<ObjectRef<Team>>,
}

pub fn triggers() -> (Triggers, TriggerStreams) {
    let (accounts, accounts_rx) = unbounded();
    let (invitations, invitations_rx) = unbounded();
    let (role_bindings, role_bindings_rx) = unbounded();
    let (account_managers, account_managers_rx) = unbounded();
    let (subscriptions, subscriptions_rx) = unbounded();
    let (users, users_rx) = unbounded();
    let (user_roles, user_roles_rx) = unbounded();
    let (teams, teams_rx) = unbounded();
    (
        Triggers {
            accounts,
            invitations,
            role_bindings,
            account_managers,
            subscriptions,
            users,
            user_roles,
            teams,
        },
        TriggerStreams {
            accounts: accounts_rx,
            invitations: invitations_rx,
            role_bindings: role_bindings_rx,
            account_managers: account_managers_rx,
            subscriptions: subscriptions_rx,
            users: users_rx,
            user_roles: user_roles_rx,
            teams: teams_rx,
        },
    )
}

/// Enqueues the objects of `store` under the Account of the portal account `portal_id` that
/// `wanted` picks.
fn under<K, P>(
    ctx: &Context<P>,
    portal_id: &str,
    store: &kube::runtime::reflector::Store<K>,
    sender: &UnboundedSender<ObjectRef<K>>,
    wanted: impl Fn(&K) -> bool,
) where
    K: crate::reconcile::Kind + Clone + 'static,
{
    let Some(account) = ctx.account_by_portal_id(portal_id) else {
        return;
    };
    let name = account.metadata.name.clone().unwrap_or_default();
    for object in
        store.state_filter(|o| o.account_ref().is_some_and(|r| r.name == name) && wanted(o))
    {
        let _ = sender.unbounded_send(ObjectRef::from_obj(object.as_ref()));
    }
}

impl Triggers {
    /// Enqueues the objects `target` names that exist in the caches.
    pub fn fire<P>(&self, ctx: &Context<P>, target: &Target) {
        match target {
            Target::Invitation { namespace, name } => {
                let _ = self
                    .invitations
                    .unbounded_send(ObjectRef::new(name).within(namespace));
            }
            Target::AccountManager { namespace, name } => {
                let _ = self
                    .account_managers
                    .unbounded_send(ObjectRef::new(name).within(namespace));
            }
            Target::RoleBinding { namespace, name } => {
                let _ = self
                    .role_bindings
                    .unbounded_send(ObjectRef::new(name).within(namespace));
            }
            Target::Subscription { namespace, name } => {
                let _ = self
                    .subscriptions
                    .unbounded_send(ObjectRef::new(name).within(namespace));
            }
            Target::User { namespace, name } => {
                let _ = self
                    .users
                    .unbounded_send(ObjectRef::new(name).within(namespace));
            }
            Target::UserRole { namespace, name } => {
                let _ = self
                    .user_roles
                    .unbounded_send(ObjectRef::new(name).within(namespace));
            }
            Target::Team { namespace, name } => {
                let _ = self
                    .teams
                    .unbounded_send(ObjectRef::new(name).within(namespace));
            }
            Target::WaitingForReferencesOn(portal_id) => {
                let waiting = |refused: Option<&crate::crd::Refusal>| {
                    refused.is_some_and(crate::crd::Refusal::waits_for_another_object)
                };
                under(ctx, portal_id, &ctx.users, &self.users, |o: &User| {
                    waiting(o.status.as_ref().and_then(|s| s.refused.as_ref()))
                });
                under(
                    ctx,
                    portal_id,
                    &ctx.user_roles,
                    &self.user_roles,
                    |o: &UserRole| waiting(o.status.as_ref().and_then(|s| s.refused.as_ref())),
                );
                under(ctx, portal_id, &ctx.teams, &self.teams, |o: &Team| {
                    waiting(o.status.as_ref().and_then(|s| s.refused.as_ref()))
                });
            }
            Target::ServiceOn { account, users } => {
                under(ctx, account, &ctx.teams, &self.teams, |_| true);
                under(ctx, account, &ctx.user_roles, &self.user_roles, |_| true);
                // Any user may gain or lose a membership (a team lists whom it likes); role
                // and team changes are rare next to user changes.
                if *users {
                    under(ctx, account, &ctx.users, &self.users, |_| true);
                }
            }
            Target::SubscriptionsOn(portal_id) => {
                under(
                    ctx,
                    portal_id,
                    &ctx.subscriptions,
                    &self.subscriptions,
                    |_| true,
                );
            }
            Target::UsersWaitingOn(portal_id) => {
                let waiting = |user: &User| {
                    user.status
                        .as_ref()
                        .and_then(|s| s.license.as_ref())
                        .is_some_and(|l| !l.assigned)
                };
                under(ctx, portal_id, &ctx.users, &self.users, waiting);
            }
            Target::RoleBindingsOn(portal_id) => {
                under(
                    ctx,
                    portal_id,
                    &ctx.role_bindings,
                    &self.role_bindings,
                    |_| true,
                );
            }
            Target::WaitingRoleBindings => {
                for binding in ctx.role_bindings.state_filter(|b| {
                    b.status.as_ref().is_some_and(|s| {
                        s.subjects
                            .iter()
                            .any(|subject| subject.state == GrantState::WaitingForSubject)
                    })
                }) {
                    let _ = self
                        .role_bindings
                        .unbounded_send(ObjectRef::from_obj(binding.as_ref()));
                }
            }
            Target::Account(portal_id) => {
                if let Some(account) = ctx.account_by_portal_id(portal_id) {
                    let _ = self
                        .accounts
                        .unbounded_send(ObjectRef::from_obj(account.as_ref()));
                }
            }
        }
    }
}

/// How long after the feed first connects the first reconciles may be answered from bulk
/// lists: the initial reconcile of every object at start fits well within it (10,000 in about
/// 12 s); anything later reads the portal.
pub const START_UP_WINDOW: Duration = Duration::from_secs(60);

/// Follows the feed until the process stops: reconnects with backoff (1 s doubling to 30 s),
/// resumes after the last event seen, and reports whether it is connected.
pub async fn follow<P: PortalApi>(
    ctx: Arc<Context<P>>,
    triggers: Triggers,
    connected: watch::Sender<bool>,
    resync_now: Arc<Notify>,
) {
    let mut cursor: Option<i64> = None;
    let mut failures = 0u32;
    loop {
        match ctx.portal.events(cursor).await {
            Ok(mut events) => {
                connected.send_replace(true);
                // From here on, every change in the portal is an event we read: lists taken
                // now answer first reconciles until the feed reports a change to their objects.
                ctx.snapshot.open_for(START_UP_WINDOW);
                let mut progressed = false;
                while let Some(item) = events.next().await {
                    let Ok(item) = item else { break };
                    // Only a connection that delivered something resets the backoff: one that
                    // ends at once, again and again, must not reconnect in a tight loop.
                    progressed = true;
                    cursor = item.seq().or(cursor);
                    match item {
                        FeedItem::Event(event) => {
                            let lag = parse_millis(&event.created_at)
                                .map(|at| (ctx.clock.now_millis() - at).max(0) as u64)
                                .unwrap_or(0);
                            ctx.metrics.feed_event(Duration::from_millis(lag));
                            if !event.event_type.is_account() {
                                ctx.snapshot.reported(
                                    event.account_id.as_deref(),
                                    event.external_ref.as_deref(),
                                    &event.object_id,
                                );
                            }
                            for target in targets(&event) {
                                triggers.fire(&ctx, &target);
                            }
                        }
                        FeedItem::Unreadable { id, error } => {
                            let skipped = ctx.metrics.feed_event_unreadable();
                            // The first one says what happened; the rest are counted.
                            if skipped == 1 {
                                tracing::warn!(event = ?id, %error, "skipped a change-feed event that could not be read (counted in portal_operator_feed_events_unreadable_total); the resync covers what it announced");
                            } else {
                                tracing::debug!(event = ?id, %error, "skipped an unreadable change-feed event");
                            }
                        }
                    }
                }
                if progressed {
                    failures = 0;
                } else {
                    failures += 1;
                }
                tracing::info!("the portal's change feed ended; reconnecting");
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(error = %super::error_chain(&error), "connect to the portal's change feed");
            }
        }
        connected.send_replace(false);
        // Changes may pass unseen until the feed is back: no more answers from lists.
        ctx.snapshot.close();
        if cursor.is_none() {
            // Events may have passed while we had no position: look at everything.
            resync_now.notify_one();
        }
        let wait = super::backoff(
            failures.max(1),
            rand::random::<f64>(),
            Duration::from_secs(30),
        );
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, external_ref: Option<&str>) -> Event {
        Event {
            seq: 1,
            event_type: EventType::parse(event_type),
            object_kind: "X".into(),
            object_id: "obj-1".into(),
            account_id: Some("acc-1".into()),
            external_ref: external_ref.map(str::to_owned),
            data: serde_json::Value::Null,
            created_at: "2026-11-22T00:00:00Z".into(),
        }
    }

    #[test]
    fn events_name_their_objects() {
        assert_eq!(
            targets(&event(
                "invitation.accepted",
                Some("AdminInvitation/team-a/ann/uid-1/2")
            )),
            vec![
                Target::Invitation {
                    namespace: "team-a".into(),
                    name: "ann".into()
                },
                Target::WaitingRoleBindings
            ]
        );
        assert_eq!(
            targets(&event(
                "invitation.expired",
                Some("AdminInvitation/team-a/ann/uid-1/1")
            )),
            vec![Target::Invitation {
                namespace: "team-a".into(),
                name: "ann".into()
            }]
        );
        assert_eq!(
            targets(&event(
                "grant.revoked",
                Some("RoleBinding/team-a/owners/uid-2")
            )),
            vec![
                Target::RoleBinding {
                    namespace: "team-a".into(),
                    name: "owners".into()
                },
                Target::RoleBindingsOn("acc-1".into())
            ]
        );
        assert_eq!(
            targets(&event(
                "account_manager.activated",
                Some("AccountManager/team-b/mia/uid-3")
            )),
            vec![Target::AccountManager {
                namespace: "team-b".into(),
                name: "mia".into()
            }]
        );
        assert_eq!(
            targets(&event("account.deleted", Some("Account/contoso"))),
            vec![Target::Account("obj-1".into())]
        );
        assert!(
            targets(&event("invitation.created", Some("made-by-hand"))).is_empty(),
            "objects the operator does not manage are ignored"
        );
        for created in ["invitation.created", "account_manager.created"] {
            assert!(
                targets(&event(created, Some("AdminInvitation/team-a/ann/uid-1/1"))).is_empty(),
                "the operator's own creates do not come back as reconciles: {created}"
            );
        }
    }
}
