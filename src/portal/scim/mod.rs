//! SCIM 2.0 (RFC 7643, RFC 7644) at `/scim/v2`: an identity provider such as Microsoft Entra ID
//! provisions an account's users (`/Users`) and teams (`/Groups`).
//!
//! A SCIM token is an API key bound to one account (`POST /v1/accounts/{id}/scim-tokens`); it
//! acts only here, only on that account, and only while the admin who minted it may write the
//! account's users. SCIM sees the users and teams it provisioned; a userName whose login another
//! user holds (one portal-operator manages, say) is refused with 409 `uniqueness` naming the
//! holder, so the two never fight over one user.
//!
//! Each resource is kept as the identity provider sent it (attribute names spelled as the schema
//! spells them; Entra forbids reformatting values such as phone numbers), and the portal takes
//! what it understands from it: names, the login, E.164 mobile and work numbers, language, time
//! zone, licence type, `active`. A user created with no licence of its type free is created and
//! waits for one instead of being refused. Errors are SCIM error messages, never problem+json.
//!
//! Layout: `schema` (the schemas as data and request normalization), `filter` (filters, paths,
//! attribute lists), `patch` (PATCH operations on a document), this file (HTTP: tokens,
//! endpoints, the mapping to the portal's users and teams).

mod filter;
mod patch;
mod schema;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

use super::AppState;
use super::accounts::{IfMatch, optional_if_match};
use super::auth::{Principal, authenticate, authorize};
use super::problem::{ApiError, ProblemType};
use super::teams::{self, ScimGroupRecord};
use super::users::{self, ScimUser, ScimUserRecord};
use crate::api::UserState;
use crate::api::time::format_millis;
use crate::domain::service::{country_code, time_zone};
use crate::domain::{Email, Language, LicenseType, Permission, PhoneNumber, UserId};
use schema::{ENTERPRISE, GROUP, Resource, USER, VOICE};

pub const MEDIA_TYPE: &str = "application/scim+json";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const DEFAULT_COUNT: usize = 100;
const MAX_COUNT: usize = 500;
/// The largest request body (RFC 7644 §3.12: the server says so in ServiceProviderConfig).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A SCIM error message (RFC 7644 §3.12).
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        ScimError::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    /// `error` of a request on `resource` `id`, a not-found said in SCIM's words.
    fn from_api(resource: Resource, id: &str, error: ApiError) -> Self {
        if error.kind == ProblemType::NotFound {
            ScimError::not_found(resource, id)
        } else {
            error.into()
        }
    }

    fn not_found(resource: Resource, id: &str) -> Self {
        ScimError::new(
            StatusCode::NOT_FOUND,
            None,
            format!("{} {id} not found", resource.name()),
        )
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = json!(scim_type);
        }
        let mut response = (self.status, body.to_string()).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<ApiError> for ScimError {
    fn from(error: ApiError) -> Self {
        let scim_type = match error.kind {
            ProblemType::UserIdConflict
            | ProblemType::NameConflict
            | ProblemType::ExternalRefConflict
            | ProblemType::EmailConflict => Some("uniqueness"),
            ProblemType::ValidationFailed | ProblemType::UnknownReference => Some("invalidValue"),
            _ => None,
        };
        let status = match error.kind {
            // SCIM has no 422: a value the portal refuses is a 400 invalidValue.
            ProblemType::ValidationFailed | ProblemType::UnknownReference => {
                StatusCode::BAD_REQUEST
            }
            _ => error.status(),
        };
        // Say where the value came from in the SCIM resource, not in the REST API.
        let detail = match error.field.as_deref() {
            Some(field) if error.kind == ProblemType::ValidationFailed => {
                let scim = match field {
                    "/firstName" => "name.givenName",
                    "/lastName" => "name.familyName",
                    "/name" => "displayName",
                    "/timeZone" => "timezone",
                    other => other,
                };
                format!("{} (from {scim})", error.detail)
            }
            _ => error.detail,
        };
        ScimError::new(status, scim_type, detail)
    }
}

type ScimResult<T> = Result<T, ScimError>;

/// The caller: a SCIM token and the account it provisions.
struct Caller {
    principal: Principal,
    account: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ScimResult<Self> {
        let unauthorized = |detail: &str| ScimError::new(StatusCode::UNAUTHORIZED, None, detail);
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| {
                unauthorized(
                    "send a SCIM token as `Authorization: Bearer pk_…` (mint one with POST /v1/accounts/{id}/scim-tokens)",
                )
            })?;
        let mut connection = state.connection().await?;
        let principal = authenticate(&mut connection, key)
            .await
            .map_err(|_| unauthorized("the SCIM token is not valid or has been revoked"))?;
        let Some(account) = principal.scim_account.clone() else {
            return Err(unauthorized(
                "this API key is not a SCIM token; mint one for the account with POST /v1/accounts/{id}/scim-tokens",
            ));
        };
        Ok(Caller { principal, account })
    }
}

/// A JSON request body, refused as SCIM errors.
struct ScimJson(Value);

impl FromRequest<AppState> for ScimJson {
    type Rejection = ScimError;

    async fn from_request(request: Request, state: &AppState) -> ScimResult<Self> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !content_type.is_empty()
            && !content_type.starts_with(MEDIA_TYPE)
            && !content_type.starts_with("application/json")
        {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                format!("send the body as {MEDIA_TYPE} or application/json"),
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|_| {
            ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("tooLarge"),
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
        })?;
        serde_json::from_slice(&bytes)
            .map(ScimJson)
            .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not JSON: {e}")))
    }
}

fn base(state: &AppState) -> String {
    format!("{}/scim/v2", state.config.public_url.trim_end_matches('/'))
}

fn scim_response(status: StatusCode, body: &Value, version: Option<i64>) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    if let Some(version) = version {
        headers.insert(
            ETAG,
            HeaderValue::from_str(&etag(version)).expect("an ETag is ASCII"),
        );
    }
    if status == StatusCode::CREATED
        && let Some(location) = body["meta"]["location"].as_str()
        && let Ok(value) = HeaderValue::from_str(location)
    {
        headers.insert(LOCATION, value);
    }
    response
}

fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

// --- Discovery ---------------------------------------------------------------------------------

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(one_schema))
        .route("/.search", axum::routing::post(search_everything))
        .route("/Users", get(list_users).post(create_user))
        .route("/Users/.search", axum::routing::post(search_users))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route("/Groups/.search", axum::routing::post(search_groups))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn unknown_endpoint(request: Request) -> ScimError {
    ScimError::new(
        StatusCode::NOT_FOUND,
        None,
        format!(
            "{} is not a SCIM endpoint of this server (Users, Groups, ServiceProviderConfig, ResourceTypes, Schemas)",
            request.uri().path()
        ),
    )
}

async fn method_not_allowed() -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "this endpoint does not take that method",
    )
}

async fn service_provider_config(State(state): State<AppState>, _caller: Caller) -> Response {
    let base = base(&state);
    scim_response(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": format!("{}/openapi.json", state.config.public_url.trim_end_matches('/')),
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": MAX_COUNT },
            "changePassword": { "supported": false },
            "sort": { "supported": false },
            "etag": { "supported": true },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "SCIM token",
                "description": "An API key bound to one account: POST /v1/accounts/{id}/scim-tokens, sent as Authorization: Bearer pk_…",
                "primary": true,
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig") },
        }),
        None,
    )
}

fn resource_type_json(resource: Resource, base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": resource.name(),
        "name": resource.name(),
        "endpoint": format!("/{}", resource.endpoint()),
        "description": resource.core().description,
        "schema": resource.core().id,
        "schemaExtensions": resource.extensions().iter().map(|e| json!({ "schema": e, "required": false })).collect::<Vec<_>>(),
        "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", resource.name()) },
    })
}

fn list_of(items: Vec<Value>, total: usize, start: usize) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}

async fn resource_types(State(state): State<AppState>, _caller: Caller) -> Response {
    let base = base(&state);
    let items = vec![
        resource_type_json(Resource::User, &base),
        resource_type_json(Resource::Group, &base),
    ];
    scim_response(StatusCode::OK, &list_of(items, 2, 1), None)
}

async fn resource_type(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    let resource = [Resource::User, Resource::Group]
        .into_iter()
        .find(|r| r.name().eq_ignore_ascii_case(&id))
        .ok_or_else(|| {
            ScimError::new(
                StatusCode::NOT_FOUND,
                None,
                format!("no resource type {id}"),
            )
        })?;
    Ok(scim_response(
        StatusCode::OK,
        &resource_type_json(resource, &base(&state)),
        None,
    ))
}

async fn schemas(State(state): State<AppState>, _caller: Caller) -> Response {
    let base = base(&state);
    let items: Vec<Value> = schema::SCHEMAS
        .iter()
        .map(|s| schema::schema_json(s, &base))
        .collect();
    let total = items.len();
    scim_response(StatusCode::OK, &list_of(items, total, 1), None)
}

async fn one_schema(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    let found = schema::schema(&id)
        .ok_or_else(|| ScimError::new(StatusCode::NOT_FOUND, None, format!("no schema {id}")))?;
    Ok(scim_response(
        StatusCode::OK,
        &schema::schema_json(found, &base(&state)),
        None,
    ))
}

// --- Queries -----------------------------------------------------------------------------------

/// What a list, search or read asks for.
#[derive(Debug, Default)]
struct Query_ {
    filter: Option<filter::Filter>,
    start: usize,
    count: usize,
    include: Vec<filter::AttrPath>,
    exclude: Vec<filter::AttrPath>,
}

fn number(name: &str, value: &Value) -> ScimResult<Option<i64>> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ScimError::bad("invalidValue", format!("{name} must be an integer"))),
        Value::String(s) => s.trim().parse().map(Some).map_err(|_| {
            ScimError::bad(
                "invalidValue",
                format!("{name} must be an integer, not {s:?}"),
            )
        }),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be an integer"),
        )),
    }
}

fn text_list(name: &str, value: &Value) -> ScimResult<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Array(items) => Ok(Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ScimError::bad("invalidValue", format!("{name} must list strings")))?
                .join(","),
        )),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be a string"),
        )),
    }
}

/// Reads the query parameters (or a `.search` body, whose names are the same) of a request
/// for `resource`.
fn query_of(resource: Resource, params: &Map<String, Value>, listing: bool) -> ScimResult<Query_> {
    let mut query = Query_ {
        start: 1,
        count: DEFAULT_COUNT,
        ..Query_::default()
    };
    for (name, value) in params {
        match name.to_ascii_lowercase().as_str() {
            "filter" if listing => {
                if let Some(text) = text_list(name, value)? {
                    query.filter = Some(
                        filter::parse(resource, &text)
                            .map_err(|e| ScimError::bad("invalidFilter", e.0))?,
                    );
                }
            }
            "startindex" if listing => {
                query.start = number(name, value)?.unwrap_or(1).max(1) as usize;
            }
            "count" if listing => {
                query.count = number(name, value)?
                    .unwrap_or(DEFAULT_COUNT as i64)
                    .clamp(0, MAX_COUNT as i64) as usize;
            }
            "attributes" => {
                if let Some(list) = text_list(name, value)? {
                    query.include = filter::attribute_list(resource, &list)
                        .map_err(|e| ScimError::bad("invalidValue", e.0))?;
                }
            }
            "excludedattributes" => {
                if let Some(list) = text_list(name, value)? {
                    query.exclude = filter::attribute_list(resource, &list)
                        .map_err(|e| ScimError::bad("invalidValue", e.0))?;
                }
            }
            // Sorting is not supported (ServiceProviderConfig says so); results keep their
            // creation order.
            "sortby" | "sortorder" if listing => {}
            "schemas" => {}
            _ => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!(
                        "{name} is not a parameter here (filter, startIndex, count, attributes, excludedAttributes)"
                    ),
                ));
            }
        }
    }
    Ok(query)
}

fn params_of(raw: HashMap<String, String>) -> Map<String, Value> {
    raw.into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

/// The page of `resources` (already SCIM JSON) a query asks for.
fn page(resources: Vec<Value>, query: &Query_) -> Value {
    let matching: Vec<Value> = match &query.filter {
        Some(filter) => resources
            .into_iter()
            .filter(|r| filter::matches(filter, r))
            .collect(),
        None => resources,
    };
    let total = matching.len();
    let items: Vec<Value> = matching
        .into_iter()
        .skip(query.start - 1)
        .take(query.count)
        .map(|r| filter::project(r, &query.include, &query.exclude))
        .collect();
    list_of(items, total, query.start)
}

// --- Users -------------------------------------------------------------------------------------

fn meta(
    resource: Resource,
    base: &str,
    id: &str,
    created: i64,
    modified: i64,
    version: i64,
) -> Value {
    json!({
        "resourceType": resource.name(),
        "created": format_millis(created),
        "lastModified": format_millis(modified),
        "location": format!("{base}/{}/{id}", resource.endpoint()),
        "version": etag(version),
    })
}

fn user_json(record: &ScimUserRecord, base: &str) -> Value {
    let mut doc = writable_user(record);
    let mut schemas = vec![json!(USER)];
    if doc.contains_key(ENTERPRISE) {
        schemas.push(json!(ENTERPRISE));
    }
    if doc.contains_key(VOICE) {
        schemas.push(json!(VOICE));
    }
    doc.insert("schemas".into(), Value::Array(schemas));
    doc.insert("id".into(), json!(record.id));
    doc.insert(
        "meta".into(),
        meta(
            Resource::User,
            base,
            &record.id,
            record.created_at,
            record.modified_at,
            record.version,
        ),
    );
    Value::Object(doc)
}

fn text<'a>(doc: &'a Map<String, Value>, path: &[&str]) -> Option<&'a str> {
    let mut value = doc.get(path[0])?;
    for key in &path[1..] {
        value = value.get(key)?;
    }
    value.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// A person's name as the portal keeps it: printable, at most 100 characters.
fn portal_name(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The values of multi-valued `attr` of `kind` (primary first), in the order sent.
fn typed_values<'a>(doc: &'a Map<String, Value>, attr: &str, kind: Option<&str>) -> Vec<&'a str> {
    let Some(Value::Array(items)) = doc.get(attr) else {
        return Vec::new();
    };
    let mut chosen: Vec<(bool, &str)> = items
        .iter()
        .filter(|item| {
            kind.is_none_or(|kind| {
                item.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(kind))
            })
        })
        .filter_map(|item| {
            let value = item.get("value")?.as_str()?;
            let primary = item
                .get("primary")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Some((!primary, value))
        })
        .collect();
    chosen.sort_by_key(|(not_primary, _)| *not_primary);
    chosen.into_iter().map(|(_, v)| v).collect()
}

fn primary_email(doc: &Map<String, Value>) -> Option<&str> {
    let Some(Value::Array(items)) = doc.get("emails") else {
        return None;
    };
    items
        .iter()
        .find(|item| item.get("primary").and_then(Value::as_bool) == Some(true))
        .and_then(|item| item.get("value"))
        .and_then(Value::as_str)
}

/// What the portal takes from a SCIM user document.
fn portal_user(doc: Map<String, Value>) -> ScimResult<ScimUser> {
    let user_name = text(&doc, &["userName"])
        .ok_or_else(|| ScimError::bad("invalidValue", "userName is required"))?
        .to_owned();
    // The primary email first, then a work email, then any.
    let login = UserId::parse(&user_name).ok().or_else(|| {
        typed_values(&doc, "emails", None)
            .into_iter()
            .filter(|e| primary_email(&doc) == Some(*e))
            .chain(typed_values(&doc, "emails", Some("work")))
            .chain(typed_values(&doc, "emails", None))
            .find_map(|e| Email::parse(e).ok())
            .map(UserId::Email)
    });
    // The portal needs a first and a last name; an identity provider may send neither (a
    // mobile-number userName alone, say), and a create it sends must not fail for that.
    let display = text(&doc, &["displayName"]).map(portal_name);
    let named = |value: String| Some(value).filter(|v| v.chars().any(char::is_alphabetic));
    let local = user_name.split('@').next().unwrap_or(&user_name);
    let given = text(&doc, &["name", "givenName"])
        .or_else(|| text(&doc, &["nickName"]))
        .map(portal_name)
        .and_then(named)
        .or_else(|| {
            display
                .as_deref()
                .and_then(|d| d.split_whitespace().next())
                .map(str::to_owned)
                .and_then(named)
        })
        .or_else(|| named(portal_name(local)))
        .unwrap_or_else(|| "User".to_owned());
    let family = text(&doc, &["name", "familyName"])
        .map(portal_name)
        .and_then(named)
        .or_else(|| {
            display.as_deref().and_then(|d| {
                d.split_once(char::is_whitespace)
                    .map(|(_, rest)| rest.trim().to_owned())
                    .and_then(named)
            })
        })
        .unwrap_or_else(|| given.clone());
    let voice = doc
        .get(VOICE)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let license_type = match voice.get("licenseType").and_then(Value::as_str) {
        Some(name) => name
            .parse::<LicenseType>()
            .map_err(|e| ScimError::bad("invalidValue", format!("{VOICE}:licenseType: {e}")))?,
        None => LicenseType::Standard,
    };
    let e164 = |value: &str| {
        PhoneNumber::parse("phoneNumbers", value)
            .ok()
            .map(|n| n.raw)
    };
    let mobile_number = typed_values(&doc, "phoneNumbers", Some("mobile"))
        .into_iter()
        .find_map(e164);
    let landline_number = typed_values(&doc, "phoneNumbers", Some("work"))
        .into_iter()
        .find_map(e164)
        .filter(|landline| {
            let digits = |n: &str| PhoneNumber::parse("n", n).ok().map(|p| p.e164);
            mobile_number.as_deref().and_then(digits) != digits(landline)
        });
    let linked_number = voice
        .get("linkedNumber")
        .and_then(Value::as_str)
        .and_then(e164)
        .filter(|_| landline_number.is_some());
    let mex = voice.get("mex").and_then(Value::as_bool).unwrap_or(false) && linked_number.is_some();
    let display_numbers = voice
        .get("displayNumbers")
        .and_then(Value::as_str)
        .map(|numbers| {
            numbers
                .split([',', ';'])
                .filter_map(|n| e164(n.trim()))
                .take(20)
                .collect()
        })
        .unwrap_or_default();
    let country_code = voice
        .get("countryCode")
        .and_then(Value::as_str)
        .and_then(|c| country_code(c).ok());
    let language = match text(&doc, &["preferredLanguage"]) {
        Some(tag) if tag.to_ascii_lowercase().starts_with("fr") => Language::Fr,
        _ => Language::En,
    };
    let time_zone = text(&doc, &["timezone"]).and_then(|tz| time_zone(tz).ok());
    let active = doc.get("active").and_then(Value::as_bool).unwrap_or(true);
    Ok(ScimUser {
        first_name: given,
        last_name: family,
        document: doc,
        user_name,
        login,
        license_type,
        mobile_number,
        landline_number,
        linked_number,
        mex,
        display_numbers,
        country_code,
        language,
        time_zone,
        active,
    })
}

/// The writable document of a request body for `resource`.
fn document(resource: Resource, body: &Value) -> ScimResult<Map<String, Value>> {
    schema::normalize(resource, body).map_err(|unfit| {
        let scim_type = if unfit.reason.contains("is not an attribute")
            || unfit.reason.contains("not a schema extension")
        {
            "invalidSyntax"
        } else {
            "invalidValue"
        };
        ScimError::bad(scim_type, unfit.reason)
    })
}

/// `doc` with the PatchOp `body` applied, checked as a whole resource again.
fn patched(
    resource: Resource,
    mut doc: Map<String, Value>,
    body: &Value,
) -> ScimResult<Map<String, Value>> {
    patch::apply(resource, &mut doc, body)
        .map_err(|refused| ScimError::bad(refused.scim_type, refused.detail))?;
    document(resource, &Value::Object(doc))
}

async fn readable(
    state: &AppState,
    caller: &Caller,
) -> ScimResult<sqlx::pool::PoolConnection<sqlx::Any>> {
    let mut connection = state.connection().await?;
    authorize(
        &mut connection,
        &caller.principal,
        &caller.account,
        Permission::ServiceUsersRead,
    )
    .await?;
    Ok(connection)
}

async fn user_views(state: &AppState, caller: &Caller, query: &Query_) -> ScimResult<Vec<Value>> {
    let mut connection = readable(state, caller).await?;
    // Let the index find what Entra matches by (userName, externalId); the filter still runs
    // on what comes back.
    let selection = match query.filter.as_ref() {
        Some(f) => match (
            filter::equality_on(f, "userName"),
            filter::equality_on(f, "externalId"),
        ) {
            (Some(name), _) => users::ScimSelection::UserName(name),
            (_, Some(id)) => users::ScimSelection::Holding(format!(
                "\"externalId\":{}",
                Value::String(id.to_owned())
            )),
            _ => users::ScimSelection::All,
        },
        None => users::ScimSelection::All,
    };
    let records =
        users::scim_users(&mut connection, &caller.account, selection, state.now()).await?;
    let base = base(state);
    Ok(records.iter().map(|r| user_json(r, &base)).collect())
}

/// An unfiltered page of users, read as a page (not every user, then a page of them).
async fn user_page(state: &AppState, caller: &Caller, query: &Query_) -> ScimResult<Value> {
    let mut connection = readable(state, caller).await?;
    let total = users::scim_user_count(&mut connection, &caller.account).await?;
    let window = users::ScimSelection::Window {
        offset: query.start as i64 - 1,
        limit: query.count as i64,
    };
    let records = users::scim_users(&mut connection, &caller.account, window, state.now()).await?;
    let base = base(state);
    let items = records
        .iter()
        .map(|r| filter::project(user_json(r, &base), &query.include, &query.exclude))
        .collect();
    Ok(list_of(items, total as usize, query.start))
}

async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    Query(raw): Query<HashMap<String, String>>,
) -> ScimResult<Response> {
    list(&state, &caller, Resource::User, &params_of(raw)).await
}

async fn search_users(
    State(state): State<AppState>,
    caller: Caller,
    ScimJson(body): ScimJson,
) -> ScimResult<Response> {
    list(&state, &caller, Resource::User, &search_request(&body)?).await
}

async fn one_user(state: &AppState, caller: &Caller, id: &str) -> ScimResult<ScimUserRecord> {
    let mut connection = readable(state, caller).await?;
    users::scim_user(&mut connection, &caller.account, id, state.now())
        .await?
        .ok_or_else(|| ScimError::not_found(Resource::User, id))
}

async fn answer_user(
    state: &AppState,
    caller: &Caller,
    id: &str,
    status: StatusCode,
    query: &Query_,
) -> ScimResult<Response> {
    let record = one_user(state, caller, id).await?;
    let view = filter::project(
        user_json(&record, &base(state)),
        &query.include,
        &query.exclude,
    );
    Ok(scim_response(status, &view, Some(record.version)))
}

async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> ScimResult<Response> {
    let query = query_of(Resource::User, &params_of(raw), false)?;
    answer_user(&state, &caller, &id, StatusCode::OK, &query).await
}

async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ScimJson(body): ScimJson,
) -> ScimResult<Response> {
    let user = portal_user(document(Resource::User, &body)?)?;
    let id = users::scim_create(&state, &caller.principal, &caller.account, user).await?;
    answer_user(
        &state,
        &caller,
        &id,
        StatusCode::CREATED,
        &Query_::default(),
    )
    .await
}

async fn replace_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimJson(body): ScimJson,
) -> ScimResult<Response> {
    let expected = optional_if_match(&headers)?;
    let user = portal_user(document(Resource::User, &body)?)?;
    users::scim_replace(
        &state,
        &caller.principal,
        &caller.account,
        &id,
        user,
        &expected,
    )
    .await?;
    answer_user(&state, &caller, &id, StatusCode::OK, &Query_::default()).await
}

/// The writable part of a stored user, as PATCH starts from it. `active` is the portal's: an
/// admin may disable the user in the portal too.
fn writable_user(record: &ScimUserRecord) -> Map<String, Value> {
    let mut doc = record.document.clone();
    if doc.contains_key("active") || record.state == UserState::Disabled {
        doc.insert("active".into(), json!(record.state != UserState::Disabled));
    }
    doc
}

async fn patch_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimJson(body): ScimJson,
) -> ScimResult<Response> {
    let expected = optional_if_match(&headers)?;
    let record = one_user(&state, &caller, &id).await?;
    expected.check("User", &id, record.version)?;
    let doc = writable_user(&record);
    let doc = patched(Resource::User, doc, &body)?;
    let user = portal_user(doc)?;
    users::scim_replace(
        &state,
        &caller.principal,
        &caller.account,
        &id,
        user,
        &IfMatch::Versions(vec![record.version]),
    )
    .await?;
    answer_user(&state, &caller, &id, StatusCode::OK, &Query_::default()).await
}

async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult<StatusCode> {
    let expected = optional_if_match(&headers)?;
    users::scim_delete(&state, &caller.principal, &caller.account, &id, &expected)
        .await
        .map_err(|e| ScimError::from_api(Resource::User, &id, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The SCIM JSON of every `resource` a query may select from.
async fn views(
    state: &AppState,
    caller: &Caller,
    resource: Resource,
    query: &Query_,
) -> ScimResult<Vec<Value>> {
    match resource {
        Resource::User => user_views(state, caller, query).await,
        Resource::Group => group_views(state, caller).await,
    }
}

/// A list or a search of `resource`: `params` are the query parameters or the SearchRequest.
async fn list(
    state: &AppState,
    caller: &Caller,
    resource: Resource,
    params: &Map<String, Value>,
) -> ScimResult<Response> {
    let query = query_of(resource, params, true)?;
    if resource == Resource::User && query.filter.is_none() {
        let page = user_page(state, caller, &query).await?;
        return Ok(scim_response(StatusCode::OK, &page, None));
    }
    let views = views(state, caller, resource, &query).await?;
    Ok(scim_response(StatusCode::OK, &page(views, &query), None))
}

/// A `.search` body's parameters (a SearchRequest has the query parameters' names).
fn search_request(body: &Value) -> ScimResult<Map<String, Value>> {
    body.as_object()
        .cloned()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "a search is a SearchRequest object"))
}

/// `POST /.search` at the root: users and groups together (RFC 7644 §3.4.3); a filter on an
/// attribute only one of them has selects from that one.
async fn search_everything(
    State(state): State<AppState>,
    caller: Caller,
    ScimJson(body): ScimJson,
) -> ScimResult<Response> {
    let params = search_request(&body)?;
    let mut refused = None;
    let mut paging = None;
    let mut resources = Vec::new();
    for resource in [Resource::User, Resource::Group] {
        let query = match query_of(resource, &params, true) {
            Ok(query) => query,
            Err(error) => {
                refused.get_or_insert(error);
                continue;
            }
        };
        let views = views(&state, &caller, resource, &query).await?;
        resources.extend(
            views
                .into_iter()
                .filter(|r| query.filter.as_ref().is_none_or(|f| filter::matches(f, r)))
                .map(|r| filter::project(r, &query.include, &query.exclude)),
        );
        paging.get_or_insert((query.start, query.count));
    }
    let Some((start, count)) = paging else {
        return Err(refused.expect("a query was refused"));
    };
    let total = resources.len();
    let items: Vec<Value> = resources.into_iter().skip(start - 1).take(count).collect();
    Ok(scim_response(
        StatusCode::OK,
        &list_of(items, total, start),
        None,
    ))
}

// --- Groups ------------------------------------------------------------------------------------

fn group_json(record: &ScimGroupRecord, base: &str) -> Value {
    let mut doc = record.document.clone();
    doc.insert("schemas".into(), json!([GROUP]));
    doc.insert("id".into(), json!(record.id));
    // The team's name is the portal's: it may be renamed there too.
    doc.insert("displayName".into(), json!(record.name));
    if record.members.is_empty() {
        doc.remove("members");
    } else {
        doc.insert(
            "members".into(),
            Value::Array(
                record
                    .members
                    .iter()
                    .map(|m| json!({ "value": m, "$ref": format!("{base}/Users/{m}"), "type": "User" }))
                    .collect(),
            ),
        );
    }
    doc.insert(
        "meta".into(),
        meta(
            Resource::Group,
            base,
            &record.id,
            record.created_at,
            record.modified_at,
            record.version,
        ),
    );
    Value::Object(doc)
}

async fn group_views(state: &AppState, caller: &Caller) -> ScimResult<Vec<Value>> {
    let mut connection = readable(state, caller).await?;
    let records = teams::scim_groups(&mut connection, &caller.account, None).await?;
    let base = base(state);
    Ok(records.iter().map(|r| group_json(r, &base)).collect())
}

async fn list_groups(
    State(state): State<AppState>,
    caller: Caller,
    Query(raw): Query<HashMap<String, String>>,
) -> ScimResult<Response> {
    list(&state, &caller, Resource::Group, &params_of(raw)).await
}

async fn search_groups(
    State(state): State<AppState>,
    caller: Caller,
    ScimJson(body): ScimJson,
) -> ScimResult<Response> {
    list(&state, &caller, Resource::Group, &search_request(&body)?).await
}

async fn one_group(state: &AppState, caller: &Caller, id: &str) -> ScimResult<ScimGroupRecord> {
    let mut connection = readable(state, caller).await?;
    teams::scim_groups(&mut connection, &caller.account, Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ScimError::not_found(Resource::Group, id))
}

async fn answer_group(
    state: &AppState,
    caller: &Caller,
    id: &str,
    status: StatusCode,
    query: &Query_,
) -> ScimResult<Response> {
    let record = one_group(state, caller, id).await?;
    let view = filter::project(
        group_json(&record, &base(state)),
        &query.include,
        &query.exclude,
    );
    Ok(scim_response(status, &view, Some(record.version)))
}

async fn get_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> ScimResult<Response> {
    let query = query_of(Resource::Group, &params_of(raw), false)?;
    answer_group(&state, &caller, &id, StatusCode::OK, &query).await
}

/// A group document split into the team's name, its members and the rest as sent.
fn portal_group(
    mut doc: Map<String, Value>,
) -> ScimResult<(String, Vec<String>, Map<String, Value>)> {
    let name = text(&doc, &["displayName"])
        .ok_or_else(|| ScimError::bad("invalidValue", "displayName is required"))?
        .to_owned();
    let members = match doc.remove("members") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.get("value")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ScimError::bad("invalidValue", "each member needs a value (a User id)")
                    })
            })
            .collect::<ScimResult<Vec<_>>>()?,
        _ => Vec::new(),
    };
    Ok((name, members, doc))
}

async fn write_group(
    state: &AppState,
    caller: &Caller,
    id: Option<&str>,
    doc: Map<String, Value>,
    expected: &IfMatch,
) -> ScimResult<String> {
    let (name, members, document) = portal_group(doc)?;
    let group = teams::ScimGroup {
        name,
        members,
        document,
    };
    Ok(teams::scim_group_write(
        state,
        &caller.principal,
        &caller.account,
        id,
        group,
        expected,
    )
    .await?)
}

async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    ScimJson(body): ScimJson,
) -> ScimResult<Response> {
    let doc = document(Resource::Group, &body)?;
    let id = write_group(&state, &caller, None, doc, &IfMatch::Any).await?;
    answer_group(
        &state,
        &caller,
        &id,
        StatusCode::CREATED,
        &Query_::default(),
    )
    .await
}

async fn replace_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimJson(body): ScimJson,
) -> ScimResult<Response> {
    let expected = optional_if_match(&headers)?;
    one_group(&state, &caller, &id).await?;
    let doc = document(Resource::Group, &body)?;
    write_group(&state, &caller, Some(&id), doc, &expected).await?;
    answer_group(&state, &caller, &id, StatusCode::OK, &Query_::default()).await
}

async fn patch_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimJson(body): ScimJson,
) -> ScimResult<Response> {
    let expected = optional_if_match(&headers)?;
    let record = one_group(&state, &caller, &id).await?;
    expected.check("Group", &id, record.version)?;
    let mut doc = record.document.clone();
    doc.insert("displayName".into(), json!(record.name));
    if !record.members.is_empty() {
        doc.insert(
            "members".into(),
            Value::Array(
                record
                    .members
                    .iter()
                    .map(|m| json!({ "value": m }))
                    .collect(),
            ),
        );
    }
    let doc = patched(Resource::Group, doc, &body)?;
    write_group(
        &state,
        &caller,
        Some(&id),
        doc,
        &IfMatch::Versions(vec![record.version]),
    )
    .await?;
    // RFC 7644 §3.5.2 allows 200 with the resource or 204; Microsoft Entra takes either.
    answer_group(&state, &caller, &id, StatusCode::OK, &Query_::default()).await
}

async fn delete_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult<StatusCode> {
    let expected = optional_if_match(&headers)?;
    teams::scim_group_delete(&state, &caller.principal, &caller.account, &id, &expected)
        .await
        .map_err(|e| ScimError::from_api(Resource::Group, &id, e))?;
    Ok(StatusCode::NO_CONTENT)
}
