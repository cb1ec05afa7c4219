//! The operator's portal client (`HttpPortal`) against the real portal server over HTTP.

mod support;

use std::time::Duration;

use futures::StreamExt;
use portal_operator::domain::{GrantScope, Role};
use portal_operator::portal_client::{
    HttpPortal, NewAccount, NewAccountManager, NewInvitation, PortalApi,
};
use support::{Backend, TestPortal};

on_both_backends!(
    client_creates_idempotently_and_finds_by_reference,
    client_classifies_refusals_once,
    client_follows_the_change_feed
);

fn invitation(reference: &str, email: &str, roles: Vec<Role>) -> NewInvitation {
    NewInvitation {
        email: email.into(),
        first_name: "Ann".into(),
        last_name: "Lee".into(),
        roles,
        delivery: "Link".into(),
        expires_after: "48h".into(),
        external_ref: reference.into(),
    }
}

async fn setup(portal: &TestPortal) -> (HttpPortal, String) {
    let client = HttpPortal::new(&portal.base, &portal.platform_key).unwrap();
    let partner = client
        .create_account(
            &NewAccount {
                parent_id: None,
                account_type: "Partner".into(),
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
        client.invitations(&partner, "Revoked").await.unwrap().len(),
        1
    );
    let manager = client
        .create_account_manager(
            &partner,
            &NewAccountManager {
                first_name: "Jo".into(),
                last_name: "Kim".into(),
                email: "jo@northwind.example".into(),
                language: "fr".into(),
                branding_domain: None,
                external_ref: "AccountManager/team-a/jo/uid-2".into(),
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
    assert_eq!(refused.problem_type(), Some("subject-not-found"));
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
        (Some("validation-failed"), false)
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
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(first.event_type, "account.created");
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
    let next = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.event_type, "invitation.created");
    assert_eq!(
        next.external_ref.as_deref(),
        Some("AdminInvitation/a/feed/uid-5")
    );
    assert!(next.seq > first.seq);
    portal.stop().await;
}
