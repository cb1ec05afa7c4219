//! Named permissions: one per item of the seeds' "Access" column.
//!
//! Names are `area.action`, stable strings that the portal serves and the operator prints. An
//! item the seeds phrase as "X (Upload, Download & Delete)" becomes a `read` and a `write`
//! permission, so a reader can tell read-only access from change access at a glance.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! permissions {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// One thing an administrator may do on an account.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Permission {
            $(#[doc = $doc] $variant,)*
        }

        impl Permission {
            /// Every permission, in a stable order.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)*];

            /// The stable wire name, e.g. `admin_invitations.write`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Permission::$variant => $name,)*
                }
            }

            /// What the permission allows, in the seeds' words.
            pub const fn description(self) -> &'static str {
                match self {
                    $(Permission::$variant => $doc,)*
                }
            }
        }
    };
}

permissions! {
    AccountsRead => "accounts.read", "Read accounts (and client accounts below them).";
    AccountsCreate => "accounts.create", "Create accounts below this one.";
    AccountsWrite => "accounts.write", "Manage accounts: change their settings, move or delete them.";
    AccountConfigRead => "account_config.read", "View the account configuration.";
    AdminInvitationsRead => "admin_invitations.read", "List and read admin invitations.";
    AdminInvitationsReadRoles => "admin_invitations.read_roles", "Read the roles carried by admin invitations.";
    AdminInvitationsWrite => "admin_invitations.write", "Create, resend, change and revoke admin invitations.";
    AdminUsersRead => "admin_users.read", "List and read admin users and their roles.";
    AdminUsersWrite => "admin_users.write", "Grant and revoke admin roles, remove admin users.";
    ApiKeysRead => "api_keys.read", "Read API keys (never their secret).";
    ApiKeysWrite => "api_keys.write", "Create and revoke API keys.";
    BillingRead => "billing.read", "View billing: invoice summary and breakdown reports.";
    BrandingRead => "branding.read", "Download branding.";
    BrandingWrite => "branding.write", "Upload and delete branding.";
    CallsRead => "calls.read", "View calls and the user call log.";
    CallsDiagnosticHold => "calls.diagnostic_hold", "Set diagnostic hold on a user's call log.";
    CompanyLogosWrite => "company_logos.write", "Manage company logos.";
    DocumentsRead => "documents.read", "Read documents.";
    EventLogsRead => "event_logs.read", "View event logs.";
    EventLogsWrite => "event_logs.write", "Create event logs.";
    ExternalLinksRead => "external_links.read", "Read external links.";
    ExternalLinksWrite => "external_links.write", "Manage external links.";
    IconsWrite => "icons.write", "Manage icons.";
    OrderHistoryRead => "order_history.read", "View order history.";
    PbxTemplatesRead => "pbx_templates.read", "Read PBX and trunk templates.";
    PbxTemplatesWrite => "pbx_templates.write", "Create, update and delete PBX templates.";
    PbxTemplatesHideAncestor => "pbx_templates.hide_ancestor", "Hide templates inherited from ancestor accounts.";
    ServicesRead => "services.read", "Read services.";
    ServicesWrite => "services.write", "Change service settings.";
    ServiceUsersRead => "service_users.read", "Read service users.";
    ServiceUsersWrite => "service_users.write", "Create and manage service users.";
    SubscriptionsRead => "subscriptions.read", "View subscriptions and licences.";
    SubscriptionsWrite => "subscriptions.write", "Add and amend subscriptions and licences.";
    SyncJobsRead => "sync_jobs.read", "Review sync jobs.";
    SyncRun => "sync.run", "Start a sync now.";
    TeamsPresenceRead => "teams_presence.read", "Read Teams presence information.";
    TeamsPresenceWrite => "teams_presence.write", "Set Teams presence information.";
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl schemars::JsonSchema for Permission {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Permission".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        schemars::json_schema!({
            "type": "string",
            "description": "A named permission, `area.action`.",
            "enum": names,
        })
    }
}

/// The name is not one of [`Permission::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission {0:?}")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .iter()
            .copied()
            .find(|permission| permission.as_str() == name)
            .ok_or_else(|| UnknownPermission(name.to_owned()))
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_unique_and_round_trips() {
        let mut names: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len());
        for permission in Permission::ALL {
            assert_eq!(permission.as_str().parse::<Permission>(), Ok(*permission));
        }
    }

    #[test]
    fn names_are_area_dot_action() {
        for permission in Permission::ALL {
            let (area, action) = permission.as_str().split_once('.').expect("a dot");
            assert!(!area.is_empty() && !action.is_empty(), "{permission}");
            assert!(
                permission
                    .as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.'),
                "{permission}"
            );
        }
    }

    #[test]
    fn unknown_name_is_refused() {
        assert_eq!(
            "admin_invitations.delete".parse::<Permission>(),
            Err(UnknownPermission("admin_invitations.delete".into()))
        );
    }
}
