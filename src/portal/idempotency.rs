//! `Idempotency-Key` on POST: the same key with the same request returns the first response
//! again; the same key with a different request is refused (422).
//!
//! The response is recorded in the request's own transaction ([`WriteTx::commit_response`]),
//! ahead of its other writes: the write and its record commit together or not at all, so a
//! crash can never leave one without the other. Two concurrent requests with one key may both
//! run, but only the first commits; the other's transaction rolls back when it finds the key
//! taken, and it answers with the first one's response (as does one refused because of what
//! the first wrote, such as the same externalId). Only a success is recorded: a refused
//! request (4xx) wrote nothing, so a retry with the same key runs again against the current
//! state (a grant refused because the admin did not exist yet succeeds once they do). A response
//! that carries a secret (an invitation link) is stored without it: the replay says the link
//! was shown once, and `POST /v1/invitations/{id}/resend` issues a new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::auth::authenticate;
use super::problem::{ApiError, ApiResult, ProblemType};
use super::store::{Deferred, WriteTx};
use super::{AppState, SecretResponse, db_error};

const HEADER: &str = "idempotency-key";
const BODY_LIMIT: usize = 1024 * 1024;

pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().map(str::to_owned))
    else {
        return next.run(request).await;
    };
    // Unauthenticated requests pass through; the handler answers 401.
    let principal = {
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .map(str::to_owned);
        let Some(bearer) = bearer else {
            return next.run(request).await;
        };
        let Ok(mut connection) = state.store.pool.acquire().await else {
            return ApiError::internal("open a database connection", "pool").into_response();
        };
        match authenticate(&mut connection, &bearer).await {
            Ok(principal) => principal,
            Err(_) => return next.run(request).await,
        }
    };
    // Checked once the caller is known: a request without a valid API key is answered 401
    // by the handler, whatever its other headers.
    let key = match key {
        Ok(key) if !key.is_empty() && key.len() <= 255 => key,
        _ => {
            return ApiError::invalid(
                "/headers/Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    let (mut parts, body) = request.into_parts();
    let bytes = match to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                ProblemType::PayloadTooLarge,
                "the request body is larger than the 1 MiB the API accepts",
            )
            .into_response();
        }
    };
    let request_hash = {
        let mut hasher = Sha256::new();
        hasher.update(parts.uri.path().as_bytes());
        hasher.update([0]);
        hasher.update(parts.uri.query().unwrap_or("").as_bytes());
        hasher.update([0]);
        hasher.update(&bytes);
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    match recorded(&state, &principal.id, &key, &request_hash).await {
        Ok(Some(earlier)) => return earlier,
        Ok(None) => {}
        Err(error) => {
            return ApiError::internal("look up the Idempotency-Key", error).into_response();
        }
    }
    parts.extensions.insert(principal.clone());
    let keyed = Arc::new(KeyedRequest {
        principal_id: principal.id.clone(),
        key: key.clone(),
        request_hash: request_hash.clone(),
        created_at: state.now(),
        recorded: AtomicBool::new(false),
    });
    let response = REQUEST
        .scope(
            keyed.clone(),
            next.run(Request::from_parts(parts, Body::from(bytes))),
        )
        .await;
    if keyed.recorded.load(Ordering::Acquire) {
        return response;
    }
    if response.status().is_success() {
        // A handler that answered without committing through `commit_response`: record the
        // response after the fact.
        return record_after(&state, &keyed, response).await;
    }
    // A request with this key running at the same time may have committed first, and this one
    // been refused because of what that one wrote (its key, or the same externalId): answer as
    // the first did. (A refusal is answered only once what it read is committed; see
    // `settle_refusals`, inside this layer.)
    match recorded(&state, &principal.id, &key, &request_hash).await {
        Ok(Some(earlier)) => earlier,
        _ => response,
    }
}

tokio::task_local! {
    /// The Idempotency-Key of the request this task is serving.
    static REQUEST: Arc<KeyedRequest>;
}

struct KeyedRequest {
    principal_id: String,
    key: String,
    request_hash: String,
    created_at: i64,
    /// The response was recorded in the request's transaction.
    recorded: AtomicBool,
}

impl KeyedRequest {
    /// The write that records `body` as the answer to the key; a secret in it is not kept.
    fn record(&self, response: &axum::http::response::Parts, body: &Bytes) -> Deferred {
        let stored = if response.extensions.get::<SecretResponse>().is_some() {
            redact(body)
        } else {
            body.clone()
        };
        Deferred::new(
            "INSERT INTO idempotency_keys (principal_id, idem_key, request_hash, status, response_body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(self.principal_id.as_str())
        .bind(self.key.as_str())
        .bind(self.request_hash.as_str())
        .bind(i64::from(response.status.as_u16()))
        .bind(String::from_utf8_lossy(&stored).into_owned())
        .bind(self.created_at)
    }
}

impl WriteTx {
    /// Commits, and records `response` as the answer to the request's Idempotency-Key (when it
    /// has one and the response is a success) in the same transaction, ahead of its other
    /// writes. When another request with the key committed first, nothing is written and the
    /// Idempotency-Key layer answers with that request's response instead.
    pub async fn commit_response(mut self, response: Response) -> ApiResult<Response> {
        let keyed = REQUEST.try_with(Arc::clone).ok();
        let Some(keyed) = keyed.filter(|_| response.status().is_success()) else {
            self.commit().await.map_err(db_error("commit"))?;
            return Ok(response);
        };
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, usize::MAX)
            .await
            .map_err(|e| ApiError::internal("read the response", e))?;
        self.defer_first(keyed.record(&parts, &body));
        self.commit().await.map_err(db_error("commit"))?;
        keyed.recorded.store(true, Ordering::Release);
        Ok(Response::from_parts(parts, Body::from(body)))
    }
}

/// The recorded answer to `key`, as a response: the first response again, or 422 when the key
/// was used with another request.
async fn recorded(
    state: &AppState,
    principal: &str,
    key: &str,
    request_hash: &str,
) -> Result<Option<Response>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT request_hash, status, response_body FROM idempotency_keys WHERE principal_id = $1 AND idem_key = $2",
    )
    .bind(principal)
    .bind(key)
    .fetch_optional(&state.store.pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let stored_hash: String = row.try_get(0)?;
    if stored_hash != request_hash {
        return Ok(Some(
            ApiError::new(
                ProblemType::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request; use a new key for a new request",
            )
            .into_response(),
        ));
    }
    let status: i64 = row.try_get(1)?;
    let body: String = row.try_get(2)?;
    let mut response = (
        StatusCode::from_u16(u16::try_from(status).unwrap_or(200)).unwrap_or(StatusCode::OK),
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(status)),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some(response))
}

/// Records a success that was committed without its record.
async fn record_after(state: &AppState, keyed: &KeyedRequest, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let outcome = async {
        let mut tx = state.store.write().await?;
        tx.defer(keyed.record(&parts, &body));
        tx.commit().await
    }
    .await;
    if let Err(error) = outcome {
        tracing::warn!(%error, "could not record the idempotent response; a retry will run the request again");
    }
    Response::from_parts(parts, Body::from(body))
}

fn content_type(status: i64) -> &'static str {
    if status >= 400 {
        "application/problem+json"
    } else {
        "application/json"
    }
}

/// The stored copy of a secret-bearing response: each secret replaced by a note on how to get a
/// new one.
fn redact(body: &Bytes) -> Bytes {
    const SECRETS: [(&str, &str, &str); 2] = [
        (
            "link",
            "linkRedacted",
            "the link was shown once, in the first response; POST /v1/invitations/{id}/resend issues a new one",
        ),
        (
            "key",
            "keyRedacted",
            "the API key was shown once, in the first response; POST /v1/api-keys creates a new one",
        ),
    ];
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut value) => {
            if let Some(object) = value.as_object_mut() {
                for (field, note_field, note) in SECRETS {
                    if object.remove(field).is_some() {
                        object.insert(note_field.into(), serde_json::Value::String(note.into()));
                    }
                }
            }
            Bytes::from(value.to_string())
        }
        Err(_) => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_responses_keep_no_link_and_no_api_key() {
        let stored = redact(&Bytes::from_static(
            br#"{"id":"k1","key":"pk_0123_secret","link":"https://portal/accept#token=t"}"#,
        ));
        let text = String::from_utf8(stored.to_vec()).unwrap();
        assert!(
            !text.contains("secret") && !text.contains("token=t"),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["id"], "k1");
        assert!(value["keyRedacted"].is_string() && value["linkRedacted"].is_string());
    }
}
