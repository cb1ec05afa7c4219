//! Subscriptions (seed 003, DESIGN §2): an account's pool of licences of one licence type. Every
//! read says how many are assigned and free, so nobody counts users to find out.

use serde::{Deserialize, Serialize};

use super::Patch;
use crate::domain::LicenseType;

/// A subscription on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    pub id: String,
    pub account_id: String,
    pub license_type: LicenseType,
    /// Licences the account holds.
    pub quantity: i64,
    /// Licences taken by the account's users (one each).
    pub assigned: i64,
    /// `quantity - assigned`, never below zero.
    pub free: i64,
    pub external_ref: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    #[schemars(extend("format" = "date-time"))]
    pub updated_at: String,
    pub version: i64,
}

/// `POST /v1/accounts/{id}/subscriptions`: one subscription per licence type and account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSubscription {
    pub license_type: LicenseType,
    #[schemars(range(min = 0, max = 1_000_000))]
    pub quantity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub external_ref: Option<String>,
}

/// `PATCH /v1/subscriptions/{id}` (`If-Match`): a new quantity, never below what is assigned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSubscription {
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub quantity: Patch<i64>,
}

/// One entry of `GET /v1/license-types`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LicenseTypeView {
    pub name: LicenseType,
    pub description: String,
}
