//! The references an operator attaches to what it makes in the portal, so that it finds them
//! again after a crash (by `externalRef`, grant `source` or account `externalId`) and so that a
//! change-feed event names the object it concerns.
//!
//! On the wire a reference is an opaque string of at most 512 printable characters: the portal
//! indexes it and never parses it, and other clients may use their own. [`ExternalRef`] is this
//! operator's shape of it, written once (`Display`) and read once (`FromStr`).

use std::fmt;
use std::str::FromStr;

/// A reference to the Kubernetes object (and, for an invitation, the attempt) that made a portal
/// object. Object names and uids hold no `/`, so the segments are unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExternalRef {
    /// `Account/{name}`: the default external id of an Account's portal account.
    Account { name: String },
    /// `AdminInvitation/{namespace}/{name}/{uid}/{attempt}`: one issued invitation.
    AdminInvitation {
        namespace: String,
        name: String,
        uid: String,
        attempt: i32,
    },
    /// `RoleBinding/{namespace}/{name}/{uid}`: the `source` of the grants a binding made.
    RoleBinding {
        namespace: String,
        name: String,
        uid: String,
    },
    /// `AccountManager/{namespace}/{name}/{uid}`.
    AccountManager {
        namespace: String,
        name: String,
        uid: String,
    },
    /// `Subscription/{namespace}/{name}/{uid}`.
    Subscription {
        namespace: String,
        name: String,
        uid: String,
    },
    /// `User/{namespace}/{name}/{uid}`: a service user.
    User {
        namespace: String,
        name: String,
        uid: String,
    },
    /// `UserRole/{namespace}/{name}/{uid}`.
    UserRole {
        namespace: String,
        name: String,
        uid: String,
    },
    /// `Team/{namespace}/{name}/{uid}`.
    Team {
        namespace: String,
        name: String,
        uid: String,
    },
}

impl fmt::Display for ExternalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExternalRef::Account { name } => write!(f, "Account/{name}"),
            ExternalRef::AdminInvitation {
                namespace,
                name,
                uid,
                attempt,
            } => write!(f, "AdminInvitation/{namespace}/{name}/{uid}/{attempt}"),
            ExternalRef::RoleBinding {
                namespace,
                name,
                uid,
            } => write!(f, "RoleBinding/{namespace}/{name}/{uid}"),
            ExternalRef::AccountManager {
                namespace,
                name,
                uid,
            } => write!(f, "AccountManager/{namespace}/{name}/{uid}"),
            ExternalRef::Subscription {
                namespace,
                name,
                uid,
            } => write!(f, "Subscription/{namespace}/{name}/{uid}"),
            ExternalRef::User {
                namespace,
                name,
                uid,
            } => write!(f, "User/{namespace}/{name}/{uid}"),
            ExternalRef::UserRole {
                namespace,
                name,
                uid,
            } => write!(f, "UserRole/{namespace}/{name}/{uid}"),
            ExternalRef::Team {
                namespace,
                name,
                uid,
            } => write!(f, "Team/{namespace}/{name}/{uid}"),
        }
    }
}

/// A string that is not one of this operator's references (made by hand, or by another client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a reference this operator makes")]
pub struct NotOurs(pub String);

impl FromStr for ExternalRef {
    type Err = NotOurs;

    fn from_str(text: &str) -> Result<ExternalRef, NotOurs> {
        let not_ours = || NotOurs(text.to_owned());
        let parts: Vec<&str> = text.split('/').collect();
        if parts.iter().any(|part| part.is_empty()) {
            return Err(not_ours());
        }
        let owned = |s: &str| s.to_owned();
        match parts[..] {
            ["Account", name] => Ok(ExternalRef::Account { name: owned(name) }),
            ["AdminInvitation", namespace, name, uid, attempt] => {
                let attempt = attempt
                    .parse::<i32>()
                    .ok()
                    .filter(|a| *a >= 1 && a.to_string() == attempt)
                    .ok_or_else(not_ours)?;
                Ok(ExternalRef::AdminInvitation {
                    namespace: owned(namespace),
                    name: owned(name),
                    uid: owned(uid),
                    attempt,
                })
            }
            ["RoleBinding", namespace, name, uid] => Ok(ExternalRef::RoleBinding {
                namespace: owned(namespace),
                name: owned(name),
                uid: owned(uid),
            }),
            ["AccountManager", namespace, name, uid] => Ok(ExternalRef::AccountManager {
                namespace: owned(namespace),
                name: owned(name),
                uid: owned(uid),
            }),
            ["Subscription", namespace, name, uid] => Ok(ExternalRef::Subscription {
                namespace: owned(namespace),
                name: owned(name),
                uid: owned(uid),
            }),
            ["User", namespace, name, uid] => Ok(ExternalRef::User {
                namespace: owned(namespace),
                name: owned(name),
                uid: owned(uid),
            }),
            ["UserRole", namespace, name, uid] => Ok(ExternalRef::UserRole {
                namespace: owned(namespace),
                name: owned(name),
                uid: owned(uid),
            }),
            ["Team", namespace, name, uid] => Ok(ExternalRef::Team {
                namespace: owned(namespace),
                name: owned(name),
                uid: owned(uid),
            }),
            _ => Err(not_ours()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9.-]{0,20}"
    }

    fn any_ref() -> impl Strategy<Value = ExternalRef> {
        prop_oneof![
            segment().prop_map(|name| ExternalRef::Account { name }),
            (segment(), segment(), segment(), 1..1000i32).prop_map(
                |(namespace, name, uid, attempt)| ExternalRef::AdminInvitation {
                    namespace,
                    name,
                    uid,
                    attempt
                }
            ),
            (segment(), segment(), segment()).prop_map(|(namespace, name, uid)| {
                ExternalRef::RoleBinding {
                    namespace,
                    name,
                    uid,
                }
            }),
            (segment(), segment(), segment()).prop_map(|(namespace, name, uid)| {
                ExternalRef::AccountManager {
                    namespace,
                    name,
                    uid,
                }
            }),
            (segment(), segment(), segment()).prop_map(|(namespace, name, uid)| {
                ExternalRef::Subscription {
                    namespace,
                    name,
                    uid,
                }
            }),
            (segment(), segment(), segment()).prop_map(|(namespace, name, uid)| {
                ExternalRef::User {
                    namespace,
                    name,
                    uid,
                }
            }),
            (segment(), segment(), segment()).prop_map(|(namespace, name, uid)| {
                ExternalRef::UserRole {
                    namespace,
                    name,
                    uid,
                }
            }),
            (segment(), segment(), segment()).prop_map(|(namespace, name, uid)| {
                ExternalRef::Team {
                    namespace,
                    name,
                    uid,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn references_round_trip(reference in any_ref()) {
            let text = reference.to_string();
            prop_assert_eq!(text.parse::<ExternalRef>(), Ok(reference));
        }

        #[test]
        fn parsing_never_panics_and_what_parses_prints_back(text in "[A-Za-z0-9/]{0,40}") {
            if let Ok(reference) = text.parse::<ExternalRef>() {
                prop_assert_eq!(reference.to_string(), text);
            }
        }
    }

    #[test]
    fn strings_made_by_others_are_not_ours() {
        for text in [
            "made-by-hand",
            "AdminInvitation/burst/1",
            "AdminInvitation/ns/name/uid/0",
            "AdminInvitation/ns/name/uid/01",
            "RoleBinding/ns//uid",
            "manual",
        ] {
            assert!(text.parse::<ExternalRef>().is_err(), "{text}");
        }
    }
}
