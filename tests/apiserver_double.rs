//! Conformance of the Kubernetes API server double, driven only through `kube::Api` and
//! `kube::runtime::watcher` (and, at the end, the real `kubectl`).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use portal_operator::testing::apiserver::{ApiServer, Fault, Options};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "test.portal.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
#[kube(shortname = "wd", category = "portal")]
struct WidgetSpec {
    #[schemars(range(min = 1, max = 10))]
    size: i64,
    #[schemars(regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))]
    email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    color: Option<Color>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lifetime: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
enum Color {
    Red,
    Blue,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
struct WidgetStatus {
    phase: Option<String>,
}

fn widget(name: &str, size: i64) -> Widget {
    let mut widget = Widget::new(
        name,
        WidgetSpec {
            size,
            email: format!("{name}@example.com"),
            color: None,
            lifetime: None,
            tags: Vec::new(),
        },
    );
    widget.metadata.namespace = Some("default".into());
    widget
}

async fn double() -> ApiServer {
    double_with(Options::default()).await
}

async fn double_with(options: Options) -> ApiServer {
    let mut crd = serde_json::to_value(Widget::crd()).unwrap();
    // CEL rules, as the operator's CRDs carry them.
    let spec = crd
        .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
        .unwrap();
    spec["x-kubernetes-validations"] = json!([
        { "rule": "!has(self.lifetime) || (duration(self.lifetime) >= duration('1h') && duration(self.lifetime) <= duration('96h'))",
          "message": "lifetime must be between 1h and 96h" },
        { "rule": "!has(self.tags) || size(self.tags) <= 3", "message": "at most three tags" },
    ]);
    spec["properties"]["email"]["x-kubernetes-validations"] =
        json!([{ "rule": "self == oldSelf", "message": "email is immutable" }]);
    ApiServer::start_with(&[crd], options).await.unwrap()
}

fn api_error(error: kube::Error) -> kube::core::Status {
    match error {
        kube::Error::Api(response) => *response,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Concurrent writers: a watch still sees every change, in resourceVersion order, none lost
/// (the double once published changes after releasing its lock, so a later change could
/// overtake an earlier one and the earlier one was dropped as already seen).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_all_reach_a_watch_in_order() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let api = api.clone();
            tokio::spawn(async move {
                for n in 0..25 {
                    api.create(
                        &PostParams::default(),
                        &widget(&format!("w{writer}-{n}"), 1),
                    )
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut versions = Vec::new();
    while versions.len() < 200 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap_or_else(|_| panic!("only {} of 200 changes arrived", versions.len()))
            .unwrap()
            .unwrap();
        if let WatchEvent::Added(w) = event {
            versions.push(w.resource_version().unwrap().parse::<u64>().unwrap());
        }
    }
    assert!(versions.windows(2).all(|p| p[0] < p[1]), "in order");
    server.stop().await;
}

#[tokio::test]
async fn list_then_watch_sees_every_change_in_order() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    for n in 1..=3 {
        api.create(&PostParams::default(), &widget(&format!("w{n}"), n))
            .await
            .unwrap();
    }
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        list.items.iter().map(|w| w.name_any()).collect::<Vec<_>>(),
        ["w1", "w2", "w3"]
    );
    let rv = list.metadata.resource_version.clone().unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "size": 9 } })),
    )
    .await
    .unwrap();
    api.delete("w2", &DeleteParams::default()).await.unwrap();
    api.create(&PostParams::default(), &widget("w4", 4))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Modified(w) => {
                seen.push(format!("MODIFIED {} {}", w.name_any(), w.spec.size))
            }
            WatchEvent::Deleted(w) => seen.push(format!("DELETED {}", w.name_any())),
            WatchEvent::Added(w) => seen.push(format!("ADDED {}", w.name_any())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(seen, ["MODIFIED w1 9", "DELETED w2", "ADDED w4"]);
    server.stop().await;
}

#[tokio::test]
async fn a_watch_resumes_after_a_cut_without_losing_changes() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &widget("a", 1))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    server.cut_watches();
    assert!(
        stream.try_next().await.unwrap().is_none(),
        "a cut ends the stream"
    );
    api.create(&PostParams::default(), &widget("b", 2))
        .await
        .unwrap();
    let mut resumed = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match resumed.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(w) => assert_eq!(w.name_any(), "b"),
        other => panic!("expected b to be added, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn a_too_old_resource_version_is_410_gone_and_the_watcher_relists() {
    let server = double_with(Options {
        history: 5,
        ..Options::default()
    })
    .await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &widget("first", 1))
        .await
        .unwrap();
    let old_rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for n in 0..10 {
        api.create(&PostParams::default(), &widget(&format!("n{n}"), 1))
            .await
            .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(error) => {
            assert_eq!(error.code, 410);
            assert_eq!(error.reason, "Expired");
        }
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    // kube's watcher recovers from 410 by listing again.
    let (reader, writer) = kube::runtime::reflector::store::<Widget>();
    let watching = tokio::spawn(
        kube::runtime::reflector(writer, watcher(api.clone(), watcher::Config::default()))
            .default_backoff()
            .for_each(|_| async {}),
    );
    eventually("the reflector to hold 11 widgets", || async {
        (reader.state().len() == 11).then_some(())
    })
    .await;
    server.cut_watches();
    for n in 10..20 {
        api.create(&PostParams::default(), &widget(&format!("n{n}"), 1))
            .await
            .unwrap();
    }
    eventually(
        "the reflector to catch up after the history moved on",
        || async { (reader.state().len() == 21).then_some(()) },
    )
    .await;
    watching.abort();
    server.stop().await;
}

#[tokio::test]
async fn a_stale_update_is_a_conflict() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    let created = api
        .create(&PostParams::default(), &widget("c", 1))
        .await
        .unwrap();
    let mut first = created.clone();
    first.spec.size = 2;
    api.replace("c", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut stale = created;
    stale.spec.size = 3;
    let error = api_error(
        api.replace("c", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((error.code, error.reason.as_str()), (409, "Conflict"));
    let exists = api_error(
        api.create(&PostParams::default(), &widget("c", 1))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (exists.code, exists.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert!(
        api.get_opt("nope").await.unwrap().is_none(),
        "404 NotFound reads as None"
    );
    server.stop().await;
}

#[tokio::test]
async fn deletion_waits_for_finalizers_then_removes_and_announces() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    let mut with_finalizer = widget("f", 1);
    with_finalizer.metadata.finalizers = Some(vec!["test.portal.dev/cleanup".into()]);
    api.create(&PostParams::default(), &with_finalizer)
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = api.get("f").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "marked for deletion"
    );
    // No new finalizers once deletion started.
    let refused = api
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "metadata": { "finalizers": ["test.portal.dev/cleanup", "other/x"] } }),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(refused).code, 422);
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .unwrap();
    assert!(
        api.get_opt("f").await.unwrap().is_none(),
        "gone once its finalizers are"
    );
    let mut kinds = Vec::new();
    while kinds.last() != Some(&"DELETED") {
        kinds.push(match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(kinds, ["MODIFIED", "DELETED"]);
    server.stop().await;
}

#[tokio::test]
async fn status_is_isolated_from_the_main_resource_both_ways() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    let mut with_status = widget("s", 1);
    with_status.status = Some(WidgetStatus {
        phase: Some("Ignored".into()),
    });
    let created = api
        .create(&PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(created.status, None, "status is dropped on create");
    api.patch_status(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": { "phase": "Ready" }, "spec": { "size": 7 } })),
    )
    .await
    .unwrap();
    let after_status = api.get("s").await.unwrap();
    assert_eq!(after_status.status.unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(
        after_status.spec.size, 1,
        "a status write never changes the spec"
    );
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": { "phase": "Hacked" }, "spec": { "size": 5 } })),
    )
    .await
    .unwrap();
    let after_main = api.get("s").await.unwrap();
    assert_eq!(after_main.spec.size, 5);
    assert_eq!(
        after_main.status.unwrap().phase.as_deref(),
        Some("Ready"),
        "a main write never changes the status"
    );
    server.stop().await;
}

#[tokio::test]
async fn generation_moves_with_the_spec_only() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    let generation = |w: &Widget| w.metadata.generation.unwrap();
    let created = api
        .create(&PostParams::default(), &widget("g", 1))
        .await
        .unwrap();
    assert_eq!(generation(&created), 1);
    let labelled = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "a": "b" } } })),
        )
        .await
        .unwrap();
    assert_eq!(generation(&labelled), 1);
    let status = api
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "X" } })),
        )
        .await
        .unwrap();
    assert_eq!(generation(&status), 1);
    let changed = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "size": 2 } })),
        )
        .await
        .unwrap();
    assert_eq!(generation(&changed), 2);
    // A write that changes nothing keeps the resourceVersion.
    let same = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "size": 2 } })),
        )
        .await
        .unwrap();
    assert_eq!(same.resource_version(), changed.resource_version());
    server.stop().await;
}

#[tokio::test]
async fn server_side_apply_owns_fields_per_manager() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    let apply = |manager: &'static str, force: bool, body: serde_json::Value| {
        let api = api.clone();
        async move {
            let mut params = PatchParams::apply(manager);
            params.force = force;
            api.patch("ssa", &params, &Patch::Apply(body)).await
        }
    };
    let base = json!({ "apiVersion": "test.portal.dev/v1", "kind": "Widget", "metadata": { "name": "ssa", "labels": { "team": "a" } },
                       "spec": { "size": 3, "email": "ssa@example.com", "color": "Red" } });
    let created = apply("alpha", false, base).await.unwrap();
    assert_eq!(created.spec.size, 3);
    let conflict = apply("beta", false, json!({ "apiVersion": "test.portal.dev/v1", "kind": "Widget", "spec": { "size": 4, "email": "ssa@example.com" } }))
        .await
        .unwrap_err();
    let conflict = api_error(conflict);
    assert_eq!(conflict.code, 409);
    assert!(
        conflict.message.contains("conflict with \"alpha\""),
        "{}",
        conflict.message
    );
    let forced = apply("beta", true, json!({ "apiVersion": "test.portal.dev/v1", "kind": "Widget", "spec": { "size": 4, "email": "ssa@example.com" } }))
        .await
        .unwrap();
    assert_eq!(forced.spec.size, 4);
    // alpha drops color from its configuration: removed (only alpha owned it); the label stays
    // because alpha still applies it; size and email now belong to beta and stay.
    let dropped = apply("alpha", false, json!({ "apiVersion": "test.portal.dev/v1", "kind": "Widget", "metadata": { "labels": { "team": "a" } } }))
        .await
        .unwrap();
    assert_eq!(dropped.spec.color, None);
    assert_eq!(dropped.spec.size, 4);
    assert_eq!(dropped.labels().get("team").map(String::as_str), Some("a"));
    // A map a manager stops applying goes whole, not as an empty map left behind (a typed
    // client would fail to read a struct left with none of its required fields).
    apply("gamma", false, json!({ "apiVersion": "test.portal.dev/v1", "kind": "Widget", "metadata": { "annotations": { "note": "x" } } }))
        .await
        .unwrap();
    let without = apply(
        "gamma",
        false,
        json!({ "apiVersion": "test.portal.dev/v1", "kind": "Widget", "metadata": {} }),
    )
    .await
    .unwrap();
    assert_eq!(without.metadata.annotations, None, "{:?}", without.metadata);
    // Apply on /status.
    api.patch_status("ssa", &PatchParams::apply("ctrl").force(), &Patch::Apply(json!({ "apiVersion": "test.portal.dev/v1", "kind": "Widget", "status": { "phase": "Ready" } })))
        .await
        .unwrap();
    assert_eq!(
        api.get_status("ssa")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Ready")
    );
    server.stop().await;
}

#[tokio::test]
async fn schema_violations_are_rejected_with_field_paths_and_defaults_pruning_apply() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    let mut bad = widget("bad", 11);
    bad.spec.email = "not an email".into();
    let error = api_error(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((error.code, error.reason.as_str()), (422, "Invalid"));
    assert!(
        error
            .message
            .starts_with("Widget.test.portal.dev \"bad\" is invalid: "),
        "{}",
        error.message
    );
    assert!(
        error.message.contains(
            "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
        ),
        "{}",
        error.message
    );
    assert!(
        error
            .message
            .contains("spec.email: Invalid value: \"not an email\""),
        "{}",
        error.message
    );
    let raw: Api<kube::api::DynamicObject> = Api::default_namespaced_with(
        server.client(),
        &kube::api::ApiResource::erase::<Widget>(&()),
    );
    let wrong_enum = serde_json::from_value(
        json!({ "apiVersion": "test.portal.dev/v1", "kind": "Widget", "metadata": { "name": "e" },
        "spec": { "size": 1, "email": "e@example.com", "color": "Green" } }),
    )
    .unwrap();
    let error = api_error(
        raw.create(&PostParams::default(), &wrong_enum)
            .await
            .unwrap_err(),
    );
    assert!(
        error
            .message
            .contains("spec.color: Unsupported value: \"Green\""),
        "{}",
        error.message
    );
    let unknown = serde_json::from_value(
        json!({ "apiVersion": "test.portal.dev/v1", "kind": "Widget", "metadata": { "name": "u" },
        "spec": { "size": 1, "email": "u@example.com", "surprise": true } }),
    )
    .unwrap();
    let created = raw.create(&PostParams::default(), &unknown).await.unwrap();
    assert!(
        created.data["spec"].get("surprise").is_none(),
        "unknown fields are pruned"
    );
    let missing = serde_json::from_value(json!({ "apiVersion": "test.portal.dev/v1", "kind": "Widget", "metadata": { "name": "m" }, "spec": { "size": 1 } })).unwrap();
    let error = api_error(
        raw.create(&PostParams::default(), &missing)
            .await
            .unwrap_err(),
    );
    assert!(
        error.message.contains("spec.email: Required value"),
        "{}",
        error.message
    );
    server.stop().await;
}

#[tokio::test]
async fn cel_rules_are_evaluated_with_self_and_old_self() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    let mut long = widget("cel", 1);
    long.spec.lifetime = Some("97h".into());
    let error = api_error(api.create(&PostParams::default(), &long).await.unwrap_err());
    assert_eq!(error.code, 422);
    assert!(
        error
            .message
            .contains("spec: Invalid value: \"object\": lifetime must be between 1h and 96h"),
        "{}",
        error.message
    );
    long.spec.lifetime = Some("48h".into());
    long.spec.tags = vec!["a".into(), "b".into(), "c".into(), "d".into()];
    let error = api_error(api.create(&PostParams::default(), &long).await.unwrap_err());
    assert!(
        error.message.contains("at most three tags"),
        "{}",
        error.message
    );
    long.spec.tags.pop();
    api.create(&PostParams::default(), &long).await.unwrap();
    // A transition rule: the email cannot change once set (it was not checked on create).
    let error = api_error(
        api.patch(
            "cel",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "email": "other@example.com" } })),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        error
            .message
            .contains("spec.email: Invalid value: \"string\": email is immutable"),
        "{}",
        error.message
    );
    api.patch(
        "cel",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "size": 2 } })),
    )
    .await
    .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn deleting_an_owner_collects_its_secret() {
    let server = double().await;
    let widgets: Api<Widget> = Api::default_namespaced(server.client());
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    let owner = widgets
        .create(&PostParams::default(), &widget("owner", 1))
        .await
        .unwrap();
    let mut secret = Secret::default();
    secret.metadata.name = Some("owner-link".into());
    secret.metadata.owner_references = Some(vec![OwnerReference {
        api_version: Widget::api_version(&()).into(),
        kind: Widget::kind(&()).into(),
        name: owner.name_any(),
        uid: owner.uid().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    secret.string_data = Some(BTreeMap::from([(
        "link".to_owned(),
        "https://example".to_owned(),
    )]));
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut unrelated = Secret::default();
    unrelated.metadata.name = Some("unrelated".into());
    secrets
        .create(&PostParams::default(), &unrelated)
        .await
        .unwrap();
    // Owner references given and taken away after creation count as the real server's do.
    let owned_by = json!({ "metadata": { "ownerReferences": [{
        "apiVersion": Widget::api_version(&()), "kind": Widget::kind(&()),
        "name": owner.name_any(), "uid": owner.uid().unwrap(),
    }] } });
    for name in ["adopted", "released"] {
        let mut later = Secret::default();
        later.metadata.name = Some(name.into());
        secrets
            .create(&PostParams::default(), &later)
            .await
            .unwrap();
        secrets
            .patch(name, &PatchParams::default(), &Patch::Merge(&owned_by))
            .await
            .unwrap();
    }
    secrets
        .patch(
            "released",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "ownerReferences": null } })),
        )
        .await
        .unwrap();
    widgets
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        secrets.get_opt("owner-link").await.unwrap().is_none(),
        "the owned Secret is collected"
    );
    assert!(
        secrets.get_opt("adopted").await.unwrap().is_none(),
        "a Secret given an owner later is collected"
    );
    assert!(
        secrets.get_opt("released").await.unwrap().is_some(),
        "a Secret whose owner reference was removed is kept"
    );
    assert!(secrets.get_opt("unrelated").await.unwrap().is_some());
    server.stop().await;
}

#[tokio::test]
async fn patches_selectors_pages_and_media_types_behave_as_the_real_server() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    for n in 0..7 {
        let mut w = widget(&format!("p{n}"), 1 + n % 3);
        w.metadata.labels = Some(BTreeMap::from([(
            "tier".to_owned(),
            if n % 2 == 0 { "even" } else { "odd" }.to_owned(),
        )]));
        api.create(&PostParams::default(), &w).await.unwrap();
    }
    let odd = api
        .list(&ListParams::default().labels("tier=odd"))
        .await
        .unwrap();
    assert_eq!(odd.items.len(), 3);
    let not_even = api
        .list(&ListParams::default().labels("tier notin (even)"))
        .await
        .unwrap();
    assert_eq!(not_even.items.len(), 3);
    let named = api
        .list(&ListParams::default().fields("metadata.name=p4"))
        .await
        .unwrap();
    assert_eq!(
        named.items.iter().map(|w| w.name_any()).collect::<Vec<_>>(),
        ["p4"]
    );
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(3);
    loop {
        let page = api.list(&params).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().map(|w| w.name_any()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = ListParams::default().limit(3).continue_token(&token),
            None => break,
        }
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    // JSON patch with a failing test operation changes nothing.
    let failing: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": "/spec/size", "value": 99 },
        { "op": "replace", "path": "/spec/size", "value": 5 }
    ]))
    .unwrap();
    let error = api_error(
        api.patch("p0", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code, 422);
    let passing: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": "/spec/size", "value": 1 },
        { "op": "replace", "path": "/spec/size", "value": 5 }
    ]))
    .unwrap();
    assert_eq!(
        api.patch("p0", &PatchParams::default(), &Patch::Json::<()>(passing))
            .await
            .unwrap()
            .spec
            .size,
        5
    );
    // Strategic merge does not exist for custom resources.
    let error = api_error(
        api.patch(
            "p1",
            &PatchParams::default(),
            &Patch::Strategic(json!({ "spec": { "size": 2 } })),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (error.code, error.reason.as_str()),
        (415, "UnsupportedMediaType")
    );
    server.stop().await;
}

#[tokio::test]
async fn counters_and_injected_faults() {
    let server = double().await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &widget("k", 1))
        .await
        .unwrap();
    api.get("k").await.unwrap();
    api.patch_status(
        "k",
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": { "phase": "A" } })),
    )
    .await
    .unwrap();
    assert_eq!(server.count("create", "widgets"), 1);
    assert_eq!(server.count("get", "widgets"), 1);
    assert_eq!(server.count("patch", "widgets/status"), 1);
    assert_eq!(server.writes(), 2);
    server.fail_next(1, Fault::Status(500));
    assert_eq!(api_error(api.get("k").await.unwrap_err()).code, 500);
    // kube's client retries a 429 after the server's Retry-After, as against a real server.
    server.fail_next(
        1,
        Fault::TooManyRequests {
            retry_after_seconds: 1,
        },
    );
    let gets_before = server.count("get", "widgets");
    let started = std::time::Instant::now();
    api.get("k").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the client waited for Retry-After"
    );
    assert_eq!(
        server.count("get", "widgets"),
        gets_before + 1,
        "the throttled attempt is not counted as served"
    );
    server.fail_next(1, Fault::Stall(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    api.get("k").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(api.get("k").await.is_ok(), "faults are used up");
    server.stop().await;
}

#[tokio::test]
async fn namespaces_must_exist_and_cluster_lists_span_them() {
    let server = double().await;
    let client = server.client();
    let elsewhere: Api<Widget> = Api::namespaced(client.clone(), "team-a");
    let mut w = widget("x", 1);
    w.metadata.namespace = Some("team-a".into());
    let error = api_error(
        elsewhere
            .create(&PostParams::default(), &w)
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code, 404, "{}", error.message);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut ns = k8s_openapi::api::core::v1::Namespace::default();
    ns.metadata.name = Some("team-a".into());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    elsewhere.create(&PostParams::default(), &w).await.unwrap();
    Api::<Widget>::default_namespaced(client.clone())
        .create(&PostParams::default(), &widget("y", 1))
        .await
        .unwrap();
    let all: Api<Widget> = Api::all(client);
    let mut names: Vec<String> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|w| format!("{}/{}", w.namespace().unwrap(), w.name_any()))
        .collect();
    names.sort();
    assert_eq!(names, ["default/y", "team-a/x"]);
    server.stop().await;
}

/// The real kubectl as an outside client: discovery, get, apply, delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_talks_to_the_double() {
    // No skipping: the suite needs kubectl (README, "Test"), and a check that passes when its
    // tool is missing proves nothing.
    assert!(
        std::process::Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_ok_and(|output| output.status.success()),
        "kubectl (client) must be on the PATH to run this test; see the README's Test section"
    );
    let server = double().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let run = |args: Vec<String>| {
        let kubeconfig = kubeconfig.clone();
        async move {
            let output = tokio::process::Command::new("kubectl")
                .arg("--request-timeout=20s")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(&args)
                .kill_on_drop(true)
                .output()
                .await
                .unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let kubectl = |args: &[&str]| run(args.iter().map(|a| a.to_string()).collect());
    let (ok, out, err) = kubectl(&["get", "--raw", "/apis/test.portal.dev/v1"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("\"widgets\""), "{out}");
    let manifest = dir.path().join("widget.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: test.portal.dev/v1\nkind: Widget\nmetadata:\n  name: from-kubectl\nspec:\n  size: 2\n  email: k@example.com\n",
    )
    .unwrap();
    let (ok, out, err) = kubectl(&[
        "apply",
        "--validate=false",
        "-f",
        manifest.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "kubectl apply: {out}{err}");
    let (ok, out, err) = kubectl(&["get", "widgets", "-o", "name"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "widget.test.portal.dev/from-kubectl");
    let (ok, out, err) = kubectl(&["delete", "widget", "from-kubectl"]).await;
    assert!(ok, "kubectl delete: {out}{err}");
    let api: Api<Widget> = Api::default_namespaced(server.client());
    assert!(api.get_opt("from-kubectl").await.unwrap().is_none());
    server.stop().await;
}

#[tokio::test]
async fn crds_load_from_multi_document_yaml() {
    let yaml = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.test.portal.dev
spec:
  group: test.portal.dev
  scope: Cluster
  names: { plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd] }
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                level: { type: integer, default: 3 }
---
";
    let crds = ApiServer::crds_from_yaml(yaml).unwrap();
    assert_eq!(crds.len(), 1);
    let server = ApiServer::start(&crds).await.unwrap();
    let resource = kube::api::ApiResource {
        group: "test.portal.dev".into(),
        version: "v1alpha1".into(),
        api_version: "test.portal.dev/v1alpha1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    let api: Api<kube::api::DynamicObject> = Api::all_with(server.client(), &resource);
    let object = serde_json::from_value(
        json!({ "apiVersion": "test.portal.dev/v1alpha1", "kind": "Gadget",
        "metadata": { "name": "g1" }, "spec": {} }),
    )
    .unwrap();
    let created = api.create(&PostParams::default(), &object).await.unwrap();
    assert_eq!(
        created.data["spec"]["level"], 3,
        "the schema default applies"
    );
    assert_eq!(created.metadata.namespace, None, "cluster-scoped");
    server.stop().await;
}

#[tokio::test]
async fn leases_and_events_are_served_for_leader_election_and_recorders() {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::api::events::v1::Event;
    let server = double().await;
    let leases: Api<Lease> = Api::default_namespaced(server.client());
    let mut lease = Lease::default();
    lease.metadata.name = Some("portal-operator".into());
    lease.spec = Some(LeaseSpec {
        holder_identity: Some("pod-a".into()),
        lease_duration_seconds: Some(15),
        ..LeaseSpec::default()
    });
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut taken = created.clone();
    taken.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    leases
        .replace("portal-operator", &PostParams::default(), &taken)
        .await
        .unwrap();
    let stale = api_error(
        leases
            .replace("portal-operator", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert_eq!(stale.code, 409, "leader election relies on this conflict");
    let events: Api<Event> = Api::default_namespaced(server.client());
    let mut event = Event::default();
    event.metadata.generate_name = Some("widget.".into());
    event.reason = Some("Accepted".into());
    event.event_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let created = events.create(&PostParams::default(), &event).await.unwrap();
    assert!(created.name_any().starts_with("widget."));
    assert_eq!(server.count("create", "events"), 1);
    server.stop().await;
}

#[tokio::test]
async fn watches_that_allow_bookmarks_get_them() {
    let server = double_with(Options {
        bookmark_interval: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    let api: Api<Widget> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &widget("b", 1))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            },
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Bookmark(bookmark) => assert_eq!(bookmark.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    server.stop().await;
}
