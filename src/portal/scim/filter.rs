//! SCIM filters (RFC 7644 §3.4.2.2), PATCH paths (§3.5.2) and attribute lists (§3.4.2.5):
//! parsed against this server's schemas (an unknown attribute is an error, not an empty
//! result) and evaluated on resources as JSON.

use serde_json::{Map, Value};

use super::schema::{self, Resource};

/// Where an attribute is: `[urn:…:]attr[.sub]`, spelled as the schema spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The extension URN, for an extension attribute.
    pub extension: Option<&'static str>,
    pub attr: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// The values at this path in `resource`, multi-valued attributes flattened.
    pub fn values<'a>(&self, resource: &'a Value) -> Vec<&'a Value> {
        let container = match self.extension {
            Some(urn) => resource.get(urn),
            None => Some(resource),
        };
        let Some(top) = container.and_then(|c| c.get(&self.attr)) else {
            return Vec::new();
        };
        let items: Vec<&Value> = match top {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        match &self.sub {
            None => items,
            Some(sub) => items.into_iter().filter_map(|item| item.get(sub)).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, Op, Value),
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`: some element of multi-valued `attr` matches `filter` (whose paths are
    /// relative to the element).
    Element(AttrPath, Box<Filter>),
}

/// Why a filter or path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Dot,
}

fn tokens(input: &str) -> Result<Vec<Token>, Invalid> {
    let mut out = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '[' => {
                out.push(Token::OpenBracket);
                i += 1;
            }
            ']' => {
                out.push(Token::CloseBracket);
                i += 1;
            }
            '.' if matches!(out.last(), Some(Token::CloseBracket)) => {
                out.push(Token::Dot);
                i += 1;
            }
            '"' => {
                let start = i;
                i += 1;
                let mut escaped = false;
                while i < chars.len() && (escaped || chars[i] != '"') {
                    escaped = !escaped && chars[i] == '\\';
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(Invalid("a string is not closed with \"".into()));
                }
                let literal: String = chars[start..=i].iter().collect();
                let text: String = serde_json::from_str(&literal)
                    .map_err(|_| Invalid(format!("{literal} is not a valid string")))?;
                out.push(Token::Text(text));
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t\n\r()[]\"".contains(chars[i]) {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

/// Resolves `text` (`[urn:…:]attr[.sub]`) against `resource`'s schemas; `within` is the
/// multi-valued attribute a bracketed filter is relative to.
pub fn attr_path(
    resource: Resource,
    text: &str,
    within: Option<&AttrPath>,
) -> Result<AttrPath, Invalid> {
    let unknown = || {
        Invalid(format!(
            "{text} is not an attribute of a {}",
            resource.name()
        ))
    };
    if let Some(parent) = within {
        let attributes = attributes_of(resource, parent.extension);
        let parent_attr = schema::find(attributes, &parent.attr).ok_or_else(unknown)?;
        let sub = schema::find(parent_attr.sub, text).ok_or_else(unknown)?;
        return Ok(AttrPath {
            extension: parent.extension,
            attr: parent.attr.clone(),
            sub: Some(sub.name.to_owned()),
        });
    }
    let (extension, rest) = split_urn(resource, text)?;
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    if extension.is_none() {
        if name.eq_ignore_ascii_case("id") || name.eq_ignore_ascii_case("externalId") {
            if sub.is_some() {
                return Err(unknown());
            }
            let canonical = if name.eq_ignore_ascii_case("id") {
                "id"
            } else {
                "externalId"
            };
            return Ok(AttrPath {
                extension: None,
                attr: canonical.into(),
                sub: None,
            });
        }
        if name.eq_ignore_ascii_case("meta") {
            let sub = sub
                .and_then(|s| {
                    [
                        "created",
                        "lastModified",
                        "resourceType",
                        "location",
                        "version",
                    ]
                    .into_iter()
                    .find(|m| m.eq_ignore_ascii_case(s))
                })
                .ok_or_else(unknown)?;
            return Ok(AttrPath {
                extension: None,
                attr: "meta".into(),
                sub: Some(sub.into()),
            });
        }
    }
    let attributes = attributes_of(resource, extension);
    let attr = schema::find(attributes, name).ok_or_else(unknown)?;
    let sub = match sub {
        Some(sub) => Some(
            schema::find(attr.sub, sub)
                .ok_or_else(unknown)?
                .name
                .to_owned(),
        ),
        None => None,
    };
    Ok(AttrPath {
        extension,
        attr: attr.name.to_owned(),
        sub,
    })
}

fn attributes_of(resource: Resource, extension: Option<&str>) -> &'static [schema::Attr] {
    match extension.and_then(|urn| resource.extension(urn)) {
        Some(extension) => extension.attributes,
        None => resource.core().attributes,
    }
}

/// Splits a fully qualified `urn:…:attr` into its schema and the attribute; the core schema's
/// URN may prefix core attributes too.
fn split_urn(resource: Resource, text: &str) -> Result<(Option<&'static str>, &str), Invalid> {
    if !text.to_ascii_lowercase().starts_with("urn:") {
        return Ok((None, text));
    }
    let lower = text.to_ascii_lowercase();
    let core = resource.core().id;
    if lower.starts_with(&format!("{}:", core.to_ascii_lowercase())) {
        return Ok((None, &text[core.len() + 1..]));
    }
    for urn in resource.extensions() {
        if lower.starts_with(&format!("{}:", urn.to_ascii_lowercase())) {
            return Ok((Some(urn), &text[urn.len() + 1..]));
        }
    }
    Err(Invalid(format!(
        "{text} names a schema this {} does not have",
        resource.name()
    )))
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    resource: Resource,
    within: Option<&'a AttrPath>,
}

impl Parser<'_> {
    fn peek_word(&self) -> Option<String> {
        match self.tokens.get(self.at) {
            Some(Token::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Filter, Invalid> {
        let mut left = self.and()?;
        while self.peek_word().as_deref() == Some("or") {
            self.at += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, Invalid> {
        let mut left = self.unary()?;
        while self.peek_word().as_deref() == Some("and") {
            self.at += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<(), Invalid> {
        if self.tokens.get(self.at) == Some(&token) {
            self.at += 1;
            Ok(())
        } else {
            Err(Invalid(format!("expected {what}")))
        }
    }

    fn unary(&mut self) -> Result<Filter, Invalid> {
        if self.peek_word().as_deref() == Some("not") {
            self.at += 1;
            self.expect(Token::Open, "( after not")?;
            let inner = self.or()?;
            self.expect(Token::Close, ")")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.tokens.get(self.at) == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Token::Close, ")")?;
            return Ok(inner);
        }
        let Some(Token::Word(path)) = self.tokens.get(self.at).cloned() else {
            return Err(Invalid("expected an attribute name".into()));
        };
        self.at += 1;
        let path = attr_path(self.resource, &path, self.within)?;
        if self.tokens.get(self.at) == Some(&Token::OpenBracket) {
            if self.within.is_some() || path.sub.is_some() {
                return Err(Invalid("filters in brackets do not nest".into()));
            }
            self.at += 1;
            let mut inner = Parser {
                tokens: self.tokens.clone(),
                at: self.at,
                resource: self.resource,
                within: Some(&path),
            };
            let element = inner.or()?;
            self.at = inner.at;
            self.expect(Token::CloseBracket, "]")?;
            let filter = Filter::Element(path.clone(), Box::new(element));
            // Microsoft Entra writes `emails[type eq "work"].value eq "…"`.
            if self.tokens.get(self.at) == Some(&Token::Dot) {
                self.at += 1;
                let Some(Token::Word(sub)) = self.tokens.get(self.at).cloned() else {
                    return Err(Invalid("expected a sub-attribute after ].".into()));
                };
                self.at += 1;
                let sub = attr_path(self.resource, &sub, Some(&path))?;
                let comparison = self.comparison(sub)?;
                return Ok(match (filter, comparison) {
                    (Filter::Element(path, element), comparison) => {
                        Filter::Element(path, Box::new(Filter::And(element, Box::new(comparison))))
                    }
                    _ => unreachable!("built as an element filter"),
                });
            }
            return Ok(filter);
        }
        self.comparison(path)
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, Invalid> {
        let Some(op) = self.peek_word() else {
            return Err(Invalid(
                "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)".into(),
            ));
        };
        self.at += 1;
        let op = match op.as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => return Err(Invalid(format!("{other} is not a filter operator"))),
        };
        let value = match self.tokens.get(self.at).cloned() {
            Some(Token::Text(text)) => Value::String(text),
            Some(Token::Word(word)) => match word.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => serde_json::from_str::<serde_json::Number>(&word)
                    .map(Value::Number)
                    .map_err(|_| {
                        Invalid(format!(
                            "{word} is not a value: quote strings, e.g. \"{word}\""
                        ))
                    })?,
            },
            _ => return Err(Invalid("expected a value after the operator".into())),
        };
        self.at += 1;
        Ok(Filter::Compare(path, op, value))
    }
}

/// Parses a filter for `resource`.
pub fn parse(resource: Resource, input: &str) -> Result<Filter, Invalid> {
    if input.len() > 4096 {
        return Err(Invalid("a filter is at most 4096 bytes".into()));
    }
    let mut parser = Parser {
        tokens: tokens(input)?,
        at: 0,
        resource,
        within: None,
    };
    let filter = parser.or()?;
    if parser.at != parser.tokens.len() {
        return Err(Invalid(format!(
            "unexpected text after the filter at token {}",
            parser.at + 1
        )));
    }
    Ok(filter)
}

/// A PATCH path: `attr[.sub]`, `attr[filter][.sub]`, with an optional schema URN.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub path: AttrPath,
    pub filter: Option<Filter>,
    /// With a filter: the sub-attribute of the matching elements.
    pub sub: Option<String>,
}

pub fn patch_path(resource: Resource, input: &str) -> Result<PatchPath, Invalid> {
    let tokens = tokens(input)?;
    let Some(Token::Word(first)) = tokens.first() else {
        return Err(Invalid(format!("{input:?} is not an attribute path")));
    };
    let path = attr_path(resource, first, None)?;
    if tokens.len() == 1 {
        return Ok(PatchPath {
            path,
            filter: None,
            sub: None,
        });
    }
    if tokens.get(1) != Some(&Token::OpenBracket) || path.sub.is_some() {
        return Err(Invalid(format!("{input:?} is not an attribute path")));
    }
    let mut parser = Parser {
        tokens: tokens.clone(),
        at: 2,
        resource,
        within: Some(&path),
    };
    let filter = parser.or()?;
    let mut at = parser.at;
    if tokens.get(at) != Some(&Token::CloseBracket) {
        return Err(Invalid("expected ]".into()));
    }
    at += 1;
    let sub = match (tokens.get(at), tokens.get(at + 1)) {
        (None, _) => None,
        (Some(Token::Dot), Some(Token::Word(sub))) if at + 2 == tokens.len() => Some(
            attr_path(resource, sub, Some(&path))?
                .sub
                .expect("resolved within an attribute"),
        ),
        _ => return Err(Invalid(format!("unexpected text in the path {input:?}"))),
    };
    Ok(PatchPath {
        path,
        filter: Some(filter),
        sub,
    })
}

fn case_exact(path: &AttrPath) -> bool {
    path.extension.is_none() && (path.attr == "id" || path.attr == "externalId")
}

fn compare(actual: &Value, op: Op, expected: &Value, exact: bool) -> bool {
    // A complex value is compared by its `value` sub-attribute (RFC 7644 §3.4.2.2).
    let actual = match actual {
        Value::Object(object) => match object.get("value") {
            Some(value) => value,
            None => return false,
        },
        other => other,
    };
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a, e) = if exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                Op::Eq => a == e,
                Op::Ne => a != e,
                Op::Co => a.contains(&e),
                Op::Sw => a.starts_with(&e),
                Op::Ew => a.ends_with(&e),
                Op::Gt => a > e,
                Op::Ge => a >= e,
                Op::Lt => a < e,
                Op::Le => a <= e,
            }
        }
        (Value::Bool(a), Value::Bool(e)) => match op {
            Op::Eq => a == e,
            Op::Ne => a != e,
            _ => false,
        },
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap_or(0.0), e.as_f64().unwrap_or(0.0));
            match op {
                Op::Eq => a == e,
                Op::Ne => a != e,
                Op::Gt => a > e,
                Op::Ge => a >= e,
                Op::Lt => a < e,
                Op::Le => a <= e,
                _ => false,
            }
        }
        _ => op == Op::Ne,
    }
}

fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(object) => !object.is_empty(),
        _ => true,
    }
}

/// Whether `resource` matches `filter`.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, resource) && matches(b, resource),
        Filter::Or(a, b) => matches(a, resource) || matches(b, resource),
        Filter::Not(inner) => !matches(inner, resource),
        Filter::Present(path) => path.values(resource).into_iter().any(present),
        Filter::Compare(path, Op::Ne, expected) => !matches(
            &Filter::Compare(path.clone(), Op::Eq, expected.clone()),
            resource,
        ),
        Filter::Compare(path, op, expected) => path
            .values(resource)
            .into_iter()
            .any(|actual| compare(actual, *op, expected, case_exact(path))),
        Filter::Element(path, element) => {
            let whole = AttrPath {
                sub: None,
                ..path.clone()
            };
            whole
                .values(resource)
                .into_iter()
                .any(|item| element_matches(element, item))
        }
    }
}

/// `filter` (relative to an element of a multi-valued attribute) on `element`.
pub fn element_matches(filter: &Filter, element: &Value) -> bool {
    match filter {
        Filter::And(a, b) => element_matches(a, element) && element_matches(b, element),
        Filter::Or(a, b) => element_matches(a, element) || element_matches(b, element),
        Filter::Not(inner) => !element_matches(inner, element),
        Filter::Present(path) => path
            .sub
            .as_deref()
            .and_then(|sub| element.get(sub))
            .is_some_and(present),
        Filter::Compare(path, op, expected) => {
            let actual = path.sub.as_deref().and_then(|sub| element.get(sub));
            match (actual, op) {
                (Some(actual), op) => compare(actual, *op, expected, false),
                (None, Op::Ne) => true,
                (None, _) => false,
            }
        }
        Filter::Element(..) => false,
    }
}

/// The `eq` value of a filter that is only `attr eq "x"` on `attr` (for index lookups).
pub fn equality_on<'f>(filter: &'f Filter, attr: &str) -> Option<&'f str> {
    match filter {
        Filter::Compare(path, Op::Eq, Value::String(value))
            if path.extension.is_none() && path.sub.is_none() && path.attr == attr =>
        {
            Some(value)
        }
        _ => None,
    }
}

/// An `attributes` or `excludedAttributes` list, resolved.
pub fn attribute_list(resource: Resource, list: &str) -> Result<Vec<AttrPath>, Invalid> {
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            if name.eq_ignore_ascii_case("meta") {
                return Ok(AttrPath {
                    extension: None,
                    attr: "meta".into(),
                    sub: None,
                });
            }
            if let Some(extension) = resource.extension(name) {
                return Ok(AttrPath {
                    extension: Some(extension.id),
                    attr: String::new(),
                    sub: None,
                });
            }
            attr_path(resource, name, None)
        })
        .collect()
}

/// `resource` with only `include` (plus `id` and `schemas`), or without `exclude`.
pub fn project(resource: Value, include: &[AttrPath], exclude: &[AttrPath]) -> Value {
    let Value::Object(mut object) = resource else {
        return resource;
    };
    if !include.is_empty() {
        let mut kept = Map::new();
        for key in ["schemas", "id"] {
            if let Some(value) = object.get(key) {
                kept.insert(key.into(), value.clone());
            }
        }
        for path in include {
            copy_path(&object, &mut kept, path);
        }
        object = kept;
    }
    for path in exclude {
        remove_path(&mut object, path);
    }
    Value::Object(object)
}

fn copy_path(from: &Map<String, Value>, to: &mut Map<String, Value>, path: &AttrPath) {
    let (source, target) = match path.extension {
        Some(urn) => {
            let Some(Value::Object(source)) = from.get(urn) else {
                return;
            };
            if path.attr.is_empty() {
                to.insert(urn.into(), Value::Object(source.clone()));
                return;
            }
            let entry = to
                .entry(urn.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(target) = entry else {
                return;
            };
            copy_attr(source, target, path);
            return;
        }
        None => (from, to),
    };
    copy_attr(source, target, path);
}

fn copy_attr(source: &Map<String, Value>, target: &mut Map<String, Value>, path: &AttrPath) {
    let Some(value) = source.get(&path.attr) else {
        return;
    };
    match &path.sub {
        None => {
            target.insert(path.attr.clone(), value.clone());
        }
        Some(sub) => {
            let picked = match value {
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .filter_map(|item| item.get(sub))
                        .map(|v| serde_json::json!({ sub.clone(): v }))
                        .collect(),
                ),
                Value::Object(object) => match object.get(sub) {
                    Some(v) => serde_json::json!({ sub.clone(): v }),
                    None => return,
                },
                _ => return,
            };
            target.insert(path.attr.clone(), picked);
        }
    }
}

fn remove_path(object: &mut Map<String, Value>, path: &AttrPath) {
    // `id` and `schemas` are always returned; so is `userName` (RFC 7643: returned "always").
    if path.extension.is_none() && ["id", "userName"].contains(&path.attr.as_str()) {
        return;
    }
    let container = match path.extension {
        Some(urn) if path.attr.is_empty() => {
            object.remove(urn);
            return;
        }
        Some(urn) => match object.get_mut(urn) {
            Some(Value::Object(inner)) => inner,
            _ => return,
        },
        None => object,
    };
    match &path.sub {
        None => {
            container.remove(&path.attr);
        }
        Some(sub) => match container.get_mut(&path.attr) {
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::Object(item) = item {
                        item.remove(sub);
                    }
                }
            }
            Some(Value::Object(inner)) => {
                inner.remove(sub);
            }
            _ => {}
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "id": "u1", "externalId": "E-1", "userName": "Ann@Contoso.example", "active": true,
            "name": { "givenName": "Ann", "familyName": "Lee" },
            "emails": [
                { "value": "ann@contoso.example", "type": "work", "primary": true },
                { "value": "ann@home.example", "type": "home" },
            ],
            schema::ENTERPRISE: { "department": "Sales" },
        })
    }

    #[test]
    fn filters_match_as_the_rfc_and_entra_write_them() {
        let table = [
            (r#"userName eq "ann@contoso.example""#, true),
            (r#"USERNAME Eq "ANN@CONTOSO.EXAMPLE""#, true),
            (r#"externalId eq "e-1""#, false),
            (r#"externalId eq "E-1""#, true),
            (
                r#"emails[type eq "work"].value eq "ann@contoso.example""#,
                true,
            ),
            (
                r#"emails[type eq "home"].value eq "ann@contoso.example""#,
                false,
            ),
            (r#"emails[type eq "work" and primary eq true]"#, true),
            (r#"emails co "home.example""#, true),
            (r#"emails.value sw "ann@""#, true),
            (r#"name.givenName eq "Ann" and active eq true"#, true),
            (r#"name.givenName eq "Bob" or not (active eq false)"#, true),
            (r#"title pr"#, false),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales""#,
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName ne "x""#,
                true,
            ),
            (r#"displayName eq "Ann""#, false),
        ];
        for (text, expected) in table {
            let filter = parse(Resource::User, text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(matches(&filter, &user()), expected, "{text}");
        }
    }

    #[test]
    fn malformed_filters_and_unknown_attributes_are_refused() {
        for text in [
            r#"userName eq"#,
            r#"userName equals "a""#,
            r#"nickname eq "a" and"#,
            r#"color eq "red""#,
            r#"name.first eq "a""#,
            r#"userName eq "a"#,
            r#"emails[type eq "work""#,
            r#"userName eq ann"#,
            r#"urn:example:ext:2.0:User:x eq "a""#,
            r#"(userName eq "a""#,
            r#"userName eq "a" junk"#,
        ] {
            assert!(parse(Resource::User, text).is_err(), "{text}");
        }
    }

    #[test]
    fn patch_paths_resolve_filters_and_sub_attributes() {
        let path = patch_path(Resource::User, r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(path.path.attr, "emails");
        assert_eq!(path.sub.as_deref(), Some("value"));
        let members = patch_path(Resource::Group, r#"members[value eq "u1"]"#).unwrap();
        assert!(members.filter.is_some() && members.sub.is_none());
        let ext = patch_path(
            Resource::User,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        )
        .unwrap();
        assert_eq!(ext.path.extension, Some(schema::ENTERPRISE));
        assert!(patch_path(Resource::User, "emails[type eq \"work\"].nothing").is_err());
    }

    #[test]
    fn projections_keep_or_drop_what_was_asked() {
        let include = attribute_list(Resource::User, "userName,name.givenName").unwrap();
        assert_eq!(
            project(user(), &include, &[]),
            json!({ "id": "u1", "userName": "Ann@Contoso.example", "name": { "givenName": "Ann" } })
        );
        let exclude = attribute_list(
            Resource::User,
            "emails,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        )
        .unwrap();
        let projected = project(user(), &[], &exclude);
        assert!(projected.get("emails").is_none() && projected.get(schema::ENTERPRISE).is_none());
        assert!(attribute_list(Resource::User, "colour").is_err());
    }
}
