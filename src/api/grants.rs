//! Role grants, admins and effective access.

use serde::{Deserialize, Serialize};

use crate::domain::{GrantScope, Role};

/// Who an API key acts as.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Whoami {
    /// The principal (admin) id; ask `GET /v1/access?subject={id}&account=…` what it may do.
    pub id: String,
    /// The platform principal may do anything, including creating partner accounts.
    pub platform: bool,
}

/// A grant on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantView {
    pub id: String,
    pub admin_id: String,
    pub email: Option<String>,
    pub account_id: String,
    pub role: Role,
    pub scope: GrantScope,
    pub source: String,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
}

/// `POST /v1/accounts/{id}/grants`: roles for an existing admin, by id or by email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateGrants {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub roles: Vec<Role>,
    #[serde(default)]
    pub scope: GrantScope,
    /// Who made the grant (e.g. a RoleBinding's reference); `manual` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The answer of `DELETE /v1/accounts/{id}/grants?source=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RevokedGrants {
    pub revoked: u64,
}

/// An admin of an account, with the roles granted to it there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminView {
    pub id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub roles: Vec<Role>,
}

/// `POST /v1/accounts/{id}/admins` (platform principal only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAdmin {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub scope: GrantScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

fn default_roles() -> Vec<Role> {
    vec![Role::DEFAULT]
}
