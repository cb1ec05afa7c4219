//! The reference portal server: accounts, admins, invitations, role grants and API keys behind
//! a documented HTTP API, on SQLite or PostgreSQL.
//!
//! A black box to the rest of the crate: what it speaks is the API contract in [`crate::api`],
//! and what others need to run one is this facade — [`Portal`] (open, serve), its
//! [`PortalConfig`], [`new_api_key`] and the OpenAPI document ([`openapi_document`],
//! [`OPERATIONS`]). Its modules are private.
//!
//! Layout: `store` (database and change-feed sequencing), `auth` (API keys, authorization
//! through the domain's `effective_access`), one module per resource (`accounts`, `grants`,
//! `invitations`, `account_managers`, `keys`, `subscriptions`, `users`, `teams`), `idempotency` (replays of POSTs), `problem`
//! (RFC 9457 errors) and `json` (strict bodies, pagination).

mod account_managers;
mod accounts;
mod auth;
mod export;
mod feed;
mod grants;
mod idempotency;
mod invitations;
mod json;
mod keys;
mod mail;
mod metrics;
mod oidc;
mod openapi;
mod pages;
mod problem;
mod ratelimit;
mod scim;
mod sqlite_writer;
mod store;
mod subscriptions;
mod teams;
mod users;

pub use mail::MailConfig;
pub use openapi::{OPERATIONS, Operation, document as openapi_document};

/// A new API key (`pk_…`) for `--bootstrap-api-key` or an embedded portal; only its hash is ever
/// stored.
pub fn new_api_key() -> String {
    auth::new_api_key().key
}

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::routing::{delete, get, post};
use sqlx::Row;
use sqlx::pool::PoolConnection;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use self::problem::{ApiError, ApiResult, ProblemType};
use self::store::Store;
use crate::api::time::{Clock, SystemClock};

/// Settings of a portal server.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    pub database_url: String,
    /// Where people reach the portal; invitation links start with it.
    pub public_url: String,
    /// The platform principal's key, installed when no platform principal exists yet.
    pub bootstrap_api_key: Option<String>,
    /// The OpenID Connect issuer invitees sign in with, and the audience its ID tokens carry.
    pub oidc: Option<OidcConfig>,
    /// SMTP delivery; without it, mail stays in the outbox.
    pub mail: Option<mail::MailConfig>,
    /// The branded portal domains account managers may be given (seed 004).
    pub branding_domains: Vec<String>,
    /// Accept and activate attempts allowed per client address per minute.
    pub accept_attempts_per_minute: u32,
    /// Serve a clearly labelled development sign-in page at the invitation link, which accepts
    /// as any identity with no identity provider. For local demos only; never on by default.
    pub dev_login: bool,
}

#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer; for Microsoft Entra ID multi-tenant apps a template such as
    /// `https://login.microsoftonline.com/{tenantid}/v2.0`.
    pub issuer: String,
    /// The portal's client id at the issuer (the audience of its ID tokens).
    pub client_id: String,
    /// The client secret for the token endpoint (`None` for a public client using PKCE only).
    pub client_secret: Option<ClientSecret>,
    /// The invitation page's sign-in button, e.g. "Sign in with Microsoft".
    pub button_label: String,
}

pub use oidc::ClientSecret;

/// The sign-in button's label when none is configured.
pub const DEFAULT_SIGN_IN_LABEL: &str = "Sign in with Microsoft";

/// Marks a response that carries a secret (an invitation link): it is never stored for
/// idempotent replay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecretResponse;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<PortalConfig>,
    pub oidc: Option<Arc<oidc::OidcClient>>,
    /// Accept and activate attempts per client address and minute.
    pub accept_limiter: Arc<ratelimit::RateLimiter>,
    pub metrics: Arc<metrics::Metrics>,
    /// Set when the server shuts down, so long-lived change-feed streams end with it.
    pub closing: tokio::sync::watch::Sender<bool>,
    expiry: Arc<Notify>,
    mail_wake: Arc<Notify>,
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    /// Starts the request's write transaction (see `store`).
    pub async fn begin(&self) -> ApiResult<store::WriteTx> {
        self.store
            .write()
            .await
            .map_err(db_error("start a transaction"))
    }

    pub async fn connection(&self) -> ApiResult<PoolConnection<sqlx::Any>> {
        self.store
            .pool
            .acquire()
            .await
            .map_err(|e| ApiError::internal("open a database connection", e))
    }

    /// The acceptance link for an invitation token. The token rides in the fragment, which
    /// browsers never send to servers, so it stays out of access logs and Referer headers.
    pub fn invitation_link(&self, token: &str) -> String {
        format!(
            "{}/invitations/accept#token={token}",
            self.config.public_url.trim_end_matches('/')
        )
    }

    /// Wakes the expiry sweeper (a new or changed expiry).
    pub fn expiry_changed(&self) {
        self.expiry.notify_one();
    }

    /// Counts an attempt at an unauthenticated, secret-taking endpoint from `address`; refuses
    /// with 429 and Retry-After past the limit.
    pub fn limit_attempts(&self, address: std::net::IpAddr) -> ApiResult<()> {
        self.accept_limiter
            .check(address, self.now())
            .map_err(|retry_after| {
                let mut error = ApiError::new(
                    ProblemType::TooManyRequests,
                    "too many attempts from this address; wait and try again",
                );
                error.retry_after_seconds = Some(retry_after);
                error
            })
    }

    /// Wakes the mail delivery worker (a message was committed to the outbox).
    pub fn mail_queued(&self) {
        self.mail_wake.notify_one();
    }
}

/// Maps a database error to a problem. Unique-constraint races (two requests creating the same
/// thing at once) are conflicts the client can act on; anything else is internal.
pub(crate) fn db_error(context: &'static str) -> impl Fn(sqlx::Error) -> ApiError {
    move |error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => ApiError::new(
            ProblemType::ExternalRefConflict,
            format!(
                "{context}: another request created the same object at the same time; read it and retry"
            ),
        ),
        _ => ApiError::internal(context, error),
    }
}

/// A running portal: the state, ready to serve.
pub struct Portal {
    state: AppState,
}

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("open the database")]
    Store(#[from] store::StoreError),
    #[error("install the bootstrap API key")]
    Bootstrap(#[source] sqlx::Error),
    #[error(
        "the bootstrap API key must look like pk_<32 hex digits>_<secret>; make one with `portal-operator portal new-api-key`"
    )]
    BadBootstrapKey,
    #[error("listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serve HTTP")]
    Serve(#[source] std::io::Error),
    #[error("configure SMTP delivery")]
    Mail(#[from] mail::MailError),
}

impl Portal {
    pub async fn open(config: PortalConfig) -> Result<Portal, PortalError> {
        Portal::open_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn open_with_clock(
        config: PortalConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Portal, PortalError> {
        let store = Store::connect(&config.database_url).await?;
        let metrics = match store.sqlite_counters() {
            Some((commits, writes)) => {
                metrics::Metrics::default().with_sqlite_writer(commits, writes)
            }
            None => metrics::Metrics::default(),
        };
        if let Some(key) = &config.bootstrap_api_key {
            bootstrap(&store, key, clock.now_millis()).await?;
        }
        let accept_attempts_per_minute = config.accept_attempts_per_minute;
        if config.oidc.is_none() && !config.dev_login {
            tracing::warn!(
                "no OpenID Connect issuer (--oidc-issuer) and no --dev-login: invitations can be sent but not accepted"
            );
        }
        Ok(Portal {
            state: AppState {
                store,
                clock,
                oidc: config.oidc.as_ref().map(|oidc| {
                    Arc::new(oidc::OidcClient::new(
                        oidc.issuer.clone(),
                        oidc.client_id.clone(),
                        oidc.client_secret.clone(),
                    ))
                }),
                config: Arc::new(config),
                accept_limiter: Arc::new(ratelimit::RateLimiter::new(
                    accept_attempts_per_minute,
                    60_000,
                )),
                expiry: Arc::new(Notify::new()),
                mail_wake: Arc::new(Notify::new()),
                metrics: Arc::new(metrics),
                closing: tokio::sync::watch::channel(false).0,
            },
        })
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, running the expiry sweeper alongside.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), PortalError> {
        let sweeper = tokio::spawn(run_expiry_sweeper(self.state.clone()));
        let delivery = match &self.state.config.mail {
            Some(config) => {
                let mailer = mail::Mailer::new(config)?;
                Some(tokio::spawn(mail::run_delivery(
                    self.state.clone(),
                    mailer,
                    self.state.mail_wake.clone(),
                )))
            }
            None => None,
        };
        let closing = self.state.closing.clone();
        let result = axum::serve(
            listener,
            self.router()
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Open change-feed streams would hold a graceful shutdown open forever.
            let _ = closing.send(true);
        })
        .await
        .map_err(PortalError::Serve);
        sweeper.abort();
        if let Some(delivery) = delivery {
            delivery.abort();
        }
        self.state.store.checkpoint_for_stop().await;
        result
    }
}

/// An API key's id and secret (`pk_<32 hex digits>_<secret>`).
fn split_key(key: &str) -> Option<(&str, &str)> {
    key.trim()
        .strip_prefix("pk_")
        .and_then(|rest| rest.split_once('_'))
        .filter(|(id, secret)| {
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) && secret.len() >= 16
        })
}

/// The recovery of a portal whose platform principal has no working API key (its keys revoked
/// or lost): run on the server, against its database. Installs a new key for the platform
/// principal (creating the principal if there is none) and returns it, to be shown once; the
/// principal's other keys stay as they are. Only whoever can reach the database can do this.
pub async fn reset_platform_key(database_url: &str) -> Result<String, PortalError> {
    let store = Store::connect(database_url).await?;
    let now = SystemClock.now_millis();
    let key = new_api_key();
    let mut tx = store.write().await.map_err(PortalError::Bootstrap)?;
    let principal = match platform_principal(&mut tx).await? {
        Some(principal) => principal,
        None => create_platform_principal(&mut tx, now).await?,
    };
    insert_platform_key(&mut tx, &principal, "reset-platform-key", &key, now).await?;
    tx.commit().await.map_err(PortalError::Bootstrap)?;
    Ok(key)
}

/// Installs the platform principal with `key` unless one exists.
async fn bootstrap(store: &Store, key: &str, now: i64) -> Result<(), PortalError> {
    split_key(key).ok_or(PortalError::BadBootstrapKey)?;
    let mut tx = store.write().await.map_err(PortalError::Bootstrap)?;
    if platform_principal(&mut tx).await?.is_some() {
        tracing::info!("a platform principal exists; the bootstrap API key is not installed again");
        return Ok(());
    }
    let principal = create_platform_principal(&mut tx, now).await?;
    insert_platform_key(&mut tx, &principal, "bootstrap", key, now).await?;
    tx.commit().await.map_err(PortalError::Bootstrap)?;
    tracing::info!("installed the platform principal with the bootstrap API key");
    Ok(())
}

/// The platform principal's id, if there is one.
async fn platform_principal(tx: &mut store::WriteTx) -> Result<Option<String>, PortalError> {
    sqlx::query_scalar("SELECT id FROM principals WHERE kind = 'platform'")
        .fetch_optional(&mut *tx.tx)
        .await
        .map_err(PortalError::Bootstrap)
}

async fn create_platform_principal(
    tx: &mut store::WriteTx,
    now: i64,
) -> Result<String, PortalError> {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query("INSERT INTO principals (id, kind, created_at) VALUES ($1, 'platform', $2)")
        .bind(&id)
        .bind(now)
        .execute(&mut *tx.tx)
        .await
        .map_err(PortalError::Bootstrap)?;
    Ok(id)
}

/// Stores `key` (only its hash) as an API key of the platform principal `principal`.
async fn insert_platform_key(
    tx: &mut store::WriteTx,
    principal: &str,
    name: &str,
    key: &str,
    now: i64,
) -> Result<(), PortalError> {
    let (id, secret) = split_key(key).ok_or(PortalError::BadBootstrapKey)?;
    sqlx::query("INSERT INTO api_keys (id, principal_id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(principal)
        .bind(name)
        .bind(auth::hash_secret(secret))
        .bind(now)
        .execute(&mut *tx.tx)
        .await
        .map_err(PortalError::Bootstrap)?;
    Ok(())
}

async fn run_expiry_sweeper(state: AppState) {
    loop {
        let now = state.now();
        let mut wait = invitations::SWEEP_INTERVAL;
        for next in [
            invitations::sweep_expired(&state.store, now).await,
            account_managers::sweep_expired(&state.store, now).await,
            users::sweep_expired(&state.store, now).await,
            mail::erase_expired(&state.store, now).await,
        ] {
            match next {
                Ok(Some(next)) => {
                    let until =
                        std::time::Duration::from_millis((next - now).clamp(0, i64::MAX) as u64);
                    wait = wait.min(until);
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "expiry sweep failed; retrying"),
            }
        }
        let moved = async {
            match state.clock.moved() {
                Some(moved) => moved.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.expiry.notified() => {}
            _ = moved => {}
        }
    }
}

pub(crate) fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/roles", get(grants::roles))
        .route("/access", get(grants::access))
        .route("/whoami", get(grants::whoami))
        .route("/accounts", post(accounts::create).get(accounts::list))
        .route(
            "/accounts/{id}",
            get(accounts::get)
                .patch(accounts::update)
                .delete(accounts::delete),
        )
        .route(
            "/accounts/{id}/grants",
            post(grants::create)
                .get(grants::list)
                .delete(grants::revoke_by_source),
        )
        .route("/grants/{id}", delete(grants::revoke))
        .route(
            "/accounts/{id}/admins",
            get(grants::list_admins).post(grants::create_admin),
        )
        .route(
            "/accounts/{id}/admins/{admin}",
            delete(grants::remove_admin),
        )
        .route(
            "/accounts/{id}/invitations",
            post(invitations::create).get(invitations::list),
        )
        .route(
            "/invitations/{id}",
            get(invitations::get)
                .patch(invitations::update)
                .delete(invitations::revoke),
        )
        .route("/invitations/{id}/resend", post(invitations::resend))
        .route("/invitations/accept", post(invitations::accept))
        .route(
            "/accounts/{id}/account-managers",
            post(account_managers::create).get(account_managers::list),
        )
        .route(
            "/account-managers/{id}",
            get(account_managers::get).delete(account_managers::delete),
        )
        .route(
            "/account-managers/{id}/resend-activation",
            post(account_managers::resend),
        )
        .route(
            "/account-managers/activate",
            post(account_managers::activate),
        )
        .route("/license-types", get(subscriptions::license_types))
        .route("/user-permissions", get(users::permissions))
        .route(
            "/accounts/{id}/subscriptions",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            "/subscriptions/{id}",
            get(subscriptions::get)
                .patch(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route("/accounts/{id}/users", post(users::create).get(users::list))
        .route("/accounts/{id}/users/export", get(export::export))
        .route(
            "/accounts/{id}/users/send-invitations",
            post(users::send_invitations),
        )
        .route(
            "/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route("/users/{id}/resend-activation", post(users::resend))
        .route("/users/activate", post(users::activate))
        .route(
            "/accounts/{id}/user-roles",
            post(teams::create_role).get(teams::list_roles),
        )
        .route(
            "/user-roles/{id}",
            get(teams::get_role)
                .patch(teams::update_role)
                .delete(teams::delete_role),
        )
        .route(
            "/accounts/{id}/teams",
            post(teams::create_team).get(teams::list_teams),
        )
        .route(
            "/teams/{id}",
            get(teams::get_team)
                .patch(teams::update_team)
                .delete(teams::delete_team),
        )
        .route("/teams/{id}/avatar", get(teams::get_avatar))
        .route("/outbox", get(mail::list))
        .route("/events", get(feed::events))
        .route("/api-keys", post(keys::create).get(keys::list))
        .route("/api-keys/{id}", delete(keys::revoke))
        .route(
            "/accounts/{id}/scim-tokens",
            post(keys::create_scim_token).get(keys::list_scim_tokens),
        )
        .route(
            "/accounts/{id}/scim-tokens/{token}",
            delete(keys::revoke_scim_token),
        )
        // Every route: a query parameter the document does not declare is refused.
        .route_layer(middleware::from_fn(reject_undeclared_query))
        // Inside the Idempotency-Key layer, so that a refusal has settled before that layer
        // looks for a concurrent request's recorded answer.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            settle_refusals,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ));
    let mut router = pages::routes(&state);
    if state.config.dev_login {
        router = router.route("/dev/accept", post(invitations::dev_accept));
    }
    router
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(openapi::serve))
        .nest("/v1", v1)
        .nest("/scim/v2", scim::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::layer,
        ))
        .with_state(state)
}

/// Refuses query parameters the operation does not declare in the OpenAPI document (which is
/// generated from the types the handlers parse), as 400 problem+json naming them.
async fn reject_undeclared_query(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    static DECLARED: std::sync::LazyLock<std::collections::HashMap<(String, String), Vec<String>>> =
        std::sync::LazyLock::new(|| {
            let document = openapi::document();
            let mut declared = std::collections::HashMap::new();
            for (path, operations) in document["paths"].as_object().into_iter().flatten() {
                for (method, operation) in operations.as_object().into_iter().flatten() {
                    let names = operation["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|p| p["in"] == "query")
                        .filter_map(|p| p["name"].as_str().map(str::to_owned))
                        .collect();
                    declared.insert((method.to_uppercase(), path.clone()), names);
                }
            }
            declared
        });
    let matched = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned());
    if let (Some(path), Some(query)) = (matched, request.uri().query()) {
        let method = request.method().as_str().to_owned();
        // Inside the nested /v1 router the matched path may or may not carry its prefix.
        let names = DECLARED
            .get(&(method.clone(), path.clone()))
            .or_else(|| DECLARED.get(&(method, format!("/v1{path}"))));
        if let Some(names) = names {
            let undeclared: Vec<String> = query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| pair.split('=').next().unwrap_or_default().to_owned())
                .filter(|name| !names.contains(name))
                .collect();
            if !undeclared.is_empty() {
                let known = if names.is_empty() {
                    "it takes none".to_owned()
                } else {
                    format!("it takes {}", names.join(", "))
                };
                return ApiError::new(
                    ProblemType::MalformedRequest,
                    format!(
                        "query parameters: unknown parameter(s) {} ({known})",
                        undeclared.join(", ")
                    ),
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// A write refused on SQLite may have read other requests' writes that are not committed yet
/// (they wait to commit as a group): answer once they are, so that a client told "already
/// exists" or "already active" can read what it ran into.
async fn settle_refusals(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let writes = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let response = next.run(request).await;
    if writes && !response.status().is_success() {
        state.store.settled().await;
    }
    response
}

async fn healthz(State(state): State<AppState>) -> ApiResult<&'static str> {
    let mut connection = state.connection().await?;
    sqlx::query("SELECT 1")
        .fetch_one(&mut *connection)
        .await
        .map_err(|e| ApiError::internal("reach the database", e))?
        .try_get::<i32, _>(0)
        .or_else(|_| Ok::<_, sqlx::Error>(1))
        .map_err(|e| ApiError::internal("reach the database", e))?;
    Ok("ok")
}

async fn not_found() -> ApiError {
    ApiError::new(
        ProblemType::NotFound,
        "no such endpoint; the API lives under /v1 and is described at /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ProblemType::MethodNotAllowed,
        "this endpoint does not accept that method; /openapi.json lists the ones it does",
    )
}
