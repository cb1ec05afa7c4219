//! The periodic resync, the safety net under the change feed: one paged list of accounts per
//! parent, and per portal account one paged list each of invitations, grants, account managers,
//! subscriptions, users, user roles and teams (never one portal GET per object; only a pending Link invitation's Secret is read
//! by name, since Secrets are not watched); each
//! object is planned against that observation with the same pure core, and only the objects
//! whose plan has work or whose status would change are reconciled. A resync of converged
//! objects writes nothing to the portal and nothing to Kubernetes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;

use super::feed::Triggers;
use super::{Context, Managed, error_chain, with_conditions};
use crate::api::{AccountView, InvitationState};
use crate::crd::Account;
use crate::portal_client::{PortalApi, PortalError};
use crate::reconcile::account;
use crate::reconcile::admin_invitation;
use crate::reconcile::driver;
use crate::reconcile::{AccountState, Host, Kind, ParentState};
use crate::reconcile::{account_manager, role_binding, subscription, team, user, user_role};

/// Resyncs every `interval`, and at once when `now` is notified.
pub async fn every<P: PortalApi>(
    ctx: Arc<Context<P>>,
    triggers: Triggers,
    interval: Duration,
    now: Arc<Notify>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = now.notified() => {}
        }
        ctx.forget_deleted();
        match once(&ctx, &triggers).await {
            Ok(triggered) => {
                tracing::debug!(triggered, "resync done");
                ctx.metrics.resynced(triggered);
            }
            Err(error) => tracing::warn!(error = %error_chain(&error), "resync"),
        }
    }
}

/// Whether `object`, planned against `observed` (from a bulk list), has work or a status that
/// would change.
fn drifted<K: Managed, P: PortalApi>(
    ctx: &Context<P>,
    object: &K,
    observed: &<K as Kind>::Observed,
    now: i64,
) -> bool {
    // A lost link is noticed when the Secret's deletion is watched.
    let plan = driver::plan_from(object, &ctx.references(object), observed, now);
    !plan.actions.is_empty()
        || object.status() != Some(&with_conditions(object, plan.status, &plan.outcome))
}

/// One resync; how many objects it found out of line (and reconciled).
pub async fn once<P: PortalApi>(ctx: &Context<P>, triggers: &Triggers) -> Result<u64, PortalError> {
    // The resync observes for itself from here on; the start-up lists have served.
    ctx.snapshot.close();
    let mut triggered = accounts(ctx, triggers).await?;
    let now = ctx.clock.now_millis();
    for account in ctx.accounts.state() {
        let Some(portal_id) = portal_id(&account) else {
            continue;
        };
        let name = account.name_any();
        let ready_for = |namespace: &str| {
            matches!(
                ctx.account_state(&name, namespace),
                AccountState::Ready { .. }
            )
        };

        let invitations: Vec<_> = ctx.invitations.state_filter(|i| {
            i.spec.account_ref.name == name
                && i.metadata.deletion_timestamp.is_none()
                && ready_for(&i.namespace().unwrap_or_default())
        });
        if !invitations.is_empty() {
            let listed: HashMap<String, _> = ctx
                .portal
                .invitations(
                    &portal_id,
                    &[
                        InvitationState::Pending,
                        InvitationState::Expired,
                        InvitationState::Accepted,
                        InvitationState::Revoked,
                    ],
                )
                .await?
                .into_iter()
                .filter_map(|i| i.external_ref.clone().map(|r| (r, i)))
                .collect();
            for object in invitations {
                let observed = admin_invitation::Observed {
                    invitation: listed.get(&admin_invitation::current_ref(&object)).cloned(),
                };
                // Link Secrets are not watched: a pending Link invitation's is read by name.
                let lost_link = object.link_matters()
                    && matches!(
                        super::Cluster { ctx }.link_stored(object.as_ref()).await,
                        Ok(false)
                    );
                if lost_link || drifted(ctx, object.as_ref(), &observed, now) {
                    triggered += 1;
                    let _ = triggers
                        .invitations
                        .unbounded_send(ObjectRef::from_obj(object.as_ref()));
                }
            }
        }

        let bindings: Vec<_> = ctx.role_bindings.state_filter(|b| {
            b.spec.account_ref.name == name
                && b.metadata.deletion_timestamp.is_none()
                && ready_for(&b.namespace().unwrap_or_default())
        });
        if !bindings.is_empty() {
            let mut by_source: HashMap<String, Vec<_>> = HashMap::new();
            for grant in ctx.portal.grants(&portal_id).await? {
                by_source
                    .entry(grant.source.clone())
                    .or_default()
                    .push(grant);
            }
            for object in bindings {
                let observed = role_binding::Observed {
                    grants: by_source
                        .get(&role_binding::source_of(&object))
                        .cloned()
                        .unwrap_or_default(),
                };
                if drifted(ctx, object.as_ref(), &observed, now) {
                    triggered += 1;
                    let _ = triggers
                        .role_bindings
                        .unbounded_send(ObjectRef::from_obj(object.as_ref()));
                }
            }
        }

        let under = Under {
            ctx,
            name: &name,
            now,
        };
        triggered += under
            .kind(
                &ctx.account_managers,
                &triggers.account_managers,
                || ctx.portal.account_managers(&portal_id),
                |m| m.external_ref.as_ref(),
                account_manager::reference,
                |manager| account_manager::Observed { manager },
            )
            .await?;
        triggered += under
            .kind(
                &ctx.subscriptions,
                &triggers.subscriptions,
                || ctx.portal.subscriptions(&portal_id),
                |s| s.external_ref.as_ref(),
                subscription::reference,
                |subscription| subscription::Observed { subscription },
            )
            .await?;
        // A user still to be created (waiting for a licence) is retried by the feed's licence
        // events and its own requeue; here only existing users are compared.
        triggered += under
            .kind(
                &ctx.users,
                &triggers.users,
                || ctx.portal.users(&portal_id),
                |u| u.external_ref.as_ref(),
                user::reference,
                |user| user::Observed {
                    user,
                    free_licenses: None,
                },
            )
            .await?;
        triggered += under
            .kind(
                &ctx.user_roles,
                &triggers.user_roles,
                || ctx.portal.user_roles(&portal_id),
                |r| r.external_ref.as_ref(),
                user_role::reference,
                |role| user_role::Observed {
                    role,
                    account: None,
                },
            )
            .await?;
        triggered += under
            .kind(
                &ctx.teams,
                &triggers.teams,
                || ctx.portal.teams(&portal_id),
                |t| t.external_ref.as_ref(),
                team::reference,
                |team| team::Observed { team },
            )
            .await?;
    }
    Ok(triggered)
}

/// The objects of one Account, resynced kind by kind.
struct Under<'a, P> {
    ctx: &'a Context<P>,
    name: &'a str,
    now: i64,
}

impl<P: PortalApi> Under<'_, P> {
    /// Plans each live object of `store` under this Account against one bulk `list` of its
    /// kind (matched by externalRef) and enqueues those that drifted; how many.
    async fn kind<K, V, L, LF>(
        &self,
        store: &kube::runtime::reflector::Store<K>,
        sender: &futures::channel::mpsc::UnboundedSender<ObjectRef<K>>,
        list: L,
        external_ref: fn(&V) -> Option<&String>,
        reference: fn(&K) -> String,
        observed: fn(Option<V>) -> <K as Kind>::Observed,
    ) -> Result<u64, PortalError>
    where
        K: Managed + Clone + 'static,
        V: Clone,
        L: FnOnce() -> LF,
        LF: Future<Output = Result<Vec<V>, PortalError>>,
    {
        let objects: Vec<_> = store.state_filter(|o| {
            o.account_ref().is_some_and(|r| r.name == self.name)
                && o.meta().deletion_timestamp.is_none()
                && matches!(
                    self.ctx
                        .account_state(self.name, &o.namespace().unwrap_or_default()),
                    AccountState::Ready { .. }
                )
        });
        if objects.is_empty() {
            return Ok(0);
        }
        let listed: HashMap<String, V> = list()
            .await?
            .into_iter()
            .filter_map(|v| external_ref(&v).cloned().map(|r| (r, v)))
            .collect();
        let mut triggered = 0;
        for object in objects {
            let seen = observed(listed.get(&reference(&object)).cloned());
            if drifted(self.ctx, object.as_ref(), &seen, self.now) {
                triggered += 1;
                let _ = sender.unbounded_send(ObjectRef::from_obj(object.as_ref()));
            }
        }
        Ok(triggered)
    }
}

/// Accounts whose portal account drifted from the spec (a display name changed in the portal,
/// say), or went missing, listed under each parent once.
async fn accounts<P: PortalApi>(ctx: &Context<P>, triggers: &Triggers) -> Result<u64, PortalError> {
    let mut by_parent: HashMap<Option<String>, Vec<Arc<Account>>> = HashMap::new();
    for object in ctx.accounts.state() {
        if portal_id(&object).is_none() {
            // Not created yet, or being deleted: its own reconcile is under way.
            continue;
        }
        let parent = ctx.references(object.as_ref()).parent;
        let key = match &parent {
            ParentState::TopLevel => None,
            ParentState::Ready { portal_id, .. } => Some(portal_id.clone()),
            ParentState::Missing | ParentState::NotReady => continue,
        };
        by_parent.entry(key).or_default().push(object);
    }
    let mut triggered = 0;
    for (parent, objects) in by_parent {
        let listed: HashMap<String, AccountView> = ctx
            .portal
            .accounts_under(parent.as_deref())
            .await?
            .into_iter()
            .filter_map(|a| a.external_id.clone().map(|id| (id, a)))
            .collect();
        for object in objects {
            let observed = account::Observed {
                account: listed
                    .get(&account::external_id(&object.name_any(), &object.spec))
                    .cloned(),
            };
            if drifted(ctx, object.as_ref(), &observed, ctx.clock.now_millis()) {
                triggered += 1;
                let _ = triggers
                    .accounts
                    .unbounded_send(ObjectRef::from_obj(object.as_ref()));
            }
        }
    }
    Ok(triggered)
}

fn portal_id(account: &Account) -> Option<String> {
    if account.metadata.deletion_timestamp.is_some() {
        return None;
    }
    account.status.as_ref().and_then(|s| s.portal_id.clone())
}
