//! The committed CRDs (`crds/*.yaml`), loaded into the API server double: defaults apply, and
//! bad manifests are refused with field paths and the rule's message.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use portal_operator::testing::apiserver::ApiServer;
use serde_json::{Value, json};

async fn double() -> ApiServer {
    let mut crds = Vec::new();
    for file in [
        "account",
        "admininvitation",
        "rolebinding",
        "accountmanager",
        "subscription",
        "userrole",
        "team",
        "user",
    ] {
        let text =
            std::fs::read_to_string(format!("{}/crds/{file}.yaml", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        crds.extend(ApiServer::crds_from_yaml(&text).unwrap());
    }
    ApiServer::start(&crds).await.unwrap()
}

fn api(server: &ApiServer, kind: &str, namespaced: bool) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "access.portal.dev",
        "v1alpha1",
        kind,
    ));
    if namespaced {
        Api::default_namespaced_with(server.client(), &resource)
    } else {
        Api::all_with(server.client(), &resource)
    }
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({ "apiVersion": "access.portal.dev/v1alpha1", "kind": kind, "metadata": { "name": name }, "spec": spec }))
        .unwrap()
}

async fn refused(api: &Api<DynamicObject>, candidate: DynamicObject) -> String {
    match api.create(&PostParams::default(), &candidate).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{}", status.message);
            status.message
        }
        other => panic!("expected 422, got {other:?}"),
    }
}

fn invitation(name: &str, extra: Value) -> DynamicObject {
    let mut spec = json!({ "accountRef": { "name": "contoso" }, "email": "ann@contoso.example", "firstName": "Ann", "lastName": "Lee" });
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    object("AdminInvitation", name, spec)
}

#[tokio::test]
async fn admin_invitation_defaults_and_refusals() {
    let server = double().await;
    let invitations = api(&server, "AdminInvitation", true);
    let created = invitations
        .create(&PostParams::default(), &invitation("ann", json!({})))
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["roles"], json!(["AccountOwner"]));
    assert_eq!(created.data["spec"]["delivery"], "Email");
    assert_eq!(created.data["spec"]["expiresAfter"], "48h");
    assert_eq!(created.data["spec"]["reissue"], "Never");
    let cases = [
        (
            json!({ "email": "not-an-email" }),
            "spec.email: Invalid value: \"string\": email must look like name@example.com",
        ),
        (
            json!({ "expiresAfter": "97h" }),
            "expiresAfter must be between 1h and 96h",
        ),
        (
            json!({ "expiresAfter": "30m" }),
            "expiresAfter must be between 1h and 96h",
        ),
        (
            json!({ "expiresAfter": "4d" }),
            "spec.expiresAfter: Invalid value: \"4d\": spec.expiresAfter in body should match",
        ),
        (
            json!({ "roles": ["Owner"] }),
            "spec.roles[0]: Unsupported value: \"Owner\"",
        ),
        (
            json!({ "roles": [] }),
            "spec.roles: Invalid value: []: spec.roles in body should have at least 1 items",
        ),
        (
            json!({ "roles": ["ServiceViewer", "ServiceViewer"] }),
            "spec.roles[1]: Duplicate value: \"ServiceViewer\"",
        ),
        (
            json!({ "delivery": "Fax" }),
            "spec.delivery: Unsupported value: \"Fax\"",
        ),
        (
            json!({ "firstName": "" }),
            "spec.firstName: Invalid value: \"\": spec.firstName in body should be at least 1 chars long",
        ),
    ];
    for (n, (extra, expected)) in cases.into_iter().enumerate() {
        let message = refused(&invitations, invitation(&format!("bad{n}"), extra.clone())).await;
        assert!(message.contains(expected), "{extra}: {message}");
    }
    let mut missing = invitation("missing", json!({}));
    missing.data["spec"]
        .as_object_mut()
        .unwrap()
        .remove("email");
    assert!(
        refused(&invitations, missing)
            .await
            .contains("spec.email: Required value")
    );
    // Immutable once created.
    let changed = invitations
        .patch(
            "ann",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "email": "other@contoso.example" } })),
        )
        .await
        .unwrap_err();
    assert!(
        changed.to_string().contains("email is immutable"),
        "{changed}"
    );
    invitations
        .patch(
            "ann",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "roles": ["ServiceViewer"] } })),
        )
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn accounts_role_bindings_and_account_managers_are_checked() {
    let server = double().await;
    let accounts = api(&server, "Account", false);
    accounts
        .create(
            &PostParams::default(),
            &object(
                "Account",
                "northwind",
                json!({ "displayName": "Northwind", "type": "Partner", "namespaces": ["team-a"] }),
            ),
        )
        .await
        .unwrap();
    let message = refused(
        &accounts,
        object(
            "Account",
            "bad",
            json!({ "displayName": "X", "type": "Client", "tenantId": "not-a-guid" }),
        ),
    )
    .await;
    assert!(message.contains("spec.tenantId"), "{message}");
    let message = refused(
        &accounts,
        object(
            "Account",
            "bad2",
            json!({ "displayName": "X", "type": "Client", "namespaces": ["Team_A"] }),
        ),
    )
    .await;
    assert!(
        message.contains("each entry must be a namespace name"),
        "{message}"
    );
    let moved = accounts
        .patch(
            "northwind",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "type": "Client" } })),
        )
        .await
        .unwrap_err();
    assert!(moved.to_string().contains("type is immutable"), "{moved}");

    let bindings = api(&server, "RoleBinding", true);
    let message = refused(&bindings, object("RoleBinding", "none", json!({ "accountRef": { "name": "northwind" }, "subjects": [], "roles": ["ServiceViewer"] }))).await;
    assert!(message.contains("spec.subjects"), "{message}");
    let message = refused(
        &bindings,
        object(
            "RoleBinding",
            "both",
            json!({ "accountRef": { "name": "northwind" }, "roles": ["ServiceViewer"],
            "subjects": [{ "adminEmail": "a@b.example", "accountManagerRef": { "name": "x" } }] }),
        ),
    )
    .await;
    assert!(
        message.contains("set exactly one of adminEmail and accountManagerRef"),
        "{message}"
    );
    let created = bindings
        .create(
            &PostParams::default(),
            &object("RoleBinding", "ok", json!({ "accountRef": { "name": "northwind" }, "roles": ["ServiceViewer"], "subjects": [{ "adminEmail": "a@b.example" }] })),
        )
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["scope"], "AccountAndDescendants");

    let managers = api(&server, "AccountManager", true);
    let message = refused(
        &managers,
        object("AccountManager", "de", json!({ "accountRef": { "name": "northwind" }, "firstName": "J", "lastName": "K", "email": "j@k.example", "language": "de" })),
    )
    .await;
    assert!(
        message.contains("spec.language: Unsupported value: \"de\""),
        "{message}"
    );
    managers
        .create(
            &PostParams::default(),
            &object("AccountManager", "jo", json!({ "accountRef": { "name": "northwind" }, "firstName": "Jo", "lastName": "Kim", "email": "jo@k.example", "resendActivation": 2 })),
        )
        .await
        .unwrap();
    let backwards = managers
        .patch(
            "jo",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "resendActivation": 1 } })),
        )
        .await
        .unwrap_err();
    assert!(
        backwards
            .to_string()
            .contains("resendActivation only counts up"),
        "{backwards}"
    );
    server.stop().await;
}

/// Every document under `examples/`, created through the API server double with the committed
/// CRDs: all are accepted.
#[tokio::test]
async fn examples_are_accepted_by_the_crd_schemas() {
    let server = double().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(server.client());
    for name in ["team-contoso", "team-fabrikam"] {
        let mut namespace = k8s_openapi::api::core::v1::Namespace::default();
        namespace.metadata.name = Some(name.into());
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    let mut files = Vec::new();
    let mut folders = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples"
    ))];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut created = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for document in ApiServer::crds_from_yaml(&text).unwrap() {
            let kind = document["kind"].as_str().unwrap().to_owned();
            let name = document["metadata"]["name"].as_str().unwrap().to_owned();
            let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
                "access.portal.dev",
                "v1alpha1",
                &kind,
            ));
            let api: Api<DynamicObject> = match document["metadata"]["namespace"].as_str() {
                Some(namespace) => Api::namespaced_with(server.client(), namespace, &resource),
                None => Api::all_with(server.client(), &resource),
            };
            let object: DynamicObject = serde_json::from_value(document).unwrap();
            api.create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|e| panic!("{}: {kind}/{name} was refused: {e}", file.display()));
            created.push(format!("{kind}/{name}"));
        }
    }
    created.sort();
    assert_eq!(
        created,
        [
            "Account/contoso",
            "Account/fabrikam",
            "Account/northwind",
            "AccountManager/camille",
            "AdminInvitation/ana-owner",
            "AdminInvitation/billing-lead",
            "AdminInvitation/helpdesk",
            "RoleBinding/helpdesk-branding",
            "Subscription/standard",
            "Team/support",
            "User/chloe-martin",
            "User/new-starter",
            "User/reception",
            "UserRole/receptionist",
            "UserRole/telephony-admin",
        ]
    );
    server.stop().await;
}
