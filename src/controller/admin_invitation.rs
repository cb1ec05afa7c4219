//! The AdminInvitation controller: observe the portal invitation of the current attempt (by its
//! externalRef), plan, act, store a Link invitation's link in a Secret owned by the object, and
//! record the status. Requeued exactly at `expiresAt`; acceptance arrives through the feed.

use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::{Context, Error, MANAGER, reconcile_object, record, requeue, then};
use crate::crd::{AdminInvitation, AdminInvitationPhase, Delivery};
use crate::portal_client::PortalApi;
use crate::reconcile::admin_invitation::{
    AccountState, Desired, Observed, execute, link_secret_name, observe, observe_for_cleanup, plan,
};

pub async fn reconcile<P: PortalApi>(
    object: Arc<AdminInvitation>,
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

async fn apply<P: PortalApi>(
    object: Arc<AdminInvitation>,
    ctx: &Context<P>,
) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let status = object.status.clone().unwrap_or_default();
    let account = ctx.account_state(&object.spec.account_ref.name, &namespace);
    let observed = match &account {
        AccountState::Ready { portal_id } => observe(&ctx.portal, portal_id, &object)
            .await
            .map_err(Error::Observe)?,
        _ => Observed::default(),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret_name = link_secret_name(&object.name_any());
    // Only a pending invitation's link matters; once accepted or expired, no read is needed.
    let link_matters = object.spec.delivery == Delivery::Link
        && matches!(status.phase, None | Some(AdminInvitationPhase::Pending));
    let link_stored = !link_matters
        || secrets
            .get_opt(&secret_name)
            .await
            .map_err(Error::kube("read the link Secret"))?
            .is_some();
    let now = ctx.clock.now_millis();
    let first = plan(
        &Desired::of(&object, &status, account.clone(), false, link_stored),
        &observed,
        now,
    );
    if first.actions.is_empty() {
        record(ctx, object.as_ref(), first.status, &first.outcome).await?;
        return Ok(requeue(first.requeue_after));
    }
    let executed = match execute(&ctx.portal, &first, observed).await {
        Ok(executed) => executed,
        Err(error) if !error.is_transient() => {
            record(ctx, object.as_ref(), first.status, &error.refusal()).await?;
            return Ok(Action::await_change());
        }
        Err(error) => return Err(error.into()),
    };
    if let Some(link) = executed.link {
        store_link(ctx, &object, &secret_name, &link).await?;
    }
    // Record what the portal now holds.
    let after = plan(
        &Desired::of(&object, &first.status, account, false, true),
        &executed.observed,
        ctx.clock.now_millis(),
    );
    record(ctx, object.as_ref(), after.status, &after.outcome).await?;
    Ok(then(&after.actions, after.requeue_after))
}

/// Writes the link to the Secret owned by the invitation (garbage-collected with it). The link
/// goes nowhere else: not to the status, an Event, or a log.
async fn store_link<P>(
    ctx: &Context<P>,
    object: &AdminInvitation,
    secret_name: &str,
    link: &str,
) -> Result<(), Error> {
    let namespace = object.namespace().unwrap_or_default();
    let owner = object
        .controller_owner_ref(&())
        .expect("a stored object has a name and uid");
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name,
            "namespace": namespace,
            "labels": { "app.kubernetes.io/managed-by": MANAGER },
            "ownerReferences": [owner],
        },
        "type": "Opaque",
        "data": {
            "link": base64::engine::general_purpose::STANDARD.encode(link),
        },
    });
    Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .patch(
            secret_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .map_err(Error::kube("store the invitation link in its Secret"))?;
    Ok(())
}

/// Revokes a pending invitation; an accepted one stays (the admin keeps access); one already
/// gone needs nothing.
async fn cleanup<P: PortalApi>(
    object: Arc<AdminInvitation>,
    ctx: &Context<P>,
) -> Result<Action, Error> {
    let status = object.status.clone().unwrap_or_default();
    let account = ctx.account_portal_id(&object.spec.account_ref.name);
    let observed = observe_for_cleanup(&ctx.portal, account.as_deref(), &object)
        .await
        .map_err(Error::Observe)?;
    let plan = plan(
        &Desired::of(&object, &status, AccountState::Missing, true, true),
        &observed,
        ctx.clock.now_millis(),
    );
    match execute(&ctx.portal, &plan, observed).await {
        Ok(_) => Ok(Action::await_change()),
        Err(error) => Err(error.into()),
    }
}
