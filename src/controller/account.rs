//! The Account controller: create or adopt the portal account (found by external id) under its
//! parent, keep its mutable fields in line, and orphan or delete it with the object.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::{Context, Error, reconcile_object, record, requeue, then};
use crate::crd::Account;
use crate::portal_client::PortalApi;
use crate::reconcile::account::{Desired, ParentState, execute, observe, plan};
use crate::reconcile::refs;

pub async fn reconcile<P: PortalApi>(
    object: Arc<Account>,
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

pub(super) fn parent_state<P>(ctx: &Context<P>, object: &Account) -> ParentState {
    let parent = object
        .spec
        .parent_ref
        .as_ref()
        .and_then(|p| ctx.accounts.get(&ObjectRef::new(&p.name)));
    refs::parent_state(object, parent.as_deref())
}

async fn apply<P: PortalApi>(
    object: Arc<Account>,
    ctx: &Context<P>,
    deleting: bool,
) -> Result<Action, Error> {
    let status = object.status.clone().unwrap_or_default();
    let observed = observe(&ctx.portal, &object)
        .await
        .map_err(Error::Observe)?;
    let desired = Desired::of(&object, &status, parent_state(ctx, &object), deleting);
    let first = plan(&desired, &observed);
    if deleting {
        return match execute(&ctx.portal, &first, observed).await {
            Ok(_) => Ok(Action::await_change()),
            // Refused (it still has child accounts): say so, keep the finalizer, look again.
            Err(error) if !error.is_transient() => {
                record(ctx, object.as_ref(), first.status, &error.refusal()).await?;
                Err(error.into())
            }
            Err(error) => Err(error.into()),
        };
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
    );
    record(ctx, object.as_ref(), after.status, &after.outcome).await?;
    Ok(then(&after.actions, after.requeue_after))
}
