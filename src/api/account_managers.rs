//! Account managers (seed 004): portal users with account-wide access who activate with a
//! temporary password. No password, temporary or not, ever appears in these types' responses.

use serde::{Deserialize, Serialize};

use crate::domain::Language;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum AccountManagerState {
    ActivationPending,
    Active,
    ActivationExpired,
}

/// An account manager on the wire. No password, temporary or not, ever appears here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountManagerView {
    pub id: String,
    pub account_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub language: Language,
    pub branding_domain: Option<String>,
    pub state: AccountManagerState,
    #[schemars(extend("format" = "date-time"))]
    pub activation_expires_at: Option<String>,
    pub external_ref: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    #[schemars(extend("format" = "date-time"))]
    pub activated_at: Option<String>,
    pub activation_sends: i64,
    pub version: i64,
}

/// `POST /v1/accounts/{id}/account-managers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAccountManager {
    #[schemars(length(min = 1, max = 100))]
    pub first_name: String,
    #[schemars(length(min = 1, max = 100))]
    pub last_name: String,
    #[schemars(email, length(max = 254))]
    pub email: String,
    /// `en` (the default) or `fr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branding_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
}

/// `POST /v1/account-managers/activate`: the first sign-in.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Activate {
    pub username: String,
    pub temporary_password: String,
    /// At least 12 characters, and not the temporary password.
    #[schemars(length(min = 12))]
    pub new_password: String,
}
