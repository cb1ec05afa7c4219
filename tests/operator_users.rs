//! Subscriptions and Users through the operator, end to end: its controllers in-process against
//! the Kubernetes API server double (over HTTP, with the committed CRDs) and the real portal
//! (over HTTP, SQLite). Every wait is for a condition, with a deadline.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use portal_operator::controller::metrics::Metrics;
use portal_operator::crd::{Subscription, User, UserPhase};
use portal_operator::portal_client::HttpPortal;
use portal_operator::testing::apiserver::ApiServer;
use serde_json::{Value, json};
use support::{Backend, TestPortal, wait_for};
use tokio::sync::oneshot;

const NS: &str = "team-contoso";
const DEADLINE: Duration = Duration::from_secs(20);

struct World {
    portal: TestPortal,
    kube: ApiServer,
    operator: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl World {
    async fn start() -> World {
        let portal = TestPortal::start(Backend::Sqlite).await;
        let kube = support::kube_double([NS.to_owned()]).await;
        let client = HttpPortal::new(&portal.base, &portal.platform_key).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(portal_operator::controller::run(
            kube.client(),
            client,
            Arc::new(Metrics::default()),
            portal_operator::controller::Config {
                resync: Duration::from_secs(3600),
                ..Default::default()
            },
            async {
                let _ = stopped.await;
            },
        ));
        let task = tokio::spawn(async move { task.await.unwrap().unwrap() });
        let world = World {
            portal,
            kube,
            operator: Some((stop, task)),
        };
        world
            .apply(json!({
                "apiVersion": "access.portal.dev/v1alpha1", "kind": "Account",
                "metadata": { "name": "contoso" },
                "spec": { "displayName": "Contoso", "type": "Partner", "namespaces": [NS] }
            }))
            .await;
        world
    }

    async fn apply(&self, manifest: Value) {
        let kind = manifest["kind"].as_str().unwrap();
        let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "access.portal.dev",
            "v1alpha1",
            kind,
        ));
        let api: Api<DynamicObject> = if kind == "Account" {
            Api::all_with(self.kube.client(), &resource)
        } else {
            Api::namespaced_with(self.kube.client(), NS, &resource)
        };
        api.patch(
            &name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&manifest),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    fn users(&self) -> Api<User> {
        Api::namespaced(self.kube.client(), NS)
    }

    fn subscriptions(&self) -> Api<Subscription> {
        Api::namespaced(self.kube.client(), NS)
    }

    async fn user_where(&self, name: &str, what: &str, check: impl Fn(&User) -> bool) -> User {
        let api = self.users();
        wait_for(DEADLINE, what, || async {
            api.get_opt(name).await.unwrap().filter(|u| check(u))
        })
        .await
    }

    async fn stop(mut self) {
        if let Some((stop, task)) = self.operator.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.kube.stop().await;
        self.portal.stop().await;
    }
}

fn subscription(quantity: i64) -> Value {
    json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "Subscription",
        "metadata": { "name": "standard", "namespace": NS },
        "spec": { "accountRef": { "name": "contoso" }, "licenseType": "Standard", "quantity": quantity }
    })
}

fn user(name: &str, user_id: &str, extra: Value) -> Value {
    let mut spec = json!({ "accountRef": { "name": "contoso" }, "userId": user_id, "firstName": "Test", "lastName": "User", "licenseType": "Standard" });
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    json!({ "apiVersion": "access.portal.dev/v1alpha1", "kind": "User", "metadata": { "name": name, "namespace": NS }, "spec": spec })
}

fn condition(object: &impl serde::Serialize, kind: &str) -> (String, String, String) {
    let value = serde_json::to_value(object).unwrap();
    let found = value["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind).cloned())
        .unwrap_or(Value::Null);
    (
        found["status"].as_str().unwrap_or_default().to_owned(),
        found["reason"].as_str().unwrap_or_default().to_owned(),
        found["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn phase(user: &User) -> Option<UserPhase> {
    user.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_waits_for_a_licence_names_the_subscription_and_converges_when_it_is_raised() {
    let w = World::start().await;
    w.apply(subscription(1)).await;
    w.apply(user("ann", "ann@contoso.example", json!({}))).await;
    let ann = w
        .user_where("ann", "ann invited", |u| {
            phase(u) == Some(UserPhase::Invited)
        })
        .await;
    assert_eq!(condition(&ann, "Ready").1, "ActivationPending");
    // The subscription's counts follow the licence taken (the feed's user.created).
    let api = w.subscriptions();
    wait_for(DEADLINE, "the subscription to count ann", || async {
        let s = api.get("standard").await.unwrap();
        (s.status.as_ref().and_then(|s| s.assigned) == Some(1)).then_some(s)
    })
    .await;

    w.apply(user("bob", "bob@contoso.example", json!({}))).await;
    let bob = w
        .user_where("bob", "bob stalled for want of a licence", |u| {
            condition(u, "Stalled").0 == "True"
        })
        .await;
    let (_, reason, message) = condition(&bob, "Stalled");
    assert_eq!(reason, "LicenseExhausted");
    assert!(
        message.contains("all 1 are assigned") && message.contains("Standard Subscription"),
        "the message says what to raise: {message}"
    );
    let license = bob.status.as_ref().unwrap().license.clone().unwrap();
    assert!(!license.assigned);

    // Raising the subscription is enough: no change to bob's spec.
    w.apply(subscription(2)).await;
    let bob = w
        .user_where("bob", "bob created once a licence is free", |u| {
            phase(u) == Some(UserPhase::Invited)
        })
        .await;
    assert_eq!(condition(&bob, "Stalled").0, "False");
    assert!(bob.status.unwrap().license.unwrap().assigned);
    let standard = wait_for(DEADLINE, "2 of 2 assigned", || async {
        let s = api.get("standard").await.unwrap();
        (s.status.as_ref().and_then(|s| s.assigned) == Some(2)).then_some(s)
    })
    .await;
    assert_eq!(standard.status.unwrap().free, Some(0));
    // Deleting a User deletes the portal user and gives its licence back.
    w.users()
        .delete("bob", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(DEADLINE, "bob's licence given back", || async {
        let s = api.get("standard").await.unwrap();
        (s.status.as_ref().and_then(|s| s.free) == Some(1)).then_some(())
    })
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_user_is_invited_when_invite_turns_true_and_settings_follow_the_spec() {
    let w = World::start().await;
    w.apply(subscription(5)).await;
    w.apply(user(
        "cat",
        "+44 7700 900123",
        json!({ "invite": false, "timeZone": "Europe/London" }),
    ))
    .await;
    let cat = w
        .user_where("cat", "cat prepared", |u| {
            phase(u) == Some(UserPhase::Prepared)
        })
        .await;
    assert_eq!(
        condition(&cat, "Ready"),
        ("True".into(), "Prepared".into(), condition(&cat, "Ready").2)
    );
    assert!(
        w.portal.platform().all_pages("/v1/outbox").await.is_empty(),
        "a prepared user gets nothing"
    );
    w.apply(user(
        "cat",
        "+44 7700 900123",
        json!({ "invite": true, "timeZone": "America/New_York", "permissions": ["users_teams.manage"] }),
    ))
    .await;
    let cat = w
        .user_where("cat", "cat invited with the new settings", |u| {
            phase(u) == Some(UserPhase::Invited)
                && u.status.as_ref().is_some_and(|s| !s.permissions.is_empty())
        })
        .await;
    let status = cat.status.unwrap();
    assert_eq!(status.permissions[0].name, "users_teams.manage");
    assert_eq!(status.permissions[0].origins, ["direct"]);
    let portal_user = w
        .portal
        .platform()
        .get(&format!("/v1/users/{}", status.portal_id.unwrap()))
        .await
        .expect(200);
    assert_eq!(portal_user.body["timeZone"], "America/New_York");
    assert_eq!(portal_user.body["userId"], "+447700900123");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_user_stalls_with_the_portals_reason_and_bad_input_is_refused_at_admission() {
    let w = World::start().await;
    w.apply(subscription(5)).await;
    // Another account manager already uses this email as a login.
    w.portal
        .platform()
        .post(
            &format!(
                "/v1/accounts/{}/account-managers",
                wait_for(DEADLINE, "the account's portal id", || async {
                    let accounts: Api<portal_operator::crd::Account> = Api::all(w.kube.client());
                    accounts
                        .get("contoso")
                        .await
                        .unwrap()
                        .status
                        .and_then(|s| s.portal_id)
                })
                .await
            ),
            json!({ "firstName": "Mia", "lastName": "Wong", "email": "mia@contoso.example" }),
        )
        .await
        .expect(201);
    w.apply(user("mia", "mia@contoso.example", json!({}))).await;
    let mia = w
        .user_where("mia", "mia stalled", |u| {
            condition(u, "Stalled").0 == "True"
        })
        .await;
    assert_eq!(condition(&mia, "Stalled").1, "UserIdConflict");
    // The schema's rules, checked by the API server (the double runs the CRD's CEL).
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "access.portal.dev",
        "v1alpha1",
        "User",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(w.kube.client(), NS, &resource);
    for (spec, words) in [
        (
            json!({ "userId": "not a login" }),
            "userId must be an email address or a mobile number",
        ),
        (json!({ "mobileNumber": "07700 900123" }), "mobileNumber"),
        (json!({ "mex": true }), "set linkedNumber too"),
        (json!({ "licenseType": "Gold" }), "licenseType"),
    ] {
        let manifest = user("bad", "bad@contoso.example", spec.clone());
        let refused = api
            .patch(
                "bad",
                &PatchParams::apply("kubectl").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .expect_err("refused at admission");
        assert!(refused.to_string().contains(words), "{spec}: {refused}");
    }
    // An immutable user ID.
    let changed = user("mia", "mia2@contoso.example", json!({}));
    let refused = api
        .patch(
            "mia",
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&changed),
        )
        .await
        .expect_err("userId is immutable");
    assert!(
        refused.to_string().contains("userId is immutable"),
        "{refused}"
    );
    w.stop().await;
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["accountRef"] = json!({ "name": "contoso" });
    json!({ "apiVersion": "access.portal.dev/v1alpha1", "kind": kind, "metadata": { "name": name, "namespace": NS }, "spec": spec })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_role_ends_only_the_memberships_it_gave_and_statuses_follow() {
    let w = World::start().await;
    w.apply(subscription(5)).await;
    w.apply(object("Team", "queue", json!({ "displayName": "Queue" })))
        .await;
    w.apply(object(
        "UserRole",
        "agent",
        json!({ "displayName": "Agent", "team": "Queue", "permissions": ["call_queues.answer"] }),
    ))
    .await;
    w.apply(object(
        "UserRole",
        "lead",
        json!({ "displayName": "Lead", "team": "Queue" }),
    ))
    .await;
    w.apply(user(
        "ann",
        "ann@contoso.example",
        json!({ "roles": ["Agent"] }),
    ))
    .await;
    w.apply(user(
        "bob",
        "bob@contoso.example",
        json!({ "roles": ["Agent", "Lead"] }),
    ))
    .await;
    let teams: Api<portal_operator::crd::Team> = Api::namespaced(w.kube.client(), NS);
    let members = |team: &portal_operator::crd::Team| -> Vec<String> {
        team.status
            .as_ref()
            .map(|s| s.members.iter().map(|m| m.name.clone()).collect())
            .unwrap_or_default()
    };
    wait_for(DEADLINE, "the team to count ann and bob", || async {
        let team = teams.get("queue").await.unwrap();
        (members(&team) == ["ann@contoso.example", "bob@contoso.example"]).then_some(())
    })
    .await;
    let ann = w
        .user_where("ann", "ann in Queue through Agent", |u| {
            u.status.as_ref().is_some_and(|s| {
                s.teams.iter().any(|t| t.name == "Queue")
                    && s.permissions.iter().any(|p| p.name == "call_queues.answer")
            })
        })
        .await;
    let status = ann.status.unwrap();
    assert_eq!(status.teams[0].origins, ["role Agent belongs to the team"]);
    assert_eq!(status.permissions[0].origins, ["role Agent"]);
    // Delete the role: ann leaves Queue, bob stays through Lead; both lose its permission.
    let roles: Api<portal_operator::crd::UserRole> = Api::namespaced(w.kube.client(), NS);
    roles
        .delete("agent", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(DEADLINE, "the team to keep only bob", || async {
        let team = teams.get("queue").await.unwrap();
        (members(&team) == ["bob@contoso.example"]).then_some(())
    })
    .await;
    w.user_where("ann", "ann without Queue or the permission", |u| {
        u.status
            .as_ref()
            .is_some_and(|s| s.teams.is_empty() && s.permissions.is_empty())
    })
    .await;
    // A user naming a role that is not there yet waits for it, and is created once it is.
    w.apply(user(
        "cat",
        "cat@contoso.example",
        json!({ "roles": ["Supervisor"] }),
    ))
    .await;
    let cat = w
        .user_where("cat", "cat waiting for its role", |u| {
            condition(u, "Stalled").0 == "True"
        })
        .await;
    assert_eq!(condition(&cat, "Stalled").1, "UnknownReference");
    w.apply(object(
        "UserRole",
        "supervisor",
        json!({ "displayName": "Supervisor" }),
    ))
    .await;
    w.user_where("cat", "cat created once its role exists", |u| {
        phase(u) == Some(UserPhase::Invited)
    })
    .await;
    w.stop().await;
}
