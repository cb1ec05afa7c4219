//! Request and response plumbing shared by the handlers: a strict JSON body extractor whose
//! refusals are problem documents, merge-patch fields, and cursor pagination.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::problem::{ApiError, ApiResult, ProblemType};
use crate::domain::{Language, LicenseType, Role, UserPermission};

/// A JSON request body. Wrong content type → 415, too large → 413, malformed JSON or unknown
/// fields → 400 with serde's words, which name the field and position.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::new(
                ProblemType::UnsupportedMediaType,
                "send the request body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ProblemType::PayloadTooLarge,
                        "the request body is larger than the 1 MiB the API accepts",
                    )
                } else {
                    ApiError::new(
                        ProblemType::MalformedRequest,
                        format!("could not read the request body: {rejection}"),
                    )
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    // serde would read a JSON array into a struct field by field; every body here is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            ProblemType::MalformedRequest,
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        let malformed = ApiError::new(
            ProblemType::MalformedRequest,
            format!("the request body is not valid: {error}"),
        );
        // A field the body may not hold at all is named as such, whatever its value.
        if error.to_string().starts_with("unknown field") {
            return malformed;
        }
        explain_domain_fields(bytes).err().unwrap_or(malformed)
    })
}

/// The contract's bodies hold domain types (`roles`, `language`, `licenseType`, `permissions`)
/// that serde would refuse as a malformed request; a wrong value there is the caller's choice,
/// not a syntax error, and gets the domain's own problem with the field that holds it
/// (`unknown-role` at `/roles/1`, `validation-failed` at `/language`).
fn explain_domain_fields(bytes: &[u8]) -> ApiResult<()> {
    let mentions = |field: &[u8]| bytes.windows(field.len()).any(|w| w == field);
    let fields: [&[u8]; 4] = [
        b"\"roles\"",
        b"\"language\"",
        b"\"licenseType\"",
        b"\"permissions\"",
    ];
    if !fields.iter().any(|field| mentions(field)) {
        return Ok(());
    }
    let Ok(serde_json::Value::Object(body)) = serde_json::from_slice(bytes) else {
        return Ok(()); // serde explains malformed JSON below
    };
    if let Some(serde_json::Value::Array(roles)) = body.get("roles") {
        for (index, role) in roles.iter().enumerate() {
            if let Some(name) = role.as_str() {
                name.parse::<Role>().map_err(|e| {
                    ApiError::new(ProblemType::UnknownRole, e.to_string())
                        .at(&format!("/roles/{index}"))
                })?;
            }
        }
    }
    if let Some(serde_json::Value::String(language)) = body.get("language") {
        language.parse::<Language>()?;
    }
    if let Some(serde_json::Value::String(license)) = body.get("licenseType") {
        license.parse::<LicenseType>().map_err(|e| {
            ApiError::new(ProblemType::ValidationFailed, e.to_string()).at("/licenseType")
        })?;
    }
    if let Some(serde_json::Value::Array(permissions)) = body.get("permissions") {
        for (index, permission) in permissions.iter().enumerate() {
            if let Some(name) = permission.as_str() {
                name.parse::<UserPermission>().map_err(|e| {
                    ApiError::new(ProblemType::ValidationFailed, e.to_string())
                        .at(&format!("/permissions/{index}"))
                })?;
            }
        }
    }
    Ok(())
}

/// A request's query parameters. Malformed, missing or unknown parameters → 400 problem+json
/// naming the parameter (never axum's text/plain rejection).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|query| Params(query.0))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let cause = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                ApiError::new(
                    ProblemType::MalformedRequest,
                    format!("query parameters: {cause}"),
                )
            })
    }
}

/// `?limit=&cursor=` on list endpoints.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageQuery {
    /// Page size, 1 to 500 (default 100).
    #[serde(default)]
    #[schemars(with = "Option<u16>", range(min = 1, max = 500))]
    pub limit: Option<String>,
    /// The nextCursor of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

impl PageQuery {
    pub const DEFAULT_LIMIT: i64 = 100;
    pub const MAX_LIMIT: i64 = 500;

    pub fn limit(&self) -> ApiResult<i64> {
        let Some(text) = &self.limit else {
            return Ok(Self::DEFAULT_LIMIT);
        };
        match text.parse::<i64>() {
            Ok(limit) if (1..=Self::MAX_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(ApiError::invalid(
                "/limit",
                format!("limit must be a whole number from 1 to {}", Self::MAX_LIMIT),
            )),
        }
    }

    /// The id after which the page starts ("" for the first page).
    pub fn after(&self) -> ApiResult<String> {
        let Some(cursor) = &self.cursor else {
            return Ok(String::new());
        };
        URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                ApiError::invalid(
                    "/cursor",
                    "cursor is not one this API returned; start again without it",
                )
            })
    }
}

/// Checks an `externalRef` as sent: 1 to 512 printable characters (the portal indexes it and
/// never parses it).
pub fn check_external_ref(external_ref: Option<&str>) -> ApiResult<()> {
    match external_ref {
        Some(r) if r.is_empty() || r.len() > 512 || r.chars().any(char::is_control) => {
            Err(ApiError::invalid(
                "/externalRef",
                "externalRef must hold 1 to 512 printable characters",
            ))
        }
        _ => Ok(()),
    }
}

/// A JSON response carrying the object's version as its ETag (what `If-Match` names back).
pub fn with_etag(
    status: axum::http::StatusCode,
    version: i64,
    body: impl serde::Serialize,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&format!("\"{version}\"")) {
        response
            .headers_mut()
            .insert(axum::http::header::ETAG, value);
    }
    response
}
