//! Refusals before anything is sent or removed: the prune cap, the last-AccountOwner guard,
//! and escalations the API key's admin could not grant.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::manifests::{self, Manifest, Object};
use super::state::State;
use crate::portal_client::{HttpPortal, PortalApi};

/// Objects this tool made that are no longer in the manifests: removed only when asked, and no
/// more than a cap at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prune {
    pub enabled: bool,
    /// The most objects one run may remove; by default 10 % of the managed objects (at least 1).
    pub max_removals: Option<usize>,
}

/// Why a run refused to start.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{removals} object(s) are no longer in the manifests and would be removed, more than the cap of {cap} (10% of the {managed} managed object(s)); check that no manifests are missing, then pass --max-removals {removals} to allow it"
    )]
    TooManyRemovals {
        removals: usize,
        cap: usize,
        managed: usize,
    },
    #[error(
        "removing RoleBinding {binding} would leave its account (portal id {account}) without an AccountOwner; grant AccountOwner to someone else first, or keep the binding. Nothing was removed"
    )]
    LastOwner { binding: String, account: String },
}

/// Refuses a prune that would leave an account without an AccountOwner: every AccountOwner
/// grant on it would be revoked by the RoleBindings being removed.
pub(super) async fn owner_guard(
    state: &State,
    stale: &[String],
    portal: &HttpPortal,
) -> anyhow::Result<()> {
    let mut removed_sources: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for key in stale.iter().filter(|k| k.starts_with("RoleBinding/")) {
        let entry = &state.objects[key];
        let status = entry.status.value();
        let Some(account) = status["accountPortalId"].as_str() else {
            continue;
        };
        let parts: Vec<&str> = key.split('/').collect();
        let [_, namespace, name] = parts[..] else {
            continue;
        };
        let source = crate::reconcile::role_binding::source(namespace, name, &entry.uid);
        removed_sources
            .entry(account.to_owned())
            .or_default()
            .push((source, format!("{namespace}/{name}")));
    }
    for (account, sources) in removed_sources {
        let grants = match portal.grants(&account).await {
            Ok(grants) => grants,
            Err(error) if error.is_not_found() => continue,
            Err(error) => return Err(error.into()),
        };
        let owners: Vec<_> = grants
            .iter()
            .filter(|g| g.role == crate::domain::Role::AccountOwner)
            .collect();
        if owners.is_empty() {
            continue;
        }
        let kept = owners
            .iter()
            .any(|g| !sources.iter().any(|(source, _)| *source == g.source));
        if !kept {
            let binding = owners
                .iter()
                .find_map(|g| sources.iter().find(|(source, _)| *source == g.source))
                .map(|(_, name)| name.clone())
                .unwrap_or_default();
            return Err(Refusal::LastOwner { binding, account }.into());
        }
    }
    Ok(())
}

/// Refuses, before anything is sent, roles the API key's admin could not grant: on each
/// Account that already exists, every role an AdminInvitation or RoleBinding asks for must be
/// one the caller holds there (the portal's escalation rule). The platform key holds them all.
pub async fn preflight(manifests: &[Manifest], portal: &HttpPortal) -> anyhow::Result<()> {
    let me = portal.whoami().await?;
    if me.platform {
        return Ok(());
    }
    let accounts: BTreeMap<String, &crate::crd::Account> = manifests
        .iter()
        .filter_map(|m| match &m.object {
            Object::Account(a) => Some((a.name_any(), a)),
            _ => None,
        })
        .collect();
    let mut held: BTreeMap<String, Option<Vec<crate::domain::Role>>> = BTreeMap::new();
    let mut problems = Vec::new();
    for manifest in manifests {
        let (account_name, roles, field) = match &manifest.object {
            Object::AdminInvitation(o) => (&o.spec.account_ref.name, &o.spec.roles, "spec.roles"),
            Object::RoleBinding(o) => (&o.spec.account_ref.name, &o.spec.roles, "spec.roles"),
            _ => continue,
        };
        if !held.contains_key(account_name) {
            let roles = match accounts.get(account_name) {
                Some(account) => {
                    match crate::reconcile::account::observe(portal, account)
                        .await?
                        .account
                    {
                        Some(found) => Some(portal.roles_held(&me.id, &found.id).await?),
                        // Created by this run: the portal decides when it exists.
                        None => None,
                    }
                }
                None => None,
            };
            held.insert(account_name.clone(), roles);
        }
        let Some(Some(holding)) = held.get(account_name) else {
            continue;
        };
        let missing: Vec<&str> = roles
            .iter()
            .filter(|r| !holding.contains(r))
            .map(|r| r.as_str())
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{}: {}/{}: {field}: Forbidden: the portal API key's admin cannot grant {} on Account {account_name:?}: it holds {} there, and granting a role you do not hold is an escalation",
                manifest.source(),
                manifest.object.kind(),
                manifest.object.display_name(),
                missing.join(", "),
                if holding.is_empty() {
                    "no roles".to_owned()
                } else {
                    holding.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
                }
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(manifests::Problems(problems).into())
    }
}
