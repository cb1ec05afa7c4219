//! The portal's admin-access model from the seeds: roles and what they grant, the account tree,
//! access evaluation with explanations, and the input checks every layer shares.
//!
//! Pure code: no Kubernetes, no HTTP, no database, no clock. The portal server, the operator and
//! the CLI all ask it the same question — what may this admin do on this account, and why?

pub mod access;
pub mod permission;
pub mod roles;
pub mod service;
pub mod tree;
pub mod validation;

pub use access::{
    AccessPath, EffectiveAccess, Grant, GrantAction, GrantError, GrantScope, InertRole, LastOwner,
    SubjectId, UnknownAccount, check_grant, check_revoke, effective_access, functions_on,
    has_owner,
};
pub use permission::{Permission, UnknownPermission};
pub use roles::{
    Applicability, CATALOG, Implication, ImplicationScope, Role, RoleSpec, UnknownRole,
};
pub use service::{
    EffectiveService, LicenseType, Origin, PhoneNumber, RoleDef, TeamDef, TeamPermission,
    UserAssignment, UserId, UserPermission, effective_service_access, memberships_lost,
};
pub use tree::{
    Account, AccountId, AccountKind, AccountTree, TreeError, cycle_through, placement_problems,
};
pub use validation::{
    Email, InvitationLifetime, Language, ValidationError, parse_duration, person_name,
};
