//! The `portal-operator` command line.

use std::io::Write;

use clap::{Parser, Subcommand, ValueEnum};

use crate::domain::{Account, AccountTree, Grant, ImplicationScope, Role, effective_access};

/// Declarative admin access for multi-tenant telephony admin portals.
///
/// Accounts, admin invitations, role bindings and account managers are written as Kubernetes
/// custom resources and reconciled against the portal's HTTP API.
#[derive(Debug, Parser)]
#[command(name = "portal-operator", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the admin role catalog: what each role implies and the permissions it grants.
    Roles(RolesArgs),
    /// The reference portal server.
    #[command(subcommand)]
    Portal(PortalCommand),
    /// Print the CustomResourceDefinitions (multi-document YAML), e.g. `| kubectl apply -f -`.
    Crds,
    /// Reconcile a folder of manifests against the portal (the embedded one by default) and
    /// print each object's state. A second apply of the same manifests changes nothing.
    Apply(LocalArgs),
    /// Print what `apply` would change in the portal, and change nothing. Exit 0: nothing to
    /// do; 2: there are changes; 1: an error (e.g. an invalid manifest).
    Diff(LocalArgs),
    /// Print each object's state as the portal has it now.
    Status(LocalArgs),
    /// Export from the portal (the embedded one by default).
    #[command(subcommand)]
    Export(ExportCommand),
    /// Run the operator: reconcile the cluster's Account, AdminInvitation, RoleBinding and
    /// AccountManager objects against the portal (kubeconfig or in-cluster credentials).
    Run(Box<RunArgs>),
}

#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// Manifest files or folders (searched recursively for .yaml, .yml and .json).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<std::path::PathBuf>,

    /// A portal to act on instead of the embedded one.
    #[arg(long, env = "PORTAL_URL", hide_env_values = true)]
    pub portal_url: Option<String>,

    /// The API key for --portal-url, in a file.
    #[arg(long, env = "PORTAL_API_KEY_FILE", requires = "portal_url")]
    pub portal_api_key_file: Option<std::path::PathBuf>,

    /// Where the embedded portal, the objects' recorded state and invitation links are kept.
    #[arg(long, env = "PORTAL_STATE_DIR", default_value = ".portal")]
    pub state_dir: std::path::PathBuf,

    /// table, or json/yaml: the objects with their status as the operator would record it.
    #[arg(long, short, value_enum, default_value_t = LocalOutput::Table)]
    pub output: LocalOutput,

    /// Also print new invitation links (they are always written to files with mode 0600).
    #[arg(long)]
    pub show_links: bool,

    /// Remove from the portal what an earlier apply made for objects no longer in the manifests.
    #[arg(long)]
    pub prune: bool,

    /// With --prune, the most objects one run may remove (default: 10% of the managed objects).
    #[arg(long, requires = "prune")]
    pub max_removals: Option<usize>,

    /// apply only: keep running, reconcile on every portal event and redraw the table. The
    /// embedded portal stays up on --listen, with a development sign-in page at invitation links.
    #[arg(long)]
    pub watch: bool,

    /// With --watch, where the embedded portal listens (and its invitation links point).
    #[arg(long, env = "PORTAL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// An account's users as an Excel workbook (.xlsx): one row per user with user ID, names,
    /// state, licence, numbers, roles, teams, permissions, language and time zone.
    Users(ExportUsersArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportUsersArgs {
    /// The account: the name of an Account object applied with this state folder, a portal
    /// account id, or an account's display name.
    #[arg(long)]
    pub account: String,

    /// Which users: active (invited at least once), prepared (not yet invited), or all.
    #[arg(long, value_enum, default_value_t = ExportStateArg::All)]
    pub state: ExportStateArg,

    /// The file to write (replaced if it exists).
    #[arg(short = 'o', long = "output")]
    pub output: std::path::PathBuf,

    /// A portal to export from instead of the embedded one.
    #[arg(long, env = "PORTAL_URL", hide_env_values = true)]
    pub portal_url: Option<String>,

    /// The API key for --portal-url, in a file.
    #[arg(long, env = "PORTAL_API_KEY_FILE", requires = "portal_url")]
    pub portal_api_key_file: Option<std::path::PathBuf>,

    /// Where the embedded portal and the recorded state of applied objects are kept.
    #[arg(long, env = "PORTAL_STATE_DIR", default_value = ".portal")]
    pub state_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportStateArg {
    Active,
    Prepared,
    All,
}

impl From<ExportStateArg> for crate::api::ExportState {
    fn from(state: ExportStateArg) -> Self {
        match state {
            ExportStateArg::Active => crate::api::ExportState::Active,
            ExportStateArg::Prepared => crate::api::ExportState::Prepared,
            ExportStateArg::All => crate::api::ExportState::All,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LocalOutput {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The portal's base URL.
    #[arg(
        long,
        env = "PORTAL_URL",
        default_value = "http://127.0.0.1:8080",
        hide_env_values = true
    )]
    pub portal_url: String,

    /// A file holding the portal API key the operator acts with.
    #[arg(long, env = "PORTAL_API_KEY_FILE")]
    pub portal_api_key_file: Option<std::path::PathBuf>,

    /// The portal API key itself (prefer --portal-api-key-file: environments leak).
    #[arg(
        long,
        env = "PORTAL_API_KEY",
        hide_env_values = true,
        conflicts_with = "portal_api_key_file"
    )]
    pub portal_api_key: Option<String>,

    /// How often to compare everything with the portal in bulk (a safety net under the change feed).
    #[arg(long, env = "PORTAL_OPERATOR_RESYNC", default_value = "10m", value_parser = crate::domain::validation::parse_duration)]
    pub resync: std::time::Duration,

    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "PORTAL_OPERATOR_METRICS_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub metrics_listen: std::net::SocketAddr,

    /// Act only while holding a Lease, so that several replicas can run with one active.
    #[arg(long, env = "PORTAL_OPERATOR_LEADER_ELECT")]
    pub leader_elect: bool,

    /// The Lease used for leader election.
    #[arg(
        long,
        env = "PORTAL_OPERATOR_LEASE_NAME",
        default_value = "portal-operator"
    )]
    pub lease_name: String,

    /// The Lease's namespace (in a cluster: the operator's own, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// Reconciles in flight at once, per kind.
    #[arg(long, env = "PORTAL_OPERATOR_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
}

#[derive(Debug, Subcommand)]
pub enum PortalCommand {
    /// Serve the portal API (migrations run at start).
    Serve(Box<ServeArgs>),
    /// Print a new random API key, e.g. for PORTAL_BOOTSTRAP_API_KEY.
    NewApiKey,
    /// Recover a portal locked out of its platform principal: run on the server, against its
    /// database; installs a new platform API key and prints it once (other keys stay).
    ResetPlatformKey {
        /// sqlite://FILE or postgres://USER@HOST/DB.
        #[arg(long, env = "PORTAL_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Print the OpenAPI 3 document of the portal API.
    Openapi,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PORTAL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// sqlite://FILE (created if missing) or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "PORTAL_DATABASE_URL",
        // A PostgreSQL URL carries its password.
        hide_env_values = true,
        default_value = "sqlite://portal.db"
    )]
    pub database_url: String,

    /// Where people reach the portal; invitation links start with it. Defaults to http://LISTEN.
    #[arg(long, env = "PORTAL_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The platform principal's API key, installed at start if no platform principal exists.
    #[arg(
        long,
        env = "PORTAL_BOOTSTRAP_API_KEY",
        hide_env_values = true,
        conflicts_with = "bootstrap_api_key_file"
    )]
    pub bootstrap_api_key: Option<String>,

    /// A file holding the bootstrap API key (see --bootstrap-api-key).
    #[arg(long, env = "PORTAL_BOOTSTRAP_API_KEY_FILE")]
    pub bootstrap_api_key_file: Option<std::path::PathBuf>,

    /// The OpenID Connect issuer invitees sign in with (discovery at ISSUER/.well-known/openid-configuration).
    /// For Microsoft Entra ID multi-tenant apps: https://login.microsoftonline.com/{tenantid}/v2.0
    /// (each account's invitees then sign in at their own tenant's authority, and `tid` is checked).
    /// Without it (and without --dev-login), invitations cannot be accepted.
    #[arg(long, env = "PORTAL_OIDC_ISSUER", requires = "oidc_client_id")]
    pub oidc_issuer: Option<String>,

    /// The portal's client (application) id at the issuer; its ID tokens must carry it as audience.
    #[arg(
        long,
        visible_alias = "oidc-audience",
        env = "PORTAL_OIDC_CLIENT_ID",
        requires = "oidc_issuer"
    )]
    pub oidc_client_id: Option<String>,

    /// A file holding the client secret for the issuer's token endpoint. The secret may also come
    /// from the environment variable PORTAL_OIDC_CLIENT_SECRET; it is never a flag.
    #[arg(long, env = "PORTAL_OIDC_CLIENT_SECRET_FILE", requires = "oidc_issuer")]
    pub oidc_client_secret_file: Option<std::path::PathBuf>,

    /// The invitation page's sign-in button.
    #[arg(long, env = "PORTAL_OIDC_BUTTON_LABEL", default_value = crate::portal::DEFAULT_SIGN_IN_LABEL)]
    pub oidc_button_label: String,

    /// Send mail over SMTP: smtp://HOST:PORT (plain), smtp://HOST?tls=required, smtps://USER:PASS@HOST.
    /// Without it, messages stay in the outbox (GET /v1/outbox).
    #[arg(long, env = "PORTAL_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// The sender of the portal's mail.
    #[arg(
        long,
        env = "PORTAL_MAIL_FROM",
        default_value = "Admin Portal <no-reply@portal.localhost>"
    )]
    pub mail_from: String,

    /// A branded portal domain account managers may be given; repeat for several.
    #[arg(
        long = "branding-domain",
        env = "PORTAL_BRANDING_DOMAINS",
        value_delimiter = ','
    )]
    pub branding_domains: Vec<String>,

    /// Serve a development sign-in page at invitation links that accepts as any identity, with
    /// no identity provider. For local demos only: anyone with a link can accept as anyone.
    #[arg(long, env = "PORTAL_DEV_LOGIN")]
    pub dev_login: bool,

    /// Invitation accept and account-manager activate attempts allowed per client address per minute.
    #[arg(long, env = "PORTAL_ACCEPT_ATTEMPTS_PER_MINUTE", default_value_t = 20)]
    pub accept_attempts_per_minute: u32,
}

#[derive(Debug, clap::Args)]
pub struct RolesArgs {
    /// Show one role in full: every permission it grants on the account it is granted on and on
    /// the client accounts below it, and the path that gives each.
    pub role: Option<Role>,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table, env = "PORTAL_OUTPUT")]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl Cli {
    pub fn run(self, out: &mut impl Write) -> anyhow::Result<std::process::ExitCode> {
        let done = |result: anyhow::Result<()>| result.map(|_| std::process::ExitCode::SUCCESS);
        match self.command {
            Command::Apply(args) => local(crate::local::Mode::Apply, args, out),
            Command::Diff(args) => local(crate::local::Mode::Diff, args, out),
            Command::Status(args) => local(crate::local::Mode::Status, args, out),
            command => done(Cli { command }.run_other(out)),
        }
    }

    fn run_other(self, out: &mut impl Write) -> anyhow::Result<()> {
        match self.command {
            Command::Roles(args) => roles(args, out),
            Command::Crds => {
                for (index, (_, crd)) in crate::crd::definitions().iter().enumerate() {
                    if index > 0 {
                        writeln!(out, "---")?;
                    }
                    write!(out, "{}", crate::crd::to_yaml(crd))?;
                }
                Ok(())
            }
            Command::Portal(PortalCommand::Openapi) => {
                serde_json::to_writer_pretty(&mut *out, &crate::portal::openapi_document())?;
                writeln!(out)?;
                Ok(())
            }
            Command::Portal(PortalCommand::ResetPlatformKey { database_url }) => {
                let key = tokio::runtime::Runtime::new()?
                    .block_on(crate::portal::reset_platform_key(&database_url))?;
                writeln!(out, "{key}")?;
                eprintln!(
                    "a new API key for the platform principal (shown once; keep it as PORTAL_BOOTSTRAP_API_KEY or in the operator's Secret)"
                );
                Ok(())
            }
            Command::Portal(PortalCommand::NewApiKey) => {
                writeln!(out, "{}", crate::portal::new_api_key())?;
                Ok(())
            }
            Command::Portal(PortalCommand::Serve(args)) => serve(*args),
            Command::Run(args) => run_operator(*args),
            Command::Export(ExportCommand::Users(args)) => export_users(args),
            Command::Apply(_) | Command::Diff(_) | Command::Status(_) => {
                unreachable!("handled by run")
            }
        }
    }
}

/// The OIDC client secret: from --oidc-client-secret-file, else PORTAL_OIDC_CLIENT_SECRET.
fn oidc_client_secret(args: &ServeArgs) -> anyhow::Result<Option<crate::portal::ClientSecret>> {
    use anyhow::Context;

    let secret = match &args.oidc_client_secret_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("read the OIDC client secret from {}", path.display()))?,
        ),
        None => std::env::var("PORTAL_OIDC_CLIENT_SECRET").ok(),
    };
    Ok(secret
        .map(|secret| secret.trim().to_owned())
        .filter(|secret| !secret.is_empty())
        .map(crate::portal::ClientSecret::new))
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use anyhow::Context;

    init_tracing();
    let bootstrap_api_key = match (&args.bootstrap_api_key, &args.bootstrap_api_key_file) {
        (Some(key), _) => Some(key.trim().to_owned()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("read the bootstrap API key from {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let config = crate::portal::PortalConfig {
        database_url: args.database_url.clone(),
        public_url: args
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", args.listen)),
        bootstrap_api_key,
        oidc: match args.oidc_issuer.clone().zip(args.oidc_client_id.clone()) {
            Some((issuer, client_id)) => Some(crate::portal::OidcConfig {
                issuer,
                client_id,
                client_secret: oidc_client_secret(&args)?,
                button_label: args.oidc_button_label.clone(),
            }),
            None => None,
        },
        mail: args
            .smtp_url
            .clone()
            .map(|smtp_url| crate::portal::MailConfig {
                smtp_url,
                from: args.mail_from.clone(),
            }),
        branding_domains: args.branding_domains.clone(),
        accept_attempts_per_minute: args.accept_attempts_per_minute,
        dev_login: args.dev_login,
    };
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async move {
        let portal = crate::portal::Portal::open(config).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listen on {}", args.listen))?;
        tracing::info!(address = %listener.local_addr()?, "portal listening");
        portal.serve(listener, shutdown_signal()).await?;
        Ok(())
    })
}

/// The portal a local command acts on: `portal_url` with its key, or the embedded one.
async fn target(
    portal_url: Option<&str>,
    api_key_file: Option<&std::path::Path>,
    state_dir: &std::path::Path,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<crate::local::Target> {
    use anyhow::Context;
    match portal_url {
        Some(url) => {
            let key = match api_key_file {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("read the portal API key from {}", path.display()))?
                    .trim()
                    .to_owned(),
                None => std::env::var("PORTAL_API_KEY")
                    .context("--portal-url needs --portal-api-key-file (or PORTAL_API_KEY)")?,
            };
            Ok(crate::local::Target::remote(url, &key)?)
        }
        None => crate::local::Target::embedded(state_dir, listen).await,
    }
}

fn export_users(args: ExportUsersArgs) -> anyhow::Result<()> {
    use anyhow::Context;

    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async {
        let target = target(
            args.portal_url.as_deref(),
            args.portal_api_key_file.as_deref(),
            &args.state_dir,
            None,
        )
        .await?;
        let exported = async {
            let account =
                crate::local::resolve_account(&args.state_dir, &target.portal, &args.account)
                    .await?;
            let (bytes, count) = target
                .portal
                .export_users(&account.id, args.state.into())
                .await
                .with_context(|| format!("export the users of {}", account.display_name))?;
            anyhow::Ok((account, bytes, count))
        }
        .await;
        target.close().await;
        let (account, bytes, count) = exported?;
        // Written beside the target and renamed, so a reader never sees half a workbook.
        let staging = args.output.with_extension("xlsx.partial");
        std::fs::write(&staging, &bytes).with_context(|| format!("write {}", staging.display()))?;
        std::fs::rename(&staging, &args.output)
            .with_context(|| format!("write {}", args.output.display()))?;
        let count = count.map_or_else(|| "the".to_owned(), |n| n.to_string());
        eprintln!(
            "wrote {count} user(s) ({}) of {} ({}) to {}",
            crate::api::ExportState::from(args.state).as_str(),
            account.display_name,
            account.id,
            args.output.display()
        );
        Ok(())
    })
}

fn local(
    mode: crate::local::Mode,
    args: LocalArgs,
    out: &mut impl Write,
) -> anyhow::Result<std::process::ExitCode> {
    use crate::local::Mode;
    use anyhow::Context;
    use std::process::ExitCode;

    if args.watch && mode != Mode::Apply {
        anyhow::bail!(
            "--watch works with apply only: diff and status look once (run them again, or use apply --watch)"
        );
    }
    // Taken before reading, so that `--watch` notices an edit made while the first run reads.
    let read_files = crate::local::manifests::fingerprint(&args.paths);
    let manifests = match crate::local::manifests::load(&args.paths) {
        Ok(manifests) => manifests,
        Err(problems) => {
            eprint!("{problems}");
            return Ok(ExitCode::from(1));
        }
    };
    if manifests.is_empty() {
        eprintln!(
            "no manifests found in {}",
            crate::local::manifests::describe(&args.paths)
        );
        return Ok(ExitCode::from(1));
    }
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    let report = runtime.block_on(async {
        let target = target(
            args.portal_url.as_deref(),
            args.portal_api_key_file.as_deref(),
            &args.state_dir,
            (args.watch && mode == Mode::Apply).then_some(args.listen),
        )
        .await?;
        let prune = crate::local::Prune {
            enabled: args.prune,
            max_removals: args.max_removals,
        };
        let keep_objects = args.output != LocalOutput::Table;
        let report = crate::local::run(
            mode,
            &manifests,
            &target,
            &args.state_dir,
            prune,
            keep_objects,
        )
        .await;
        if args.watch && mode == Mode::Apply {
            if let Ok(report) = &report {
                print_report(mode, &args, report, out)?;
                out.flush()?;
            }
            let watched = watch(manifests, read_files, &target, &args, prune, out).await;
            target.close().await;
            watched?;
            return Ok(None);
        }
        target.close().await;
        report.map(Some)
    })?;
    let Some(report) = report else {
        return Ok(ExitCode::SUCCESS);
    };
    print_report(mode, &args, &report, out)?;
    // A failure, or a spec the portal refused (Stalled), fails the command: a CI job notices.
    let stalled = report.rows.iter().any(|r| r.stalled);
    if report.failures > 0 || (mode == Mode::Apply && stalled) {
        return Ok(ExitCode::from(1));
    }
    Ok(match mode {
        Mode::Diff if report.changed() > 0 => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}

/// `apply --watch`: reconcile again on every portal event (debounced) and print the table when
/// it changes, until interrupted.
async fn watch(
    mut manifests: Vec<crate::local::manifests::Manifest>,
    read_files: crate::local::manifests::Fingerprint,
    target: &crate::local::Target,
    args: &LocalArgs,
    prune: crate::local::Prune,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    use crate::portal_client::PortalApi;
    use futures::StreamExt;

    if args.portal_url.is_none() {
        writeln!(
            out,
            "\nWatching. The embedded portal serves http://{} (invitation links open the invitation page with a DEVELOPMENT sign-in). Ctrl-C stops.",
            args.listen
        )?;
    } else {
        writeln!(out, "\nWatching the portal's change feed. Ctrl-C stops.")?;
    }
    out.flush()?;
    let mut last = String::new();
    let mut cursor = None;
    let mut files = read_files;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        let mut events = match target.portal.events(cursor).await {
            Ok(events) => events,
            Err(error) => {
                eprintln!("watch the portal's change feed: {error}; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => continue,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
        };
        loop {
            let event = tokio::select! {
                event = events.next() => Some(event),
                _ = tick.tick() => None,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            match event {
                Some(Some(Ok(event))) => {
                    cursor = event.seq().or(cursor);
                    // Let a burst of events settle, then look once.
                    while let Ok(Some(Ok(more))) =
                        tokio::time::timeout(std::time::Duration::from_millis(100), events.next())
                            .await
                    {
                        cursor = more.seq().or(cursor);
                    }
                }
                Some(_) => break,
                // The manifests changed on disk: read them again (keeping the last good ones
                // while they do not load).
                None => {
                    let now = crate::local::manifests::fingerprint(&args.paths);
                    if now == files {
                        continue;
                    }
                    files = now;
                    match crate::local::manifests::load(&args.paths) {
                        Ok(loaded) => {
                            writeln!(out, "\nThe manifests changed; applying them.")?;
                            manifests = loaded;
                        }
                        Err(problems) => {
                            eprint!("{problems}");
                            continue;
                        }
                    }
                }
            }
            let report = crate::local::run(
                crate::local::Mode::Apply,
                &manifests,
                target,
                &args.state_dir,
                prune,
                false,
            )
            .await?;
            let table = crate::local::table(&report.rows, terminal_width());
            if table != last {
                writeln!(
                    out,
                    "\n--- {} ---",
                    crate::api::time::format_millis(crate::api::time::Clock::now_millis(
                        &crate::api::time::SystemClock
                    ))
                )?;
                write!(out, "{table}")?;
                out.flush()?;
                last = table;
            }
        }
    }
}

fn print_report(
    mode: crate::local::Mode,
    args: &LocalArgs,
    report: &crate::local::Report,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    use crate::local::Mode;

    match args.output {
        LocalOutput::Table => {
            if mode == Mode::Diff {
                write!(out, "{}", crate::local::plan_text(&report.rows))?;
            } else {
                write!(
                    out,
                    "{}",
                    crate::local::table(&report.rows, terminal_width())
                )?;
                write!(
                    out,
                    "{}",
                    crate::local::provisioned_text(&report.provisioned)
                )?;
            }
        }
        LocalOutput::Json | LocalOutput::Yaml => {
            let objects: Vec<serde_json::Value> = report
                .rows
                .iter()
                .filter_map(|r| r.object.as_deref())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?;
            if args.output == LocalOutput::Json {
                serde_json::to_writer_pretty(&mut *out, &objects)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", serde_saphyr::to_string_multiple(&objects)?)?;
            }
        }
    }
    let changed = report.changed();
    if args.output == LocalOutput::Table {
        match mode {
            Mode::Apply if changed == 0 => writeln!(
                out,
                "\nNo changes: the portal already matches all {} object(s).",
                report.in_manifests()
            )?,
            Mode::Apply => writeln!(
                out,
                "\n{changed} of {} object(s) changed in the portal.",
                report.rows.len()
            )?,
            Mode::Diff if changed == 0 => writeln!(
                out,
                "No changes: the portal matches all {} object(s).",
                report.in_manifests()
            )?,
            Mode::Diff => writeln!(out, "\n{changed} object(s) would change.")?,
            Mode::Status => {}
        }
        if !report.links.is_empty() {
            writeln!(
                out,
                "\nInvitation links (bearer credentials; share each with its invitee only):"
            )?;
            for (object, path, link) in &report.links {
                if args.show_links {
                    writeln!(out, "  {object}: {link}")?;
                } else {
                    writeln!(out, "  {object}: {}", path.display())?;
                }
            }
        }
    }
    Ok(())
}

fn run_operator(args: RunArgs) -> anyhow::Result<()> {
    use anyhow::Context;

    init_tracing();
    let api_key = match (&args.portal_api_key, &args.portal_api_key_file) {
        (Some(key), _) => key.trim().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("read the portal API key from {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => anyhow::bail!(
            "the operator needs a portal API key: pass --portal-api-key-file (or PORTAL_API_KEY_FILE)"
        ),
    };
    let metrics = std::sync::Arc::new(crate::controller::metrics::Metrics::default());
    let counted = metrics.clone();
    let portal = crate::portal_client::HttpPortal::new(&args.portal_url, &api_key)
        .context("build the portal client")?
        .with_observer(std::sync::Arc::new(move |method, outcome| {
            counted.portal_request(method.as_str(), outcome)
        }));
    let config = crate::controller::Config {
        resync: args.resync,
        metrics_listen: Some(args.metrics_listen),
        leader_election: args
            .leader_elect
            .then(|| crate::controller::LeaderElection {
                lease_name: args.lease_name.clone(),
                namespace: args.lease_namespace.clone(),
                identity: std::env::var("POD_NAME")
                    .unwrap_or_else(|_| format!("portal-operator-{}", uuid::Uuid::new_v4())),
            }),
        concurrency: args.concurrency,
        max_backoff: crate::controller::MAX_BACKOFF,
    };
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .context("connect to Kubernetes (kubeconfig or in-cluster credentials)")?;
        crate::controller::run(client, portal, metrics, config, shutdown_signal()).await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The terminal's width when stdout is one (`COLUMNS`, or 120); none when piped.
fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal().then(|| {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(120)
    })
}

fn roles(args: RolesArgs, out: &mut impl Write) -> anyhow::Result<()> {
    match (args.role, args.output) {
        (None, Output::Json) => {
            serde_json::to_writer_pretty(&mut *out, crate::domain::CATALOG)?;
            writeln!(out)?;
        }
        (None, Output::Table) => {
            let rows: Vec<(String, String, String)> = crate::domain::CATALOG
                .iter()
                .map(|spec| {
                    let implies: Vec<String> = spec
                        .implies
                        .iter()
                        .map(|i| match i.scope {
                            ImplicationScope::Everywhere => i.role.to_string(),
                            ImplicationScope::ChildAccountsOnly => {
                                format!("{} (child accounts only)", i.role)
                            }
                        })
                        .collect();
                    let implies = if implies.is_empty() {
                        "-".to_owned()
                    } else {
                        implies.join(", ")
                    };
                    let permissions: Vec<&str> =
                        spec.permissions.iter().map(|p| p.as_str()).collect();
                    (spec.role.to_string(), implies, permissions.join(" "))
                })
                .collect();
            let role_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
            let implies_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(7);
            writeln!(
                out,
                "{:<role_width$}  {:<implies_width$}  PERMISSIONS",
                "ROLE", "IMPLIES"
            )?;
            for (role, implies, permissions) in rows {
                writeln!(
                    out,
                    "{role:<role_width$}  {implies:<implies_width$}  {permissions}"
                )?;
            }
        }
        (Some(role), output) => {
            // A partner with one client with no sub-contract shows the seeds' rules at work:
            // child-only implications and roles that do not function on such a client.
            let tree = AccountTree::new([
                Account::partner("partner"),
                Account::client("client", "partner"),
            ])
            .expect("a partner with one client is a valid tree");
            let grants = [Grant::new("admin", "partner", role)];
            let views = ["partner", "client"].map(|account| {
                effective_access(&grants, &tree, &"admin".into(), &account.into())
                    .expect("both accounts are in the tree")
            });
            if output == Output::Json {
                serde_json::to_writer_pretty(&mut *out, &views)?;
                writeln!(out)?;
                return Ok(());
            }
            writeln!(out, "{role} granted on a partner account:")?;
            for (view, label) in views
                .iter()
                .zip(["on the partner", "on a client below it (no sub-contract)"])
            {
                writeln!(out, "\n  {label}:")?;
                if view.permissions.is_empty() {
                    writeln!(out, "    (nothing)")?;
                }
                for (permission, paths) in &view.permissions {
                    writeln!(out, "    {:<30} via {}", permission.as_str(), paths[0])?;
                }
                for inert in &view.inert {
                    writeln!(out, "    inert: {}", inert.reason)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> String {
        let cli =
            Cli::try_parse_from(std::iter::once("portal-operator").chain(args.iter().copied()))
                .unwrap();
        let mut out = Vec::new();
        cli.run(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn roles_table_lists_every_role() {
        let table = run(&["roles"]);
        for role in Role::ALL {
            assert!(
                table.contains(role.as_str()),
                "{role} missing from\n{table}"
            );
        }
        assert!(
            table.contains("AccountOwner (child accounts only)"),
            "{table}"
        );
    }

    #[test]
    fn one_role_shows_child_only_owner_and_inert_subscription_roles() {
        let text = run(&["roles", "SubscriptionContributor"]);
        let (partner, client) = text.split_once("on a client below it").unwrap();
        assert!(partner.contains("subscriptions.write"), "{text}");
        assert!(!partner.contains("api_keys.write"), "{text}");
        assert!(client.contains("api_keys.write"), "{text}");
        assert!(
            client.contains("inert: SubscriptionContributor does not function"),
            "{text}"
        );
    }

    #[test]
    fn roles_json_is_the_catalog() {
        let json: serde_json::Value =
            serde_json::from_str(&run(&["roles", "--output", "json"])).unwrap();
        assert_eq!(json.as_array().map(Vec::len), Some(Role::ALL.len()));
        assert_eq!(json[1]["implies"][1]["scope"], "ChildAccountsOnly");
    }

    #[test]
    fn unknown_role_is_a_usage_error() {
        let error = Cli::try_parse_from(["portal-operator", "roles", "Owner"]).unwrap_err();
        assert!(error.to_string().contains("unknown role"), "{error}");
    }
}
