//! Teams and user roles (seed 003). A team collects users (listed by the team, listed by the
//! user, or holding a role that belongs to the team), has public and private channels and an
//! avatar, and can be disabled. A user role carries end-user permissions, may belong to a team
//! and gives team permissions there.

use serde::{Deserialize, Serialize};

use super::Patch;
use crate::domain::{Origin, TeamPermission, UserPermission};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ChannelVisibility {
    Public,
    Private,
}

/// One channel of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Channel {
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    pub visibility: ChannelVisibility,
}

/// An avatar as uploaded: a PNG or JPEG image of at most 256 KiB, base64-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AvatarUpload {
    /// `image/png` or `image/jpeg`; it must match the image's own signature.
    pub media_type: String,
    /// The image, base64 (standard alphabet).
    #[schemars(length(max = 350_000))]
    pub data: String,
}

/// What a read says of a team's avatar (the image itself is served on its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvatarInfo {
    pub media_type: String,
    pub bytes: i64,
    /// SHA-256 of the image, hex: what a client compares to know whether to upload again.
    pub sha256: String,
}

/// A member of a team and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamMember {
    pub user_id: String,
    pub origins: Vec<Origin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamView {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub avatar: Option<AvatarInfo>,
    pub channels: Vec<Channel>,
    /// A disabled team is invisible to its members until enabled again.
    pub disabled: bool,
    /// The user IDs the team itself lists.
    pub members: Vec<String>,
    /// The user roles the team itself lists as belonging to it.
    pub roles: Vec<String>,
    /// Every member, with the origins of its membership.
    pub effective_members: Vec<TeamMember>,
    pub external_ref: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    pub version: i64,
}

/// `POST /v1/accounts/{id}/teams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTeam {
    /// Unique in the account (compared case-insensitively).
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<AvatarUpload>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub channels: Vec<Channel>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// User IDs of users of the account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5000))]
    pub members: Vec<String>,
    /// Names of user roles of the account whose holders are members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub external_ref: Option<String>,
}

/// `PATCH /v1/teams/{id}` (`If-Match`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateTeam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub avatar: Patch<AvatarUpload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRoleView {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub permissions: Vec<UserPermission>,
    /// The team the role belongs to (its holders are members there).
    pub team: Option<String>,
    pub team_permissions: Vec<TeamPermission>,
    /// The user IDs holding the role.
    pub holders: Vec<String>,
    pub external_ref: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    pub version: i64,
}

/// `POST /v1/accounts/{id}/user-roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUserRole {
    /// Unique in the account (compared case-insensitively), e.g. "Telephony Administrator".
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<UserPermission>,
    /// The name of a team of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Needs a team.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub team_permissions: Vec<TeamPermission>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub external_ref: Option<String>,
}

/// `PATCH /v1/user-roles/{id}` (`If-Match`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUserRole {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<UserPermission>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub team: Patch<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_permissions: Option<Vec<TeamPermission>>,
}

/// A membership a role change or deletion took away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LostMembership {
    pub user_id: String,
    pub team: String,
}

/// `DELETE /v1/user-roles/{id}`: what the deletion took away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletedUserRole {
    /// The users who held the role.
    pub removed_from: Vec<String>,
    /// The team memberships that came only from the role.
    pub lost_memberships: Vec<LostMembership>,
}
