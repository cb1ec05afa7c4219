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

/// The check every test reply goes through (`support::contract`) refuses what the document does
/// not describe, so a handler that sends an undocumented field or status fails the suite.
#[test]
fn the_reply_check_refuses_what_the_document_does_not_say() {
    use serde_json::json;
    use support::contract::check;
    let account = json!({
        "id": "a1", "type": "Partner", "displayName": "Northwind", "subContract": false,
        "createdAt": "2026-12-02T09:00:00Z", "updatedAt": "2026-12-02T09:00:00Z", "version": 1,
    });
    let json_type = Some("application/json");
    let problem_type = Some("application/problem+json");
    let problem = |slug: &str, status: u16| json!({ "type": format!("https://portal.dev/problems/{slug}"), "title": "t", "status": status, "detail": "d" });
    let get = Method::GET;
    let read = "/v1/accounts/a1";
    check(&get, read, 200, json_type, &account).unwrap_or_else(|e| panic!("{e}"));
    let mut extra = account.clone();
    extra["secretField"] = json!("x");
    let error = check(&get, read, 200, json_type, &extra).unwrap_err();
    assert!(
        error.contains("/secretField: sent but not in the schema"),
        "{error}"
    );
    let mut missing = account.clone();
    missing.as_object_mut().unwrap().remove("displayName");
    let error = check(&get, read, 200, json_type, &missing).unwrap_err();
    assert!(error.contains("/displayName: required"), "{error}");
    let mut mistyped = account.clone();
    mistyped["version"] = json!("1");
    assert!(check(&get, read, 200, json_type, &mistyped).is_err());
    let error = check(&get, read, 200, Some("text/plain"), &account).unwrap_err();
    assert!(error.contains("text/plain"), "{error}");
    check(&get, read, 404, problem_type, &problem("not-found", 404)).unwrap();
    let error = check(&get, read, 409, problem_type, &problem("last-owner", 409)).unwrap_err();
    assert!(error.contains("status not documented"), "{error}");
    let error = check(
        &get,
        read,
        404,
        problem_type,
        &problem("subject-not-found", 404),
    )
    .unwrap_err();
    assert!(error.contains("not listed"), "{error}");
    // A 500 is never documented as such: the suite fails on one.
    assert!(check(&get, read, 500, problem_type, &problem("internal", 500)).is_err());
    // A literal segment outranks a parameter.
    let accept = Method::POST;
    check(
        &accept,
        "/v1/invitations/accept",
        429,
        problem_type,
        &problem("too-many-requests", 429),
    )
    .unwrap();
    // An undocumented /v1 operation that answers is reported.
    assert!(check(&get, "/v1/nowhere", 200, json_type, &json!({})).is_err());
}

/// Each documented error status lists the problem types it carries, and each of those types is
/// answered with that status.
#[test]
fn every_documented_error_status_lists_its_problem_types() {
    let document = document();
    let mut listed = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let Ok(code) = status.parse::<u16>() else {
                    continue;
                };
                if code < 400 {
                    continue;
                }
                let types = response["x-problem-types"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} {status} lists no problem types"));
                assert!(!types.is_empty(), "{method} {path} {status}");
                for slug in types {
                    let cause = portal_operator::api::problem::ProblemType::from_slug(
                        slug.as_str().unwrap(),
                    )
                    .unwrap();
                    assert_eq!(cause.status(), code, "{method} {path}: {slug}");
                    listed += 1;
                }
            }
        }
    }
    assert!(listed > 200, "only {listed} problem types listed");
}
