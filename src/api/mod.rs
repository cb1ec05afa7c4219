//! The portal API contract: every request and response body of `/v1`, the state enums, the
//! problem and change-feed types, typed external references and the timestamp format.
//!
//! The reference server serialises these types and the operator's client deserialises them;
//! `docs/openapi.json` is generated from them. It depends on [`crate::domain`] only, so a vendor
//! implementing the API, or a reader of the operator, has one module to read.
//!
//! - [`accounts`], [`invitations`], [`grants`], [`account_managers`], [`keys`],
//!   [`subscriptions`], [`users`], [`teams`] (with user roles): the resources.
//! - [`events`]: the change feed. [`problem`]: RFC 9457 errors with a [`ProblemType`] per cause.
//! - [`external_ref`]: the references the operator attaches to what it makes.
//! - [`time`]: timestamps on the wire (RFC 3339, milliseconds, UTC) and the clock.

pub mod account_managers;
pub mod accounts;
pub mod events;
pub mod external_ref;
pub mod grants;
pub mod invitations;
pub mod keys;
pub mod problem;
pub mod subscriptions;
pub mod teams;
pub mod time;
pub mod users;

pub use account_managers::{
    AccountManagerState, AccountManagerView, Activate, CreateAccountManager,
};
pub use accounts::{AccountView, CreateAccount, UpdateAccount};
pub use events::{Event, EventType};
pub use external_ref::ExternalRef;
pub use grants::{AdminView, CreateAdmin, CreateGrants, GrantView, RevokedGrants, Whoami};
pub use invitations::{
    AcceptFailure, AcceptInvitation, Accepted, CreateInvitation, Delivery, DevAccept,
    InvitationState, InvitationView, UpdateInvitation,
};
pub use keys::{CreateKey, KeyView, OutboxMessage};
pub use problem::{Problem, ProblemType};
pub use subscriptions::{
    CreateSubscription, LicenseTypeView, SubscriptionView, UpdateSubscription,
};
pub use teams::{
    AvatarInfo, AvatarUpload, Channel, ChannelVisibility, CreateTeam, CreateUserRole,
    DeletedUserRole, LostMembership, TeamMember, TeamView, UpdateTeam, UpdateUserRole,
    UserRoleView,
};
pub use users::{
    CreateUser, ExportState, Provisioner, SendInvitations, UpdateUser, UserState, UserView,
};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One page of a list. `nextCursor` is absent on the last page; a cursor is opaque.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says another page exists.
    pub fn new(mut items: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Self {
        let more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        let next_cursor = more
            .then(|| items.last().map(|last| URL_SAFE_NO_PAD.encode(key(last))))
            .flatten();
        Page { items, next_cursor }
    }
}

/// A merge-patch field: absent (leave as is), `null` (clear), or a value (set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Patch<T> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Patch::Absent)
    }

    /// `Some(None)` clears, `Some(Some(v))` sets, `None` leaves it: the shape of an optional
    /// field's change.
    pub fn from_change(change: Option<Option<T>>) -> Patch<T> {
        match change {
            None => Patch::Absent,
            Some(None) => Patch::Null,
            Some(Some(value)) => Patch::Value(value),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            None => Patch::Null,
            Some(value) => Patch::Value(value),
        })
    }
}

/// An absent field is skipped by the containing struct (`skip_serializing_if`); here it can
/// only be written as `null`.
impl<T: Serialize> Serialize for Patch<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Patch::Absent | Patch::Null => serializer.serialize_none(),
            Patch::Value(value) => serializer.serialize_some(value),
        }
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Patch<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <Option<T>>::schema_name()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Option<T>>::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_patch_writes_only_what_changes() {
        let clear = UpdateAccount {
            tenant_id: Patch::Null,
            ..UpdateAccount::default()
        };
        assert_eq!(
            serde_json::to_value(&clear).unwrap(),
            serde_json::json!({ "tenantId": null })
        );
        let read: UpdateAccount =
            serde_json::from_value(serde_json::json!({ "tenantId": null })).unwrap();
        assert_eq!(read, clear);
        assert!(UpdateAccount::default().is_empty());
        assert_eq!(
            serde_json::to_value(UpdateAccount::default()).unwrap(),
            serde_json::json!({})
        );
    }
}
