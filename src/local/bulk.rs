//! Observation in bulk for a CLI run: the portal as the driver sees it, with the by-reference
//! reads (`invitation_by_ref`, `grants_by_source`, `account_manager_by_ref`) answered from one
//! paged list per account and kind, fetched on the first read for that account — as the
//! operator's resync observes — instead of one GET per object. Everything else goes to the
//! portal unchanged.
//!
//! A list is a snapshot: after this run writes an object (creates, updates, revokes, resends,
//! grants), reads of that object go to the portal again, so the driver never plans against what
//! it has itself changed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::api::{
    AccountManagerView, AccountView, CreateAccount, CreateAccountManager, CreateInvitation,
    GrantView, InvitationState, InvitationView, UpdateAccount,
};
use crate::domain::{GrantScope, Role};
use crate::portal_client::{FeedItem, PortalApi, PortalResult};

type Lists<V> = Mutex<HashMap<String, Arc<OnceCell<HashMap<String, V>>>>>;

/// A [`PortalApi`] that observes each account's invitations, grants and account managers once.
pub struct Bulk<'p, P> {
    portal: &'p P,
    invitations: Lists<InvitationView>,
    grants: Lists<Vec<GrantView>>,
    managers: Lists<AccountManagerView>,
    /// `(account, reference)` pairs and portal ids this run wrote: read from the portal again.
    written_refs: Mutex<HashSet<(String, String)>>,
    written_ids: Mutex<HashSet<String>>,
    lists: std::sync::atomic::AtomicU64,
}

impl<'p, P: PortalApi> Bulk<'p, P> {
    pub fn new(portal: &'p P) -> Self {
        Bulk {
            portal,
            invitations: Mutex::default(),
            grants: Mutex::default(),
            managers: Mutex::default(),
            written_refs: Mutex::default(),
            written_ids: Mutex::default(),
            lists: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Drops what was listed for `account`: the run is done with its objects.
    pub fn forget(&self, account: &str) {
        self.invitations.lock().expect("lists").remove(account);
        self.grants.lock().expect("lists").remove(account);
        self.managers.lock().expect("lists").remove(account);
    }

    /// How many bulk lists this run made.
    pub fn lists(&self) -> u64 {
        self.lists.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn wrote_ref(&self, account: &str, reference: &str) {
        self.written_refs
            .lock()
            .expect("written")
            .insert((account.to_owned(), reference.to_owned()));
    }

    fn wrote_id(&self, id: &str) {
        self.written_ids
            .lock()
            .expect("written")
            .insert(id.to_owned());
    }

    fn fresh(&self, account: &str, reference: &str) -> bool {
        !self
            .written_refs
            .lock()
            .expect("written")
            .contains(&(account.to_owned(), reference.to_owned()))
    }

    fn untouched(&self, id: &str) -> bool {
        !self.written_ids.lock().expect("written").contains(id)
    }

    /// The account's list of one kind, fetched once (concurrent first reads share one fetch).
    async fn listed<V: Clone, F, Fut>(
        &self,
        lists: &Lists<V>,
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
            self.lists
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            fetch().await
        })
        .await?;
        Ok(cell)
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
        if self.fresh(account, external_ref) {
            let listed = self
                .listed(&self.invitations, account, || async {
                    let all = self
                        .portal
                        .invitations(
                            account,
                            &[
                                InvitationState::Pending,
                                InvitationState::Accepted,
                                InvitationState::Expired,
                                InvitationState::Revoked,
                            ],
                        )
                        .await?;
                    Ok(all
                        .into_iter()
                        .filter_map(|i| i.external_ref.clone().map(|r| (r, i)))
                        .collect())
                })
                .await?;
            let found = listed.get().and_then(|map| map.get(external_ref).cloned());
            if found.as_ref().is_none_or(|i| self.untouched(&i.id)) {
                return Ok(found);
            }
        }
        self.portal.invitation_by_ref(account, external_ref).await
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
        if self.fresh(account, source) {
            let listed = self
                .listed(&self.grants, account, || async {
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
            if found.iter().all(|g| self.untouched(&g.id)) {
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
        if self.fresh(account, external_ref) {
            let listed = self
                .listed(&self.managers, account, || async {
                    Ok(self
                        .portal
                        .account_managers(account)
                        .await?
                        .into_iter()
                        .filter_map(|m| m.external_ref.clone().map(|r| (r, m)))
                        .collect())
                })
                .await?;
            let found = listed.get().and_then(|map| map.get(external_ref).cloned());
            if found.as_ref().is_none_or(|m| self.untouched(&m.id)) {
                return Ok(found);
            }
        }
        self.portal
            .account_manager_by_ref(account, external_ref)
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

    async fn events(
        &self,
        after: Option<i64>,
    ) -> PortalResult<futures::stream::BoxStream<'static, PortalResult<FeedItem>>> {
        self.portal.events(after).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

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

    #[tokio::test]
    async fn by_reference_reads_come_from_one_list_until_the_run_writes_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let target = crate::local::Target::embedded(dir.path(), None)
            .await
            .unwrap();
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
                    display_name: "Contoso".into(),
                    tenant_id: None,
                    sub_contract: false,
                    external_id: None,
                },
                "bulk-test-account",
            )
            .await
            .unwrap();
        let refs: Vec<String> = (0..3)
            .map(|i| format!("AdminInvitation/team/admin-{i}/uid-{i}/1"))
            .collect();
        for (i, reference) in refs.iter().enumerate() {
            portal
                .create_invitation(
                    &account.id,
                    &invitation(reference, &format!("admin-{i}@contoso.example")),
                    &format!("bulk-test-{i}"),
                )
                .await
                .unwrap();
        }

        let bulk = Bulk::new(&portal);
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
        assert_eq!(bulk.lists(), 1);

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
