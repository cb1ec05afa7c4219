//! The operator's view of a portal: the [`PortalApi`] trait, and [`HttpPortal`], its
//! implementation over the portal's HTTP API (reqwest with rustls, timeouts, Idempotency-Key,
//! Retry-After). Any server that implements the documented API can be targeted unchanged.
//!
//! Every failure is a [`PortalError`] whose [`PortalError::is_transient`] says, once, whether
//! retrying can help: network faults, 5xx, 429 and 412 (re-read and retry) are transient; the
//! 4xx a spec causes (escalation, unknown role, email taken, …) are permanent, and their problem
//! `type` and `detail` are kept for the object's status.

pub mod bulk;

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::{
    AccountManagerView, AccountView, CreateAccount, CreateAccountManager, CreateGrants,
    CreateInvitation, CreateSubscription, CreateUser, Event, GrantView, InvitationState,
    InvitationView, Page, Problem, ProblemType, RevokedGrants, SendInvitations, SubscriptionView,
    UpdateAccount, UpdateInvitation, UpdateSubscription, UpdateUser, UserView, Whoami,
};
use crate::api::{
    CreateTeam, CreateUserRole, DeletedUserRole, TeamView, UpdateTeam, UpdateUserRole, UserRoleView,
};
use crate::domain::{GrantScope, Role};

/// Why a portal call failed.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("reach the portal at {url}")]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the portal refused: {} ({})", .problem.detail, .problem.type_uri)]
    Refused {
        status: u16,
        problem: Problem,
        retry_after: Option<Duration>,
    },
    #[error("the portal answered {status} without a problem document")]
    Unexpected {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("read the portal's answer")]
    Decode(#[source] reqwest::Error),
}

impl PortalError {
    /// Whether retrying the same request later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            PortalError::Network { .. } | PortalError::Decode(_) => true,
            PortalError::Refused { status, .. } | PortalError::Unexpected { status, .. } => {
                *status >= 500 || *status == 429 || *status == 412 || *status == 408
            }
        }
    }

    /// The cause the portal named, when it is one of the API's problem types.
    pub fn problem_type(&self) -> Option<ProblemType> {
        match self {
            PortalError::Refused { problem, .. } => problem.problem_type(),
            _ => None,
        }
    }

    /// Whether the portal refused because the credentials are missing, wrong or revoked.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// Whether the portal refused because the API key's principal may not do this.
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(403)
    }

    /// The portal's explanation, for a condition message.
    pub fn detail(&self) -> String {
        match self {
            PortalError::Refused { problem, .. } => problem.detail.clone(),
            other => other.to_string(),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            PortalError::Refused { status, .. } | PortalError::Unexpected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) && self.problem_type() == Some(ProblemType::NotFound)
    }

    /// When the portal asked us to come back.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PortalError::Refused { retry_after, .. }
            | PortalError::Unexpected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

pub type PortalResult<T> = Result<T, PortalError>;

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Never echoes the key: it is a secret.
    #[error(
        "the API key holds characters an HTTP header cannot carry; an API key is printable ASCII (check the file or variable it came from)"
    )]
    ApiKey,
    #[error("set up the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// What the operator needs from a portal. Creates take an idempotency key, so a retry after a
/// lost answer never creates twice.
pub trait PortalApi: Send + Sync {
    fn account_by_external_id(
        &self,
        external_id: &str,
    ) -> impl Future<Output = PortalResult<Option<AccountView>>> + Send;
    fn account(&self, id: &str) -> impl Future<Output = PortalResult<Option<AccountView>>> + Send;
    /// The children of `parent`, or with `None` the caller's top-level accounts; all pages.
    fn accounts_under(
        &self,
        parent: Option<&str>,
    ) -> impl Future<Output = PortalResult<Vec<AccountView>>> + Send;
    fn create_account(
        &self,
        account: &CreateAccount,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<AccountView>> + Send;
    /// Changes the mutable fields, guarded by the version read (`If-Match`).
    fn update_account(
        &self,
        id: &str,
        changes: &UpdateAccount,
        version: i64,
    ) -> impl Future<Output = PortalResult<AccountView>> + Send;
    /// Deletes the account with its own grants and invitations; refused (`account-not-empty`)
    /// while it has child accounts. An account already gone is success.
    fn delete_account(&self, id: &str) -> impl Future<Output = PortalResult<()>> + Send;

    /// Invitations of an account in the given states (all pages).
    fn invitations(
        &self,
        account: &str,
        states: &[InvitationState],
    ) -> impl Future<Output = PortalResult<Vec<InvitationView>>> + Send;
    fn invitation_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> impl Future<Output = PortalResult<Option<InvitationView>>> + Send;
    fn invitation(
        &self,
        id: &str,
    ) -> impl Future<Output = PortalResult<Option<InvitationView>>> + Send;
    /// The created invitation; `link` is set for Link delivery (the only time it is shown).
    fn create_invitation(
        &self,
        account: &str,
        invitation: &CreateInvitation,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<InvitationView>> + Send;
    fn update_invitation_roles(
        &self,
        id: &str,
        roles: &[Role],
        version: i64,
    ) -> impl Future<Output = PortalResult<InvitationView>> + Send;
    /// Revokes; an invitation already gone or revoked is success.
    fn revoke_invitation(&self, id: &str) -> impl Future<Output = PortalResult<()>> + Send;
    fn resend_invitation(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<InvitationView>> + Send;

    fn grants_by_source(
        &self,
        account: &str,
        source: &str,
    ) -> impl Future<Output = PortalResult<Vec<GrantView>>> + Send;
    /// Every grant made on the account (all pages), for observing in bulk.
    fn grants(&self, account: &str) -> impl Future<Output = PortalResult<Vec<GrantView>>> + Send;
    /// Grants `roles` to the admin with `email`; `subject-not-found` when there is none yet.
    fn grant(
        &self,
        account: &str,
        email: &str,
        roles: &[Role],
        scope: GrantScope,
        source: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<Vec<GrantView>>> + Send;
    /// Revokes one grant; a grant already gone is success.
    fn revoke_grant(&self, id: &str) -> impl Future<Output = PortalResult<()>> + Send;

    /// Revokes what `source` granted on the account (optionally to one admin); the count.
    fn revoke_grants_by_source(
        &self,
        account: &str,
        source: &str,
        admin_id: Option<&str>,
    ) -> impl Future<Output = PortalResult<u64>> + Send;

    fn account_manager_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> impl Future<Output = PortalResult<Option<AccountManagerView>>> + Send;
    /// The account's account managers (all pages), for observing in bulk.
    fn account_managers(
        &self,
        account: &str,
    ) -> impl Future<Output = PortalResult<Vec<AccountManagerView>>> + Send;
    fn create_account_manager(
        &self,
        account: &str,
        manager: &CreateAccountManager,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<AccountManagerView>> + Send;
    fn resend_activation(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<AccountManagerView>> + Send;
    fn delete_account_manager(&self, id: &str) -> impl Future<Output = PortalResult<()>> + Send;

    /// The account's subscriptions (all pages), for observing in bulk.
    fn subscriptions(
        &self,
        account: &str,
    ) -> impl Future<Output = PortalResult<Vec<SubscriptionView>>> + Send;
    fn subscription_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> impl Future<Output = PortalResult<Option<SubscriptionView>>> + Send;
    fn create_subscription(
        &self,
        account: &str,
        subscription: &CreateSubscription,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<SubscriptionView>> + Send;
    /// A new quantity, guarded by the version read (`If-Match`).
    fn update_subscription(
        &self,
        id: &str,
        quantity: i64,
        version: i64,
    ) -> impl Future<Output = PortalResult<SubscriptionView>> + Send;
    /// Deletes; a subscription already gone is success.
    fn delete_subscription(&self, id: &str) -> impl Future<Output = PortalResult<()>> + Send;

    /// The account's users (all pages), for observing in bulk.
    fn users(&self, account: &str) -> impl Future<Output = PortalResult<Vec<UserView>>> + Send;
    fn user_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> impl Future<Output = PortalResult<Option<UserView>>> + Send;
    fn create_user(
        &self,
        account: &str,
        user: &CreateUser,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<UserView>> + Send;
    /// Changes a user's settings, guarded by the version read (`If-Match`).
    fn update_user(
        &self,
        id: &str,
        changes: &UpdateUser,
        version: i64,
    ) -> impl Future<Output = PortalResult<UserView>> + Send;
    /// Invites prepared users of the account, all or none.
    fn send_user_invitations(
        &self,
        account: &str,
        users: &[String],
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<Vec<UserView>>> + Send;
    fn resend_user_activation(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<UserView>> + Send;
    /// Deletes a user for good; a user already gone is success.
    fn delete_user(&self, id: &str) -> impl Future<Output = PortalResult<()>> + Send;

    /// The account's user roles (all pages), for observing in bulk.
    fn user_roles(
        &self,
        account: &str,
    ) -> impl Future<Output = PortalResult<Vec<UserRoleView>>> + Send;
    fn user_role_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> impl Future<Output = PortalResult<Option<UserRoleView>>> + Send;
    fn create_user_role(
        &self,
        account: &str,
        role: &CreateUserRole,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<UserRoleView>> + Send;
    fn update_user_role(
        &self,
        id: &str,
        changes: &UpdateUserRole,
        version: i64,
    ) -> impl Future<Output = PortalResult<UserRoleView>> + Send;
    /// Deletes; what the deletion took away (nothing for a role already gone).
    fn delete_user_role(
        &self,
        id: &str,
    ) -> impl Future<Output = PortalResult<DeletedUserRole>> + Send;

    /// The account's teams (all pages), for observing in bulk.
    fn teams(&self, account: &str) -> impl Future<Output = PortalResult<Vec<TeamView>>> + Send;
    fn team_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> impl Future<Output = PortalResult<Option<TeamView>>> + Send;
    fn create_team(
        &self,
        account: &str,
        team: &CreateTeam,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<TeamView>> + Send;
    fn update_team(
        &self,
        id: &str,
        changes: &UpdateTeam,
        version: i64,
    ) -> impl Future<Output = PortalResult<TeamView>> + Send;
    /// Deletes; a team already gone is success.
    fn delete_team(&self, id: &str) -> impl Future<Output = PortalResult<()>> + Send;

    /// The change feed after event `after` (`None`: from now on), as it happens; the stream ends
    /// when the connection does.
    fn events(
        &self,
        after: Option<i64>,
    ) -> impl Future<
        Output = PortalResult<futures::stream::BoxStream<'static, PortalResult<FeedItem>>>,
    > + Send;
}

/// The part of `GET /v1/access` the client reads: the effective roles (each with the paths that
/// give it, not read here).
#[derive(serde::Deserialize)]
struct AccessRoles {
    roles: std::collections::BTreeMap<Role, serde::de::IgnoredAny>,
}

/// Told of each request's method and outcome.
pub type RequestObserver = std::sync::Arc<dyn Fn(&Method, &'static str) + Send + Sync>;

/// [`PortalApi`] over HTTP.
#[derive(Clone)]
pub struct HttpPortal {
    base: String,
    http: reqwest::Client,
    streaming: reqwest::Client,
    observer: Option<RequestObserver>,
    pace: std::sync::Arc<std::sync::Mutex<Pace>>,
}

/// When this client may next ask the portal, shared by every request it makes (every
/// reconcile of every kind): a portal that is down or asks for a pause is one fact about the
/// portal, not one per object, so a thousand objects waiting on it make a handful of probes
/// rather than a thousand retries.
#[derive(Debug, Default)]
struct Pace {
    /// No request is sent before this.
    not_before: Option<tokio::time::Instant>,
    /// Connection failures in a row (no answer at all).
    unreachable: u32,
}

impl Pace {
    /// The pause after the `n`th pause for connection failures in a row: 250 ms doubling,
    /// capped at 16 s.
    fn unreachable_pause(n: u32) -> Duration {
        Duration::from_millis(250)
            .saturating_mul(1 << n.saturating_sub(1).min(6))
            .min(Duration::from_secs(16))
    }

    fn hold_until(&mut self, until: tokio::time::Instant) {
        self.not_before = Some(self.not_before.map_or(until, |t| t.max(until)));
    }

    /// Takes in what one request found.
    fn learn(&mut self, now: tokio::time::Instant, answered: bool, retry_after: Option<Duration>) {
        if answered {
            self.unreachable = 0;
        } else if self.not_before.is_none_or(|t| t <= now) {
            // Requests sent together fail together: one longer pause per round, not per request.
            self.unreachable += 1;
            self.hold_until(now + Pace::unreachable_pause(self.unreachable));
        }
        if let Some(pause) = retry_after {
            self.hold_until(now + pause);
        }
    }
}

impl HttpPortal {
    pub fn new(base_url: &str, api_key: &str) -> Result<HttpPortal, ClientError> {
        let mut headers = HeaderMap::new();
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", api_key.trim()))
            .map_err(|_| ClientError::ApiKey)?;
        bearer.set_sensitive(true);
        headers.insert(AUTHORIZATION, bearer);
        let build = |timeout: Option<Duration>| {
            let builder = reqwest::Client::builder()
                .default_headers(headers.clone())
                .connect_timeout(Duration::from_secs(5))
                .user_agent(concat!("portal-operator/", env!("CARGO_PKG_VERSION")));
            match timeout {
                Some(timeout) => builder.timeout(timeout),
                None => builder,
            }
            .build()
        };
        Ok(HttpPortal {
            base: base_url.trim_end_matches('/').to_owned(),
            http: build(Some(Duration::from_secs(30))).map_err(ClientError::Http)?,
            streaming: build(None).map_err(ClientError::Http)?,
            observer: None,
            pace: Default::default(),
        })
    }

    /// Who this client's API key acts as.
    pub async fn whoami(&self) -> PortalResult<Whoami> {
        self.expect(Method::GET, "/v1/whoami", None, &[]).await
    }

    /// The roles `subject` holds on `account` (granted, inherited or implied).
    pub async fn roles_held(&self, subject: &str, account: &str) -> PortalResult<Vec<Role>> {
        let access: AccessRoles = self
            .expect(
                Method::GET,
                &format!(
                    "/v1/access?subject={}&account={}",
                    encode(subject),
                    encode(account)
                ),
                None,
                &[],
            )
            .await?;
        Ok(access.roles.into_keys().collect())
    }

    /// `account`'s users as an Excel workbook: the bytes of the .xlsx file and how many users
    /// it holds.
    pub async fn export_users(
        &self,
        account: &str,
        state: crate::api::ExportState,
    ) -> PortalResult<(Vec<u8>, Option<usize>)> {
        let url = format!(
            "{}/v1/accounts/{}/users/export?state={}",
            self.base,
            encode(account),
            state.as_str()
        );
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| PortalError::Network {
                url: url.clone(),
                source,
            })?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        let count = response
            .headers()
            .get("x-user-count")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let bytes = response
            .bytes()
            .await
            .map_err(|source| PortalError::Network { url, source })?;
        Ok((bytes.to_vec(), count))
    }

    /// Reports every request's method and outcome (`ok`, `refused`, `transient`) to `observer`,
    /// e.g. to count them in metrics.
    pub fn with_observer(mut self, observer: RequestObserver) -> HttpPortal {
        self.observer = Some(observer);
        self
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> PortalResult<Option<T>> {
        let observed_method = method.clone();
        self.paced().await;
        let result = self.call_once(method, path, body, headers).await;
        self.learn(&result);
        if let Some(observer) = &self.observer {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(error) if error.is_not_found() => "ok",
                Err(error) if error.is_transient() => "transient",
                Err(_) => "refused",
            };
            observer(&observed_method, outcome);
        }
        result
    }

    /// Waits until the portal may be asked again (after a `Retry-After`, or while it cannot be
    /// reached).
    async fn paced(&self) {
        loop {
            let until = self.pace.lock().expect("pace").not_before;
            match until {
                Some(until) if until > tokio::time::Instant::now() => {
                    tokio::time::sleep_until(until).await
                }
                _ => return,
            }
        }
    }

    fn learn<T>(&self, result: &PortalResult<T>) {
        match result {
            Ok(_) => self
                .pace
                .lock()
                .expect("pace")
                .learn(tokio::time::Instant::now(), true, None),
            Err(error) => self.learn_failure(error),
        }
    }

    fn learn_failure(&self, error: &PortalError) {
        let (answered, retry_after) = match error {
            PortalError::Network { source, .. } => {
                (!(source.is_connect() || source.is_timeout()), None)
            }
            // A pause asked for with 429 or 503 holds every request, not only the one refused.
            error => (true, error.retry_after()),
        };
        self.pace
            .lock()
            .expect("pace")
            .learn(tokio::time::Instant::now(), answered, retry_after);
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> PortalResult<Option<T>> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| PortalError::Network {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if status.is_success() {
            return response
                .json::<T>()
                .await
                .map(Some)
                .map_err(PortalError::Decode);
        }
        Err(refusal(response).await)
    }

    async fn expect<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> PortalResult<T> {
        let status_path = path.to_owned();
        self.call(method, path, body, headers)
            .await?
            .ok_or(PortalError::Unexpected {
                status: 204,
                retry_after: None,
            })
            .inspect_err(
                |_| tracing::debug!(path = %status_path, "empty answer where a body was expected"),
            )
    }

    /// DELETE that reads 404 as done: what is to be removed is already gone.
    async fn delete_idempotent(&self, path: &str) -> PortalResult<Option<Value>> {
        match self.call::<Value>(Method::DELETE, path, None, &[]).await {
            Err(error) if error.is_not_found() => Ok(None),
            other => other,
        }
    }

    /// GET that reads 404 as None.
    /// The object of an account's `collection` with `external_ref`, if any.
    async fn first_by_ref<T: DeserializeOwned>(
        &self,
        collection: &str,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<T>> {
        let page: Page<T> = self
            .expect(
                Method::GET,
                &format!(
                    "/v1/accounts/{}/{collection}?externalRef={}",
                    encode(account),
                    encode(external_ref)
                ),
                None,
                &[],
            )
            .await?;
        Ok(page.items.into_iter().next())
    }

    async fn find<T: DeserializeOwned>(&self, path: &str) -> PortalResult<Option<T>> {
        match self.call(Method::GET, path, None, &[]).await {
            Err(error) if error.is_not_found() => Ok(None),
            other => other,
        }
    }

    async fn all_pages<T: DeserializeOwned>(&self, path: &str) -> PortalResult<Vec<T>> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut next = format!("{path}{separator}limit=500");
        loop {
            let page: Page<T> = self.expect(Method::GET, &next, None, &[]).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(cursor) => next = format!("{path}{separator}limit=500&cursor={cursor}"),
                None => return Ok(items),
            }
        }
    }
}

async fn refusal(response: reqwest::Response) -> PortalError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match response.json::<Problem>().await {
        Ok(problem) => PortalError::Refused {
            status,
            problem,
            retry_after,
        },
        Err(_) => PortalError::Unexpected {
            status,
            retry_after,
        },
    }
}

fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A request body as JSON. The contract's types are plain data (strings, numbers, enums), which
/// always serialise.
fn body(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn idempotent(key: &str) -> Vec<(&'static str, String)> {
    vec![("idempotency-key", key.to_owned())]
}

impl PortalApi for HttpPortal {
    async fn account_by_external_id(&self, external_id: &str) -> PortalResult<Option<AccountView>> {
        let page: Page<AccountView> = self
            .expect(
                Method::GET,
                &format!("/v1/accounts?externalId={}", encode(external_id)),
                None,
                &[],
            )
            .await?;
        Ok(page.items.into_iter().next())
    }

    async fn account(&self, id: &str) -> PortalResult<Option<AccountView>> {
        self.find(&format!("/v1/accounts/{}", encode(id))).await
    }

    async fn accounts_under(&self, parent: Option<&str>) -> PortalResult<Vec<AccountView>> {
        match parent {
            Some(parent) => {
                self.all_pages(&format!("/v1/accounts?parentId={}", encode(parent)))
                    .await
            }
            None => self.all_pages("/v1/accounts").await,
        }
    }

    async fn create_account(
        &self,
        account: &CreateAccount,
        idempotency_key: &str,
    ) -> PortalResult<AccountView> {
        let body = body(account);
        self.expect(
            Method::POST,
            "/v1/accounts",
            Some(&body),
            &idempotent(idempotency_key),
        )
        .await
    }

    async fn update_account(
        &self,
        id: &str,
        changes: &UpdateAccount,
        version: i64,
    ) -> PortalResult<AccountView> {
        let body = body(changes);
        self.expect(
            Method::PATCH,
            &format!("/v1/accounts/{}", encode(id)),
            Some(&body),
            &[("if-match", format!("\"{version}\""))],
        )
        .await
    }

    async fn delete_account(&self, id: &str) -> PortalResult<()> {
        self.delete_idempotent(&format!("/v1/accounts/{}?removeAdmins=true", encode(id)))
            .await
            .map(|_| ())
    }

    async fn invitations(
        &self,
        account: &str,
        states: &[InvitationState],
    ) -> PortalResult<Vec<InvitationView>> {
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        self.all_pages(&format!(
            "/v1/accounts/{}/invitations?state={}",
            encode(account),
            encode(&states.join(","))
        ))
        .await
    }

    async fn invitation_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<InvitationView>> {
        let page: Page<InvitationView> = self
            .expect(
                Method::GET,
                &format!(
                    "/v1/accounts/{}/invitations?state=Pending,Accepted,Expired,Revoked&externalRef={}",
                    encode(account),
                    encode(external_ref)
                ),
                None,
                &[],
            )
            .await?;
        Ok(page.items.into_iter().next())
    }

    async fn invitation(&self, id: &str) -> PortalResult<Option<InvitationView>> {
        self.find(&format!("/v1/invitations/{}", encode(id))).await
    }

    async fn create_invitation(
        &self,
        account: &str,
        invitation: &CreateInvitation,
        idempotency_key: &str,
    ) -> PortalResult<InvitationView> {
        let body = body(invitation);
        self.expect(
            Method::POST,
            &format!("/v1/accounts/{}/invitations", encode(account)),
            Some(&body),
            &idempotent(idempotency_key),
        )
        .await
    }

    async fn update_invitation_roles(
        &self,
        id: &str,
        roles: &[Role],
        version: i64,
    ) -> PortalResult<InvitationView> {
        self.expect(
            Method::PATCH,
            &format!("/v1/invitations/{}", encode(id)),
            Some(&body(&UpdateInvitation {
                roles: roles.to_vec(),
            })),
            &[("if-match", format!("\"{version}\""))],
        )
        .await
    }

    async fn revoke_invitation(&self, id: &str) -> PortalResult<()> {
        self.delete_idempotent(&format!("/v1/invitations/{}", encode(id)))
            .await
            .map(|_| ())
    }

    async fn resend_invitation(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> PortalResult<InvitationView> {
        self.expect(
            Method::POST,
            &format!("/v1/invitations/{}/resend", encode(id)),
            Some(&json!({})),
            &idempotent(idempotency_key),
        )
        .await
    }

    async fn grants_by_source(&self, account: &str, source: &str) -> PortalResult<Vec<GrantView>> {
        self.all_pages(&format!(
            "/v1/accounts/{}/grants?source={}",
            encode(account),
            encode(source)
        ))
        .await
    }

    async fn grants(&self, account: &str) -> PortalResult<Vec<GrantView>> {
        self.all_pages(&format!("/v1/accounts/{}/grants", encode(account)))
            .await
    }

    async fn grant(
        &self,
        account: &str,
        email: &str,
        roles: &[Role],
        scope: GrantScope,
        source: &str,
        idempotency_key: &str,
    ) -> PortalResult<Vec<GrantView>> {
        let grants = CreateGrants {
            admin_id: None,
            email: Some(email.to_owned()),
            roles: roles.to_vec(),
            scope,
            source: Some(source.to_owned()),
        };
        let page: Page<GrantView> = self
            .expect(
                Method::POST,
                &format!("/v1/accounts/{}/grants", encode(account)),
                Some(&body(&grants)),
                &idempotent(idempotency_key),
            )
            .await?;
        Ok(page.items)
    }

    async fn revoke_grant(&self, id: &str) -> PortalResult<()> {
        self.delete_idempotent(&format!("/v1/grants/{}", encode(id)))
            .await
            .map(|_| ())
    }

    async fn revoke_grants_by_source(
        &self,
        account: &str,
        source: &str,
        admin_id: Option<&str>,
    ) -> PortalResult<u64> {
        let mut path = format!(
            "/v1/accounts/{}/grants?source={}",
            encode(account),
            encode(source)
        );
        if let Some(admin) = admin_id {
            path.push_str(&format!("&adminId={}", encode(admin)));
        }
        let answer = self.delete_idempotent(&path).await?;
        Ok(answer
            .and_then(|a| serde_json::from_value::<RevokedGrants>(a).ok())
            .map_or(0, |r| r.revoked))
    }

    async fn account_manager_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<AccountManagerView>> {
        self.first_by_ref("account-managers", account, external_ref)
            .await
    }

    async fn account_managers(&self, account: &str) -> PortalResult<Vec<AccountManagerView>> {
        self.all_pages(&format!(
            "/v1/accounts/{}/account-managers",
            encode(account)
        ))
        .await
    }

    async fn create_account_manager(
        &self,
        account: &str,
        manager: &CreateAccountManager,
        idempotency_key: &str,
    ) -> PortalResult<AccountManagerView> {
        let body = body(manager);
        self.expect(
            Method::POST,
            &format!("/v1/accounts/{}/account-managers", encode(account)),
            Some(&body),
            &idempotent(idempotency_key),
        )
        .await
    }

    async fn resend_activation(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> PortalResult<AccountManagerView> {
        self.expect(
            Method::POST,
            &format!("/v1/account-managers/{}/resend-activation", encode(id)),
            Some(&json!({})),
            &idempotent(idempotency_key),
        )
        .await
    }

    async fn delete_account_manager(&self, id: &str) -> PortalResult<()> {
        self.delete_idempotent(&format!("/v1/account-managers/{}", encode(id)))
            .await
            .map(|_| ())
    }

    async fn subscriptions(&self, account: &str) -> PortalResult<Vec<SubscriptionView>> {
        self.all_pages(&format!("/v1/accounts/{}/subscriptions", encode(account)))
            .await
    }

    async fn subscription_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<SubscriptionView>> {
        self.first_by_ref("subscriptions", account, external_ref)
            .await
    }

    async fn create_subscription(
        &self,
        account: &str,
        subscription: &CreateSubscription,
        idempotency_key: &str,
    ) -> PortalResult<SubscriptionView> {
        let body = body(subscription);
        self.expect(
            Method::POST,
            &format!("/v1/accounts/{}/subscriptions", encode(account)),
            Some(&body),
            &idempotent(idempotency_key),
        )
        .await
    }

    async fn update_subscription(
        &self,
        id: &str,
        quantity: i64,
        version: i64,
    ) -> PortalResult<SubscriptionView> {
        let body = body(&UpdateSubscription {
            quantity: crate::api::Patch::Value(quantity),
        });
        self.expect(
            Method::PATCH,
            &format!("/v1/subscriptions/{}", encode(id)),
            Some(&body),
            &[("if-match", format!("\"{version}\""))],
        )
        .await
    }

    async fn delete_subscription(&self, id: &str) -> PortalResult<()> {
        self.delete_idempotent(&format!("/v1/subscriptions/{}", encode(id)))
            .await
            .map(|_| ())
    }

    async fn users(&self, account: &str) -> PortalResult<Vec<UserView>> {
        self.all_pages(&format!("/v1/accounts/{}/users", encode(account)))
            .await
    }

    async fn user_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<UserView>> {
        self.first_by_ref("users", account, external_ref).await
    }

    async fn create_user(
        &self,
        account: &str,
        user: &CreateUser,
        idempotency_key: &str,
    ) -> PortalResult<UserView> {
        let body = body(user);
        self.expect(
            Method::POST,
            &format!("/v1/accounts/{}/users", encode(account)),
            Some(&body),
            &idempotent(idempotency_key),
        )
        .await
    }

    async fn update_user(
        &self,
        id: &str,
        changes: &UpdateUser,
        version: i64,
    ) -> PortalResult<UserView> {
        let body = body(changes);
        self.expect(
            Method::PATCH,
            &format!("/v1/users/{}", encode(id)),
            Some(&body),
            &[("if-match", format!("\"{version}\""))],
        )
        .await
    }

    async fn send_user_invitations(
        &self,
        account: &str,
        users: &[String],
        idempotency_key: &str,
    ) -> PortalResult<Vec<UserView>> {
        let body = body(&SendInvitations {
            users: users.to_vec(),
        });
        let page: Page<UserView> = self
            .expect(
                Method::POST,
                &format!("/v1/accounts/{}/users/send-invitations", encode(account)),
                Some(&body),
                &idempotent(idempotency_key),
            )
            .await?;
        Ok(page.items)
    }

    async fn resend_user_activation(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> PortalResult<UserView> {
        self.expect(
            Method::POST,
            &format!("/v1/users/{}/resend-activation", encode(id)),
            Some(&json!({})),
            &idempotent(idempotency_key),
        )
        .await
    }

    async fn delete_user(&self, id: &str) -> PortalResult<()> {
        self.delete_idempotent(&format!("/v1/users/{}", encode(id)))
            .await
            .map(|_| ())
    }

    async fn user_roles(&self, account: &str) -> PortalResult<Vec<UserRoleView>> {
        self.all_pages(&format!("/v1/accounts/{}/user-roles", encode(account)))
            .await
    }

    async fn user_role_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<UserRoleView>> {
        self.first_by_ref("user-roles", account, external_ref).await
    }

    async fn create_user_role(
        &self,
        account: &str,
        role: &CreateUserRole,
        idempotency_key: &str,
    ) -> PortalResult<UserRoleView> {
        let body = body(role);
        self.expect(
            Method::POST,
            &format!("/v1/accounts/{}/user-roles", encode(account)),
            Some(&body),
            &idempotent(idempotency_key),
        )
        .await
    }

    async fn update_user_role(
        &self,
        id: &str,
        changes: &UpdateUserRole,
        version: i64,
    ) -> PortalResult<UserRoleView> {
        let body = body(changes);
        self.expect(
            Method::PATCH,
            &format!("/v1/user-roles/{}", encode(id)),
            Some(&body),
            &[("if-match", format!("\"{version}\""))],
        )
        .await
    }

    async fn delete_user_role(&self, id: &str) -> PortalResult<DeletedUserRole> {
        let answer = self
            .delete_idempotent(&format!("/v1/user-roles/{}", encode(id)))
            .await?;
        Ok(answer
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or(DeletedUserRole {
                removed_from: Vec::new(),
                lost_memberships: Vec::new(),
            }))
    }

    async fn teams(&self, account: &str) -> PortalResult<Vec<TeamView>> {
        self.all_pages(&format!("/v1/accounts/{}/teams", encode(account)))
            .await
    }

    async fn team_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<TeamView>> {
        self.first_by_ref("teams", account, external_ref).await
    }

    async fn create_team(
        &self,
        account: &str,
        team: &CreateTeam,
        idempotency_key: &str,
    ) -> PortalResult<TeamView> {
        let body = body(team);
        self.expect(
            Method::POST,
            &format!("/v1/accounts/{}/teams", encode(account)),
            Some(&body),
            &idempotent(idempotency_key),
        )
        .await
    }

    async fn update_team(
        &self,
        id: &str,
        changes: &UpdateTeam,
        version: i64,
    ) -> PortalResult<TeamView> {
        let body = body(changes);
        self.expect(
            Method::PATCH,
            &format!("/v1/teams/{}", encode(id)),
            Some(&body),
            &[("if-match", format!("\"{version}\""))],
        )
        .await
    }

    async fn delete_team(&self, id: &str) -> PortalResult<()> {
        self.delete_idempotent(&format!("/v1/teams/{}", encode(id)))
            .await
            .map(|_| ())
    }

    async fn events(
        &self,
        after: Option<i64>,
    ) -> PortalResult<futures::stream::BoxStream<'static, PortalResult<FeedItem>>> {
        let url = format!("{}/v1/events", self.base);
        let after = after.map_or_else(|| "latest".to_owned(), |seq| seq.to_string());
        self.paced().await;
        let response = self
            .streaming
            .get(&url)
            .header("accept", "text/event-stream")
            .header("last-event-id", after)
            .send()
            .await
            .map_err(|source| PortalError::Network {
                url: url.clone(),
                source,
            })
            .inspect_err(|error| self.learn_failure(error))?;
        if !response.status().is_success() {
            let error = refusal(response).await;
            self.learn_failure(&error);
            return Err(error);
        }
        Ok(sse_events(response.bytes_stream(), url).boxed())
    }
}

/// Parses a server-sent event stream into feed events (the `data:` of each block).
///
/// Bytes are decoded only once a whole line has arrived, so a character split across chunks
/// stays whole. An event that cannot be read (a newer portal's shape, say) is skipped and
/// reported as [`FeedItem::Unreadable`]: one bad event never ends the stream.
fn sse_events<B: AsRef<[u8]>>(
    bytes: impl Stream<Item = reqwest::Result<B>> + Send + 'static,
    url: String,
) -> impl Stream<Item = PortalResult<FeedItem>> + Send + 'static {
    futures::stream::unfold(
        (Box::pin(bytes), SseParser::default(), url),
        |(mut bytes, mut parser, url)| async move {
            loop {
                if let Some(item) = parser.next_item() {
                    return Some((Ok(item), (bytes, parser, url)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => parser.push(chunk.as_ref()),
                    Some(Err(source)) => {
                        return Some((
                            Err(PortalError::Network {
                                url: url.clone(),
                                source,
                            }),
                            (bytes, parser, url),
                        ));
                    }
                    None => return None,
                }
            }
        },
    )
}

/// One entry of the change feed as read.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    Event(Event),
    /// An event whose data could not be read; its id (when it had one) lets the reader move past
    /// it on reconnect.
    Unreadable {
        id: Option<i64>,
        error: String,
    },
}

impl FeedItem {
    /// The event's number, to resume after it.
    pub fn seq(&self) -> Option<i64> {
        match self {
            FeedItem::Event(event) => Some(event.seq),
            FeedItem::Unreadable { id, .. } => *id,
        }
    }
}

/// Splits a byte stream into server-sent event blocks on line boundaries.
#[derive(Default)]
struct SseParser {
    pending: Vec<u8>,
    data: Vec<String>,
    id: Option<String>,
    ready: std::collections::VecDeque<FeedItem>,
}

impl SseParser {
    fn push(&mut self, chunk: &[u8]) {
        self.pending.extend_from_slice(chunk);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            self.line(line.trim_end_matches(['\n', '\r']));
        }
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            self.dispatch();
        } else if let Some(data) = line.strip_prefix("data:") {
            self.data
                .push(data.strip_prefix(' ').unwrap_or(data).to_owned());
        } else if let Some(id) = line.strip_prefix("id:") {
            self.id = Some(id.trim().to_owned());
        }
        // `event:`, `retry:` and comments (`:`) carry nothing the reader needs.
    }

    fn dispatch(&mut self) {
        let id = self.id.take();
        if self.data.is_empty() {
            return; // a keep-alive
        }
        let data = std::mem::take(&mut self.data).join("\n");
        self.ready
            .push_back(match serde_json::from_str::<Event>(&data) {
                Ok(event) => FeedItem::Event(event),
                Err(error) => FeedItem::Unreadable {
                    id: id.and_then(|id| id.parse().ok()),
                    error: error.to_string(),
                },
            });
    }

    fn next_item(&mut self) -> Option<FeedItem> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_block(seq: i64, object_id: &str) -> String {
        format!(
            "id: {seq}\nevent: invitation.accepted\ndata: {}\n\n",
            serde_json::json!({
                "seq": seq, "type": "invitation.accepted", "objectKind": "invitation",
                "objectId": object_id, "data": {}, "createdAt": "2026-12-01T00:00:00.000Z"
            })
        )
    }

    #[test]
    fn the_pace_holds_every_request_for_retry_after_and_while_unreachable() {
        let now = tokio::time::Instant::now();
        let mut pace = Pace::default();
        pace.learn(now, true, Some(Duration::from_secs(2)));
        assert_eq!(pace.not_before, Some(now + Duration::from_secs(2)));
        // A shorter pause asked for later does not shorten the one in force.
        pace.learn(now, true, Some(Duration::from_secs(1)));
        assert_eq!(pace.not_before, Some(now + Duration::from_secs(2)));

        // Each round of failures (the requests sent when the pause ended) doubles the pause.
        let mut pace = Pace::default();
        let mut at = now;
        let pauses: Vec<Duration> = (0..10)
            .map(|_| {
                pace.learn(at, false, None);
                // The other requests of the same round fail within the pause: no escalation.
                pace.learn(at + Duration::from_millis(1), false, None);
                let pause = pace.not_before.unwrap() - at;
                at = pace.not_before.unwrap();
                pause
            })
            .collect();
        assert_eq!(pauses[0], Duration::from_millis(250));
        assert_eq!(pauses[1], Duration::from_millis(500));
        assert_eq!(pauses[5], Duration::from_secs(8));
        assert_eq!(pauses[9], Duration::from_secs(16), "capped");
        // The first answer ends the streak: the next failure starts from 250 ms again.
        pace.learn(at, true, None);
        let later = at + Duration::from_secs(60);
        pace.learn(later, false, None);
        assert_eq!(pace.not_before, Some(later + Duration::from_millis(250)));
    }

    #[test]
    fn a_character_split_across_chunks_stays_whole() {
        let text = event_block(7, "inv-é-ü");
        let bytes = text.as_bytes();
        let split = text.find('é').unwrap() + 1; // inside the two bytes of 'é'
        let mut parser = SseParser::default();
        parser.push(&bytes[..split]);
        assert_eq!(parser.next_item(), None);
        parser.push(&bytes[split..]);
        match parser.next_item() {
            Some(FeedItem::Event(event)) => assert_eq!(event.object_id, "inv-é-ü"),
            other => panic!("expected the event, got {other:?}"),
        }
    }

    #[test]
    fn an_unreadable_event_is_skipped_and_the_stream_goes_on() {
        let mut parser = SseParser::default();
        parser.push(b": keep-alive\n\nid: 3\ndata: {\"seq\": \"three\"}\n\n");
        parser.push(event_block(4, "inv-4").as_bytes());
        assert!(matches!(
            parser.next_item(),
            Some(FeedItem::Unreadable { id: Some(3), .. })
        ));
        assert!(matches!(parser.next_item(), Some(FeedItem::Event(e)) if e.seq == 4));
        assert_eq!(parser.next_item(), None);
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_a_clear_error() {
        let error = HttpPortal::new("http://127.0.0.1:1", "pk_first\npk_second")
            .err()
            .expect("refused");
        assert!(matches!(error, ClientError::ApiKey));
        assert!(
            !error.to_string().contains("pk_"),
            "the key is never echoed"
        );
    }
}
