//! `apply`, `diff` and `status` from a folder of manifests: the operator's reconcile core
//! (the same pure plans and executors) driven from files instead of a cluster.
//!
//! What a cluster would keep (each object's uid, generation and status) is kept in a state file
//! next to the embedded portal (`.portal/` by default), so a second `apply` plans against what
//! the first one recorded and changes nothing. Invitation links are written to files with mode
//! 0600 under `.portal/links/`, never to the terminal unless asked.
//!
//! Layout: [`manifests`] (load and admit the files), `state` (the state file), `guards`
//! (refusals before anything is sent or removed), `output` (rows, the table, the plan); this
//! file holds the target portal and the run, one step per kind.

mod guards;
pub mod manifests;
mod output;
mod state;

use std::collections::BTreeMap;
use std::path::Path;

use kube::ResourceExt;
use serde_json::Value;
use sha2::Digest;

use crate::api::time::{Clock, SystemClock};
use crate::controller::{Managed, with_conditions};
use crate::crd::{AdminInvitationPhase, Delivery};
use crate::portal_client::HttpPortal;
use crate::reconcile::refs;
use crate::reconcile::refs::AccountState;
use crate::reconcile::refs::ParentState;
use crate::reconcile::{self, ExecuteError, Outcome};

use guards::owner_guard;
pub use guards::{Prune, Refusal, preflight};
use manifests::{Manifest, Object};
pub use output::{Report, Row, is_stalled, plan_text, table};
use state::{Entry, State, create_private_dir, write_private};

/// What the command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plan and carry out.
    Apply,
    /// Plan and print; change nothing.
    Diff,
    /// Observe and print; change nothing.
    Status,
}

/// Where the portal is.
pub struct Target {
    pub portal: HttpPortal,
    pub description: String,
    server: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Target {
    /// A portal at `url`, acting with `api_key`.
    pub fn remote(url: &str, api_key: &str) -> Result<Target, crate::portal_client::ClientError> {
        Ok(Target {
            portal: HttpPortal::new(url, api_key)?,
            description: url.to_owned(),
            server: None,
        })
    }

    /// The embedded portal: SQLite in `dir`, served on 127.0.0.1 for the command's duration (on
    /// `listen` when given, which is then also where its invitation links point).
    pub async fn embedded(
        dir: &Path,
        listen: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Target> {
        use anyhow::Context;
        create_private_dir(dir)?;
        let key_file = dir.join("api-key");
        let key = match std::fs::read_to_string(&key_file) {
            Ok(key) => key.trim().to_owned(),
            Err(_) => {
                let key = crate::portal::new_api_key();
                write_private(&key_file, &key)?;
                key
            }
        };
        let bind = listen.unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("listen on {bind} for the embedded portal"))?;
        let address = listener.local_addr()?;
        let public_url = match listen {
            Some(_) => format!("http://{address}"),
            // Where `apply --watch` (or `portal serve`) serves it by default.
            None => "http://127.0.0.1:8080".to_owned(),
        };
        let database = dir.join("portal.db");
        let portal = crate::portal::Portal::open(crate::portal::PortalConfig {
            database_url: format!("sqlite://{}", database.display()),
            public_url,
            bootstrap_api_key: Some(key.clone()),
            oidc: None,
            mail: None,
            branding_domains: Vec::new(),
            accept_attempts_per_minute: 20,
            dev_login: true,
        })
        .await
        .with_context(|| format!("open the embedded portal in {}", dir.display()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = portal
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Target {
            portal: HttpPortal::new(&format!("http://{address}"), &key)?,
            description: format!("the embedded portal in {}", database.display()),
            server: Some((stop, task)),
        })
    }

    pub async fn close(mut self) {
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

/// Runs `mode` over `manifests` against `target`; `state_dir` holds the state file and links.
pub async fn run(
    mode: Mode,
    manifests: &[Manifest],
    target: &Target,
    state_dir: &Path,
    prune: Prune,
) -> anyhow::Result<Report> {
    if mode != Mode::Status {
        preflight(manifests, &target.portal).await?;
    }
    create_private_dir(state_dir)?;
    let state_path = state_dir.join("state.json");
    let mut state = State::load(&state_path)?;
    let present: std::collections::BTreeSet<String> =
        manifests.iter().map(|m| m.object.key()).collect();
    let mut stale: Vec<String> = state
        .objects
        .keys()
        .filter(|key| !present.contains(*key))
        .cloned()
        .collect();
    // What depends on others goes first: bindings, invitations, managers, then accounts
    // (deepest first, by the length of their recorded path).
    stale.sort_by_key(|key| {
        let rank = match key.split('/').next().unwrap_or_default() {
            "RoleBinding" => 0,
            "AdminInvitation" => 1,
            "AccountManager" => 2,
            _ => 3,
        };
        let depth = state.objects[key].status["path"]
            .as_str()
            .map_or(0, |p| p.matches(" / ").count());
        (rank, std::cmp::Reverse(depth), key.clone())
    });
    if prune.enabled && !stale.is_empty() {
        let managed = state.objects.len();
        let cap = prune
            .max_removals
            .unwrap_or_else(|| managed.div_ceil(10).max(1));
        if stale.len() > cap {
            return Err(Refusal::TooManyRemovals {
                removals: stale.len(),
                cap,
                managed,
            }
            .into());
        }
        owner_guard(&state, &stale, &target.portal).await?;
    }
    let mut run = Run {
        mode,
        portal: &target.portal,
        state: &mut state,
        state_dir,
        accounts: BTreeMap::new(),
        planned: Default::default(),
        report: Report {
            rows: Vec::new(),
            links: Vec::new(),
            failures: 0,
        },
    };
    for manifest in manifests::in_dependency_order(manifests) {
        let row = run.step(manifest).await;
        run.report.rows.push(row);
    }
    for key in &stale {
        let row = if prune.enabled {
            run.remove(key).await
        } else {
            run.kept(key)
        };
        run.report.rows.push(row);
    }
    let report = run.report;
    if mode == Mode::Apply {
        state.save(&state_path)?;
    }
    Ok(report)
}

struct Run<'a> {
    mode: Mode,
    portal: &'a HttpPortal,
    state: &'a mut State,
    state_dir: &'a Path,
    /// The Accounts of this run with the status they reached, as the rest of the run sees them.
    accounts: BTreeMap<String, crate::crd::Account>,
    /// Accounts not in the portal yet that this run (diff) would create.
    planned: std::collections::BTreeSet<String>,
    report: Report,
}

/// A stable uid per object: a cluster would assign one; here it is derived from the key.
fn uid_for(key: &str) -> String {
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn describe_outcome(outcome: &Outcome) -> (String, String, String) {
    match outcome {
        Outcome::Ready { reason, message } => (reason.clone(), "True".into(), message.clone()),
        Outcome::Reconciling { reason, message } => {
            (reason.clone(), "False".into(), message.clone())
        }
        Outcome::Stalled { reason, message } | Outcome::NotReady { reason, message } => {
            (reason.clone(), "False".into(), message.clone())
        }
    }
}

impl Run<'_> {
    /// The object a state entry describes, as it was last applied.
    fn recorded(&self, key: &str) -> Option<(Object, String)> {
        let entry = self.state.objects.get(key)?;
        let parts: Vec<&str> = key.split('/').collect();
        let (kind, namespace, name) = match parts[..] {
            [kind, name] => (kind, None, name),
            [kind, namespace, name] => (kind, Some(namespace), name),
            _ => return None,
        };
        let mut value = serde_json::json!({
            "apiVersion": format!("{}/v1alpha1", crate::crd::GROUP),
            "kind": kind,
            "metadata": { "name": name, "uid": entry.uid, "generation": entry.generation },
            "spec": entry.spec,
        });
        if let Some(namespace) = namespace {
            value["metadata"]["namespace"] = Value::String(namespace.to_owned());
        }
        if !entry.status.is_null() {
            value["status"] = entry.status.clone();
        }
        let object = match kind {
            "Account" => Object::Account(serde_json::from_value(value).ok()?),
            "AdminInvitation" => Object::AdminInvitation(serde_json::from_value(value).ok()?),
            "RoleBinding" => Object::RoleBinding(serde_json::from_value(value).ok()?),
            "AccountManager" => Object::AccountManager(serde_json::from_value(value).ok()?),
            _ => return None,
        };
        let display = match namespace {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name.to_owned(),
        };
        Some((object, display))
    }

    /// A managed object missing from the manifests, left in place (no --prune).
    fn kept(&mut self, key: &str) -> Row {
        let (kind, name) = match self.recorded(key) {
            Some((object, display)) => (object.kind().to_owned(), display),
            None => (
                key.split('/').next().unwrap_or_default().to_owned(),
                key.to_owned(),
            ),
        };
        Row {
            kind,
            name,
            phase: "NotInManifests".into(),
            ready: "-".into(),
            message: "no longer in the manifests; left in place (--prune removes it)".into(),
            changes: Vec::new(),
            waiting: Vec::new(),
            object: Value::Null,
        }
    }

    /// Carries out the deletion plan of a managed object missing from the manifests.
    async fn remove(&mut self, key: &str) -> Row {
        let Some((object, display)) = self.recorded(key) else {
            if self.mode == Mode::Apply {
                self.state.objects.remove(key);
            }
            return self.kept(key);
        };
        let kind = object.kind().to_owned();
        let result = self.removal(&object).await;
        let (phase, ready, message, changes) = match result {
            Ok(changes) => {
                if self.mode == Mode::Apply {
                    self.state.objects.remove(key);
                }
                let message = if self.mode == Mode::Apply {
                    "removed: no longer in the manifests".to_owned()
                } else {
                    "would be removed: no longer in the manifests".to_owned()
                };
                let phase = if self.mode == Mode::Apply {
                    "Removed"
                } else {
                    "ToRemove"
                };
                // Removing something that left nothing in the portal is still a change here.
                let changes = if changes.is_empty() {
                    vec![format!(
                        "forget {kind} {display} (nothing to undo in the portal)"
                    )]
                } else {
                    changes
                };
                (phase.to_owned(), "-".to_owned(), message, changes)
            }
            Err(error) => {
                self.report.failures += 1;
                let mut message = crate::controller::error_chain(&error);
                if error.source.problem_type() == Some(crate::api::ProblemType::LastOwner) {
                    message.push_str(
                        " (the account must keep an AccountOwner: grant AccountOwner to someone else first)",
                    );
                }
                ("Error".to_owned(), "False".to_owned(), message, Vec::new())
            }
        };
        Row {
            kind,
            name: display,
            phase,
            ready,
            message,
            changes,
            waiting: Vec::new(),
            object: Value::Null,
        }
    }

    /// The portal side of removing `object`: what is (or would be) done.
    async fn removal(&mut self, object: &Object) -> Result<Vec<String>, ExecuteError> {
        let apply = self.mode == Mode::Apply;
        match object {
            Object::Account(account) => {
                use crate::reconcile::account::{Action, Desired, execute, observe, plan};
                let status = account.status.clone().unwrap_or_default();
                let observed = observe(self.portal, account)
                    .await
                    .map_err(ExecuteError::new("find the portal account"))?;
                let plan = plan(
                    &Desired::of(account, &status, ParentState::TopLevel, true),
                    &observed,
                );
                if apply {
                    execute(self.portal, &plan, observed).await?;
                }
                Ok(plan
                    .actions
                    .iter()
                    .filter_map(|a| match a {
                        Action::Delete { id } => Some(format!("delete portal account {id}")),
                        _ => None,
                    })
                    .collect())
            }
            Object::AdminInvitation(invitation) => {
                use crate::reconcile::admin_invitation::{
                    Action, Desired, execute, observe_for_cleanup, plan,
                };
                let status = invitation.status.clone().unwrap_or_default();
                let account = self.account_portal_id(&invitation.spec.account_ref.name);
                let observed = observe_for_cleanup(self.portal, account.as_deref(), invitation)
                    .await
                    .map_err(ExecuteError::new("find the portal invitation"))?;
                let namespace = invitation.namespace().unwrap_or_default();
                let name = invitation.name_any();
                let plan = plan(
                    &Desired::of(invitation, &status, AccountState::Missing, true, true),
                    &observed,
                    SystemClock.now_millis(),
                );
                if apply {
                    execute(self.portal, &plan, observed).await?;
                    let link = self
                        .state_dir
                        .join("links")
                        .join(&namespace)
                        .join(format!("{name}.link"));
                    let _ = std::fs::remove_file(link);
                }
                Ok(plan
                    .actions
                    .iter()
                    .filter_map(|a| match a {
                        Action::Revoke { id } => Some(format!("revoke pending invitation {id}")),
                        _ => None,
                    })
                    .collect())
            }
            Object::RoleBinding(binding) => {
                use crate::reconcile::role_binding::{Desired, execute, observe_for_cleanup, plan};
                let status = binding.status.clone().unwrap_or_default();
                let account = self.account_portal_id(&binding.spec.account_ref.name);
                let (account, observed) =
                    observe_for_cleanup(self.portal, account.as_deref(), binding)
                        .await
                        .map_err(ExecuteError::new("list the binding's grants"))?;
                let Some(account) = account else {
                    return Ok(Vec::new());
                };
                let plan = plan(
                    &Desired::of(binding, &status, AccountState::Missing, false, true),
                    &observed,
                );
                if apply {
                    execute(self.portal, &account, &plan).await?;
                }
                Ok(observed
                    .grants
                    .iter()
                    .map(|g| {
                        format!(
                            "revoke {} from {}",
                            g.role.as_str(),
                            g.email.as_deref().unwrap_or(&g.admin_id)
                        )
                    })
                    .collect())
            }
            Object::AccountManager(manager) => {
                use crate::reconcile::account_manager::{
                    Action, Desired, execute, observe_for_cleanup, plan,
                };
                let status = manager.status.clone().unwrap_or_default();
                let account = self.account_portal_id(&manager.spec.account_ref.name);
                let observed = observe_for_cleanup(self.portal, account.as_deref(), manager)
                    .await
                    .map_err(ExecuteError::new("find the account manager"))?;
                let plan = plan(
                    &Desired::of(manager, &status, AccountState::Missing, true),
                    &observed,
                    SystemClock.now_millis(),
                );
                if apply {
                    execute(self.portal, &plan, observed).await?;
                }
                Ok(plan
                    .actions
                    .iter()
                    .filter_map(|a| match a {
                        Action::Delete { .. } => {
                            Some(format!("delete account manager {}", manager.spec.email))
                        }
                        _ => None,
                    })
                    .collect())
            }
        }
    }

    /// The portal account of the Account named `name`: as this run left it, or as an earlier
    /// apply recorded it (an Account itself no longer in the manifests).
    fn account_portal_id(&self, name: &str) -> Option<String> {
        refs::portal_id(self.accounts.get(name)).or_else(|| {
            self.state.objects.get(&format!("Account/{name}"))?.status["portalId"]
                .as_str()
                .map(str::to_owned)
        })
    }

    /// The object with the uid, generation and status this run keeps for it.
    fn prepare<K: Managed + ResourceExt>(&mut self, object: &K, key: &str) -> K {
        let spec = serde_json::to_value(object)
            .ok()
            .and_then(|v| v.get("spec").cloned())
            .unwrap_or(Value::Null);
        let entry = self
            .state
            .objects
            .entry(key.to_owned())
            .or_insert_with(|| Entry {
                uid: uid_for(key),
                generation: 1,
                spec: spec.clone(),
                status: Value::Null,
            });
        if entry.spec != spec && self.mode == Mode::Apply {
            entry.generation += 1;
            entry.spec = spec;
        }
        let mut value = serde_json::to_value(object).expect("objects serialize");
        value["metadata"]["uid"] = Value::String(entry.uid.clone());
        value["metadata"]["generation"] = Value::from(entry.generation);
        if !entry.status.is_null() {
            value["status"] = entry.status.clone();
        }
        serde_json::from_value(value).expect("an object with its status deserializes")
    }

    /// Records the status an outcome gives and returns the row.
    fn finish<K: Managed + ResourceExt>(
        &mut self,
        object: &K,
        key: &str,
        status: K::Status,
        outcome: &Outcome,
        phase: Option<String>,
        changes: Vec<String>,
    ) -> Row {
        let status = with_conditions(object, status, outcome);
        let mut value = serde_json::to_value(object).expect("objects serialize");
        value["status"] = serde_json::to_value(&status).expect("statuses serialize");
        if self.mode == Mode::Apply
            && let Some(entry) = self.state.objects.get_mut(key)
        {
            entry.status = value["status"].clone();
        }
        let (reason, ready, message) = describe_outcome(outcome);
        Row {
            kind: K::kind(&()).to_string(),
            name: match object.namespace() {
                Some(namespace) => format!("{namespace}/{}", object.name_any()),
                None => object.name_any(),
            },
            phase: phase.unwrap_or(reason),
            ready,
            message,
            changes,
            waiting: Vec::new(),
            object: value,
        }
    }

    fn failed<K: Managed + ResourceExt>(
        &mut self,
        object: &K,
        error: &dyn std::error::Error,
    ) -> Row {
        self.report.failures += 1;
        Row {
            kind: K::kind(&()).to_string(),
            name: match object.namespace() {
                Some(namespace) => format!("{namespace}/{}", object.name_any()),
                None => object.name_any(),
            },
            phase: "Error".into(),
            ready: "False".into(),
            message: crate::controller::error_chain(error),
            changes: Vec::new(),
            waiting: Vec::new(),
            object: serde_json::to_value(object).unwrap_or(Value::Null),
        }
    }

    fn account_state(&self, name: &str, namespace: &str) -> AccountState {
        refs::account_state(self.accounts.get(name), namespace)
    }

    fn account_planned(&self, name: &str) -> bool {
        self.planned.contains(name)
    }

    async fn step(&mut self, manifest: &Manifest) -> Row {
        let key = manifest.object.key();
        match &manifest.object {
            Object::Account(object) => {
                let object = self.prepare(object, &key);
                match self.account(&object, &key).await {
                    Ok(row) => row,
                    Err(error) => self.failed(&object, &error),
                }
            }
            Object::AdminInvitation(object) => {
                let object = self.prepare(object, &key);
                match self.invitation(&object, &key).await {
                    Ok(row) => row,
                    Err(error) => self.failed(&object, &error),
                }
            }
            Object::RoleBinding(object) => {
                let object = self.prepare(object, &key);
                match self.role_binding(&object, &key).await {
                    Ok(row) => row,
                    Err(error) => self.failed(&object, &error),
                }
            }
            Object::AccountManager(object) => {
                let object = self.prepare(object, &key);
                match self.account_manager(&object, &key).await {
                    Ok(row) => row,
                    Err(error) => self.failed(&object, &error),
                }
            }
        }
    }

    async fn account(
        &mut self,
        object: &crate::crd::Account,
        key: &str,
    ) -> Result<Row, ExecuteError> {
        use crate::reconcile::account::{Desired, execute, observe, plan};
        let name = object.name_any();
        let status = object.status.clone().unwrap_or_default();
        let parent = refs::parent_state(
            object,
            object
                .spec
                .parent_ref
                .as_ref()
                .and_then(|p| self.accounts.get(&p.name)),
        );
        let parent_planned = object
            .spec
            .parent_ref
            .as_ref()
            .is_some_and(|p| self.account_planned(&p.name));
        let observed = observe(self.portal, object)
            .await
            .map_err(ExecuteError::new("find the portal account"))?;
        let desired = Desired::of(object, &status, parent, false);
        let first = plan(&desired, &observed);
        let mut changes: Vec<String> = first
            .actions
            .iter()
            .map(|action| match action {
                reconcile::account::Action::Create { account, .. } => format!(
                    "create {} account {:?}{}",
                    account.account_type,
                    account.display_name,
                    object
                        .spec
                        .parent_ref
                        .as_ref()
                        .map(|p| format!(" under {}", p.name))
                        .unwrap_or_default()
                ),
                reconcile::account::Action::Update { changes, .. } => {
                    format!(
                        "update {}",
                        serde_json::to_string(changes).unwrap_or_default()
                    )
                }
                reconcile::account::Action::Delete { id } => format!("delete account {id}"),
            })
            .collect();
        if parent_planned && changes.is_empty() {
            changes.push(format!(
                "create {:?} account {:?} under {} (once its parent is created)",
                object.spec.account_type,
                object.spec.display_name,
                object
                    .spec
                    .parent_ref
                    .as_ref()
                    .map(|p| p.name.as_str())
                    .unwrap_or_default()
            ));
        }
        let (status, outcome) = if self.mode != Mode::Apply || first.actions.is_empty() {
            (first.status.clone(), first.outcome.clone())
        } else {
            match execute(self.portal, &first, observed).await {
                Ok(observed) => {
                    let after = plan(
                        &Desired {
                            status: &first.status,
                            ..desired.clone()
                        },
                        &observed,
                    );
                    (after.status, after.outcome)
                }
                Err(error) if !error.is_transient() => {
                    changes.clear();
                    (first.status.clone(), error.refusal())
                }
                Err(error) => return Err(error),
            }
        };
        if status.portal_id.is_none() && !changes.is_empty() {
            self.planned.insert(name.clone());
        }
        self.accounts.insert(
            name.clone(),
            crate::crd::Account {
                status: Some(status.clone()),
                ..object.clone()
            },
        );
        let phase = match (&status.portal_id, &outcome) {
            (Some(_), Outcome::Ready { .. }) => Some("Ready".to_owned()),
            (None, _) if self.mode != Mode::Apply => Some("NotCreated".to_owned()),
            _ => None,
        };
        Ok(self.finish(object, key, status, &outcome, phase, changes))
    }

    async fn invitation(
        &mut self,
        object: &crate::crd::AdminInvitation,
        key: &str,
    ) -> Result<Row, ExecuteError> {
        use crate::reconcile::admin_invitation::{
            Action, Desired, Observed, execute, observe, plan,
        };
        let namespace = object.namespace().unwrap_or_default();
        let name = object.name_any();
        let status = object.status.clone().unwrap_or_default();
        let account = self.account_state(&object.spec.account_ref.name, &namespace);
        let observed = match &account {
            AccountState::Ready { portal_id } => observe(self.portal, portal_id, object)
                .await
                .map_err(ExecuteError::new("find the portal invitation"))?,
            _ => Observed::default(),
        };
        let link_file = self
            .state_dir
            .join("links")
            .join(&namespace)
            .join(format!("{name}.link"));
        let link_stored = object.spec.delivery != Delivery::Link || link_file.exists();
        let desired = Desired::of(object, &status, account.clone(), false, link_stored);
        let now = SystemClock.now_millis();
        let first = plan(&desired, &observed, now);
        let mut changes: Vec<String> = first
            .actions
            .iter()
            .map(|action| match action {
                Action::Create {
                    invitation,
                    attempt,
                    ..
                } => format!(
                    "invite {} as {} by {} (expires after {}){}",
                    invitation.email,
                    invitation
                        .roles
                        .iter()
                        .flatten()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    invitation.delivery.unwrap_or_default(),
                    invitation.expires_after.as_deref().unwrap_or_default(),
                    if *attempt > 1 {
                        format!(", attempt {attempt}")
                    } else {
                        String::new()
                    }
                ),
                Action::UpdateRoles { roles, .. } => format!(
                    "change the pending invitation's roles to {}",
                    roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Action::Revoke { id } => format!("revoke invitation {id}"),
                Action::Resend { .. } => "issue a new link (the stored one is missing)".into(),
            })
            .collect();
        if self.account_planned(&object.spec.account_ref.name) {
            changes.push(format!(
                "invite {} (once Account {} is created)",
                object.spec.email, object.spec.account_ref.name
            ));
        }
        let (status, outcome) = if self.mode != Mode::Apply || first.actions.is_empty() {
            (first.status.clone(), first.outcome.clone())
        } else {
            match execute(self.portal, &first, observed).await {
                Ok(executed) => {
                    if let Some(link) = executed.link {
                        let stored = std::fs::create_dir_all(link_file.parent().expect("a parent"))
                            .and_then(|_| write_private(&link_file, &link));
                        if stored.is_ok() {
                            self.report.links.push((
                                format!("{namespace}/{name}"),
                                link_file.clone(),
                                link,
                            ));
                        }
                    }
                    let after = plan(
                        &Desired {
                            status: &first.status,
                            link_stored: true,
                            ..desired.clone()
                        },
                        &executed.observed,
                        SystemClock.now_millis(),
                    );
                    (after.status, after.outcome)
                }
                Err(error) if !error.is_transient() => {
                    changes.clear();
                    (first.status.clone(), error.refusal())
                }
                Err(error) => return Err(error),
            }
        };
        let phase = status.phase.map(|p| match p {
            AdminInvitationPhase::Pending => "Pending",
            AdminInvitationPhase::Accepted => "Accepted",
            AdminInvitationPhase::Expired => "Expired",
            AdminInvitationPhase::Revoked => "Revoked",
            AdminInvitationPhase::Failed => "Failed",
        });
        let phase = match (phase, self.mode) {
            (Some(phase), _) => Some(phase.to_owned()),
            (None, Mode::Apply) => None,
            (None, _) => Some("NotSent".to_owned()),
        };
        Ok(self.finish(object, key, status, &outcome, phase, changes))
    }

    async fn role_binding(
        &mut self,
        object: &crate::crd::RoleBinding,
        key: &str,
    ) -> Result<Row, ExecuteError> {
        use crate::reconcile::role_binding::{
            Action, Desired, Observed, execute, observe, plan, settle,
        };
        let namespace = object.namespace().unwrap_or_default();
        let status = object.status.clone().unwrap_or_default();
        let account = self.account_state(&object.spec.account_ref.name, &namespace);
        let observed = match &account {
            AccountState::Ready { portal_id } => observe(self.portal, portal_id, object)
                .await
                .map_err(ExecuteError::new("list the binding's grants"))?,
            _ => Observed::default(),
        };
        let holds_contracts =
            refs::holds_contracts(self.accounts.get(&object.spec.account_ref.name));
        let desired = Desired::of(object, &status, account.clone(), holds_contracts, false);
        let first = plan(&desired, &observed);
        let describe = |action: &Action| match action {
            Action::Grant {
                email,
                roles,
                scope,
                ..
            } => format!(
                "grant {} to {email} ({scope:?})",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Action::Revoke { grant_id } => format!("revoke grant {grant_id}"),
        };
        let was_waiting = |email: &str| {
            status
                .subjects
                .iter()
                .any(|s| s.subject == email && s.state == crate::crd::GrantState::WaitingForSubject)
        };
        let mut changes = Vec::new();
        let mut waiting = Vec::new();
        if self.account_planned(&object.spec.account_ref.name) {
            changes.push(format!(
                "grant {} (once Account {} is created)",
                object
                    .spec
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                object.spec.account_ref.name
            ));
        }
        let (status, outcome) = match first.settled.clone() {
            Some(settled) => settled,
            None if self.mode != Mode::Apply => {
                for action in &first.actions {
                    match action {
                        // Last time this subject was not an admin yet: granted once they accept.
                        Action::Grant { email, .. } if was_waiting(email) => {
                            waiting.push(format!(
                                "{} once {email} accepts an invitation",
                                describe(action)
                            ));
                        }
                        _ => changes.push(describe(action)),
                    }
                }
                if changes.is_empty() {
                    (
                        status.clone(),
                        Outcome::Reconciling {
                            reason: "WaitingForSubject".into(),
                            message: waiting.join("; "),
                        },
                    )
                } else {
                    settle(&desired, &BTreeMap::new())
                }
            }
            None => {
                let AccountState::Ready { portal_id } = &account else {
                    unreachable!("a plan with actions has a ready account")
                };
                match execute(self.portal, portal_id, &first).await {
                    Ok(results) => {
                        for action in &first.actions {
                            let made = match action {
                                Action::Grant { email, .. } => matches!(
                                    results.get(email),
                                    Some(crate::reconcile::role_binding::GrantResult::Granted)
                                ),
                                Action::Revoke { .. } => true,
                            };
                            if made {
                                changes.push(describe(action));
                            }
                        }
                        settle(&desired, &results)
                    }
                    Err(error) if !error.is_transient() => {
                        (settle(&desired, &BTreeMap::new()).0, error.refusal())
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        let phase = if self.mode != Mode::Apply && !changes.is_empty() {
            Some("NotGranted".to_owned())
        } else {
            None
        };
        let mut row = self.finish(object, key, status, &outcome, phase, changes);
        row.waiting = waiting;
        Ok(row)
    }

    async fn account_manager(
        &mut self,
        object: &crate::crd::AccountManager,
        key: &str,
    ) -> Result<Row, ExecuteError> {
        use crate::reconcile::account_manager::{
            Action, Desired, Observed, execute, observe, plan,
        };
        let namespace = object.namespace().unwrap_or_default();
        let status = object.status.clone().unwrap_or_default();
        let account = self.account_state(&object.spec.account_ref.name, &namespace);
        let observed = match &account {
            AccountState::Ready { portal_id } => observe(self.portal, portal_id, object)
                .await
                .map_err(ExecuteError::new("find the account manager"))?,
            _ => Observed::default(),
        };
        let desired = Desired::of(object, &status, account.clone(), false);
        let now = SystemClock.now_millis();
        let first = plan(&desired, &observed, now);
        let mut changes: Vec<String> = first
            .actions
            .iter()
            .map(|action| match action {
                Action::Create { manager, .. } => format!(
                    "create account manager {} (the portal emails a temporary password)",
                    manager.email
                ),
                Action::ResendActivation { .. } => "send a new activation email".into(),
                Action::Delete { id } => format!("delete account manager {id}"),
            })
            .collect();
        if self.account_planned(&object.spec.account_ref.name) {
            changes.push(format!(
                "create account manager {} (once Account {} is created)",
                object.spec.email, object.spec.account_ref.name
            ));
        }
        let (status, outcome) = if self.mode != Mode::Apply || first.actions.is_empty() {
            (first.status.clone(), first.outcome.clone())
        } else {
            match execute(self.portal, &first, observed).await {
                Ok(observed) => {
                    let after = plan(
                        &Desired {
                            status: &first.status,
                            ..desired.clone()
                        },
                        &observed,
                        SystemClock.now_millis(),
                    );
                    (after.status, after.outcome)
                }
                Err(error) if !error.is_transient() => {
                    changes.clear();
                    (first.status.clone(), error.refusal())
                }
                Err(error) => return Err(error),
            }
        };
        let phase = match (status.phase, self.mode) {
            (Some(phase), _) => Some(format!("{phase:?}")),
            (None, Mode::Apply) => None,
            (None, _) => Some("NotCreated".to_owned()),
        };
        Ok(self.finish(object, key, status, &outcome, phase, changes))
    }
}
