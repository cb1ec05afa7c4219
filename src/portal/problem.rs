//! RFC 9457 problem details: the one error shape of the portal API.
//!
//! Every refusal has a stable `type` (a [`ProblemType`] of the API contract) that clients match on, a short
//! `title`, and a `detail` that tells a person what to do. Nothing a client sends can produce a
//! 500: storage faults are the only `internal` problems, and their detail never echoes input.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use crate::api::{Problem, ProblemType};
use crate::domain::{GrantError, LastOwner, TreeError, ValidationError};

/// An API failure: what kind, what to tell the client, and (for 429/503) when to come back.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ProblemType,
    pub detail: String,
    pub field: Option<String>,
    pub retry_after_seconds: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
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
            ProblemType::NotFound,
            format!("{what} {id} does not exist or is not visible to you"),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(ProblemType::Forbidden, detail)
    }

    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        ApiError::new(ProblemType::ValidationFailed, detail).at(field)
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        ApiError::new(
            ProblemType::Internal,
            format!("{context} failed on the server; nothing was changed, retry later"),
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            field: self.field.clone(),
            ..Problem::new(self.kind, self.detail.clone())
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.kind == ProblemType::PayloadTooLarge {
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
            ValidationError::Phone { field, .. } => field,
            ValidationError::UserId { .. } => "/userId",
            ValidationError::TimeZone { .. } => "/timeZone",
            ValidationError::CountryCode { .. } => "/countryCode",
        };
        let field = if field.starts_with('/') {
            field.to_owned()
        } else {
            format!("/{field}")
        };
        ApiError::new(ProblemType::ValidationFailed, error.to_string()).at(&field)
    }
}

impl From<GrantError> for ApiError {
    fn from(error: GrantError) -> Self {
        let kind = match &error {
            GrantError::UnknownAccount(_) => ProblemType::NotFound,
            GrantError::NoRoles => ProblemType::ValidationFailed,
            GrantError::MissingPermission { .. } => ProblemType::Forbidden,
            GrantError::NotAssignable { .. } => ProblemType::RoleNotAssignable,
            GrantError::Escalation { .. } => ProblemType::EscalationDenied,
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
        ApiError::new(ProblemType::LastOwner, error.to_string())
    }
}

impl From<TreeError> for ApiError {
    fn from(error: TreeError) -> Self {
        ApiError::new(ProblemType::AccountTree, error.to_string()).at("/parentId")
    }
}
