//! RFC 9457 problem details: the one error shape of the portal API.
//!
//! Every refusal has a stable `type` (a URI under [`TYPE_BASE`]) that clients match on, a short
//! `title`, and a `detail` that tells a person what to do. Nothing a client sends can produce a
//! 500: storage faults are the only `internal` problems, and their detail never echoes input.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::domain::{GrantError, LastOwner, TreeError, ValidationError};

/// Prefix of every problem `type`.
pub const TYPE_BASE: &str = "https://portal.dev/problems/";

/// The causes a client can tell apart. The string is the last segment of the problem `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Unauthenticated,
    Forbidden,
    NotFound,
    SubjectNotFound,
    MalformedRequest,
    ValidationFailed,
    UnknownRole,
    RoleNotAssignable,
    EscalationDenied,
    LastOwner,
    EmailConflict,
    ExternalIdConflict,
    ExternalRefConflict,
    AccountTree,
    AccountNotEmpty,
    PreconditionFailed,
    PreconditionRequired,
    IdempotencyKeyReused,
    InvitationExpired,
    InvitationNotPending,
    InvitationAlreadyUsed,
    WrongTenant,
    IdpRefused,
    InvalidToken,
    ServiceUnavailable,
    TooManyRequests,
    PayloadTooLarge,
    UnsupportedMediaType,
    AlreadyActive,
    ActivationExpired,
    InvalidCredentials,
    Internal,
}

impl ProblemKind {
    pub const fn slug(self) -> &'static str {
        match self {
            ProblemKind::Unauthenticated => "unauthenticated",
            ProblemKind::Forbidden => "forbidden",
            ProblemKind::NotFound => "not-found",
            ProblemKind::SubjectNotFound => "subject-not-found",
            ProblemKind::MalformedRequest => "malformed-request",
            ProblemKind::ValidationFailed => "validation-failed",
            ProblemKind::UnknownRole => "unknown-role",
            ProblemKind::RoleNotAssignable => "role-not-assignable",
            ProblemKind::EscalationDenied => "escalation-denied",
            ProblemKind::LastOwner => "last-owner",
            ProblemKind::EmailConflict => "email-conflict",
            ProblemKind::ExternalIdConflict => "external-id-conflict",
            ProblemKind::ExternalRefConflict => "external-ref-conflict",
            ProblemKind::AccountTree => "account-tree",
            ProblemKind::AccountNotEmpty => "account-not-empty",
            ProblemKind::PreconditionFailed => "precondition-failed",
            ProblemKind::PreconditionRequired => "precondition-required",
            ProblemKind::IdempotencyKeyReused => "idempotency-key-reused",
            ProblemKind::InvitationExpired => "invitation-expired",
            ProblemKind::InvitationNotPending => "invitation-not-pending",
            ProblemKind::InvitationAlreadyUsed => "invitation-already-used",
            ProblemKind::WrongTenant => "wrong-tenant",
            ProblemKind::IdpRefused => "idp-refused",
            ProblemKind::ServiceUnavailable => "service-unavailable",
            ProblemKind::InvalidToken => "invalid-token",
            ProblemKind::TooManyRequests => "too-many-requests",
            ProblemKind::PayloadTooLarge => "payload-too-large",
            ProblemKind::UnsupportedMediaType => "unsupported-media-type",
            ProblemKind::AlreadyActive => "already-active",
            ProblemKind::ActivationExpired => "activation-expired",
            ProblemKind::InvalidCredentials => "invalid-credentials",
            ProblemKind::Internal => "internal",
        }
    }

    pub const fn status(self) -> StatusCode {
        match self {
            ProblemKind::Unauthenticated | ProblemKind::InvalidToken => StatusCode::UNAUTHORIZED,
            ProblemKind::Forbidden
            | ProblemKind::EscalationDenied
            | ProblemKind::WrongTenant
            | ProblemKind::IdpRefused => StatusCode::FORBIDDEN,
            ProblemKind::NotFound | ProblemKind::SubjectNotFound => StatusCode::NOT_FOUND,
            ProblemKind::MalformedRequest => StatusCode::BAD_REQUEST,
            ProblemKind::ValidationFailed
            | ProblemKind::UnknownRole
            | ProblemKind::RoleNotAssignable
            | ProblemKind::AccountTree
            | ProblemKind::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemKind::LastOwner
            | ProblemKind::EmailConflict
            | ProblemKind::ExternalIdConflict
            | ProblemKind::ExternalRefConflict
            | ProblemKind::AccountNotEmpty
            | ProblemKind::InvitationNotPending
            | ProblemKind::InvitationAlreadyUsed => StatusCode::CONFLICT,
            ProblemKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ProblemKind::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ProblemKind::InvitationExpired => StatusCode::GONE,
            ProblemKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ProblemKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemKind::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProblemKind::AlreadyActive => StatusCode::CONFLICT,
            ProblemKind::ActivationExpired => StatusCode::GONE,
            ProblemKind::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ProblemKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    const fn title(self) -> &'static str {
        match self {
            ProblemKind::Unauthenticated => "Authentication required",
            ProblemKind::Forbidden => "Not allowed",
            ProblemKind::NotFound => "Not found",
            ProblemKind::SubjectNotFound => "No such admin",
            ProblemKind::MalformedRequest => "Malformed request",
            ProblemKind::ValidationFailed => "Invalid value",
            ProblemKind::UnknownRole => "Unknown role",
            ProblemKind::RoleNotAssignable => "Role cannot be assigned here",
            ProblemKind::EscalationDenied => "Escalation denied",
            ProblemKind::LastOwner => "Account would have no owner",
            ProblemKind::EmailConflict => "Email already in use",
            ProblemKind::ExternalIdConflict => "External id already in use",
            ProblemKind::ExternalRefConflict => "External reference already in use",
            ProblemKind::AccountTree => "Invalid account tree",
            ProblemKind::AccountNotEmpty => "Account is not empty",
            ProblemKind::PreconditionFailed => "Precondition failed",
            ProblemKind::PreconditionRequired => "Precondition required",
            ProblemKind::IdempotencyKeyReused => "Idempotency key reused with another request",
            ProblemKind::InvitationExpired => "Invitation expired",
            ProblemKind::InvitationNotPending => "Invitation is not pending",
            ProblemKind::InvitationAlreadyUsed => "Invitation already used",
            ProblemKind::WrongTenant => "Signed in with the wrong tenant",
            ProblemKind::IdpRefused => "The identity provider refused the sign-in",
            ProblemKind::ServiceUnavailable => "Service unavailable",
            ProblemKind::InvalidToken => "Invalid token",
            ProblemKind::TooManyRequests => "Too many requests",
            ProblemKind::PayloadTooLarge => "Request body too large",
            ProblemKind::UnsupportedMediaType => "Unsupported media type",
            ProblemKind::AlreadyActive => "Already active",
            ProblemKind::ActivationExpired => "Activation expired",
            ProblemKind::InvalidCredentials => "Invalid credentials",
            ProblemKind::Internal => "Internal error",
        }
    }
}

/// A problem details document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// JSON pointer of the offending field, when one field is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An API failure: what kind, what to tell the client, and (for 429/503) when to come back.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ProblemKind,
    pub detail: String,
    pub field: Option<String>,
    pub retry_after_seconds: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        ApiError {
            kind,
            detail: detail.into(),
            field: None,
            retry_after_seconds: None,
        }
    }

    pub fn at(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        ApiError::new(
            ProblemKind::NotFound,
            format!("{what} {id} does not exist or is not visible to you"),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(ProblemKind::Forbidden, detail)
    }

    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        ApiError::new(ProblemKind::ValidationFailed, detail).at(field)
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        ApiError::new(
            ProblemKind::Internal,
            format!("{context} failed on the server; nothing was changed, retry later"),
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_uri: format!("{TYPE_BASE}{}", self.kind.slug()),
            title: self.kind.title().to_owned(),
            status: self.kind.status().as_u16(),
            detail: self.detail.clone(),
            field: self.field.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.slug(), self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).expect("problems serialize");
        let mut response = (self.kind.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.kind == ProblemKind::PayloadTooLarge {
            // The rest of the body was never read, so the connection cannot carry another
            // request; saying so keeps clients from reusing it and failing their next call.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        let field = match &error {
            ValidationError::Email { .. } => "/email",
            ValidationError::Name { field, .. } => field,
            ValidationError::Language { .. } => "/language",
            ValidationError::Lifetime { .. } => "/expiresAfter",
        };
        let field = if field.starts_with('/') {
            field.to_owned()
        } else {
            format!("/{field}")
        };
        ApiError::new(ProblemKind::ValidationFailed, error.to_string()).at(&field)
    }
}

impl From<GrantError> for ApiError {
    fn from(error: GrantError) -> Self {
        let kind = match &error {
            GrantError::UnknownAccount(_) => ProblemKind::NotFound,
            GrantError::NoRoles => ProblemKind::ValidationFailed,
            GrantError::MissingPermission { .. } => ProblemKind::Forbidden,
            GrantError::NotAssignable { .. } => ProblemKind::RoleNotAssignable,
            GrantError::Escalation { .. } => ProblemKind::EscalationDenied,
        };
        let field = matches!(
            error,
            GrantError::NoRoles | GrantError::NotAssignable { .. } | GrantError::Escalation { .. }
        );
        // The domain names the granter by id; the caller is the granter, so speak to them.
        let detail = match &error {
            GrantError::Escalation { granter, .. }
            | GrantError::MissingPermission { granter, .. } => {
                let text = error.to_string();
                let text = text.replacen(
                    &format!("{granter} may only grant roles it holds itself; it does not hold"),
                    "you may only grant roles you hold yourself; you do not hold",
                    1,
                );
                text.replacen(&format!("{granter} lacks"), "you lack", 1)
            }
            _ => error.to_string(),
        };
        let api = ApiError::new(kind, detail);
        if field { api.at("/roles") } else { api }
    }
}

impl From<LastOwner> for ApiError {
    fn from(error: LastOwner) -> Self {
        ApiError::new(ProblemKind::LastOwner, error.to_string())
    }
}

impl From<TreeError> for ApiError {
    fn from(error: TreeError) -> Self {
        ApiError::new(ProblemKind::AccountTree, error.to_string()).at("/parentId")
    }
}
