//! Admin invitations: by email or by share link, pending until accepted, expired or revoked.

use serde::{Deserialize, Serialize};

use crate::domain::Role;

// How the invitee receives the invitation: the portal emails the link, or returns it once to
// be shared another way (seed 002's "share by link"). One type for the portal API and the
// AdminInvitation CRD; plain comments keep the CRD schema a bare `enum`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Delivery {
    #[default]
    Email,
    Link,
}

impl Delivery {
    pub const fn as_str(self) -> &'static str {
        match self {
            Delivery::Email => "Email",
            Delivery::Link => "Link",
        }
    }
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum InvitationState {
    Pending,
    Accepted,
    Expired,
    Revoked,
}

impl InvitationState {
    pub const fn as_str(self) -> &'static str {
        match self {
            InvitationState::Pending => "Pending",
            InvitationState::Accepted => "Accepted",
            InvitationState::Expired => "Expired",
            InvitationState::Revoked => "Revoked",
        }
    }
}

/// The last failed attempt to accept an invitation: why, and what the invitee should do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceptFailure {
    pub reason: String,
    pub message: String,
    pub at: String,
}

/// An invitation on the wire. `link` is present only in the response that issued its token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    pub id: String,
    pub account_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub roles: Vec<Role>,
    pub delivery: Delivery,
    pub state: InvitationState,
    pub external_ref: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: String,
    #[schemars(extend("format" = "date-time"))]
    pub accepted_at: Option<String>,
    pub accepted_by: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub revoked_at: Option<String>,
    /// The last failed attempt to accept, with the remedy (wrong tenant, identity provider refusal).
    pub last_failure: Option<AcceptFailure>,
    pub sends: i64,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// In a replayed answer (same Idempotency-Key) instead of `link`: how to get a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_redacted: Option<String>,
}

/// `POST /v1/accounts/{id}/invitations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInvitation {
    #[schemars(email, length(max = 254))]
    pub email: String,
    #[schemars(length(min = 1, max = 100))]
    pub first_name: String,
    #[schemars(length(min = 1, max = 100))]
    pub last_name: String,
    /// Default: `[AccountOwner]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub roles: Option<Vec<Role>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// A duration from 1h to 96h, e.g. `48h` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
}

/// `PATCH /v1/invitations/{id}`: a pending invitation's roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateInvitation {
    #[schemars(length(min = 1))]
    pub roles: Vec<Role>,
}

/// `POST /v1/invitations/accept`: the invitee proves who they are with an ID token from the
/// configured OpenID Connect issuer. When sign-in failed at the identity provider, the
/// acceptance page reports its error instead (`idpError`), so the failure and its remedy are
/// recorded on the invitation where administrators (and the operator) see them.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptInvitation {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_error: Option<String>,
}

/// The body of the development sign-in (`--dev-login`): who to sign in as, instead of an ID token.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevAccept {
    pub token: String,
    /// The identity to accept as (its email).
    pub email: String,
    /// The Microsoft 365 tenant of that identity; the account's tenant when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub invitation: InvitationView,
    pub admin_id: String,
}
