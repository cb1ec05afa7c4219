//! The pages for people over plain HTTP, where a browser is not needed to see the behaviour: the
//! security headers, the CSRF check, the callback's refusals, and what a portal with no sign-in
//! says; and the whole sign-in (the portal's pages, the provider's login form, the callback) on
//! SQLite and PostgreSQL. (`tests/browser.rs` walks the same pages in Chromium.)

mod support;

use serde_json::json;
use support::{Backend, OidcLogin, Options, TestPortal};

/// A browser-like client: it sends the cookie the invitation page set, and does not follow
/// redirects. Returns it with the page's CSRF token.
async fn browser(base: &str) -> (reqwest::Client, String) {
    let response = reqwest::get(format!("{base}/invitations/accept"))
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = csrf_in(&response.text().await.unwrap());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::COOKIE, cookie.parse().unwrap());
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (client, csrf)
}

/// The CSRF token in a page's form.
fn csrf_in(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("the page has a CSRF field") + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

/// A client with no cookie of ours: another site's form.
fn stranger() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn link_invitation(portal: &TestPortal, tenant: Option<&str>) -> (String, String) {
    let platform = portal.platform();
    let mut body = json!({ "type": "Partner", "displayName": "Contoso Ltd" });
    if let Some(tenant) = tenant {
        body["tenantId"] = json!(tenant);
    }
    let account = platform.account(body).await;
    let created = platform
        .post(
            &format!("/v1/accounts/{account}/invitations"),
            json!({ "email": "ana@contoso.example", "firstName": "Ana", "lastName": "Silva", "delivery": "Link" }),
        )
        .await
        .expect(201);
    let link = created.body["link"].as_str().unwrap();
    (
        created.body["id"].as_str().unwrap().to_owned(),
        link.split_once("#token=").unwrap().1.to_owned(),
    )
}

#[tokio::test]
async fn every_page_forbids_framing_inline_script_and_referrers() {
    let portal = TestPortal::start(Backend::Sqlite).await;
    for path in [
        "/invitations/accept",
        "/account-managers/activate",
        "/oidc/callback",
    ] {
        let response = reqwest::get(format!("{}{path}", portal.base))
            .await
            .unwrap();
        let headers = response.headers();
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains("default-src 'none'")
                && policy.contains("script-src 'self'")
                && policy.contains("frame-ancestors 'none'")
                && !policy.contains("unsafe-inline"),
            "{path}: {policy}"
        );
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("<script>") && !body.contains(" style="),
            "{path}: no inline script or style"
        );
    }
    let cookie = reqwest::get(format!("{}/invitations/accept", portal.base))
        .await
        .unwrap()
        .headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    portal.stop().await;
}

#[tokio::test]
async fn a_form_without_this_browsers_csrf_token_does_nothing() {
    let idp = OidcLogin::start().await;
    let portal = TestPortal::start_with_options(
        Backend::Sqlite,
        Options {
            oidc: Some(idp.issuer.clone()),
            oidc_client_id: Some(idp.client_id.clone()),
            oidc_client_secret: Some(idp.client_secret.clone()),
            ..Options::default()
        },
    )
    .await;
    let (_, token) = link_invitation(&portal, None).await;
    let (client, csrf) = browser(&portal.base).await;

    // Another site's form (no cookie of ours, or the wrong token): refused, no sign-in started.
    for (client, csrf) in [
        (stranger(), csrf.clone()),
        (client.clone(), "forged".into()),
    ] {
        let response = client
            .post(format!("{}/invitations/sign-in", portal.base))
            .form(&[("token", token.as_str()), ("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        assert!(response.headers().get("location").is_none());
    }
    let cross_site = client
        .post(format!("{}/invitations/sign-in", portal.base))
        .header("sec-fetch-site", "cross-site")
        .form(&[("token", token.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);

    // This browser's own form: a 303 to the provider with PKCE, state and nonce.
    let response = client
        .post(format!("{}/invitations/sign-in", portal.base))
        .form(&[("token", token.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&idp.issuer), "{location}");
    for part in [
        "code_challenge_method=S256",
        "prompt=select_account",
        "state=",
        "nonce=",
    ] {
        assert!(location.contains(part), "{part} in {location}");
    }
    assert!(
        !location.contains(&token),
        "the invitation token stays home"
    );
    portal.stop().await;
}

#[tokio::test]
async fn the_callback_refuses_unknown_and_reused_states_and_never_echoes_them() {
    let portal = TestPortal::start(Backend::Sqlite).await;
    for query in [
        "",
        "?code=abc",
        "?state=made-up&code=secret-code-123",
        "?state=made-up&error=access_denied&error_description=AADSTS50105",
        "?state=%ff%fe%00",
    ] {
        let response = reqwest::get(format!("{}/oidc/callback{query}", portal.base))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let page = response.text().await.unwrap();
        assert!(page.contains("This sign-in cannot be continued"), "{query}");
        assert!(
            !page.contains("made-up") && !page.contains("secret-code-123"),
            "{query}"
        );
    }
    portal.stop().await;
}

#[tokio::test]
async fn a_portal_without_sign_in_says_so_on_the_invitation_page() {
    let portal = TestPortal::start(Backend::Sqlite).await;
    let (id, token) = link_invitation(&portal, None).await;
    let (client, csrf) = browser(&portal.base).await;
    let response = client
        .post(format!("{}/invitations/open", portal.base))
        .form(&[("token", token.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("This portal cannot accept invitations yet"),
        "{page}"
    );
    assert!(
        !page.contains("id=\"sign-in\""),
        "no button that cannot work"
    );
    let sign_in = client
        .post(format!("{}/invitations/sign-in", portal.base))
        .form(&[("token", token.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), 503);
    assert_eq!(
        portal
            .platform()
            .get(&format!("/v1/invitations/{id}"))
            .await
            .expect(200)
            .body["state"],
        "Pending"
    );
    portal.stop().await;
}

on_both_backends!(the_whole_sign_in_works_over_http_and_its_callback_works_once);

/// Cookies by name, as a browser would send them back (paths ignored: each server reads its own
/// cookies by name).
#[derive(Default)]
struct Jar(std::collections::BTreeMap<String, String>);

impl Jar {
    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

async fn scenario_get(client: &reqwest::Client, jar: &mut Jar, url: &str) -> reqwest::Response {
    let response = client
        .get(url)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.keep(&response);
    response
}

fn location(response: &reqwest::Response, base: &str) -> String {
    let location = response.headers()["location"].to_str().unwrap();
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_owned()
    }
}

async fn the_whole_sign_in_works_over_http_and_its_callback_works_once(backend: Backend) {
    let idp = OidcLogin::start().await;
    let portal = TestPortal::start_with_options(
        backend,
        Options {
            oidc: Some(idp.issuer.clone()),
            oidc_client_id: Some(idp.client_id.clone()),
            oidc_client_secret: Some(idp.client_secret.clone()),
            ..Options::default()
        },
    )
    .await;
    let (id, token) = link_invitation(&portal, Some(&idp.tenant("contoso"))).await;
    let client = stranger();
    let mut portal_jar = Jar::default();
    let mut idp_jar = Jar::default();

    // The page, then Sign in: a 303 to the provider.
    let page = scenario_get(
        &client,
        &mut portal_jar,
        &format!("{}/invitations/accept", portal.base),
    )
    .await;
    let csrf = csrf_in(&page.text().await.unwrap());
    let started = client
        .post(format!("{}/invitations/sign-in", portal.base))
        .header("cookie", portal_jar.header())
        .form(&[("token", token.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 303);
    portal_jar.keep(&started);
    let authorize = location(&started, &idp.issuer);

    // At the provider: its login form, as Ana.
    let interaction = scenario_get(&client, &mut idp_jar, &authorize).await;
    assert_eq!(interaction.status(), 303);
    let form_url = location(&interaction, &idp.issuer);
    let form = scenario_get(&client, &mut idp_jar, &form_url).await;
    assert!(form.text().await.unwrap().contains("id=\"login\""));
    let login = client
        .post(format!("{form_url}/login"))
        .header("cookie", idp_jar.header())
        .form(&[
            ("login", "ana@contoso.example"),
            ("password", "correct horse"),
        ])
        .send()
        .await
        .unwrap();
    idp_jar.keep(&login);
    let mut next = location(&login, &idp.issuer);
    // Resume, until the provider sends the browser back to the portal.
    while next.starts_with(&idp.issuer) {
        let resumed = scenario_get(&client, &mut idp_jar, &next).await;
        assert_eq!(resumed.status(), 303, "{next}");
        next = location(&resumed, &idp.issuer);
    }
    assert!(
        next.starts_with(&format!("{}/oidc/callback?", portal.base)),
        "{next}"
    );

    // Back at the portal: accepted, once.
    let accepted = scenario_get(&client, &mut portal_jar, &next).await;
    assert_eq!(accepted.status(), 200);
    assert!(
        accepted
            .text()
            .await
            .unwrap()
            .contains("You are now an administrator of Contoso Ltd")
    );
    let replayed = scenario_get(&client, &mut portal_jar, &next).await;
    assert_eq!(replayed.status(), 400, "a callback works once");
    let invitation = portal
        .platform()
        .get(&format!("/v1/invitations/{id}"))
        .await
        .expect(200);
    assert_eq!(invitation.body["state"], "Accepted");
    portal.stop().await;
}
