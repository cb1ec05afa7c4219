//! The pages people open from their emails: the invitation page with its OpenID Connect sign-in
//! (`invitation`) and the account manager's activation page (`activation`).
//!
//! Server-rendered HTML (maud escapes every value), one stylesheet and one small script served
//! from here, and the same protections on every page: a `Content-Security-Policy` with no inline
//! script or style and `frame-ancestors 'none'`, `Referrer-Policy: no-referrer`, `no-store`
//! caching, and a CSRF token on every form (a random value in an `HttpOnly`, `SameSite=Lax`
//! cookie that the form must repeat; an Origin check cannot be used, because with `no-referrer`
//! browsers send `Origin: null`). No page shows a token, a code, a password or a stack trace.

mod activation;
mod invitation;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use super::AppState;
use super::problem::{ApiError, ProblemType};

/// The pages' routes. The development sign-in form exists only with `--dev-login`.
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new()
        .route("/invitations/accept", get(invitation::shell))
        // Not the link's own path: opening another link in the same tab must load the page
        // again, not just change the fragment of the page shown.
        .route(
            "/invitations/open",
            axum::routing::post(invitation::details),
        )
        .route(
            "/invitations/sign-in",
            axum::routing::post(invitation::sign_in),
        )
        .route("/oidc/callback", get(invitation::callback))
        .route(
            "/account-managers/activate",
            get(activation::form).post(activation::submit),
        )
        .route(
            "/users/activate",
            get(activation::user_form).post(activation::user_submit),
        )
        .route("/assets/portal.css", get(stylesheet))
        .route("/assets/accept.js", get(script));
    if state.config.dev_login {
        router = router.route(
            "/invitations/dev-accept",
            axum::routing::post(invitation::dev_accept),
        );
    }
    router
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("portal.css"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("accept.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// One page: its language, title and content, and where its forms may lead.
pub struct Page {
    pub status: StatusCode,
    pub lang: &'static str,
    pub title: String,
    pub body: Markup,
    /// Besides the portal itself: the identity provider's origin, for a form whose answer
    /// redirects there (browsers apply `form-action` to the redirect too).
    pub form_action: Option<String>,
    pub set_cookies: Vec<String>,
}

impl Page {
    pub fn new(title: impl Into<String>, body: Markup) -> Page {
        Page {
            status: StatusCode::OK,
            lang: "en",
            title: title.into(),
            body,
            form_action: None,
            set_cookies: Vec::new(),
        }
    }

    pub fn status(mut self, status: StatusCode) -> Page {
        self.status = status;
        self
    }

    pub fn lang(mut self, lang: &'static str) -> Page {
        self.lang = lang;
        self
    }

    pub fn form_action(mut self, origin: Option<String>) -> Page {
        self.form_action = origin;
        self
    }

    pub fn cookie(mut self, cookie: Option<String>) -> Page {
        self.set_cookies.extend(cookie);
        self
    }

    /// The page with `more` after its content.
    pub fn then(mut self, more: Markup) -> Page {
        let body = self.body;
        self.body = html! { (body) (more) };
        self
    }
}

/// A form posted by this browser from one of these pages: it reads, its CSRF token matches,
/// and the address is within the attempt limit. Otherwise the page to answer with; nothing is
/// done.
pub trait PostedForm {
    fn csrf(&self) -> &str;
}

pub fn admit<T: PostedForm>(
    state: &AppState,
    client: std::net::SocketAddr,
    headers: &HeaderMap,
    form: Result<axum::extract::Form<T>, axum::extract::rejection::FormRejection>,
) -> Result<T, Page> {
    let Ok(axum::extract::Form(form)) = form else {
        return Err(csrf_page());
    };
    if !csrf_ok(headers, form.csrf()) {
        return Err(csrf_page());
    }
    state
        .limit_attempts(client.ip())
        .map_err(|error| problem_page(&error))?;
    Ok(form)
}

/// Where the invitation pages' forms may lead besides the portal: the issuer's origin.
pub fn issuer_origin(state: &AppState) -> Option<String> {
    state.oidc.as_ref().map(|client| client.issuer().origin())
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let markup = html! {
            (DOCTYPE)
            html lang=(self.lang) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="referrer" content="no-referrer";
                    title { (self.title) }
                    link rel="stylesheet" href="/assets/portal.css";
                }
                body {
                    main { (self.body) }
                }
            }
        };
        let form_action = match &self.form_action {
            Some(origin) => format!("'self' {origin}"),
            None => "'self'".to_owned(),
        };
        let policy = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        );
        let mut response = (self.status, markup).into_response();
        let headers = response.headers_mut();
        if let Ok(policy) = HeaderValue::from_str(&policy) {
            headers.insert(header::CONTENT_SECURITY_POLICY, policy);
        }
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        for cookie in self.set_cookies {
            if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                headers.append(header::SET_COOKIE, cookie);
            }
        }
        response
    }
}

/// A page that says what went wrong and what to do, with an optional action under it.
pub fn message_page(
    status: StatusCode,
    outcome: &str,
    title: &str,
    paragraphs: &[&str],
    action: Option<Markup>,
) -> Page {
    Page::new(
        title,
        html! {
            section.card data-outcome=(outcome) {
                h1 { (title) }
                @for paragraph in paragraphs {
                    p { (paragraph) }
                }
                @if let Some(action) = action { (action) }
            }
        },
    )
    .status(status)
}

/// The page for a refusal of the core: its title from the problem type, its detail (which the
/// core words for people) as the text.
pub fn problem_page(error: &ApiError) -> Page {
    let status = StatusCode::from_u16(error.kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let (outcome, title) = match error.kind {
        ProblemType::InvitationExpired => ("expired", "This invitation has expired"),
        ProblemType::InvitationAlreadyUsed => {
            ("already-accepted", "This invitation was already accepted")
        }
        ProblemType::InvitationNotPending => ("revoked", "This invitation was withdrawn"),
        ProblemType::NotFound => ("unknown", "This invitation link is not valid"),
        ProblemType::TooManyRequests => ("rate-limited", "Too many attempts"),
        ProblemType::ServiceUnavailable => ("unavailable", "Sign-in is not available right now"),
        ProblemType::InvalidToken => ("invalid-sign-in", "The sign-in could not be verified"),
        ProblemType::Internal => ("error", "Something went wrong on our side"),
        _ => ("refused", error.kind.title()),
    };
    message_page(status, outcome, title, &[error.detail.as_str()], None)
}

/// The CSRF token of this browser: the one its cookie holds, or a new one with the cookie that
/// sets it.
pub fn csrf_token(state: &AppState, headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, CSRF_COOKIE) {
        Some(token) if token.len() >= 32 => (token, None),
        _ => {
            let token = super::oidc::random_value();
            let cookie = set_cookie(state, CSRF_COOKIE, &token, 12 * 3600);
            (token, Some(cookie))
        }
    }
}

/// Whether a form's CSRF token is this browser's.
pub fn csrf_ok(headers: &HeaderMap, submitted: &str) -> bool {
    // A cross-site request is refused outright where the browser says so.
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site")
    {
        return false;
    }
    cookie(headers, CSRF_COOKIE).is_some_and(|expected| {
        !submitted.is_empty()
            && subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), submitted.as_bytes()).into()
    })
}

/// The page for a form whose CSRF token does not match (an old tab, cookies off, or a forged
/// request): nothing was done.
pub fn csrf_page() -> Page {
    message_page(
        StatusCode::FORBIDDEN,
        "csrf",
        "This form has expired",
        &[
            "Nothing was changed. Open the link from your email again and retry. \
             If this keeps happening, allow cookies for this site: the page needs one to protect your sign-in.",
        ],
        None,
    )
}

pub const CSRF_COOKIE: &str = "portal_csrf";
pub const BROWSER_COOKIE: &str = "portal_sign_in";

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax` (sent on the identity provider's redirect
/// back, a top-level navigation), `Secure` when the portal is reached over https.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age_seconds: u64) -> String {
    let secure = if state.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; Max-Age={max_age_seconds}; HttpOnly; SameSite=Lax{secure}")
}

/// A hidden form field.
pub fn hidden(name: &str, value: &str) -> Markup {
    html! { input type="hidden" name=(name) value=(value); }
}

/// A moment as a person reads it: "2 December 2026, 14:05 UTC".
pub fn human_time(millis: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[day padding:none] [month repr:long] [year], [hour]:[minute] UTC"
    );
    at.format(&format).unwrap_or_default()
}

/// How long until `millis`, roughly: "in 47 hours", "in 12 minutes".
pub fn human_until(millis: i64, now: i64) -> String {
    let minutes = (millis - now).max(0) / 60_000;
    match minutes {
        0 => "in less than a minute".to_owned(),
        1 => "in 1 minute".to_owned(),
        2..=119 => format!("in {minutes} minutes"),
        _ => format!("in {} hours", minutes / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; portal_csrf=abc; b=2"),
        );
        assert_eq!(cookie(&headers, "portal_csrf").as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn a_csrf_token_must_match_the_cookie() {
        let mut headers = HeaderMap::new();
        assert!(!csrf_ok(&headers, "abc"), "no cookie");
        headers.insert(header::COOKIE, HeaderValue::from_static("portal_csrf=abc"));
        assert!(csrf_ok(&headers, "abc"));
        assert!(!csrf_ok(&headers, "abd"));
        assert!(!csrf_ok(&headers, ""));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!csrf_ok(&headers, "abc"), "a cross-site post is refused");
    }

    #[test]
    fn times_read_like_a_person_writes_them() {
        // 2026-12-02T14:05:00Z
        let at = 1_796_220_300_000;
        assert_eq!(human_time(at), "2 December 2026, 14:05 UTC");
        assert_eq!(human_until(at, at - 47 * 3_600_000), "in 47 hours");
        assert_eq!(human_until(at, at - 12 * 60_000), "in 12 minutes");
        assert_eq!(human_until(at, at), "in less than a minute");
    }
}
