//! The operator end to end: its controllers run in-process against the Kubernetes API server
//! double (over HTTP, with the committed CRDs) and the real portal server (over HTTP, SQLite),
//! with a real OpenID Connect provider for acceptance. Every wait is for a condition, with a
//! deadline; nothing sleeps to let time pass.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use portal_operator::controller::metrics::Metrics;
use portal_operator::crd::{
    AccountManager, AccountManagerPhase, AdminInvitation, AdminInvitationPhase, GrantState,
    RoleBinding,
};
use portal_operator::portal_client::HttpPortal;
use portal_operator::testing::apiserver::ApiServer;
use serde_json::{Value, json};
use support::{Backend, OidcProvider, TestPortal, wait_for};
use tokio::sync::oneshot;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const NS: &str = "team-contoso";
const DEADLINE: Duration = Duration::from_secs(20);

struct World {
    portal: TestPortal,
    idp: OidcProvider,
    kube: ApiServer,
    metrics: Arc<Metrics>,
    operator: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

async fn world() -> World {
    // `TEST_LOG=debug` shows the operator's logs.
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let idp = OidcProvider::start().await;
    let portal = TestPortal::start_with(Backend::Sqlite, Some(idp.issuer.clone())).await;
    let kube = support::kube_double([NS.to_owned()]).await;
    World {
        portal,
        idp,
        kube,
        metrics: Arc::new(Metrics::default()),
        operator: None,
    }
}

impl World {
    fn start_operator(&mut self, resync: Duration) {
        let url = self.portal.base.clone();
        self.start_operator_at(&url, resync);
    }

    fn start_operator_at(&mut self, portal_url: &str, resync: Duration) {
        let key = self.portal.platform_key.clone();
        self.start_operator_with(portal_url, &key, resync);
    }

    fn start_operator_with(&mut self, portal_url: &str, key: &str, resync: Duration) {
        let portal = HttpPortal::new(portal_url, key).unwrap();
        let config = portal_operator::controller::Config {
            resync,
            ..Default::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(portal_operator::controller::run(
            self.kube.client(),
            portal,
            self.metrics.clone(),
            config,
            async {
                let _ = stopped.await;
            },
        ));
        let task = tokio::spawn(async move {
            task.await.unwrap().unwrap();
        });
        self.operator = Some((stop, task));
    }

    async fn stop_operator(&mut self) {
        if let Some((stop, task)) = self.operator.take() {
            let _ = stop.send(());
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the operator stops when asked")
                .unwrap();
        }
    }

    /// Server-side applies one manifest (as a person would with kubectl).
    async fn apply(&self, manifest: Value) {
        let kind = manifest["kind"].as_str().unwrap();
        let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
        let api = self.dynamic(kind);
        api.patch(
            &name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&manifest),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    fn dynamic(&self, kind: &str) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "access.portal.dev",
            "v1alpha1",
            kind,
        ));
        if kind == "Account" {
            Api::all_with(self.kube.client(), &resource)
        } else {
            Api::namespaced_with(self.kube.client(), NS, &resource)
        }
    }

    fn invitations(&self) -> Api<AdminInvitation> {
        Api::namespaced(self.kube.client(), NS)
    }

    /// Waits until `check` holds for the object's status; returns the object.
    async fn wait_for<K, F>(&self, api: &Api<K>, name: &str, what: &str, check: F) -> K
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        F: Fn(&K) -> bool,
    {
        wait_for(DEADLINE, what, || async {
            api.get_opt(name).await.unwrap().filter(|o| check(o))
        })
        .await
    }

    /// Waits until the AdminInvitation `name` is in `phase`.
    async fn invitation_in(&self, name: &str, phase: AdminInvitationPhase) -> AdminInvitation {
        self.wait_for(
            &self.invitations(),
            name,
            &format!("{name} {phase:?}"),
            |i| i.status.as_ref().and_then(|s| s.phase) == Some(phase),
        )
        .await
    }

    /// The portal's write requests so far (POST, PATCH, PUT, DELETE), from its own metrics.
    async fn portal_writes(&self) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.portal.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("portal_http_requests_total{"))
            .filter(|l| !l.contains("method=\"GET\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    async fn partner(&self, namespaces: &[&str]) -> String {
        self.apply(json!({
            "apiVersion": "access.portal.dev/v1alpha1", "kind": "Account",
            "metadata": { "name": "northwind" },
            "spec": { "displayName": "Northwind", "type": "Partner", "tenantId": TENANT, "namespaces": namespaces }
        }))
        .await;
        let accounts: Api<portal_operator::crd::Account> = Api::all(self.kube.client());
        let account = self
            .wait_for(
                &accounts,
                "northwind",
                "the partner account in the portal",
                |a| a.status.as_ref().is_some_and(|s| s.portal_id.is_some()),
            )
            .await;
        account.status.unwrap().portal_id.unwrap()
    }

    async fn accept_link(&self, secret: &str, subject: &str) -> support::Reply {
        self.accept_link_as(secret, subject, TENANT).await
    }

    async fn accept_link_as(&self, secret: &str, subject: &str, tenant: &str) -> support::Reply {
        let secrets: Api<Secret> = Api::namespaced(self.kube.client(), NS);
        let secret = secrets.get(secret).await.unwrap();
        let link = &secret.data.unwrap()["link"].0;
        let link = String::from_utf8(link.clone()).unwrap();
        let token = link.split_once("#token=").unwrap().1.to_owned();
        let id_token = self
            .idp
            .id_token(json!({ "sub": subject, "tid": tenant, "email": format!("{subject}@contoso.example") }))
            .await;
        self.portal
            .anonymous()
            .post(
                "/v1/invitations/accept",
                json!({ "token": token, "idToken": id_token }),
            )
            .await
    }

    async fn stop(mut self) {
        self.stop_operator().await;
        self.kube.stop().await;
        self.portal.stop().await;
    }
}

/// Deletes the object and waits until it is gone (its finalizer released).
async fn delete_and_wait<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.delete(name, &DeleteParams::default()).await.unwrap();
    wait_for(DEADLINE, &format!("{name} to go"), || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

fn invitation(name: &str, email: &str, extra: Value) -> Value {
    let mut spec = json!({ "accountRef": { "name": "northwind" }, "email": email, "firstName": "Ann", "lastName": "Lee" });
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    json!({ "apiVersion": "access.portal.dev/v1alpha1", "kind": "AdminInvitation", "metadata": { "name": name, "namespace": NS }, "spec": spec })
}

fn ready_reason<K: serde::Serialize>(object: &K) -> (String, String) {
    let value = serde_json::to_value(object).unwrap();
    let ready = value["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or(Value::Null);
    (
        ready["status"].as_str().unwrap_or_default().to_owned(),
        ready["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

fn stalled_reason<K: serde::Serialize>(object: &K) -> Option<String> {
    let value = serde_json::to_value(object).unwrap();
    value["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Stalled" && c["status"] == "True")
        .map(|c| c["reason"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_invitation_goes_pending_then_accepted_from_the_feed_and_delete_keeps_the_admin() {
    let mut w = world().await;
    w.start_operator(Duration::from_secs(3600));
    let account = w.partner(&[NS]).await;
    w.apply(invitation(
        "ann",
        "ann@contoso.example",
        json!({ "delivery": "Link" }),
    ))
    .await;
    let pending = w.invitation_in("ann", AdminInvitationPhase::Pending).await;
    assert_eq!(ready_reason(&pending), ("True".into(), "Pending".into()));
    let status = pending.status.clone().unwrap();
    assert_eq!(status.attempts, 1);
    assert!(status.expires_at.is_some() && status.sent_at.is_some());
    let secret_name = status.link_secret_ref.unwrap().name;
    assert_eq!(secret_name, "ann-invitation-link");
    let status_text = serde_json::to_string(&pending.status).unwrap();
    assert!(
        !status_text.contains("token"),
        "no link in the status: {status_text}"
    );
    let secrets: Api<Secret> = Api::namespaced(w.kube.client(), NS);
    let secret = secrets.get(&secret_name).await.unwrap();
    let owner = &secret.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("AdminInvitation", "ann")
    );

    // Signed in with the wrong tenant: the seeds' remedy shows on the object.
    w.accept_link_as(&secret_name, "ann", "9188040d-6c67-4c5b-b112-36a304b66dad")
        .await
        .expect_problem(403, "wrong-tenant");
    let wrong = w
        .wait_for(&w.invitations(), "ann", "the WrongTenant reason", |i| {
            ready_reason(i).1 == "WrongTenant"
        })
        .await;
    let message = serde_json::to_string(&wrong.status).unwrap();
    assert!(
        message.contains("Sign out of all Microsoft accounts") || message.contains("private"),
        "{message}"
    );

    let accepted_at = Instant::now();
    w.accept_link(&secret_name, "ann").await.expect(200);
    let accepted = w
        .wait_for(
            &w.invitations(),
            "ann",
            "the acceptance, from the change feed",
            |i| i.status.as_ref().and_then(|s| s.phase) == Some(AdminInvitationPhase::Accepted),
        )
        .await;
    eprintln!(
        "acceptance reached the AdminInvitation's status in {:?}",
        accepted_at.elapsed()
    );
    assert_eq!(ready_reason(&accepted), ("True".into(), "Accepted".into()));
    let status = accepted.status.unwrap();
    assert!(status.accepted_at.is_some() && status.accepted_by.is_some());

    // Transitions are Events; no Event carries the link.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(w.kube.client(), NS);
    let events = events.list(&Default::default()).await.unwrap().items;
    let about_ann: Vec<&str> = events
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("ann"))
        .filter_map(|e| e.reason.as_deref())
        .collect();
    assert!(
        about_ann.contains(&"Pending") && about_ann.contains(&"Accepted"),
        "{about_ann:?}"
    );
    let all_events = serde_json::to_string(&events).unwrap();
    assert!(!all_events.contains("token="), "no link in Events");

    // Deleting an accepted invitation removes nothing: the admin stays.
    delete_and_wait(&w.invitations(), "ann").await;
    let admins = w
        .portal
        .platform()
        .get(&format!("/v1/accounts/{account}/admins"))
        .await
        .expect(200);
    assert!(
        admins.body.to_string().contains("ann@contoso.example"),
        "{}",
        admins.body
    );
    w.stop().await;
}

/// Secrets are not watched (no list/watch on every Secret in the cluster): a deleted link
/// Secret is found by the resync, which reads it by name, and a new link is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_is_reissued_by_the_resync_without_watching_secrets() {
    let mut w = world().await;
    w.start_operator(Duration::from_secs(1));
    w.partner(&[NS]).await;
    w.apply(invitation(
        "lin",
        "lin@contoso.example",
        json!({ "delivery": "Link" }),
    ))
    .await;
    w.invitation_in("lin", AdminInvitationPhase::Pending).await;
    let secrets: Api<Secret> = Api::namespaced(w.kube.client(), NS);
    let link = |secret: Secret| secret.data.unwrap()["link"].0.clone();
    let first = link(secrets.get("lin-invitation-link").await.unwrap());
    secrets
        .delete("lin-invitation-link", &Default::default())
        .await
        .unwrap();
    let second = wait_for(DEADLINE, "a new link in a new Secret", || async {
        secrets
            .get_opt("lin-invitation-link")
            .await
            .unwrap()
            .map(link)
    })
    .await;
    assert_ne!(first, second, "the lost link is replaced, not restored");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_recorded_and_reissue_invites_again_up_to_the_limit() {
    let mut w = world().await;
    w.start_operator(Duration::from_secs(3600));
    w.partner(&[NS]).await;
    w.apply(invitation(
        "bob",
        "bob@contoso.example",
        json!({ "expiresAfter": "1h", "reissue": "OnExpiry", "maxReissues": 1 }),
    ))
    .await;
    let first = w
        .invitation_in("bob", AdminInvitationPhase::Pending)
        .await
        .status
        .unwrap();
    w.portal.clock.advance(Duration::from_secs(3601));
    let second = w
        .wait_for(&w.invitations(), "bob", "the reissued invitation", |i| {
            i.status
                .as_ref()
                .is_some_and(|s| s.attempts == 2 && s.phase == Some(AdminInvitationPhase::Pending))
        })
        .await
        .status
        .unwrap();
    assert_ne!(first.portal_id, second.portal_id, "a new portal invitation");
    w.portal.clock.advance(Duration::from_secs(3601));
    let expired = w
        .wait_for(
            &w.invitations(),
            "bob",
            "expiry, with no reissue left",
            |i| i.status.as_ref().and_then(|s| s.phase) == Some(AdminInvitationPhase::Expired),
        )
        .await;
    assert_eq!(ready_reason(&expired), ("False".into(), "Expired".into()));
    assert_eq!(expired.status.unwrap().attempts, 2);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pending_invitation_revokes_it_in_the_portal() {
    let mut w = world().await;
    w.start_operator(Duration::from_secs(3600));
    w.partner(&[NS]).await;
    w.apply(invitation("cy", "cy@contoso.example", json!({})))
        .await;
    let pending = w.invitation_in("cy", AdminInvitationPhase::Pending).await;
    let id = pending.status.unwrap().portal_id.unwrap();
    delete_and_wait(&w.invitations(), "cy").await;
    let portal = w
        .portal
        .platform()
        .get(&format!("/v1/invitations/{id}"))
        .await
        .expect(200);
    assert_eq!(portal.body["state"], "Revoked");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_binding_waits_for_its_subject_and_is_granted_on_acceptance() {
    let mut w = world().await;
    w.start_operator(Duration::from_secs(3600));
    let account = w.partner(&[NS]).await;
    w.apply(invitation(
        "dee",
        "dee@contoso.example",
        json!({ "delivery": "Link" }),
    ))
    .await;
    w.apply(json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "RoleBinding",
        "metadata": { "name": "branding", "namespace": NS },
        "spec": { "accountRef": { "name": "northwind" }, "subjects": [{ "adminEmail": "dee@contoso.example" }], "roles": ["BrandContributor"] }
    }))
    .await;
    let bindings: Api<RoleBinding> = Api::namespaced(w.kube.client(), NS);
    let waiting = w
        .wait_for(&bindings, "branding", "the binding to wait for dee", |b| {
            b.status.as_ref().is_some_and(|s| {
                s.subjects.first().map(|x| x.state) == Some(GrantState::WaitingForSubject)
            })
        })
        .await;
    // Done right, waiting for a person: Ready (kstatus Current), with the reason.
    assert_eq!(
        ready_reason(&waiting),
        ("True".into(), "WaitingForSubject".into())
    );
    w.invitation_in("dee", AdminInvitationPhase::Pending).await;
    w.accept_link("dee-invitation-link", "dee")
        .await
        .expect(200);
    let granted = w
        .wait_for(&bindings, "branding", "the grant after acceptance", |b| {
            b.status
                .as_ref()
                .is_some_and(|s| s.subjects.first().map(|x| x.state) == Some(GrantState::Granted))
        })
        .await;
    assert_eq!(ready_reason(&granted), ("True".into(), "Granted".into()));
    let uid = granted.metadata.uid.clone().unwrap();
    let source = format!("RoleBinding/{NS}/branding/{uid}");
    let grants = |source: String| {
        let platform = w.portal.platform();
        let account = account.clone();
        async move {
            platform
                .get(&format!(
                    "/v1/accounts/{account}/grants?source={}",
                    urlencode(&source)
                ))
                .await
                .expect(200)
                .body["items"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(grants(source.clone()).await, 1);

    // Deleting the binding revokes exactly its own grant; the invitation's roles stay.
    delete_and_wait(&bindings, "branding").await;
    assert_eq!(grants(source).await, 0);
    let admins = w
        .portal
        .platform()
        .get(&format!("/v1/accounts/{account}/admins"))
        .await
        .expect(200);
    assert!(admins.body.to_string().contains("dee@contoso.example"));
    w.stop().await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelegated_namespaces_and_email_conflicts_stall_with_no_portal_writes() {
    let mut w = world().await;
    w.start_operator(Duration::from_secs(3600));
    let account = w.partner(&["some-other-team"]).await;
    let before = w.portal_writes().await;
    w.apply(invitation("eve", "eve@contoso.example", json!({})))
        .await;
    let stalled = w
        .wait_for(&w.invitations(), "eve", "AccountNotDelegated", |i| {
            stalled_reason(i).is_some()
        })
        .await;
    assert_eq!(
        stalled_reason(&stalled).as_deref(),
        Some("AccountNotDelegated")
    );
    assert_eq!(w.portal_writes().await, before, "nothing was sent");

    // Delegated now; an account manager whose email an admin already has is refused once.
    w.partner(&[NS]).await;
    let (_, _) = w
        .portal
        .platform()
        .admin_with_key(&account, "taken@contoso.example", &["AccountOwner"])
        .await;
    w.apply(json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "AccountManager",
        "metadata": { "name": "taken", "namespace": NS },
        "spec": { "accountRef": { "name": "northwind" }, "firstName": "Tak", "lastName": "En", "email": "taken@contoso.example" }
    }))
    .await;
    let managers: Api<AccountManager> = Api::namespaced(w.kube.client(), NS);
    let conflict = w
        .wait_for(&managers, "taken", "EmailConflict", |m| {
            stalled_reason(m).is_some()
        })
        .await;
    assert_eq!(stalled_reason(&conflict).as_deref(), Some("EmailConflict"));
    // The refusal is remembered with the generation it refused, not inferred from a reason.
    let refused = conflict.status.as_ref().unwrap().refused.clone().unwrap();
    assert_eq!(
        (Some(refused.generation), refused.reason.as_str()),
        (conflict.metadata.generation, "EmailConflict")
    );
    let message = serde_json::to_string(&conflict.status).unwrap();
    assert!(
        message.contains("taken@contoso.example") || message.contains("email"),
        "{message}"
    );
    // Not retried: an operator restarted reconciles it again from scratch and sends nothing.
    let writes = w.portal_writes().await;
    let reconciled = w.metrics.reconciles("AccountManager");
    w.stop_operator().await;
    w.start_operator(Duration::from_secs(3600));
    wait_for(DEADLINE, "a reconcile after the restart", || async {
        (w.metrics.reconciles("AccountManager") > reconciled).then_some(())
    })
    .await;
    let again = managers.get("taken").await.unwrap();
    assert_eq!(stalled_reason(&again).as_deref(), Some("EmailConflict"));
    assert_eq!(
        w.portal_writes().await,
        writes,
        "a refused spec is not sent again"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_managers_follow_activation_expiry_and_resend() {
    let mut w = world().await;
    w.start_operator(Duration::from_secs(3600));
    w.partner(&[NS]).await;
    let manager = |resend: i32| {
        json!({
            "apiVersion": "access.portal.dev/v1alpha1", "kind": "AccountManager",
            "metadata": { "name": "mia", "namespace": NS },
            "spec": { "accountRef": { "name": "northwind" }, "firstName": "Mia", "lastName": "Wong", "email": "mia@contoso.example", "resendActivation": resend }
        })
    };
    w.apply(manager(0)).await;
    let managers: Api<AccountManager> = Api::namespaced(w.kube.client(), NS);
    let phase = |p: AccountManagerPhase| {
        move |m: &AccountManager| m.status.as_ref().and_then(|s| s.phase) == Some(p)
    };
    w.wait_for(
        &managers,
        "mia",
        "activation pending",
        phase(AccountManagerPhase::ActivationPending),
    )
    .await;
    w.portal.clock.advance(Duration::from_secs(72 * 3600 + 1));
    let expired = w
        .wait_for(
            &managers,
            "mia",
            "activation expired",
            phase(AccountManagerPhase::ActivationExpired),
        )
        .await;
    assert_eq!(
        ready_reason(&expired),
        ("False".into(), "ActivationExpired".into())
    );
    w.apply(manager(1)).await;
    let resent = w
        .wait_for(
            &managers,
            "mia",
            "pending again after the resend",
            phase(AccountManagerPhase::ActivationPending),
        )
        .await;
    assert_eq!(resent.status.unwrap().observed_resend_activation, 1);
    let status_text = serde_json::to_string(&managers.get("mia").await.unwrap()).unwrap();
    assert!(
        !status_text.to_lowercase().contains("password\":"),
        "{status_text}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_form_the_tree_and_delete_only_when_asked() {
    let mut w = world().await;
    w.start_operator(Duration::from_secs(3600));
    let partner = w.partner(&[NS]).await;
    for (name, policy) in [("contoso", "Delete"), ("fabrikam", "Orphan")] {
        w.apply(json!({
            "apiVersion": "access.portal.dev/v1alpha1", "kind": "Account",
            "metadata": { "name": name },
            "spec": { "displayName": name, "type": "Client", "parentRef": { "name": "northwind" }, "deletionPolicy": policy }
        }))
        .await;
    }
    let accounts: Api<portal_operator::crd::Account> = Api::all(w.kube.client());
    let mut ids = Vec::new();
    for name in ["contoso", "fabrikam"] {
        let account = w
            .wait_for(&accounts, name, "the client in the portal", |a| {
                a.status.as_ref().is_some_and(|s| s.portal_id.is_some())
            })
            .await;
        let status = account.status.unwrap();
        assert_eq!(status.path.unwrap(), format!("Northwind / {name}"));
        let id = status.portal_id.unwrap();
        let portal = w
            .portal
            .platform()
            .get(&format!("/v1/accounts/{id}"))
            .await
            .expect(200);
        assert_eq!(portal.body["parentId"], partner.as_str());
        ids.push(id);
    }
    for name in ["contoso", "fabrikam"] {
        delete_and_wait(&accounts, name).await;
    }
    let platform = w.portal.platform();
    platform
        .get(&format!("/v1/accounts/{}", ids[0]))
        .await
        .expect(404);
    platform
        .get(&format!("/v1/accounts/{}", ids[1]))
        .await
        .expect(200);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_finds_what_a_crashed_one_created() {
    let mut w = world().await;
    w.start_operator(Duration::from_secs(3600));
    let account = w.partner(&[NS]).await;
    w.stop_operator().await;
    // The object exists, and a run that crashed before writing its status had created the
    // portal invitation (same externalRef and idempotency key).
    w.apply(invitation("fay", "fay@contoso.example", json!({})))
        .await;
    let object = w.invitations().get("fay").await.unwrap();
    let uid = object.metadata.uid.unwrap();
    let created = w
        .portal
        .platform()
        .send(
            reqwest::Method::POST,
            &format!("/v1/accounts/{account}/invitations"),
            Some(json!({ "email": "fay@contoso.example", "firstName": "Ann", "lastName": "Lee", "roles": ["AccountOwner"], "delivery": "Email", "expiresAfter": "48h", "externalRef": format!("AdminInvitation/{NS}/fay/{uid}/1") })),
            &[("idempotency-key", &format!("{uid}/1"))],
        )
        .await
        .expect(201);
    w.start_operator(Duration::from_secs(3600));
    let pending = w.invitation_in("fay", AdminInvitationPhase::Pending).await;
    assert_eq!(
        pending.status.unwrap().portal_id.as_deref(),
        created.body["id"].as_str()
    );
    let listed = w
        .portal
        .platform()
        .get(&format!("/v1/accounts/{account}/invitations"))
        .await
        .expect(200);
    let fays = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["email"] == "fay@contoso.example")
        .count();
    assert_eq!(fays, 1, "no duplicate invitation");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_down_backs_off_then_converges() {
    let mut w = world().await;
    // The operator starts against an address where the portal is down: each connection is
    // closed unanswered. The address stays held for the whole test (a port probed and let go
    // can be taken by another test's connection before it is bound again).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let target = w.portal.base.trim_start_matches("http://").to_owned();
    let forwarder = tokio::spawn({
        let up = up.clone();
        async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }
    });
    w.start_operator_at(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(3600),
    );
    w.apply(json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "Account",
        "metadata": { "name": "northwind" },
        "spec": { "displayName": "Northwind", "type": "Partner", "namespaces": [NS] }
    }))
    .await;
    wait_for(
        DEADLINE,
        "failures counted as PortalUnavailable",
        || async {
            w.metrics
                .render()
                .contains("category=\"PortalUnavailable\"")
                .then_some(())
        },
    )
    .await;
    // A first reconcile that fails is not a false green: the status says it is retrying, why,
    // and for this generation (kstatus InProgress, not Current).
    let accounts: Api<portal_operator::crd::Account> = Api::all(w.kube.client());
    let failing = w
        .wait_for(&accounts, "northwind", "the failure in the status", |a| {
            a.status.is_some()
        })
        .await;
    let value = serde_json::to_value(&failing).unwrap();
    let reconciling = value["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Reconciling")
        .unwrap()
        .clone();
    assert_eq!(
        (&reconciling["status"], &reconciling["reason"]),
        (&json!("True"), &json!("PortalUnavailable"))
    );
    assert_eq!(
        value["status"]["observedGeneration"],
        value["metadata"]["generation"]
    );
    // The portal comes up at that address (forwarded to the real one).
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let converged = wait_for(
        Duration::from_secs(30),
        "convergence once the portal is up",
        || async {
            accounts
                .get("northwind")
                .await
                .ok()
                .filter(|a| ready_reason(a).0 == "True")
        },
    )
    .await;
    assert!(converged.status.unwrap().portal_id.is_some());
    forwarder.abort();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_drift_the_feed_never_saw_is_put_back_by_the_resync() {
    let mut w = world().await;
    w.start_operator(Duration::from_millis(300));
    let id = w.partner(&[NS]).await;
    // Changed behind the API's back (a vendor portal without events for it, or a lost event):
    // only the resync's account listing can notice.
    sqlx::any::install_default_drivers();
    let database = sqlx::AnyPool::connect(&w.portal.database_url)
        .await
        .unwrap();
    let renamed = sqlx::query("UPDATE accounts SET display_name = 'Renamed in the portal', version = version + 1 WHERE id = $1")
        .bind(&id)
        .execute(&database)
        .await
        .unwrap();
    // (Not read back through the API: the resync may already have put it back.)
    assert_eq!(renamed.rows_affected(), 1, "the portal account drifted");
    let platform = w.portal.platform();
    wait_for(
        DEADLINE,
        "the resync to restore the display name",
        || async {
            let account = platform
                .get(&format!("/v1/accounts/{id}"))
                .await
                .expect(200);
            (account.body["displayName"] == "Northwind").then_some(())
        },
    )
    .await;
    database.close().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_of_converged_objects_writes_nothing_anywhere() {
    let mut w = world().await;
    w.start_operator(Duration::from_millis(300));
    w.partner(&[NS]).await;
    w.apply(invitation(
        "gus",
        "gus@contoso.example",
        json!({ "delivery": "Link" }),
    ))
    .await;
    w.apply(json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "RoleBinding",
        "metadata": { "name": "viewers", "namespace": NS },
        "spec": { "accountRef": { "name": "northwind" }, "subjects": [{ "adminEmail": "gus@contoso.example" }], "roles": ["ServiceViewer"] }
    }))
    .await;
    w.apply(json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "AccountManager",
        "metadata": { "name": "max", "namespace": NS },
        "spec": { "accountRef": { "name": "northwind" }, "firstName": "Max", "lastName": "Roe", "email": "max@contoso.example" }
    }))
    .await;
    w.invitation_in("gus", AdminInvitationPhase::Pending).await;
    w.accept_link("gus-invitation-link", "gus")
        .await
        .expect(200);
    let bindings: Api<RoleBinding> = Api::namespaced(w.kube.client(), NS);
    w.wait_for(&bindings, "viewers", "granted", |b| {
        ready_reason(b).0 == "True"
    })
    .await;
    w.invitation_in("gus", AdminInvitationPhase::Accepted).await;
    let managers: Api<AccountManager> = Api::namespaced(w.kube.client(), NS);
    w.wait_for(&managers, "max", "activation pending", |m| {
        ready_reason(m).0 == "True"
    })
    .await;
    // Let the last feed events and resyncs settle, then measure two full resyncs.
    let settled = w.metrics.resyncs() + 2;
    wait_for(DEADLINE, "two resyncs", || async {
        (w.metrics.resyncs() >= settled).then_some(())
    })
    .await;
    w.kube.reset_counters();
    let portal_writes = w.portal_writes().await;
    let measured_from = w.metrics.resyncs();
    let triggers = w.metrics.resync_triggers();
    wait_for(DEADLINE, "two more resyncs", || async {
        (w.metrics.resyncs() >= measured_from + 2).then_some(())
    })
    .await;
    assert_eq!(
        w.metrics.resync_triggers(),
        triggers,
        "the resyncs found every object (the Account too) in line"
    );
    assert_eq!(
        w.kube.writes(),
        0,
        "API server writes: {:?}",
        w.kube.counters()
    );
    assert_eq!(w.portal_writes().await, portal_writes, "portal writes");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_acts_and_health_is_served() {
    let w = world().await;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let start = |identity: &str, metrics: Arc<Metrics>, listen: Option<std::net::SocketAddr>| {
        let portal = HttpPortal::new(&w.portal.base, &w.portal.platform_key).unwrap();
        let config = portal_operator::controller::Config {
            resync: Duration::from_secs(3600),
            metrics_listen: listen,
            leader_election: Some(portal_operator::controller::LeaderElection {
                lease_name: "portal-operator".into(),
                namespace: NS.into(),
                identity: identity.into(),
            }),
            concurrency: 4,
            ..Default::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(portal_operator::controller::run(
            w.kube.client(),
            portal,
            metrics,
            config,
            async {
                let _ = stopped.await;
            },
        ));
        (stop, task)
    };
    let leader_metrics = Arc::new(Metrics::default());
    let (stop_leader, leader) = start(
        "replica-a",
        leader_metrics.clone(),
        Some(([127, 0, 0, 1], port).into()),
    );
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(w.kube.client(), NS);
    wait_for(DEADLINE, "replica-a to hold the Lease", || async {
        leases
            .get_opt("portal-operator")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
            .filter(|h| h == "replica-a")
    })
    .await;
    let standby_metrics = Arc::new(Metrics::default());
    let standby_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let (stop_standby, standby) = start(
        "replica-b",
        standby_metrics.clone(),
        Some(([127, 0, 0, 1], standby_port).into()),
    );
    // A standby is ready to take over: it passes readiness without holding the Lease.
    wait_for(DEADLINE, "the standby's /readyz", || async {
        let response = reqwest::get(format!("http://127.0.0.1:{standby_port}/readyz"))
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    w.partner(&[NS]).await;
    assert!(
        !standby_metrics
            .render()
            .contains("portal_operator_reconciles_total{"),
        "the standby reconciles nothing"
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for(DEADLINE, "/readyz", || async {
        let response = reqwest::get(format!("{base}/readyz")).await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portal_operator_reconciles_total{kind=\"Account\"}"),
        "{metrics}"
    );
    let _ = stop_standby.send(());
    let _ = stop_leader.send(());
    tokio::time::timeout(Duration::from_secs(10), standby)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), leader)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalating_binding_is_stalled_once_with_the_portals_reason() {
    let mut w = world().await;
    // The partner exists first, made by the platform.
    w.start_operator(Duration::from_secs(3600));
    let account = w.partner(&[NS]).await;
    w.stop_operator().await;
    // The operator now acts with the key of an AccountOwner, who may not hand out
    // SubscriptionContributor (a role it does not hold).
    let platform = w.portal.platform();
    let (_, key) = platform
        .admin_with_key(&account, "ops@contoso.example", &["AccountOwner"])
        .await;
    platform
        .admin_with_key(&account, "hal@contoso.example", &["ServiceViewer"])
        .await;
    let base = w.portal.base.clone();
    w.start_operator_with(&base, &key, Duration::from_secs(3600));
    let writes = w.portal_writes().await;
    w.apply(json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "RoleBinding",
        "metadata": { "name": "promote-hal", "namespace": NS },
        "spec": { "accountRef": { "name": "northwind" }, "subjects": [{ "adminEmail": "hal@contoso.example" }], "roles": ["SubscriptionContributor"] }
    }))
    .await;
    let bindings: Api<RoleBinding> = Api::namespaced(w.kube.client(), NS);
    let stalled = w
        .wait_for(&bindings, "promote-hal", "a refusal", |b| {
            stalled_reason(b).is_some()
        })
        .await;
    assert_eq!(
        stalled_reason(&stalled).as_deref(),
        Some("EscalationDenied")
    );
    let subject = &stalled.status.as_ref().unwrap().subjects[0];
    assert_eq!(subject.state, GrantState::Refused);
    assert!(
        subject
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("SubscriptionContributor"),
        "{subject:?}"
    );
    assert_eq!(
        w.portal_writes().await,
        writes + 1,
        "one refused request, written nothing, and not repeated"
    );
    w.stop().await;
}
