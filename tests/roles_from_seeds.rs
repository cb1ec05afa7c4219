//! One case per statement of the seeds' admin-roles tables and notes (seeds 000, 001, 002).
//!
//! The fixture tree:
//!
//! ```text
//! p   Partner
//! ├── c    Client, no sub-contract
//! │   └── g    Client (sub-account)
//! └── cs   Client with a sub-contract
//!     └── gs   Client (sub-account)
//! direct      top-level Client, no sub-contract
//! ```

use portal_operator::domain::Permission::{self, *};
use portal_operator::domain::{
    Account, AccountTree, EffectiveAccess, Grant, GrantAction, GrantError, GrantScope, LastOwner,
    Role, check_grant, check_revoke, effective_access,
};

fn tree() -> AccountTree {
    AccountTree::new([
        Account::partner("p").with_tenant("tenant-p"),
        Account::client("c", "p"),
        Account::client("g", "c"),
        Account::client("cs", "p").with_sub_contract(),
        Account::client("gs", "cs"),
        Account {
            parent: None,
            ..Account::client("direct", "unused")
        },
    ])
    .expect("the fixture is a valid tree")
}

fn access(grants: &[Grant], at: &str) -> EffectiveAccess {
    effective_access(grants, &tree(), &"ada".into(), &at.into()).expect("fixture account")
}

/// A statement of the seeds, the grant that exercises it, and what must (not) follow on one
/// account.
struct Case {
    statement: &'static str,
    role: Role,
    granted_on: &'static str,
    scope: GrantScope,
    at: &'static str,
    has: &'static [Permission],
    lacks: &'static [Permission],
    has_roles: &'static [Role],
    lacks_roles: &'static [Role],
}

const fn case(
    statement: &'static str,
    role: Role,
    granted_on: &'static str,
    at: &'static str,
) -> Case {
    Case {
        statement,
        role,
        granted_on,
        scope: GrantScope::AccountAndDescendants,
        at,
        has: &[],
        lacks: &[],
        has_roles: &[],
        lacks_roles: &[],
    }
}

impl Case {
    const fn has(mut self, permissions: &'static [Permission]) -> Self {
        self.has = permissions;
        self
    }
    const fn lacks(mut self, permissions: &'static [Permission]) -> Self {
        self.lacks = permissions;
        self
    }
    const fn has_roles(mut self, roles: &'static [Role]) -> Self {
        self.has_roles = roles;
        self
    }
    const fn lacks_roles(mut self, roles: &'static [Role]) -> Self {
        self.lacks_roles = roles;
        self
    }
    const fn account_only(mut self) -> Self {
        self.scope = GrantScope::AccountOnly;
        self
    }
}

use Role::*;

const CASES: &[Case] = &[
    // --- Account Owner -------------------------------------------------------------------
    case(
        "Account Owner implies Service Contributor",
        AccountOwner,
        "c",
        "c",
    )
    .has_roles(&[ServiceContributor]),
    case(
        "Account Owner implies Service Viewer",
        AccountOwner,
        "c",
        "c",
    )
    .has_roles(&[ServiceViewer]),
    case("Account Owner: Admin Invitations", AccountOwner, "c", "c")
        .has(&[AdminInvitationsRead, AdminInvitationsWrite]),
    case("Account Owner: Admin Users", AccountOwner, "c", "c")
        .has(&[AdminUsersRead, AdminUsersWrite]),
    case("Account Owner: API Keys", AccountOwner, "c", "c").has(&[ApiKeysRead, ApiKeysWrite]),
    case(
        "Account Owner: External Links (Read Only)",
        AccountOwner,
        "c",
        "c",
    )
    .has(&[ExternalLinksRead])
    .lacks(&[ExternalLinksWrite]),
    case(
        "Account Owner: Services (001); view or change all service settings (002)",
        AccountOwner,
        "c",
        "c",
    )
    .has(&[ServicesRead, ServicesWrite]),
    case(
        "Account Owner: Start/review Sync Jobs; perform user syncs (002)",
        AccountOwner,
        "c",
        "c",
    )
    .has(&[SyncRun, SyncJobsRead]),
    case(
        "Account Owner: invite new service admin (002)",
        AccountOwner,
        "p",
        "p",
    )
    .has(&[AdminInvitationsWrite]),
    case(
        "Account Owner makes no financial or contractual changes",
        AccountOwner,
        "p",
        "p",
    )
    .lacks(&[SubscriptionsWrite, AccountsCreate, BillingRead])
    .lacks_roles(&[SubscriptionContributor, SubscriptionViewer]),
    // --- Subscription Contributor ----------------------------------------------------------
    case(
        "Subscription Contributor: Add/amend Subscriptions",
        SubscriptionContributor,
        "p",
        "p",
    )
    .has(&[SubscriptionsWrite]),
    case(
        "Subscription Contributor: Account creation and management; add client accounts (002)",
        SubscriptionContributor,
        "p",
        "p",
    )
    .has(&[AccountsCreate, AccountsWrite]),
    case(
        "Subscription Contributor implies Subscription Viewer",
        SubscriptionContributor,
        "p",
        "p",
    )
    .has_roles(&[SubscriptionViewer])
    .has(&[BillingRead, SubscriptionsRead]),
    case(
        "Subscription Contributor implies Account Owner for child accounts",
        SubscriptionContributor,
        "p",
        "c",
    )
    .has_roles(&[AccountOwner])
    .has(&[ApiKeysWrite, AdminUsersWrite]),
    case(
        "…for child accounts only: not Account Owner on the partner itself",
        SubscriptionContributor,
        "p",
        "p",
    )
    .lacks_roles(&[AccountOwner, ServiceContributor])
    .lacks(&[ApiKeysWrite, AdminUsersWrite, AdminInvitationsWrite]),
    case(
        "…and on grandchildren: inheritance reaches sub-accounts",
        SubscriptionContributor,
        "p",
        "g",
    )
    .has_roles(&[AccountOwner]),
    case(
        "Not a functioning role at the client account level…",
        SubscriptionContributor,
        "c",
        "c",
    )
    .lacks_roles(&[SubscriptionContributor, SubscriptionViewer, AccountOwner])
    .lacks(&[SubscriptionsWrite, AccountsCreate, BillingRead]),
    case(
        "…unless a sub-contract exists",
        SubscriptionContributor,
        "cs",
        "cs",
    )
    .has_roles(&[SubscriptionContributor, SubscriptionViewer])
    .has(&[SubscriptionsWrite, AccountsCreate]),
    case(
        "Sub-contract client: Account Owner only on its children",
        SubscriptionContributor,
        "cs",
        "gs",
    )
    .has_roles(&[AccountOwner]),
    case(
        "Client admins cannot make financial changes even when inherited from the partner",
        SubscriptionContributor,
        "p",
        "c",
    )
    .lacks(&[SubscriptionsWrite, AccountsCreate, BillingRead]),
    case(
        "Inherited down to a sub-contract client, it functions there",
        SubscriptionContributor,
        "p",
        "cs",
    )
    .has(&[SubscriptionsWrite, BillingRead, ApiKeysWrite]),
    case(
        "A top-level client without a sub-contract: not functioning",
        SubscriptionContributor,
        "direct",
        "direct",
    )
    .lacks(&[SubscriptionsWrite]),
    // --- Subscription Viewer -------------------------------------------------------------------
    case(
        "Subscription Viewer: Account configuration (read only)",
        SubscriptionViewer,
        "p",
        "p",
    )
    .has(&[AccountConfigRead]),
    case(
        "Subscription Viewer: Billing (001); invoice summary and breakdown",
        SubscriptionViewer,
        "p",
        "p",
    )
    .has(&[BillingRead]),
    case(
        "Subscription Viewer: Order History",
        SubscriptionViewer,
        "p",
        "p",
    )
    .has(&[OrderHistoryRead]),
    case(
        "Subscription Viewer: Services and Subscriptions",
        SubscriptionViewer,
        "p",
        "p",
    )
    .has(&[ServicesRead, SubscriptionsRead]),
    case(
        "Subscription Viewer: client accounts, read only (002)",
        SubscriptionViewer,
        "p",
        "p",
    )
    .has(&[AccountsRead])
    .lacks(&[AccountsWrite, AccountsCreate]),
    case(
        "Subscription Viewer is read only",
        SubscriptionViewer,
        "p",
        "p",
    )
    .lacks(&[SubscriptionsWrite, ServicesWrite, AdminInvitationsRead]),
    case(
        "Subscription Viewer implies nothing",
        SubscriptionViewer,
        "p",
        "p",
    )
    .lacks_roles(&[AccountOwner, ServiceViewer]),
    case(
        "Subscription Viewer on a client without a sub-contract grants nothing there",
        SubscriptionViewer,
        "c",
        "c",
    )
    .lacks(&[BillingRead, AccountConfigRead, AccountsRead])
    .lacks_roles(&[SubscriptionViewer]),
    // --- Service Contributor ----------------------------------------------------------------
    case(
        "Service Contributor implies Service Viewer",
        ServiceContributor,
        "c",
        "c",
    )
    .has_roles(&[ServiceViewer]),
    case(
        "Service Contributor: create and view event logs",
        ServiceContributor,
        "c",
        "c",
    )
    .has(&[EventLogsRead, EventLogsWrite]),
    case(
        "Service Contributor: view account configurations",
        ServiceContributor,
        "c",
        "c",
    )
    .has(&[AccountConfigRead]),
    case(
        "Service Contributor: set and read Teams presence",
        ServiceContributor,
        "c",
        "c",
    )
    .has(&[TeamsPresenceRead, TeamsPresenceWrite]),
    case(
        "Service Contributor: create and manage administration invitations",
        ServiceContributor,
        "c",
        "c",
    )
    .has(&[AdminInvitationsWrite]),
    case(
        "Service Contributor: read API keys, but cannot create them",
        ServiceContributor,
        "c",
        "c",
    )
    .has(&[ApiKeysRead])
    .lacks(&[ApiKeysWrite]),
    case(
        "Service Contributor: view user call log and set diagnostic hold",
        ServiceContributor,
        "c",
        "c",
    )
    .has(&[CallsRead, CallsDiagnosticHold]),
    case(
        "Service Contributor: read PBX/trunk templates only",
        ServiceContributor,
        "c",
        "c",
    )
    .has(&[PbxTemplatesRead])
    .lacks(&[PbxTemplatesWrite]),
    case(
        "Service Contributor: create and manage service users",
        ServiceContributor,
        "c",
        "c",
    )
    .has(&[ServiceUsersRead, ServiceUsersWrite]),
    case(
        "Service Contributor does not manage admin users (not Account Owner)",
        ServiceContributor,
        "c",
        "c",
    )
    .lacks(&[AdminUsersWrite, ServicesWrite])
    .lacks_roles(&[AccountOwner]),
    // --- Service Viewer ------------------------------------------------------------------------
    case(
        "Service Viewer: read accounts, admin invitations, admin users",
        ServiceViewer,
        "c",
        "c",
    )
    .has(&[AccountsRead, AdminInvitationsRead, AdminUsersRead]),
    case(
        "Service Viewer: calls, documents, services, service users, sync jobs",
        ServiceViewer,
        "c",
        "c",
    )
    .has(&[
        CallsRead,
        DocumentsRead,
        ServicesRead,
        ServiceUsersRead,
        SyncJobsRead,
    ]),
    case("Service Viewer is read only", ServiceViewer, "c", "c").lacks(&[
        AdminInvitationsWrite,
        AdminUsersWrite,
        ServicesWrite,
        ServiceUsersWrite,
        SyncRun,
    ]),
    // --- Brand Contributor ---------------------------------------------------------------------
    case(
        "Brand Contributor: accounts read only",
        BrandContributor,
        "c",
        "c",
    )
    .has(&[AccountsRead])
    .lacks(&[AccountsWrite]),
    case(
        "Brand Contributor reads admin-invitation roles but cannot create invitations",
        BrandContributor,
        "c",
        "c",
    )
    .has(&[AdminInvitationsReadRoles])
    .lacks(&[AdminInvitationsWrite]),
    case(
        "Brand Contributor: branding upload, download and delete",
        BrandContributor,
        "c",
        "c",
    )
    .has(&[BrandingRead, BrandingWrite]),
    case(
        "Brand Contributor: company logos, icons and external links",
        BrandContributor,
        "c",
        "c",
    )
    .has(&[
        CompanyLogosWrite,
        IconsWrite,
        ExternalLinksRead,
        ExternalLinksWrite,
    ]),
    case(
        "Brand Contributor: PBX templates CRUD and hiding ancestor templates",
        BrandContributor,
        "c",
        "c",
    )
    .has(&[
        PbxTemplatesRead,
        PbxTemplatesWrite,
        PbxTemplatesHideAncestor,
    ]),
    case(
        "Brand Contributor implies nothing",
        BrandContributor,
        "c",
        "c",
    )
    .lacks_roles(&[ServiceViewer, AccountOwner])
    .lacks(&[AdminUsersRead]),
    // --- Sync Contributor ----------------------------------------------------------------------
    case(
        "Sync Contributor: accounts and services read only, sync now",
        SyncContributor,
        "c",
        "c",
    )
    .has(&[AccountsRead, ServicesRead, SyncRun])
    .lacks(&[ServicesWrite]),
    case(
        "Sync Contributor has no access to any other function (002)",
        SyncContributor,
        "c",
        "c",
    )
    .lacks(&[
        AdminInvitationsRead,
        AdminUsersRead,
        SyncJobsRead,
        ServiceUsersRead,
        CallsRead,
    ]),
    // --- Inheritance down the tree -----------------------------------------------------------
    case(
        "Roles inherit rights from roles assigned to parent accounts",
        AccountOwner,
        "p",
        "g",
    )
    .has(&[ApiKeysWrite]),
    case(
        "Inheritance only goes down: a client grant gives nothing on the partner",
        AccountOwner,
        "c",
        "p",
    )
    .lacks_roles(&[AccountOwner, ServiceViewer]),
    case(
        "No sideways inheritance: a client grant gives nothing on its sibling",
        AccountOwner,
        "c",
        "cs",
    )
    .lacks_roles(&[AccountOwner]),
    case(
        "AccountOnly scope stays on the account",
        AccountOwner,
        "p",
        "c",
    )
    .account_only()
    .lacks_roles(&[AccountOwner]),
    case(
        "AccountOnly scope still applies on the account itself",
        AccountOwner,
        "p",
        "p",
    )
    .account_only()
    .has_roles(&[AccountOwner, ServiceContributor, ServiceViewer]),
    case(
        "AccountOnly Subscription Contributor gives no Account Owner anywhere",
        SubscriptionContributor,
        "p",
        "c",
    )
    .account_only()
    .lacks_roles(&[AccountOwner]),
];

#[test]
fn every_seed_statement_holds() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let grant = Grant {
            scope: case.scope,
            ..Grant::new("ada", case.granted_on, case.role)
        };
        let view = access(&[grant], case.at);
        for permission in case.has {
            if !view.has_permission(*permission) {
                failures.push(format!("{}: lacks {permission}", case.statement));
            }
        }
        for permission in case.lacks {
            if view.has_permission(*permission) {
                failures.push(format!(
                    "{}: has {permission} via {}",
                    case.statement,
                    view.explain(*permission).unwrap()
                ));
            }
        }
        for role in case.has_roles {
            if !view.has_role(*role) {
                failures.push(format!("{}: lacks role {role}", case.statement));
            }
        }
        for role in case.lacks_roles {
            if view.has_role(*role) {
                failures.push(format!("{}: has role {role}", case.statement));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} statements fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn account_owner_is_the_default_role() {
    assert_eq!(Role::DEFAULT, AccountOwner);
}

#[test]
fn sync_contributor_grants_exactly_its_three_permissions() {
    let view = access(&[Grant::new("ada", "c", SyncContributor)], "c");
    let granted: Vec<Permission> = view.permissions.keys().copied().collect();
    assert_eq!(granted, [AccountsRead, ServicesRead, SyncRun]);
}

#[test]
fn implied_roles_expand_transitively_with_their_path() {
    let view = access(&[Grant::new("ada", "p", SubscriptionContributor)], "c");
    let path = &view.roles[&ServiceViewer][0];
    assert_eq!(
        path.implication_chain,
        [SubscriptionContributor, AccountOwner, ServiceViewer]
    );
    assert!(path.inherited);
    assert_eq!(path.granted_on.as_str(), "p");
    assert_eq!(
        path.to_string(),
        "SubscriptionContributor granted on p (inherited) → implies AccountOwner → implies ServiceViewer"
    );
}

#[test]
fn a_permission_is_explained_by_its_shortest_path() {
    let view = access(&[Grant::new("ada", "c", AccountOwner)], "c");
    // AccountOwner grants api_keys.read itself and again through ServiceContributor.
    let paths = &view.permissions[&ApiKeysRead];
    assert_eq!(paths.len(), 2);
    assert_eq!(
        view.explain(ApiKeysRead).unwrap().implication_chain,
        [AccountOwner]
    );
    assert_eq!(
        paths[1].implication_chain,
        [AccountOwner, ServiceContributor]
    );
}

#[test]
fn grant_source_is_carried_into_the_explanation() {
    let grant = Grant::new("ada", "p", AccountOwner).from_source("RoleBinding/team-a/owners");
    let view = access(&[grant], "g");
    assert_eq!(
        view.explain(AdminUsersWrite).unwrap().source.as_deref(),
        Some("RoleBinding/team-a/owners")
    );
}

#[test]
fn an_inert_role_says_why() {
    let view = access(&[Grant::new("ada", "c", SubscriptionViewer)], "c");
    assert!(view.is_empty());
    assert_eq!(view.inert.len(), 1);
    assert_eq!(
        view.inert[0].reason,
        "SubscriptionViewer does not function on client account c because it has no sub-contract"
    );
}

#[test]
fn inherited_subscription_roles_are_inert_on_a_client_without_sub_contract_but_owner_applies() {
    let view = access(&[Grant::new("ada", "p", SubscriptionContributor)], "c");
    let inert: Vec<Role> = view.inert.iter().map(|i| i.path.role()).collect();
    assert_eq!(inert, [SubscriptionContributor, SubscriptionViewer]);
    assert!(view.has_role(AccountOwner));
}

#[test]
fn grants_of_other_subjects_are_ignored() {
    let view = access(&[Grant::new("bob", "p", AccountOwner)], "p");
    assert!(view.is_empty());
}

#[test]
fn unknown_account_is_an_error() {
    let error = effective_access(&[], &tree(), &"ada".into(), &"nowhere".into()).unwrap_err();
    assert_eq!(error.to_string(), "account nowhere does not exist");
}

// --- check_grant: escalation is refused -------------------------------------------------------

fn grant_check(
    granter_grants: &[Grant],
    action: GrantAction,
    on: &str,
    roles: &[Role],
    scope: GrantScope,
) -> Result<(), GrantError> {
    check_grant(
        granter_grants,
        &tree(),
        &"ada".into(),
        action,
        &on.into(),
        roles,
        scope,
    )
}

const DOWN: GrantScope = GrantScope::AccountAndDescendants;

#[test]
fn account_owner_may_invite_and_grant_any_role_it_holds() {
    let owner = [Grant::new("ada", "c", AccountOwner)];
    for roles in [
        &[AccountOwner][..],
        &[ServiceContributor, ServiceViewer],
        &[ServiceViewer],
    ] {
        assert_eq!(
            grant_check(&owner, GrantAction::Invite, "c", roles, DOWN),
            Ok(()),
            "{roles:?}"
        );
        assert_eq!(
            grant_check(&owner, GrantAction::Grant, "g", roles, DOWN),
            Ok(()),
            "{roles:?}"
        );
    }
}

#[test]
fn service_contributor_may_invite_but_not_escalate_to_account_owner() {
    let contributor = [Grant::new("ada", "c", ServiceContributor)];
    assert_eq!(
        grant_check(
            &contributor,
            GrantAction::Invite,
            "c",
            &[ServiceViewer],
            DOWN
        ),
        Ok(())
    );
    let error = grant_check(
        &contributor,
        GrantAction::Invite,
        "c",
        &[AccountOwner],
        DOWN,
    )
    .unwrap_err();
    let GrantError::Escalation { missing, .. } = &error else {
        panic!("{error}");
    };
    assert!(missing.contains(&(AccountOwner, "c".into())), "{error}");
    assert!(
        error
            .to_string()
            .contains("does not hold AccountOwner on account c"),
        "{error}"
    );
}

#[test]
fn service_contributor_may_not_grant_roles_to_existing_admins() {
    let contributor = [Grant::new("ada", "c", ServiceContributor)];
    assert_eq!(
        grant_check(
            &contributor,
            GrantAction::Grant,
            "c",
            &[ServiceViewer],
            DOWN
        ),
        Err(GrantError::MissingPermission {
            granter: "ada".into(),
            account: "c".into(),
            permission: AdminUsersWrite
        })
    );
}

#[test]
fn brand_contributor_may_not_invite() {
    let brand = [Grant::new("ada", "c", BrandContributor)];
    let error =
        grant_check(&brand, GrantAction::Invite, "c", &[BrandContributor], DOWN).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ada lacks admin_invitations.write on account c"
    );
}

#[test]
fn account_only_owner_may_not_grant_down_the_tree() {
    let owner_here_only = [Grant::new("ada", "c", AccountOwner).account_only()];
    assert_eq!(
        grant_check(
            &owner_here_only,
            GrantAction::Grant,
            "c",
            &[AccountOwner],
            GrantScope::AccountOnly
        ),
        Ok(())
    );
    let error = grant_check(
        &owner_here_only,
        GrantAction::Grant,
        "c",
        &[AccountOwner],
        DOWN,
    )
    .unwrap_err();
    assert!(
        matches!(&error, GrantError::Escalation { missing, .. } if missing.contains(&(AccountOwner, "g".into()))),
        "{error}"
    );
}

#[test]
fn subscription_contributor_on_partner_may_grant_owner_on_clients_but_not_on_partner() {
    let contributor = [Grant::new("ada", "p", SubscriptionContributor)];
    assert_eq!(
        grant_check(&contributor, GrantAction::Grant, "c", &[AccountOwner], DOWN),
        Ok(())
    );
    // On the partner it holds no AccountOwner, so it may not even manage admins there.
    assert!(matches!(
        grant_check(&contributor, GrantAction::Grant, "p", &[AccountOwner], DOWN),
        Err(GrantError::MissingPermission {
            permission: AdminUsersWrite,
            ..
        })
    ));
}

#[test]
fn owner_and_subscription_contributor_on_partner_may_grant_subscription_contributor() {
    let grants = [
        Grant::new("ada", "p", AccountOwner),
        Grant::new("ada", "p", SubscriptionContributor),
    ];
    assert_eq!(
        grant_check(
            &grants,
            GrantAction::Grant,
            "p",
            &[SubscriptionContributor],
            DOWN
        ),
        Ok(())
    );
    let owner_only = [Grant::new("ada", "p", AccountOwner)];
    assert!(matches!(
        grant_check(
            &owner_only,
            GrantAction::Grant,
            "p",
            &[SubscriptionViewer],
            DOWN
        ),
        Err(GrantError::Escalation { .. })
    ));
}

#[test]
fn subscription_roles_are_not_assignable_on_a_client_without_sub_contract() {
    let grants = [
        Grant::new("ada", "p", AccountOwner),
        Grant::new("ada", "p", SubscriptionContributor),
    ];
    let error = grant_check(
        &grants,
        GrantAction::Grant,
        "c",
        &[SubscriptionViewer],
        DOWN,
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            GrantError::NotAssignable {
                role: SubscriptionViewer,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("client without one"), "{error}");
    assert_eq!(
        grant_check(
            &grants,
            GrantAction::Grant,
            "cs",
            &[SubscriptionViewer],
            DOWN
        ),
        Ok(())
    );
}

#[test]
fn granting_no_roles_is_refused() {
    let owner = [Grant::new("ada", "c", AccountOwner)];
    assert_eq!(
        grant_check(&owner, GrantAction::Invite, "c", &[], DOWN),
        Err(GrantError::NoRoles)
    );
}

#[test]
fn another_admins_grants_do_not_lend_their_roles() {
    let grants = [
        Grant::new("ada", "c", ServiceContributor),
        Grant::new("bob", "c", AccountOwner),
    ];
    assert!(matches!(
        grant_check(&grants, GrantAction::Invite, "c", &[AccountOwner], DOWN),
        Err(GrantError::Escalation { .. })
    ));
}

// --- check_revoke: an account keeps an owner ---------------------------------------------------

#[test]
fn revoking_the_last_partner_owner_is_refused() {
    let grants = [
        Grant::new("ada", "p", AccountOwner),
        Grant::new("bob", "p", ServiceViewer),
    ];
    assert_eq!(
        check_revoke(&grants, &tree(), |g| g.subject.0 == "ada"),
        Err(LastOwner {
            account: "p".into()
        })
    );
}

#[test]
fn revoking_one_of_two_owners_is_allowed() {
    let grants = [
        Grant::new("ada", "p", AccountOwner),
        Grant::new("bob", "p", AccountOwner),
    ];
    assert_eq!(
        check_revoke(&grants, &tree(), |g| g.subject.0 == "ada"),
        Ok(())
    );
}

#[test]
fn revoking_the_last_owner_of_a_top_level_client_is_refused() {
    let grants = [Grant::new("ada", "direct", AccountOwner)];
    let error = check_revoke(&grants, &tree(), |_| true).unwrap_err();
    assert_eq!(
        error.to_string(),
        "account direct would be left with no AccountOwner; grant AccountOwner to another admin first"
    );
}

#[test]
fn a_client_below_a_partner_may_lose_its_own_owner() {
    let grants = [
        Grant::new("ada", "p", AccountOwner),
        Grant::new("bob", "c", AccountOwner),
    ];
    assert_eq!(
        check_revoke(&grants, &tree(), |g| g.subject.0 == "bob"),
        Ok(())
    );
}

#[test]
fn an_inherited_owner_counts_for_a_nested_partner() {
    let tree = AccountTree::new([
        Account::partner("d"),
        Account::partner("r").with_parent("d"),
    ])
    .unwrap();
    let grants = [
        Grant::new("ada", "d", AccountOwner),
        Grant::new("bob", "r", AccountOwner),
    ];
    assert_eq!(
        check_revoke(&grants, &tree, |g| g.subject.0 == "bob"),
        Ok(())
    );
    // An AccountOnly grant on the distributor does not reach the reseller.
    let grants = [
        Grant::new("ada", "d", AccountOwner).account_only(),
        Grant::new("bob", "r", AccountOwner),
    ];
    assert_eq!(
        check_revoke(&grants, &tree, |g| g.subject.0 == "bob"),
        Err(LastOwner {
            account: "r".into()
        })
    );
}

#[test]
fn revoking_a_non_owner_role_never_trips_the_owner_rule() {
    let grants = [
        Grant::new("ada", "p", AccountOwner),
        Grant::new("ada", "p", SubscriptionContributor),
    ];
    assert_eq!(
        check_revoke(&grants, &tree(), |g| g.role == SubscriptionContributor),
        Ok(())
    );
}

#[test]
fn an_account_that_never_had_an_owner_does_not_block_revokes() {
    let grants = [Grant::new("ada", "p", ServiceViewer)];
    assert_eq!(check_revoke(&grants, &tree(), |_| true), Ok(()));
}
