//! Observation in bulk: the portal as the driver sees it, with the by-reference reads
//! (`invitation_by_ref`, `grants_by_source`, `account_manager_by_ref`, `subscription_by_ref`,
//! `user_by_ref`, `user_role_by_ref`, `team_by_ref`) answered from one paged list per account
//! and kind, fetched on the first read for that account — as the operator's resync observes —
//! instead of one GET per object. Everything else goes to the portal unchanged.
//!
//! A list is a snapshot, and an answer from it is good only while nothing has changed the
//! object since. Two hosts, two rules ([`Snapshot`]):
//! - a CLI run ([`Snapshot::until_written`]): after the run writes an object (creates, updates,
//!   revokes, resends, grants), reads of it go to the portal again, so the driver never plans
//!   against what it has itself changed;
//! - the operator at start ([`Snapshot::first_reads`]): each object's first read after a start
//!   is answered from its account's list, once; later reads, reads of anything the change feed
//!   reported since the list was taken, and every read after the start-up window go to the
//!   portal. The lists are taken only while the feed is connected (so a change after a list is
//!   a change the feed reports) and are dropped when the window closes, the feed drops, or the
//!   first resync runs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::api::{
    AccountManagerView, AccountView, CreateAccount, CreateAccountManager, CreateInvitation,
    CreateSubscription, CreateUser, GrantView, InvitationState, InvitationView, SubscriptionView,
    UpdateAccount, UpdateUser, UserView,
};
use crate::api::{
    CreateTeam, CreateUserRole, DeletedUserRole, TeamView, UpdateTeam, UpdateUserRole, UserRoleView,
};
use crate::domain::{GrantScope, Role};
use crate::portal_client::{FeedItem, PortalApi, PortalResult};

type PerAccount<V> = Mutex<HashMap<String, Arc<OnceCell<HashMap<String, V>>>>>;

/// How long an answer from a list stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Until the run writes the object (a CLI run).
    UntilWritten,
    /// One answer per object, while the start-up window is open (the operator).
    FirstReadOnly,
}

/// Where a [`Rule::FirstReadOnly`] snapshot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    /// Always open (a CLI run's: it has no feed to wait for).
    Always,
    /// The feed is not connected yet: nothing is listed.
    NotOpen,
    /// Lists are taken and answered from until this instant.
    OpenUntil(Instant),
    /// Over for good (window passed, feed dropped, resync ran).
    Closed,
}

/// Each account's lists, per kind, and which of their answers are spent.
pub struct Snapshot {
    rule: Rule,
    window: Mutex<Window>,
    invitations: PerAccount<InvitationView>,
    grants: PerAccount<Vec<GrantView>>,
    managers: PerAccount<AccountManagerView>,
    subscriptions: PerAccount<SubscriptionView>,
    users: PerAccount<UserView>,
    roles: PerAccount<UserRoleView>,
    teams: PerAccount<TeamView>,
    /// `(account, reference)` pairs and portal ids whose list answer no longer stands (written,
    /// already answered once, or reported by the feed): read from the portal.
    spent_refs: Mutex<HashSet<(String, String)>>,
    spent_ids: Mutex<HashSet<String>>,
    /// Accounts where the feed reported a change without naming the object: read from the
    /// portal.
    spent_accounts: Mutex<HashSet<String>>,
    lists: AtomicU64,
    answered: AtomicU64,
}

impl Snapshot {
    fn with(rule: Rule, window: Window) -> Snapshot {
        Snapshot {
            rule,
            window: Mutex::new(window),
            invitations: Mutex::default(),
            grants: Mutex::default(),
            managers: Mutex::default(),
            subscriptions: Mutex::default(),
            users: Mutex::default(),
            roles: Mutex::default(),
            teams: Mutex::default(),
            spent_refs: Mutex::default(),
            spent_ids: Mutex::default(),
            spent_accounts: Mutex::default(),
            lists: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        }
    }

    /// A CLI run's: answers stand until the run writes the object.
    pub fn until_written() -> Snapshot {
        Snapshot::with(Rule::UntilWritten, Window::Always)
    }

    /// The operator's: one answer per object, from lists taken after [`Snapshot::open_for`]
    /// and before the window closes.
    pub fn first_reads() -> Snapshot {
        Snapshot::with(Rule::FirstReadOnly, Window::NotOpen)
    }

    /// Opens the start-up window for `window` (the feed just connected); only the first call
    /// opens it, and never after it closed.
    pub fn open_for(&self, window: Duration) {
        let mut current = self.window.lock().expect("window");
        if *current == Window::NotOpen {
            *current = Window::OpenUntil(Instant::now() + window);
        }
    }

    /// Closes the window for good and drops every list.
    pub fn close(&self) {
        *self.window.lock().expect("window") = Window::Closed;
        self.drop_lists();
        self.spent_refs.lock().expect("spent").clear();
        self.spent_ids.lock().expect("spent").clear();
        self.spent_accounts.lock().expect("spent").clear();
    }

    /// Whether lists may be taken and answered from now (closing a window that has passed).
    fn open(&self) -> bool {
        let open = match *self.window.lock().expect("window") {
            Window::Always => return true,
            Window::OpenUntil(until) => Instant::now() < until,
            Window::NotOpen | Window::Closed => return false,
        };
        if !open {
            self.close();
        }
        open
    }

    /// What the change feed reported: the object `reference` (or, with no reference, anything)
    /// under `account`, and the portal object `id`, changed since the lists were taken.
    pub fn reported(&self, account: Option<&str>, reference: Option<&str>, id: &str) {
        self.spend_id(id);
        match (account, reference) {
            (Some(account), Some(reference)) => self.spend_ref(account, reference),
            (Some(account), None) => {
                self.spent_accounts
                    .lock()
                    .expect("spent")
                    .insert(account.to_owned());
                self.forget(account);
            }
            (None, _) => self.close(),
        }
    }

    /// Drops what was listed for `account` (a run done with its objects, or a change the feed
    /// reported without naming the object).
    pub fn forget(&self, account: &str) {
        self.invitations.lock().expect("lists").remove(account);
        self.grants.lock().expect("lists").remove(account);
        self.managers.lock().expect("lists").remove(account);
        self.subscriptions.lock().expect("lists").remove(account);
        self.users.lock().expect("lists").remove(account);
        self.roles.lock().expect("lists").remove(account);
        self.teams.lock().expect("lists").remove(account);
    }

    fn drop_lists(&self) {
        self.invitations.lock().expect("lists").clear();
        self.grants.lock().expect("lists").clear();
        self.managers.lock().expect("lists").clear();
        self.subscriptions.lock().expect("lists").clear();
        self.users.lock().expect("lists").clear();
        self.roles.lock().expect("lists").clear();
        self.teams.lock().expect("lists").clear();
    }

    /// Drops every account's lists of subscriptions, user roles and teams: users took licences,
    /// roles and memberships since.
    pub fn forget_counts(&self) {
        self.subscriptions.lock().expect("lists").clear();
        self.roles.lock().expect("lists").clear();
        self.teams.lock().expect("lists").clear();
    }

    /// How many bulk lists were taken.
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::Relaxed)
    }

    /// How many by-reference reads a list answered.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    fn spend_ref(&self, account: &str, reference: &str) {
        self.spent_refs
            .lock()
            .expect("spent")
            .insert((account.to_owned(), reference.to_owned()));
    }

    fn spend_id(&self, id: &str) {
        self.spent_ids.lock().expect("spent").insert(id.to_owned());
    }

    /// Whether the list answer for `reference` under `account` may be used, claiming it when
    /// answers are good only once.
    fn claim(&self, account: &str, reference: &str) -> bool {
        if !self.open() || self.spent_accounts.lock().expect("spent").contains(account) {
            return false;
        }
        let key = (account.to_owned(), reference.to_owned());
        let mut spent = self.spent_refs.lock().expect("spent");
        match self.rule {
            Rule::UntilWritten => !spent.contains(&key),
            Rule::FirstReadOnly => spent.insert(key),
        }
    }

    fn untouched(&self, id: &str) -> bool {
        !self.spent_ids.lock().expect("spent").contains(id)
    }
}

/// A [`PortalApi`] that answers by-reference reads from `snapshot`'s lists where they stand.
pub struct Bulk<'p, P> {
    portal: &'p P,
    snapshot: &'p Snapshot,
}

impl<'p, P: PortalApi> Bulk<'p, P> {
    pub fn new(portal: &'p P, snapshot: &'p Snapshot) -> Self {
        Bulk { portal, snapshot }
    }

    /// The lists it answers from.
    pub fn snapshot(&self) -> &Snapshot {
        self.snapshot
    }

    fn wrote_ref(&self, account: &str, reference: &str) {
        self.snapshot.spend_ref(account, reference);
    }

    fn wrote_id(&self, id: &str) {
        self.snapshot.spend_id(id);
    }

    /// The account's list of one kind, fetched once (concurrent first reads share one fetch).
    async fn listed<V: Clone, F, Fut>(
        &self,
        lists: &PerAccount<V>,
        account: &str,
        fetch: F,
    ) -> PortalResult<Arc<OnceCell<HashMap<String, V>>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = PortalResult<HashMap<String, V>>>,
    {
        let cell = lists
            .lock()
            .expect("lists")
            .entry(account.to_owned())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            self.snapshot.lists.fetch_add(1, Ordering::Relaxed);
            fetch().await
        })
        .await?;
        Ok(cell)
    }

    /// The object of `account` with `reference`, from the account's list of its kind (`list`)
    /// where that answer stands, otherwise from the portal (`direct`).
    async fn by_ref<V, L, LF, D, DF>(
        &self,
        lists: fn(&Snapshot) -> &PerAccount<V>,
        account: &str,
        reference: &str,
        keys: fn(&V) -> (Option<&String>, &str),
        list: L,
        direct: D,
    ) -> PortalResult<Option<V>>
    where
        V: Clone,
        L: FnOnce() -> LF,
        LF: Future<Output = PortalResult<Vec<V>>>,
        D: FnOnce() -> DF,
        DF: Future<Output = PortalResult<Option<V>>>,
    {
        if self.snapshot.claim(account, reference) {
            let listed = self
                .listed(lists(self.snapshot), account, || async {
                    Ok(list()
                        .await?
                        .into_iter()
                        .filter_map(|v| keys(&v).0.cloned().map(|r| (r, v)))
                        .collect())
                })
                .await?;
            let found = listed.get().and_then(|map| map.get(reference).cloned());
            if found
                .as_ref()
                .is_none_or(|v| self.snapshot.untouched(keys(v).1))
            {
                self.snapshot.answered.fetch_add(1, Ordering::Relaxed);
                return Ok(found);
            }
        }
        direct().await
    }
}

impl<P: PortalApi> PortalApi for Bulk<'_, P> {
    async fn account_by_external_id(&self, external_id: &str) -> PortalResult<Option<AccountView>> {
        self.portal.account_by_external_id(external_id).await
    }
    async fn account(&self, id: &str) -> PortalResult<Option<AccountView>> {
        self.portal.account(id).await
    }
    async fn accounts_under(&self, parent: Option<&str>) -> PortalResult<Vec<AccountView>> {
        self.portal.accounts_under(parent).await
    }
    async fn create_account(
        &self,
        account: &CreateAccount,
        idempotency_key: &str,
    ) -> PortalResult<AccountView> {
        self.portal.create_account(account, idempotency_key).await
    }
    async fn update_account(
        &self,
        id: &str,
        changes: &UpdateAccount,
        version: i64,
    ) -> PortalResult<AccountView> {
        self.portal.update_account(id, changes, version).await
    }
    async fn delete_account(&self, id: &str) -> PortalResult<()> {
        self.portal.delete_account(id).await
    }

    async fn invitations(
        &self,
        account: &str,
        states: &[InvitationState],
    ) -> PortalResult<Vec<InvitationView>> {
        self.portal.invitations(account, states).await
    }
    async fn invitation_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<InvitationView>> {
        const EVERY_STATE: [InvitationState; 4] = [
            InvitationState::Pending,
            InvitationState::Accepted,
            InvitationState::Expired,
            InvitationState::Revoked,
        ];
        self.by_ref(
            |s| &s.invitations,
            account,
            external_ref,
            |i| (i.external_ref.as_ref(), &i.id),
            || self.portal.invitations(account, &EVERY_STATE),
            || self.portal.invitation_by_ref(account, external_ref),
        )
        .await
    }
    async fn invitation(&self, id: &str) -> PortalResult<Option<InvitationView>> {
        self.portal.invitation(id).await
    }
    async fn create_invitation(
        &self,
        account: &str,
        invitation: &CreateInvitation,
        idempotency_key: &str,
    ) -> PortalResult<InvitationView> {
        if let Some(reference) = &invitation.external_ref {
            self.wrote_ref(account, reference);
        }
        self.portal
            .create_invitation(account, invitation, idempotency_key)
            .await
    }
    async fn update_invitation_roles(
        &self,
        id: &str,
        roles: &[Role],
        version: i64,
    ) -> PortalResult<InvitationView> {
        self.wrote_id(id);
        self.portal
            .update_invitation_roles(id, roles, version)
            .await
    }
    async fn revoke_invitation(&self, id: &str) -> PortalResult<()> {
        self.wrote_id(id);
        self.portal.revoke_invitation(id).await
    }
    async fn resend_invitation(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> PortalResult<InvitationView> {
        self.wrote_id(id);
        self.portal.resend_invitation(id, idempotency_key).await
    }

    async fn grants_by_source(&self, account: &str, source: &str) -> PortalResult<Vec<GrantView>> {
        if self.snapshot.claim(account, source) {
            let listed = self
                .listed(&self.snapshot.grants, account, || async {
                    let mut by_source: HashMap<String, Vec<GrantView>> = HashMap::new();
                    for grant in self.portal.grants(account).await? {
                        by_source
                            .entry(grant.source.clone())
                            .or_default()
                            .push(grant);
                    }
                    Ok(by_source)
                })
                .await?;
            let found = listed
                .get()
                .and_then(|map| map.get(source).cloned())
                .unwrap_or_default();
            if found.iter().all(|g| self.snapshot.untouched(&g.id)) {
                self.snapshot.answered.fetch_add(1, Ordering::Relaxed);
                return Ok(found);
            }
        }
        self.portal.grants_by_source(account, source).await
    }
    async fn grants(&self, account: &str) -> PortalResult<Vec<GrantView>> {
        self.portal.grants(account).await
    }
    async fn grant(
        &self,
        account: &str,
        email: &str,
        roles: &[Role],
        scope: GrantScope,
        source: &str,
        idempotency_key: &str,
    ) -> PortalResult<Vec<GrantView>> {
        self.wrote_ref(account, source);
        self.portal
            .grant(account, email, roles, scope, source, idempotency_key)
            .await
    }
    async fn revoke_grant(&self, id: &str) -> PortalResult<()> {
        self.wrote_id(id);
        self.portal.revoke_grant(id).await
    }
    async fn revoke_grants_by_source(
        &self,
        account: &str,
        source: &str,
        admin_id: Option<&str>,
    ) -> PortalResult<u64> {
        self.wrote_ref(account, source);
        self.portal
            .revoke_grants_by_source(account, source, admin_id)
            .await
    }

    async fn account_manager_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<AccountManagerView>> {
        self.by_ref(
            |s| &s.managers,
            account,
            external_ref,
            |m| (m.external_ref.as_ref(), &m.id),
            || self.portal.account_managers(account),
            || self.portal.account_manager_by_ref(account, external_ref),
        )
        .await
    }
    async fn account_managers(&self, account: &str) -> PortalResult<Vec<AccountManagerView>> {
        self.portal.account_managers(account).await
    }
    async fn create_account_manager(
        &self,
        account: &str,
        manager: &CreateAccountManager,
        idempotency_key: &str,
    ) -> PortalResult<AccountManagerView> {
        if let Some(reference) = &manager.external_ref {
            self.wrote_ref(account, reference);
        }
        self.portal
            .create_account_manager(account, manager, idempotency_key)
            .await
    }
    async fn resend_activation(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> PortalResult<AccountManagerView> {
        self.wrote_id(id);
        self.portal.resend_activation(id, idempotency_key).await
    }
    async fn delete_account_manager(&self, id: &str) -> PortalResult<()> {
        self.wrote_id(id);
        self.portal.delete_account_manager(id).await
    }

    async fn subscriptions(&self, account: &str) -> PortalResult<Vec<SubscriptionView>> {
        self.portal.subscriptions(account).await
    }
    async fn subscription_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<SubscriptionView>> {
        self.by_ref(
            |s| &s.subscriptions,
            account,
            external_ref,
            |s| (s.external_ref.as_ref(), &s.id),
            || self.portal.subscriptions(account),
            || self.portal.subscription_by_ref(account, external_ref),
        )
        .await
    }
    async fn create_subscription(
        &self,
        account: &str,
        subscription: &CreateSubscription,
        idempotency_key: &str,
    ) -> PortalResult<SubscriptionView> {
        if let Some(reference) = &subscription.external_ref {
            self.wrote_ref(account, reference);
        }
        self.portal
            .create_subscription(account, subscription, idempotency_key)
            .await
    }
    async fn update_subscription(
        &self,
        id: &str,
        quantity: i64,
        version: i64,
    ) -> PortalResult<SubscriptionView> {
        self.wrote_id(id);
        self.portal.update_subscription(id, quantity, version).await
    }
    async fn delete_subscription(&self, id: &str) -> PortalResult<()> {
        self.wrote_id(id);
        self.portal.delete_subscription(id).await
    }

    async fn users(&self, account: &str) -> PortalResult<Vec<UserView>> {
        self.portal.users(account).await
    }
    async fn user_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<UserView>> {
        self.by_ref(
            |s| &s.users,
            account,
            external_ref,
            |u| (u.external_ref.as_ref(), &u.id),
            || self.portal.users(account),
            || self.portal.user_by_ref(account, external_ref),
        )
        .await
    }
    async fn create_user(
        &self,
        account: &str,
        user: &CreateUser,
        idempotency_key: &str,
    ) -> PortalResult<UserView> {
        if let Some(reference) = &user.external_ref {
            self.wrote_ref(account, reference);
        }
        self.portal
            .create_user(account, user, idempotency_key)
            .await
    }
    async fn update_user(
        &self,
        id: &str,
        changes: &UpdateUser,
        version: i64,
    ) -> PortalResult<UserView> {
        self.wrote_id(id);
        self.portal.update_user(id, changes, version).await
    }
    async fn send_user_invitations(
        &self,
        account: &str,
        users: &[String],
        idempotency_key: &str,
    ) -> PortalResult<Vec<UserView>> {
        for id in users {
            self.wrote_id(id);
        }
        self.portal
            .send_user_invitations(account, users, idempotency_key)
            .await
    }
    async fn resend_user_activation(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> PortalResult<UserView> {
        self.wrote_id(id);
        self.portal
            .resend_user_activation(id, idempotency_key)
            .await
    }
    async fn delete_user(&self, id: &str) -> PortalResult<()> {
        self.wrote_id(id);
        self.portal.delete_user(id).await
    }

    async fn user_roles(&self, account: &str) -> PortalResult<Vec<UserRoleView>> {
        self.portal.user_roles(account).await
    }
    async fn user_role_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<UserRoleView>> {
        self.by_ref(
            |s| &s.roles,
            account,
            external_ref,
            |r| (r.external_ref.as_ref(), &r.id),
            || self.portal.user_roles(account),
            || self.portal.user_role_by_ref(account, external_ref),
        )
        .await
    }
    async fn create_user_role(
        &self,
        account: &str,
        role: &CreateUserRole,
        idempotency_key: &str,
    ) -> PortalResult<UserRoleView> {
        if let Some(reference) = &role.external_ref {
            self.wrote_ref(account, reference);
        }
        self.portal
            .create_user_role(account, role, idempotency_key)
            .await
    }
    async fn update_user_role(
        &self,
        id: &str,
        changes: &UpdateUserRole,
        version: i64,
    ) -> PortalResult<UserRoleView> {
        self.wrote_id(id);
        self.portal.update_user_role(id, changes, version).await
    }
    async fn delete_user_role(&self, id: &str) -> PortalResult<DeletedUserRole> {
        self.wrote_id(id);
        self.portal.delete_user_role(id).await
    }
    async fn teams(&self, account: &str) -> PortalResult<Vec<TeamView>> {
        self.portal.teams(account).await
    }
    async fn team_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<TeamView>> {
        self.by_ref(
            |s| &s.teams,
            account,
            external_ref,
            |t| (t.external_ref.as_ref(), &t.id),
            || self.portal.teams(account),
            || self.portal.team_by_ref(account, external_ref),
        )
        .await
    }
    async fn create_team(
        &self,
        account: &str,
        team: &CreateTeam,
        idempotency_key: &str,
    ) -> PortalResult<TeamView> {
        if let Some(reference) = &team.external_ref {
            self.wrote_ref(account, reference);
        }
        self.portal
            .create_team(account, team, idempotency_key)
            .await
    }
    async fn update_team(
        &self,
        id: &str,
        changes: &UpdateTeam,
        version: i64,
    ) -> PortalResult<TeamView> {
        self.wrote_id(id);
        self.portal.update_team(id, changes, version).await
    }
    async fn delete_team(&self, id: &str) -> PortalResult<()> {
        self.wrote_id(id);
        self.portal.delete_team(id).await
    }

    async fn events(
        &self,
        after: Option<i64>,
    ) -> PortalResult<futures::stream::BoxStream<'static, PortalResult<FeedItem>>> {
        self.portal.events(after).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Delivery;
    use crate::domain::AccountKind;

    fn invitation(reference: &str, email: &str) -> CreateInvitation {
        CreateInvitation {
            email: email.to_owned(),
            first_name: "Ana".into(),
            last_name: "Silva".into(),
            roles: None,
            delivery: Some(Delivery::Link),
            expires_after: None,
            external_ref: Some(reference.to_owned()),
        }
    }

    /// A portal with one account holding `count` invitations, and a counter of its GETs.
    async fn portal_with_invitations(
        dir: &std::path::Path,
        name: &str,
        count: usize,
    ) -> (
        crate::local::Target,
        crate::portal_client::HttpPortal,
        Arc<AtomicU64>,
        AccountView,
        Vec<String>,
    ) {
        let target = crate::local::Target::embedded(dir, None).await.unwrap();
        let gets = Arc::new(AtomicU64::new(0));
        let counter = gets.clone();
        let portal = target
            .portal
            .clone()
            .with_observer(Arc::new(move |method, _| {
                if method == reqwest::Method::GET {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }));
        let account = portal
            .create_account(
                &CreateAccount {
                    parent_id: None,
                    account_type: AccountKind::Partner,
                    display_name: name.into(),
                    tenant_id: None,
                    sub_contract: false,
                    external_id: None,
                },
                &format!("{name}-account"),
            )
            .await
            .unwrap();
        let refs: Vec<String> = (0..count)
            .map(|i| format!("AdminInvitation/team/admin-{i}/uid-{i}/1"))
            .collect();
        for (i, reference) in refs.iter().enumerate() {
            portal
                .create_invitation(
                    &account.id,
                    &invitation(reference, &format!("admin-{i}@{name}.example")),
                    &format!("{name}-{i}"),
                )
                .await
                .unwrap();
        }
        (target, portal, gets, account, refs)
    }

    #[tokio::test]
    async fn the_operators_first_reads_come_from_one_list_once_each_and_never_after_a_reported_change()
     {
        let dir = tempfile::tempdir().unwrap();
        let (target, portal, gets, account, refs) =
            portal_with_invitations(dir.path(), "fabrikam", 4).await;
        let snapshot = Snapshot::first_reads();
        let bulk = Bulk::new(&portal, &snapshot);
        let gets_for = |before: u64| gets.load(Ordering::Relaxed) - before;

        // Before the feed is connected nothing is listed: the read goes to the portal.
        let before = gets.load(Ordering::Relaxed);
        assert!(
            bulk.invitation_by_ref(&account.id, &refs[0])
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!((gets_for(before), snapshot.lists()), (1, 0));

        // Open: three first reads (one of an object the portal does not have), one list.
        snapshot.open_for(Duration::from_secs(60));
        let before = gets.load(Ordering::Relaxed);
        let missing = "AdminInvitation/team/nobody/uid-9/1";
        for reference in [&refs[1], &refs[2]] {
            let found = bulk
                .invitation_by_ref(&account.id, reference)
                .await
                .unwrap();
            assert_eq!(found.unwrap().external_ref.as_ref(), Some(reference));
        }
        assert!(
            bulk.invitation_by_ref(&account.id, missing)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!((gets_for(before), snapshot.lists()), (1, 1));
        assert_eq!(snapshot.answered(), 3);

        // A second read of the same object goes to the portal.
        let before = gets.load(Ordering::Relaxed);
        bulk.invitation_by_ref(&account.id, &refs[1]).await.unwrap();
        assert_eq!(gets_for(before), 1);

        // A change the feed reports is read from the portal, not from the list.
        let first = portal
            .invitation_by_ref(&account.id, &refs[3])
            .await
            .unwrap()
            .unwrap();
        portal.revoke_invitation(&first.id).await.unwrap();
        snapshot.reported(Some(&account.id), Some(&refs[3]), &first.id);
        let seen = bulk
            .invitation_by_ref(&account.id, &refs[3])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.state, InvitationState::Revoked);

        // So is anything on an account where the feed reported a change it did not name.
        let later = "AdminInvitation/team/later/uid-10/1";
        let made = portal
            .create_invitation(
                &account.id,
                &invitation(later, "later@fabrikam.example"),
                "fabrikam-later",
            )
            .await
            .unwrap();
        snapshot.reported(Some(&account.id), None, &made.id);
        let found = bulk.invitation_by_ref(&account.id, later).await.unwrap();
        assert_eq!(found.map(|i| i.id), Some(made.id));
        assert_eq!(snapshot.answered(), 3, "none of these from the list");

        // Closed (the feed dropped, or the resync ran): everything goes to the portal.
        snapshot.close();
        snapshot.open_for(Duration::from_secs(60));
        let before = gets.load(Ordering::Relaxed);
        bulk.invitation_by_ref(&account.id, &refs[2]).await.unwrap();
        bulk.invitation_by_ref(&account.id, missing).await.unwrap();
        assert_eq!((gets_for(before), snapshot.lists()), (2, 1));
        target.close().await;
    }

    #[tokio::test]
    async fn a_start_up_window_that_has_passed_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (target, portal, _gets, account, refs) =
            portal_with_invitations(dir.path(), "tailspin", 1).await;
        let snapshot = Snapshot::first_reads();
        snapshot.open_for(Duration::ZERO);
        let bulk = Bulk::new(&portal, &snapshot);
        assert!(
            bulk.invitation_by_ref(&account.id, &refs[0])
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!((snapshot.lists(), snapshot.answered()), (0, 0));
        target.close().await;
    }

    #[tokio::test]
    async fn by_reference_reads_come_from_one_list_until_the_run_writes_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let (target, portal, gets, account, refs) =
            portal_with_invitations(dir.path(), "contoso", 3).await;

        let snapshot = Snapshot::until_written();
        let bulk = Bulk::new(&portal, &snapshot);
        let before = gets.load(Ordering::Relaxed);
        for reference in &refs {
            let found = bulk
                .invitation_by_ref(&account.id, reference)
                .await
                .unwrap();
            assert_eq!(
                found.unwrap().external_ref.as_deref(),
                Some(reference.as_str())
            );
        }
        let missing = "AdminInvitation/team/nobody/uid-9/1";
        assert!(
            bulk.invitation_by_ref(&account.id, missing)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            gets.load(Ordering::Relaxed) - before,
            1,
            "four reads, one list"
        );
        assert_eq!(snapshot.lists(), 1);

        // What this run writes is read from the portal again, never from the list.
        let made = bulk
            .create_invitation(
                &account.id,
                &invitation(missing, "nobody@contoso.example"),
                "bulk-test-9",
            )
            .await
            .unwrap();
        let found = bulk.invitation_by_ref(&account.id, missing).await.unwrap();
        assert_eq!(found.map(|i| i.id), Some(made.id));
        let first = bulk
            .invitation_by_ref(&account.id, &refs[0])
            .await
            .unwrap()
            .unwrap();
        bulk.revoke_invitation(&first.id).await.unwrap();
        let revoked = bulk
            .invitation_by_ref(&account.id, &refs[0])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revoked.state, InvitationState::Revoked);
        target.close().await;
    }
}
