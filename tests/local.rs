//! `apply`, `diff` and `status` from a folder of manifests, run as the real binary on the
//! embedded portal: golden outputs on `examples/`, all three exit codes of `diff`, and a corpus
//! of bad manifests that are refused with the file and field named and nothing written.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_portal-operator")
}

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary in `dir` (so the embedded portal lives in `dir/.portal`).
fn run(dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_remove("PORTAL_URL")
        .env_remove("PORTAL_API_KEY_FILE")
        .env_remove("PORTAL_STATE_DIR")
        .output()
        .expect("run portal-operator");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Ids and times differ per run; everything else must not.
fn normalize(text: &str) -> String {
    let ids =
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let times = regex::Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z").unwrap();
    let text = ids.replace_all(text, "<id>");
    let text = times.replace_all(&text, "<time>");
    // A shortened message may cut a time; keep the cut stable.
    regex::Regex::new(r"\d{4}-\d{2}…")
        .unwrap()
        .replace_all(&text, "<time>…")
        .into_owned()
}

fn golden(name: &str, actual: &str) {
    let path = repo(&format!("tests/golden/{name}"));
    let actual = normalize(actual);
    if std::env::var_os("UPDATE_GENERATED").is_some() && std::env::var_os("CI").is_none() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "{name} differs from tests/golden/{name}; if the change is intended, regenerate with `UPDATE_GENERATED=1 cargo test --test local`"
    );
}

#[test]
fn examples_apply_then_apply_again_then_diff_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let examples = repo("examples");
    let examples = examples.to_str().unwrap();

    let fresh = run(dir.path(), &["diff", "-f", examples]);
    assert_eq!(
        fresh.code, 2,
        "diff exits 2 when there are changes: {}",
        fresh.stderr
    );
    golden("diff-fresh.txt", &fresh.stdout);
    assert!(
        !dir.path().join(".portal/state.json").exists(),
        "diff records nothing"
    );

    let first = run(dir.path(), &["apply", "-f", examples]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    golden("apply-first.txt", &first.stdout);
    assert!(
        !first.stdout.contains("#token="),
        "links are not printed unless asked"
    );
    let link = dir.path().join(".portal/links/team-contoso/helpdesk.link");
    let text = std::fs::read_to_string(&link).unwrap();
    // Never print a link: it is a bearer credential.
    assert!(
        text.starts_with("http://127.0.0.1:8080/invitations/accept#token="),
        "the link file holds an invitation link for the default portal address"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&link).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the link file is private");
    }

    let again = run(dir.path(), &["apply", "-f", examples]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    golden("apply-again.txt", &again.stdout);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);

    let converged = run(dir.path(), &["diff", "-f", examples]);
    assert_eq!(
        converged.code, 0,
        "diff exits 0 with nothing to do: {}",
        converged.stdout
    );
    golden("diff-converged.txt", &converged.stdout);

    let status = run(dir.path(), &["status", "-f", examples]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    golden("status.txt", &status.stdout);

    let json = run(dir.path(), &["status", "-f", examples, "--output", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let objects: Vec<Value> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(objects.len(), 15);
    let helpdesk = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "helpdesk")
        .unwrap();
    assert_eq!(helpdesk["status"]["phase"], "Pending");
    assert_eq!(
        helpdesk["status"]["linkSecretRef"]["name"],
        "helpdesk-invitation-link"
    );
    assert!(!json.stdout.contains("#token="), "no link in the status");
    let ready = helpdesk["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");

    // An edit shows up in diff, field by field, and apply carries it out.
    let edited = dir.path().join("edited");
    copy_dir(&repo("examples"), &edited);
    let invitations = edited.join("team-contoso/invitations.yaml");
    let text = std::fs::read_to_string(&invitations).unwrap().replacen(
        "    - ServiceContributor",
        "    - ServiceViewer",
        1,
    );
    std::fs::write(&invitations, text).unwrap();
    let edited = edited.to_str().unwrap();
    let change = run(dir.path(), &["diff", "-f", edited]);
    assert_eq!(change.code, 2);
    assert!(
        change
            .stdout
            .contains("  ~ change the pending invitation's roles to ServiceViewer\n"),
        "a change in place is marked ~: {}",
        change.stdout
    );
    // Its PHASE says what is under way, not only that it is pending.
    let table = run(dir.path(), &["status", "-f", edited]);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.contains("team-contoso/helpdesk") && l.contains("Pending (Updating)")),
        "{}",
        table.stdout
    );
    let applied = run(dir.path(), &["apply", "-f", edited]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert!(
        applied.stdout.contains("1 of 15 object(s) changed"),
        "{}",
        applied.stdout
    );
    assert_eq!(run(dir.path(), &["diff", "-f", edited]).code, 0);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn bad_manifests_are_refused_naming_file_and_field_and_nothing_is_written() {
    let corpus = repo("tests/bad-manifests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} starts with '# expect: …'", file.display()));
        let dir = tempfile::tempdir().unwrap();
        for command in ["apply", "diff"] {
            let output = run(dir.path(), &[command, "-f", file.to_str().unwrap()]);
            let name = file.file_name().unwrap().to_str().unwrap();
            assert_eq!(output.code, 1, "{command} {name}: {}", output.stdout);
            assert!(
                output.stderr.contains(name) && output.stderr.contains(expected),
                "{command} {name}: expected the file and {expected:?} in:\n{}",
                output.stderr
            );
            assert!(
                output.stderr.contains("nothing was sent to the portal"),
                "{}",
                output.stderr
            );
            // Words for a person: the offending value, never a type name or an evaluator's
            // internals.
            for internal in ["evaluation error", "Error {", "Invalid value: \"string\""] {
                assert!(
                    !output.stderr.contains(internal),
                    "{command} {name}: {internal:?} in:\n{}",
                    output.stderr
                );
            }
        }
        assert!(
            !dir.path().join(".portal").exists(),
            "{}: nothing was written",
            file.display()
        );
    }
}

/// The state folder lives in the folder applied by default; it, and hidden folders generally,
/// are never read as manifests.
#[test]
fn applying_the_current_folder_twice_skips_the_state_folder() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo("examples"), dir.path());
    std::fs::create_dir_all(dir.path().join(".git")).unwrap();
    std::fs::write(dir.path().join(".git/config.yaml"), "not: a manifest\n").unwrap();
    let first = run(dir.path(), &["apply", "-f", "."]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert!(dir.path().join(".portal/state.json").exists());
    let again = run(dir.path(), &["apply", "-f", "."]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
}

/// `diff` gates a pull request: an object an earlier apply made that is gone from the manifests
/// is a change (exit 2) with a `-` line saying what pruning would do, with or without --prune.
#[test]
fn diff_shows_removals_and_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    copy_dir(&repo("examples"), &manifests);
    let path = manifests.to_str().unwrap();
    assert_eq!(run(dir.path(), &["apply", "-f", path]).code, 0);
    // The whole client account fabrikam goes, with what lives under it.
    std::fs::remove_file(manifests.join("accounts/fabrikam.yaml")).unwrap();
    std::fs::remove_dir_all(manifests.join("team-fabrikam")).unwrap();
    for args in [
        vec!["diff", "-f", path],
        vec!["diff", "-f", path, "--prune", "--max-removals", "10"],
    ] {
        let diff = run(dir.path(), &args);
        assert_eq!(diff.code, 2, "{args:?}: {}{}", diff.stdout, diff.stderr);
        for line in [
            "Account fabrikam\n  - ",
            "AccountManager team-fabrikam/camille\n  - delete account manager camille.dubois@fabrikam.example",
            "AdminInvitation team-fabrikam/billing-lead\n  - revoke pending invitation ",
            "User team-fabrikam/reception\n  - delete user +447700900123 (this cannot be undone)",
            "Subscription team-fabrikam/standard\n  - forget Subscription team-fabrikam/standard (nothing to undo in the portal)",
            "UserRole team-fabrikam/telephony-admin\n  - delete user role Telephony Administrator, removing it from 1 user(s) (chloe.martin@fabrikam.example leaves Support)",
            "Team team-fabrikam/support\n  - delete team Support",
        ] {
            assert!(
                diff.stdout.contains(line),
                "{args:?}: {line:?} in\n{}",
                diff.stdout
            );
        }
        assert!(
            diff.stdout.contains("10 object(s) would change."),
            "{}",
            diff.stdout
        );
    }
    // Nothing was removed by looking.
    let state = std::fs::read_to_string(dir.path().join(".portal/state.json")).unwrap();
    assert!(state.contains("AccountManager/team-fabrikam/camille"));
    // What stays in place is said as such: an Orphan account is only no longer managed.
    let diff = run(dir.path(), &["diff", "-f", path]);
    let fabrikam = std::fs::read_to_string(repo("examples/accounts/fabrikam.yaml")).unwrap();
    let expected = if fabrikam.contains("deletionPolicy: Delete") {
        "- delete portal account "
    } else {
        "- stop managing Account fabrikam (deletionPolicy: Orphan keeps the portal account)"
    };
    assert!(diff.stdout.contains(expected), "{}", diff.stdout);
}

/// Putting back what `--prune` removed makes it anew, as re-creating an object does in a
/// cluster: the invitation is sent again instead of finding the revoked one.
#[test]
fn a_pruned_invitation_put_back_is_invited_again() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    copy_dir(&repo("examples"), &manifests);
    let path = manifests.to_str().unwrap();
    assert_eq!(run(dir.path(), &["apply", "-f", path]).code, 0);
    let invitations = manifests.join("team-contoso/invitations.yaml");
    let original = std::fs::read_to_string(&invitations).unwrap();
    let without: Vec<&str> = original
        .split("\n---")
        .filter(|document| !document.contains("name: ana-owner"))
        .collect();
    std::fs::write(&invitations, without.join("\n---")).unwrap();
    let pruned = run(dir.path(), &["apply", "-f", path, "--prune"]);
    assert_eq!(pruned.code, 0, "{}{}", pruned.stdout, pruned.stderr);
    std::fs::write(&invitations, &original).unwrap();
    let back = run(dir.path(), &["apply", "-f", path]);
    assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
    let row = back
        .stdout
        .lines()
        .find(|l| l.contains("team-contoso/ana-owner"))
        .unwrap();
    assert!(
        row.contains("Pending") && row.contains("invitation sent to ana.silva"),
        "{row}"
    );
}

/// `--help` shows where each flag's environment variable is read, never its value: a database
/// URL or a portal URL may carry a password.
#[test]
fn help_never_prints_a_secret_from_the_environment() {
    for (args, variable, value) in [
        (
            vec!["portal", "serve", "--help"],
            "PORTAL_DATABASE_URL",
            "postgres://portal:hunter2-db@db.example/portal",
        ),
        (
            vec!["run", "--help"],
            "PORTAL_URL",
            "https://operator:hunter2-url@portal.example",
        ),
        (
            vec!["diff", "--help"],
            "PORTAL_URL",
            "https://operator:hunter2-url@portal.example",
        ),
        (vec!["run", "--help"], "PORTAL_API_KEY", "hunter2-key"),
        (
            vec!["portal", "serve", "--help"],
            "PORTAL_SMTP_URL",
            "smtp://u:hunter2-smtp@mail",
        ),
    ] {
        let output = Command::new(binary())
            .args(&args)
            .env(variable, value)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}");
        assert!(text.contains(variable), "{args:?} does not name {variable}");
        assert!(
            !text.contains("hunter2"),
            "{args:?} printed {variable}'s value:\n{text}"
        );
    }
}

#[test]
fn the_roles_table_lines_up_and_a_closed_pipe_is_no_error() {
    let output = run(Path::new("."), &["roles"]);
    assert_eq!(output.code, 0);
    let lines: Vec<&str> = output.stdout.lines().collect();
    let column = lines[0].find("IMPLIES").unwrap();
    let permissions = lines[0].find("PERMISSIONS").unwrap();
    for line in &lines[1..] {
        let bytes = line.as_bytes();
        assert!(
            bytes[column - 1] == b' ' && bytes[column] != b' ' && bytes[permissions - 1] == b' ',
            "not aligned with the header:\n{}\n{line}",
            lines[0]
        );
    }
    // `roles | head`: the reader goes away; no "Broken pipe" error, exit 0.
    let mut child = Command::new(binary())
        .arg("roles")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let finished = child.wait_with_output().unwrap();
    assert!(finished.status.success(), "{finished:?}");
    assert!(
        finished.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
}

#[test]
fn a_missing_path_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["diff", "-f", "no-such-folder"]);
    assert_eq!(output.code, 1);
    assert!(
        output
            .stderr
            .contains("no-such-folder: no such file or folder"),
        "{}",
        output.stderr
    );
}

#[test]
fn prune_removes_only_when_asked_and_only_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    copy_dir(&repo("examples"), &manifests);
    let path = manifests.to_str().unwrap();
    assert_eq!(run(dir.path(), &["apply", "-f", path]).code, 0);
    std::fs::remove_file(manifests.join("team-fabrikam/account-manager.yaml")).unwrap();
    std::fs::remove_file(manifests.join("team-contoso/rolebindings.yaml")).unwrap();
    std::fs::remove_file(manifests.join("team-fabrikam/invitations.yaml")).unwrap();

    // Without --prune: reported, left in place.
    let kept = run(dir.path(), &["apply", "-f", path]);
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    assert_eq!(
        kept.stdout.matches("NotInManifests").count(),
        3,
        "{}",
        kept.stdout
    );
    assert!(kept.stdout.contains("No changes"), "{}", kept.stdout);
    let state = std::fs::read_to_string(dir.path().join(".portal/state.json")).unwrap();
    assert!(state.contains("AccountManager/team-fabrikam/camille"));

    // Three removals of fifteen managed objects is over the default cap of 10% (two).
    let capped = run(dir.path(), &["apply", "-f", path, "--prune"]);
    assert_eq!(capped.code, 1);
    assert!(
        capped
            .stderr
            .contains("3 object(s) are no longer in the manifests")
            && capped.stderr.contains("more than the cap of 2")
            && capped.stderr.contains("--max-removals 3"),
        "{}",
        capped.stderr
    );
    let state = std::fs::read_to_string(dir.path().join(".portal/state.json")).unwrap();
    assert!(
        state.contains("AccountManager/team-fabrikam/camille"),
        "nothing removed"
    );

    // Raised cap: diff shows the removals, apply carries them out.
    let preview = run(
        dir.path(),
        &["diff", "-f", path, "--prune", "--max-removals", "3"],
    );
    assert_eq!(preview.code, 2, "{}", preview.stderr);
    assert!(
        preview
            .stdout
            .contains("delete account manager camille.dubois@fabrikam.example"),
        "{}",
        preview.stdout
    );
    let pruned = run(
        dir.path(),
        &["apply", "-f", path, "--prune", "--max-removals", "3"],
    );
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    assert_eq!(
        pruned.stdout.matches("Removed").count(),
        3,
        "{}",
        pruned.stdout
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".portal/state.json")).unwrap(),
    )
    .unwrap();
    assert!(state["objects"]["AccountManager/team-fabrikam/camille"].is_null());
    assert!(state["objects"]["RoleBinding/team-contoso/helpdesk-branding"].is_null());
    let after = run(dir.path(), &["apply", "-f", path, "--prune"]);
    assert_eq!(after.code, 0);
    assert!(after.stdout.contains("No changes"), "{}", after.stdout);
}

/// A crash between the portal write and the status write leaves no id recorded; `--prune` then
/// finds the invitation by its reference, as the operator's finalizer does, and revokes it.
#[test]
fn prune_revokes_an_invitation_whose_recorded_id_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    copy_dir(&repo("examples"), &manifests);
    let path = manifests.to_str().unwrap();
    assert_eq!(run(dir.path(), &["apply", "-f", path]).code, 0);
    let state_file = dir.path().join(".portal/state.json");
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    let status = &mut state["objects"]["AdminInvitation/team-contoso/ana-owner"]["status"];
    assert!(status["portalId"].is_string(), "{status}");
    status.as_object_mut().unwrap().remove("portalId");
    std::fs::write(&state_file, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    let invitations = manifests.join("team-contoso/invitations.yaml");
    let kept: Vec<String> = std::fs::read_to_string(&invitations)
        .unwrap()
        .split("\n---")
        .filter(|document| !document.contains("name: ana-owner"))
        .map(str::to_owned)
        .collect();
    std::fs::write(&invitations, kept.join("\n---")).unwrap();

    let preview = run(dir.path(), &["diff", "-f", path, "--prune"]);
    assert_eq!(preview.code, 2, "{}{}", preview.stdout, preview.stderr);
    assert!(
        regex::Regex::new(
            r"AdminInvitation team-contoso/ana-owner\n  - revoke pending invitation [0-9a-f-]{36}\n"
        )
        .unwrap()
        .is_match(&preview.stdout),
        "{}",
        preview.stdout
    );
    let pruned = run(dir.path(), &["apply", "-f", path, "--prune"]);
    assert_eq!(pruned.code, 0, "{}{}", pruned.stdout, pruned.stderr);
    assert!(pruned.stdout.contains("Removed"), "{}", pruned.stdout);
    let after = run(dir.path(), &["diff", "-f", path, "--prune"]);
    assert_eq!(after.code, 0, "{}{}", after.stdout, after.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_redraws_when_an_invitation_is_accepted_on_the_development_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(dir.path(), &repo("examples"));
    watch.wait(|l| l.contains("Watching.")).await;
    let listen = &watch.listen;
    // The link points at the running portal, which serves the labelled development page.
    let link = std::fs::read_to_string(dir.path().join(".portal/links/team-contoso/helpdesk.link"))
        .unwrap();
    let link = link.trim();
    assert!(
        link.starts_with(&format!("http://{listen}/invitations/accept#token=")),
        "the link points at the watched portal (not printed: it is a credential)"
    );
    let page = reqwest::get(link).await.unwrap().text().await.unwrap();
    assert!(page.contains("DEVELOPMENT SIGN-IN"), "{page}");
    let token = link.split_once("#token=").unwrap().1;
    let accepted = reqwest::Client::new()
        .post(format!("http://{listen}/dev/accept"))
        .json(&serde_json::json!({ "token": token, "email": "helpdesk@contoso.example" }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    let accepted_at = std::time::Instant::now();
    watch
        .wait(|l| l.contains("team-contoso/helpdesk") && l.contains("Accepted"))
        .await;
    eprintln!(
        "the watched table showed Accepted {:?} after the accept",
        accepted_at.elapsed()
    );
    // The examples' RoleBinding waited for exactly this admin: granted now, from the examples
    // alone.
    watch
        .wait(|l| l.contains("team-contoso/helpdesk-branding") && l.contains("Granted"))
        .await;
    watch.stop();
}

/// `apply --watch` running in `dir` on a free loopback port, its output collected line by line.
struct Watch {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
    listen: String,
    deadline: std::time::Instant,
}

impl Watch {
    fn start(dir: &Path, manifests: &Path) -> Watch {
        use std::io::BufRead;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(binary())
            .args(["apply", "--watch", "-f", manifests.to_str().unwrap()])
            .args(["--listen", &listen])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    lines.lock().unwrap().push(line);
                }
            })
        };
        Watch {
            child,
            lines,
            reader,
            listen,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(30),
        }
    }

    /// Waits (with the watch's deadline) until a line of the output satisfies `line`.
    async fn wait(&self, line: impl Fn(&str) -> bool) {
        while !self.lines.lock().unwrap().iter().any(|l| line(l)) {
            assert!(
                std::time::Instant::now() < self.deadline,
                "{:?}",
                self.lines.lock().unwrap()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.reader.join().unwrap();
    }
}

#[test]
fn the_development_sign_in_is_off_unless_asked_and_a_portal_without_sign_in_says_so() {
    // `portal serve` with neither --oidc-issuer nor --dev-login: one warning line at start, the
    // invitation page is served (it says invitations cannot be accepted once opened), and the
    // development sign-in is not.
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = std::process::Command::new(binary())
        .args(["portal", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", "sqlite://portal.db"])
        .current_dir(dir.path())
        .env_remove("PORTAL_DEV_LOGIN")
        .env_remove("PORTAL_OIDC_ISSUER")
        .env_remove("RUST_LOG")
        .stderr(log)
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (page, dev) = runtime.block_on(async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let page = loop {
            if let Ok(response) =
                reqwest::get(format!("http://127.0.0.1:{port}/invitations/accept")).await
            {
                assert_eq!(response.status(), 200);
                break response.text().await.unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the portal did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let dev = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/dev/accept"))
            .json(&serde_json::json!({ "token": "x", "email": "a@b.example" }))
            .send()
            .await
            .unwrap()
            .status();
        (page, dev)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(dev, 404, "no development sign-in unless asked");
    assert!(!page.contains("DEVELOPMENT"), "{page}");
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("invitations can be sent but not accepted"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line at start: {stderr}");
}

/// Runs `apply --watch` until `done` holds for its output, then stops it.
async fn watch_until(dir: &Path, manifests: &Path, accept: &[(&str, &str)], done: &str) {
    let watch = Watch::start(dir, manifests);
    watch.wait(|l| l.contains("Watching.")).await;
    for (link, email) in accept {
        let link = std::fs::read_to_string(dir.join(".portal/links").join(link)).unwrap();
        let token = link.trim().split_once("#token=").unwrap().1.to_owned();
        let response = reqwest::Client::new()
            .post(format!("http://{}/dev/accept", watch.listen))
            .json(&serde_json::json!({ "token": token, "email": email }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    watch.wait(|l| l.contains(done)).await;
    watch.stop();
}

/// `apply --watch` notices edited manifests (and applies them); `diff --watch` is refused, not
/// silently run once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reads_the_manifests_again_when_they_change_and_only_apply_watches() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    copy_dir(&repo("examples"), &manifests);
    let refused = run(
        dir.path(),
        &["diff", "--watch", "-f", manifests.to_str().unwrap()],
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("--watch works with apply only"),
        "{}",
        refused.stderr
    );

    let watch = Watch::start(dir.path(), &manifests);
    watch.wait(|l| l.contains("Watching.")).await;
    std::fs::write(
        manifests.join("team-contoso/newcomer.yaml"),
        "apiVersion: access.portal.dev/v1alpha1\nkind: AdminInvitation\nmetadata: {name: newcomer, namespace: team-contoso}\nspec: {accountRef: {name: contoso}, email: new@contoso.example, firstName: New, lastName: Comer}\n",
    )
    .unwrap();
    watch
        .wait(|l| l.contains("The manifests changed; applying them."))
        .await;
    watch
        .wait(|l| l.contains("team-contoso/newcomer") && l.contains("Pending"))
        .await;
    watch.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_never_leaves_an_account_without_an_owner() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("account.yaml"),
        "apiVersion: access.portal.dev/v1alpha1\nkind: Account\nmetadata: {name: northwind}\nspec: {displayName: Northwind, type: Partner, namespaces: [team]}\n---\napiVersion: access.portal.dev/v1alpha1\nkind: AdminInvitation\nmetadata: {name: olga, namespace: team}\nspec: {accountRef: {name: northwind}, email: olga@northwind.example, firstName: Olga, lastName: Berg, roles: [ServiceViewer], delivery: Link}\n",
    )
    .unwrap();
    // The only AccountOwner of the partner comes from this binding.
    std::fs::write(
        manifests.join("owners.yaml"),
        "apiVersion: access.portal.dev/v1alpha1\nkind: RoleBinding\nmetadata: {name: owners, namespace: team}\nspec: {accountRef: {name: northwind}, subjects: [{adminEmail: olga@northwind.example}], roles: [AccountOwner]}\n",
    )
    .unwrap();
    watch_until(
        dir.path(),
        &manifests,
        &[("team/olga.link", "olga@northwind.example")],
        "1 subject(s) hold the roles",
    )
    .await;
    std::fs::remove_file(manifests.join("owners.yaml")).unwrap();
    let refused = run(
        dir.path(),
        &[
            "apply",
            "-f",
            manifests.to_str().unwrap(),
            "--prune",
            "--max-removals",
            "5",
        ],
    );
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("would leave its account")
            && refused.stderr.contains("without an AccountOwner")
            && refused.stderr.contains("team/owners"),
        "{}",
        refused.stderr
    );
    let state = std::fs::read_to_string(dir.path().join(".portal/state.json")).unwrap();
    assert!(
        state.contains("RoleBinding/team/owners"),
        "nothing was removed"
    );
}

/// `portal serve` on a free loopback port with SQLite in `dir`, bootstrapped with the key in
/// `key_file`; returns the process and the URL once it answers.
async fn serve_portal(dir: &Path, key_file: &str) -> (std::process::Child, String) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let portal = std::process::Command::new(binary())
        .args(["portal", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--database-url",
            "sqlite://remote.db",
            "--bootstrap-api-key-file",
            key_file,
        ])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while reqwest::get(format!("{url}/healthz")).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the portal did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (portal, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_works_against_a_portal_given_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let key = portal_operator::portal::new_api_key();
    std::fs::write(dir.path().join("key"), &key).unwrap();
    let (mut portal, url) = serve_portal(dir.path(), "key").await;
    let examples = repo("examples");
    let remote = |command: &'static str| {
        let dir = dir.path().to_owned();
        let url = url.clone();
        let examples = examples.clone();
        tokio::task::spawn_blocking(move || {
            run(
                &dir,
                &[
                    command,
                    "-f",
                    examples.to_str().unwrap(),
                    "--portal-url",
                    &url,
                    "--portal-api-key-file",
                    "key",
                ],
            )
        })
    };
    let applied = remote("apply").await.unwrap();
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    assert!(
        applied.stdout.contains("14 of 15 object(s) changed"),
        "{}",
        applied.stdout
    );
    assert!(
        !dir.path().join(".portal/portal.db").exists(),
        "the embedded portal is not used"
    );
    let accounts = reqwest::Client::new()
        .get(format!("{url}/v1/accounts?externalId=Account/contoso"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(accounts["items"][0]["displayName"], "Contoso Ltd");
    assert_eq!(remote("diff").await.unwrap().code, 0);
    portal.kill().unwrap();
    portal.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let platform_key = portal_operator::portal::new_api_key();
    std::fs::write(dir.path().join("platform-key"), &platform_key).unwrap();
    let (mut portal, url) = serve_portal(dir.path(), "platform-key").await;
    let http = reqwest::Client::new();
    let post = |path: &str, key: &str, body: Value| {
        http.post(format!("{url}{path}"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    // The platform made the account; the operator's key belongs to a ServiceContributor there.
    let account: Value = post(
        "/v1/accounts",
        &platform_key,
        serde_json::json!({ "type": "Partner", "displayName": "Contoso", "externalId": "Account/contoso" }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let account = account["id"].as_str().unwrap().to_owned();
    let admin: Value = post(
        &format!("/v1/accounts/{account}/admins"),
        &platform_key,
        serde_json::json!({ "email": "ops@contoso.example", "firstName": "Op", "lastName": "S", "roles": ["ServiceContributor"] }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key: Value = post(
        "/v1/api-keys",
        &platform_key,
        serde_json::json!({ "name": "ops", "adminId": admin["id"] }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    std::fs::write(dir.path().join("key"), key["key"].as_str().unwrap()).unwrap();
    let events = |key: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.get(format!("{url}/v1/events"))
                .bearer_auth(key)
                .header("accept", "application/json")
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["items"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    let before = events(platform_key.clone()).await;

    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("all.yaml"),
        "apiVersion: access.portal.dev/v1alpha1\nkind: Account\nmetadata: {name: contoso}\nspec: {displayName: Contoso, type: Partner, namespaces: [team]}\n---\napiVersion: access.portal.dev/v1alpha1\nkind: AdminInvitation\nmetadata: {name: ann, namespace: team}\nspec: {accountRef: {name: contoso}, email: ann@contoso.example, firstName: Ann, lastName: Lee, roles: [ServiceViewer]}\n---\n# Would escalate: the operator's admin is only a ServiceContributor.\napiVersion: access.portal.dev/v1alpha1\nkind: RoleBinding\nmetadata: {name: promote, namespace: team}\nspec: {accountRef: {name: contoso}, subjects: [{adminEmail: ops@contoso.example}], roles: [AccountOwner]}\n",
    )
    .unwrap();
    let path = manifests.to_str().unwrap().to_owned();
    let work = dir.path().to_owned();
    let portal_url = url.clone();
    let refused = tokio::task::spawn_blocking(move || {
        run(
            &work,
            &[
                "apply",
                "-f",
                &path,
                "--portal-url",
                &portal_url,
                "--portal-api-key-file",
                "key",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    eprintln!("{}", refused.stderr);
    assert!(
        refused.stderr.contains("all.yaml (document 3)")
            && refused
                .stderr
                .contains("RoleBinding/team/promote: spec.roles: Forbidden")
            && refused.stderr.contains("cannot grant AccountOwner")
            && refused.stderr.contains("escalation"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        events(platform_key.clone()).await,
        before,
        "nothing was written to the portal, not even the valid invitation"
    );
    portal.kill().unwrap();
    portal.wait().unwrap();
}

#[test]
fn export_users_writes_the_accounts_users_to_an_excel_file() {
    use calamine::{Reader, Xlsx, open_workbook};

    let dir = tempfile::tempdir().unwrap();
    let examples = repo("examples");
    let applied = run(dir.path(), &["apply", "-f", examples.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let read = |file: &Path| -> Vec<Vec<String>> {
        let mut workbook: Xlsx<_> = open_workbook(file).expect("a real xlsx file");
        let range = workbook.worksheet_range("Users").unwrap();
        range
            .rows()
            .map(|row| row.iter().map(|cell| cell.to_string()).collect())
            .collect()
    };
    // The Account object's name, as in the manifests.
    let all = run(
        dir.path(),
        &[
            "export",
            "users",
            "--account",
            "fabrikam",
            "-o",
            "users.xlsx",
        ],
    );
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert!(
        all.stderr.contains("wrote 3 user(s) (all) of Fabrikam"),
        "{}",
        all.stderr
    );
    let rows = read(&dir.path().join("users.xlsx"));
    assert_eq!(rows[0][0], "User ID");
    let user_ids: Vec<&str> = rows[1..].iter().map(|row| row[0].as_str()).collect();
    assert_eq!(
        user_ids,
        [
            "+447700900123",
            "chloe.martin@fabrikam.example",
            "jonas.berg@fabrikam.example"
        ]
    );
    let prepared = run(
        dir.path(),
        &[
            "export",
            "users",
            "--account",
            "fabrikam",
            "--state",
            "prepared",
            "-o",
            "prepared.xlsx",
        ],
    );
    assert_eq!(prepared.code, 0, "{}", prepared.stderr);
    let rows = read(&dir.path().join("prepared.xlsx"));
    assert_eq!(
        rows.len(),
        2,
        "the header and the one prepared user: {rows:?}"
    );
    assert_eq!(rows[1][0], "jonas.berg@fabrikam.example");

    let unknown = run(
        dir.path(),
        &["export", "users", "--account", "fabrikan", "-o", "x.xlsx"],
    );
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no account \"fabrikan\"") && unknown.stderr.contains("fabrikam"),
        "names the accounts it knows: {}",
        unknown.stderr
    );
    assert!(!dir.path().join("x.xlsx").exists(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_users_provisioned_through_scim_and_a_manifest_never_takes_one_over() {
    let dir = tempfile::tempdir().unwrap();
    let key = portal_operator::portal::new_api_key();
    std::fs::write(dir.path().join("key"), &key).unwrap();
    let (mut portal, url) = serve_portal(dir.path(), "key").await;
    let examples = dir.path().join("examples");
    copy_dir(&repo("examples"), &examples);
    let remote = |command: &'static str| {
        let dir = dir.path().to_owned();
        let url = url.clone();
        let examples = examples.clone();
        tokio::task::spawn_blocking(move || {
            run(
                &dir,
                &[
                    command,
                    "-f",
                    examples.to_str().unwrap(),
                    "--portal-url",
                    &url,
                    "--portal-api-key-file",
                    "key",
                ],
            )
        })
    };
    assert_eq!(remote("apply").await.unwrap().code, 0);
    let http = reqwest::Client::new();
    let fabrikam = http
        .get(format!("{url}/v1/accounts?externalId=Account/fabrikam"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = http
        .post(format!("{url}/v1/accounts/{fabrikam}/scim-tokens"))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "name": "entra" }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for user in ["dana@fabrikam.example", "eve@fabrikam.example"] {
        let created = http
            .post(format!("{url}/scim/v2/Users"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }
    let status = remote("status").await.unwrap();
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains(
            "Provisioned through SCIM by an identity provider (not in these manifests):\n  fabrikam: 2 user(s): dana@fabrikam.example, eve@fabrikam.example"
        ),
        "{}",
        status.stdout
    );
    // A manifest naming a user ID that SCIM provisioned is refused, naming the holder.
    std::fs::write(
        examples.join("team-fabrikam/dana.yaml"),
        "apiVersion: access.portal.dev/v1alpha1\nkind: User\nmetadata:\n  name: dana\n  namespace: team-fabrikam\n\
         spec:\n  accountRef:\n    name: fabrikam\n  userId: dana@fabrikam.example\n  firstName: Dana\n  lastName: Scully\n  licenseType: Standard\n",
    )
    .unwrap();
    let clash = remote("apply").await.unwrap();
    assert_eq!(clash.code, 1, "{}", clash.stdout);
    let row = clash
        .stdout
        .lines()
        .find(|l| l.contains("team-fabrikam/dana"))
        .unwrap_or_else(|| panic!("{}", clash.stdout));
    assert!(
        row.contains("provisioned by an identity provider through SCIM"),
        "{row}"
    );
    portal.kill().unwrap();
    portal.wait().unwrap();
}
