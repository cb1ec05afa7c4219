//! The service's end users (seed 003): the licence-type and end-user permission catalogs, user
//! IDs and phone numbers, and the one function that says what a user may do and which teams they
//! are in, and why.
//!
//! Pure code, like the admin-access model beside it: the portal computes a user's effective
//! permissions and teams with [`effective_service_access`], the operator records what it answers,
//! and `diff` asks [`memberships_lost`] what deleting or changing a role takes away.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::validation::{Email, ValidationError};

/// A closed catalog of named entries on the wire: the enum, its stable names and descriptions,
/// parsing with an error that lists the names, serde and a JSON schema with the enum.
macro_rules! catalog {
    ($(#[$meta:meta])* $name:ident, $what:literal, $unknown:ident {
        $($variant:ident => $wire:literal, $doc:literal;)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $(#[doc = $doc] $variant,)*
        }

        impl $name {
            /// Every entry, in catalog order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The stable wire name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                }
            }

            pub const fn description(self) -> &'static str {
                match self {
                    $($name::$variant => $doc,)*
                }
            }
        }

        /// The name is not in the catalog.
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("unknown {} {:?}; the catalog has {}", $what, .0, [$($wire),*].join(", "))]
        pub struct $unknown(pub String);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = $unknown;
            fn from_str(name: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|entry| entry.as_str() == name)
                    .ok_or_else(|| $unknown(name.to_owned()))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "description": concat!("A ", $what, " of the catalog."),
                    "enum": [$($wire),*],
                })
            }
        }
    };
}

catalog! {
    /// A kind of user licence an account's subscriptions hold (one is taken per user).
    LicenseType, "licence type", UnknownLicenseType {
        Standard => "Standard", "A standard user: Teams calling with a mobile and a landline number.";
        Premium => "Premium", "A premium user: standard calling plus call recording, queues and the reception console.";
        CommonArea => "CommonArea", "A common-area phone (meeting room, lobby): one landline number, no mobile app.";
    }
}

catalog! {
    /// Something an end user of the service may do (seed 003's "permissions").
    UserPermission, "user permission", UnknownUserPermission {
        UsersAndTeams => "users_teams.manage", "View and edit the Users & Teams settings (the seed's User & Team permission).";
        CallQueuesManage => "call_queues.manage", "Create and change call queues.";
        CallQueuesAnswer => "call_queues.answer", "Answer calls from the call queues the user belongs to.";
        CallRecordingsRead => "call_recordings.read", "Listen to call recordings.";
        ReceptionConsole => "reception_console.use", "Use the reception console to transfer and park calls.";
        SharedContactsManage => "shared_contacts.manage", "Edit the organisation's shared contacts.";
        VoicemailManage => "voicemail.manage", "Change voicemail greetings and forwarding.";
    }
}

catalog! {
    /// Something the holders of a user role may do in the role's team.
    TeamPermission, "team permission", UnknownTeamPermission {
        ChannelsCreate => "channels.create", "Create public and private channels in the team.";
        PrivateChannelsRead => "private_channels.read", "See the team's private channels.";
        MembersManage => "members.manage", "Add and remove the team's explicit members.";
        SettingsEdit => "settings.edit", "Change the team's name and avatar.";
    }
}

// ---------------------------------------------------------------------------------------------
// User IDs and phone numbers

/// A phone number as sent and as E.164. Kept both ways: an identity provider that sent
/// `+44 20 7946 0000` must read that back (Entra forbids reformatting), while comparisons and
/// calls use `+442079460000`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhoneNumber {
    pub raw: String,
    pub e164: String,
}

impl PhoneNumber {
    /// Accepts `+` and 8 to 15 digits (the first not 0), with spaces, dots, hyphens and
    /// parentheses between them.
    pub fn parse(field: &'static str, value: &str) -> Result<PhoneNumber, ValidationError> {
        let refuse = |reason| ValidationError::Phone {
            field,
            value: value.to_owned(),
            reason,
        };
        let trimmed = value.trim();
        let Some(rest) = trimmed.strip_prefix('+') else {
            return Err(refuse(
                "it must start with + and the country code (E.164, e.g. +442079460000)",
            ));
        };
        let mut digits = String::with_capacity(15);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '.' | '-' | '(' | ')' => {}
                _ => {
                    return Err(refuse(
                        "it may hold only digits after the +, with spaces, dots, hyphens or parentheses between them",
                    ));
                }
            }
        }
        if digits.starts_with('0') {
            return Err(refuse("a country code never starts with 0"));
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(refuse("E.164 numbers hold 8 to 15 digits after the +"));
        }
        Ok(PhoneNumber {
            raw: trimmed.to_owned(),
            e164: format!("+{digits}"),
        })
    }
}

/// A user's login: an email address or an E.164 mobile number (seed 003: "User ID (email or
/// mobile number)").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserId {
    Email(Email),
    Mobile(PhoneNumber),
}

impl UserId {
    pub fn parse(value: &str) -> Result<UserId, ValidationError> {
        if value.trim_start().starts_with('+') {
            PhoneNumber::parse("userId", value).map(UserId::Mobile)
        } else if value.contains('@') {
            Email::parse(value).map(UserId::Email)
        } else {
            Err(ValidationError::UserId {
                value: value.to_owned(),
            })
        }
    }

    /// As stored and shown: the email as checked, or the number in E.164.
    pub fn as_str(&self) -> &str {
        match self {
            UserId::Email(email) => email.as_str(),
            UserId::Mobile(number) => &number.e164,
        }
    }

    /// The form compared for uniqueness, across users, account managers and admins.
    pub fn canonical(&self) -> String {
        match self {
            UserId::Email(email) => email.canonical(),
            UserId::Mobile(number) => number.e164.clone(),
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks an IANA time-zone name against the tz database compiled into the program (so the
/// answer does not depend on the machine's `/usr/share/zoneinfo`).
pub fn time_zone(value: &str) -> Result<String, ValidationError> {
    let trimmed = value.trim();
    match jiff::tz::db().get(trimmed) {
        Ok(_) if !trimmed.is_empty() => Ok(trimmed.to_owned()),
        _ => Err(ValidationError::TimeZone {
            value: value.to_owned(),
        }),
    }
}

/// A default country-code prefix: `+` and 1 to 3 digits, not starting with 0 (e.g. `+44`).
pub fn country_code(value: &str) -> Result<String, ValidationError> {
    let digits = value.trim().strip_prefix('+').unwrap_or_default();
    if (1..=3).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
    {
        Ok(format!("+{digits}"))
    } else {
        Err(ValidationError::CountryCode {
            value: value.to_owned(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Effective permissions and teams

/// A user role as the effective function reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleDef {
    pub name: String,
    pub permissions: Vec<UserPermission>,
    /// The team the role automatically belongs to: its holders are members.
    pub team: Option<String>,
    /// What the role's holders may do in that team.
    pub team_permissions: Vec<TeamPermission>,
}

/// A team as the effective function reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeamDef {
    pub name: String,
    /// The user roles that automatically belong to the team (seen from the team's side).
    pub roles: Vec<String>,
    /// The users the team lists as members (by user ID).
    pub members: Vec<String>,
    pub disabled: bool,
}

/// What one user holds directly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserAssignment {
    /// The user's ID (a team may list it as a member).
    pub user_id: String,
    pub roles: Vec<String>,
    /// Teams the user was added to by name.
    pub teams: Vec<String>,
    /// Permissions given without a role.
    pub permissions: Vec<UserPermission>,
}

/// Where a permission or a team membership comes from.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Origin {
    /// Given to the user directly (a permission) or added by name (a team).
    Direct,
    /// The team lists the user as a member.
    Member,
    /// From a user role the user holds.
    Role { role: String },
    /// A role the user holds belongs to the team (the role names the team, or the team the role).
    TeamRole { role: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Direct => f.write_str("direct"),
            Origin::Member => f.write_str("member of the team"),
            Origin::Role { role } => write!(f, "role {role}"),
            Origin::TeamRole { role } => write!(f, "role {role} belongs to the team"),
        }
    }
}

/// One effective permission and every origin that gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectivePermission {
    pub permission: UserPermission,
    pub origins: Vec<Origin>,
}

/// One team the user is a member of, why, and what they may do there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveTeam {
    pub team: String,
    pub origins: Vec<Origin>,
    /// A disabled team keeps its members but is invisible to them until re-enabled.
    #[serde(default)]
    pub disabled: bool,
    /// Team permissions, each with the roles that give it.
    #[serde(default)]
    pub permissions: Vec<EffectiveTeamPermission>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveTeamPermission {
    pub permission: TeamPermission,
    pub roles: Vec<String>,
}

/// A user's effective permissions and teams, each with its origins, in catalog / name order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveService {
    pub permissions: Vec<EffectivePermission>,
    pub teams: Vec<EffectiveTeam>,
}

impl EffectiveService {
    pub fn has_permission(&self, permission: UserPermission) -> bool {
        self.permissions.iter().any(|p| p.permission == permission)
    }

    pub fn team(&self, name: &str) -> Option<&EffectiveTeam> {
        self.teams.iter().find(|t| t.team == name)
    }
}

/// What `user` may do and which teams they are in, given the account's `roles` and `teams`.
/// A role or team the account does not have is skipped (the portal refuses such names when they
/// are written, so one only appears here while it is being deleted).
pub fn effective_service_access(
    user: &UserAssignment,
    roles: &[RoleDef],
    teams: &[TeamDef],
) -> EffectiveService {
    let mut permissions: BTreeMap<UserPermission, BTreeSet<Origin>> = BTreeMap::new();
    let mut memberships: BTreeMap<&str, BTreeSet<Origin>> = BTreeMap::new();
    let mut team_permissions: BTreeMap<&str, BTreeMap<TeamPermission, BTreeSet<&str>>> =
        BTreeMap::new();
    let team_named = |name: &str| teams.iter().find(|t| t.name == name);
    for permission in &user.permissions {
        permissions
            .entry(*permission)
            .or_default()
            .insert(Origin::Direct);
    }
    for team in user.teams.iter().filter_map(|t| team_named(t)) {
        memberships
            .entry(&team.name)
            .or_default()
            .insert(Origin::Direct);
    }
    for team in teams.iter().filter(|t| t.members.contains(&user.user_id)) {
        memberships
            .entry(&team.name)
            .or_default()
            .insert(Origin::Member);
    }
    let held = user
        .roles
        .iter()
        .filter_map(|name| roles.iter().find(|r| &r.name == name));
    for role in held {
        for permission in &role.permissions {
            permissions
                .entry(*permission)
                .or_default()
                .insert(Origin::Role {
                    role: role.name.clone(),
                });
        }
        let linked = teams.iter().filter(|team| {
            role.team.as_deref() == Some(team.name.as_str()) || team.roles.contains(&role.name)
        });
        for team in linked {
            memberships
                .entry(&team.name)
                .or_default()
                .insert(Origin::TeamRole {
                    role: role.name.clone(),
                });
        }
        if let Some(team) = role.team.as_deref().and_then(team_named) {
            let in_team = team_permissions.entry(&team.name).or_default();
            for permission in &role.team_permissions {
                in_team.entry(*permission).or_default().insert(&role.name);
            }
        }
    }
    EffectiveService {
        permissions: permissions
            .into_iter()
            .map(|(permission, origins)| EffectivePermission {
                permission,
                origins: origins.into_iter().collect(),
            })
            .collect(),
        teams: memberships
            .into_iter()
            .map(|(name, origins)| EffectiveTeam {
                team: name.to_owned(),
                origins: origins.into_iter().collect(),
                disabled: team_named(name).is_some_and(|t| t.disabled),
                permissions: team_permissions
                    .remove(name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(permission, roles)| EffectiveTeamPermission {
                        permission,
                        roles: roles.into_iter().map(str::to_owned).collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// A team membership a change takes away from a user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LostMembership {
    pub user: String,
    pub team: String,
}

/// Which memberships go when the account's roles and teams change from `before` to `after`
/// (e.g. a role deleted: removed from every user, and the memberships that came only from it
/// end). Users are `(user id, assignment)`; a role missing from `after` is no longer held.
pub fn memberships_lost(
    users: &[(String, UserAssignment)],
    before: (&[RoleDef], &[TeamDef]),
    after: (&[RoleDef], &[TeamDef]),
) -> Vec<LostMembership> {
    let mut lost = Vec::new();
    for (user, assignment) in users {
        let was = effective_service_access(assignment, before.0, before.1);
        let now = effective_service_access(assignment, after.0, after.1);
        for team in &was.teams {
            if now.team(&team.team).is_none() {
                lost.push(LostMembership {
                    user: user.clone(),
                    team: team.team.clone(),
                });
            }
        }
    }
    lost.sort();
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, permissions: &[UserPermission], team: Option<&str>) -> RoleDef {
        RoleDef {
            name: name.into(),
            permissions: permissions.to_vec(),
            team: team.map(Into::into),
            team_permissions: Vec::new(),
        }
    }

    fn team(name: &str, roles: &[&str]) -> TeamDef {
        TeamDef {
            name: name.into(),
            roles: roles.iter().map(|r| (*r).into()).collect(),
            members: Vec::new(),
            disabled: false,
        }
    }

    fn user(roles: &[&str], teams: &[&str], permissions: &[UserPermission]) -> UserAssignment {
        UserAssignment {
            user_id: String::new(),
            roles: roles.iter().map(|r| (*r).into()).collect(),
            teams: teams.iter().map(|t| (*t).into()).collect(),
            permissions: permissions.to_vec(),
        }
    }

    fn by_role(role: &str) -> Origin {
        Origin::Role { role: role.into() }
    }

    fn team_role(role: &str) -> Origin {
        Origin::TeamRole { role: role.into() }
    }

    /// (case, user, expected permissions with origins, expected teams with origins)
    type Case = (
        &'static str,
        UserAssignment,
        Vec<(UserPermission, Vec<Origin>)>,
        Vec<(&'static str, Vec<Origin>)>,
    );

    #[test]
    fn permissions_and_teams_come_with_every_origin() {
        use UserPermission::*;
        let roles = [
            role(
                "Telephony Administrator",
                &[UsersAndTeams, CallQueuesManage],
                Some("IT"),
            ),
            role("Receptionist", &[ReceptionConsole, CallQueuesAnswer], None),
            role("Agent", &[CallQueuesAnswer], None),
        ];
        let mut sales = team("Sales", &[]);
        sales.members = vec!["dee@contoso.example".into()];
        let teams = [
            team("IT", &[]),
            team("Front desk", &["Receptionist"]),
            sales,
        ];
        let cases: Vec<Case> = vec![
            ("nothing held", user(&[], &[], &[]), vec![], vec![]),
            (
                "a direct permission",
                user(&[], &[], &[VoicemailManage]),
                vec![(VoicemailManage, vec![Origin::Direct])],
                vec![],
            ),
            (
                "a role naming its team makes the holder a member",
                user(&["Telephony Administrator"], &[], &[]),
                vec![
                    (UsersAndTeams, vec![by_role("Telephony Administrator")]),
                    (CallQueuesManage, vec![by_role("Telephony Administrator")]),
                ],
                vec![("IT", vec![team_role("Telephony Administrator")])],
            ),
            (
                "a team naming the role makes the holder a member",
                user(&["Receptionist"], &[], &[]),
                vec![
                    (CallQueuesAnswer, vec![by_role("Receptionist")]),
                    (ReceptionConsole, vec![by_role("Receptionist")]),
                ],
                vec![("Front desk", vec![team_role("Receptionist")])],
            ),
            (
                "two roles and a direct grant of one permission: all origins, once each",
                user(
                    &["Receptionist", "Agent"],
                    &["Front desk", "Sales"],
                    &[CallQueuesAnswer],
                ),
                vec![
                    (
                        CallQueuesAnswer,
                        vec![Origin::Direct, by_role("Agent"), by_role("Receptionist")],
                    ),
                    (ReceptionConsole, vec![by_role("Receptionist")]),
                ],
                vec![
                    (
                        "Front desk",
                        vec![Origin::Direct, team_role("Receptionist")],
                    ),
                    ("Sales", vec![Origin::Direct]),
                ],
            ),
            (
                "a team listing the user makes it a member",
                UserAssignment {
                    user_id: "dee@contoso.example".into(),
                    ..user(&[], &[], &[])
                },
                vec![],
                vec![("Sales", vec![Origin::Member])],
            ),
            (
                "an unknown role or team gives nothing",
                user(&["Ghost"], &["Nowhere"], &[]),
                vec![],
                vec![],
            ),
        ];
        for (case, assignment, permissions, memberships) in cases {
            let effective = effective_service_access(&assignment, &roles, &teams);
            let got: Vec<(UserPermission, Vec<Origin>)> = effective
                .permissions
                .iter()
                .map(|p| (p.permission, p.origins.clone()))
                .collect();
            assert_eq!(got, permissions, "{case}: permissions");
            let got: Vec<(&str, Vec<Origin>)> = effective
                .teams
                .iter()
                .map(|t| (t.team.as_str(), t.origins.clone()))
                .collect();
            assert_eq!(got, memberships, "{case}: teams");
        }
    }

    #[test]
    fn team_permissions_apply_in_the_roles_team_and_a_disabled_team_keeps_its_members() {
        let mut lead = role("Team lead", &[], Some("Support"));
        lead.team_permissions = vec![
            TeamPermission::MembersManage,
            TeamPermission::ChannelsCreate,
        ];
        let mut support = team("Support", &[]);
        support.disabled = true;
        let effective =
            effective_service_access(&user(&["Team lead"], &[], &[]), &[lead], &[support]);
        let membership = effective.team("Support").expect("a member");
        assert!(membership.disabled);
        assert_eq!(
            membership
                .permissions
                .iter()
                .map(|p| (p.permission, p.roles.clone()))
                .collect::<Vec<_>>(),
            [
                (TeamPermission::ChannelsCreate, vec!["Team lead".to_owned()]),
                (TeamPermission::MembersManage, vec!["Team lead".to_owned()]),
            ]
        );
    }

    #[test]
    fn deleting_a_role_removes_only_the_memberships_that_came_from_it() {
        let roles = [
            role("Agent", &[], Some("Queue")),
            role("Lead", &[], Some("Queue")),
        ];
        let teams = [team("Queue", &[]), team("Sales", &["Agent"])];
        let users = vec![
            ("ann@contoso.example".to_owned(), user(&["Agent"], &[], &[])),
            (
                "bob@contoso.example".to_owned(),
                user(&["Agent", "Lead"], &[], &[]),
            ),
            (
                "cat@contoso.example".to_owned(),
                user(&["Agent"], &["Queue"], &[]),
            ),
        ];
        let without_agent = [role("Lead", &[], Some("Queue"))];
        let lost = memberships_lost(&users, (&roles, &teams), (&without_agent, &teams));
        let lost: Vec<(&str, &str)> = lost
            .iter()
            .map(|l| (l.user.as_str(), l.team.as_str()))
            .collect();
        assert_eq!(
            lost,
            [
                // Ann had both teams only through Agent.
                ("ann@contoso.example", "Queue"),
                ("ann@contoso.example", "Sales"),
                // Bob keeps Queue through Lead; Cat keeps Queue as an explicit member.
                ("bob@contoso.example", "Sales"),
                ("cat@contoso.example", "Sales"),
            ]
        );
    }

    #[test]
    fn user_ids_and_numbers_are_checked_and_kept_as_sent() {
        let cases = [
            ("ann@Contoso.example", Ok("ann@contoso.example")),
            ("+44 20 7946 0000", Ok("+442079460000")),
            ("+1 (425) 555-0100", Ok("+14255550100")),
            ("ann", Err("is not a user ID")),
            ("+0 20 7946 0000", Err("never starts with 0")),
            ("+44 20", Err("8 to 15 digits")),
            ("+44 20 7946 000x", Err("only digits")),
            ("ann@", Err("not a valid email")),
        ];
        for (input, expected) in cases {
            match (UserId::parse(input), expected) {
                (Ok(id), Ok(canonical)) => assert_eq!(id.canonical(), canonical, "{input}"),
                (Err(error), Err(words)) => {
                    let message = error.to_string();
                    assert!(message.contains(words), "{input}: {message}");
                    assert!(
                        message.contains(input),
                        "{input}: the value is named: {message}"
                    );
                }
                (got, expected) => panic!("{input}: {got:?}, expected {expected:?}"),
            }
        }
        let number = PhoneNumber::parse("mobileNumber", " +44 7700 900123 ").unwrap();
        assert_eq!(
            (number.raw.as_str(), number.e164.as_str()),
            ("+44 7700 900123", "+447700900123")
        );
    }

    #[test]
    fn time_zones_come_from_the_tz_database() {
        assert_eq!(time_zone("Europe/London").unwrap(), "Europe/London");
        assert_eq!(
            time_zone("America/Argentina/Buenos_Aires").unwrap(),
            "America/Argentina/Buenos_Aires"
        );
        for bad in ["Europe/Atlantis", "", "GMT+25", "../etc/passwd"] {
            let error = time_zone(bad).unwrap_err().to_string();
            assert!(error.contains("IANA"), "{bad}: {error}");
        }
        assert_eq!(country_code("+44").unwrap(), "+44");
        assert!(
            country_code("44").is_err()
                && country_code("+0").is_err()
                && country_code("+1234").is_err()
        );
    }

    #[test]
    fn catalog_names_round_trip_and_unknown_names_list_the_catalog() {
        for license in LicenseType::ALL {
            assert_eq!(license.as_str().parse::<LicenseType>().unwrap(), *license);
        }
        for permission in UserPermission::ALL {
            assert_eq!(
                permission.as_str().parse::<UserPermission>().unwrap(),
                *permission
            );
        }
        let error = "Gold".parse::<LicenseType>().unwrap_err().to_string();
        assert!(
            error.contains("\"Gold\"") && error.contains("Standard, Premium, CommonArea"),
            "{error}"
        );
        let names: BTreeSet<&str> = UserPermission::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names.len(), UserPermission::ALL.len(), "names are unique");
    }
}
