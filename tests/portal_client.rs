//! The operator's portal client (`HttpPortal`) against the real portal server over HTTP.

mod support;

use std::time::Duration;

use futures::StreamExt;
use portal_operator::api::{
    CreateAccount, CreateAccountManager, CreateInvitation, Delivery, Event, EventType,
    InvitationState, ProblemType,
};
use portal_operator::domain::{AccountKind, Language};
use portal_operator::domain::{GrantScope, Role};
use portal_operator::portal_client::{FeedItem, HttpPortal, PortalApi};
use support::{Backend, TestPortal};

on_both_backends!(
    client_creates_idempotently_and_finds_by_reference,
    client_classifies_refusals_once,
    client_follows_the_change_feed
);

fn invitation(reference: &str, email: &str, roles: Vec<Role>) -> CreateInvitation {
    CreateInvitation {
        email: email.into(),
        first_name: "Ann".into(),
        last_name: "Lee".into(),
        roles: Some(roles),
        delivery: Some(Delivery::Link),
        expires_after: Some("48h".into()),
        external_ref: Some(reference.into()),
    }
}

fn event(item: Option<Result<FeedItem, portal_operator::portal_client::PortalError>>) -> Event {
    match item {
        Some(Ok(FeedItem::Event(event))) => event,
        other => panic!("expected a readable event, got {other:?}"),
    }
}

async fn setup(portal: &TestPortal) -> (HttpPortal, String) {
    let client = HttpPortal::new(&portal.base, &portal.platform_key).unwrap();
    let partner = client
        .create_account(
            &CreateAccount {
                parent_id: None,
                account_type: AccountKind::Partner,
                display_name: "Northwind".into(),
                tenant_id: None,
                sub_contract: false,
                external_id: Some("Account/northwind/uid-p".into()),
            },
            "uid-p/0",
        )
        .await
        .unwrap();
    (client, partner.id)
}

async fn client_creates_idempotently_and_finds_by_reference(backend: Backend) {
    let portal = TestPortal::start(backend).await;
    let (client, partner) = setup(&portal).await;
    assert_eq!(
        client
            .account_by_external_id("Account/northwind/uid-p")
            .await
            .unwrap()
            .unwrap()
            .id,
        partner
    );
    assert!(
        client.account("no-such-id").await.unwrap().is_none(),
        "404 reads as None"
    );
    let wanted = invitation(
        "AdminInvitation/team-a/ann/uid-1",
        "ann@northwind.example",
        vec![Role::ServiceViewer],
    );
    let first = client
        .create_invitation(&partner, &wanted, "uid-1/1")
        .await
        .unwrap();
    assert!(first.link.is_some(), "Link delivery returns the link once");
    let replay = client
        .create_invitation(&partner, &wanted, "uid-1/1")
        .await
        .unwrap();
    assert_eq!(replay.id, first.id, "the same key never creates twice");
    assert!(replay.link.is_none());
    let found = client
        .invitation_by_ref(&partner, "AdminInvitation/team-a/ann/uid-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, first.id);
    let updated = client
        .update_invitation_roles(&first.id, &[Role::ServiceContributor], found.version)
        .await
        .unwrap();
    assert_eq!(updated.roles, [Role::ServiceContributor]);
    let resent = client
        .resend_invitation(&first.id, "uid-1/resend-1")
        .await
        .unwrap();
    assert!(resent.link.is_some());
    client.revoke_invitation(&first.id).await.unwrap();
    client.revoke_invitation(&first.id).await.unwrap();
    client.revoke_invitation("gone-already").await.unwrap();
    assert_eq!(
        client
            .invitations(&partner, &[InvitationState::Revoked])
            .await
            .unwrap()
            .len(),
        1
    );
    let manager = client
        .create_account_manager(
            &partner,
            &CreateAccountManager {
                first_name: "Jo".into(),
                last_name: "Kim".into(),
                email: "jo@northwind.example".into(),
                language: Some(Language::Fr),
                branding_domain: None,
                external_ref: Some("AccountManager/team-a/jo/uid-2".into()),
            },
            "uid-2/0",
        )
        .await
        .unwrap();
    assert_eq!(
        client
            .account_manager_by_ref(&partner, "AccountManager/team-a/jo/uid-2")
            .await
            .unwrap()
            .unwrap()
            .id,
        manager.id
    );
    assert_eq!(
        client
            .resend_activation(&manager.id, "uid-2/resend-1")
            .await
            .unwrap()
            .activation_sends,
        2
    );
    client.delete_account_manager(&manager.id).await.unwrap();
    client.delete_account_manager(&manager.id).await.unwrap();
    // Grants by source, revoked one by one; revoking twice is fine.
    portal
        .platform()
        .admin_with_key(&partner, "owner@northwind.example", &["AccountOwner"])
        .await;
    let source = "RoleBinding/team-a/owners/uid-7";
    let granted = client
        .grant(
            &partner,
            "OWNER@northwind.example",
            &[Role::SyncContributor],
            GrantScope::AccountOnly,
            source,
            "uid-7/1",
        )
        .await
        .unwrap();
    assert_eq!(
        client
            .grants_by_source(&partner, source)
            .await
            .unwrap()
            .len(),
        1
    );
    client.revoke_grant(&granted[0].id).await.unwrap();
    client.revoke_grant(&granted[0].id).await.unwrap();
    assert!(
        client
            .grants_by_source(&partner, source)
            .await
            .unwrap()
            .is_empty()
    );
    portal.stop().await;
}

async fn client_classifies_refusals_once(backend: Backend) {
    let portal = TestPortal::start(backend).await;
    let (client, partner) = setup(&portal).await;
    let refused = client
        .grant(
            &partner,
            "nobody@northwind.example",
            &[Role::ServiceViewer],
            GrantScope::AccountAndDescendants,
            "RoleBinding/a/b/uid",
            "k1",
        )
        .await
        .unwrap_err();
    assert_eq!(refused.problem_type(), Some(ProblemType::SubjectNotFound));
    assert!(!refused.is_transient());
    let bad = client
        .create_invitation(
            &partner,
            &invitation(
                "AdminInvitation/a/x/uid-9",
                "not-an-email",
                vec![Role::AccountOwner],
            ),
            "k2",
        )
        .await
        .unwrap_err();
    assert_eq!(
        (bad.problem_type(), bad.is_transient()),
        (Some(ProblemType::ValidationFailed), false)
    );
    assert!(
        bad.detail().contains("not a valid email"),
        "{}",
        bad.detail()
    );
    let stale = client
        .update_invitation_roles("missing", &[Role::AccountOwner], 1)
        .await
        .unwrap_err();
    assert!(stale.is_not_found());
    let unauthorised =
        HttpPortal::new(&portal.base, "pk_00000000000000000000000000000000_nope").unwrap();
    let error = unauthorised.account(&partner).await.unwrap_err();
    assert_eq!((error.status(), error.is_transient()), (Some(401), false));
    let base = portal.base.clone();
    portal.stop().await;
    let down = HttpPortal::new(&base, "pk_x")
        .unwrap()
        .account(&partner)
        .await
        .unwrap_err();
    assert!(
        down.is_transient(),
        "an unreachable portal is transient: {down}"
    );
}

async fn client_follows_the_change_feed(backend: Backend) {
    let portal = TestPortal::start(backend).await;
    let (client, partner) = setup(&portal).await;
    let mut events = client.events(Some(0)).await.unwrap();
    let first = event(events.next().await);
    assert_eq!(first.event_type, EventType::AccountCreated);
    client
        .create_invitation(
            &partner,
            &invitation(
                "AdminInvitation/a/feed/uid-5",
                "feed@northwind.example",
                vec![Role::AccountOwner],
            ),
            "uid-5/1",
        )
        .await
        .unwrap();
    let next = event(
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap(),
    );
    assert_eq!(next.event_type, EventType::InvitationCreated);
    assert_eq!(
        next.external_ref.as_deref(),
        Some("AdminInvitation/a/feed/uid-5")
    );
    assert!(next.seq > first.seq);
    portal.stop().await;
}
