//! Request and response plumbing shared by the handlers: a strict JSON body extractor whose
//! refusals are problem documents, merge-patch fields, and cursor pagination.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::problem::{ApiError, ApiResult, ProblemKind};

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
                ProblemKind::UnsupportedMediaType,
                "send the request body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ProblemKind::PayloadTooLarge,
                        "the request body is larger than the 1 MiB the API accepts",
                    )
                } else {
                    ApiError::new(
                        ProblemKind::MalformedRequest,
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
            ProblemKind::MalformedRequest,
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        ApiError::new(
            ProblemKind::MalformedRequest,
            format!("the request body is not valid: {error}"),
        )
    })
}

/// A merge-patch field: absent (leave as is), `null` (clear), or a value (set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            None => Patch::Null,
            Some(value) => Patch::Value(value),
        })
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Patch<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <Option<T>>::schema_name()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Option<T>>::json_schema(generator)
    }
}

/// `?limit=&cursor=` on list endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    #[serde(default)]
    pub limit: Option<String>,
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

/// One page of a list. `nextCursor` is absent on the last page.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says another page exists.
    pub fn new(mut items: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Self {
        let more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        let next_cursor = more
            .then(|| items.last().map(|last| URL_SAFE_NO_PAD.encode(key(last))))
            .flatten();
        Page { items, next_cursor }
    }
}
