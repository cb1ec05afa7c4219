//! The service-user kinds (seed 003): Subscription (an account's licences of one type), User (an
//! end user holding one of them), UserRole and Team. Types only, as the rest of `crd`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{AccountRef, DeletionPolicy, Refusal};
use crate::domain::{Language, LicenseType, UserPermission};

// --- Subscription ------------------------------------------------------------------------------

/// An account's licences of one licence type.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "access.portal.dev",
    version = "v1alpha1",
    kind = "Subscription",
    namespaced,
    status = "SubscriptionStatus",
    shortname = "psub",
    category = "portal",
    doc = "An account's licences of one licence type; each User takes one. Adding or amending one is a financial change: the operator's API key needs SubscriptionContributor where that role functions.",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.accountRef.name"}"#,
    printcolumn = r#"{"name":"Licence","type":"string","jsonPath":".spec.licenseType"}"#,
    printcolumn = r#"{"name":"Quantity","type":"integer","jsonPath":".spec.quantity"}"#,
    printcolumn = r#"{"name":"Assigned","type":"integer","jsonPath":".status.assigned"}"#,
    printcolumn = r#"{"name":"Free","type":"integer","jsonPath":".status.free"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.accountRef == oldSelf.accountRef").message("accountRef is immutable"))]
#[x_kube(validation = kube::core::Rule::new("self.licenseType == oldSelf.licenseType").message("licenseType is immutable; create another Subscription"))]
pub struct SubscriptionSpec {
    /// The Account that holds the licences; it must list this namespace in spec.namespaces.
    pub account_ref: AccountRef,
    /// Standard, Premium or CommonArea. An account has one subscription per licence type.
    pub license_type: LicenseType,
    /// How many licences; never below what users hold (the portal refuses).
    #[schemars(range(min = 0, max = 1_000_000))]
    pub quantity: i64,
    /// What deleting this object does in the portal: Orphan (the default) keeps the
    /// subscription; Delete removes it, once no user holds one of its licences.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What the operator observed of a Subscription.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The subscription's id in the portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_id: Option<String>,
    /// Licences the portal holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    /// Licences users hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned: Option<i64>,
    /// Licences free for new users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free: Option<i64>,
    /// The portal's refusal of a generation's spec, kept until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Ready, Reconciling and Stalled (kstatus).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

// --- User --------------------------------------------------------------------------------------

fn yes() -> bool {
    true
}

/// An end user of the voice service.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "access.portal.dev",
    version = "v1alpha1",
    kind = "User",
    namespaced,
    status = "UserStatus",
    shortname = "puser",
    category = "portal",
    doc = "An end user of the voice service: one licence, numbers, permissions, language and time zone; invited at once or kept prepared. Deleting a User deletes the portal user, which cannot be undone.",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.accountRef.name"}"#,
    printcolumn = r#"{"name":"User ID","type":"string","jsonPath":".spec.userId"}"#,
    printcolumn = r#"{"name":"Licence","type":"string","jsonPath":".spec.licenseType"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.userId == oldSelf.userId").message("userId is immutable: it is the login; create a new User"))]
#[x_kube(validation = kube::core::Rule::new("self.accountRef == oldSelf.accountRef").message("accountRef is immutable"))]
#[x_kube(validation = kube::core::Rule::new("self.invite || !oldSelf.invite").message("invite cannot go back to false: the invitation was sent"))]
#[x_kube(validation = kube::core::Rule::new("self.resendActivation >= oldSelf.resendActivation").message("resendActivation only counts up"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.linkedNumber) || has(self.landlineNumber)").message("linkedNumber is the mobile number linked to the landline: set landlineNumber too"))]
#[x_kube(validation = kube::core::Rule::new("!self.mex || has(self.linkedNumber)").message("mex works on the linked number: set linkedNumber too"))]
pub struct UserSpec {
    /// The Account the user belongs to; it must list this namespace in spec.namespaces.
    pub account_ref: AccountRef,
    /// The login: an email address or a mobile number in E.164 form (+ and the country code).
    /// Unique across users, account managers and admins of the portal.
    #[x_kube(validation = kube::core::Rule::new(USER_ID_RULE).message("userId must be an email address or a mobile number such as +447700900123"))]
    #[schemars(length(min = 3, max = 254))]
    pub user_id: String,
    /// First name.
    #[schemars(length(min = 1, max = 100))]
    pub first_name: String,
    /// Last name.
    #[schemars(length(min = 1, max = 100))]
    pub last_name: String,
    /// Extra information (department, jobTitle, …): up to 20 entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 20))]
    pub extra: BTreeMap<String, String>,
    /// The licence the user takes from the account's Subscription of this type.
    pub license_type: LicenseType,
    /// Mobile number (E.164).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\+[1-9][0-9 ().-]{6,24}$"))]
    pub mobile_number: Option<String>,
    /// Landline number (E.164).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\+[1-9][0-9 ().-]{6,24}$"))]
    pub landline_number: Option<String>,
    /// The mobile number linked to the landline (E.164).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\+[1-9][0-9 ().-]{6,24}$"))]
    pub linked_number: Option<String>,
    /// Mobile extension (mex) on the linked number.
    #[serde(default)]
    pub mex: bool,
    /// Additional display numbers, e.g. group numbers (E.164).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(regex(pattern = r"^\+[1-9][0-9 ().-]{6,24}$")))]
    pub display_numbers: Vec<String>,
    /// Default country-code prefix, e.g. +44.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\+[1-9][0-9]{0,2}$"))]
    pub country_code: Option<String>,
    /// End-user permissions given directly (roles are the recommended way).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub permissions: Vec<UserPermission>,
    /// Names of UserRoles' roles in the account (their displayName); a role's team makes the
    /// user a member there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub roles: Vec<String>,
    /// Names of teams in the account the user is a member of (besides those its roles give).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub teams: Vec<String>,
    /// en (English, the default) or fr (French): the activation email's language.
    #[serde(default)]
    pub language: Language,
    /// IANA time zone, e.g. Europe/London.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// true (the default): send the activation email now. false: keep the user prepared; set
    /// true later to send the invitation.
    #[serde(default = "yes")]
    pub invite: bool,
    /// Turn the user off (they keep their licence) or, set back to false, on again.
    #[serde(default)]
    pub disabled: bool,
    /// Raise by one to send a new activation email with a new temporary password.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub resend_activation: i32,
}

/// The user ID rule: an email shape or an E.164 number.
const USER_ID_RULE: &str =
    r"self.matches('^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$') || self.matches('^\\+[1-9][0-9 ().-]{6,24}$')";

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum UserPhase {
    Prepared,
    Invited,
    ActivationExpired,
    Active,
    Disabled,
}

/// The licence the user holds, or why not.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LicenseStatus {
    /// The licence type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_type: Option<String>,
    /// Whether the user holds one.
    pub assigned: bool,
    /// Why not, when not (e.g. all of the Standard subscription's licences are assigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One effective permission or team, with where it comes from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WithOrigins {
    /// The permission or team.
    pub name: String,
    /// Where it comes from: direct, or a role.
    pub origins: Vec<String>,
}

/// What the operator observed of a User. No password ever appears here.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Prepared, Invited, ActivationExpired, Active or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<UserPhase>,
    /// The user's id in the portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_id: Option<String>,
    /// The licence held, or why none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<LicenseStatus>,
    /// When the current temporary password stops working (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_expires_at: Option<String>,
    /// Effective end-user permissions with their origins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<WithOrigins>,
    /// Effective teams with their origins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<WithOrigins>,
    /// The resendActivation value last acted on.
    #[serde(default)]
    pub observed_resend_activation: i32,
    /// The portal's refusal of a generation's spec, kept until the spec changes (a licence
    /// shortage is retried once a licence is free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Ready, Reconciling and Stalled (kstatus).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

// --- UserRole ----------------------------------------------------------------------------------

/// A role end users hold: permissions, the team it belongs to and what its holders may do there.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "access.portal.dev",
    version = "v1alpha1",
    kind = "UserRole",
    namespaced,
    status = "UserRoleStatus",
    shortname = "prole",
    category = "portal",
    doc = "A user role of the voice service (not a Kubernetes RBAC role): end-user permissions, the team it automatically belongs to, and team permissions there. Deleting it removes it from every user and the team memberships that came only from it.",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.accountRef.name"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Team","type":"string","jsonPath":".spec.team"}"#,
    printcolumn = r#"{"name":"Holders","type":"integer","jsonPath":".status.holderCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.accountRef == oldSelf.accountRef").message("accountRef is immutable"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.teamPermissions) || size(self.teamPermissions) == 0 || has(self.team)").message("teamPermissions apply in the role's team: set team too"))]
pub struct UserRoleSpec {
    /// The Account the role belongs to; it must list this namespace in spec.namespaces.
    pub account_ref: AccountRef,
    /// The role's name in the portal (unique in the account), e.g. Telephony Administrator.
    /// Users and Teams refer to the role by this name.
    #[schemars(length(min = 1, max = 100))]
    pub display_name: String,
    /// End-user permissions the role gives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub permissions: Vec<UserPermission>,
    /// The name of the team the role automatically belongs to: its holders are members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub team: Option<String>,
    /// What the role's holders may do in its team.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub team_permissions: Vec<crate::domain::TeamPermission>,
}

/// What the operator observed of a UserRole.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRoleStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The role's id in the portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_id: Option<String>,
    /// The user IDs holding the role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<String>,
    /// How many users hold the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_count: Option<i64>,
    /// The portal's refusal of a generation's spec, kept until the spec changes (a team not
    /// there yet is retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Ready, Reconciling and Stalled (kstatus).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

// --- Team --------------------------------------------------------------------------------------

/// A team's channel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamChannel {
    /// Unique in the team.
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// Public or Private.
    pub visibility: crate::api::ChannelVisibility,
}

/// A small image shown for the team.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamAvatar {
    /// image/png or image/jpeg.
    #[schemars(regex(pattern = r"^image/(png|jpeg)$"))]
    pub media_type: String,
    /// The image in base64, at most 256 KiB decoded.
    #[schemars(length(max = 350_000))]
    pub data: String,
}

/// A team of end users.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "access.portal.dev",
    version = "v1alpha1",
    kind = "Team",
    namespaced,
    status = "TeamStatus",
    shortname = "pteam",
    category = "portal",
    doc = "A team of end users (usually a department): members listed here, the user roles whose holders are members, channels and an avatar; a disabled team is invisible to its members.",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.accountRef.name"}"#,
    printcolumn = r#"{"name":"Team","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.memberCount"}"#,
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.accountRef == oldSelf.accountRef").message("accountRef is immutable"))]
pub struct TeamSpec {
    /// The Account the team belongs to; it must list this namespace in spec.namespaces.
    pub account_ref: AccountRef,
    /// The team's name in the portal (unique in the account); Users and UserRoles refer to the
    /// team by this name.
    #[schemars(length(min = 1, max = 100))]
    pub display_name: String,
    /// User IDs of users of the account who are members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 5000))]
    pub members: Vec<String>,
    /// Names of user roles whose holders are members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub roles: Vec<String>,
    /// Public and private channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub channels: Vec<TeamChannel>,
    /// The team's avatar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<TeamAvatar>,
    /// A disabled team is invisible to its members and can be enabled again.
    #[serde(default)]
    pub disabled: bool,
}

/// What the operator observed of a Team.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The team's id in the portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_id: Option<String>,
    /// Every member with the origins of its membership (listed here, listing the team, a role).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<WithOrigins>,
    /// How many members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i64>,
    /// The portal's refusal of a generation's spec, kept until the spec changes (a member or
    /// role not there yet is retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Ready, Reconciling and Stalled (kstatus).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    /// E.164 as people write it: `+`, then digits with spaces, dots, hyphens or parentheses.
    const E164_PATTERN: &str = r"^\+[1-9][0-9 ().-]{6,24}$";

    #[test]
    fn every_number_field_carries_the_same_pattern_as_the_user_id_rule() {
        // schemars attributes need literals: this keeps the four copies and the CEL rule in step.
        let crd = serde_json::to_string(&<super::User as kube::CustomResourceExt>::crd()).unwrap();
        let escaped = serde_json::to_string(E164_PATTERN).unwrap();
        let escaped = escaped.trim_matches('"');
        assert_eq!(
            crd.matches(escaped).count(),
            4,
            "mobile, landline, linked and display numbers"
        );
        assert!(super::USER_ID_RULE.contains(&E164_PATTERN.replace('\\', "\\\\")));
    }
}
