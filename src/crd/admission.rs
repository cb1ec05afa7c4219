//! Admission of custom resources against their CRD's `openAPIV3Schema`, as a structural-schema
//! API server does it (used by the `apply`/`diff` CLI and by the API server double): defaults are applied, unknown fields pruned (unless
//! `x-kubernetes-preserve-unknown-fields`), then types, required fields, enums, patterns,
//! formats, lengths, bounds and item counts are checked. Field paths and messages follow the
//! real server's wording (`spec.email: Invalid value: "x": spec.email in body should match …`).
//!
//! CEL rules (`x-kubernetes-validations`) are evaluated with the `cel` crate: `self` is the
//! node the rule sits on, `oldSelf` the same node before an update (transition rules are skipped
//! on create, as the real server does). The crate implements standard CEL (`size`, `has`,
//! `matches`, `all`, `exists`, `duration`, …), not the Kubernetes extension libraries (`isURL`,
//! quantities, `format.*`); a rule using those fails to compile and is reported as such.

use serde_json::{Map, Value};

/// One thing wrong with an object, as the API server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueForbidden`, …
    pub reason: &'static str,
    /// The field path, e.g. `spec.email`.
    pub field: String,
    pub message: String,
}

/// Applies defaults and prunes unknown fields in place (everything but `apiVersion`, `kind` and
/// `metadata` at the root), then validates. Returns every cause found.
pub fn admit(object: &mut Value, schema: &Value, old: Option<&Value>) -> Vec<Cause> {
    if let (Some(fields), Some(properties)) = (object.as_object_mut(), schema.get("properties")) {
        for (key, value) in fields.iter_mut() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(property) = properties.get(key) {
                default_and_prune(value, property);
            }
        }
        fields.retain(|key, _| {
            matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
                || properties.get(key).is_some()
        });
        for (key, property) in properties.as_object().into_iter().flatten() {
            if !fields.contains_key(key)
                && let Some(default) = property.get("default")
            {
                let mut value = default.clone();
                default_and_prune(&mut value, property);
                fields.insert(key.clone(), value);
            }
        }
    }
    let mut causes = Vec::new();
    if let Some(fields) = object.as_object() {
        for (key, value) in fields {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(property) = schema.pointer(&format!("/properties/{key}")) {
                validate(
                    value,
                    property,
                    key,
                    old.and_then(|o| o.get(key)),
                    &mut causes,
                );
            }
        }
        check_required(fields, schema, "", &mut causes);
    }
    check_rules(object, schema, "", old, &mut causes);
    causes
}

/// The CEL program of a rule, compiled once per process: a CRD has a handful of rules and
/// admission runs them for every object (10,000 in one `apply`, every write to the API server
/// double), so compiling per object was most of admission's time.
fn compiled(source: &str) -> Result<std::sync::Arc<cel::Program>, String> {
    static PROGRAMS: Memo<Result<std::sync::Arc<cel::Program>, String>> = Memo::new();
    PROGRAMS.get_or(source, || {
        cel::Program::compile(source)
            .map(std::sync::Arc::new)
            .map_err(|e| format!("compilation failed: {e}"))
    })
}

/// Values made once per process from a string (a rule, a pattern) and shared by every thread.
struct Memo<V>(std::sync::LazyLock<std::sync::RwLock<std::collections::HashMap<String, V>>>);

impl<V: Clone> Memo<V> {
    const fn new() -> Self {
        Memo(std::sync::LazyLock::new(Default::default))
    }

    fn get_or(&self, key: &str, make: impl FnOnce() -> V) -> V {
        if let Some(found) = self.0.read().expect("memo").get(key) {
            return found.clone();
        }
        let made = make();
        self.0
            .write()
            .expect("memo")
            .entry(key.to_owned())
            .or_insert(made)
            .clone()
    }
}

/// The variables of one schema node's rules: `self` and (on an update) `oldSelf`, converted
/// to CEL and bound once for all the node's rules (the conversion copies the whole subtree,
/// so converting per rule made a node with three rules pay three times).
struct Scope<'a> {
    value: &'a Value,
    old: Option<&'a Value>,
    bound: Option<Result<cel::Context<'static, 'static>, String>>,
}

impl<'a> Scope<'a> {
    fn new(value: &'a Value, old: Option<&'a Value>) -> Self {
        Scope {
            value,
            old,
            bound: None,
        }
    }

    /// Runs one rule against the node.
    fn evaluate(&mut self, source: &str) -> Result<cel::Value, String> {
        // `self.matches('…')` on a string is the commonest rule; CEL's `matches` compiles its
        // regex on every call, so such a rule is run with the pattern compiled once instead
        // (the same regex engine and syntax as CEL's).
        if let (Some(pattern), Some(text)) = (matches_literal(source), self.value.as_str()) {
            return pattern_regex(&pattern)
                .map(|regex| cel::Value::Bool(regex.is_match(text)))
                .map_err(|e| format!("evaluation error: '{pattern}' not a valid regex: {e}"));
        }
        let program = compiled(source)?;
        let (value, old) = (self.value, self.old);
        let context = self
            .bound
            .get_or_insert_with(|| {
                let this = cel::to_value(value).map_err(|e| e.to_string())?;
                let previous = old
                    .map(cel::to_value)
                    .transpose()
                    .map_err(|e| e.to_string())?;
                let mut context = root_context();
                context.add_variable_from_value("self", this);
                if let Some(previous) = previous {
                    context.add_variable_from_value("oldSelf", previous);
                }
                Ok(context)
            })
            .as_ref()
            .map_err(Clone::clone)?;
        program
            .execute(context)
            .map_err(|e| format!("evaluation error: {e}"))
    }
}

/// A scope of its own over CEL's standard library, which is built once per process.
fn root_context() -> cel::Context<'static, 'static> {
    static ROOT: std::sync::LazyLock<cel::Context<'static, 'static>> =
        std::sync::LazyLock::new(cel::Context::default);
    ROOT.new_inner_scope()
}

/// The pattern of a rule that is exactly `self.matches('<literal>')`, with the literal's
/// escapes undone; `None` for any other rule (or a literal with escapes other than `\\`).
fn matches_literal(source: &str) -> Option<String> {
    let literal = source
        .trim()
        .strip_prefix("self.matches('")?
        .strip_suffix("')")?;
    let mut pattern = String::with_capacity(literal.len());
    let mut chars = literal.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '\\' => pattern.push('\\'),
                _ => return None,
            },
            '\'' | '"' => return None,
            c => pattern.push(c),
        }
    }
    Some(pattern)
}

/// A schema's `pattern`, compiled once per process (see [`compiled`]).
fn pattern_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    static PATTERNS: Memo<Result<regex::Regex, regex::Error>> = Memo::new();
    PATTERNS.get_or(pattern, || regex::Regex::new(pattern))
}

/// Evaluates the `x-kubernetes-validations` of one schema node.
fn check_rules(
    value: &Value,
    schema: &Value,
    path: &str,
    old: Option<&Value>,
    causes: &mut Vec<Cause>,
) {
    check_rules_of(value, schema, path, old, Rules::All, causes);
}

/// Which of a node's rules run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rules {
    All,
    /// Only those that read `oldSelf`: the node is unchanged by an update, and the errors of
    /// the others on an unchanged value are ratcheted (ignored), as the real server does.
    Transitions,
}

fn check_rules_of(
    value: &Value,
    schema: &Value,
    path: &str,
    old: Option<&Value>,
    which: Rules,
    causes: &mut Vec<Cause>,
) {
    let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    else {
        return;
    };
    let mut scope = Scope::new(value, old);
    for rule in rules {
        let Some(source) = rule.get("rule").and_then(Value::as_str) else {
            continue;
        };
        let transition = source.contains("oldSelf");
        if (transition && old.is_none()) || (!transition && which == Rules::Transitions) {
            continue;
        }
        let field = match rule.get("fieldPath").and_then(Value::as_str) {
            Some(extra) => format!("{path}{extra}").trim_start_matches('.').to_owned(),
            None => path.to_owned(),
        };
        let field = if field.is_empty() {
            "<root>".to_owned()
        } else {
            field
        };
        let message = rule
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("failed rule: {source}"));
        let outcome = scope.evaluate(source);
        let passed = matches!(outcome, Ok(cel::Value::Bool(true)));
        if !passed {
            let detail = match outcome {
                Err(error) => format!("{message} ({error})"),
                Ok(_) => message,
            };
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field,
                message: format!("Invalid value: \"{}\": {detail}", type_name(value)),
            });
        }
    }
}

/// The fields of `object` its schema does not declare, as `kubectl apply` (strict field
/// validation) reports them: each with its path and the closest declared field, if one is close.
/// Read before [`admit`], which prunes them.
pub fn unknown_fields(object: &Value, schema: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(fields) = object.as_object() else {
        return causes;
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    for (key, value) in fields {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => unknown_in_metadata(value, &mut causes),
            _ => match properties.and_then(|p| p.get(key)) {
                Some(property) => unknown_below(value, property, key, &mut causes),
                None => causes.push(unknown(
                    key,
                    ["apiVersion", "kind", "metadata"]
                        .into_iter()
                        .chain(properties.into_iter().flatten().map(|(k, _)| k.as_str())),
                )),
            },
        }
    }
    causes
}

/// The fields of ObjectMeta (what `metadata` may hold).
const OBJECT_META: [&str; 15] = [
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "selfLink",
];

fn unknown_in_metadata(metadata: &Value, causes: &mut Vec<Cause>) {
    for key in metadata.as_object().into_iter().flatten().map(|(k, _)| k) {
        if !OBJECT_META.contains(&key.as_str()) {
            causes.push(unknown(&format!("metadata.{key}"), OBJECT_META));
        }
    }
}

fn unknown_below(value: &Value, schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in fields {
                let child_path = format!("{path}.{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(property), _) => unknown_below(child, property, &child_path, causes),
                    (None, Some(additional)) => {
                        unknown_below(child, additional, &child_path, causes)
                    }
                    (None, None) => causes.push(unknown(
                        &child_path,
                        properties.into_iter().flatten().map(|(k, _)| k.as_str()),
                    )),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    unknown_below(item, item_schema, &format!("{path}[{index}]"), causes);
                }
            }
        }
        _ => {}
    }
}

fn unknown<'a>(path: &str, known: impl IntoIterator<Item = &'a str>) -> Cause {
    let name = path.rsplit('.').next().unwrap_or(path);
    let closest = known
        .into_iter()
        .map(|candidate| {
            (
                edit_distance(&name.to_lowercase(), &candidate.to_lowercase()),
                candidate,
            )
        })
        .filter(|(distance, candidate)| {
            *distance <= 2.max(name.len() / 3)
                || candidate.starts_with(name)
                || name.starts_with(candidate)
        })
        .min();
    let message = match closest {
        Some((_, candidate)) => {
            format!(
                "{path}: Unknown field: the schema does not declare it; did you mean {candidate:?}?"
            )
        }
        None => format!("{path}: Unknown field: the schema does not declare it"),
    };
    Cause {
        reason: "FieldValueUnknown",
        field: path.to_owned(),
        message,
    }
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn default_and_prune(value: &mut Value, schema: &Value) {
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if let Some(properties) = properties {
                for (key, property) in properties {
                    if !fields.contains_key(key)
                        && let Some(default) = property.get("default")
                    {
                        fields.insert(key.clone(), default.clone());
                    }
                }
                if !preserve {
                    fields.retain(|key, _| properties.contains_key(key));
                }
                for (key, child) in fields.iter_mut() {
                    if let Some(property) = properties.get(key) {
                        default_and_prune(child, property);
                    }
                }
            } else if let Some(additional) = additional {
                for child in fields.values_mut() {
                    default_and_prune(child, additional);
                }
            } else if !preserve && schema.get("type").and_then(Value::as_str) == Some("object") {
                // A structural object schema with neither properties nor additionalProperties
                // allows no fields.
                fields.clear();
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default_and_prune(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn invalid(causes: &mut Vec<Cause>, path: &str, value: &Value, message: String) {
    causes.push(Cause {
        reason: "FieldValueInvalid",
        field: path.to_owned(),
        message: format!("Invalid value: {}: {message}", shown(value)),
    });
}

fn check_required(
    fields: &Map<String, Value>,
    schema: &Value,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = required.as_str()
            && !fields.contains_key(name)
        {
            let field = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            causes.push(Cause {
                reason: "FieldValueRequired",
                field,
                message: "Required value".into(),
            });
        }
    }
}

fn validate(
    value: &Value,
    schema: &Value,
    path: &str,
    old: Option<&Value>,
    causes: &mut Vec<Cause>,
) {
    // Validation ratcheting (Kubernetes 1.30+, GA in 1.33): on an update, a value equal to
    // its old self is not checked again, so a write that leaves the spec alone (a finalizer,
    // a label) is not refused for what an older schema let in. Transition rules still run.
    if old.is_some_and(|old| old == value) {
        transition_rules(value, schema, path, old, causes);
        return;
    }
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid",
                field: path.to_owned(),
                message: format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("object")
                ),
            });
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let matches = actual == expected || (expected == "number" && actual == "integer");
        let int_or_string_ok = int_or_string && matches!(actual, "integer" | "string");
        if !(matches || int_or_string_ok) {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid",
                field: path.to_owned(),
                message: format!("Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""),
            });
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(shown).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.to_owned(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                shown(value),
                names.join(", ")
            ),
        });
    }
    match value {
        Value::String(text) => validate_string(value, text, schema, path, causes),
        Value::Number(number) => {
            let n = number.as_f64().unwrap_or_default();
            let exclusive_min =
                schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
            let exclusive_max =
                schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && (n < min || (exclusive_min && n == min))
            {
                let relation = if exclusive_min {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                invalid(
                    causes,
                    path,
                    value,
                    format!("{path} in body should be {relation} {min}"),
                );
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && (n > max || (exclusive_max && n == max))
            {
                let relation = if exclusive_max {
                    "less than"
                } else {
                    "less than or equal to"
                };
                invalid(
                    causes,
                    path,
                    value,
                    format!("{path} in body should be {relation} {max}"),
                );
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                invalid(
                    causes,
                    path,
                    value,
                    format!("{path} in body should have at least {min} items"),
                );
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                causes.push(Cause {
                    reason: "FieldValueTooMany",
                    field: path.to_owned(),
                    message: format!("Too many: {}: must have at most {max} items", items.len()),
                });
            }
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        causes.push(Cause {
                            reason: "FieldValueDuplicate",
                            field: format!("{path}[{i}]"),
                            message: format!("Duplicate value: {}", shown(item)),
                        });
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                // List items are not correlated with their old selves (no oldSelf in them).
                for (i, item) in items.iter().enumerate() {
                    validate(item, item_schema, &format!("{path}[{i}]"), None, causes);
                }
            }
        }
        Value::Object(fields) => {
            for (key, child) in fields {
                if let Some(field_schema) = field_schema(schema, key) {
                    let old_child = old.and_then(|o| o.get(key));
                    validate(
                        child,
                        field_schema,
                        &format!("{path}.{key}"),
                        old_child,
                        causes,
                    );
                }
            }
            check_required(fields, schema, path, causes);
            if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
                && (fields.len() as u64) < min
            {
                invalid(
                    causes,
                    path,
                    value,
                    format!("{path} in body should have at least {min} properties"),
                );
            }
        }
        _ => {}
    }
    check_rules(value, schema, path, old, causes);
}

/// The schema of an object's field `key`: its declared property, else `additionalProperties`.
fn field_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|properties| properties.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// The transition rules of an unchanged value's schema, down its fields (list items have no
/// old selves, so their rules do not run on an update either way).
fn transition_rules(
    value: &Value,
    schema: &Value,
    path: &str,
    old: Option<&Value>,
    causes: &mut Vec<Cause>,
) {
    if let Value::Object(fields) = value {
        for (key, child) in fields {
            if let Some(child_schema) = field_schema(schema, key) {
                let old_child = old.and_then(|o| o.get(key));
                transition_rules(
                    child,
                    child_schema,
                    &format!("{path}.{key}"),
                    old_child,
                    causes,
                );
            }
        }
    }
    check_rules_of(value, schema, path, old, Rules::Transitions, causes);
}

fn validate_string(value: &Value, text: &str, schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    let length = text.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        invalid(
            causes,
            path,
            value,
            format!("{path} in body should be at least {min} chars long"),
        );
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: path.to_owned(),
            message: format!("Too long: may not be more than {max} bytes"),
        });
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match pattern_regex(pattern) {
            Ok(regex) if !regex.is_match(text) => {
                invalid(
                    causes,
                    path,
                    value,
                    format!("{path} in body should match '{pattern}'"),
                );
            }
            Ok(_) => {}
            Err(_) => invalid(
                causes,
                path,
                value,
                format!("the schema's pattern '{pattern}' does not compile"),
            ),
        }
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        let ok = match format {
            "date-time" => {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .is_ok()
            }
            "email" => text
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.')),
            "uuid" => uuid::Uuid::parse_str(text).is_ok(),
            "byte" => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .is_ok()
            }
            _ => true,
        };
        if !ok {
            invalid(
                causes,
                path,
                value,
                format!("{path} in body must be of type {format}: {}", shown(value)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["email"],
                    "properties": {
                        "email": { "type": "string", "pattern": "^[^@]+@[^@]+$" },
                        "roles": { "type": "array", "minItems": 1, "items": { "type": "string", "enum": ["A", "B"] }, "default": ["A"] },
                        "size": { "type": "integer", "minimum": 1, "maximum": 5 },
                        "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                        "free": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
                    }
                },
                "status": { "type": "object", "properties": { "phase": { "type": "string" } } }
            }
        })
    }

    #[test]
    fn a_matches_rule_runs_its_regex_like_cel_does() {
        let email = r"self.matches('^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$')";
        assert_eq!(
            matches_literal(email).as_deref(),
            Some(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
        );
        for text in ["ana@contoso.example", "not-an-email", "a b@c.d", "x@y"] {
            let value = json!(text);
            let fast = Scope::new(&value, None).evaluate(email);
            // The general path: CEL itself, compiled and run.
            let program = cel::Program::compile(email).unwrap();
            let mut context = cel::Context::default();
            context.add_variable_from_value("self", cel::to_value(json!(text)).unwrap());
            let cel = program.execute(&context).unwrap();
            assert_eq!(fast, Ok(cel), "{text}");
        }
        assert_eq!(matches_literal("self.matches('a') && true"), None);
        assert_eq!(matches_literal(r"self.matches('\d')"), None);
        assert_eq!(matches_literal("size(self) > 0"), None);
    }

    #[test]
    fn the_rules_of_one_node_share_its_bound_variables_and_each_is_judged_alone() {
        let schema = json!({ "type": "object", "x-kubernetes-validations": [
            { "rule": "self.a == oldSelf.a", "message": "a is immutable" },
            { "rule": "self.b > 0u", "message": "b must be positive" },
            { "rule": "self.b < oldSelf.b + 10u", "message": "b grows by less than 10" },
        ] });
        let table = [
            (
                json!({ "a": 1, "b": 2 }),
                Some(json!({ "a": 1, "b": 1 })),
                vec![],
            ),
            (
                json!({ "a": 2, "b": 2 }),
                Some(json!({ "a": 1, "b": 1 })),
                vec!["a is immutable"],
            ),
            (
                json!({ "a": 2, "b": 0 }),
                Some(json!({ "a": 1, "b": 1 })),
                vec!["a is immutable", "b must be positive"],
            ),
            (
                json!({ "a": 1, "b": 30 }),
                Some(json!({ "a": 1, "b": 1 })),
                vec!["b grows by less than 10"],
            ),
            // On create the transition rules are skipped; the others still run.
            (json!({ "a": 5, "b": 0 }), None, vec!["b must be positive"]),
        ];
        for (value, old, expected) in table {
            let mut causes = Vec::new();
            check_rules(&value, &schema, "spec", old.as_ref(), &mut causes);
            let messages: Vec<&str> = causes
                .iter()
                .map(|c| c.message.rsplit(": ").next().unwrap())
                .collect();
            assert_eq!(messages, expected, "{value} after {old:?}");
        }
    }

    #[test]
    fn an_update_that_leaves_a_value_alone_is_not_refused_for_it_but_transition_rules_still_run() {
        let schema = json!({ "type": "object", "properties": {
            "spec": { "type": "object", "properties": {
                "email": { "type": "string", "pattern": "^[^@]+@[^@]+$",
                           "x-kubernetes-validations": [{ "rule": "size(self) < 40", "message": "too long" }] },
                "size": { "type": "integer", "minimum": 1 },
                "pinned": { "type": "string",
                            "x-kubernetes-validations": [{ "rule": "self != oldSelf", "message": "must change" }] }
            } }
        } });
        // Stored when the schema was looser: every field of it is invalid now.
        let stored = json!({ "apiVersion": "v1", "kind": "K", "metadata": { "name": "a" },
            "spec": { "email": "not-an-email-and-far-too-long-for-the-rule-that-came-later", "size": 0 } });
        let messages = |object: &mut Value, old: Option<&Value>| -> Vec<String> {
            admit(object, &schema, old)
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message.rsplit(": ").next().unwrap()))
                .collect()
        };
        // A finalizer added: the spec is as it was, so nothing in it is checked again.
        let mut finalized = stored.clone();
        finalized["metadata"]["finalizers"] = json!(["portal.dev/cleanup"]);
        assert_eq!(
            messages(&mut finalized, Some(&stored)),
            Vec::<String>::new()
        );
        // A changed field is checked; the unchanged ones beside it are not.
        let mut resized = stored.clone();
        resized["spec"]["size"] = json!(-1);
        assert_eq!(
            messages(&mut resized, Some(&stored)),
            ["spec.size: spec.size in body should be greater than or equal to 1"]
        );
        // Created as it is, everything is checked.
        assert_eq!(messages(&mut stored.clone(), None).len(), 3);
        // A transition rule is never ratcheted: unchanged, it still runs (and fails here).
        let stored = json!({ "spec": { "pinned": "x" } });
        let mut same = stored.clone();
        assert_eq!(
            messages(&mut same, Some(&stored)),
            ["spec.pinned: must change"]
        );
    }

    #[test]
    fn unknown_fields_are_named_with_the_closest_declared_field() {
        let schema = json!({ "type": "object", "properties": {
            "spec": { "type": "object", "properties": {
                "roles": { "type": "array", "items": { "type": "string" } },
                "accountRef": { "type": "object", "properties": { "name": { "type": "string" } } },
                "free": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
            } }
        } });
        let object = json!({
            "apiVersion": "v1", "kind": "K",
            "metadata": { "name": "a", "lables": {} },
            "spec": { "role": ["ServiceViewer"], "accountRef": { "nmae": "x" }, "free": { "any": 1 },
                      "zzz": true },
            "sepc": {}
        });
        let messages: Vec<String> = unknown_fields(&object, &schema)
            .into_iter()
            .map(|c| c.message)
            .collect();
        assert_eq!(
            messages,
            [
                "metadata.lables: Unknown field: the schema does not declare it; did you mean \"labels\"?",
                "sepc: Unknown field: the schema does not declare it; did you mean \"spec\"?",
                "spec.accountRef.nmae: Unknown field: the schema does not declare it; did you mean \"name\"?",
                "spec.role: Unknown field: the schema does not declare it; did you mean \"roles\"?",
                "spec.zzz: Unknown field: the schema does not declare it",
            ]
        );
    }

    #[test]
    fn defaults_are_applied_and_unknown_fields_pruned() {
        let mut object = json!({ "apiVersion": "x/v1", "kind": "W", "metadata": { "name": "a", "extra": 1 },
            "spec": { "email": "a@b", "bogus": 1, "free": { "anything": true } }, "junk": true });
        assert!(admit(&mut object, &schema(), None).is_empty());
        assert_eq!(object["spec"]["roles"], json!(["A"]));
        assert!(object["spec"].get("bogus").is_none());
        assert!(object.get("junk").is_none());
        assert_eq!(object["spec"]["free"]["anything"], true);
        assert_eq!(
            object["metadata"]["extra"], 1,
            "metadata is not pruned by the schema"
        );
    }

    #[test]
    fn violations_name_the_field_like_the_real_server() {
        let mut object =
            json!({ "spec": { "email": "nope", "roles": ["C"], "size": 9, "labels": { "k": 1 } } });
        let causes = admit(&mut object, &schema(), None);
        let text: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert!(text.contains(&"spec.email: Invalid value: \"nope\": spec.email in body should match '^[^@]+@[^@]+$'".to_owned()), "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("spec.roles[0]: Unsupported value: \"C\"")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("spec.size in body should be less than or equal to 5")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("spec.labels.k: Invalid value: \"integer\"")),
            "{text:?}"
        );
    }

    #[test]
    fn required_fields_are_reported() {
        let mut object = json!({ "spec": {} });
        let causes = admit(&mut object, &schema(), None);
        assert_eq!(causes[0].field, "spec.email");
        assert_eq!(causes[0].message, "Required value");
    }
}
