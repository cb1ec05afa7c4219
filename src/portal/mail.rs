//! Outgoing mail: every message is first written to the outbox in the transaction that causes it
//! (so a committed invitation always has its email, and a rolled-back one never does), then a
//! worker delivers it over SMTP when `--smtp-url` is set, retrying with backoff. A delivered
//! message's body is erased, since it may carry an invitation link or a temporary password.
//! Without SMTP, messages stay in the outbox, readable by the platform principal at
//! `GET /v1/outbox`, so a local run shows what would have been sent, but only until what they
//! carry can no longer be used (`erase_at`: the invitation's or the temporary password's
//! expiry); then the body is erased, delivered or not, and an undelivered one is not sent.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use sqlx::Row;

use super::AppState;
use super::auth::Principal;
use super::json::{PageQuery, Params};
use super::problem::{ApiError, ApiResult};
use super::store::{Deferred, WriteTx};
use crate::api::time::format_millis;
pub use crate::api::{OutboxMessage, Page};

#[derive(Debug, Clone)]
pub struct MailConfig {
    /// e.g. `smtp://127.0.0.1:2525` (plain), `smtp://relay.example?tls=required`, `smtps://user:pass@relay.example`.
    pub smtp_url: String,
    pub from: String,
}

/// Queues a message in the caller's transaction (written when it commits); its body is erased
/// at `erase_at`, when the credential it carries stops working.
pub fn queue(tx: &mut WriteTx, to: &str, subject: &str, body: &str, now: i64, erase_at: i64) {
    tx.defer(
        Deferred::new(
            "INSERT INTO outbox (id, to_address, subject, body, created_at, attempts, next_attempt_at, erase_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $5, $6)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(to)
        .bind(subject)
        .bind(body)
        .bind(now)
        .bind(erase_at),
    );
}

/// Erases the bodies whose credential expired; when the next one is due.
pub async fn erase_expired(
    store: &super::store::Store,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = store.write().await?;
    sqlx::query(
        "UPDATE outbox SET body = '' WHERE erase_at IS NOT NULL AND erase_at <= $1 AND body <> ''",
    )
    .bind(now)
    .execute(&mut *tx.tx)
    .await?;
    let next: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(erase_at) FROM outbox WHERE erase_at IS NOT NULL AND erase_at > $1 AND body <> ''",
    )
    .bind(now)
    .fetch_one(&mut *tx.tx)
    .await?;
    tx.commit().await?;
    Ok(next)
}

/// `GET /v1/outbox`: the platform principal reads what the portal sent or would send.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Params(page): Params<PageQuery>,
) -> ApiResult<Json<Page<OutboxMessage>>> {
    if !principal.is_platform() {
        return Err(ApiError::forbidden(
            "only the platform principal may read the outbox",
        ));
    }
    let limit = page.limit()?;
    let after = page.after()?;
    let mut connection = state.connection().await?;
    let rows = sqlx::query(
        "SELECT id, to_address, subject, CASE WHEN erase_at IS NOT NULL AND erase_at <= $3 THEN '' ELSE body END, \
         created_at, delivered_at, attempts, last_error FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(&after)
    .bind(limit + 1)
    .bind(state.now())
    .fetch_all(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("read the outbox", e))?;
    let items = rows
        .iter()
        .map(|row| OutboxMessage {
            id: row.get(0),
            to: row.get(1),
            subject: row.get(2),
            body: row.get(3),
            created_at: format_millis(row.get(4)),
            delivered_at: row.get::<Option<i64>, _>(5).map(format_millis),
            attempts: row.get(6),
            last_error: row.get(7),
        })
        .collect();
    Ok(Json(Page::new(items, limit, |m| m.id.clone())))
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the SMTP URL is not valid")]
    Url(#[source] lettre::transport::smtp::Error),
    #[error("the sender address {0:?} is not valid")]
    From(String),
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(config: &MailConfig) -> Result<Mailer, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)
            .map_err(MailError::Url)?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = config
            .from
            .parse()
            .map_err(|_| MailError::From(config.from.clone()))?;
        Ok(Mailer { transport, from })
    }

    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient address: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| format!("build the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Delivers due outbox messages until stopped, waking when `wake` is notified or every two
/// seconds. Failed sends back off exponentially (from 5 s to an hour).
pub async fn run_delivery(
    state: AppState,
    mailer: Mailer,
    wake: std::sync::Arc<tokio::sync::Notify>,
) {
    loop {
        if let Err(error) = deliver_due(&state, &mailer).await {
            tracing::warn!(%error, "mail delivery pass failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Messages to a phone number (`+…`: a user whose ID is its mobile number) are not email: this
/// server has no SMS gateway, so they stay in the outbox for the platform to pass on, and are
/// erased like the rest when their temporary password expires.
async fn deliver_due(state: &AppState, mailer: &Mailer) -> Result<(), sqlx::Error> {
    let now = state.now();
    let due = sqlx::query(
        "SELECT id, to_address, subject, body, attempts FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
         AND (erase_at IS NULL OR erase_at > $1) AND to_address NOT LIKE '+%' ORDER BY created_at LIMIT 50",
    )
    .bind(now)
    .fetch_all(&state.store.pool)
    .await?;
    for row in due {
        let id: String = row.get(0);
        let to: String = row.get(1);
        let attempts: i64 = row.get(4);
        let outcome = mailer
            .send(&to, &row.get::<String, _>(2), &row.get::<String, _>(3))
            .await;
        let now = state.now();
        let mut tx = state.store.write().await?;
        match outcome {
            Ok(()) => {
                sqlx::query("UPDATE outbox SET delivered_at = $1, body = '', attempts = $2, last_error = NULL WHERE id = $3")
                    .bind(now)
                    .bind(attempts + 1)
                    .bind(&id)
                    .execute(&mut *tx.tx)
                    .await?;
            }
            Err(error) => {
                let backoff = (5_000i64 << attempts.min(10)).min(3_600_000);
                tracing::warn!(message_id = %id, %error, attempts = attempts + 1, "sending an email failed; will retry");
                sqlx::query("UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3 WHERE id = $4")
                    .bind(attempts + 1)
                    .bind(now + backoff)
                    .bind(error.chars().take(500).collect::<String>())
                    .bind(&id)
                    .execute(&mut *tx.tx)
                    .await?;
            }
        }
        tx.commit().await?;
    }
    Ok(())
}
