//! What Flux (kstatus) and Argo CD make of the statuses the operator records, case by case: the
//! statuses come from the kinds' own plans (the same code the operator and the CLI run), and
//! are read with kstatus' rules (implemented below) and with the Argo CD health script shipped
//! in `docs/argocd/health.lua`, run by a real Lua 5.1 interpreter (Argo CD's dialect).

mod support;

use std::path::Path;
use std::process::Command;

use portal_operator::controller::{Managed, with_conditions};
use portal_operator::crd::{AccountManager, AdminInvitation, RoleBinding};
use portal_operator::reconcile::driver::plan_from;
use portal_operator::reconcile::{Kind, Outcome, Refs, account_manager, admin_invitation};
use serde_json::{Value, json};

const NOW: i64 = 1_795_000_000_000;
const LUA: &str = "/usr/bin/lua5.1";

/// kstatus' reading of a custom resource's status (kubernetes-sigs/cli-utils,
/// `pkg/kstatus/status/status.go` `checkGenericProperties` and `generic.go`): the status-level
/// `observedGeneration` behind the generation is InProgress; then `Reconciling=True` is
/// InProgress, `Stalled=True` is Failed, `Ready=False` is InProgress; otherwise Current.
fn kstatus(object: &Value) -> &'static str {
    let status = &object["status"];
    if let (Some(generation), Some(observed)) = (
        object["metadata"]["generation"].as_i64(),
        status["observedGeneration"].as_i64(),
    ) && observed < generation
    {
        return "InProgress";
    }
    let condition = |kind: &str| {
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
    };
    if condition("Reconciling").as_deref() == Some("True") {
        return "InProgress";
    }
    if condition("Stalled").as_deref() == Some("True") {
        return "Failed";
    }
    if condition("Ready").as_deref() == Some("False") {
        return "InProgress";
    }
    "Current"
}

/// A JSON value as a Lua table constructor.
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Argo CD's health of `object`: (status, message) from the shipped script.
fn argo_health(object: &Value) -> (String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/argocd/health.lua");
    let program = format!(
        "obj = {}\nlocal hs = assert(loadfile({:?}))()\nio.write(hs.status, '\\n', hs.message or '')",
        lua(object),
        script.to_str().unwrap()
    );
    let output = Command::new(LUA)
        .args(["-e", &program])
        .output()
        .expect("run lua5.1");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_owned(), message.to_owned())
}

/// Installs Debian's Lua 5.1 when it is missing.
fn ensure_lua() {
    support::ensure_debian_packages(&["lua5.1"], || Path::new(LUA).exists());
}

/// The object as the operator records it after planning against `observed`.
fn recorded<K: Managed>(object: Value, refs: &Refs, observed: <K as Kind>::Observed) -> Value {
    let object: K = serde_json::from_value(object).unwrap();
    let plan = plan_from(&object, refs, &observed, NOW);
    with_outcome(object, plan.status, &plan.outcome)
}

fn with_outcome<K: Managed>(object: K, status: <K as Kind>::Status, outcome: &Outcome) -> Value {
    let status = with_conditions(&object, status, outcome);
    let mut value = serde_json::to_value(&object).unwrap();
    value["status"] = serde_json::to_value(status).unwrap();
    value
}

fn invitation(extra_status: Value) -> Value {
    let mut object = json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "AdminInvitation",
        "metadata": { "name": "ann", "namespace": "team", "uid": "uid-1", "generation": 1 },
        "spec": { "accountRef": { "name": "contoso" }, "email": "ann@contoso.example",
                  "firstName": "Ann", "lastName": "Lee" }
    });
    if !extra_status.is_null() {
        object["status"] = extra_status;
    }
    object
}

fn portal_invitation(state: &str) -> admin_invitation::Observed {
    let view = json!({
        "id": "inv-1", "accountId": "acc-1", "email": "ann@contoso.example", "firstName": "Ann",
        "lastName": "Lee", "roles": ["AccountOwner"], "delivery": "Email", "state": state,
        "externalRef": "AdminInvitation/team/ann/uid-1/1", "createdAt": "2026-11-28T00:00:00Z",
        "expiresAt": "2026-11-30T00:00:00Z", "acceptedAt": null, "acceptedBy": null,
        "revokedAt": null, "lastFailure": null, "sends": 1, "version": 1
    });
    admin_invitation::Observed {
        invitation: Some(serde_json::from_value(view).unwrap()),
    }
}

fn manager(state: &str) -> Value {
    let object = json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "AccountManager",
        "metadata": { "name": "mia", "namespace": "team", "uid": "uid-3", "generation": 1 },
        "spec": { "accountRef": { "name": "contoso" }, "email": "mia@contoso.example",
                  "firstName": "Mia", "lastName": "Chen" }
    });
    let view = json!({
        "id": "am-1", "accountId": "acc-1", "email": "mia@contoso.example", "firstName": "Mia",
        "lastName": "Chen", "language": "en", "brandingDomain": null, "state": state,
        "activationExpiresAt": "2026-11-30T00:00:00Z", "externalRef": "AccountManager/team/mia/uid-3",
        "createdAt": "2026-11-28T00:00:00Z", "activatedAt": null, "activationSends": 1, "version": 1
    });
    let observed = account_manager::Observed {
        manager: Some(serde_json::from_value(view).unwrap()),
    };
    recorded::<AccountManager>(object, &Refs::ready("acc-1"), observed)
}

/// Each case: what the operator records, and what kstatus and Argo CD must make of it.
fn cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let ready = Refs::ready("acc-1");
    let waiting_binding = {
        let object = json!({
            "apiVersion": "access.portal.dev/v1alpha1", "kind": "RoleBinding",
            "metadata": { "name": "viewers", "namespace": "team", "uid": "uid-2", "generation": 1 },
            "spec": { "accountRef": { "name": "contoso" }, "roles": ["ServiceViewer"],
                      "subjects": [{ "adminEmail": "dee@contoso.example" }] },
            "status": { "subjects": [{ "subject": "dee@contoso.example", "state": "WaitingForSubject" }] }
        });
        recorded::<RoleBinding>(object, &ready, Default::default())
    };
    let expired = recorded::<AdminInvitation>(
        invitation(Value::Null),
        &ready,
        portal_invitation("Expired"),
    );
    // The spec of a Stalled object edited: the status is for the generation before.
    let mut edited = expired.clone();
    edited["metadata"]["generation"] = json!(2);
    let refused = {
        let object: AdminInvitation = serde_json::from_value(invitation(json!({
            "refused": { "generation": 1, "reason": "EscalationDenied", "message": "create the portal invitation: no" }
        })))
        .unwrap();
        let plan = plan_from(&object, &ready, &Default::default(), NOW);
        with_outcome(object, plan.status, &plan.outcome)
    };
    // A first reconcile that failed (portal down): what the operator records for it.
    let failing = {
        let object: AdminInvitation = serde_json::from_value(invitation(Value::Null)).unwrap();
        let outcome = Outcome::Reconciling {
            reason: "PortalUnavailable".into(),
            message: "find the portal invitation: reach the portal".into(),
        };
        with_outcome(object, Default::default(), &outcome)
    };
    vec![
        (
            "pending invitation",
            recorded::<AdminInvitation>(
                invitation(Value::Null),
                &ready,
                portal_invitation("Pending"),
            ),
            "Current",
            "Healthy",
        ),
        (
            "accepted invitation",
            recorded::<AdminInvitation>(
                invitation(Value::Null),
                &ready,
                portal_invitation("Accepted"),
            ),
            "Current",
            "Healthy",
        ),
        (
            "expired invitation, no reissue",
            expired,
            "Failed",
            "Degraded",
        ),
        (
            "revoked invitation",
            recorded::<AdminInvitation>(
                invitation(Value::Null),
                &ready,
                portal_invitation("Revoked"),
            ),
            "Failed",
            "Degraded",
        ),
        (
            "invitation about to be sent",
            recorded::<AdminInvitation>(invitation(Value::Null), &ready, Default::default()),
            "InProgress",
            "Progressing",
        ),
        (
            "invitation waiting for its Account",
            recorded::<AdminInvitation>(
                invitation(Value::Null),
                &Refs::default(),
                Default::default(),
            ),
            "InProgress",
            "Progressing",
        ),
        ("refused invitation", refused, "Failed", "Degraded"),
        (
            "stalled object whose spec was edited",
            edited,
            "InProgress",
            "Progressing",
        ),
        (
            "first reconcile failed",
            failing,
            "InProgress",
            "Progressing",
        ),
        (
            "activation email sent",
            manager("ActivationPending"),
            "Current",
            "Healthy",
        ),
        (
            "activation expired",
            manager("ActivationExpired"),
            "Failed",
            "Degraded",
        ),
        (
            "binding waiting for its subject",
            waiting_binding,
            "Current",
            "Healthy",
        ),
    ]
}

#[test]
fn kstatus_reads_every_case_as_a_person_would() {
    for (case, object, expected, _) in cases() {
        assert_eq!(kstatus(&object), expected, "{case}: {:#}", object["status"]);
    }
}

#[test]
fn argo_cd_reads_every_case_as_a_person_would() {
    ensure_lua();
    for (case, object, _, expected) in cases() {
        let (health, message) = argo_health(&object);
        assert_eq!(
            health, expected,
            "{case}: {message}; {:#}",
            object["status"]
        );
        assert!(!message.is_empty(), "{case}: no message");
    }
    let (health, _) = argo_health(&json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "Account",
        "metadata": { "name": "new", "generation": 1 }
    }));
    assert_eq!(health, "Progressing", "no status yet is not healthy");
}
