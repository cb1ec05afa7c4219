//! API keys and the mail outbox.

use serde::{Deserialize, Serialize};

/// `POST /v1/api-keys`.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// The platform principal may issue a key for an admin; admins issue keys for themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_id: Option<String>,
}

/// An API key; `key` (the secret) only in the answer that issued it.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub principal_id: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// In a replayed answer (same Idempotency-Key) instead of `key`: how to get a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_redacted: Option<String>,
}

/// A message the portal sent or will send.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxMessage {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
}
