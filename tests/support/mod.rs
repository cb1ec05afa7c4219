//! Test harness: a portal server on 127.0.0.1 over a real SQLite file or a real PostgreSQL, and
//! a small HTTP client for it.
//!
//! PostgreSQL: one throwaway cluster per test process, made with `initdb` and `pg_ctl` (as the
//! `postgres` user when running as root), listening on 127.0.0.1 only. A watchdog shell stops it
//! (by its data directory's postmaster) and removes it once the test process has exited, however
//! that happens. Each test gets its own database in it.

#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portal_operator::api::time::ManualClock;
use portal_operator::portal::{Portal, PortalConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each scenario function given.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}

pub mod contract;
pub mod fault_proxy;
pub mod processes;

// --- PostgreSQL ---------------------------------------------------------------------------

pub struct PgCluster {
    pub port: u16,
    pub dir: PathBuf,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_command(program: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

static PG_FSYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the cluster (if not started yet) flush to disk as a production one does.
pub fn durable_pg() {
    PG_FSYNC.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The process-wide throwaway cluster, started on first use.
pub fn pg_cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let as_postgres = running_as_root();
        let dir = std::env::temp_dir().join(format!(
            "portal-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "chown the PostgreSQL directory to postgres"
            );
        }
        let data = dir.join("data");
        let initdb = pg_command("initdb", as_postgres)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ])
            .stdout(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("run initdb (PostgreSQL must be installed; CI runs this suite): {e}")
            });
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = free_port();
        // Tests trade durability for speed; benchmarks ask for fsync (durable_pg) for real figures.
        let fsync = if PG_FSYNC.load(std::sync::atomic::Ordering::SeqCst) {
            "on".to_owned()
        } else {
            std::env::var("PORTAL_PG_FSYNC").unwrap_or_else(|_| "off".to_owned())
        };
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=200",
            dir.display()
        );
        let start = pg_command("pg_ctl", as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            start.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        spawn_watchdog(&data, &dir, as_postgres);
        PgCluster { port, dir }
    })
}

/// Stops the cluster once this process is gone.
fn spawn_watchdog(data: &Path, dir: &Path, as_postgres: bool) {
    let stop = if as_postgres {
        "runuser -u postgres -- pg_ctl"
    } else {
        "pg_ctl"
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        data = data.display(),
        dir = dir.display(),
    );
    // `setsid -f` forks the watchdog into its own session and returns at once.
    let started = Command::new("setsid")
        .args(["-f", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the PostgreSQL watchdog");
    assert!(started.success(), "start the PostgreSQL watchdog");
}

/// A fresh, empty database in the cluster.
pub async fn pg_database() -> String {
    use sqlx::Connection;
    let cluster = pg_cluster();
    let admin_url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut connection = sqlx::postgres::PgConnection::connect(&admin_url)
        .await
        .expect("connect to the test cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .expect("create a test database");
    format!("postgres://postgres@127.0.0.1:{}/{name}", cluster.port)
}

// --- The portal -----------------------------------------------------------------------------

/// How a test portal is set up.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub oidc: Option<String>,
    pub smtp_url: Option<String>,
    pub branding_domains: Vec<String>,
    pub accept_attempts_per_minute: Option<u32>,
    pub dev_login: bool,
    /// The client registered at the OIDC issuer (default: OIDC_AUDIENCE, no secret).
    pub oidc_client_id: Option<String>,
    pub oidc_client_secret: Option<String>,
}

pub struct TestPortal {
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub platform_key: String,
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestPortal {
    pub async fn start(backend: Backend) -> TestPortal {
        TestPortal::start_with(backend, None).await
    }

    /// A portal whose invitees sign in with the given OpenID Connect issuer.
    pub async fn start_with(backend: Backend, oidc: Option<String>) -> TestPortal {
        TestPortal::start_with_options(
            backend,
            Options {
                oidc,
                ..Options::default()
            },
        )
        .await
    }

    pub async fn start_with_options(backend: Backend, options: Options) -> TestPortal {
        let oidc = options.oidc.clone();
        let (database_url, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                (
                    format!("sqlite://{}", dir.path().join("portal.db").display()),
                    Some(dir),
                )
            }
            Backend::Postgres => (pg_database().await, None),
        };
        let platform_key = portal_operator::portal::new_api_key();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let clock = Arc::new(ManualClock::starting_now());
        let portal = Portal::open_with_clock(
            PortalConfig {
                database_url: database_url.clone(),
                public_url: base.clone(),
                bootstrap_api_key: Some(platform_key.clone()),
                oidc: oidc.map(|issuer| portal_operator::portal::OidcConfig {
                    issuer,
                    client_id: options
                        .oidc_client_id
                        .clone()
                        .unwrap_or_else(|| OIDC_AUDIENCE.to_owned()),
                    client_secret: options
                        .oidc_client_secret
                        .clone()
                        .map(portal_operator::portal::ClientSecret::new),
                    button_label: portal_operator::portal::DEFAULT_SIGN_IN_LABEL.to_owned(),
                }),
                mail: options
                    .smtp_url
                    .map(|smtp_url| portal_operator::portal::MailConfig {
                        smtp_url,
                        from: "Portal Tests <portal@tests.example>".to_owned(),
                    }),
                branding_domains: options.branding_domains,
                accept_attempts_per_minute: options.accept_attempts_per_minute.unwrap_or(20),
                dev_login: options.dev_login,
            },
            clock.clone(),
        )
        .await
        .expect("open the portal");
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            portal
                .serve(listener, async {
                    let _ = stop.await;
                })
                .await
                .expect("serve");
        });
        TestPortal {
            base,
            clock,
            platform_key,
            database_url,
            shutdown: Some(shutdown),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn platform(&self) -> Api {
        self.api(&self.platform_key)
    }

    pub fn api(&self, key: &str) -> Api {
        Api {
            base: self.base.clone(),
            key: Some(key.to_owned()),
            client: reqwest::Client::new(),
        }
    }

    pub fn anonymous(&self) -> Api {
        Api {
            base: self.base.clone(),
            key: None,
            client: reqwest::Client::new(),
        }
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// A response: status, headers, and the body as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem `type` slug of an error reply.
    pub fn problem(&self) -> &str {
        contract::problem_slug(&self.body).unwrap_or("<not a problem>")
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected reply: {:#}",
            self.body
        );
        self
    }

    #[track_caller]
    pub fn expect_problem(self, status: u16, slug: &str) -> Reply {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected reply: {:#}",
            self.body
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "problems are application/problem+json"
        );
        assert_eq!(self.problem(), slug, "unexpected problem: {:#}", self.body);
        self
    }
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub key: Option<String>,
    pub client: reqwest::Client,
}

impl Api {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{}", self.base, path));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the portal answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
        contract::enforce(&method, path, status.as_u16(), content_type, &body);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    pub async fn patch(&self, path: &str, body: Value, if_match: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = if_match
            .map(|etag| vec![("if-match", etag)])
            .unwrap_or_default();
        self.send(Method::PATCH, path, Some(body), &headers).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, &[]).await
    }

    /// Every item of a cursor-paginated list, following `nextCursor`.
    pub async fn all_pages(&self, path: &str) -> Vec<Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut next = format!("{path}{separator}limit=500");
        loop {
            let page = self.get(&next).await.expect(200);
            items.extend(page.body["items"].as_array().unwrap().iter().cloned());
            match page.body["nextCursor"].as_str() {
                Some(cursor) => next = format!("{path}{separator}limit=500&cursor={cursor}"),
                None => return items,
            }
        }
    }

    /// Every change-feed event so far, read as JSON pages (not as a stream).
    pub async fn all_events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .send(
                    Method::GET,
                    &format!("/v1/events?after={after}&limit=500"),
                    None,
                    &[("accept", "application/json")],
                )
                .await
                .expect(200);
            let items = page.body["items"].as_array().unwrap().clone();
            if items.is_empty() {
                return events;
            }
            after = page.body["next"].as_i64().unwrap();
            events.extend(items);
        }
    }

    // --- fixtures ---

    /// Creates an account and returns its id.
    pub async fn account(&self, body: Value) -> String {
        let reply = self.post("/v1/accounts", body).await.expect(201);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// Platform only: creates an admin with roles on an account and returns (admin id, API key).
    pub async fn admin_with_key(
        &self,
        account: &str,
        email: &str,
        roles: &[&str],
    ) -> (String, String) {
        let admin = self
            .post(
                &format!("/v1/accounts/{account}/admins"),
                serde_json::json!({ "email": email, "firstName": "Test", "lastName": "Admin", "roles": roles }),
            )
            .await
            .expect(201);
        let admin_id = admin.body["id"].as_str().unwrap().to_owned();
        let key = self
            .post(
                "/v1/api-keys",
                serde_json::json!({ "name": "test", "adminId": admin_id }),
            )
            .await
            .expect(201);
        (admin_id, key.body["key"].as_str().unwrap().to_owned())
    }
}

/// Polls `check` until it returns Some, or panics after `deadline`.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- Real peers from npm ----------------------------------------------------------------------

pub const OIDC_AUDIENCE: &str = "portal-operator-tests";

/// The test peers of `tests/peers/package.json`, installed once per lockfile with `npm ci` into
/// a cache directory outside the work tree (atomically: a half-finished install is never used).
pub fn node_peers() -> &'static Path {
    static PEERS: OnceLock<PathBuf> = OnceLock::new();
    PEERS.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
        let lock =
            std::fs::read(source.join("package-lock.json")).expect("tests/peers/package-lock.json");
        let stamp = {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(&lock);
            digest
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let cache = std::env::var_os("PORTAL_TEST_PEERS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(std::env::temp_dir);
                home.join(".cache/portal-operator/peers")
            });
        let target = cache.join(stamp);
        let copy_scripts = |dir: &Path| {
            for entry in std::fs::read_dir(&source).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "mjs" || e == "json") {
                    std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
                }
            }
        };
        if target.join("node_modules/.package-lock.json").exists() {
            copy_scripts(&target);
            return target;
        }
        let staging = cache.join(format!("staging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).unwrap();
        copy_scripts(&staging);
        let install = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&staging)
            .output()
            .expect("run npm (Node.js and npm are needed for the test peers)");
        assert!(
            install.status.success(),
            "npm ci of the test peers failed:\n{}",
            String::from_utf8_lossy(&install.stderr)
        );
        if std::fs::rename(&staging, &target).is_err() {
            // Another test process finished first; use its install.
            let _ = std::fs::remove_dir_all(&staging);
        }
        copy_scripts(&target);
        target
    })
}

/// A real OpenID Connect provider (oauth2-mock-server) on 127.0.0.1, stopped when dropped.
pub struct OidcProvider {
    pub issuer: String,
    _process: tokio::process::Child,
}

impl OidcProvider {
    pub async fn start() -> OidcProvider {
        use tokio::io::AsyncBufReadExt;
        let peers = node_peers();
        let mut process = tokio::process::Command::new("node")
            .arg(peers.join("oidc-provider.mjs"))
            .current_dir(peers)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the OIDC provider");
        let stdout = process.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the OIDC provider starts within 30s")
            .unwrap()
            .expect("the OIDC provider prints its issuer");
        let issuer = serde_json::from_str::<Value>(&first).unwrap()["issuer"]
            .as_str()
            .unwrap()
            .to_owned();
        OidcProvider {
            issuer,
            _process: process,
        }
    }

    /// An ID token signed by the provider, for our audience unless `claims` says otherwise.
    pub async fn id_token(&self, claims: Value) -> String {
        let mut form: Vec<(String, String)> = vec![
            ("grant_type".into(), "password".into()),
            ("username".into(), "someone".into()),
            ("client_id".into(), OIDC_AUDIENCE.into()),
            ("scope".into(), "openid email profile".into()),
            ("aud".into(), OIDC_AUDIENCE.into()),
        ];
        for (name, value) in claims.as_object().unwrap() {
            form.retain(|(n, _)| n != name);
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            form.push((name.clone(), value));
        }
        let reply: Value = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .form(&form)
            .send()
            .await
            .expect("the OIDC provider answers")
            .json()
            .await
            .unwrap();
        reply["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no id_token in {reply}"))
            .to_owned()
    }
}

/// The Kubernetes API server double, serving the committed CRDs, with `namespaces` created.
pub async fn kube_double(
    namespaces: impl IntoIterator<Item = String>,
) -> portal_operator::testing::apiserver::ApiServer {
    kube_double_with(namespaces, Default::default()).await
}

/// [`kube_double`] with its watch history and bookmarks set by `options`.
pub async fn kube_double_with(
    namespaces: impl IntoIterator<Item = String>,
    options: portal_operator::testing::apiserver::Options,
) -> portal_operator::testing::apiserver::ApiServer {
    use portal_operator::testing::apiserver::ApiServer;
    let mut crds = Vec::new();
    for (file, _) in portal_operator::crd::definitions() {
        let text =
            std::fs::read_to_string(format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        crds.extend(ApiServer::crds_from_yaml(&text).unwrap());
    }
    let kube = ApiServer::start_with(&crds, options).await.unwrap();
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(kube.client());
    for name in namespaces {
        api.create(
            &Default::default(),
            &serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).unwrap(),
        )
        .await
        .unwrap();
    }
    kube
}

/// A certified OpenID Connect provider (node oidc-provider) with a real login form, on
/// 127.0.0.1, stopped when dropped. Its client is `portal` with `client_secret`; its users are
/// listed in `tests/peers/oidc-login.mjs`.
pub struct OidcLogin {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Tenant name (`contoso`, `fabrikam`) → tenant id (`tid`).
    pub tenants: serde_json::Map<String, Value>,
    _process: tokio::process::Child,
}

impl OidcLogin {
    /// One issuer for every tenant's users.
    pub async fn start() -> OidcLogin {
        OidcLogin::start_with(&[]).await
    }

    /// Like Microsoft Entra ID: one authority per tenant at `/{tid}/v2.0`, each signing in only
    /// its own users; `issuer` is the template `…/{tenantid}/v2.0`.
    pub async fn start_multi_tenant() -> OidcLogin {
        OidcLogin::start_with(&["--multi-tenant"]).await
    }

    async fn start_with(args: &[&str]) -> OidcLogin {
        use tokio::io::AsyncBufReadExt;
        let peers = node_peers();
        let client_secret = format!("test-secret-{}", portal_operator::portal::new_api_key());
        let mut process = tokio::process::Command::new("node")
            .arg(peers.join("oidc-login.mjs"))
            .arg(&client_secret)
            .args(args)
            .current_dir(peers)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the OpenID provider");
        let stdout = process.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the OpenID provider starts within 30s")
            .unwrap()
            .expect("the OpenID provider prints its issuer");
        let started: Value = serde_json::from_str(&first).unwrap();
        OidcLogin {
            issuer: started["issuer"].as_str().unwrap().to_owned(),
            client_id: "portal".to_owned(),
            client_secret,
            tenants: started["tenants"].as_object().unwrap().clone(),
            _process: process,
        }
    }

    pub fn tenant(&self, name: &str) -> String {
        self.tenants[name].as_str().unwrap().to_owned()
    }
}

/// A real SMTP server (maildev) on 127.0.0.1 with its HTTP API, stopped when dropped.
pub struct Maildev {
    pub smtp_port: u16,
    pub api: String,
    _process: tokio::process::Child,
}

impl Maildev {
    pub async fn start() -> Maildev {
        let peers = node_peers();
        let smtp_port = free_port();
        let web_port = free_port();
        let process = tokio::process::Command::new("node")
            .arg(peers.join("node_modules/maildev/dist/bin/maildev.js"))
            .args(["--ip", "127.0.0.1", "--web-ip", "127.0.0.1", "--silent"])
            .args([
                "--smtp",
                &smtp_port.to_string(),
                "--web",
                &web_port.to_string(),
            ])
            .current_dir(peers)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start maildev");
        let api = format!("http://127.0.0.1:{web_port}");
        let client = reqwest::Client::new();
        wait_for(Duration::from_secs(30), "maildev to start", || {
            let client = client.clone();
            let url = format!("{api}/api/email");
            async move {
                client
                    .get(url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        Maildev {
            smtp_port,
            api,
            _process: process,
        }
    }

    pub fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.smtp_port)
    }

    /// Every message received so far.
    pub async fn emails(&self) -> Vec<Value> {
        reqwest::get(format!("{}/api/email", self.api))
            .await
            .expect("maildev answers")
            .json::<Vec<Value>>()
            .await
            .unwrap_or_default()
    }

    /// Waits for a message to `to` and returns it.
    pub async fn wait_for_email_to(&self, to: &str) -> Value {
        wait_for(
            Duration::from_secs(20),
            &format!("an email to {to}"),
            || async {
                self.emails().await.into_iter().find(|email| {
                    email["to"]
                        .as_array()
                        .is_some_and(|list| list.iter().any(|r| r["address"].as_str() == Some(to)))
                })
            },
        )
        .await
    }
}

/// Makes sure a test's outside tool is here: when `present` says it is not, installs Debian's
/// `packages` with apt-get (which needs root), and fails with the command to run otherwise.
pub fn ensure_debian_packages(packages: &[&str], present: impl Fn() -> bool) {
    // Tests run in parallel: one installs while the others wait for it (here, and in other
    // test processes through dpkg's lock), then look again.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if present() {
        return;
    }
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if present() {
        return;
    }
    let install = format!(
        "apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq {}",
        packages.join(" ")
    );
    let status = Command::new("sh")
        .args(["-c", &install])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status();
    assert!(
        matches!(status, Ok(status) if status.success()) && present(),
        "this test needs Debian's {}; installing them with `{install}` failed (run it as root)",
        packages.join(" and ")
    );
}

/// The Python of a virtualenv holding scim2-cli (which runs the scim2-tester conformance
/// suite), installed from the pinned `tests/peers/scim-requirements.txt` under the cache. Run
/// the CLI with [`SCIM2_CLI`] as the `-c` program.
pub fn scim2_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let requirements =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/scim-requirements.txt");
        let pinned = std::fs::read(&requirements).expect("tests/peers/scim-requirements.txt");
        let stamp = {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(&pinned);
            digest
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let cache = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(".cache/portal-operator");
        let target = cache.join(format!("scim2-{stamp}"));
        let python = target.join("bin/python");
        if target.join("installed").exists() {
            return python;
        }
        // Installed aside and renamed into place, so a half-done install is never used (a
        // virtualenv moves as long as it is run through its bin/python).
        let staging = cache.join(format!("scim2-staging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&cache).unwrap();
        let venv = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&staging)
            .output()
            .expect("run python3 (Python 3 with venv is needed for the SCIM conformance suite)");
        assert!(
            venv.status.success(),
            "python3 -m venv failed:\n{}",
            String::from_utf8_lossy(&venv.stderr)
        );
        let install = Command::new(staging.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements)
            .output()
            .expect("run pip");
        assert!(
            install.status.success(),
            "pip install of the SCIM conformance suite failed:\n{}",
            String::from_utf8_lossy(&install.stderr)
        );
        std::fs::write(staging.join("installed"), "").unwrap();
        if std::fs::rename(&staging, &target).is_err() {
            // Another test process finished first; use its install.
            let _ = std::fs::remove_dir_all(&staging);
        }
        python
    })
}

/// The `-c` program that runs scim2-cli with the arguments after it.
pub const SCIM2_CLI: &str =
    "import sys; from scim2_cli import cli; sys.argv[0] = 'scim2'; sys.exit(cli())";
