//! The periodic resync, the safety net under the change feed: per portal account, one paged
//! list each of invitations, grants and account managers (never one GET per object); each
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
use crate::crd::Account;
use crate::portal::time::{Clock, SystemClock};
use crate::portal_client::{PortalApi, PortalError};
use crate::reconcile::admin_invitation::{self, AccountState};
use crate::reconcile::{account_manager, role_binding};

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
        match once(&ctx, &triggers).await {
            Ok(triggered) => {
                tracing::debug!(triggered, "resync done");
                ctx.metrics.resynced(triggered);
            }
            Err(error) => tracing::warn!(error = %error_chain(&error), "resync"),
        }
    }
}

fn out_of_line<K: Managed>(
    object: &K,
    status: K::Status,
    outcome: &crate::reconcile::Outcome,
) -> bool {
    object.status() != Some(&with_conditions(object, status, outcome))
}

/// One resync; how many objects it found out of line (and reconciled).
pub async fn once<P: PortalApi>(ctx: &Context<P>, triggers: &Triggers) -> Result<u64, PortalError> {
    let mut triggered = 0u64;
    let now = SystemClock.now_millis();
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
                .invitations(&portal_id, "Pending,Expired,Accepted,Revoked")
                .await?
                .into_iter()
                .filter_map(|i| i.external_ref.clone().map(|r| (r, i)))
                .collect();
            for object in invitations {
                let status = object.status.clone().unwrap_or_default();
                let observed = admin_invitation::Observed {
                    invitation: listed.get(&admin_invitation::current_ref(&object)).cloned(),
                };
                let account = AccountState::Ready {
                    portal_id: portal_id.clone(),
                };
                // A lost link is noticed when the Secret's deletion is watched.
                let desired = admin_invitation::Desired::of(&object, &status, account, false, true);
                let plan = admin_invitation::plan(&desired, &observed, now);
                if !plan.actions.is_empty()
                    || out_of_line(object.as_ref(), plan.status, &plan.outcome)
                {
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
                let status = object.status.clone().unwrap_or_default();
                let desired = super::role_binding::desired(ctx, &object, &status, false);
                let observed = role_binding::Observed {
                    grants: by_source
                        .get(&role_binding::source_of(&object))
                        .cloned()
                        .unwrap_or_default(),
                };
                let plan = role_binding::plan(&desired, &observed);
                let drifted = match plan.settled {
                    None => true,
                    Some((status, outcome)) => out_of_line(object.as_ref(), status, &outcome),
                };
                if drifted {
                    triggered += 1;
                    let _ = triggers
                        .role_bindings
                        .unbounded_send(ObjectRef::from_obj(object.as_ref()));
                }
            }
        }

        let managers: Vec<_> = ctx.account_managers.state_filter(|m| {
            m.spec.account_ref.name == name
                && m.metadata.deletion_timestamp.is_none()
                && ready_for(&m.namespace().unwrap_or_default())
        });
        if !managers.is_empty() {
            let listed: HashMap<String, _> = ctx
                .portal
                .account_managers(&portal_id)
                .await?
                .into_iter()
                .filter_map(|m| m.external_ref.clone().map(|r| (r, m)))
                .collect();
            for object in managers {
                let status = object.status.clone().unwrap_or_default();
                let desired = super::account_manager::desired(ctx, &object, &status, false);
                let observed = account_manager::Observed {
                    manager: listed.get(&account_manager::reference(&object)).cloned(),
                };
                let plan = account_manager::plan(&desired, &observed, now);
                if !plan.actions.is_empty()
                    || out_of_line(object.as_ref(), plan.status, &plan.outcome)
                {
                    triggered += 1;
                    let _ = triggers
                        .account_managers
                        .unbounded_send(ObjectRef::from_obj(object.as_ref()));
                }
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
