//! Every reply the test client reads is checked against the portal's OpenAPI document: its
//! status is one the operation documents, a problem's `type` is one the document lists for that
//! status, the media type is documented, and a JSON body has exactly the fields the schema
//! declares (no undocumented field, no missing required one, each of its declared type). So the
//! whole portal suite is also a test that the document describes what the handlers send.

use std::sync::LazyLock;

use reqwest::Method;
use serde_json::Value;

static DOCUMENT: LazyLock<Value> = LazyLock::new(portal_operator::portal::openapi_document);

/// The documented operation a concrete request path and method reach, with its template.
fn operation(method: &Method, path: &str) -> Option<(&'static str, &'static Value)> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, &'static str, &'static Value)> = None;
    for (template, item) in DOCUMENT["paths"].as_object()? {
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let matches = parts.iter().zip(&segments).all(|(part, segment)| {
            if part.starts_with('{') {
                !segment.is_empty()
            } else {
                literal += 1;
                part == segment
            }
        });
        let Some(operation) = item.get(method.as_str().to_ascii_lowercase()) else {
            continue;
        };
        // A literal segment outranks a parameter (`/invitations/accept` over `/invitations/{id}`).
        if matches && best.is_none_or(|(score, _, _)| literal > score) {
            best = Some((literal, template.as_str(), operation));
        }
    }
    best.map(|(_, template, operation)| (template, operation))
}

/// Checks one reply and fails the test when the document does not describe it; with
/// `CONTRACT_LOG=FILE` the differences are appended to FILE instead (to see them all at once).
pub fn enforce(
    method: &Method,
    path_and_query: &str,
    status: u16,
    content_type: Option<&str>,
    body: &Value,
) {
    if let Err(difference) = check(method, path_and_query, status, content_type, body)
        && !append_line("CONTRACT_LOG", &difference)
    {
        panic!("the reply is not what the OpenAPI document says: {difference}");
    }
}

/// Appends `line` to the file the environment variable `variable` names; false when it names
/// none.
fn append_line(variable: &str, line: &str) -> bool {
    use std::io::Write;
    let Some(path) = std::env::var_os(variable) else {
        return false;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {variable}={path:?}: {e}"));
    writeln!(file, "{line}").unwrap();
    true
}

/// The problem `type` slug of a problem body (`email-conflict`).
pub fn problem_slug(body: &Value) -> Option<&str> {
    body["type"].as_str().and_then(|t| t.rsplit('/').next())
}

/// Checks one reply; `Err` says what the document does not describe.
pub fn check(
    method: &Method,
    path_and_query: &str,
    status: u16,
    content_type: Option<&str>,
    body: &Value,
) -> Result<(), String> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    if !path.starts_with("/v1/") {
        // Pages, SCIM and the service endpoints have contracts of their own.
        return Ok(());
    }
    let Some((template, operation)) = operation(method, path) else {
        // No such operation: the router's own answer, checked by the tests that ask for it.
        return if matches!(status, 404 | 405) {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} answered {status} but is not documented"
            ))
        };
    };
    let at = format!("{method} {template} → {status}");
    // Which documented answers the suite exercises: one line per checked reply.
    append_line("CONTRACT_SEEN", &at);
    let Some(response) = operation["responses"].get(status.to_string()) else {
        return Err(format!(
            "{at}: status not documented (problem {:?}; documented: {})",
            problem_slug(body).unwrap_or_default(),
            operation["responses"]
                .as_object()
                .map(|r| r.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ));
    };
    let media = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim())
        .unwrap_or_default();
    let content = response.get("content").and_then(Value::as_object);
    let Some(content) = content else {
        return if media.is_empty() || status == 304 {
            Ok(())
        } else {
            Err(format!(
                "{at}: sent {media} but the document describes no body"
            ))
        };
    };
    let described = content.get(media).or_else(|| {
        // `image/*` and the like.
        content.iter().find_map(|(range, schema)| {
            let prefix = range.strip_suffix("/*")?;
            media.starts_with(&format!("{prefix}/")).then_some(schema)
        })
    });
    let Some(described) = described else {
        return Err(format!(
            "{at}: sent {media:?}, documented {:?}",
            content.keys().collect::<Vec<_>>()
        ));
    };
    if media == "application/problem+json" {
        let slug = problem_slug(body).unwrap_or_default();
        let listed = response["x-problem-types"]
            .as_array()
            .is_some_and(|types| types.iter().any(|t| t == slug));
        if !listed {
            return Err(format!(
                "{at}: problem type {slug:?} not listed (x-problem-types: {})",
                response["x-problem-types"]
            ));
        }
    }
    if media.ends_with("json") {
        let mut errors = Vec::new();
        conform(&described["schema"], body, "", &mut errors);
        if !errors.is_empty() {
            return Err(format!(
                "{at}: body differs from the schema: {}",
                errors.join("; ")
            ));
        }
    }
    Ok(())
}

fn resolve(schema: &Value) -> &Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or_default();
            resolve(&DOCUMENT["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Appends to `errors` every way `value` (at JSON pointer `at`) differs from `schema`.
fn conform(schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(schema);
    if value.is_null() && (schema["nullable"] == true || schema["type"] == "null") {
        return;
    }
    for all in schema["allOf"].as_array().into_iter().flatten() {
        conform(all, value, at, errors);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(choices) = schema[key].as_array() {
            let fits = choices.iter().any(|choice| {
                let mut mine = Vec::new();
                conform(choice, value, at, &mut mine);
                mine.is_empty()
            });
            if !fits {
                errors.push(format!("{at}: {value} fits none of {key}"));
            }
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {}", schema["enum"]));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        errors.push(format!("{at}: {value} is not {constant}"));
    }
    let fits_type = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => {
            errors.push(format!("{at}: the schema has an unknown type {other}"));
            true
        }
    };
    if !fits_type {
        errors.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let (Some("date-time"), Some(text)) = (schema["format"].as_str(), value.as_str())
        && text.parse::<jiff::Timestamp>().is_err()
    {
        errors.push(format!("{at}: {text:?} is not a date-time"));
    }
    if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
        for (index, element) in elements.iter().enumerate() {
            conform(items, element, &format!("{at}/{index}"), errors);
        }
    }
    let Some(object) = value.as_object() else {
        return;
    };
    let properties = schema["properties"].as_object();
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap_or_default();
        if !object.contains_key(name) {
            errors.push(format!("{at}/{name}: required but not sent"));
        }
    }
    let additional = &schema["additionalProperties"];
    for (name, field) in object {
        let field_at = format!("{at}/{name}");
        match properties.and_then(|p| p.get(name)) {
            Some(property) => conform(property, field, &field_at, errors),
            None if additional.is_object() => conform(additional, field, &field_at, errors),
            // A schema that declares no properties (a free-form object) takes any field.
            None if properties.is_none() || *additional == true => {}
            None => errors.push(format!("{field_at}: sent but not in the schema")),
        }
    }
}
