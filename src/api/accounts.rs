//! Accounts: the partner → client tree.

use serde::{Deserialize, Serialize};

use super::Patch;
use crate::domain::AccountKind;

/// An account on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub id: String,
    pub parent_id: Option<String>,
    #[serde(rename = "type")]
    pub account_type: AccountKind,
    #[schemars(length(min = 1, max = 200))]
    pub display_name: String,
    pub tenant_id: Option<String>,
    pub sub_contract: bool,
    pub external_id: Option<String>,
    pub version: i64,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    #[schemars(extend("format" = "date-time"))]
    pub updated_at: String,
}

/// `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAccount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(rename = "type")]
    pub account_type: AccountKind,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub sub_contract: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// `PATCH /v1/accounts/{id}`: a merge patch of the mutable fields; what is absent stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateAccount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub tenant_id: Patch<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_contract: Option<bool>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub external_id: Patch<String>,
}

impl UpdateAccount {
    /// Changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == UpdateAccount::default()
    }
}
