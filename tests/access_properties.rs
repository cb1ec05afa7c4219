//! Properties of access evaluation over random account trees and grants.

use std::collections::BTreeSet;

use portal_operator::domain::{
    Account, AccountId, AccountKind, AccountTree, Grant, GrantScope, Permission, Role, SubjectId,
    effective_access, functions_on,
};
use proptest::prelude::*;

/// A random valid tree: account `a{i}` has no parent or a parent with a smaller index; a partner
/// only ever sits at the top or below another partner.
fn arb_tree() -> impl Strategy<Value = AccountTree> {
    prop::collection::vec(
        (
            any::<Option<prop::sample::Index>>(),
            any::<bool>(),
            any::<bool>(),
        ),
        1..12,
    )
    .prop_map(|specs| {
        let mut accounts: Vec<Account> = Vec::new();
        for (i, (parent, wants_partner, sub_contract)) in specs.into_iter().enumerate() {
            let parent = if i == 0 {
                None
            } else {
                parent.map(|index| index.index(i))
            };
            let parent_is_partner = parent.is_none_or(|p| accounts[p].kind == AccountKind::Partner);
            accounts.push(Account {
                id: AccountId::new(format!("a{i}")),
                parent: parent.map(|p| AccountId::new(format!("a{p}"))),
                kind: if wants_partner && parent_is_partner {
                    AccountKind::Partner
                } else {
                    AccountKind::Client
                },
                sub_contract,
                tenant_id: None,
            });
        }
        AccountTree::new(accounts).expect("generated trees are valid")
    })
}

fn arb_role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn arb_scope() -> impl Strategy<Value = GrantScope> {
    prop_oneof![
        Just(GrantScope::AccountAndDescendants),
        Just(GrantScope::AccountOnly)
    ]
}

/// A tree, some grants to "ada" on its accounts, and one account to look at.
fn arb_world() -> impl Strategy<Value = (AccountTree, Vec<Grant>, AccountId)> {
    arb_tree().prop_flat_map(|tree| {
        let ids: Vec<AccountId> = {
            let mut ids: Vec<AccountId> = tree.accounts().map(|a| a.id.clone()).collect();
            ids.sort();
            ids
        };
        let grant = (prop::sample::select(ids.clone()), arb_role(), arb_scope()).prop_map(
            |(account, role, scope)| Grant {
                subject: SubjectId::new("ada"),
                account,
                role,
                scope,
                source: None,
            },
        );
        (
            Just(tree),
            prop::collection::vec(grant, 0..6),
            prop::sample::select(ids),
        )
    })
}

fn roles_at(grants: &[Grant], tree: &AccountTree, account: &AccountId) -> BTreeSet<Role> {
    effective_access(grants, tree, &"ada".into(), account)
        .unwrap()
        .roles
        .keys()
        .copied()
        .collect()
}

fn permissions_at(
    grants: &[Grant],
    tree: &AccountTree,
    account: &AccountId,
) -> BTreeSet<Permission> {
    effective_access(grants, tree, &"ada".into(), account)
        .unwrap()
        .permissions
        .keys()
        .copied()
        .collect()
}

fn granted_here(roles: &BTreeSet<Role>, account: &AccountId) -> Vec<Grant> {
    roles
        .iter()
        .map(|role| Grant::new("ada", account.as_str(), *role).account_only())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Granting on an account exactly the roles in effect there changes nothing: the implication
    /// closure is idempotent.
    #[test]
    fn closure_is_idempotent((tree, grants, account) in arb_world()) {
        let once = roles_at(&grants, &tree, &account);
        let twice = roles_at(&granted_here(&once, &account), &tree, &account);
        prop_assert_eq!(&twice, &once);
        let thrice = roles_at(&granted_here(&twice, &account), &tree, &account);
        prop_assert_eq!(thrice, once);
    }

    /// A grant on an ancestor (where its role functions) never yields less on a descendant than
    /// the same grant made on the descendant itself. It may yield more: the child-only
    /// AccountOwner of SubscriptionContributor.
    #[test]
    fn ancestor_grant_never_yields_less((tree, _grants, account) in arb_world(), role in arb_role()) {
        let descendant = tree.get(&account).unwrap().clone();
        for ancestor in tree.self_and_ancestors(&account).skip(1) {
            if !functions_on(role, ancestor) {
                continue;
            }
            let from_ancestor = [Grant::new("ada", ancestor.id.as_str(), role)];
            let on_itself = [Grant::new("ada", descendant.id.as_str(), role)];
            let inherited = permissions_at(&from_ancestor, &tree, &account);
            let direct = permissions_at(&on_itself, &tree, &account);
            prop_assert!(inherited.is_superset(&direct), "{role} on {} vs on {}: {:?} ⊉ {:?}", ancestor.id, account, inherited, direct);
        }
    }

    /// More grants never mean less access.
    #[test]
    fn access_is_monotone_in_grants((tree, grants, account) in arb_world()) {
        let all = permissions_at(&grants, &tree, &account);
        for skip in 0..grants.len() {
            let fewer: Vec<Grant> = grants.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, g)| g.clone()).collect();
            prop_assert!(all.is_superset(&permissions_at(&fewer, &tree, &account)));
        }
    }

    /// Every explanation is a real chain of the catalog whose last role grants the permission and
    /// functions on the account.
    #[test]
    fn every_path_is_a_valid_catalog_chain((tree, grants, account) in arb_world()) {
        let view = effective_access(&grants, &tree, &"ada".into(), &account).unwrap();
        for (permission, paths) in &view.permissions {
            prop_assert!(!paths.is_empty());
            for path in paths {
                prop_assert_eq!(path.implication_chain[0], path.granted_role);
                for pair in path.implication_chain.windows(2) {
                    prop_assert!(pair[0].spec().implies.iter().any(|i| i.role == pair[1]), "{} does not imply {}", pair[0], pair[1]);
                }
                prop_assert!(path.role().spec().permissions.contains(permission));
                prop_assert!(functions_on(path.role(), tree.get(&account).unwrap()));
                prop_assert_eq!(path.inherited, path.granted_on != account);
                prop_assert!(tree.is_self_or_ancestor(&path.granted_on, &account));
            }
        }
    }

    /// Ancestors and descendants agree.
    #[test]
    fn descendants_and_ancestors_agree(tree in arb_tree()) {
        for account in tree.accounts() {
            for below in tree.descendants(&account.id) {
                prop_assert!(below.id != account.id);
                prop_assert!(tree.is_self_or_ancestor(&account.id, &below.id));
            }
            let ancestors = tree.self_and_ancestors(&account.id).count();
            prop_assert!(ancestors <= tree.len());
        }
    }
}
