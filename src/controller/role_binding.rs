//! The RoleBinding controller: observe the grants this object made (by source), plan, grant and
//! revoke, and record per-subject state. A subject that is not an admin yet waits and is granted
//! when the feed announces an acceptance on the account.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::{Context, Error, reconcile_object, record};
use crate::crd::{AccountType, RoleBinding, RoleBindingStatus};
use crate::portal_client::PortalApi;
use crate::reconcile::admin_invitation::AccountState;
use crate::reconcile::role_binding::{Desired, Observed, execute, observe, plan, settle};

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
    let holds_contracts = ctx
        .accounts
        .get(&ObjectRef::new(account_name))
        .is_some_and(|a| a.spec.account_type == AccountType::Partner || a.spec.sub_contract);
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
    let waiting_for_account = matches!(
        desired.account,
        AccountState::Missing | AccountState::NotReady
    );
    record(ctx, object.as_ref(), status, &outcome).await?;
    Ok(if waiting_for_account {
        Action::requeue(crate::reconcile::WAIT_FOR_ACCOUNT)
    } else {
        Action::await_change()
    })
}

/// Revokes exactly the grants this binding made; grants already gone are fine.
async fn cleanup<P: PortalApi>(
    object: Arc<RoleBinding>,
    ctx: &Context<P>,
) -> Result<Action, Error> {
    let status = object.status.clone().unwrap_or_default();
    let account = status
        .account_portal_id
        .clone()
        .or_else(|| ctx.account_portal_id(&object.spec.account_ref.name));
    let Some(account) = account else {
        // Never reached the portal: nothing to revoke.
        return Ok(Action::await_change());
    };
    let observed = match observe(&ctx.portal, &account, &object).await {
        Ok(observed) => observed,
        // The account itself is gone, and its grants with it.
        Err(error) if error.is_not_found() => return Ok(Action::await_change()),
        Err(error) => return Err(Error::Observe(error)),
    };
    let desired = desired(ctx, &object, &status, true);
    let plan = plan(&desired, &observed);
    execute(&ctx.portal, &account, &plan).await?;
    Ok(Action::await_change())
}
