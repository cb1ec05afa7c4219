//! The invitation page and its sign-in.
//!
//! 1. `GET /invitations/accept#token=…` — a page whose script reads the token from the fragment
//!    and posts it (the token never rides in a URL).
//! 2. `POST /invitations/open` — what is being accepted: the account, the roles with what each
//!    allows, who invited, when it expires; one *Sign in* button.
//! 3. `POST /invitations/sign-in` — starts a sign-in attempt bound to the invitation and to this
//!    browser (ten minutes, single use) and redirects (303) to the identity provider with the
//!    code flow, PKCE S256, `state`, `nonce` and `prompt=select_account`, at the authority of the
//!    account's tenant.
//! 4. `GET /oidc/callback` — consumes the attempt, trades the code for an ID token, verifies it,
//!    and accepts through the same core as `POST /v1/invitations/accept`, so the change feed and
//!    the operator see one kind of acceptance. Every failure is a page with the seeds' remedy,
//!    and recorded on the invitation where it concerns the invitee (wrong tenant, AADSTS50105).

use std::net::SocketAddr;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sqlx::Row;

use super::{
    BROWSER_COOKIE, Page, PostedForm, admit, cookie, csrf_token, hidden, human_time, human_until,
    issuer_origin, message_page, problem_page, set_cookie,
};
use crate::portal::AppState;
use crate::portal::accounts::AccountRow;
use crate::portal::auth::hash_secret;
use crate::portal::invitations::{self, InvitationRow, WRONG_TENANT_REMEDY};
use crate::portal::oidc::{self, AuthorizationRequest, Identity};
use crate::portal::problem::{ApiError, ApiResult, ProblemType};

/// How long a sign-in at the identity provider may take.
const ATTEMPT_LIFETIME_MILLIS: i64 = 10 * 60 * 1000;
/// How long a failure page's *Use another account* button works.
const RETRY_LIFETIME_MILLIS: i64 = 60 * 60 * 1000;

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    retry: Option<String>,
    #[serde(default)]
    csrf: String,
}

#[derive(Debug, Deserialize)]
pub struct DevForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    tenant: String,
}

impl PostedForm for TokenForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl PostedForm for SignInForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl PostedForm for DevForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// What the identity provider sends back; other parameters (Entra's `session_state`, `iss`)
/// are ignored.
#[derive(Debug, Deserialize)]
pub struct Callback {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// 1. The page at the link.
pub async fn shell(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let (csrf, set) = csrf_token(&state, &headers);
    Page::new(
        "Your admin invitation",
        html! {
            @if state.config.dev_login {
                p.banner { "DEVELOPMENT SIGN-IN is switched on for this portal. Never use it for real accounts." }
            }
            section.card #invitation data-outcome="opening" {
                p.eyebrow { "Admin invitation" }
                h1 { "Your admin invitation" }
                p #status { "Opening your invitation…" }
                form #open method="post" action="/invitations/open" {
                    input #token type="hidden" name="token" value="";
                    (hidden("csrf", &csrf))
                    noscript {
                        p.notice {
                            "This page needs JavaScript to read the invitation from the link. \
                             Turn JavaScript on for this site and open the link again."
                        }
                    }
                }
            }
            script src="/assets/accept.js" {}
        },
    )
    .cookie(set)
}

/// 2. What is being accepted.
pub async fn details(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Page {
    let form = match admit(&state, client, &headers, form) {
        Ok(form) => form,
        Err(page) => return page,
    };
    let now = state.now();
    let opened = invitations::open(&state, &form.token, now).await;
    let (row, _) = match opened {
        Ok(opened) => opened,
        Err(error) => return refusal_page(&error),
    };
    match details_page(&state, &row, &form.token, &form.csrf, now).await {
        Ok(page) => page,
        Err(error) => problem_page(&error),
    }
}

async fn details_page(
    state: &AppState,
    row: &InvitationRow,
    token: &str,
    csrf: &str,
    now: i64,
) -> ApiResult<Page> {
    let account = invitations::account_of(state, row).await?;
    let inviter = invitations::inviter_of(state, row).await?;
    let sign_in = state.oidc.is_some();
    let dev_login = state.config.dev_login;
    let label = state
        .config
        .oidc
        .as_ref()
        .map(|oidc| oidc.button_label.clone())
        .unwrap_or_default();
    let body = html! {
        section.card #invitation data-outcome="pending" {
            p.eyebrow { "Admin invitation" }
            h1 { "Administer " (account.display_name) }
            p {
                (inviter) " invited " strong { (row.first_name) " " (row.last_name) }
                " (" (row.email) ") to be an administrator of " strong { (account.display_name) } "."
            }
            h2 { "Your roles" }
            (roles_list(&row.roles))
            p.muted { "Roles apply to " (account.display_name) " and to every account under it." }
            dl.facts {
                dt { "Expires" }
                dd #expires { (human_until(row.expires_at, now)) " (" (human_time(row.expires_at)) ")" }
                @if let Some(tenant) = &account.tenant_id {
                    dt { "Sign in with" }
                    dd { "a work account of the organisation's Microsoft 365 tenant " code { (tenant) } }
                }
            }
            @if sign_in {
                form method="post" action="/invitations/sign-in" {
                    (hidden("token", token))
                    (hidden("csrf", csrf))
                    button.primary #sign-in type="submit" { (label) }
                }
                p.muted {
                    "You will be asked which account to use. Pick the account of the organisation \
                     you were invited to, not a personal one."
                }
            }
            @if !sign_in && !dev_login {
                p.notice #no-sign-in {
                    "This portal cannot accept invitations yet: no sign-in is configured. \
                     Ask the portal's operator to configure an OpenID Connect issuer (--oidc-issuer)."
                }
            }
            @if dev_login {
                section.dev {
                    p.banner {
                        "DEVELOPMENT SIGN-IN. This portal runs with the development sign-in switched on: \
                         anyone who has the link can accept as anyone. Never use it for real accounts."
                    }
                    form method="post" action="/invitations/dev-accept" {
                        (hidden("token", token))
                        (hidden("csrf", csrf))
                        label for="email" { "Email of the identity to accept as" }
                        input #email type="email" name="email" required placeholder="ana.silva@contoso.example";
                        label for="tenant" { "Microsoft 365 tenant id (empty: the account's own)" }
                        input #tenant type="text" name="tenant" placeholder="72f988bf-…";
                        button #dev-accept type="submit" { "Accept as this identity" }
                    }
                }
            }
        }
    };
    Ok(
        Page::new(format!("Administer {}", account.display_name), body)
            .form_action(issuer_origin(state)),
    )
}

fn roles_list(roles: &[crate::domain::Role]) -> Markup {
    html! {
        ul.roles #roles {
            @for role in roles {
                @let spec = role.spec();
                li { strong { (spec.display_name) } (spec.description) }
            }
        }
    }
}

/// The page for an invitation that cannot be accepted, with the seeds' remedy.
fn refusal_page(error: &ApiError) -> Page {
    let action = match error.kind {
        ProblemType::InvitationAlreadyUsed => Some(html! {
            p.muted { "If that was not you, tell the administrator who invited you." }
        }),
        ProblemType::InvitationExpired => Some(html! {
            p.muted { "Invitations can only be accepted for a limited time (48 hours unless your administrator chose otherwise)." }
        }),
        _ => None,
    };
    let page = problem_page(error);
    match action {
        Some(action) => page.then(action),
        None => page,
    }
}

/// 3. Starts a sign-in with the identity provider.
pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let form = match admit(&state, client, &headers, form) {
        Ok(form) => form,
        Err(page) => return page.into_response(),
    };
    match start_sign_in(&state, &headers, &form).await {
        Ok(response) => response,
        Err(error) => refusal_page(&error).into_response(),
    }
}

async fn start_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    form: &SignInForm,
) -> ApiResult<Response> {
    let now = state.now();
    let client = state.oidc.clone().ok_or_else(invitations::no_sign_in)?;
    let browser = cookie(headers, BROWSER_COOKIE).filter(|value| value.len() >= 32);
    let (row, token_hash) = match (&form.token, &form.retry) {
        (Some(token), _) if !token.is_empty() => invitations::open(state, token, now).await?,
        (_, Some(retry)) if !retry.is_empty() => {
            let browser = browser.as_deref().ok_or_else(expired_sign_in)?;
            retry_of(state, retry, browser, now).await?
        }
        _ => return Err(expired_sign_in()),
    };
    let account = invitations::account_of(state, &row).await?;
    let authority = client.issuer().authority(account.tenant_id.as_deref());
    let endpoints = client
        .endpoints(&authority)
        .await
        .map_err(|error| invitations::sign_in_error(&error))?;
    let (browser, set_browser) = match browser {
        Some(browser) => (browser, None),
        None => {
            let browser = oidc::random_value();
            let set = set_cookie(state, BROWSER_COOKIE, &browser, 3600);
            (browser, Some(set))
        }
    };
    let attempt_state = oidc::random_value();
    let nonce = oidc::random_value();
    let code_verifier = oidc::random_value();
    let mut tx = state.begin().await?;
    sqlx::query("DELETE FROM sign_in_attempts WHERE expires_at < $1")
        .bind(now - RETRY_LIFETIME_MILLIS)
        .execute(&mut *tx.tx)
        .await
        .map_err(crate::portal::db_error("forget old sign-in attempts"))?;
    sqlx::query(
        "INSERT INTO sign_in_attempts (state_hash, invitation_id, token_hash, browser_hash, nonce, code_verifier, \
         authority, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(hash_secret(&attempt_state))
    .bind(&row.id)
    .bind(&token_hash)
    .bind(hash_secret(&browser))
    .bind(&nonce)
    .bind(&code_verifier)
    .bind(&authority)
    .bind(now)
    .bind(now + ATTEMPT_LIFETIME_MILLIS)
    .execute(&mut *tx.tx)
    .await
    .map_err(crate::portal::db_error("start the sign-in"))?;
    tx.commit()
        .await
        .map_err(crate::portal::db_error("commit"))?;
    let redirect_uri = redirect_uri(state);
    let location = client.authorization_url(
        &endpoints,
        &AuthorizationRequest {
            redirect_uri: &redirect_uri,
            state: &attempt_state,
            nonce: &nonce,
            code_verifier: &code_verifier,
        },
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let response_headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response_headers.insert(header::LOCATION, location);
    }
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response_headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(set) = set_browser.and_then(|set| HeaderValue::from_str(&set).ok()) {
        response_headers.append(header::SET_COOKIE, set);
    }
    Ok(response)
}

fn redirect_uri(state: &AppState) -> String {
    format!(
        "{}/oidc/callback",
        state.config.public_url.trim_end_matches('/')
    )
}

fn expired_sign_in() -> ApiError {
    ApiError::new(
        ProblemType::NotFound,
        "this sign-in can no longer be continued; open the invitation link from your email again",
    )
}

/// The invitation a failure page's *Use another account* button restarts, if the button is
/// this browser's and still fresh. Single use.
async fn retry_of(
    state: &AppState,
    retry: &str,
    browser: &str,
    now: i64,
) -> ApiResult<(InvitationRow, String)> {
    let mut tx = state.begin().await?;
    let found = sqlx::query(
        "UPDATE sign_in_attempts SET retry_hash = NULL WHERE retry_hash = $1 AND browser_hash = $2 \
         AND created_at > $3 RETURNING invitation_id, token_hash",
    )
    .bind(hash_secret(retry))
    .bind(hash_secret(browser))
    .bind(now - RETRY_LIFETIME_MILLIS)
    .fetch_optional(&mut *tx.tx)
    .await
    .map_err(crate::portal::db_error("find the sign-in to retry"))?;
    tx.commit()
        .await
        .map_err(crate::portal::db_error("commit"))?;
    let found = found.ok_or_else(expired_sign_in)?;
    let invitation_id: String = found.get("invitation_id");
    let token_hash: String = found.get("token_hash");
    let row = invitations::reopen(state, &invitation_id, &token_hash, now).await?;
    Ok((row, token_hash))
}

/// A consumed sign-in attempt.
struct Attempt {
    state_hash: String,
    invitation_id: String,
    token_hash: String,
    browser_hash: String,
    nonce: String,
    code_verifier: String,
    authority: String,
    expires_at: i64,
}

/// Marks the attempt with this `state` used and returns it; `None` when there is none or it
/// was used already.
async fn consume(state: &AppState, attempt_state: &str, now: i64) -> ApiResult<Option<Attempt>> {
    let mut tx = state.begin().await?;
    let found = sqlx::query(
        "UPDATE sign_in_attempts SET used_at = $1 WHERE state_hash = $2 AND used_at IS NULL \
         RETURNING state_hash, invitation_id, token_hash, browser_hash, nonce, code_verifier, authority, expires_at",
    )
    .bind(now)
    .bind(hash_secret(attempt_state))
    .fetch_optional(&mut *tx.tx)
    .await
    .map_err(crate::portal::db_error("continue the sign-in"))?;
    tx.commit()
        .await
        .map_err(crate::portal::db_error("commit"))?;
    Ok(found.map(|row| Attempt {
        state_hash: row.get("state_hash"),
        invitation_id: row.get("invitation_id"),
        token_hash: row.get("token_hash"),
        browser_hash: row.get("browser_hash"),
        nonce: row.get("nonce"),
        code_verifier: row.get("code_verifier"),
        authority: row.get("authority"),
        expires_at: row.get("expires_at"),
    }))
}

/// A *Use another account* button: a fresh single-use handle on the attempt, for this browser.
async fn retry_button(state: &AppState, headers: &HeaderMap, attempt: &Attempt) -> Markup {
    let retry = oidc::random_value();
    let stored = async {
        let mut tx = state.begin().await?;
        sqlx::query("UPDATE sign_in_attempts SET retry_hash = $1 WHERE state_hash = $2")
            .bind(hash_secret(&retry))
            .bind(&attempt.state_hash)
            .execute(&mut *tx.tx)
            .await
            .map_err(crate::portal::db_error("offer a retry"))?;
        tx.commit().await.map_err(crate::portal::db_error("commit"))
    }
    .await;
    let (csrf, _) = csrf_token(state, headers);
    match stored {
        Ok(()) => html! {
            form method="post" action="/invitations/sign-in" {
                (hidden("retry", &retry))
                (hidden("csrf", &csrf))
                button.primary #use-another-account type="submit" { "Use another account" }
            }
        },
        Err(_) => html! {
            p.muted { "Open the invitation link from your email again to retry." }
        },
    }
}

/// 4. The identity provider's answer.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Callback>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let Ok(Query(answer)) = query else {
        return unusable_sign_in();
    };
    let now = state.now();
    let Some(attempt_state) = answer.state.as_deref().filter(|s| !s.is_empty()) else {
        return unusable_sign_in();
    };
    let attempt = match consume(&state, attempt_state, now).await {
        Ok(Some(attempt)) => attempt,
        Ok(None) => return unusable_sign_in(),
        Err(error) => return problem_page(&error),
    };
    let browser_matches = cookie(&headers, BROWSER_COOKIE)
        .is_some_and(|browser| hash_secret(&browser) == attempt.browser_hash);
    if !browser_matches {
        return message_page(
            StatusCode::BAD_REQUEST,
            "other-browser",
            "This sign-in was started in another browser",
            &[
                "For your safety a sign-in must finish in the browser that started it. \
                 Open the invitation link from your email in this browser and sign in again.",
            ],
            None,
        );
    }
    finish(&state, &headers, &attempt, &answer, now)
        .await
        .form_action(issuer_origin(&state))
}

fn unusable_sign_in() -> Page {
    message_page(
        StatusCode::BAD_REQUEST,
        "reused",
        "This sign-in cannot be continued",
        &[
            "It was already used, or it did not start here. Each sign-in works once: \
             open the invitation link from your email again and sign in.",
        ],
        None,
    )
}

async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    attempt: &Attempt,
    answer: &Callback,
    now: i64,
) -> Page {
    if attempt.expires_at <= now {
        let retry = retry_button(state, headers, attempt).await;
        return message_page(
            StatusCode::BAD_REQUEST,
            "sign-in-expired",
            "The sign-in took too long",
            &["A sign-in must finish within ten minutes. Sign in again."],
            Some(retry),
        );
    }
    let row =
        match invitations::reopen(state, &attempt.invitation_id, &attempt.token_hash, now).await {
            Ok(row) => row,
            Err(error) => return refusal_page(&error),
        };
    if let Some(error) = &answer.error {
        let refusal = oidc::provider_refusal(error, answer.error_description.as_deref());
        if let Err(error) =
            invitations::record_failure(state, &row, refusal.reason, &refusal.remedy, now).await
        {
            return problem_page(&error);
        }
        let retry = if refusal.retry_helps {
            Some(retry_button(state, headers, attempt).await)
        } else {
            None
        };
        return message_page(
            StatusCode::FORBIDDEN,
            &outcome_of(refusal.reason),
            refusal.title,
            &[refusal.remedy.as_str()],
            retry,
        );
    }
    let (Some(code), Some(client)) = (answer.code.as_deref(), state.oidc.as_ref()) else {
        return unusable_sign_in();
    };
    let identity = match client
        .exchange(
            &attempt.authority,
            code,
            &attempt.code_verifier,
            &redirect_uri(state),
            &attempt.nonce,
            now,
        )
        .await
    {
        Ok(identity) => identity,
        Err(error) => {
            let retry = retry_button(state, headers, attempt).await;
            return problem_page(&invitations::sign_in_error(&error)).then(retry);
        }
    };
    let account = match invitations::account_of(state, &row).await {
        Ok(account) => account,
        Err(error) => return problem_page(&error),
    };
    accept_as(
        state,
        headers,
        row,
        &account,
        &attempt.token_hash,
        identity,
        Some(attempt),
        now,
    )
    .await
}

fn outcome_of(reason: &str) -> String {
    let mut outcome = String::new();
    for (index, c) in reason.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            outcome.push('-');
        }
        outcome.push(c.to_ascii_lowercase());
    }
    outcome
}

/// Accepts as `identity` and says how it went: the success page, or the wrong-tenant page
/// naming both tenants, with *Use another account* when the sign-in came from the provider.
#[allow(clippy::too_many_arguments)]
async fn accept_as(
    state: &AppState,
    headers: &HeaderMap,
    row: InvitationRow,
    account: &AccountRow,
    token_hash: &str,
    identity: Identity,
    attempt: Option<&Attempt>,
    now: i64,
) -> Page {
    let roles = row.roles.clone();
    let accepted = invitations::complete_accept(
        state,
        row,
        account,
        token_hash.to_owned(),
        identity.clone(),
        now,
    )
    .await;
    match accepted {
        Ok(_) => accepted_page(account, &roles, &identity),
        Err(error) if error.kind == ProblemType::WrongTenant => {
            let retry = match attempt {
                Some(attempt) => Some(retry_button(state, headers, attempt).await),
                None => None,
            };
            wrong_tenant_page(account, &identity, retry)
        }
        Err(error) => refusal_page(&error),
    }
}

fn accepted_page(account: &AccountRow, roles: &[crate::domain::Role], identity: &Identity) -> Page {
    let who = identity
        .email
        .clone()
        .or_else(|| identity.name.clone())
        .unwrap_or_else(|| "your account".to_owned());
    Page::new(
        format!("You are an administrator of {}", account.display_name),
        html! {
            section.card #invitation data-outcome="accepted" {
                p.eyebrow { "Admin invitation accepted" }
                h1 { "You are now an administrator of " (account.display_name) }
                p.success { "Signed in as " strong { (who) } ". Your roles:" }
                (roles_list(roles))
                p.muted { "You can close this window. Next time, sign in to the portal directly with the same account." }
            }
        },
    )
}

fn wrong_tenant_page(account: &AccountRow, identity: &Identity, retry: Option<Markup>) -> Page {
    let who = identity.email.as_deref().unwrap_or("an account");
    let signed_in = identity.tenant_id.as_deref().unwrap_or("(none)");
    let expected = account.tenant_id.as_deref().unwrap_or("(none)");
    Page::new(
        "You signed in with another organisation's account",
        html! {
            section.card #invitation data-outcome="wrong-tenant" {
                p.eyebrow { "Admin invitation" }
                h1 { "You signed in with another organisation's account" }
                p.problem {
                    "You signed in as " strong { (who) } ", a user of the Microsoft 365 tenant "
                    code #signed-in-tenant { (signed_in) } ". This invitation is for "
                    strong { (account.display_name) } ", whose tenant is " code #expected-tenant { (expected) } "."
                }
                p { (WRONG_TENANT_REMEDY) }
                @if let Some(retry) = retry { (retry) }
                p.muted { "The invitation is still open: nothing was accepted." }
            }
        },
    )
    .status(StatusCode::FORBIDDEN)
}

/// The development sign-in (`--dev-login`): accepts as the identity typed into the form.
pub async fn dev_accept(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<DevForm>, FormRejection>,
) -> Page {
    let form = match admit(&state, client, &headers, form) {
        Ok(form) => form,
        Err(page) => return page,
    };
    let now = state.now();
    let (row, token_hash) = match invitations::open(&state, &form.token, now).await {
        Ok(opened) => opened,
        Err(error) => return refusal_page(&error),
    };
    let account = match invitations::account_of(&state, &row).await {
        Ok(account) => account,
        Err(error) => return problem_page(&error),
    };
    let tenant = Some(form.tenant.as_str()).filter(|t| !t.trim().is_empty());
    let identity = match invitations::dev_identity(&account, &form.email, tenant) {
        Ok(identity) => identity,
        Err(error) => return problem_page(&error),
    };
    let page = accept_as(
        &state,
        &headers,
        row,
        &account,
        &token_hash,
        identity,
        None,
        now,
    )
    .await;
    if page.status == StatusCode::FORBIDDEN {
        return page.then(html! {
            form method="post" action="/invitations/open" {
                (hidden("token", &form.token))
                (hidden("csrf", &form.csrf))
                button #try-again type="submit" { "Try again" }
            }
        });
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_become_outcome_names() {
        assert_eq!(
            outcome_of("NotAssignedToApplication"),
            "not-assigned-to-application"
        );
        assert_eq!(outcome_of("WrongTenant"), "wrong-tenant");
    }
}
