//! The cluster as the converge driver's host: Accounts from the shared cache, a Link
//! invitation's link in a Secret owned by the invitation, time from the context's clock; and
//! the one reconcile every kind's controller runs (converge + record, cleanup in the finalizer).

use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::{Context, Error, MANAGER, Managed, reconcile_object, record, record_failure, requeue};
use crate::crd::Account;
use crate::portal_client::PortalApi;
use crate::portal_client::bulk::Bulk;
use crate::reconcile::Refs;
use crate::reconcile::admin_invitation::link_secret_name;
use crate::reconcile::driver::{self, ConvergeError, Host, Kind};

/// The driver's view of the cluster through one controller context.
pub struct Cluster<'a, P> {
    pub ctx: &'a Context<P>,
}

impl<P: Send + Sync> Host for Cluster<'_, P> {
    type Error = kube::Error;

    fn now_millis(&self) -> i64 {
        self.ctx.clock.now_millis()
    }

    fn acts(&self) -> bool {
        true
    }

    fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.ctx.accounts.get(&ObjectRef::new(name))
    }

    async fn link_stored<K: Kind>(&self, object: &K) -> Result<bool, kube::Error> {
        let secrets: Api<Secret> = Api::namespaced(
            self.ctx.client.clone(),
            &object.namespace().unwrap_or_default(),
        );
        Ok(secrets
            .get_opt(&link_secret_name(&object.name_any()))
            .await?
            .is_some())
    }

    /// Writes the link to the Secret owned by the object (garbage-collected with it). The link
    /// goes nowhere else: not to the status, an Event, or a log.
    async fn store_link<K: Kind>(&self, object: &K, link: &str) -> Result<(), kube::Error> {
        let namespace = object.namespace().unwrap_or_default();
        let name = link_secret_name(&object.name_any());
        let owner = object.controller_owner_ref(&());
        let secret = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": { "app.kubernetes.io/managed-by": MANAGER },
                "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
            },
            "type": "Opaque",
            "data": {
                "link": base64::engine::general_purpose::STANDARD.encode(link),
            },
        });
        Api::<Secret>::namespaced(self.ctx.client.clone(), &namespace)
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await?;
        Ok(())
    }

    /// The Secret is owned by the object: the garbage collector removes it.
    async fn forget_link<K: Kind>(&self, _object: &K) -> Result<(), kube::Error> {
        Ok(())
    }
}

impl<P> Context<P> {
    /// What `object`'s references resolve to in the caches (a stored link is not looked up).
    pub fn references<K: Kind>(&self, object: &K) -> Refs
    where
        P: Send + Sync,
    {
        driver::references(&Cluster { ctx: self }, object)
    }
}

impl From<ConvergeError<kube::Error>> for Error {
    fn from(error: ConvergeError<kube::Error>) -> Error {
        match error {
            ConvergeError::Observe { source, .. } => Error::Observe(source),
            ConvergeError::Execute(error) => Error::Execute(error),
            ConvergeError::Host { step, source } => Error::Kube { step, source },
        }
    }
}

/// One reconcile of any kind: converge and record while the object lives; clean up in the
/// finalizer when it is deleted.
pub async fn reconcile<K: Managed, P: PortalApi>(
    object: Arc<K>,
    ctx: Arc<Context<P>>,
) -> Result<Action, Error> {
    let ctx = ctx.as_ref();
    reconcile_object(
        ctx,
        object,
        |object| converge(ctx, object),
        |object| cleanup(ctx, object),
    )
    .await
}

async fn converge<K: Managed, P: PortalApi>(
    ctx: &Context<P>,
    object: Arc<K>,
) -> Result<Action, Error> {
    let observing = Bulk::new(&ctx.portal, &ctx.snapshot);
    let converged = match driver::converge(&Cluster { ctx }, &observing, object.as_ref()).await {
        Ok(converged) => converged,
        Err(error) => {
            let error = Error::from(error);
            record_failure(ctx, object.as_ref(), &error).await;
            return Err(error);
        }
    };
    record(ctx, object.as_ref(), converged.status, &converged.outcome).await?;
    Ok(requeue(converged.requeue_after))
}

async fn cleanup<K: Managed, P: PortalApi>(
    ctx: &Context<P>,
    object: Arc<K>,
) -> Result<Action, Error> {
    match driver::cleanup(&Cluster { ctx }, &ctx.portal, object.as_ref()).await {
        Ok(_) => Ok(Action::await_change()),
        // Refused (an account that still has child accounts, say): say so on the object, keep
        // the finalizer, and look again with backoff.
        Err(ConvergeError::Execute(error)) if !error.is_transient() => {
            let outcome = error.refusal(object.meta().generation).outcome();
            record(ctx, object.as_ref(), object.recorded_status(), &outcome).await?;
            Err(error.into())
        }
        Err(error) => Err(error.into()),
    }
}
