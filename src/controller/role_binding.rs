//! The RoleBinding controller: observe the grants this object made (by source), plan, grant and
//! revoke, and record per-subject state. A subject that is not an admin yet waits and is granted
//! when the feed announces an acceptance on the account.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::{Context, Error, reconcile_object, record, requeue};
use crate::crd::{RoleBinding, RoleBindingStatus};
use crate::portal_client::PortalApi;
use crate::reconcile::refs;
use crate::reconcile::refs::AccountState;
use crate::reconcile::role_binding::{
    Desired, Observed, execute, observe, observe_for_cleanup, plan, settle,
};

pub async fn reconcile<P: PortalApi>(
    object: Arc<RoleBinding>,
    ctx: Arc<Context<P>>,
) -> Result<Action, Error> {
    let ctx = ctx.as_ref();
    reconcile_object(
        ctx,
        object,
        |object| apply(object, ctx),
        |object| cleanup(object, ctx),
    )
    .await
}

/// The binding as the pure core sees it: its Account from the shared cache.
pub fn desired<'a, P>(
    ctx: &Context<P>,
    object: &'a RoleBinding,
    status: &'a RoleBindingStatus,
    deleting: bool,
) -> Desired<'a> {
    let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
    let account_name = &object.spec.account_ref.name;
    let holds_contracts =
        refs::holds_contracts(ctx.accounts.get(&ObjectRef::new(account_name)).as_deref());
    Desired::of(
        object,
        status,
        ctx.account_state(account_name, namespace),
        holds_contracts,
        deleting,
    )
}

async fn apply<P: PortalApi>(object: Arc<RoleBinding>, ctx: &Context<P>) -> Result<Action, Error> {
    let status = object.status.clone().unwrap_or_default();
    let desired = desired(ctx, &object, &status, false);
    let observed = match &desired.account {
        AccountState::Ready { portal_id } => observe(&ctx.portal, portal_id, &object)
            .await
            .map_err(Error::Observe)?,
        _ => Observed::default(),
    };
    let plan = plan(&desired, &observed);
    let requeue_after = plan.requeue_after;
    let (status, outcome) = match plan.settled {
        Some(settled) => settled,
        None => {
            let AccountState::Ready { portal_id } = &desired.account else {
                unreachable!("a plan with actions has a ready account")
            };
            match execute(&ctx.portal, portal_id, &plan).await {
                Ok(results) => settle(&desired, &results),
                Err(error) if !error.is_transient() => {
                    let (status, _) = settle(&desired, &BTreeMap::new());
                    (status, error.refusal())
                }
                Err(error) => return Err(error.into()),
            }
        }
    };
    record(ctx, object.as_ref(), status, &outcome).await?;
    Ok(requeue(requeue_after))
}

/// Revokes exactly the grants this binding made; grants already gone are fine.
async fn cleanup<P: PortalApi>(
    object: Arc<RoleBinding>,
    ctx: &Context<P>,
) -> Result<Action, Error> {
    let status = object.status.clone().unwrap_or_default();
    let account = ctx.account_portal_id(&object.spec.account_ref.name);
    let (account, observed) = observe_for_cleanup(&ctx.portal, account.as_deref(), &object)
        .await
        .map_err(Error::Observe)?;
    let Some(account) = account else {
        // Never reached the portal, or the account is gone with its grants: nothing to revoke.
        return Ok(Action::await_change());
    };
    let desired = desired(ctx, &object, &status, true);
    let plan = plan(&desired, &observed);
    execute(&ctx.portal, &account, &plan).await?;
    Ok(Action::await_change())
}
