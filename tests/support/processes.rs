//! The project's own binary as real processes on 127.0.0.1, to kill at will: the portal (killed
//! or stopped, then started again on the same port and database) and the operator (killed in
//! the middle of its work, then started again).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::wait_for;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a child's stderr goes: the test's own (`FAULT_LOG=1`), or nowhere.
fn child_stderr() -> Stdio {
    if std::env::var_os("FAULT_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// Sends SIGTERM to `child` (a graceful stop) and waits for it to exit.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// `portal-operator portal serve` on a port of its own, over `database_url`.
pub struct PortalProcess {
    child: Option<tokio::process::Child>,
    pub base: String,
    port: u16,
    database_url: String,
    key: String,
}

impl PortalProcess {
    /// Starts the portal with `key` as its bootstrap platform key and waits until it answers.
    pub async fn start(database_url: &str, key: &str) -> PortalProcess {
        let port = free_port();
        let mut portal = PortalProcess {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            port,
            database_url: database_url.to_owned(),
            key: key.to_owned(),
        };
        portal.restart().await;
        portal
    }

    /// Starts it again, same port, same database (after [`kill`](Self::kill) or
    /// [`stop`](Self::stop)).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the portal is already running");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-operator"))
            .args([
                "portal",
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--database-url",
                &self.database_url,
            ])
            .env("PORTAL_BOOTSTRAP_API_KEY", &self.key)
            .env("PORTAL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(child_stderr())
            .kill_on_drop(true)
            .spawn()
            .expect("start the portal binary");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let url = format!("{}/healthz", self.base);
        wait_for(
            Duration::from_secs(30),
            "the portal to answer /healthz",
            || {
                let request = client.get(&url).send();
                async move {
                    request
                        .await
                        .ok()
                        .filter(|r| r.status().is_success())
                        .map(|_| ())
                }
            },
        )
        .await;
    }

    /// SIGKILL: no shutdown, whatever was in flight is cut.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    /// SIGTERM: a graceful stop.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child).await;
        }
    }
}

/// `portal-operator run` against the Kubernetes API server of `kubeconfig`.
pub struct OperatorProcess {
    child: tokio::process::Child,
}

impl OperatorProcess {
    pub fn start(kubeconfig: &Path, portal_url: &str, key_file: &Path, resync: &str) -> Self {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-operator"))
            .args([
                "run",
                "--portal-url",
                portal_url,
                "--resync",
                resync,
                "--metrics-listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .arg("--portal-api-key-file")
            .arg(key_file)
            .env("KUBECONFIG", kubeconfig)
            .env("PORTAL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(child_stderr())
            .kill_on_drop(true)
            .spawn()
            .expect("start the operator binary");
        OperatorProcess { child }
    }

    /// SIGKILL, and wait for it to be gone.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// SIGTERM: a graceful stop.
    pub async fn stop(mut self) {
        terminate(&mut self.child).await;
    }
}
