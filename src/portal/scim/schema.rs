//! The SCIM schemas this portal serves (RFC 7643 §4 and §8.7.1), as data: what `/Schemas`
//! publishes, and what requests are checked against (attribute names are case-insensitive,
//! unknown attributes are refused, booleans sent as strings by Microsoft Entra are read as
//! booleans, read-only attributes in a request are ignored).

use serde_json::{Map, Value, json};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The portal's own extension: what a voice user has beyond the core schema.
pub const VOICE: &str = "urn:portal-operator:params:scim:schemas:extension:voice:2.0:User";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    Complex,
    Reference,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadWrite,
    ReadOnly,
    Immutable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canonical {
    None,
    Values(&'static [&'static str]),
    /// Every IANA time zone name.
    TimeZones,
}

#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub kind: Type,
    pub multi: bool,
    pub required: bool,
    pub mutability: Mutability,
    pub case_exact: bool,
    pub unique: bool,
    pub canonical: Canonical,
    pub reference_types: &'static [&'static str],
    pub sub: &'static [Attr],
    pub description: &'static str,
}

const fn attr(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        kind: Type::String,
        multi: false,
        required: false,
        mutability: Mutability::ReadWrite,
        case_exact: false,
        unique: false,
        canonical: Canonical::None,
        reference_types: &[],
        sub: &[],
        description,
    }
}

const fn boolean(name: &'static str, description: &'static str) -> Attr {
    Attr {
        kind: Type::Boolean,
        ..attr(name, description)
    }
}

const fn complex(name: &'static str, sub: &'static [Attr], description: &'static str) -> Attr {
    Attr {
        kind: Type::Complex,
        sub,
        ..attr(name, description)
    }
}

const fn many(attr: Attr) -> Attr {
    Attr {
        multi: true,
        ..attr
    }
}

const fn read_only(attr: Attr) -> Attr {
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr
    }
}

const fn canonical(attr: Attr, values: &'static [&'static str]) -> Attr {
    Attr {
        canonical: Canonical::Values(values),
        ..attr
    }
}

const NAME: &[Attr] = &[
    attr("formatted", "The full name, formatted for display."),
    attr(
        "familyName",
        "The family (last) name; the portal's last name.",
    ),
    attr(
        "givenName",
        "The given (first) name; the portal's first name.",
    ),
    attr("middleName", "The middle name(s)."),
    attr("honorificPrefix", "E.g. Ms."),
    attr("honorificSuffix", "E.g. III."),
];

const EMAIL: &[Attr] = &[
    attr("value", "An email address."),
    canonical(
        attr("type", "work, home or other."),
        &["work", "home", "other"],
    ),
    boolean("primary", "The preferred address (at most one)."),
];

const PHONE: &[Attr] = &[
    attr(
        "value",
        "A phone number, kept exactly as sent; a mobile or work number in E.164 also becomes the portal user's mobile or landline number.",
    ),
    canonical(
        attr(
            "type",
            "mobile (the portal's mobile number), work (its landline), or another kind.",
        ),
        &["work", "mobile", "home", "fax", "pager", "other"],
    ),
    boolean("primary", "The preferred number (at most one)."),
];

const ADDRESS: &[Attr] = &[
    attr("formatted", "The full address, formatted for display."),
    attr("streetAddress", "The street."),
    attr("locality", "The city."),
    attr("region", "The state or region."),
    attr("postalCode", "The postal code."),
    attr("country", "The country (ISO 3166-1 alpha-2)."),
    canonical(
        attr("type", "work, home or other."),
        &["work", "home", "other"],
    ),
    boolean("primary", "The preferred address (at most one)."),
];

/// roles and entitlements (RFC 7643 §4.1.2); Microsoft Entra sends `roles: []` on create.
const LABEL: &[Attr] = &[
    attr("value", "The value."),
    attr("display", "A name for display."),
    attr("type", "What kind."),
    boolean("primary", "The preferred value (at most one)."),
];

pub static USER_ATTRIBUTES: &[Attr] = &[
    Attr {
        required: true,
        unique: true,
        ..attr(
            "userName",
            "Unique per account. The portal user ID (login) is the userName when it is an email address or an E.164 mobile number, otherwise the primary (or work, or first) email.",
        )
    },
    complex("name", NAME, "The user's name."),
    attr("displayName", "The name shown for the user."),
    attr("nickName", "A casual name."),
    attr("title", "The user's title, e.g. Vice President."),
    attr("userType", "E.g. Employee or Contractor."),
    canonical(
        attr(
            "preferredLanguage",
            "A language tag; the portal's language is French for fr and fr-*, English otherwise.",
        ),
        &["en", "fr", "en-US", "en-GB", "fr-FR", "fr-CA"],
    ),
    attr("locale", "E.g. en-US."),
    Attr {
        canonical: Canonical::TimeZones,
        ..attr(
            "timezone",
            "An IANA time zone, e.g. Europe/London; becomes the portal user's time zone when valid.",
        )
    },
    boolean(
        "active",
        "false disables the user (who keeps their licence); a disabled user is still returned.",
    ),
    many(complex("emails", EMAIL, "Email addresses.")),
    many(complex("phoneNumbers", PHONE, "Phone numbers.")),
    many(complex(
        "addresses",
        ADDRESS,
        "Postal addresses (kept as sent).",
    )),
    many(complex(
        "roles",
        LABEL,
        "Roles in the identity provider (kept as sent; the portal's user roles are set through its API).",
    )),
    many(complex(
        "entitlements",
        LABEL,
        "Entitlements (kept as sent).",
    )),
];

const MANAGER: &[Attr] = &[
    attr("value", "The id of the manager's User."),
    read_only(attr("displayName", "The manager's name.")),
];

pub static ENTERPRISE_ATTRIBUTES: &[Attr] = &[
    attr("employeeNumber", "The employee number."),
    attr("costCenter", "The cost center."),
    attr("organization", "The organization."),
    attr("division", "The division."),
    attr("department", "The department."),
    complex("manager", MANAGER, "The user's manager."),
];

pub static VOICE_ATTRIBUTES: &[Attr] = &[
    canonical(
        attr(
            "licenseType",
            "The licence the user takes (Standard by default). With none free, the user is created and waits for one.",
        ),
        &["Standard", "Premium", "CommonArea"],
    ),
    attr(
        "linkedNumber",
        "The mobile number linked to the landline (E.164; used when the user has a work number).",
    ),
    boolean("mex", "Mobile extension on the linked number."),
    // One string, as an identity provider's directory attribute holds it (Entra's extension
    // attributes are single-valued).
    attr(
        "displayNumbers",
        "Numbers the user may show when calling (e.g. group numbers), E.164, separated by commas.",
    ),
    attr("countryCode", "The default country-code prefix, e.g. +44."),
];

const MEMBER: &[Attr] = &[
    read_only(attr("display", "The member's name.")),
    Attr {
        mutability: Mutability::Immutable,
        ..attr("value", "The id of a User of the account.")
    },
    Attr {
        kind: Type::Reference,
        mutability: Mutability::Immutable,
        reference_types: &["User"],
        ..attr("$ref", "The member's URI.")
    },
    Attr {
        mutability: Mutability::Immutable,
        ..canonical(attr("type", "User."), &["User"])
    },
];

pub static GROUP_ATTRIBUTES: &[Attr] = &[
    Attr {
        required: true,
        unique: true,
        ..attr(
            "displayName",
            "The team's name, unique per account regardless of case.",
        )
    },
    many(complex(
        "members",
        MEMBER,
        "The team's members: users it lists (users may also be members through their user roles).",
    )),
];

/// A schema this server serves, by its URN.
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [Attr],
}

pub static SCHEMAS: &[SchemaDef] = &[
    SchemaDef {
        id: USER,
        name: "User",
        description: "A voice service user of the account.",
        attributes: USER_ATTRIBUTES,
    },
    SchemaDef {
        id: ENTERPRISE,
        name: "EnterpriseUser",
        description: "Enterprise user (RFC 7643 §4.3).",
        attributes: ENTERPRISE_ATTRIBUTES,
    },
    SchemaDef {
        id: VOICE,
        name: "VoiceUser",
        description: "What a voice service user has beyond the core schema: licence, numbers, state.",
        attributes: VOICE_ATTRIBUTES,
    },
    SchemaDef {
        id: GROUP,
        name: "Group",
        description: "A team of the account.",
        attributes: GROUP_ATTRIBUTES,
    },
];

pub fn schema(id: &str) -> Option<&'static SchemaDef> {
    SCHEMAS.iter().find(|s| s.id.eq_ignore_ascii_case(id))
}

pub fn find<'a>(attributes: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
}

/// A resource type: its core schema and extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    User,
    Group,
}

impl Resource {
    pub fn core(self) -> &'static SchemaDef {
        match self {
            Resource::User => &SCHEMAS[0],
            Resource::Group => &SCHEMAS[3],
        }
    }

    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Resource::User => &[ENTERPRISE, VOICE],
            Resource::Group => &[],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Resource::User => "User",
            Resource::Group => "Group",
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Resource::User => "Users",
            Resource::Group => "Groups",
        }
    }

    /// The extension with this URN, if the resource has it.
    pub fn extension(self, urn: &str) -> Option<&'static SchemaDef> {
        self.extensions()
            .iter()
            .find(|e| e.eq_ignore_ascii_case(urn))
            .and_then(|e| schema(e))
    }
}

fn type_name(kind: Type) -> &'static str {
    match kind {
        Type::String => "string",
        Type::Boolean => "boolean",
        Type::Complex => "complex",
        Type::Reference => "reference",
    }
}

fn attribute_json(attr: &Attr) -> Value {
    let mut out = json!({
        "name": attr.name,
        "type": type_name(attr.kind),
        "multiValued": attr.multi,
        "description": attr.description,
        "required": attr.required,
        "caseExact": attr.case_exact,
        "mutability": match attr.mutability {
            Mutability::ReadWrite => "readWrite",
            Mutability::ReadOnly => "readOnly",
            Mutability::Immutable => "immutable",
        },
        "returned": "default",
        "uniqueness": if attr.unique { "server" } else { "none" },
    });
    match attr.canonical {
        Canonical::None => {}
        Canonical::Values(values) => out["canonicalValues"] = json!(values),
        Canonical::TimeZones => {
            let zones: Vec<String> = jiff::tz::db()
                .available()
                .map(|name| name.to_string())
                .filter(|name| name.contains('/') && !name.starts_with("Etc/"))
                .collect();
            out["canonicalValues"] = json!(zones);
        }
    }
    if attr.kind == Type::Reference {
        out["referenceTypes"] = json!(attr.reference_types);
    }
    if !attr.sub.is_empty() {
        out["subAttributes"] = Value::Array(attr.sub.iter().map(attribute_json).collect());
    }
    out
}

/// A schema as `/Schemas` serves it.
pub fn schema_json(schema: &SchemaDef, base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": schema.attributes.iter().map(attribute_json).collect::<Vec<_>>(),
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{}", schema.id) },
    })
}

/// Why a request body does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfit {
    pub path: String,
    pub reason: String,
}

/// `value` with every attribute name spelled as the schema spells it, booleans sent as
/// `"True"`/`"False"` read as booleans, read-only attributes and nulls dropped; an unknown
/// attribute or a value of the wrong shape is refused, naming its path.
pub fn normalize(resource: Resource, value: &Value) -> Result<Map<String, Value>, Unfit> {
    let Some(object) = value.as_object() else {
        return Err(Unfit {
            path: String::new(),
            reason: "the resource must be a JSON object".into(),
        });
    };
    let mut out = Map::new();
    for (key, value) in object {
        if ["schemas", "id", "meta"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key))
        {
            continue;
        }
        if key.eq_ignore_ascii_case("externalId") {
            match value {
                Value::String(s) => {
                    out.insert("externalId".into(), Value::String(s.clone()));
                }
                Value::Null => {}
                _ => return Err(unfit("externalId", "must be a string")),
            }
            continue;
        }
        if let Some(extension) = resource.extension(key) {
            let Some(inner) = value.as_object() else {
                if value.is_null() {
                    continue;
                }
                return Err(unfit(key, "an extension must be a JSON object"));
            };
            let mut normalized = Map::new();
            for (name, v) in inner {
                if name.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                put(
                    &mut normalized,
                    extension.attributes,
                    name,
                    v,
                    &format!("{}:", extension.id),
                )?;
            }
            if !normalized.is_empty() {
                out.insert(extension.id.to_owned(), Value::Object(normalized));
            }
            continue;
        }
        if key.starts_with("urn:") {
            return Err(unfit(key, "is not a schema extension of this resource"));
        }
        put(&mut out, resource.core().attributes, key, value, "")?;
    }
    Ok(out)
}

fn unfit(path: &str, reason: &str) -> Unfit {
    Unfit {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn joined(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else if prefix.ends_with(':') {
        format!("{prefix}{name}")
    } else {
        format!("{prefix}.{name}")
    }
}

fn put(
    out: &mut Map<String, Value>,
    attributes: &[Attr],
    name: &str,
    value: &Value,
    prefix: &str,
) -> Result<(), Unfit> {
    let path = joined(prefix, name);
    let Some(attr) = find(attributes, name) else {
        return Err(Unfit {
            path: path.clone(),
            reason: format!("{path} is not an attribute of this resource"),
        });
    };
    if attr.mutability == Mutability::ReadOnly || value.is_null() {
        return Ok(());
    }
    let value = if attr.multi {
        let items = match value {
            Value::Array(items) => items.clone(),
            single => vec![single.clone()],
        };
        let mut normalized = Vec::with_capacity(items.len());
        for item in &items {
            if let Some(v) = single_value(attr, item, &path)? {
                normalized.push(v);
            }
        }
        Value::Array(normalized)
    } else {
        match single_value(attr, value, &path)? {
            Some(v) => v,
            None => return Ok(()),
        }
    };
    out.insert(attr.name.to_owned(), value);
    Ok(())
}

fn single_value(attr: &Attr, value: &Value, path: &str) -> Result<Option<Value>, Unfit> {
    let wrong = |what: &str| Unfit {
        path: path.to_owned(),
        reason: format!("{path} must be {what}"),
    };
    Ok(Some(match attr.kind {
        Type::Boolean => match value {
            Value::Bool(b) => Value::Bool(*b),
            // Microsoft Entra sends "True" and "False".
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            Value::Null => return Ok(None),
            _ => return Err(wrong("a boolean")),
        },
        Type::String | Type::Reference => match value {
            Value::String(s) => {
                if s.len() > 2048 {
                    return Err(wrong("at most 2048 bytes"));
                }
                Value::String(s.clone())
            }
            Value::Null => return Ok(None),
            _ => return Err(wrong("a string")),
        },
        Type::Complex => {
            let Some(object) = value.as_object() else {
                return Err(wrong("an object"));
            };
            let mut out = Map::new();
            for (name, v) in object {
                put(&mut out, attr.sub, name, v, path)?;
            }
            if out.is_empty() {
                return Ok(None);
            }
            Value::Object(out)
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_entra_booleans_are_booleans() {
        let doc = normalize(
            Resource::User,
            &json!({
                "schemas": [USER], "USERNAME": "ann@contoso.example", "Active": "False",
                "name": { "GivenName": "Ann" },
                "emails": [{ "Value": "ann@contoso.example", "type": "work", "primary": "True" }],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": { "Department": "Sales" },
            }),
        )
        .unwrap();
        assert_eq!(
            Value::Object(doc),
            json!({
                "userName": "ann@contoso.example", "active": false, "name": { "givenName": "Ann" },
                "emails": [{ "value": "ann@contoso.example", "type": "work", "primary": true }],
                ENTERPRISE: { "department": "Sales" },
            })
        );
    }

    #[test]
    fn unknown_attributes_and_wrong_shapes_are_refused_with_their_path() {
        let cases = [
            (json!({ "userName": "a", "nmae": {} }), "nmae"),
            (
                json!({ "userName": "a", "name": { "first": "A" } }),
                "name.first",
            ),
            (json!({ "userName": 7 }), "userName"),
            (json!({ "userName": "a", "active": "yes" }), "active"),
            (
                json!({ "userName": "a", "urn:example:other": {} }),
                "urn:example:other",
            ),
            (
                json!({ "userName": "a", VOICE: { "licence": "x" } }),
                "urn:portal-operator:params:scim:schemas:extension:voice:2.0:User:licence",
            ),
        ];
        for (body, path) in cases {
            let refused = normalize(Resource::User, &body).unwrap_err();
            assert_eq!(refused.path, path, "{body}");
        }
    }

    #[test]
    fn read_only_attributes_in_a_request_are_ignored() {
        let doc = normalize(
            Resource::User,
            &json!({ "userName": "a", "id": "x", "meta": {},
                     ENTERPRISE: { "manager": { "value": "u2", "displayName": "Bob" } } }),
        )
        .unwrap();
        assert_eq!(
            Value::Object(doc),
            json!({ "userName": "a", ENTERPRISE: { "manager": { "value": "u2" } } })
        );
    }
}
