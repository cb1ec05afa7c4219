//! The custom resources of `access.portal.dev/v1alpha1` (category `portal`): types only, no
//! I/O. `portal-operator crds` prints their CustomResourceDefinitions; the committed copies in
//! `crds/` are checked against these types by a test.
//!
//! Status follows kstatus: `observedGeneration` and `Ready` / `Reconciling` / `Stalled`
//! conditions, which Flux and `kubectl wait` read as they are; Argo CD reads them through the
//! health check in `docs/argocd/health.lua` (it has no generic health for custom resources).

pub mod admission;
mod service;

pub use service::{
    LicenseStatus, Subscription, SubscriptionSpec, SubscriptionStatus, Team, TeamAvatar,
    TeamChannel, TeamSpec, TeamStatus, User, UserPhase, UserRole, UserRoleSpec, UserRoleStatus,
    UserSpec, UserStatus, WithOrigins,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::domain::Role;

/// The API group of every kind here.
pub const GROUP: &str = "access.portal.dev";

/// A practical email shape; the operator checks the full rules before anything is sent.
const EMAIL_RULE: &str = r"self.matches('^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$')";

/// A reference to an Account object by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct AccountRef {
    /// Name of the Account object (Accounts are cluster-scoped).
    pub name: String,
}

// --- Account ---------------------------------------------------------------------------------

/// An account of the portal's partner → client tree.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "access.portal.dev",
    version = "v1alpha1",
    kind = "Account",
    status = "AccountStatus",
    shortname = "pacct",
    category = "portal",
    doc = "A partner or client account of the admin portal, created or adopted by the operator.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Parent","type":"string","jsonPath":".spec.parentRef.name"}"#,
    printcolumn = r#"{"name":"Portal ID","type":"string","jsonPath":".status.portalId"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.type == oldSelf.type").message("type is immutable"))]
#[x_kube(validation = kube::core::Rule::new("has(self.parentRef) == has(oldSelf.parentRef) && (!has(self.parentRef) || self.parentRef == oldSelf.parentRef)").message("parentRef is immutable: accounts do not move in the tree"))]
pub struct AccountSpec {
    /// The name shown in the portal.
    #[schemars(length(min = 1, max = 200))]
    pub display_name: String,
    /// Partner (a "Native Partner", which has client accounts) or Client.
    #[serde(rename = "type")]
    pub account_type: AccountType,
    /// The parent Account; absent for a top-level account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ref: Option<AccountRef>,
    /// The Microsoft 365 tenant (a GUID) whose users may accept invitations to this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    pub tenant_id: Option<String>,
    /// A client with a sub-contract may make financial and contractual changes itself; the
    /// subscription roles function only on partners and on such clients.
    #[serde(default)]
    pub sub_contract: bool,
    /// The namespaces whose AdminInvitations, RoleBindings and AccountManagers may reference
    /// this account. Others are Stalled with reason AccountNotDelegated.
    #[serde(default)]
    #[schemars(length(max = 256), inner(length(max = 63)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(n, n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message("each entry must be a namespace name"))]
    pub namespaces: Vec<String>,
    /// What deleting this object does in the portal: Orphan (the default) leaves the account;
    /// Delete removes it, when it has no child accounts.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Adopt the portal account with this external id instead of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub external_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum AccountType {
    Partner,
    Client,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    #[default]
    Orphan,
    Delete,
}

/// What the operator observed of an Account.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The account's id in the portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_id: Option<String>,
    /// The account's place in the tree, top-level first (display names joined by " / ").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The portal's refusal of a generation's spec, kept until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Ready, Reconciling and Stalled (kstatus).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A spec the portal refused: not sent again until the spec changes (a new generation).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// The generation whose spec was refused.
    pub generation: i64,
    /// The portal's problem type as a reason, e.g. EmailConflict.
    pub reason: String,
    /// What was refused and the portal's words.
    pub message: String,
}

// --- AdminInvitation -------------------------------------------------------------------------

fn default_roles() -> Vec<Role> {
    vec![Role::DEFAULT]
}

fn default_expires_after() -> String {
    "48h".into()
}

fn default_max_reissues() -> i32 {
    3
}

/// An invitation for a person to administer an account.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "access.portal.dev",
    version = "v1alpha1",
    kind = "AdminInvitation",
    namespaced,
    status = "AdminInvitationStatus",
    shortname = "pinv",
    category = "portal",
    doc = "An invitation for a person to administer a portal account, by email or by share link.",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.accountRef.name"}"#,
    printcolumn = r#"{"name":"Email","type":"string","jsonPath":".spec.email"}"#,
    printcolumn = r#"{"name":"Roles","type":"string","jsonPath":".spec.roles"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","description":"When the pending invitation expires (UTC)","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.email == oldSelf.email").message("email is immutable; create a new AdminInvitation"))]
#[x_kube(validation = kube::core::Rule::new("self.accountRef == oldSelf.accountRef").message("accountRef is immutable; create a new AdminInvitation"))]
#[x_kube(validation = kube::core::Rule::new("duration(self.expiresAfter) >= duration('1h') && duration(self.expiresAfter) <= duration('96h')").message("expiresAfter must be between 1h and 96h"))]
pub struct AdminInvitationSpec {
    /// The Account to administer; it must list this namespace in spec.namespaces.
    pub account_ref: AccountRef,
    /// Where the invitation is sent. It need not be a Microsoft 365 mailbox: the invitee signs
    /// in with a user of the account's tenant when accepting.
    #[x_kube(validation = kube::core::Rule::new(EMAIL_RULE).message("email must look like name@example.com"))]
    #[schemars(length(min = 3, max = 254))]
    pub email: String,
    /// The invitee's first name.
    #[schemars(length(min = 1, max = 100))]
    pub first_name: String,
    /// The invitee's last name.
    #[schemars(length(min = 1, max = 100))]
    pub last_name: String,
    /// The admin roles the invitee gets on acceptance (default: AccountOwner).
    #[serde(default = "default_roles")]
    #[schemars(length(min = 1))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub roles: Vec<Role>,
    /// Email (the portal sends it) or Link (the link is written to a Secret owned by this object).
    #[serde(default)]
    pub delivery: Delivery,
    /// How long the invitation stays open: a duration from 1h to 96h (default 48h).
    #[serde(default = "default_expires_after")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"), length(max = 32))]
    pub expires_after: String,
    /// Never (the default: an expired invitation stays Expired) or OnExpiry (invite again).
    #[serde(default)]
    pub reissue: Reissue,
    /// How many times OnExpiry may invite again.
    #[serde(default = "default_max_reissues")]
    #[schemars(range(min = 0, max = 20))]
    pub max_reissues: i32,
}

/// The portal API's delivery type, so a spec's choice goes on the wire as it is.
pub use crate::api::Delivery;

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Reissue {
    #[default]
    Never,
    OnExpiry,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum AdminInvitationPhase {
    Pending,
    Accepted,
    Expired,
    Revoked,
    Failed,
}

/// A reference to a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct SecretRef {
    /// Name of the Secret.
    pub name: String,
}

/// What the operator observed of an AdminInvitation. The invitation link is never here: with
/// Link delivery it is in the Secret named by linkSecretRef.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminInvitationStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Accepted, Expired, Revoked or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AdminInvitationPhase>,
    /// The invitation's id in the portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_id: Option<String>,
    /// When the current invitation was sent (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// When it expires unless accepted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When it was accepted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<String>,
    /// The portal admin id the acceptance created or extended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
    /// How many invitations were issued for this object (1 plus reissues).
    #[serde(default)]
    pub attempts: i32,
    /// With Link delivery, the Secret (owned by this object) holding the link under key `link`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_secret_ref: Option<SecretRef>,
    /// The portal's refusal of a generation's spec, kept until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Ready, Reconciling and Stalled (kstatus); refusals carry the portal's reason and remedy.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

// --- RoleBinding -----------------------------------------------------------------------------

/// Admin roles for people on an account.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "access.portal.dev",
    version = "v1alpha1",
    kind = "RoleBinding",
    namespaced,
    status = "RoleBindingStatus",
    shortname = "prb",
    category = "portal",
    doc = "Grants admin roles on a portal account to admins, waiting for those who have not accepted their invitation yet.",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.accountRef.name"}"#,
    printcolumn = r#"{"name":"Roles","type":"string","jsonPath":".spec.roles"}"#,
    printcolumn = r#"{"name":"Scope","type":"string","jsonPath":".spec.scope"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.accountRef == oldSelf.accountRef").message("accountRef is immutable; create a new RoleBinding"))]
pub struct RoleBindingSpec {
    /// The Account the roles apply to; it must list this namespace in spec.namespaces.
    pub account_ref: AccountRef,
    /// Who gets the roles: at least one.
    #[schemars(length(min = 1))]
    pub subjects: Vec<Subject>,
    /// The roles granted to every subject.
    #[schemars(length(min = 1))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub roles: Vec<Role>,
    /// AccountAndDescendants (the default: the roles apply to every account below too) or
    /// AccountOnly.
    #[serde(default)]
    pub scope: Scope,
}

/// One subject: an admin by email, or an AccountManager object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.adminEmail) != has(self.accountManagerRef)").message("set exactly one of adminEmail and accountManagerRef"))]
pub struct Subject {
    /// An admin, by the email they were invited with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<String>,
    /// An AccountManager object in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_manager_ref: Option<AccountManagerRef>,
}

/// A reference to an AccountManager in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct AccountManagerRef {
    /// Name of the AccountManager object.
    pub name: String,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Scope {
    #[default]
    AccountAndDescendants,
    AccountOnly,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum GrantState {
    /// The portal holds this binding's grants for the subject.
    Granted,
    /// The subject is not an admin yet (its invitation is pending); granted once it accepts.
    WaitingForSubject,
    /// The portal refused (escalation, last owner, role not assignable); see the message.
    Refused,
}

/// How one subject stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectStatus {
    /// The subject, as written in the spec (an email or AccountManager/name).
    pub subject: String,
    pub state: GrantState,
    /// Why, for WaitingForSubject and Refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A role the subjects hold on the account because of this binding, and how.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveRole {
    pub role: Role,
    /// Granted (named in spec.roles) or Implied (by another role, e.g. AccountOwner implies
    /// ServiceContributor).
    pub origin: String,
    /// The chain that gives it, e.g. "SubscriptionContributor → AccountOwner".
    pub via: String,
}

/// What the operator observed of a RoleBinding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleBindingStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The portal id of the account the grants were made on (what cleanup revokes on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_portal_id: Option<String>,
    /// One entry per subject.
    #[serde(default)]
    pub subjects: Vec<SubjectStatus>,
    /// The roles in effect on the account itself, with their origin.
    #[serde(default)]
    pub effective_roles: Vec<EffectiveRole>,
    /// The portal's refusal of a generation's spec, kept until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Ready, Reconciling and Stalled (kstatus).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

// --- AccountManager --------------------------------------------------------------------------

/// A portal user with account-wide access and no voice service (seed 004).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "access.portal.dev",
    version = "v1alpha1",
    kind = "AccountManager",
    namespaced,
    status = "AccountManagerStatus",
    shortname = "pam",
    category = "portal",
    doc = "An account manager: account-wide access without voice service, activated with a temporary password sent by email.",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.accountRef.name"}"#,
    printcolumn = r#"{"name":"Email","type":"string","jsonPath":".spec.email"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.email == oldSelf.email").message("email is immutable; create a new AccountManager"))]
#[x_kube(validation = kube::core::Rule::new("self.accountRef == oldSelf.accountRef").message("accountRef is immutable"))]
#[x_kube(validation = kube::core::Rule::new("self.resendActivation >= oldSelf.resendActivation").message("resendActivation only counts up"))]
pub struct AccountManagerSpec {
    /// The Account managed; it must list this namespace in spec.namespaces.
    pub account_ref: AccountRef,
    /// First name.
    #[schemars(length(min = 1, max = 100))]
    pub first_name: String,
    /// Last name.
    #[schemars(length(min = 1, max = 100))]
    pub last_name: String,
    /// The username; unique across account managers, admins and end users of the portal.
    #[x_kube(validation = kube::core::Rule::new(EMAIL_RULE).message("email must look like name@example.com"))]
    #[schemars(length(min = 3, max = 254))]
    pub email: String,
    /// en (English, the default) or fr (French): the language of the activation email.
    #[serde(default)]
    pub language: crate::domain::Language,
    /// The branded portal this account manager uses, when the portal has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branding_domain: Option<String>,
    /// Raise by one to send a new activation email with a new temporary password.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub resend_activation: i32,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum AccountManagerPhase {
    ActivationPending,
    Active,
    ActivationExpired,
}

/// What the operator observed of an AccountManager. No password ever appears here.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountManagerStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// ActivationPending, Active or ActivationExpired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AccountManagerPhase>,
    /// The account manager's id in the portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_id: Option<String>,
    /// When the current temporary password stops working (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_expires_at: Option<String>,
    /// The resendActivation value last acted on.
    #[serde(default)]
    pub observed_resend_activation: i32,
    /// The portal's refusal of a generation's spec, kept until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Ready, Reconciling and Stalled (kstatus).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Every CustomResourceDefinition, in a stable order, with the file name it is committed under.
pub fn definitions() -> Vec<(
    &'static str,
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
)> {
    use kube::CustomResourceExt;
    vec![
        ("account.yaml", Account::crd()),
        ("admininvitation.yaml", AdminInvitation::crd()),
        ("rolebinding.yaml", RoleBinding::crd()),
        ("accountmanager.yaml", AccountManager::crd()),
        ("subscription.yaml", Subscription::crd()),
        ("userrole.yaml", UserRole::crd()),
        ("team.yaml", Team::crd()),
        ("user.yaml", User::crd()),
    ]
}

/// One CRD as the YAML committed in `crds/`.
pub fn to_yaml(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    let mut text = String::from("# Generated by `portal-operator crds`; do not edit.\n");
    text.push_str(&serde_saphyr::to_string(crd).expect("CRDs serialize to YAML"));
    text
}
