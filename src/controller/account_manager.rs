//! The AccountManager controller: create the portal account manager (found by externalRef),
//! resend the activation when asked, record its phase, and delete it with the object.

use std::sync::Arc;

use kube::runtime::controller::Action;

use super::{Context, Error, reconcile_object, record, requeue, then};
use crate::crd::{AccountManager, AccountManagerStatus};
use crate::portal_client::PortalApi;
use crate::reconcile::account_manager::{
    Desired, Observed, execute, observe, observe_for_cleanup, plan,
};
use crate::reconcile::refs::AccountState;

pub async fn reconcile<P: PortalApi>(
    object: Arc<AccountManager>,
    ctx: Arc<Context<P>>,
) -> Result<Action, Error> {
    let ctx = ctx.as_ref();
    reconcile_object(
        ctx,
        object,
        |object| apply(object, ctx, false),
        |object| apply(object, ctx, true),
    )
    .await
}

/// The object as the pure core sees it: its Account from the shared cache.
pub fn desired<'a, P>(
    ctx: &Context<P>,
    object: &'a AccountManager,
    status: &'a AccountManagerStatus,
    deleting: bool,
) -> Desired<'a> {
    let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
    let account = ctx.account_state(&object.spec.account_ref.name, namespace);
    Desired::of(object, status, account, deleting)
}

async fn apply<P: PortalApi>(
    object: Arc<AccountManager>,
    ctx: &Context<P>,
    deleting: bool,
) -> Result<Action, Error> {
    let status = object.status.clone().unwrap_or_default();
    let desired = desired(ctx, &object, &status, deleting);
    let observed = if deleting {
        // Cleanup finds what was made while the account was delegated, whatever it is now.
        let account = ctx.account_portal_id(&object.spec.account_ref.name);
        observe_for_cleanup(&ctx.portal, account.as_deref(), &object).await
    } else if let AccountState::Ready { portal_id } = &desired.account {
        observe(&ctx.portal, portal_id, &object).await
    } else {
        Ok(Observed::default())
    }
    .map_err(Error::Observe)?;
    let first = plan(&desired, &observed, ctx.clock.now_millis());
    if deleting {
        execute(&ctx.portal, &first, observed).await?;
        return Ok(Action::await_change());
    }
    if first.actions.is_empty() {
        record(ctx, object.as_ref(), first.status, &first.outcome).await?;
        return Ok(requeue(first.requeue_after));
    }
    let observed = match execute(&ctx.portal, &first, observed).await {
        Ok(observed) => observed,
        Err(error) if !error.is_transient() => {
            record(ctx, object.as_ref(), first.status, &error.refusal()).await?;
            return Ok(Action::await_change());
        }
        Err(error) => return Err(error.into()),
    };
    let after = plan(
        &Desired {
            status: &first.status,
            ..desired
        },
        &observed,
        ctx.clock.now_millis(),
    );
    record(ctx, object.as_ref(), after.status, &after.outcome).await?;
    Ok(then(&after.actions, after.requeue_after))
}
