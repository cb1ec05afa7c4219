//! `apply`, `diff` and `status` from a folder of manifests: the operator's reconcile core
//! (the same pure plans and executors) driven from files instead of a cluster.
//!
//! What a cluster would keep (each object's uid, generation and status) is kept in a state file
//! next to the embedded portal (`.portal/` by default), so a second `apply` plans against what
//! the first one recorded and changes nothing. Invitation links are written to files with mode
//! 0600 under `.portal/links/`, never to the terminal unless asked.
//!
//! Layout: [`manifests`] (load and admit the files), `state` (the state file), `folder` (the
//! folder as the converge driver's host, and what each kind shows), `guards` (refusals before
//! anything is sent or removed), `output` (rows, the table, the plan); this file holds the
//! target portal and the run: each object converged (or, with `--prune`, cleaned up) through
//! the same driver the operator runs.

mod folder;
mod guards;
pub mod manifests;
mod output;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use kube::ResourceExt;
use serde_json::Value;
use sha2::Digest;

use crate::api::ProblemType;
use crate::controller::{Managed, with_conditions};
use crate::crd::Account;
use crate::portal_client::HttpPortal;
use crate::portal_client::bulk::{Bulk, Snapshot};
use crate::reconcile::driver::{self, Mark};
use crate::reconcile::{Host as _, Outcome, refs};

use folder::{Folder, Shown};

use guards::owner_guard;
pub use guards::{Prune, Refusal, preflight};
use manifests::{Manifest, Object, on_object};
pub use output::{ProvisionedUsers, Report, Row, is_stalled, plan_text, provisioned_text, table};
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
    keep_objects: bool,
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
    // What depends on others goes first: users, bindings, user roles, teams, invitations,
    // managers, subscriptions, then accounts
    // (deepest first, by the length of their recorded path).
    stale.sort_by_key(|key| {
        let rank = match key.split('/').next().unwrap_or_default() {
            "User" => 0,
            "RoleBinding" => 1,
            "UserRole" => 2,
            "Team" => 3,
            "AdminInvitation" => 4,
            "AccountManager" => 5,
            "Subscription" => 6,
            _ => 7,
        };
        let depth = state.objects[key].status.value()["path"]
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
    let recorded_portal_ids = state
        .objects
        .iter()
        .filter_map(|(key, entry)| {
            let name = key.strip_prefix("Account/")?;
            Some((
                name.to_owned(),
                entry.status.value()["portalId"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let snapshot = Snapshot::until_written();
    let bulk = Bulk::new(&target.portal, &snapshot);
    let mut run = Run {
        mode,
        portal: &bulk,
        state: &mut state,
        folder: Folder {
            acts: mode == Mode::Apply,
            state_dir,
            accounts: BTreeMap::new(),
            recorded_portal_ids,
            links: Default::default(),
        },
        planned: BTreeSet::new(),
        keep_objects,
        report: Report {
            rows: Vec::new(),
            links: Vec::new(),
            failures: 0,
            provisioned: Vec::new(),
        },
    };
    // Accounts one at a time, parents first: everything after reads them. Then subscriptions,
    // account managers and invitations, then role bindings (whose subjects they may be) and
    // users (who take the subscriptions' licences), each group
    // converging CONCURRENCY objects at once; rows keep the manifests' dependency order.
    let (accounts, rest): (Vec<&Manifest>, Vec<&Manifest>) =
        manifests::in_dependency_order(manifests)
            .into_iter()
            .partition(|m| matches!(m.object, Object::Account(_)));
    for manifest in accounts {
        if let Object::Account(account) = &manifest.object {
            let row = run.account(&manifest.object.key(), account).await;
            run.report.rows.push(row);
        }
    }
    let (later, members): (Vec<&Manifest>, Vec<&Manifest>) = rest
        .into_iter()
        .partition(|m| matches!(m.object, Object::RoleBinding(_) | Object::User(_)));
    let (roles, members): (Vec<&Manifest>, Vec<&Manifest>) = members
        .into_iter()
        .partition(|m| matches!(m.object, Object::UserRole(_)));
    for group in [members, roles, later] {
        run.converge_all(&group).await;
    }
    run.retry_late_references(manifests).await;
    run.recount(manifests).await;
    if mode == Mode::Status {
        run.report.provisioned = provisioned_users(manifests, &run.folder, &target.portal).await;
    }
    tracing::debug!(lists = snapshot.lists(), "observed in bulk");
    for key in &stale {
        let row = if prune.enabled || mode == Mode::Diff {
            run.remove(key, prune.enabled).await
        } else {
            run.kept(key)
        };
        run.report.rows.push(row);
    }
    let mut report = run.report;
    report.links = run.folder.links.into_inner().expect("links");
    if mode == Mode::Apply {
        state.save(&state_path)?;
    }
    Ok(report)
}

/// Per Account of the manifests that the portal has, the users SCIM provisioned there. An
/// account that cannot be read is left out: `status` reports the manifests' objects first.
async fn provisioned_users(
    manifests: &[Manifest],
    folder: &Folder<'_>,
    portal: &HttpPortal,
) -> Vec<ProvisionedUsers> {
    use crate::portal_client::PortalApi;

    let mut provisioned = Vec::new();
    for manifest in manifests {
        let Object::Account(account) = &manifest.object else {
            continue;
        };
        let name = account.name_any();
        let Some(id) = folder.account_portal_id(&name) else {
            continue;
        };
        let Ok(users) = portal.users(&id).await else {
            continue;
        };
        let scim: Vec<_> = users
            .iter()
            .filter(|u| u.provisioned_by == crate::api::Provisioner::Scim)
            .collect();
        provisioned.push(ProvisionedUsers {
            account: name,
            user_ids: scim.iter().map(|u| u.user_id.clone()).collect(),
            waiting_for_license: scim.iter().filter(|u| u.waiting_for_license).count(),
        });
    }
    provisioned
}

/// How many objects of one group converge at once. The embedded portal commits writes in
/// groups (SQLite group commit), so a few requests in flight keep both cores busy.
const CONCURRENCY: usize = 16;

/// One object's converge, before it is recorded in the run's state and report.
struct Converging {
    row: Row,
    /// The status it reached: a group keeps every object's until it is done.
    status: Reached,
}

/// The status one converge reached.
enum Reached {
    /// None: the converge failed.
    Failed,
    /// The one the state has.
    Recorded,
    /// A new one, as raw JSON.
    New(state::Json),
}

struct Run<'a> {
    mode: Mode,
    portal: &'a Bulk<'a, HttpPortal>,
    state: &'a mut State,
    folder: Folder<'a>,
    /// Accounts not in the portal yet that this run (diff) would create.
    planned: BTreeSet<String>,
    /// Whether rows keep their object (for `--output json|yaml`); 10,000 of them are memory.
    keep_objects: bool,
    report: Report,
}

/// A stable uid per object: a cluster would assign one; here it is derived from the key.
fn uid_for(key: &str, incarnation: u32) -> String {
    // Stable across runs (a crash before the state is saved finds what it made by reference);
    // a new incarnation after a prune is a new object.
    let seed = match incarnation {
        0 => key.to_owned(),
        n => format!("{key}#{n}"),
    };
    let digest = sha2::Sha256::digest(seed.as_bytes());
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
            "spec": entry.spec.value(),
        });
        if let Some(namespace) = namespace {
            value["metadata"]["namespace"] = Value::String(namespace.to_owned());
        }
        if !entry.status.is_null() {
            value["status"] = entry.status.value();
        }
        let object = Object::decode(kind, value)?.ok()?;
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
            updates: Vec::new(),
            waiting: Vec::new(),
            removals: Vec::new(),
            object: None,
            stalled: false,
            in_manifests: false,
        }
    }

    /// The deletion plan of a managed object missing from the manifests: carried out by
    /// `apply --prune`, shown by `diff` (with or without `--prune`: `diff` shows what pruning
    /// would do, so a pull request that removes an object is a change).
    async fn remove(&mut self, key: &str, pruning: bool) -> Row {
        let Some((object, display)) = self.recorded(key) else {
            if self.mode == Mode::Apply {
                self.state.objects.remove(key);
            }
            return self.kept(key);
        };
        let kind = object.kind().to_owned();
        let result = on_object!(&object, o => driver::cleanup(&self.folder, self.portal, o).await);
        let apply = self.mode == Mode::Apply;
        let orphan = matches!(&object, Object::Account(a) if a.spec.deletion_policy == crate::crd::DeletionPolicy::Orphan);
        let (phase, ready, message, removals) = match result {
            Ok(changes) => {
                if apply {
                    self.state.objects.remove(key);
                    *self.state.pruned.entry(key.to_owned()).or_default() += 1;
                }
                let (phase, message) = match (apply, pruning) {
                    (true, _) => ("Removed", "removed: no longer in the manifests"),
                    (false, true) => ("ToRemove", "would be removed: no longer in the manifests"),
                    (false, false) => (
                        "NotInManifests",
                        "no longer in the manifests; apply --prune would remove it",
                    ),
                };
                // Removing something that left nothing in the portal is still a change here.
                let changes = if !changes.is_empty() {
                    changes
                } else if orphan {
                    vec![format!(
                        "stop managing {kind} {display} (deletionPolicy: Orphan keeps the portal account)"
                    )]
                } else {
                    vec![format!(
                        "forget {kind} {display} (nothing to undo in the portal)"
                    )]
                };
                (
                    phase.to_owned(),
                    "-".to_owned(),
                    message.to_owned(),
                    changes,
                )
            }
            Err(error) => {
                self.report.failures += 1;
                let mut message = crate::controller::error_chain(&error);
                if error.portal().and_then(|e| e.problem_type()) == Some(ProblemType::LastOwner) {
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
            changes: Vec::new(),
            updates: Vec::new(),
            waiting: Vec::new(),
            removals,
            object: None,
            stalled: false,
            in_manifests: false,
        }
    }

    /// The object with the uid, generation and status this run keeps for it.
    fn prepare<K: Managed + ResourceExt>(&mut self, object: &K, key: &str) -> K {
        self.enter(object, key);
        self.prepared(object, key)
    }

    /// Gives `object` its entry in the state: a uid when it is new, a new generation when its
    /// spec changed (apply).
    fn enter<K: Managed + ResourceExt>(&mut self, object: &K, key: &str) {
        let spec = serde_json::to_value(object)
            .ok()
            .and_then(|mut v| v.get_mut("spec").map(Value::take))
            .unwrap_or(Value::Null);
        let incarnation = self.state.pruned.get(key).copied().unwrap_or(0);
        let entry = self
            .state
            .objects
            .entry(key.to_owned())
            .or_insert_with(|| Entry {
                uid: uid_for(key, incarnation),
                generation: 1,
                spec: state::Json::of(&spec),
                status: state::Json::null(),
            });
        if !entry.spec.is(&spec) && self.mode == Mode::Apply {
            entry.generation += 1;
            entry.spec = state::Json::of(&spec);
        }
    }

    /// `object` with the uid, generation and status of its entry (made by [`Run::enter`]).
    fn prepared<K: Managed + ResourceExt>(&self, object: &K, key: &str) -> K {
        let entry = &self.state.objects[key];
        let mut value = serde_json::to_value(object).expect("objects serialize");
        value["metadata"]["uid"] = Value::String(entry.uid.clone());
        value["metadata"]["generation"] = Value::from(entry.generation);
        if !entry.status.is_null() {
            value["status"] = entry.status.value();
        }
        serde_json::from_value(value).expect("an object with its status deserializes")
    }

    fn failed<K: Managed>(object: &K, error: &dyn std::error::Error) -> Converging {
        let row = Row {
            kind: K::kind(&()).to_string(),
            name: display_name(object),
            phase: "Error".into(),
            ready: "False".into(),
            message: crate::controller::error_chain(error),
            changes: Vec::new(),
            updates: Vec::new(),
            waiting: Vec::new(),
            removals: Vec::new(),
            object: serde_json::to_string(object).ok(),
            stalled: false,
            in_manifests: true,
        };
        Converging {
            row,
            status: Reached::Failed,
        }
    }

    /// Keeps what a converge reached: the status in the state (apply), the row in the report.
    fn record(&mut self, key: &str, mut converging: Converging) -> Row {
        if !self.keep_objects {
            // An Account's, kept for the rest of the run until here.
            converging.row.object = None;
        }
        match converging.status {
            Reached::Failed => self.report.failures += 1,
            Reached::Recorded => {}
            Reached::New(status) => {
                if self.mode == Mode::Apply
                    && let Some(entry) = self.state.objects.get_mut(key)
                {
                    entry.status = status;
                }
            }
        }
        converging.row
    }

    /// Converges a group of independent objects, CONCURRENCY at a time.
    async fn converge_all(&mut self, group: &[&Manifest]) {
        use futures::StreamExt as _;
        let keys: Vec<String> = group.iter().map(|m| m.object.key()).collect();
        for (manifest, key) in group.iter().zip(&keys) {
            on_object!(&manifest.object, o => self.enter(o, key));
        }
        // What each account still has to converge: its lists are dropped when that reaches 0.
        let account_of = |object: &Object| {
            object
                .account_ref()
                .and_then(|name| self.folder.account_portal_id(name))
        };
        let mut remaining: HashMap<String, usize> = HashMap::new();
        for manifest in group {
            if let Some(account) = account_of(&manifest.object) {
                *remaining.entry(account).or_default() += 1;
            }
        }
        let remaining = std::sync::Mutex::new(remaining);
        let this = &*self;
        // Each object is made ready as its turn comes: 10,000 of them made at once were a fifth
        // of a run's memory.
        let converged: Vec<Converging> = futures::stream::iter(group.iter().zip(&keys))
            .map(|(manifest, key)| async {
                let converging = on_object!(&manifest.object, o => {
                    let object = this.prepared(o, key);
                    this.converge(&object, key, this.keep_objects).await
                });
                if let Some(account) = account_of(&manifest.object) {
                    let mut remaining = remaining.lock().expect("remaining");
                    if let Some(left) = remaining.get_mut(&account) {
                        *left -= 1;
                        if *left == 0 {
                            this.portal.snapshot().forget(&account);
                        }
                    }
                }
                converging
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        for (key, converging) in keys.iter().zip(converged) {
            let row = self.record(key, converging);
            self.report.rows.push(row);
        }
    }

    /// A Team naming a user role that was created after it (or a role naming a team made later)
    /// was refused as not there yet: each such object is converged once more, now that the
    /// whole run has written what it names.
    async fn retry_late_references(&mut self, manifests: &[Manifest]) {
        if self.mode != Mode::Apply {
            return;
        }
        let late: Vec<&Manifest> = manifests
            .iter()
            .filter(|m| {
                self.state
                    .objects
                    .get(&m.object.key())
                    .is_some_and(|entry| {
                        entry.status.value()["refused"]["reason"]
                            == ProblemType::UnknownReference.reason().as_str()
                    })
            })
            .collect();
        for manifest in late {
            self.converge_again(manifest).await;
        }
    }

    /// Converges `manifest` once more and puts the result in its row, after what the row's
    /// first pass changed.
    async fn converge_again(&mut self, manifest: &Manifest) {
        let key = manifest.object.key();
        let object = on_object!(&manifest.object, o => wrap self.prepare(o, &key));
        let converging = on_object!(&object, o => self.converge(o, &key, self.keep_objects).await);
        let again = self.record(&key, converging);
        if let Some(row) = self
            .report
            .rows
            .iter_mut()
            .find(|row| row.kind == again.kind && row.name == again.name)
        {
            let first = std::mem::replace(row, again);
            row.changes.splice(0..0, first.changes);
            row.updates.splice(0..0, first.updates);
            if row.object.is_none() {
                row.object = first.object;
            }
        }
    }

    /// Users took or gave back licences, roles and memberships after the Subscriptions, Teams and
    /// UserRoles converged: reads those again (one list per account and kind), so the table and
    /// the state show the counts as the run left them.
    async fn recount(&mut self, manifests: &[Manifest]) {
        let users_changed = self
            .report
            .rows
            .iter()
            .any(|row| row.kind == "User" && !row.changes.is_empty());
        if self.mode != Mode::Apply || !users_changed {
            return;
        }
        self.portal.snapshot().forget_counts();
        for manifest in manifests {
            if !matches!(
                manifest.object,
                Object::Subscription(_) | Object::Team(_) | Object::UserRole(_)
            ) {
                continue;
            }
            self.converge_again(manifest).await;
        }
    }

    /// Converges an Account; the rest of the run sees it as it now stands.
    async fn account(&mut self, key: &str, object: &Account) -> Row {
        let object = self.prepare(object, key);
        let converging = self.converge(&object, key, true).await;
        let reached = converging
            .row
            .object
            .as_deref()
            .and_then(|text| serde_json::from_str::<Account>(text).ok())
            .unwrap_or_else(|| object.clone());
        let row = self.record(key, converging);
        let made = refs::portal_id(Some(&reached)).is_some();
        if !made && !row.changes.is_empty() {
            self.planned.insert(object.name_any());
        }
        self.folder
            .accounts
            .insert(object.name_any(), Arc::new(reached));
        row
    }

    /// Converges one object through the driver; what it reached is kept by [`Run::record`].
    /// `keep`: whether the row keeps the object reached (an Account's is read by the rest of the
    /// run; others only for `--output json|yaml`).
    /// `key`: its entry in the state.
    async fn converge<K: Shown>(&self, object: &K, key: &str, keep: bool) -> Converging {
        let converged = match driver::converge(&self.folder, self.portal, object).await {
            Ok(converged) => converged,
            Err(error) => return Self::failed(object, &error),
        };
        let mut changes = Vec::new();
        let mut updates = Vec::new();
        let mut removals = Vec::new();
        for (mark, text) in converged.changes {
            match mark {
                Mark::Add => changes.push(text),
                Mark::Change => updates.push(text),
                Mark::Remove => removals.push(text),
            }
        }
        // What waits on an Account this run would create is a change too, said as such.
        let once = if object
            .parent_ref()
            .is_some_and(|p| self.planned.contains(&p.name))
        {
            Some("its parent".to_owned())
        } else {
            object
                .account_ref()
                .filter(|a| self.planned.contains(&a.name))
                .map(|a| format!("Account {}", a.name))
        };
        if let Some(once) = once
            && changes.is_empty()
            && updates.is_empty()
            && removals.is_empty()
        {
            changes.push(format!("{} (once {once} is created)", object.intent()));
        }
        let phase = K::phase(&converged.status, &converged.outcome).or_else(|| {
            (self.mode != Mode::Apply && !(changes.is_empty() && updates.is_empty()))
                .then(|| K::NOT_MADE.to_owned())
        });
        let status = with_conditions(object, converged.status, &converged.outcome);
        let mut value = serde_json::to_value(object).expect("objects serialize");
        value["status"] = serde_json::to_value(&status).expect("statuses serialize");
        // A status as recorded is not kept twice (most of a no-op run's objects).
        let kept = match self.state.objects.get(key) {
            Some(entry) if entry.status.is(&value["status"]) => Reached::Recorded,
            _ => Reached::New(state::Json::of(&value["status"])),
        };
        let outcome = &converged.outcome;
        let ready = if matches!(outcome, Outcome::Ready { .. }) {
            "True"
        } else {
            "False"
        };
        let row = Row {
            kind: K::kind(&()).to_string(),
            name: display_name(object),
            phase: phase.unwrap_or_else(|| outcome.reason().to_owned()),
            ready: ready.into(),
            message: outcome.message().to_owned(),
            changes,
            updates,
            waiting: converged.waiting,
            removals,
            stalled: output::is_stalled(&value),
            in_manifests: true,
            object: keep.then(|| value.to_string()),
        };
        Converging { row, status: kept }
    }
}

fn display_name<K: ResourceExt>(object: &K) -> String {
    match object.namespace() {
        Some(namespace) => format!("{namespace}/{}", object.name_any()),
        None => object.name_any(),
    }
}

/// The portal account `name` means on the command line: the Account object of that name an
/// earlier `apply` with `state_dir` recorded, else a portal account id, else the one account the
/// key can see with that display name.
pub async fn resolve_account(
    state_dir: &Path,
    portal: &HttpPortal,
    name: &str,
) -> anyhow::Result<crate::api::AccountView> {
    use crate::portal_client::PortalApi;

    let state = State::load(&state_dir.join("state.json"))?;
    if let Some(entry) = state.objects.get(&format!("Account/{name}"))
        && let Some(id) = entry.status.value()["portalId"].as_str()
        && let Some(account) = portal.account(id).await?
    {
        return Ok(account);
    }
    if let Some(account) = portal.account(name).await? {
        return Ok(account);
    }
    let visible = portal.accounts_under(None).await?;
    let mut matching = visible
        .iter()
        .filter(|account| account.display_name.eq_ignore_ascii_case(name));
    match (matching.next(), matching.next()) {
        (Some(account), None) => Ok(account.clone()),
        (Some(_), Some(_)) => anyhow::bail!(
            "several accounts are named {name:?}; give the Account object's name or the portal account id"
        ),
        (None, _) => {
            let mut known: Vec<String> = state
                .objects
                .keys()
                .filter_map(|key| key.strip_prefix("Account/"))
                .map(str::to_owned)
                .collect();
            known.extend(
                visible
                    .iter()
                    .map(|a| format!("{} ({})", a.display_name, a.id)),
            );
            known.truncate(20);
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            anyhow::bail!(
                "no account {name:?}: it is not an Account applied with this state folder ({}), a portal account id, or an account's display name; known accounts: {known}",
                state_dir.display()
            )
        }
    }
}
