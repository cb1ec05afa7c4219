//! Service users (seed 003): the service's end users, each holding one licence, with numbers,
//! permissions, language and time zone; invited at once or kept *prepared*. No password,
//! temporary or not, ever appears in these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Patch;
use crate::domain::{EffectiveService, Language, LicenseType, TeamPermission, UserPermission};

/// Where a user is in its life: created and kept back (Prepared), sent an activation email
/// (Invited), signed in (Active), or turned off (Disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum UserState {
    Prepared,
    Invited,
    /// The temporary password lapsed before it was used; resend to invite again.
    ActivationExpired,
    Active,
    Disabled,
}

/// Where a user or team came from.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Provisioner {
    #[default]
    Api,
    Scim,
}

impl Provisioner {
    pub fn as_str(self) -> &'static str {
        match self {
            Provisioner::Api => "API",
            Provisioner::Scim => "SCIM",
        }
    }
}

/// A user on the wire. Numbers are given back exactly as they were sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub account_id: String,
    /// The login: an email address or an E.164 mobile number.
    pub user_id: String,
    pub first_name: String,
    pub last_name: String,
    /// Extra information (department, job title, …).
    pub extra: BTreeMap<String, String>,
    pub license_type: LicenseType,
    pub mobile_number: Option<String>,
    pub landline_number: Option<String>,
    /// The mobile number linked to the landline.
    pub linked_number: Option<String>,
    /// Mobile extension (mex) on the linked number.
    pub mex: bool,
    pub display_numbers: Vec<String>,
    pub country_code: Option<String>,
    /// Permissions given directly (not through a role).
    pub permissions: Vec<UserPermission>,
    /// The user roles the user holds (names).
    pub roles: Vec<String>,
    /// The teams the user lists itself in (names); `effective.teams` has every membership.
    pub teams: Vec<String>,
    pub language: Language,
    pub time_zone: Option<String>,
    pub state: UserState,
    /// Created through SCIM when no licence of its type was free: the user exists but holds no
    /// licence yet, and takes one (and is invited) as soon as one is free.
    #[serde(default)]
    pub waiting_for_license: bool,
    /// Who made the user: the REST API (people, the operator, the CLI) or an identity provider
    /// through SCIM (`/scim/v2`).
    #[serde(default)]
    pub provisioned_by: Provisioner,
    #[schemars(extend("format" = "date-time"))]
    pub activation_expires_at: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub invited_at: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub activated_at: Option<String>,
    pub activation_sends: i64,
    /// What the user may do and which teams they are in, each with its origin.
    pub effective: EffectiveService,
    pub external_ref: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    pub version: i64,
}

/// `POST /v1/accounts/{id}/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    /// An email address or an E.164 mobile number; unique across users, account managers and
    /// admins. It cannot be changed.
    #[schemars(length(min = 1, max = 254))]
    pub user_id: String,
    #[schemars(length(min = 1, max = 100))]
    pub first_name: String,
    #[schemars(length(min = 1, max = 100))]
    pub last_name: String,
    /// Up to 20 entries; keys of 1 to 40 letters and digits, values up to 200 characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
    pub license_type: LicenseType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landline_number: Option<String>,
    /// Needs a landline number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_number: Option<String>,
    /// Needs a linked number.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mex: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub display_numbers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<UserPermission>,
    /// Names of user roles of the account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Names of teams of the account the user is a member of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
    /// An IANA time zone, e.g. Europe/London.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// `true` (the default): email the activation now. `false`: keep the user prepared until
    /// someone sends invitations.
    #[serde(default = "yes")]
    pub invite: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub external_ref: Option<String>,
}

fn yes() -> bool {
    true
}

/// `PATCH /v1/users/{id}` (`If-Match`): absent fields stay, `null` clears.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<BTreeMap<String, String>>,
    /// Takes a licence of the new type and gives the old one back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_type: Option<LicenseType>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub mobile_number: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub landline_number: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub linked_number: Patch<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mex: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_numbers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub country_code: Patch<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<UserPermission>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub time_zone: Patch<String>,
    /// `true` turns the user off (they keep their licence); `false` turns them back on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

impl UpdateUser {
    pub fn is_empty(&self) -> bool {
        *self == UpdateUser::default()
    }
}

/// `POST /v1/accounts/{id}/users/send-invitations`: invite prepared users (seed 003's "Send
/// invitations": one or more at once). All or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendInvitations {
    /// Portal ids of prepared users of the account.
    #[schemars(length(min = 1, max = 500))]
    pub users: Vec<String>,
}

/// `GET /v1/user-permissions`: the end-user permission catalogs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionCatalog {
    pub permissions: Vec<CatalogEntry<UserPermission>>,
    pub team_permissions: Vec<CatalogEntry<TeamPermission>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntry<T> {
    pub name: T,
    pub description: String,
}

/// Which users an export holds.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ExportState {
    /// Users that have been invited: Invited, ActivationExpired, Active and Disabled.
    Active,
    /// Users created but not yet invited (including those waiting for a licence).
    Prepared,
    /// Both.
    #[default]
    All,
}

impl ExportState {
    pub fn includes(self, state: UserState) -> bool {
        match self {
            ExportState::All => true,
            ExportState::Prepared => state == UserState::Prepared,
            ExportState::Active => state != UserState::Prepared,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportState::Active => "active",
            ExportState::Prepared => "prepared",
            ExportState::All => "all",
        }
    }
}
