//! The Account controller: create or adopt the portal account (found by external id) under its
//! parent, keep its mutable fields in line, and orphan or delete it with the object.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::{Context, Error, reconcile_object, record};
use crate::crd::Account;
use crate::portal_client::PortalApi;
use crate::reconcile::account::{Desired, ParentState, execute, observe, plan};

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
    let Some(parent_ref) = &object.spec.parent_ref else {
        return ParentState::TopLevel;
    };
    let Some(parent) = ctx.accounts.get(&ObjectRef::new(&parent_ref.name)) else {
        return ParentState::Missing;
    };
    match parent.status.as_ref() {
        Some(status) if status.portal_id.is_some() => ParentState::Ready {
            portal_id: status.portal_id.clone().unwrap_or_default(),
            path: status
                .path
                .clone()
                .unwrap_or_else(|| parent.spec.display_name.clone()),
        },
        _ => ParentState::NotReady,
    }
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
        let waiting = matches!(desired.parent, ParentState::Missing | ParentState::NotReady);
        record(ctx, object.as_ref(), first.status, &first.outcome).await?;
        return Ok(if waiting {
            Action::requeue(crate::reconcile::WAIT_FOR_ACCOUNT)
        } else {
            Action::await_change()
        });
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
    Ok(Action::await_change())
}
