//! Reading a folder of manifests the way the cluster would admit them: every YAML document of
//! every file (folders recursively, hidden ones skipped) is checked against the CRD schemas with the same defaults,
//! pruning, validation and CEL rules, then against the other manifests (duplicate names,
//! references to Accounts that are missing or do not delegate the namespace). Every problem is
//! reported at once, naming the file, the document and the field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use kube::ResourceExt;
use serde_json::Value;

use crate::crd::{
    Account, AccountManager, AdminInvitation, GROUP, RoleBinding, Subscription, Team, User,
    UserRole,
};

/// One object from the manifests.
// Every kind is a few hundred bytes (760 to 968); boxing the largest would only move the lint
// to the next, and the objects are moved rarely (they are built once and read by reference).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Object {
    Account(Account),
    AdminInvitation(AdminInvitation),
    RoleBinding(RoleBinding),
    AccountManager(AccountManager),
    Subscription(Subscription),
    UserRole(UserRole),
    Team(Team),
    User(User),
}

/// Evaluates `$body` with `$o` bound to the object inside `$object`, whatever its kind (every
/// kind is a `reconcile::Kind`, so the driver takes each the same way). With `=> wrap`, the
/// result is wrapped back into the same kind.
macro_rules! on_object {
    ($object:expr, $o:ident => wrap $body:expr) => {
        match $object {
            Object::Account($o) => Object::Account($body),
            Object::AdminInvitation($o) => Object::AdminInvitation($body),
            Object::RoleBinding($o) => Object::RoleBinding($body),
            Object::AccountManager($o) => Object::AccountManager($body),
            Object::Subscription($o) => Object::Subscription($body),
            Object::UserRole($o) => Object::UserRole($body),
            Object::Team($o) => Object::Team($body),
            Object::User($o) => Object::User($body),
        }
    };
    ($object:expr, $o:ident => $body:expr) => {
        match $object {
            Object::Account($o) => $body,
            Object::AdminInvitation($o) => $body,
            Object::RoleBinding($o) => $body,
            Object::AccountManager($o) => $body,
            Object::Subscription($o) => $body,
            Object::UserRole($o) => $body,
            Object::Team($o) => $body,
            Object::User($o) => $body,
        }
    };
}
pub(crate) use on_object;

impl Object {
    /// The kinds, in the order `kind: Unsupported value` lists them.
    pub const KINDS: [&'static str; 8] = [
        "Account",
        "AdminInvitation",
        "RoleBinding",
        "AccountManager",
        "Subscription",
        "UserRole",
        "Team",
        "User",
    ];

    pub fn kind(&self) -> &'static str {
        fn kind_of<K: kube::Resource<DynamicType = ()>>(_: &K) -> &'static str {
            Object::KINDS
                .into_iter()
                .find(|k| *k == K::kind(&()))
                .expect("every kind is listed")
        }
        on_object!(self, o => kind_of(o))
    }

    pub fn name(&self) -> String {
        on_object!(self, o => o.name_any())
    }

    pub fn namespace(&self) -> Option<String> {
        on_object!(self, o => o.namespace())
    }

    /// Decodes an object of `kind` (one of [`Object::KINDS`]).
    pub fn decode(kind: &str, value: Value) -> Option<Result<Object, serde_json::Error>> {
        Some(match kind {
            "Account" => serde_json::from_value(value).map(Object::Account),
            "AdminInvitation" => serde_json::from_value(value).map(Object::AdminInvitation),
            "RoleBinding" => serde_json::from_value(value).map(Object::RoleBinding),
            "AccountManager" => serde_json::from_value(value).map(Object::AccountManager),
            "Subscription" => serde_json::from_value(value).map(Object::Subscription),
            "UserRole" => serde_json::from_value(value).map(Object::UserRole),
            "Team" => serde_json::from_value(value).map(Object::Team),
            "User" => serde_json::from_value(value).map(Object::User),
            _ => return None,
        })
    }

    /// `Kind/name` or `Kind/namespace/name`: the object's key in the state file.
    pub fn key(&self) -> String {
        match self.namespace() {
            Some(namespace) => format!("{}/{namespace}/{}", self.kind(), self.name()),
            None => format!("{}/{}", self.kind(), self.name()),
        }
    }

    /// `name` or `namespace/name`, for tables.
    pub fn display_name(&self) -> String {
        match self.namespace() {
            Some(namespace) => format!("{namespace}/{}", self.name()),
            None => self.name(),
        }
    }

    pub fn account_ref(&self) -> Option<&str> {
        use crate::reconcile::Kind as _;
        on_object!(self, o => o.account_ref().map(|r| r.name.as_str()))
    }
}

/// An object and where it was read from.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: PathBuf,
    /// 1-based document index within the file.
    pub document: usize,
    pub object: Object,
}

impl Manifest {
    pub fn source(&self) -> String {
        format!("{} (document {})", self.file.display(), self.document)
    }
}

/// Everything wrong with the manifests.
#[derive(Debug)]
pub struct Problems(pub Vec<String>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} problem(s) in the manifests; nothing was sent to the portal:",
            self.0.len()
        )?;
        for problem in &self.0 {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// The YAML files under `paths` (files as given, folders recursively), in a stable order.
fn files(paths: &[PathBuf], problems: &mut Vec<String>) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut stack = vec![path.clone()];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    problems.push(format!("{}: cannot read this folder", dir.display()));
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    // Hidden files and folders (the state folder `.portal/`, `.git/`) are not
                    // manifests, as `kubectl apply -R` users expect.
                    if entry.file_name().to_string_lossy().starts_with('.') {
                        continue;
                    }
                    if path.is_dir() {
                        stack.push(path);
                    } else if path
                        .extension()
                        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                    {
                        found.push(path);
                    }
                }
            }
        } else if path.exists() {
            found.push(path.clone());
        } else {
            problems.push(format!("{}: no such file or folder", path.display()));
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Each manifest file with its length and modification time.
pub type Fingerprint = Vec<(PathBuf, u64, Option<std::time::SystemTime>)>;

/// What the YAML files under `paths` are now (names, sizes, modification times), for noticing
/// that they changed.
pub fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    files(paths, &mut Vec::new())
        .into_iter()
        .map(|file| {
            let meta = std::fs::metadata(&file).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (file, len, modified)
        })
        .collect()
}

/// The CRD schema of each kind, from the same definitions the cluster gets.
fn schemas() -> BTreeMap<String, Value> {
    crate::crd::definitions()
        .into_iter()
        .filter_map(|(_, crd)| {
            let kind = crd.spec.names.kind.clone();
            let schema =
                serde_json::to_value(&crd.spec.versions[0].schema.as_ref()?.open_api_v3_schema)
                    .ok()?;
            Some((kind, schema))
        })
        .collect()
}

const NAMESPACED: [&str; 7] = [
    "AdminInvitation",
    "RoleBinding",
    "AccountManager",
    "Subscription",
    "UserRole",
    "Team",
    "User",
];

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// Reads and admits every manifest under `paths`.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Manifest>, Problems> {
    let mut problems = Vec::new();
    let schemas = schemas();
    let mut manifests = Vec::new();
    for file in files(paths, &mut problems) {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) => {
                problems.push(format!("{}: cannot read it: {error}", file.display()));
                continue;
            }
        };
        let documents: Vec<Value> = match serde_saphyr::from_multiple::<Value>(&text) {
            Ok(documents) => documents,
            Err(error) => {
                problems.push(format!("{}: not valid YAML: {error}", file.display()));
                continue;
            }
        };
        for (index, document) in documents.into_iter().enumerate() {
            if document.is_null() {
                continue;
            }
            match admit(document, &schemas) {
                Ok(object) => manifests.push(Manifest {
                    file: file.clone(),
                    document: index + 1,
                    object,
                }),
                Err(found) => problems.extend(
                    found
                        .into_iter()
                        .map(|p| format!("{} (document {}): {p}", file.display(), index + 1)),
                ),
            }
        }
    }
    check_together(&manifests, &mut problems);
    if problems.is_empty() {
        manifests.shrink_to_fit();
        Ok(manifests)
    } else {
        Err(Problems(problems))
    }
}

/// One document: kind, version, name, then the CRD schema and its CEL rules.
fn admit(mut document: Value, schemas: &BTreeMap<String, Value>) -> Result<Object, Vec<String>> {
    if !document.is_object() {
        return Err(vec![
            "a manifest must be a mapping with apiVersion, kind, metadata and spec".into(),
        ]);
    }
    let api_version = document["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let kind = document["kind"].as_str().unwrap_or_default().to_owned();
    let expected = format!("{GROUP}/v1alpha1");
    let Some(schema) = schemas.get(&kind) else {
        let supported: Vec<String> = Object::KINDS.iter().map(|k| format!("{k:?}")).collect();
        return Err(vec![format!(
            "kind: Unsupported value: {kind:?}: supported values: {}",
            supported.join(", ")
        )]);
    };
    if api_version != expected {
        return Err(vec![format!(
            "apiVersion: Unsupported value: {api_version:?}: {kind} is served as {expected:?}"
        )]);
    }
    let name = document["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut problems = Vec::new();
    let written = &document["metadata"]["name"];
    if !written.is_null() && !written.is_string() {
        // YAML reads an unquoted `y`, `no` or `1` as a boolean or a number.
        problems.push(format!(
            "{kind}: metadata.name: Invalid value: {written}: a name is a string; quote it in the YAML (unquoted, y, no, on and numbers are read as booleans and numbers)"
        ));
    } else if name.is_empty() {
        problems.push(format!("{kind}: metadata.name: Required value"));
    } else if !is_dns_subdomain(&name) {
        problems.push(format!(
            "{kind}/{name}: metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
        ));
    }
    if NAMESPACED.contains(&kind.as_str()) {
        let namespace = document["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        if !is_dns_label(&namespace) {
            problems.push(format!(
                "{kind}/{name}: metadata.namespace: Invalid value: {namespace:?}: a namespace is a lowercase RFC 1123 label"
            ));
        }
        document["metadata"]["namespace"] = Value::String(namespace);
    } else if let Some(metadata) = document["metadata"].as_object_mut() {
        metadata.remove("namespace");
    }
    // Strict field validation, as `kubectl apply` asks of the server: a misspelt field is an
    // error, not silently dropped (a dropped `roles` would invite with the default role).
    problems.extend(
        crate::crd::admission::unknown_fields(&document, schema)
            .into_iter()
            .map(|c| format!("{kind}/{name}: {}", c.message)),
    );
    if !problems.is_empty() {
        return Err(problems);
    }
    let original = document.clone();
    let causes = crate::crd::admission::admit(&mut document, schema, None);
    if !causes.is_empty() {
        return Err(readable(causes, &original)
            .into_iter()
            .map(|c| {
                if c.field.is_empty() || c.message.starts_with(&c.field) {
                    format!("{kind}/{name}: {}", c.message)
                } else {
                    format!("{kind}/{name}: {}: {}", c.field, c.message)
                }
            })
            .collect());
    }
    let object = Object::decode(&kind, document)
        .expect("a kind with a schema decodes")
        .map_err(|e| vec![format!("{kind}/{name}: {e}")])?;
    // The user ID and time zone as the portal checks them.
    if let Object::User(user) = &object {
        if let Err(error) = crate::domain::UserId::parse(&user.spec.user_id) {
            return Err(vec![format!(
                "{kind}/{name}: spec.userId: Invalid value: {error}"
            )]);
        }
        if let Some(zone) = &user.spec.time_zone
            && let Err(error) = crate::domain::service::time_zone(zone)
        {
            return Err(vec![format!(
                "{kind}/{name}: spec.timeZone: Invalid value: {error}"
            )]);
        }
    }
    // What the operator checks before sending, checked here too.
    let email = match &object {
        Object::AdminInvitation(o) => Some(o.spec.email.as_str()),
        Object::AccountManager(o) => Some(o.spec.email.as_str()),
        _ => None,
    };
    if let Some(email) = email
        && let Err(error) = crate::domain::Email::parse(email)
    {
        return Err(vec![format!(
            "{kind}/{name}: spec.email: Invalid value: {error}"
        )]);
    }
    if let Object::RoleBinding(binding) = &object {
        for (index, subject) in binding.spec.subjects.iter().enumerate() {
            if let Some(email) = &subject.admin_email
                && let Err(error) = crate::domain::Email::parse(email)
            {
                return Err(vec![format!(
                    "{kind}/{name}: spec.subjects[{index}].adminEmail: Invalid value: {error}"
                )]);
            }
        }
    }
    Ok(object)
}

/// The Accounts' tree, by the domain's rules and the manifests' names: a parent cycle, or a
/// partner under a client, is refused here instead of waiting forever or being refused by the
/// portal with its ids.
fn check_tree(
    manifests: &[Manifest],
    accounts: &BTreeMap<String, &Account>,
    problems: &mut Vec<String>,
) {
    use crate::domain::{AccountKind, TreeError};
    let tree: Vec<crate::domain::Account> = accounts
        .iter()
        .map(|(name, account)| crate::domain::Account {
            kind: match account.spec.account_type {
                crate::crd::AccountType::Partner => AccountKind::Partner,
                crate::crd::AccountType::Client => AccountKind::Client,
            },
            parent: account
                .spec
                .parent_ref
                .as_ref()
                .map(|p| p.name.as_str().into()),
            ..crate::domain::Account::partner(name.as_str())
        })
        .collect();
    let source = |name: &str| {
        manifests
            .iter()
            .find(|m| matches!(&m.object, Object::Account(a) if a.name_any() == name))
            .map(Manifest::source)
            .unwrap_or_default()
    };
    for problem in crate::domain::placement_problems(&tree) {
        match problem {
            TreeError::Cycle(account) => {
                let chain = crate::domain::cycle_through(&account, &tree)
                    .map(|chain| {
                        chain
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(" → ")
                    })
                    .unwrap_or_else(|| account.as_str().to_owned());
                problems.push(format!(
                    "{}: Account/{account}: spec.parentRef.name: Invalid value: parent cycle: {chain}",
                    source(account.as_str())
                ));
            }
            TreeError::PartnerBelowClient { account, parent } => problems.push(format!(
                "{}: Account/{account}: spec.parentRef.name: Forbidden: Partner account {:?} cannot sit under Client account {:?}",
                source(account.as_str()),
                account.as_str(),
                parent.as_str()
            )),
            // A missing parent is reported with the references; duplicates with the names.
            TreeError::MissingParent { .. } | TreeError::DuplicateAccount(_) => {}
        }
    }
}

/// The API server's causes, made for a person: the offending value instead of its type
/// (`Invalid value: "not-an-email"`, not `Invalid value: "string"`), and a rule that could not
/// even be evaluated dropped when the field's own check already said why (or, alone, said
/// without the evaluator's internals).
fn readable(
    causes: Vec<crate::crd::admission::Cause>,
    document: &Value,
) -> Vec<crate::crd::admission::Cause> {
    let fields: Vec<String> = causes
        .iter()
        .filter(|c| !c.message.contains("(evaluation error:"))
        .map(|c| c.field.clone())
        .collect();
    causes
        .into_iter()
        .filter_map(|mut cause| {
            if let Some(at) = cause.message.find(" (evaluation error:") {
                let explained = fields
                    .iter()
                    .any(|f| f.starts_with(&format!("{}.", cause.field)) || *f == cause.field);
                if explained {
                    return None;
                }
                cause.message.truncate(at);
            }
            if let Some(value) =
                value_at(document, &cause.field).filter(|v| !v.is_object() && !v.is_array())
            {
                for type_name in ["string", "integer", "number", "boolean"] {
                    let shown = format!("Invalid value: \"{type_name}\":");
                    if cause.message.starts_with(&shown) {
                        cause.message =
                            format!("Invalid value: {value}:{}", &cause.message[shown.len()..]);
                        break;
                    }
                }
            }
            Some(cause)
        })
        .collect()
}

/// The value at a field path such as `spec.subjects[0].adminEmail`.
fn value_at<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = document;
    for part in path.split('.') {
        let (name, indices) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        current = current.get(name)?;
        for index in indices.split(['[', ']']).filter(|i| !i.is_empty()) {
            current = current.get(index.parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

/// What only the set of manifests can say: duplicates and references.
fn check_together(manifests: &[Manifest], problems: &mut Vec<String>) {
    let mut seen: BTreeMap<String, &Manifest> = BTreeMap::new();
    for manifest in manifests {
        let key = manifest.object.key();
        if let Some(first) = seen.get(&key) {
            problems.push(format!(
                "{}: {} {} is also defined in {}; names must be unique per kind and namespace",
                manifest.source(),
                manifest.object.kind(),
                manifest.object.display_name(),
                first.source()
            ));
        } else {
            seen.insert(key, manifest);
        }
    }
    let accounts: BTreeMap<String, &Account> = manifests
        .iter()
        .filter_map(|m| match &m.object {
            Object::Account(a) => Some((a.name_any(), a)),
            _ => None,
        })
        .collect();
    check_tree(manifests, &accounts, problems);
    let managers: BTreeSet<String> = manifests
        .iter()
        .filter(|m| m.object.kind() == "AccountManager")
        .map(|m| m.object.key())
        .collect();
    for manifest in manifests {
        let object = &manifest.object;
        if let Object::Account(account) = object
            && let Some(parent) = &account.spec.parent_ref
            && !accounts.contains_key(&parent.name)
        {
            problems.push(format!(
                "{}: Account/{}: spec.parentRef.name: Not found: no Account {:?} in the manifests",
                manifest.source(),
                account.name_any(),
                parent.name
            ));
        }
        let Some(account_ref) = object.account_ref() else {
            continue;
        };
        let namespace = object.namespace().unwrap_or_default();
        match accounts.get(account_ref) {
            None => problems.push(format!(
                "{}: {}/{}: spec.accountRef.name: Not found: no Account {account_ref:?} in the manifests",
                manifest.source(),
                object.kind(),
                object.display_name()
            )),
            Some(account) if !account.spec.namespaces.contains(&namespace) => {
                problems.push(format!(
                    "{}: {}/{}: spec.accountRef.name: Forbidden: Account {account_ref:?} does not list namespace {namespace:?} in spec.namespaces (AccountNotDelegated)",
                    manifest.source(),
                    object.kind(),
                    object.display_name()
                ))
            }
            Some(_) => {}
        }
        if let Object::RoleBinding(binding) = object {
            for (index, subject) in binding.spec.subjects.iter().enumerate() {
                if let Some(manager) = &subject.account_manager_ref
                    && !managers.contains(&format!("AccountManager/{namespace}/{}", manager.name))
                {
                    problems.push(format!(
                        "{}: RoleBinding/{}: spec.subjects[{index}].accountManagerRef.name: Not found: no AccountManager {:?} in namespace {namespace:?}",
                        manifest.source(),
                        object.display_name(),
                        manager.name
                    ));
                }
            }
        }
    }
}

/// Accounts parents first, then subscriptions, account managers, invitations, teams, user roles
/// (which may name a team), role bindings (which grant to admins the invitations make) and users
/// (which take the subscriptions' licences and name roles and teams).
pub fn in_dependency_order(manifests: &[Manifest]) -> Vec<&Manifest> {
    let depth = |name: &str| {
        let mut depth = 0;
        let mut current = name.to_owned();
        while let Some(parent) = manifests.iter().find_map(|m| match &m.object {
            Object::Account(a) if a.name_any() == current => {
                a.spec.parent_ref.as_ref().map(|p| p.name.clone())
            }
            _ => None,
        }) {
            depth += 1;
            current = parent;
            if depth > manifests.len() {
                break;
            }
        }
        depth
    };
    let mut ordered: Vec<&Manifest> = manifests.iter().collect();
    ordered.sort_by_cached_key(|m| {
        let rank = match &m.object {
            Object::Account(a) => depth(&a.name_any()),
            Object::Subscription(_) => 1000,
            Object::AccountManager(_) => 1001,
            Object::AdminInvitation(_) => 1002,
            Object::Team(_) => 1003,
            Object::UserRole(_) => 1004,
            Object::RoleBinding(_) => 1005,
            Object::User(_) => 1006,
        };
        (rank, m.object.key())
    });
    ordered
}

/// Whether `path` looks like it holds manifests (for messages).
pub fn describe(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
