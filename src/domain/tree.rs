//! The partner → client account tree.
//!
//! A tree is built from a flat list of accounts and checked once ([`AccountTree::new`]); after
//! that every walk up or down it is known to end.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

/// An account's identifier, as the portal assigns it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct AccountId(pub String);

impl AccountId {
    pub fn new(id: impl Into<String>) -> Self {
        AccountId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for AccountId {
    fn from(id: &str) -> Self {
        AccountId(id.to_owned())
    }
}

/// Partner ("Native Partner") or Client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum AccountKind {
    Partner,
    Client,
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccountKind::Partner => "Partner",
            AccountKind::Client => "Client",
        })
    }
}

/// One account of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: AccountId,
    pub parent: Option<AccountId>,
    pub kind: AccountKind,
    /// A client with a sub-contract may make financial and contractual changes itself.
    pub sub_contract: bool,
    /// The Microsoft 365 tenant whose users may sign in as this account's admins.
    pub tenant_id: Option<String>,
}

impl Account {
    pub fn partner(id: impl Into<String>) -> Self {
        Account {
            id: AccountId::new(id),
            parent: None,
            kind: AccountKind::Partner,
            sub_contract: false,
            tenant_id: None,
        }
    }

    pub fn client(id: impl Into<String>, parent: impl Into<String>) -> Self {
        Account {
            id: AccountId::new(id),
            parent: Some(AccountId::new(parent)),
            kind: AccountKind::Client,
            sub_contract: false,
            tenant_id: None,
        }
    }

    pub fn with_sub_contract(mut self) -> Self {
        self.sub_contract = true;
        self
    }

    pub fn with_parent(mut self, parent: impl Into<String>) -> Self {
        self.parent = Some(AccountId::new(parent));
        self
    }

    pub fn with_tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Partners, and clients with a sub-contract, hold contracts of their own; only there do the
    /// subscription roles function.
    pub fn holds_contracts(&self) -> bool {
        self.kind == AccountKind::Partner || self.sub_contract
    }

    pub fn is_top_level(&self) -> bool {
        self.parent.is_none()
    }
}

/// Why a set of accounts is not a valid tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("account {0} appears more than once")]
    DuplicateAccount(AccountId),
    #[error("account {account} names parent {parent}, which does not exist")]
    MissingParent {
        account: AccountId,
        parent: AccountId,
    },
    #[error("account {0} is its own ancestor (the parent chain loops back to it)")]
    Cycle(AccountId),
    #[error("partner account {account} cannot sit below client account {parent}")]
    PartnerBelowClient {
        account: AccountId,
        parent: AccountId,
    },
}

/// A checked account tree: parents exist, no cycles, no partner below a client.
#[derive(Debug, Clone, Default)]
pub struct AccountTree {
    accounts: HashMap<AccountId, Account>,
    children: HashMap<AccountId, Vec<AccountId>>,
}

impl AccountTree {
    pub fn new(accounts: impl IntoIterator<Item = Account>) -> Result<Self, TreeError> {
        let mut by_id = HashMap::new();
        for account in accounts {
            if let Some(previous) = by_id.insert(account.id.clone(), account) {
                return Err(TreeError::DuplicateAccount(previous.id));
            }
        }
        // Sorted so that the first error reported does not depend on hash order.
        let sorted: BTreeMap<&AccountId, &Account> = by_id.iter().collect();
        for account in sorted.values() {
            check_placement(account, &by_id)?;
        }
        let mut children: HashMap<AccountId, Vec<AccountId>> = HashMap::new();
        for account in sorted.values() {
            if let Some(parent) = &account.parent {
                children
                    .entry(parent.clone())
                    .or_default()
                    .push(account.id.clone());
            }
        }
        Ok(AccountTree {
            accounts: by_id,
            children,
        })
    }

    pub fn get(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    pub fn contains(&self, id: &AccountId) -> bool {
        self.accounts.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// The account itself first, then its parent, up to the top-level account.
    pub fn self_and_ancestors<'a>(&'a self, id: &AccountId) -> impl Iterator<Item = &'a Account> {
        let mut next = self.accounts.get(id);
        std::iter::from_fn(move || {
            let current = next?;
            next = current.parent.as_ref().and_then(|p| self.accounts.get(p));
            Some(current)
        })
    }

    /// Whether `ancestor` is `account` or above it.
    pub fn is_self_or_ancestor(&self, ancestor: &AccountId, account: &AccountId) -> bool {
        self.self_and_ancestors(account).any(|a| &a.id == ancestor)
    }

    /// The direct children of an account, in id order.
    pub fn children(&self, id: &AccountId) -> &[AccountId] {
        self.children.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every account strictly below `id`, parents before children.
    pub fn descendants(&self, id: &AccountId) -> Vec<&Account> {
        let mut found = Vec::new();
        let mut queue: Vec<&AccountId> = self.children(id).iter().collect();
        while let Some(next) = queue.pop() {
            if let Some(account) = self.accounts.get(next) {
                found.push(account);
                queue.extend(self.children(next));
            }
        }
        found
    }

    /// Checks that `account` may join this tree as it stands (the same rules as [`new`]).
    ///
    /// [`new`]: AccountTree::new
    pub fn check_insert(&self, account: &Account) -> Result<(), TreeError> {
        if self.accounts.contains_key(&account.id) {
            return Err(TreeError::DuplicateAccount(account.id.clone()));
        }
        check_placement(account, &self.accounts)
    }

    /// Checks that `account` may replace the account of the same id (a move or a type change)
    /// without breaking the tree.
    pub fn check_update(&self, account: &Account) -> Result<(), TreeError> {
        let mut accounts = self.accounts.clone();
        accounts.insert(account.id.clone(), account.clone());
        check_placement(account, &accounts)?;
        if account.kind == AccountKind::Client {
            if let Some(child) = self
                .children(&account.id)
                .iter()
                .filter_map(|c| accounts.get(c))
                .find(|c| c.kind == AccountKind::Partner)
            {
                return Err(TreeError::PartnerBelowClient {
                    account: child.id.clone(),
                    parent: account.id.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Every account's placement problem, in id order (where [`AccountTree::new`] stops at the
/// first): for reporting a whole set of manifests at once.
pub fn placement_problems(accounts: &[Account]) -> Vec<TreeError> {
    let by_id: HashMap<AccountId, Account> =
        accounts.iter().map(|a| (a.id.clone(), a.clone())).collect();
    let sorted: BTreeMap<&AccountId, &Account> = by_id.iter().collect();
    sorted
        .values()
        .filter_map(|account| check_placement(account, &by_id).err())
        .collect()
}

/// The parent chain from `id` back to itself, when it loops: `[a, b, a]`.
pub fn cycle_through(id: &AccountId, accounts: &[Account]) -> Option<Vec<AccountId>> {
    let parent_of: HashMap<&AccountId, &AccountId> = accounts
        .iter()
        .filter_map(|a| Some((&a.id, a.parent.as_ref()?)))
        .collect();
    let mut chain = vec![id.clone()];
    let mut current = id;
    for _ in 0..=accounts.len() {
        current = parent_of.get(current)?;
        chain.push(current.clone());
        if current == id {
            return Some(chain);
        }
    }
    None
}

fn check_placement(
    account: &Account,
    accounts: &HashMap<AccountId, Account>,
) -> Result<(), TreeError> {
    let Some(parent_id) = &account.parent else {
        return Ok(());
    };
    let parent = accounts
        .get(parent_id)
        .ok_or_else(|| TreeError::MissingParent {
            account: account.id.clone(),
            parent: parent_id.clone(),
        })?;
    if account.kind == AccountKind::Partner && parent.kind == AccountKind::Client {
        return Err(TreeError::PartnerBelowClient {
            account: account.id.clone(),
            parent: parent_id.clone(),
        });
    }
    // Walk up at most once per account: a longer walk has revisited something, so it loops.
    let mut current = parent;
    for _ in 0..=accounts.len() {
        if current.id == account.id {
            return Err(TreeError::Cycle(account.id.clone()));
        }
        match current.parent.as_ref() {
            None => return Ok(()),
            Some(next) => match accounts.get(next) {
                Some(next) => current = next,
                // Reported when that account itself is checked.
                None => return Ok(()),
            },
        }
    }
    Err(TreeError::Cycle(account.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placement_problem_is_found_with_the_cycle_spelt_out() {
        let accounts = vec![
            Account::client("a", "b"),
            Account::client("b", "a"),
            Account::client("c", "d"),
            Account::partner("p").with_parent("c"),
            Account::partner("d"),
        ];
        let problems = placement_problems(&accounts);
        assert_eq!(
            problems,
            [
                TreeError::Cycle("a".into()),
                TreeError::Cycle("b".into()),
                TreeError::PartnerBelowClient {
                    account: "p".into(),
                    parent: "c".into()
                },
            ]
        );
        let ids = |chain: Vec<AccountId>| {
            chain
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(cycle_through(&"a".into(), &accounts).unwrap()),
            ["a", "b", "a"]
        );
        assert_eq!(cycle_through(&"c".into(), &accounts), None);
    }

    fn tree(accounts: Vec<Account>) -> Result<AccountTree, TreeError> {
        AccountTree::new(accounts)
    }

    #[test]
    fn a_partner_with_clients_and_a_sub_account_is_valid() {
        let tree = tree(vec![
            Account::partner("p"),
            Account::client("c1", "p"),
            Account::client("c2", "p").with_sub_contract(),
            Account::client("s", "c2"),
        ])
        .unwrap();
        let ancestors: Vec<&str> = tree
            .self_and_ancestors(&"s".into())
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(ancestors, ["s", "c2", "p"]);
        let mut below: Vec<&str> = tree
            .descendants(&"p".into())
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        below.sort_unstable();
        assert_eq!(below, ["c1", "c2", "s"]);
        assert!(tree.is_self_or_ancestor(&"p".into(), &"s".into()));
        assert!(!tree.is_self_or_ancestor(&"c1".into(), &"s".into()));
    }

    #[test]
    fn a_missing_parent_is_refused() {
        assert_eq!(
            tree(vec![Account::client("c", "nowhere")]).unwrap_err(),
            TreeError::MissingParent {
                account: "c".into(),
                parent: "nowhere".into()
            }
        );
    }

    #[test]
    fn a_cycle_is_refused() {
        let error = tree(vec![
            Account::client("a", "b"),
            Account::client("b", "c"),
            Account::client("c", "a"),
        ])
        .unwrap_err();
        assert!(matches!(error, TreeError::Cycle(_)), "{error}");
        let error = tree(vec![Account::client("a", "a")]).unwrap_err();
        assert_eq!(error, TreeError::Cycle("a".into()));
    }

    #[test]
    fn a_partner_below_a_client_is_refused() {
        assert_eq!(
            tree(vec![
                Account::partner("p"),
                Account::client("c", "p"),
                Account::partner("q").with_parent("c"),
            ])
            .unwrap_err(),
            TreeError::PartnerBelowClient {
                account: "q".into(),
                parent: "c".into()
            }
        );
    }

    #[test]
    fn a_partner_below_a_partner_and_a_top_level_client_are_allowed() {
        tree(vec![
            Account::partner("distributor"),
            Account::partner("reseller").with_parent("distributor"),
            Account {
                parent: None,
                ..Account::client("direct", "unused")
            },
        ])
        .unwrap();
    }

    #[test]
    fn duplicate_ids_are_refused() {
        assert_eq!(
            tree(vec![Account::partner("p"), Account::partner("p")]).unwrap_err(),
            TreeError::DuplicateAccount("p".into())
        );
    }

    #[test]
    fn moving_an_account_below_its_own_descendant_is_refused() {
        let tree = tree(vec![
            Account::partner("p"),
            Account::client("c", "p").with_sub_contract(),
            Account::client("s", "c"),
        ])
        .unwrap();
        let moved = Account::client("c", "s");
        assert_eq!(
            tree.check_update(&moved).unwrap_err(),
            TreeError::Cycle("c".into())
        );
        assert!(tree.check_insert(&Account::client("t", "s")).is_ok());
        assert!(tree.check_insert(&Account::client("c", "p")).is_err());
    }

    #[test]
    fn turning_a_partner_with_partner_children_into_a_client_is_refused() {
        let tree = tree(vec![
            Account::partner("d"),
            Account::partner("r").with_parent("d"),
        ])
        .unwrap();
        let demoted = Account {
            parent: None,
            ..Account::client("d", "x")
        };
        assert_eq!(
            tree.check_update(&demoted).unwrap_err(),
            TreeError::PartnerBelowClient {
                account: "r".into(),
                parent: "d".into()
            }
        );
    }
}
