//! The double's state: objects by resource, namespace and name, one resourceVersion counter
//! for everything (as etcd's revision), and a bounded history of changes that watches resume
//! from. A watch asking for a resourceVersion older than the history gets 410 Gone.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::registry::Resource;
use super::status::{ApiError, Cause};

/// (group, plural, namespace or "", name)
pub type Key = (String, String, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub event: EventType,
    pub object: Arc<Value>,
    /// The change as one watch line, serialized once for every watch that sends it.
    line: std::sync::OnceLock<axum::body::Bytes>,
}

impl Change {
    /// The watch line (`{"type":…,"object":…}` and a newline) of this change.
    pub fn line(&self) -> axum::body::Bytes {
        self.line
            .get_or_init(|| super::watch_line(self.event.as_str(), &self.object))
            .clone()
    }
}

/// How a PATCH body is to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Apply,
    Strategic,
}

pub struct State {
    pub resources: Vec<Resource>,
    /// Shared with the changes that recorded them (a write copies an object once, to change it).
    pub objects: BTreeMap<Key, Arc<Value>>,
    pub rv: u64,
    pub history: VecDeque<Arc<Change>>,
    pub history_limit: usize,
    /// Server-side apply: the leaf field paths each manager applied, per object.
    pub owned_fields: BTreeMap<(Key, String), BTreeSet<String>>,
    /// Each object by the uids of its owners, for garbage collection (a scan of every object
    /// per deletion was quadratic in a deletion of many).
    dependents: BTreeSet<(String, Key)>,
}

/// The uids `object`'s ownerReferences name.
fn owner_uids(object: &Value) -> impl Iterator<Item = &str> {
    meta(object)
        .get("ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn meta(object: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    object
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    meta(object).get(field).and_then(Value::as_str)
}

fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"].as_object_mut().expect("just ensured")
}

/// Whether the maps `a` and `b` are equal in every field but those in `ignored`.
fn equal_but(a: &Map<String, Value>, b: &Map<String, Value>, ignored: &[&str]) -> bool {
    let kept = |fields: &Map<String, Value>| {
        fields
            .iter()
            .filter(|(key, _)| !ignored.contains(&key.as_str()))
            .count()
    };
    kept(a) == kept(b)
        && a.iter()
            .filter(|(key, _)| !ignored.contains(&key.as_str()))
            .all(|(key, value)| b.get(key) == Some(value))
}

/// Whether a write changed anything but metadata and status (which bumps `metadata.generation`).
fn generation_changed(current: &Value, updated: &Value) -> bool {
    match (current.as_object(), updated.as_object()) {
        (Some(a), Some(b)) => !equal_but(a, b, &["metadata", "status", "apiVersion", "kind"]),
        _ => current != updated,
    }
}

/// Whether a write changed nothing but (at most) the resourceVersion it sent.
fn unchanged(current: &Value, updated: &Value) -> bool {
    match (current.as_object(), updated.as_object()) {
        (Some(a), Some(b)) => {
            equal_but(a, b, &["metadata"])
                && equal_but(meta(current), meta(updated), &["resourceVersion"])
        }
        _ => current == updated,
    }
}

fn finalizers(object: &Value) -> Vec<String> {
    meta(object)
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl State {
    pub fn new(resources: Vec<Resource>, history_limit: usize) -> State {
        let mut state = State {
            resources,
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_limit,
            owned_fields: BTreeMap::new(),
            dependents: BTreeSet::new(),
        };
        for namespace in ["default", "kube-system"] {
            let resource = state
                .resource("", "v1", "namespaces")
                .expect("built in")
                .clone();
            state
                .create(&resource, "", json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace } }))
                .expect("a fresh namespace");
        }
        state
    }

    /// Stores `object` at `key`, keeping the owner index in step.
    fn put(&mut self, key: &Key, object: Arc<Value>) {
        let old = self.objects.insert(key.clone(), object.clone());
        if let Some(old) = old {
            if owner_uids(&old).eq(owner_uids(&object)) {
                return;
            }
            for uid in owner_uids(&old) {
                self.dependents.remove(&(uid.to_owned(), key.clone()));
            }
        }
        for uid in owner_uids(&object) {
            self.dependents.insert((uid.to_owned(), key.clone()));
        }
    }

    /// Removes the object at `key` and its field managers, keeping the owner index in step.
    fn take(&mut self, key: &Key) {
        if let Some(old) = self.objects.remove(key) {
            for uid in owner_uids(&old) {
                self.dependents.remove(&(uid.to_owned(), key.clone()));
            }
        }
        self.forget_owners(key);
    }

    /// The objects of `resource` (in `namespace`, when given): one range of the ordered map.
    pub fn of_resource<'a>(
        &'a self,
        resource: &'a Resource,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Arc<Value>)> + 'a {
        let start = (
            resource.group.clone(),
            resource.plural.clone(),
            namespace.unwrap_or_default().to_owned(),
            String::new(),
        );
        self.objects
            .range(start..)
            .take_while(move |((group, plural, ns, _), _)| {
                group == &resource.group
                    && plural == &resource.plural
                    && namespace.is_none_or(|wanted| ns == wanted)
            })
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The oldest resourceVersion a watch may resume from.
    pub fn oldest_resumable(&self) -> u64 {
        self.history.front().map(|c| c.rv - 1).unwrap_or(self.rv)
    }

    fn record(&mut self, key: &Key, event: EventType, object: Arc<Value>) -> Arc<Change> {
        let change = Arc::new(Change {
            rv: self.rv,
            group: key.0.clone(),
            plural: key.1.clone(),
            namespace: key.2.clone(),
            event,
            object,
            line: std::sync::OnceLock::new(),
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
        change
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn new_uid(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }

    fn check_namespace(&self, resource: &Resource, namespace: &str) -> Result<(), ApiError> {
        if resource.namespaced {
            let key = (
                String::new(),
                "namespaces".to_owned(),
                String::new(),
                namespace.to_owned(),
            );
            if !self.objects.contains_key(&key) {
                return Err(ApiError::not_found("", "namespaces", namespace));
            }
        }
        Ok(())
    }

    /// Defaults, prunes and validates a custom resource; built-ins pass through.
    fn validate(
        resource: &Resource,
        object: &mut Value,
        old: Option<&Value>,
        name: &str,
    ) -> Result<(), ApiError> {
        let mut causes: Vec<Cause> = Vec::new();
        if let Some(schema) = &resource.schema {
            causes = crate::crd::admission::admit(object, schema, old);
        }
        if let Some(name_value) = meta_str(object, "name")
            && (name_value.is_empty() || name_value.len() > 253 || !is_dns_subdomain(name_value))
        {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field: "metadata.name".into(),
                message: format!(
                    "Invalid value: {name_value:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            });
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(
                &resource.group,
                &resource.kind,
                name,
                causes,
            ))
        }
    }

    pub fn create(
        &mut self,
        resource: &Resource,
        namespace: &str,
        mut object: Value,
    ) -> Result<(Arc<Value>, Vec<Arc<Change>>), ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        self.check_namespace(resource, namespace)?;
        let name = match meta_str(&object, "name") {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match meta_str(&object, "generateName") {
                Some(prefix) => format!(
                    "{prefix}{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..5]
                ),
                None => {
                    return Err(ApiError::invalid(
                        &resource.group,
                        &resource.kind,
                        "",
                        vec![Cause {
                            reason: "FieldValueRequired",
                            field: "metadata.name".into(),
                            message: "Required value: name or generateName is required".into(),
                        }],
                    ));
                }
            },
        };
        if let Some(body_namespace) = meta_str(&object, "namespace")
            && resource.namespaced
            && body_namespace != namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let key = (
            resource.group.clone(),
            resource.plural.clone(),
            namespace.to_owned(),
            name.clone(),
        );
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(
                &resource.group,
                &resource.plural,
                &name,
            ));
        }
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        if resource.status_subresource && resource.custom {
            // The main endpoint ignores status, on create too.
            object.as_object_mut().expect("an object").remove("status");
        }
        Self::validate(resource, &mut object, None, &name)?;
        let uid = self.new_uid();
        let rv = self.next_rv();
        let metadata = meta_mut(&mut object);
        metadata.insert("name".into(), json!(name));
        if resource.namespaced {
            metadata.insert("namespace".into(), json!(namespace));
        } else {
            metadata.remove("namespace");
        }
        metadata.insert("uid".into(), json!(uid));
        metadata.insert("creationTimestamp".into(), json!(now_rfc3339()));
        metadata.insert("resourceVersion".into(), json!(rv.to_string()));
        metadata.insert("generation".into(), json!(1));
        metadata.remove("deletionTimestamp");
        metadata.remove("managedFields");
        let object = Arc::new(object);
        self.put(&key, object.clone());
        let change = self.record(&key, EventType::Added, object.clone());
        Ok((object, vec![change]))
    }

    pub fn get(
        &self,
        resource: &Resource,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let key = (
            resource.group.clone(),
            resource.plural.clone(),
            namespace.to_owned(),
            name.to_owned(),
        );
        self.objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&resource.group, &resource.plural, name))
    }

    /// PUT. `status` says whether this is the /status subresource.
    pub fn replace(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        object: Value,
        status: bool,
    ) -> Result<(Arc<Value>, Vec<Arc<Change>>), ApiError> {
        let current = self.get(resource, namespace, name)?;
        if resource.custom {
            match meta_str(&object, "resourceVersion") {
                None | Some("") => {
                    return Err(ApiError::invalid(
                        &resource.group,
                        &resource.kind,
                        name,
                        vec![Cause {
                            reason: "FieldValueInvalid",
                            field: "metadata.resourceVersion".into(),
                            message: "Invalid value: 0x0: must be specified for an update".into(),
                        }],
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(sent) = meta_str(&object, "resourceVersion")
            && !sent.is_empty()
            && Some(sent) != meta_str(&current, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &resource.group,
                &resource.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if meta_str(&object, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        self.write(resource, namespace, name, current, object, status)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        status: bool,
        manager: Option<&str>,
        force: bool,
    ) -> Result<(Arc<Value>, Vec<Arc<Change>>), ApiError> {
        let existing = self.get(resource, namespace, name);
        let current = match (existing, kind) {
            (Ok(current), _) => current,
            // Server-side apply creates what does not exist.
            (Err(_), PatchKind::Apply) if !status => {
                let manager = manager.ok_or_else(|| {
                    ApiError::bad_request("PATCH with apply needs a fieldManager")
                })?;
                let mut object = body.clone();
                meta_mut(&mut object).insert("name".into(), json!(name));
                let (created, changes) = self.create(resource, namespace, object)?;
                let key = (
                    resource.group.clone(),
                    resource.plural.clone(),
                    namespace.to_owned(),
                    name.to_owned(),
                );
                self.owned_fields.insert(
                    (key, manager.to_owned()),
                    leaf_paths(&strip_for_ownership(body)),
                );
                return Ok((created, changes));
            }
            (Err(error), _) => return Err(error),
        };
        let mut updated = (*current).clone();
        match kind {
            PatchKind::Strategic if resource.custom => {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                ));
            }
            // Built-ins: strategic merge is treated as a JSON merge patch (a known gap).
            PatchKind::Merge | PatchKind::Strategic => {
                if !body.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                json_patch::merge(&mut updated, body);
            }
            PatchKind::Json => {
                let mut operations: json_patch::Patch = serde_json::from_value(body.clone())
                    .map_err(|e| {
                        ApiError::bad_request(format!("the JSON patch is not valid: {e}"))
                    })?;
                // As in the API server's JSON patch library: `test` of a missing member against
                // null succeeds (kube's finalizer helper relies on it for "no finalizers yet").
                operations.0.retain(|operation| match operation {
                    json_patch::PatchOperation::Test(test) => {
                        !(test.value.is_null() && updated.pointer(test.path.as_str()).is_none())
                    }
                    _ => true,
                });
                json_patch::patch(&mut updated, &operations).map_err(|e| {
                    ApiError::invalid(
                        &resource.group,
                        &resource.kind,
                        name,
                        vec![Cause {
                            reason: "FieldValueInvalid",
                            field: "".into(),
                            message: format!("the server rejected our request due to an error in our request: {e}"),
                        }],
                    )
                })?;
            }
            PatchKind::Apply => {
                let manager = manager.ok_or_else(|| {
                    ApiError::bad_request("PATCH with apply needs a fieldManager")
                })?;
                updated = self.apply(
                    resource, namespace, name, &current, body, manager, force, status,
                )?;
            }
        }
        if let Some(sent) = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && kind != PatchKind::Json
            && Some(sent) != meta_str(&current, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &resource.group,
                &resource.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        self.write(resource, namespace, name, current, updated, status)
    }

    /// The field managers of one object (a range of the ordered map, not a scan of every
    /// object's: at 10,000 objects a scan per apply was most of the double's time).
    fn managers_of<'a>(
        &'a self,
        key: &'a Key,
    ) -> impl Iterator<Item = (&'a (Key, String), &'a BTreeSet<String>)> + 'a {
        self.owned_fields
            .range((key.clone(), String::new())..)
            .take_while(move |((object_key, _), _)| object_key == key)
    }

    fn forget_owners(&mut self, key: &Key) {
        let managers: Vec<(Key, String)> = self
            .managers_of(key)
            .map(|(entry, _)| entry.clone())
            .collect();
        for manager in managers {
            self.owned_fields.remove(&manager);
        }
    }

    /// Server-side apply, with field ownership by leaf path: the manager's previously applied
    /// fields that its new configuration leaves out are removed (unless another manager owns
    /// them too); a field another manager owns with a different value is a conflict unless
    /// `force`. Lists are atomic.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        current: &Value,
        config: &Value,
        manager: &str,
        force: bool,
        status: bool,
    ) -> Result<Value, ApiError> {
        let key = (
            resource.group.clone(),
            resource.plural.clone(),
            namespace.to_owned(),
            name.to_owned(),
        );
        let config = strip_for_ownership(config);
        let config = if status {
            json!({ "status": config.get("status").cloned().unwrap_or(json!({})) })
        } else {
            config
        };
        let applied = leaf_paths(&config);
        let mut conflicts = Vec::new();
        for ((_, other), fields) in self.managers_of(&key) {
            if other == manager {
                continue;
            }
            for path in applied.intersection(fields) {
                if value_at(current, path) != value_at(&config, path) {
                    conflicts.push(format!("conflict with \"{other}\": {path}"));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(ApiError::conflict(
                &resource.group,
                &resource.plural,
                name,
                &format!(
                    "Apply failed with {} conflict(s): {}",
                    conflicts.len(),
                    conflicts.join(", ")
                ),
            ));
        }
        let previous = self
            .owned_fields
            .get(&(key.clone(), manager.to_owned()))
            .cloned()
            .unwrap_or_default();
        let mut updated = current.clone();
        for dropped in previous.difference(&applied) {
            let owned_by_other = self
                .managers_of(&key)
                .any(|((_, m), fields)| m != manager && fields.contains(dropped));
            if !owned_by_other {
                remove_at(&mut updated, dropped);
                remove_emptied_parents(&mut updated, dropped, &applied);
            }
        }
        merge_apply(&mut updated, &config);
        if force {
            let start = (key.clone(), String::new());
            for ((object_key, other), fields) in self.owned_fields.range_mut(start..) {
                if object_key != &key {
                    break;
                }
                if other != manager {
                    fields.retain(|path| !applied.contains(path));
                }
            }
        }
        self.owned_fields.insert((key, manager.to_owned()), applied);
        Ok(updated)
    }

    /// The common end of update and patch: status isolation, immutable metadata, validation,
    /// generation, finalizers and deletion.
    fn write(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        current: Arc<Value>,
        mut updated: Value,
        status: bool,
    ) -> Result<(Arc<Value>, Vec<Arc<Change>>), ApiError> {
        if resource.status_subresource {
            if status {
                let new_status = updated
                    .as_object_mut()
                    .and_then(|fields| fields.remove("status"));
                updated = (*current).clone();
                match new_status {
                    Some(value) => updated["status"] = value,
                    None => {
                        updated.as_object_mut().expect("an object").remove("status");
                    }
                }
            } else {
                match current.get("status") {
                    Some(value) => updated["status"] = value.clone(),
                    None => {
                        if let Some(fields) = updated.as_object_mut() {
                            fields.remove("status");
                        }
                    }
                }
            }
        } else if status {
            return Err(ApiError::not_found(
                &resource.group,
                &format!("{}/status", resource.plural),
                name,
            ));
        }
        updated["apiVersion"] = json!(resource.api_version());
        updated["kind"] = json!(resource.kind);
        let old_meta = meta(&current);
        {
            let metadata = meta_mut(&mut updated);
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old_meta.get(field) {
                    Some(value) => metadata.insert(field.into(), value.clone()),
                    None => metadata.remove(field),
                };
            }
            metadata.remove("managedFields");
        }
        let old_finalizers = finalizers(&current);
        let new_finalizers = finalizers(&updated);
        if old_meta.contains_key("deletionTimestamp")
            && new_finalizers.iter().any(|f| !old_finalizers.contains(f))
        {
            return Err(ApiError::invalid(
                &resource.group,
                &resource.kind,
                name,
                vec![Cause {
                    reason: "FieldValueForbidden",
                    field: "metadata.finalizers".into(),
                    message:
                        "Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                }],
            ));
        }
        if !status {
            Self::validate(resource, &mut updated, Some(&current), name)?;
        }
        if generation_changed(&current, &updated) {
            let generation = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut updated).insert("generation".into(), json!(generation + 1));
        }
        let key = (
            resource.group.clone(),
            resource.plural.clone(),
            namespace.to_owned(),
            name.to_owned(),
        );
        if unchanged(&current, &updated) {
            // A no-op write does not bump the resourceVersion or notify watches (as the real server).
            return Ok((current, Vec::new()));
        }
        let rv = self.next_rv();
        meta_mut(&mut updated).insert("resourceVersion".into(), json!(rv.to_string()));
        if old_meta.contains_key("deletionTimestamp") && new_finalizers.is_empty() {
            self.take(&key);
            let updated = Arc::new(updated);
            let mut changes = vec![self.record(&key, EventType::Deleted, updated.clone())];
            changes.extend(self.collect_garbage(&updated));
            return Ok((updated, changes));
        }
        let updated = Arc::new(updated);
        self.put(&key, updated.clone());
        let change = self.record(&key, EventType::Modified, updated.clone());
        Ok((updated, vec![change]))
    }

    pub fn delete(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        preconditions: Option<&Value>,
    ) -> Result<(Arc<Value>, Vec<Arc<Change>>), ApiError> {
        let current = self.get(resource, namespace, name)?;
        if let Some(preconditions) = preconditions {
            let uid = preconditions.get("uid").and_then(Value::as_str);
            let rv = preconditions.get("resourceVersion").and_then(Value::as_str);
            if uid.is_some_and(|u| Some(u) != meta_str(&current, "uid"))
                || rv.is_some_and(|r| Some(r) != meta_str(&current, "resourceVersion"))
            {
                return Err(ApiError::conflict(
                    &resource.group,
                    &resource.plural,
                    name,
                    "the precondition for the delete did not match the object",
                ));
            }
        }
        let key = (
            resource.group.clone(),
            resource.plural.clone(),
            namespace.to_owned(),
            name.to_owned(),
        );
        if !finalizers(&current).is_empty() {
            if meta(&current).contains_key("deletionTimestamp") {
                return Ok((current, Vec::new()));
            }
            let mut marked = (*current).clone();
            let rv = self.next_rv();
            let metadata = meta_mut(&mut marked);
            metadata.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            metadata.insert("resourceVersion".into(), json!(rv.to_string()));
            let marked = Arc::new(marked);
            self.put(&key, marked.clone());
            let change = self.record(&key, EventType::Modified, marked.clone());
            return Ok((marked, vec![change]));
        }
        self.take(&key);
        let rv = self.next_rv();
        let mut gone = (*current).clone();
        meta_mut(&mut gone).insert("resourceVersion".into(), json!(rv.to_string()));
        let gone = Arc::new(gone);
        let mut changes = vec![self.record(&key, EventType::Deleted, gone.clone())];
        changes.extend(self.collect_garbage(&gone));
        Ok((gone, changes))
    }

    /// Deletes (respecting their finalizers) the objects owned by `owner`, and theirs in turn.
    fn collect_garbage(&mut self, owner: &Value) -> Vec<Arc<Change>> {
        let Some(uid) = meta_str(owner, "uid").map(str::to_owned) else {
            return Vec::new();
        };
        let first = (String::new(), String::new(), String::new(), String::new());
        let dependents: Vec<Key> = self
            .dependents
            .range((uid.clone(), first)..)
            .take_while(|(owner, _)| owner == &uid)
            .map(|(_, key)| key.clone())
            .collect();
        let mut changes = Vec::new();
        for key in dependents {
            let Some(resource) = self
                .resources
                .iter()
                .find(|r| r.group == key.0 && r.plural == key.1)
                .cloned()
            else {
                continue;
            };
            if let Ok((_, more)) = self.delete(&resource, &key.2, &key.3, None) {
                changes.extend(more);
            }
        }
        changes
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    name.split('.').all(|label| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// Apply configurations own what they set, except identity and bookkeeping.
fn strip_for_ownership(config: &Value) -> Value {
    let mut copy = config.clone();
    if let Some(fields) = copy.as_object_mut() {
        fields.remove("apiVersion");
        fields.remove("kind");
        if let Some(metadata) = fields.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "generation",
                "managedFields",
            ] {
                metadata.remove(field);
            }
        }
    }
    copy
}

/// JSON-pointer paths of every leaf (scalars and lists, which are atomic).
pub fn leaf_paths(value: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, path: String, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(fields) if !fields.is_empty() => {
                for (key, child) in fields {
                    walk(
                        child,
                        format!("{path}/{}", key.replace('~', "~0").replace('/', "~1")),
                        out,
                    );
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(value, String::new(), &mut out);
    out
}

fn value_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    value.pointer(pointer)
}

fn remove_at(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(fields)) = value.pointer_mut(parent) {
        fields.remove(&last);
    }
}

/// After a dropped field was removed, removes the maps above it that it leaves empty and that
/// the apply configuration no longer sets anything under (as the API server removes a whole
/// struct a manager stops applying, not only its leaves).
fn remove_emptied_parents(value: &mut Value, pointer: &str, applied: &BTreeSet<String>) {
    let mut path = pointer;
    while let Some((parent, _)) = path.rsplit_once('/') {
        if parent.is_empty() {
            return;
        }
        let still_applied = applied
            .iter()
            .any(|p| p.starts_with(parent) && p[parent.len()..].starts_with('/'));
        let empty =
            matches!(value.pointer(parent), Some(Value::Object(fields)) if fields.is_empty());
        if still_applied || !empty {
            return;
        }
        remove_at(value, parent);
        path = parent;
    }
}

/// Merges an apply configuration: objects merge key by key, everything else replaces.
fn merge_apply(target: &mut Value, config: &Value) {
    match (target, config) {
        (Value::Object(target), Value::Object(config)) => {
            for (key, value) in config {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge_apply(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, config) => *target = config.clone(),
    }
}
