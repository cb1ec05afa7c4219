//! The pages for people over plain HTTP, where a browser is not needed to see the behaviour: the
//! security headers, the CSRF check, the callback's refusals, and what a portal with no sign-in
//! says. (`tests/browser.rs` walks the same pages in Chromium.)

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
    let page = response.text().await.unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("the page has a CSRF field") + marker.len();
    let csrf = page[start..start + page[start..].find('"').unwrap()].to_owned();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::COOKIE, cookie.parse().unwrap());
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (client, csrf)
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
