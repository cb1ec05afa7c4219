//! The change feed: what happened in the portal, in commit order, each event numbered (`seq`)
//! so a reader resumes after the last one it saw (`Last-Event-ID`).

use serde::{Deserialize, Serialize};

macro_rules! event_types {
    ($($variant:ident = $name:literal,)*) => {
        /// What happened. A reader meets types it does not know as [`EventType::Unknown`]: a
        /// newer portal may announce more.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum EventType {
            $(#[serde(rename = $name)] $variant,)*
            /// A type this client does not know.
            #[serde(other, rename = "unknown")]
            Unknown,
        }

        impl EventType {
            /// The name on the wire, e.g. `invitation.accepted`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                    EventType::Unknown => "unknown",
                }
            }

            /// The type a wire name denotes ([`EventType::Unknown`] for any other).
            pub fn parse(name: &str) -> EventType {
                match name {
                    $($name => EventType::$variant,)*
                    _ => EventType::Unknown,
                }
            }
        }
    };
}

event_types! {
    AccountCreated = "account.created",
    AccountUpdated = "account.updated",
    AccountDeleted = "account.deleted",
    GrantCreated = "grant.created",
    GrantRevoked = "grant.revoked",
    AdminRemoved = "admin.removed",
    InvitationCreated = "invitation.created",
    InvitationUpdated = "invitation.updated",
    InvitationRevoked = "invitation.revoked",
    InvitationResent = "invitation.resent",
    InvitationExpired = "invitation.expired",
    InvitationAccepted = "invitation.accepted",
    InvitationAcceptanceFailed = "invitation.acceptance_failed",
    AccountManagerCreated = "account_manager.created",
    AccountManagerActivationResent = "account_manager.activation_resent",
    AccountManagerDeleted = "account_manager.deleted",
    AccountManagerActivated = "account_manager.activated",
    AccountManagerActivationExpired = "account_manager.activation_expired",
    SubscriptionCreated = "subscription.created",
    SubscriptionUpdated = "subscription.updated",
    SubscriptionDeleted = "subscription.deleted",
    UserCreated = "user.created",
    UserUpdated = "user.updated",
    UserInvited = "user.invited",
    UserActivated = "user.activated",
    UserActivationExpired = "user.activation_expired",
    UserDeleted = "user.deleted",
    UserRoleCreated = "user_role.created",
    UserRoleUpdated = "user_role.updated",
    UserRoleDeleted = "user_role.deleted",
    TeamCreated = "team.created",
    TeamUpdated = "team.updated",
    TeamDeleted = "team.deleted",
}

impl EventType {
    /// An event about an account itself (created, changed, deleted).
    pub fn is_account(self) -> bool {
        matches!(
            self,
            EventType::AccountCreated | EventType::AccountUpdated | EventType::AccountDeleted
        )
    }

    /// An event after which an account's users hold other licences than before.
    pub fn moves_licenses(self) -> bool {
        matches!(
            self,
            EventType::UserCreated | EventType::UserUpdated | EventType::UserDeleted
        )
    }

    /// An event after which a licence may be free that was not (a subscription added or
    /// raised, a user deleted or moved to another licence type).
    pub fn frees_licenses(self) -> bool {
        matches!(
            self,
            EventType::SubscriptionCreated
                | EventType::SubscriptionUpdated
                | EventType::UserDeleted
                | EventType::UserUpdated
        )
    }

    /// An event after which an object that named a user role, team or user not in the portal
    /// yet may find it.
    pub fn makes_references(self) -> bool {
        matches!(
            self,
            EventType::UserRoleCreated
                | EventType::UserRoleUpdated
                | EventType::TeamCreated
                | EventType::TeamUpdated
                | EventType::UserCreated
        )
    }

    /// An event after which an account's teams may have other members, or its user roles
    /// other holders.
    pub fn moves_memberships(self) -> bool {
        self.reshapes_teams()
            || matches!(
                self,
                EventType::UserCreated | EventType::UserUpdated | EventType::UserDeleted
            )
    }

    /// An event that changes a user role or a team itself: users' effective permissions and
    /// teams may follow.
    pub fn reshapes_teams(self) -> bool {
        matches!(
            self,
            EventType::UserRoleCreated
                | EventType::UserRoleUpdated
                | EventType::UserRoleDeleted
                | EventType::TeamCreated
                | EventType::TeamUpdated
                | EventType::TeamDeleted
        )
    }

    /// An event that changes who holds which role on an account.
    pub fn changes_grants(self) -> bool {
        matches!(
            self,
            EventType::GrantCreated | EventType::GrantRevoked | EventType::AdminRemoved
        )
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change-feed entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub seq: i64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub object_kind: String,
    pub object_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The `externalRef` (or grant `source`) of the object, as the client that made it gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
}

/// A page of the change feed read as JSON (`Accept: application/json`) rather than as a stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    /// The events after the cursor that the caller may see, oldest first.
    pub items: Vec<Event>,
    /// The cursor to read the next page from (`after=`): the last event examined, which may be
    /// one the caller does not see.
    pub next: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_and_unknown_ones_are_read() {
        for name in [
            "invitation.accepted",
            "grant.revoked",
            "account_manager.activated",
            "team.created",
            "user_role.deleted",
        ] {
            let parsed: EventType = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(parsed.as_str(), name);
            assert_eq!(EventType::parse(name), parsed);
            assert_eq!(serde_json::to_value(parsed).unwrap(), name);
        }
        let later: EventType =
            serde_json::from_value(serde_json::json!("channel.archived")).unwrap();
        assert_eq!(later, EventType::Unknown);
        assert_eq!(EventType::parse("channel.archived"), EventType::Unknown);
    }
}
