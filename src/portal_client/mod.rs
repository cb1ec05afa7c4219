//! The operator's view of a portal: the [`PortalApi`] trait, and [`HttpPortal`], its
//! implementation over the portal's HTTP API (reqwest with rustls, timeouts, Idempotency-Key,
//! Retry-After). Any server that implements the documented API can be targeted unchanged.
//!
//! Every failure is a [`PortalError`] whose [`PortalError::is_transient`] says, once, whether
//! retrying can help: network faults, 5xx, 429 and 412 (re-read and retry) are transient; the
//! 4xx a spec causes (escalation, unknown role, email taken, …) are permanent, and their problem
//! `type` and `detail` are kept for the object's status.

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::domain::{GrantScope, Role};
use crate::portal::account_managers::AccountManagerView;
use crate::portal::accounts::AccountView;
use crate::portal::grants::GrantView;
use crate::portal::invitations::InvitationView;
use crate::portal::json::Page;
use crate::portal::problem::Problem;
use crate::portal::store::Event;

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

    /// The problem `type` slug (`escalation-denied`, …), when the portal sent one.
    pub fn problem_type(&self) -> Option<&str> {
        match self {
            PortalError::Refused { problem, .. } => problem.type_uri.rsplit('/').next(),
            _ => None,
        }
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
        self.status() == Some(404) && self.problem_type() == Some("not-found")
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

/// A new account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(rename = "type")]
    pub account_type: String,
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub sub_contract: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// A new invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewInvitation {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub roles: Vec<Role>,
    pub delivery: String,
    pub expires_after: String,
    pub external_ref: String,
}

/// Changes to an account's mutable fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `Some(None)` clears the tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_contract: Option<bool>,
}

impl AccountChanges {
    pub fn is_empty(&self) -> bool {
        *self == AccountChanges::default()
    }
}

/// A new account manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccountManager {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub language: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branding_domain: Option<String>,
    pub external_ref: String,
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
        account: &NewAccount,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<AccountView>> + Send;
    /// Changes the mutable fields, guarded by the version read (`If-Match`).
    fn update_account(
        &self,
        id: &str,
        changes: &AccountChanges,
        version: i64,
    ) -> impl Future<Output = PortalResult<AccountView>> + Send;
    /// Deletes the account with its own grants and invitations; refused (`account-not-empty`)
    /// while it has child accounts. An account already gone is success.
    fn delete_account(&self, id: &str) -> impl Future<Output = PortalResult<()>> + Send;

    /// Invitations of an account in the given states (all pages).
    fn invitations(
        &self,
        account: &str,
        states: &str,
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
        invitation: &NewInvitation,
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
        manager: &NewAccountManager,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<AccountManagerView>> + Send;
    fn resend_activation(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = PortalResult<AccountManagerView>> + Send;
    fn delete_account_manager(&self, id: &str) -> impl Future<Output = PortalResult<()>> + Send;

    /// The change feed after event `after` (`None`: from now on), as it happens; the stream ends
    /// when the connection does.
    fn events(
        &self,
        after: Option<i64>,
    ) -> impl Future<Output = PortalResult<futures::stream::BoxStream<'static, PortalResult<Event>>>>
    + Send;
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
}

impl HttpPortal {
    pub fn new(base_url: &str, api_key: &str) -> Result<HttpPortal, reqwest::Error> {
        let mut headers = HeaderMap::new();
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", api_key.trim()))
            .expect("API keys are ASCII");
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
            http: build(Some(Duration::from_secs(30)))?,
            streaming: build(None)?,
            observer: None,
        })
    }

    /// Who this client's API key acts as.
    pub async fn whoami(&self) -> PortalResult<crate::portal::grants::Whoami> {
        self.expect(Method::GET, "/v1/whoami", None, &[]).await
    }

    /// The roles `subject` holds on `account` (granted, inherited or implied).
    pub async fn roles_held(&self, subject: &str, account: &str) -> PortalResult<Vec<Role>> {
        let access: Value = self
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
        Ok(access["roles"]
            .as_object()
            .map(|roles| {
                roles
                    .keys()
                    .filter_map(|r| serde_json::from_value(Value::String(r.clone())).ok())
                    .collect()
            })
            .unwrap_or_default())
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
        let result = self.call_once(method, path, body, headers).await;
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
        account: &NewAccount,
        idempotency_key: &str,
    ) -> PortalResult<AccountView> {
        let body = serde_json::to_value(account).expect("accounts serialize");
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
        changes: &AccountChanges,
        version: i64,
    ) -> PortalResult<AccountView> {
        let body = serde_json::to_value(changes).expect("account changes serialize");
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

    async fn invitations(&self, account: &str, states: &str) -> PortalResult<Vec<InvitationView>> {
        self.all_pages(&format!(
            "/v1/accounts/{}/invitations?state={}",
            encode(account),
            encode(states)
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
        invitation: &NewInvitation,
        idempotency_key: &str,
    ) -> PortalResult<InvitationView> {
        let body = serde_json::to_value(invitation).expect("invitations serialize");
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
            Some(&json!({ "roles": roles })),
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
        let body = json!({ "email": email, "roles": roles, "scope": scope, "source": source });
        let page: Page<GrantView> = self
            .expect(
                Method::POST,
                &format!("/v1/accounts/{}/grants", encode(account)),
                Some(&body),
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
        let body = self.delete_idempotent(&path).await?;
        Ok(body.and_then(|b| b["revoked"].as_u64()).unwrap_or(0))
    }

    async fn account_manager_by_ref(
        &self,
        account: &str,
        external_ref: &str,
    ) -> PortalResult<Option<AccountManagerView>> {
        let page: Page<AccountManagerView> = self
            .expect(
                Method::GET,
                &format!(
                    "/v1/accounts/{}/account-managers?externalRef={}",
                    encode(account),
                    encode(external_ref)
                ),
                None,
                &[],
            )
            .await?;
        Ok(page.items.into_iter().next())
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
        manager: &NewAccountManager,
        idempotency_key: &str,
    ) -> PortalResult<AccountManagerView> {
        let body = serde_json::to_value(manager).expect("account managers serialize");
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

    async fn events(
        &self,
        after: Option<i64>,
    ) -> PortalResult<futures::stream::BoxStream<'static, PortalResult<Event>>> {
        let url = format!("{}/v1/events", self.base);
        let after = after.map_or_else(|| "latest".to_owned(), |seq| seq.to_string());
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
            })?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        Ok(sse_events(response.bytes_stream(), url).boxed())
    }
}

/// Parses a server-sent event stream into feed events (the `data:` of each `event:` block).
fn sse_events(
    bytes: impl Stream<Item = reqwest::Result<bytes_like::Bytes>> + Send + 'static,
    url: String,
) -> impl Stream<Item = PortalResult<Event>> + Send + 'static {
    futures::stream::unfold(
        (Box::pin(bytes), String::new(), url),
        |(mut bytes, mut buffer, url)| async move {
            loop {
                if let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let data: String = block
                        .lines()
                        .filter_map(|line| line.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect::<Vec<_>>()
                        .join("\n");
                    if data.is_empty() {
                        continue; // a keep-alive comment
                    }
                    let event =
                        serde_json::from_str::<Event>(&data).map_err(|_| PortalError::Unexpected {
                            status: 200,
                            retry_after: None,
                        });
                    return Some((event, (bytes, buffer, url)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
                    Some(Err(source)) => {
                        return Some((
                            Err(PortalError::Network {
                                url: url.clone(),
                                source,
                            }),
                            (bytes, buffer, url),
                        ));
                    }
                    None => return None,
                }
            }
        },
    )
}

mod bytes_like {
    pub use axum::body::Bytes;
}
