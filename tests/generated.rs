//! Generated files match the code that generates them. Run with UPDATE_GENERATED=1 to rewrite
//! them after a deliberate change (never under CI).

mod support;

use std::path::Path;

use portal_operator::portal::{OPERATIONS, openapi_document as document};
use reqwest::Method;

/// Compares `generated` with the committed file, or rewrites the file when asked to.
fn check_generated(relative: &str, generated: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let update = std::env::var_os("UPDATE_GENERATED").is_some() && std::env::var_os("CI").is_none();
    if update {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{relative} is out of date with the code; regenerate it with `UPDATE_GENERATED=1 cargo test --test generated` and commit it"
    );
}

#[test]
fn openapi_document_matches_the_committed_copy() {
    let text = serde_json::to_string_pretty(&document()).unwrap() + "\n";
    check_generated("docs/openapi.json", &text);
}

#[test]
fn crds_match_the_committed_copies() {
    for (file, crd) in portal_operator::crd::definitions() {
        let yaml = portal_operator::crd::to_yaml(&crd);
        check_generated(&format!("crds/{file}"), &yaml);
        // Helm installs a chart's crds/ before its templates: the same documents.
        check_generated(&format!("charts/portal-operator/crds/{file}"), &yaml);
    }
}

#[test]
fn openapi_document_describes_every_body_with_a_schema() {
    let document = document();
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for name in [
        "AccountView",
        "InvitationView",
        "CreateInvitation",
        "EffectiveAccess",
        "Problem",
        "Role",
        "Permission",
    ] {
        assert!(
            schemas.contains_key(name),
            "components.schemas lacks {name}"
        );
    }
    let text = document.to_string();
    // Every $ref points at a schema that exists.
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap();
        let name = target
            .strip_prefix("#/components/schemas/")
            .expect("refs point into components.schemas");
        assert!(schemas.contains_key(name), "dangling $ref {target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served() {
    let portal = support::TestPortal::start(support::Backend::Sqlite).await;
    let anonymous = portal.anonymous();
    for operation in OPERATIONS {
        let path = operation
            .path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "00000000-0000-0000-0000-000000000000"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(operation.method.to_uppercase().as_bytes()).unwrap();
        let body = operation.request.map(|_| serde_json::json!({}));
        let reply = anonymous.send(method, &path, body, &[]).await;
        let unrouted = reply.status.as_u16() == 405
            || (reply.status.as_u16() == 404
                && reply.body["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("no such endpoint")));
        assert!(
            !unrouted,
            "{} {} is documented but not served",
            operation.method, operation.path
        );
        if operation.authenticated {
            assert_eq!(
                reply.status.as_u16(),
                401,
                "{} {} must need an API key",
                operation.method,
                operation.path
            );
        }
    }
    let served = anonymous.get("/openapi.json").await.expect(200);
    assert_eq!(served.body, document());
    portal.stop().await;
}
