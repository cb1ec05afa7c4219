//! SCIM PATCH (RFC 7644 §3.5.2) on a resource's document: add, remove and replace, with paths,
//! paths with filters, or no path at all; in the shapes Microsoft Entra sends too (operation
//! names in any case, booleans as strings, a member removed by value without a filter, a
//! replace without a path whose keys are dotted paths).

use serde_json::{Map, Value, json};

use super::filter::{self, AttrPath, Filter, Invalid, PatchPath};
use super::schema::{self, Resource};

/// Why a PATCH was refused: the SCIM error type and what to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub scim_type: &'static str,
    pub detail: String,
}

fn refused(scim_type: &'static str, detail: impl Into<String>) -> Refused {
    Refused {
        scim_type,
        detail: detail.into(),
    }
}

impl From<Invalid> for Refused {
    fn from(invalid: Invalid) -> Self {
        refused("invalidPath", invalid.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
    Replace,
}

/// At most this many operations in one request.
pub const MAX_OPERATIONS: usize = 1000;

/// Applies the `PatchOp` message `body` to `doc` (a resource's writable attributes, names as
/// the schema spells them).
pub fn apply(
    resource: Resource,
    doc: &mut Map<String, Value>,
    body: &Value,
) -> Result<(), Refused> {
    let Some(message) = body.as_object() else {
        return Err(refused(
            "invalidSyntax",
            "a PATCH body is a PatchOp message (a JSON object)",
        ));
    };
    let schemas_ok = message
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("schemas"))
        .and_then(|(_, v)| v.as_array())
        .is_some_and(|schemas| {
            schemas.iter().any(|s| {
                s.as_str().is_some_and(|s| {
                    s.eq_ignore_ascii_case("urn:ietf:params:scim:api:messages:2.0:PatchOp")
                })
            })
        });
    if !schemas_ok {
        return Err(refused(
            "invalidSyntax",
            "schemas must hold urn:ietf:params:scim:api:messages:2.0:PatchOp",
        ));
    }
    let Some(operations) = message
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
        .and_then(|(_, v)| v.as_array())
    else {
        return Err(refused(
            "invalidSyntax",
            "Operations must be an array of operations",
        ));
    };
    if operations.is_empty() || operations.len() > MAX_OPERATIONS {
        return Err(refused(
            "invalidSyntax",
            format!("Operations must hold 1 to {MAX_OPERATIONS} operations"),
        ));
    }
    for (index, operation) in operations.iter().enumerate() {
        operation_on(resource, doc, operation)
            .map_err(|e| refused(e.scim_type, format!("Operations[{index}]: {}", e.detail)))?;
    }
    Ok(())
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn operation_on(
    resource: Resource,
    doc: &mut Map<String, Value>,
    operation: &Value,
) -> Result<(), Refused> {
    let Some(operation) = operation.as_object() else {
        return Err(refused("invalidSyntax", "an operation is a JSON object"));
    };
    let op = match field(operation, "op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
    {
        Some(op) if op == "add" => Op::Add,
        Some(op) if op == "remove" => Op::Remove,
        Some(op) if op == "replace" => Op::Replace,
        Some(other) => {
            return Err(refused(
                "invalidSyntax",
                format!("op {other:?} is not add, remove or replace"),
            ));
        }
        None => return Err(refused("invalidSyntax", "each operation needs an op")),
    };
    let path = match field(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(path)) if path.trim().is_empty() => None,
        Some(Value::String(path)) => Some(path.as_str()),
        Some(_) => return Err(refused("invalidPath", "path must be a string")),
    };
    let value = field(operation, "value").cloned();
    match path {
        // A whole extension: removed, or its attributes added or replaced.
        Some(path) if resource.extension(path).is_some() => {
            let urn = resource.extension(path).expect("just found").id;
            if op == Op::Remove {
                doc.remove(urn);
                return Ok(());
            }
            without_path(
                resource,
                doc,
                op,
                Some(json!({ urn: value.unwrap_or(Value::Null) })),
            )
        }
        Some(path) => {
            let path = filter::patch_path(resource, path)?;
            at_path(resource, doc, op, &path, value)
        }
        None => without_path(resource, doc, op, value),
    }
}

/// add/replace with no path: each key of the value is an attribute, an extension, or (as
/// Microsoft Entra sends it) a dotted or URN-qualified path.
fn without_path(
    resource: Resource,
    doc: &mut Map<String, Value>,
    op: Op,
    value: Option<Value>,
) -> Result<(), Refused> {
    if op == Op::Remove {
        return Err(refused("noTarget", "remove needs a path"));
    }
    let Some(Value::Object(value)) = value else {
        return Err(refused(
            "invalidValue",
            "without a path, value must be an object of attributes",
        ));
    };
    for (key, v) in value {
        if ["schemas", "id", "meta"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&key))
        {
            continue;
        }
        if let Some(extension) = resource.extension(&key) {
            let Value::Object(inner) = v else {
                return Err(refused("invalidValue", format!("{key} must be an object")));
            };
            for (name, inner_value) in inner {
                if name.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                let path = filter::patch_path(resource, &format!("{}:{name}", extension.id))?;
                at_path(resource, doc, op, &path, Some(inner_value))?;
            }
            continue;
        }
        let path = filter::patch_path(resource, &key)?;
        at_path(resource, doc, op, &path, Some(v))?;
    }
    Ok(())
}

/// The value `raw` for `path`, checked and spelled as the schema says, by normalizing the
/// fragment of a resource that holds it.
fn normalized(
    resource: Resource,
    path: &AttrPath,
    element: bool,
    sub: Option<&str>,
    raw: Value,
) -> Result<Option<Value>, Refused> {
    let mut inner = match sub {
        Some(sub) => json!({ sub: raw }),
        None => raw,
    };
    if element {
        inner = Value::Array(vec![inner]);
    }
    let fragment = match path.extension {
        Some(urn) => json!({ urn: { path.attr.clone(): inner } }),
        None => json!({ path.attr.clone(): inner }),
    };
    let mut normalized = schema::normalize(resource, &fragment)
        .map_err(|unfit| refused("invalidValue", unfit.reason))?;
    let container = match path.extension {
        Some(urn) => match normalized.remove(urn) {
            Some(Value::Object(inner)) => inner,
            _ => return Ok(None),
        },
        None => normalized,
    };
    let mut value = match container.get(&path.attr) {
        Some(value) => value.clone(),
        None => return Ok(None),
    };
    if element {
        value = match value {
            Value::Array(mut items) if !items.is_empty() => items.remove(0),
            _ => return Ok(None),
        };
    }
    if let Some(sub) = sub {
        return Ok(value.get(sub).cloned());
    }
    Ok(Some(value))
}

fn writable(resource: Resource, path: &AttrPath) -> Result<(), Refused> {
    if path.extension.is_none() && ["id", "meta"].contains(&path.attr.as_str()) {
        return Err(refused(
            "mutability",
            format!("{} cannot be changed", path.attr),
        ));
    }
    if path.extension.is_none() && path.attr == "externalId" {
        return Ok(());
    }
    let attributes = match path.extension.and_then(|urn| resource.extension(urn)) {
        Some(extension) => extension.attributes,
        None => resource.core().attributes,
    };
    let attr = schema::find(attributes, &path.attr);
    let read_only = attr.is_some_and(|a| {
        a.mutability == schema::Mutability::ReadOnly
            || path.sub.as_deref().is_some_and(|s| {
                schema::find(a.sub, s).is_some_and(|s| s.mutability == schema::Mutability::ReadOnly)
            })
    });
    if read_only {
        return Err(refused("mutability", format!("{} is read-only", path.attr)));
    }
    Ok(())
}

fn is_multi(resource: Resource, path: &AttrPath) -> bool {
    let attributes = match path.extension.and_then(|urn| resource.extension(urn)) {
        Some(extension) => extension.attributes,
        None => resource.core().attributes,
    };
    schema::find(attributes, &path.attr).is_some_and(|a| a.multi)
}

fn container<'a>(
    doc: &'a mut Map<String, Value>,
    extension: Option<&str>,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    match extension {
        None => Some(doc),
        Some(urn) => {
            if create && !doc.contains_key(urn) {
                doc.insert(urn.to_owned(), Value::Object(Map::new()));
            }
            doc.get_mut(urn).and_then(Value::as_object_mut)
        }
    }
}

/// The `type eq "x"` a filter says, to add the element of that type a replace found missing.
fn equality(filter: &Filter) -> Option<(String, Value)> {
    match filter {
        Filter::Compare(path, filter::Op::Eq, value) if path.sub.as_deref() == Some("type") => {
            Some(("type".to_owned(), value.clone()))
        }
        _ => None,
    }
}

fn at_path(
    resource: Resource,
    doc: &mut Map<String, Value>,
    op: Op,
    path: &PatchPath,
    value: Option<Value>,
) -> Result<(), Refused> {
    writable(resource, &path.path)?;
    let multi = is_multi(resource, &path.path);
    match (&path.filter, op) {
        (None, Op::Remove) => {
            remove_at(doc, &path.path, multi, value);
            Ok(())
        }
        (None, op) => {
            let Some(raw) = value else {
                return Err(refused("invalidValue", format!("{op:?} needs a value")));
            };
            set_at(resource, doc, op, &path.path, multi, raw)
        }
        (Some(filter), op) => {
            if !multi {
                return Err(refused(
                    "invalidPath",
                    format!(
                        "{} is not multi-valued; a filter selects among several values",
                        path.path.attr
                    ),
                ));
            }
            let new = match (op, value) {
                (Op::Remove, _) => None,
                (_, Some(raw)) => {
                    match normalized(resource, &path.path, true, path.sub.as_deref(), raw)? {
                        Some(new) => Some(new),
                        None => return Ok(()),
                    }
                }
                (_, None) => return Err(refused("invalidValue", format!("{op:?} needs a value"))),
            };
            at_elements(doc, &path.path, filter, path.sub.as_deref(), new)
        }
    }
}

/// remove with a path and no filter.
fn remove_at(doc: &mut Map<String, Value>, path: &AttrPath, multi: bool, value: Option<Value>) {
    let Some(target) = container(doc, path.extension, false) else {
        return;
    };
    let attr = &path.attr;
    match (&path.sub, value) {
        (Some(sub), _) => match target.get_mut(attr) {
            Some(Value::Object(inner)) => {
                inner.remove(sub);
            }
            Some(Value::Array(items)) => {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    item.remove(sub);
                }
            }
            _ => {}
        },
        // Microsoft Entra removes a group member as {"path": "members", "value": [{"value": id}]}.
        (None, Some(value)) if multi && !value.is_null() => {
            let key = |v: &Value| v.get("value").cloned().unwrap_or_else(|| v.clone());
            let doomed: Vec<Value> = match value {
                Value::Array(items) => items.iter().map(key).collect(),
                single => vec![key(&single)],
            };
            if let Some(Value::Array(items)) = target.get_mut(attr) {
                items.retain(|item| !doomed.contains(&key(item)));
            }
        }
        (None, _) => {
            target.remove(attr);
        }
    }
}

/// add or replace with a path and no filter.
fn set_at(
    resource: Resource,
    doc: &mut Map<String, Value>,
    op: Op,
    path: &AttrPath,
    multi: bool,
    raw: Value,
) -> Result<(), Refused> {
    let attr = path.attr.clone();
    let element = multi && path.sub.is_none() && !raw.is_array() && op == Op::Add;
    let value = normalized(resource, path, element, path.sub.as_deref(), raw)?;
    let target = container(doc, path.extension, true).expect("created");
    let Some(value) = value else {
        // A null (or empty) value clears the attribute.
        if op == Op::Replace {
            match &path.sub {
                Some(sub) => {
                    if let Some(Value::Object(inner)) = target.get_mut(&attr) {
                        inner.remove(sub);
                    }
                }
                None => {
                    target.remove(&attr);
                }
            }
        }
        return Ok(());
    };
    match (&path.sub, multi) {
        (Some(sub), false) => {
            let entry = target
                .entry(attr)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                inner.insert(sub.clone(), value);
            }
        }
        (Some(_), true) => {
            return Err(refused(
                "invalidPath",
                format!(
                    "{attr} has several values: say which with a filter, e.g. {attr}[type eq \"work\"]"
                ),
            ));
        }
        (None, true) => {
            let items: Vec<Value> = match value {
                Value::Array(items) => items,
                single => vec![single],
            };
            if op == Op::Replace {
                target.insert(attr, Value::Array(items));
            } else if let Value::Array(existing) = target
                .entry(attr)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                for item in items {
                    if !existing.contains(&item) {
                        existing.push(item);
                    }
                }
            }
        }
        (None, false) => match (target.get_mut(&attr), value) {
            // A complex value merges: sub-attributes not given stay (RFC 7644 §3.5.2.1, §3.5.2.3).
            (Some(Value::Object(existing)), Value::Object(new)) => existing.extend(new),
            (_, value) => {
                target.insert(attr, value);
            }
        },
    }
    Ok(())
}

/// An operation on the elements of multi-valued `path` that `filter` selects (or their `sub`):
/// removed when `new` is None, else set to it.
fn at_elements(
    doc: &mut Map<String, Value>,
    path: &AttrPath,
    filter: &Filter,
    sub: Option<&str>,
    new: Option<Value>,
) -> Result<(), Refused> {
    let attr = &path.attr;
    let Some(target) = container(doc, path.extension, new.is_some()) else {
        return Ok(());
    };
    let Some(new) = new else {
        if let Some(Value::Array(items)) = target.get_mut(attr) {
            match sub {
                None => items.retain(|item| !filter::element_matches(filter, item)),
                Some(sub) => {
                    for item in items.iter_mut() {
                        if filter::element_matches(filter, item)
                            && let Value::Object(object) = item
                        {
                            object.remove(sub);
                        }
                    }
                }
            }
            if items.is_empty() {
                target.remove(attr);
            }
        }
        return Ok(());
    };
    if !matches!(target.get(attr), Some(Value::Array(_))) {
        target.insert(attr.clone(), Value::Array(Vec::new()));
    }
    let items = target
        .get_mut(attr)
        .and_then(Value::as_array_mut)
        .expect("an array");
    let mut matched = false;
    for item in items.iter_mut() {
        if filter::element_matches(filter, item) {
            matched = true;
            match (sub, &mut *item) {
                (Some(sub), Value::Object(object)) => {
                    object.insert(sub.to_owned(), new.clone());
                }
                (None, _) => *item = new.clone(),
                _ => {}
            }
        }
    }
    if !matched {
        // `emails[type eq "work"].value` on a user with no work email: add one, as identity
        // providers expect.
        let Some((key, key_value)) = equality(filter) else {
            return Err(refused(
                "noTarget",
                format!("no value of {attr} matches the filter"),
            ));
        };
        let mut element = match sub {
            Some(sub) => json!({ sub: new }),
            None => new,
        };
        if let Value::Object(object) = &mut element {
            object.entry(key).or_insert(key_value);
        }
        items.push(element);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(resource: Resource, doc: Value, operations: Value) -> Result<Value, Refused> {
        let mut doc = doc.as_object().unwrap().clone();
        apply(
            resource,
            &mut doc,
            &json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations }),
        )?;
        Ok(Value::Object(doc))
    }

    fn ann() -> Value {
        json!({ "userName": "ann@contoso.example", "active": true, "name": { "givenName": "Ann", "familyName": "Lee" },
                "emails": [{ "value": "ann@contoso.example", "type": "work", "primary": true }] })
    }

    #[test]
    fn entra_disables_with_a_capitalised_op_and_a_string_boolean() {
        let doc = patch(
            Resource::User,
            ann(),
            json!([{ "op": "Replace", "path": "active", "value": "False" }]),
        )
        .unwrap();
        assert_eq!(doc["active"], false);
        let doc = patch(
            Resource::User,
            ann(),
            json!([{ "op": "replace", "value": { "active": "True" } }]),
        )
        .unwrap();
        assert_eq!(doc["active"], true);
    }

    #[test]
    fn entra_replaces_without_a_path_using_dotted_and_urn_keys() {
        let doc = patch(
            Resource::User,
            ann(),
            json!([{ "op": "Replace", "value": {
                "name.givenName": "Anne", "emails[type eq \"work\"].value": "anne@contoso.example",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Support",
                "phoneNumbers[type eq \"mobile\"].value": "+44 7700 900123",
            } }]),
        )
        .unwrap();
        assert_eq!(
            doc["name"],
            json!({ "givenName": "Anne", "familyName": "Lee" }),
            "merged, not replaced"
        );
        assert_eq!(doc["emails"][0]["value"], "anne@contoso.example");
        assert_eq!(doc[schema::ENTERPRISE]["department"], "Support");
        assert_eq!(
            doc["phoneNumbers"],
            json!([{ "value": "+44 7700 900123", "type": "mobile" }]),
            "added where none matched"
        );
    }

    #[test]
    fn group_members_are_added_and_removed_by_value_with_or_without_a_filter() {
        let group =
            json!({ "displayName": "Sales", "members": [{ "value": "u1" }, { "value": "u2" }] });
        let added = patch(
            Resource::Group,
            group.clone(),
            json!([{ "op": "Add", "path": "members", "value": [{ "value": "u3" }] }]),
        )
        .unwrap();
        assert_eq!(added["members"].as_array().unwrap().len(), 3);
        let removed = patch(
            Resource::Group,
            group.clone(),
            json!([{ "op": "Remove", "path": "members", "value": [{ "value": "u1" }] }]),
        )
        .unwrap();
        assert_eq!(removed["members"], json!([{ "value": "u2" }]));
        let filtered = patch(
            Resource::Group,
            group.clone(),
            json!([{ "op": "remove", "path": "members[value eq \"u2\"]" }]),
        )
        .unwrap();
        assert_eq!(filtered["members"], json!([{ "value": "u1" }]));
        let all = patch(
            Resource::Group,
            group,
            json!([{ "op": "remove", "path": "members" }]),
        )
        .unwrap();
        assert!(all.get("members").is_none());
    }

    #[test]
    fn bad_operations_are_refused_with_the_scim_error_type() {
        let table = [
            (json!([{ "op": "move", "path": "active" }]), "invalidSyntax"),
            (json!([{ "op": "remove" }]), "noTarget"),
            (
                json!([{ "op": "replace", "path": "colour", "value": "red" }]),
                "invalidPath",
            ),
            (
                json!([{ "op": "replace", "path": "id", "value": "x" }]),
                "mutability",
            ),
            (
                json!([{ "op": "replace", "path": "active", "value": "maybe" }]),
                "invalidValue",
            ),
            (
                json!([{ "op": "replace", "path": "emails[type eq \"home\"", "value": "x" }]),
                "invalidPath",
            ),
            (
                json!([{ "op": "replace", "path": "emails[primary eq true]", "value": { "value": "x" } }]),
                "noTarget",
            ),
            (json!([]), "invalidSyntax"),
        ];
        for (operations, scim_type) in table {
            let mut doc = ann();
            doc["emails"][0]["primary"] = json!(false);
            let refusal = patch(Resource::User, doc, operations.clone()).unwrap_err();
            assert_eq!(
                refusal.scim_type, scim_type,
                "{operations}: {}",
                refusal.detail
            );
        }
    }
}
