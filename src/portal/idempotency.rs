//! `Idempotency-Key` on POST: the same key with the same request returns the first response
//! again; the same key with a different request is refused (422).
//!
//! A placeholder row claims the key before the handler runs, so two concurrent requests with one
//! key never both execute; the second is told to retry (409). Only a success is recorded: a
//! refused request (4xx) or a failure (5xx) wrote nothing, so it releases the key and a retry
//! with the same key runs again against the current state (a grant refused because the admin
//! did not exist yet succeeds once they do). A response
//! that carries a secret (an invitation link) is stored without it: the replay says the link
//! was shown once, and `POST /v1/invitations/{id}/resend` issues a new one.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::auth::authenticate;
use super::problem::{ApiError, ProblemKind};
use super::{AppState, SecretResponse};

const HEADER: &str = "idempotency-key";
/// A claim older than this whose request never finished may be taken over; so may any claim
/// made before this process started (its request died with the previous process).
const ABANDONED_AFTER_MILLIS: i64 = 60_000;
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
    let (mut parts, body) = request.into_parts();
    let bytes = match to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                ProblemKind::PayloadTooLarge,
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
    let now = state.now();
    match claim(&state, &principal.id, &key, &request_hash, now).await {
        Ok(Claim::Mine) => {}
        Ok(Claim::Replay { status, body }) => {
            let mut response = (
                StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK),
                body,
            )
                .into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(status)),
            );
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            return response;
        }
        Ok(Claim::OtherRequest) => {
            return ApiError::new(
                ProblemKind::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request; use a new key for a new request",
            )
            .into_response();
        }
        Ok(Claim::InProgress) => {
            let mut error = ApiError::new(
                ProblemKind::TooManyRequests,
                "a request with this Idempotency-Key is still being processed; retry shortly",
            );
            error.retry_after_seconds = Some(1);
            return error.into_response();
        }
        Err(error) => {
            return ApiError::internal("record the Idempotency-Key", error).into_response();
        }
    }
    parts.extensions.insert(principal.clone());
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let status = parts.status.as_u16();
    let stored = if parts.extensions.get::<SecretResponse>().is_some() {
        redact(&body)
    } else {
        body.clone()
    };
    let outcome = if !parts.status.is_success() {
        release(&state, &principal.id, &key).await
    } else {
        record(&state, &principal.id, &key, status, &stored).await
    };
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

/// The stored copy of a secret-bearing response: the link replaced by a note.
fn redact(body: &Bytes) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut value) => {
            if let Some(object) = value.as_object_mut()
                && object.remove("link").is_some()
            {
                object.insert(
                    "linkRedacted".into(),
                    serde_json::Value::String(
                        "the link was shown once, in the first response; POST /v1/invitations/{id}/resend issues a new one".into(),
                    ),
                );
            }
            Bytes::from(value.to_string())
        }
        Err(_) => Bytes::new(),
    }
}

enum Claim {
    Mine,
    Replay { status: i64, body: Bytes },
    OtherRequest,
    InProgress,
}

async fn claim(
    state: &AppState,
    principal: &str,
    key: &str,
    hash: &str,
    now: i64,
) -> Result<Claim, sqlx::Error> {
    // One statement in the common case: the key is new and this insert claims it.
    let _writer = state.store.lock_writer().await;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (principal_id, idem_key, request_hash, status, response_body, created_at) \
         VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (principal_id, idem_key) DO NOTHING",
    )
    .bind(principal)
    .bind(key)
    .bind(hash)
    .bind(now)
    .execute(&state.store.pool)
    .await?
    .rows_affected();
    if inserted > 0 {
        return Ok(Claim::Mine);
    }
    let row = sqlx::query(
        "SELECT request_hash, status, response_body, created_at FROM idempotency_keys WHERE principal_id = $1 AND idem_key = $2",
    )
    .bind(principal)
    .bind(key)
    .fetch_one(&state.store.pool)
    .await?;
    let stored_hash: String = row.get(0);
    let status: i64 = row.get(1);
    let created_at: i64 = row.get(3);
    if stored_hash != hash {
        return Ok(Claim::OtherRequest);
    }
    if status != 0 {
        let body: String = row.get(2);
        return Ok(Claim::Replay {
            status,
            body: Bytes::from(body),
        });
    }
    if created_at >= state.started_at && now - created_at < ABANDONED_AFTER_MILLIS {
        // Claimed by a request still running (in this process, or another replica that started
        // before us); a claim older than this process is from a crash.
        return Ok(Claim::InProgress);
    }
    // Take the abandoned claim over, unless another request just did.
    let taken = sqlx::query(
        "UPDATE idempotency_keys SET created_at = $1 WHERE principal_id = $2 AND idem_key = $3 AND status = 0 AND created_at = $4",
    )
    .bind(now)
    .bind(principal)
    .bind(key)
    .bind(created_at)
    .execute(&state.store.pool)
    .await?
    .rows_affected();
    Ok(if taken > 0 {
        Claim::Mine
    } else {
        Claim::InProgress
    })
}

async fn record(
    state: &AppState,
    principal: &str,
    key: &str,
    status: u16,
    body: &Bytes,
) -> Result<(), sqlx::Error> {
    let _writer = state.store.lock_writer().await;
    sqlx::query("UPDATE idempotency_keys SET status = $1, response_body = $2 WHERE principal_id = $3 AND idem_key = $4")
        .bind(i64::from(status))
        .bind(String::from_utf8_lossy(body).into_owned())
        .bind(principal)
        .bind(key)
        .execute(&state.store.pool)
        .await?;
    Ok(())
}

async fn release(state: &AppState, principal: &str, key: &str) -> Result<(), sqlx::Error> {
    let _writer = state.store.lock_writer().await;
    sqlx::query("DELETE FROM idempotency_keys WHERE principal_id = $1 AND idem_key = $2")
        .bind(principal)
        .bind(key)
        .execute(&state.store.pool)
        .await?;
    Ok(())
}
