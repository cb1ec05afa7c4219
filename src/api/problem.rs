//! RFC 9457 problem details: the one error shape of the portal API, and the causes a client can
//! tell apart ([`ProblemType`]). The `type` of a problem is a URI under [`TYPE_BASE`] whose last
//! segment is the cause's slug.

use serde::{Deserialize, Serialize};

/// Prefix of every problem `type`.
pub const TYPE_BASE: &str = "https://portal.dev/problems/";

macro_rules! problem_types {
    ($($variant:ident = $slug:literal, $status:literal, $title:literal;)*) => {
        /// The causes a client can tell apart, each with its HTTP status and title.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $($variant,)*
        }

        impl ProblemType {
            /// Every cause, in the order the API documents them.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)*];

            /// The last segment of the problem `type` URI, e.g. `email-conflict`.
            pub const fn slug(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => $slug,)*
                }
            }

            /// The HTTP status the API answers this cause with.
            pub const fn status(self) -> u16 {
                match self {
                    $(ProblemType::$variant => $status,)*
                }
            }

            /// A short, fixed title.
            pub const fn title(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => $title,)*
                }
            }

            /// The cause a slug names, if it is one of this API's.
            pub fn from_slug(slug: &str) -> Option<ProblemType> {
                match slug {
                    $($slug => Some(ProblemType::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

problem_types! {
    Unauthenticated = "unauthenticated", 401, "Authentication required";
    Forbidden = "forbidden", 403, "Not allowed";
    NotFound = "not-found", 404, "Not found";
    SubjectNotFound = "subject-not-found", 404, "No such admin";
    MalformedRequest = "malformed-request", 400, "Malformed request";
    MethodNotAllowed = "method-not-allowed", 405, "Method not allowed";
    ValidationFailed = "validation-failed", 422, "Invalid value";
    UnknownRole = "unknown-role", 422, "Unknown role";
    RoleNotAssignable = "role-not-assignable", 422, "Role cannot be assigned here";
    EscalationDenied = "escalation-denied", 403, "Escalation denied";
    LastOwner = "last-owner", 409, "Account would have no owner";
    LastPlatformKey = "last-platform-key", 409, "The platform would have no API key";
    EmailConflict = "email-conflict", 409, "Email already in use";
    ExternalIdConflict = "external-id-conflict", 409, "External id already in use";
    ExternalRefConflict = "external-ref-conflict", 409, "External reference already in use";
    AccountTree = "account-tree", 422, "Invalid account tree";
    AccountNotEmpty = "account-not-empty", 409, "Account is not empty";
    PreconditionFailed = "precondition-failed", 412, "Precondition failed";
    PreconditionRequired = "precondition-required", 428, "Precondition required";
    IdempotencyKeyReused = "idempotency-key-reused", 422, "Idempotency key reused with another request";
    InvitationExpired = "invitation-expired", 410, "Invitation expired";
    InvitationNotPending = "invitation-not-pending", 409, "Invitation is not pending";
    InvitationAlreadyUsed = "invitation-already-used", 409, "Invitation already used";
    WrongTenant = "wrong-tenant", 403, "Signed in with the wrong tenant";
    IdpRefused = "idp-refused", 403, "The identity provider refused the sign-in";
    InvalidToken = "invalid-token", 401, "Invalid token";
    ServiceUnavailable = "service-unavailable", 503, "Service unavailable";
    TooManyRequests = "too-many-requests", 429, "Too many requests";
    PayloadTooLarge = "payload-too-large", 413, "Request body too large";
    UnsupportedMediaType = "unsupported-media-type", 415, "Unsupported media type";
    AlreadyActive = "already-active", 409, "Already active";
    ActivationExpired = "activation-expired", 410, "Activation expired";
    InvalidCredentials = "invalid-credentials", 401, "Invalid credentials";
    LicenseExhausted = "license-exhausted", 409, "No licence of this type is free";
    LicenseInUse = "license-in-use", 409, "Licences are assigned";
    SubscriptionExists = "subscription-exists", 409, "The account already has a subscription of this licence type";
    UserIdConflict = "user-id-conflict", 409, "User ID already in use";
    UserNotPrepared = "user-not-prepared", 409, "User is not prepared";
    NameConflict = "name-conflict", 409, "Name already in use in the account";
    UnknownReference = "unknown-reference", 422, "No such user, user role or team in the account";
    Internal = "internal", 500, "Internal error";
}

impl ProblemType {
    /// The full `type` URI.
    pub fn uri(self) -> String {
        format!("{TYPE_BASE}{}", self.slug())
    }

    /// The condition reason this cause becomes on a resource: `email-conflict` →
    /// `EmailConflict`.
    pub fn reason(self) -> String {
        self.slug()
            .split('-')
            .filter(|word| !word.is_empty())
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect()
    }
}

impl std::fmt::Display for ProblemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.slug())
    }
}

/// A problem details document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI under `https://portal.dev/problems/` naming the cause; another server implementing
    /// the API may send types of its own, which a client reads as no known cause.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// JSON pointer of the offending field, when one field is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// The document for `problem_type` with `detail`.
    pub fn new(problem_type: ProblemType, detail: impl Into<String>) -> Problem {
        Problem {
            type_uri: problem_type.uri(),
            title: problem_type.title().to_owned(),
            status: problem_type.status(),
            detail: detail.into(),
            field: None,
        }
    }

    /// The cause, when the `type` is one of this API's.
    pub fn problem_type(&self) -> Option<ProblemType> {
        self.type_uri
            .strip_prefix(TYPE_BASE)
            .and_then(ProblemType::from_slug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_uri() {
        for &problem_type in ProblemType::ALL {
            let problem = Problem::new(problem_type, "why");
            assert_eq!(problem.problem_type(), Some(problem_type));
            assert_eq!(problem.status, problem_type.status());
        }
        let foreign = Problem {
            type_uri: "https://vendor.example/problems/email-conflict".into(),
            ..Problem::new(ProblemType::EmailConflict, "x")
        };
        assert_eq!(foreign.problem_type(), None, "another base is not ours");
    }

    #[test]
    fn reasons_are_camel_case_slugs() {
        assert_eq!(ProblemType::EmailConflict.reason(), "EmailConflict");
        assert_eq!(ProblemType::RoleNotAssignable.reason(), "RoleNotAssignable");
        assert_eq!(ProblemType::IdpRefused.reason(), "IdpRefused");
    }
}
