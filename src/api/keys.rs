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
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    /// A SCIM token: the account it provisions at `/scim/v2` (it works nowhere else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// In a replayed answer (same Idempotency-Key) instead of `key`: how to get a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_redacted: Option<String>,
}

/// `POST /v1/accounts/{id}/scim-tokens`: a SCIM token for an identity provider (e.g. Microsoft
/// Entra ID's provisioning, Tenant URL `https://PORTAL/scim/v2`), bound to this account.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateScimToken {
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
}

/// A message the portal sent or will send.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxMessage {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    #[schemars(extend("format" = "date-time"))]
    pub delivered_at: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
}
