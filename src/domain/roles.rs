//! The admin role catalog of seeds 000/001 (table) and 002 (summaries), as data.
//!
//! [`CATALOG`] is the only place that says what a role implies and grants. Everything else —
//! the portal's `GET /v1/roles`, access evaluation, the CRD's role enum — reads it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::permission::Permission::{self, *};

/// An admin role of the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    AccountOwner,
    SubscriptionContributor,
    SubscriptionViewer,
    ServiceContributor,
    ServiceViewer,
    BrandContributor,
    SyncContributor,
}

impl Role {
    /// Every role, in the seeds' table order.
    pub const ALL: &'static [Role] = &[
        Role::AccountOwner,
        Role::SubscriptionContributor,
        Role::SubscriptionViewer,
        Role::ServiceContributor,
        Role::ServiceViewer,
        Role::BrandContributor,
        Role::SyncContributor,
    ];

    /// The role every administrator gets when nothing else is asked for (seed 000: "the default
    /// role for any Administrator").
    pub const DEFAULT: Role = Role::AccountOwner;

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::AccountOwner => "AccountOwner",
            Role::SubscriptionContributor => "SubscriptionContributor",
            Role::SubscriptionViewer => "SubscriptionViewer",
            Role::ServiceContributor => "ServiceContributor",
            Role::ServiceViewer => "ServiceViewer",
            Role::BrandContributor => "BrandContributor",
            Role::SyncContributor => "SyncContributor",
        }
    }

    /// This role's row of the catalog.
    pub fn spec(self) -> &'static RoleSpec {
        CATALOG
            .iter()
            .find(|spec| spec.role == self)
            .expect("every role has a catalog row (checked by a test)")
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not a role of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role {0:?}; the roles are AccountOwner, SubscriptionContributor, SubscriptionViewer, ServiceContributor, ServiceViewer, BrandContributor and SyncContributor"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Accepts the catalog name exactly, or the seeds' spelling with spaces ("Account Owner").
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let compact: String = name.chars().filter(|c| !c.is_whitespace()).collect();
        Role::ALL
            .iter()
            .copied()
            .find(|role| role.as_str() == compact)
            .ok_or_else(|| UnknownRole(name.to_owned()))
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Role {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Role".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        schemars::json_schema!({
            "type": "string",
            "description": "An admin role of the portal (see GET /v1/roles).",
            "enum": names,
        })
    }
}

/// Where an implied role takes effect, relative to the account the implying role was granted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ImplicationScope {
    /// On every account the implying role reaches.
    Everywhere,
    /// Only on accounts strictly below the one the grant was made on (seed 000: SubscriptionContributor
    /// implies "Account Owner (for child accounts only)").
    ChildAccountsOnly,
}

/// One "Implied" entry of the seeds' table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Implication {
    pub role: Role,
    pub scope: ImplicationScope,
}

/// Where a role can function at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub enum Applicability {
    /// On any account.
    AnyAccount,
    /// Only on an account that holds contracts: a Partner, or a Client with a sub-contract
    /// (seed 000: "Not a functioning role at the client account level unless a sub-contract
    /// exists"; administrators of client accounts "are not able to make any changes that could
    /// result in financial or contractual changes").
    ContractHoldingAccount,
}

/// One row of the catalog.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleSpec {
    pub role: Role,
    /// The seeds' display name.
    pub display_name: &'static str,
    pub description: &'static str,
    pub implies: &'static [Implication],
    /// What the role grants by itself; implied roles add theirs.
    pub permissions: &'static [Permission],
    pub applicability: Applicability,
    /// The seeds' "Note" column.
    pub note: &'static str,
}

const fn everywhere(role: Role) -> Implication {
    Implication {
        role,
        scope: ImplicationScope::Everywhere,
    }
}

const fn child_accounts_only(role: Role) -> Implication {
    Implication {
        role,
        scope: ImplicationScope::ChildAccountsOnly,
    }
}

/// The catalog, one row per role, in the seeds' table order.
pub static CATALOG: &[RoleSpec] = &[
    RoleSpec {
        role: Role::AccountOwner,
        display_name: "Account Owner",
        description: "Admin invitations, admin users, API keys, external links (read only), services, and starting and reviewing sync jobs.",
        implies: &[
            everywhere(Role::ServiceContributor),
            everywhere(Role::ServiceViewer),
        ],
        permissions: &[
            AdminInvitationsRead,
            AdminInvitationsWrite,
            AdminUsersRead,
            AdminUsersWrite,
            ApiKeysRead,
            ApiKeysWrite,
            ExternalLinksRead,
            ServicesRead,
            ServicesWrite,
            SyncJobsRead,
            SyncRun,
        ],
        applicability: Applicability::AnyAccount,
        note: "This is the default role for any Administrator.",
    },
    RoleSpec {
        role: Role::SubscriptionContributor,
        display_name: "Subscription Contributor",
        description: "Add and amend subscriptions and licences; create and manage accounts. Account Owner on child accounts.",
        implies: &[
            everywhere(Role::SubscriptionViewer),
            child_accounts_only(Role::AccountOwner),
        ],
        permissions: &[SubscriptionsWrite, AccountsCreate, AccountsWrite],
        applicability: Applicability::ContractHoldingAccount,
        note: "Essential role afforded to the Customer Services and Provisioning Managers at the Native Partner account level. Not a functioning role at the client account level unless a sub-contract exists.",
    },
    RoleSpec {
        role: Role::SubscriptionViewer,
        display_name: "Subscription Viewer",
        description: "Read-only access to account configuration, billing, order history, services, subscriptions and licences, and client accounts.",
        implies: &[],
        permissions: &[
            AccountConfigRead,
            AccountsRead,
            BillingRead,
            OrderHistoryRead,
            ServicesRead,
            SubscriptionsRead,
        ],
        applicability: Applicability::ContractHoldingAccount,
        note: "A useful role for Accounts staff wishing to view the Invoice Summary and Breakdown reports.",
    },
    RoleSpec {
        role: Role::ServiceContributor,
        display_name: "Service Contributor",
        description: "Event logs, account configuration (view), Teams presence, admin invitations, API keys (read), user call log and diagnostic hold, PBX/trunk templates (read), service users.",
        implies: &[everywhere(Role::ServiceViewer)],
        permissions: &[
            EventLogsRead,
            EventLogsWrite,
            AccountConfigRead,
            TeamsPresenceRead,
            TeamsPresenceWrite,
            AdminInvitationsRead,
            AdminInvitationsWrite,
            ApiKeysRead,
            CallsRead,
            CallsDiagnosticHold,
            PbxTemplatesRead,
            ServiceUsersRead,
            ServiceUsersWrite,
        ],
        applicability: Applicability::AnyAccount,
        note: "Not a required role. Useful only if intending to restrict access to other areas for Administrators with limitations.",
    },
    RoleSpec {
        role: Role::ServiceViewer,
        display_name: "Service Viewer",
        description: "Read-only access to accounts, admin invitations, admin users, calls, documents, services, service users and sync jobs.",
        implies: &[],
        permissions: &[
            AccountsRead,
            AdminInvitationsRead,
            AdminInvitationsReadRoles,
            AdminUsersRead,
            CallsRead,
            DocumentsRead,
            ServicesRead,
            ServiceUsersRead,
            SyncJobsRead,
        ],
        applicability: Applicability::AnyAccount,
        note: "Not a required role. Useful only if intending to restrict access to other areas for Administrators with limitations.",
    },
    RoleSpec {
        role: Role::BrandContributor,
        display_name: "Brand Contributor",
        description: "Accounts (read only), admin invitations (reading roles), branding upload/download/delete, company logos, icons and external links, PBX templates (create/read/update/delete) and hiding ancestor templates.",
        implies: &[],
        permissions: &[
            AccountsRead,
            AdminInvitationsReadRoles,
            BrandingRead,
            BrandingWrite,
            CompanyLogosWrite,
            IconsWrite,
            ExternalLinksRead,
            ExternalLinksWrite,
            PbxTemplatesRead,
            PbxTemplatesWrite,
            PbxTemplatesHideAncestor,
        ],
        applicability: Applicability::AnyAccount,
        note: "Required role where management of Branding, Links or Service templates is required. This is required for Full branding or Branding Essentials.",
    },
    RoleSpec {
        role: Role::SyncContributor,
        display_name: "Sync Contributor",
        description: "Accounts (read only), services (read only), sync now.",
        implies: &[],
        permissions: &[AccountsRead, ServicesRead, SyncRun],
        applicability: Applicability::AnyAccount,
        note: "Not a required role. Useful only if needed to restrict access to other areas for Administrators with limitations.",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_has_exactly_one_catalog_row() {
        for role in Role::ALL {
            assert_eq!(
                CATALOG.iter().filter(|spec| spec.role == *role).count(),
                1,
                "{role}"
            );
        }
        assert_eq!(CATALOG.len(), Role::ALL.len());
    }

    #[test]
    fn catalog_rows_follow_role_order() {
        let order: Vec<Role> = CATALOG.iter().map(|spec| spec.role).collect();
        assert_eq!(order, Role::ALL);
    }

    #[test]
    fn no_role_implies_itself_or_lists_a_permission_twice() {
        for spec in CATALOG {
            assert!(
                spec.implies.iter().all(|i| i.role != spec.role),
                "{}",
                spec.role
            );
            let mut permissions = spec.permissions.to_vec();
            permissions.sort_unstable();
            permissions.dedup();
            assert_eq!(permissions.len(), spec.permissions.len(), "{}", spec.role);
        }
    }

    #[test]
    fn every_permission_is_granted_by_some_role() {
        for permission in Permission::ALL {
            assert!(
                CATALOG
                    .iter()
                    .any(|spec| spec.permissions.contains(permission)),
                "{permission} is granted by no role"
            );
        }
    }

    #[test]
    fn role_names_parse_in_catalog_and_seed_spelling() {
        assert_eq!("AccountOwner".parse(), Ok(Role::AccountOwner));
        assert_eq!("Account Owner".parse(), Ok(Role::AccountOwner));
        assert_eq!("Sync Contributor".parse(), Ok(Role::SyncContributor));
        assert!("Owner".parse::<Role>().is_err());
        assert!("accountowner".parse::<Role>().is_err());
    }
}
