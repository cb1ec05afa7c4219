//! The links people get by email, opened in a real browser: headless Chromium, driven over the
//! W3C WebDriver protocol by chromedriver.
//!
//! - An invitee opens the emailed invitation link (from a real SMTP server), sees what they are
//!   accepting, signs in at a certified OpenID Connect provider (node oidc-provider, a real login
//!   form) with the authorization code flow and PKCE, first with the wrong tenant (the seeds'
//!   remedy, *Use another account*), then the right one; the operator, running against the
//!   Kubernetes API server double, records the AdminInvitation as Accepted.
//! - The provider refusing a user (AADSTS50105), expired, revoked and reused links, a link
//!   without its token: each ends on a page that says what to do.
//! - An account manager activates from the emailed link, in French.
//! - An end user activates from the emailed link with their user ID.
//! - The development sign-in (`--dev-login`) shows the same invitation page.
//!
//! Every page visited is saved under `target/screenshots/` at a laptop and a phone width.
//! Chromium and chromedriver come from Debian's packages (`chromium`, `chromium-driver`); when
//! they are missing, the test installs them with apt-get (it needs root), and fails with what to
//! install when it cannot.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use portal_operator::crd::{AdminInvitation, AdminInvitationPhase};
use portal_operator::testing::apiserver::ApiServer;
use serde_json::{Value, json};
use support::{Backend, Maildev, OidcLogin, Options, TestPortal, wait_for};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const NS: &str = "team-contoso";

/// A portal as production runs it: OIDC sign-in at the provider, mail over SMTP, no
/// development sign-in.
async fn production_portal(idp: &OidcLogin, mail: &Maildev) -> TestPortal {
    TestPortal::start_with_options(
        Backend::Sqlite,
        Options {
            oidc: Some(idp.issuer.clone()),
            oidc_client_id: Some(idp.client_id.clone()),
            oidc_client_secret: Some(idp.client_secret.clone()),
            smtp_url: Some(mail.smtp_url()),
            ..Options::default()
        },
    )
    .await
}

/// Invites `email` to `account` by share link; returns the invitation's id and its link.
async fn link_invitation(platform: &support::Api, account: &str, email: &str) -> (String, String) {
    let created = platform
        .post(
            &format!("/v1/accounts/{account}/invitations"),
            json!({ "email": email, "firstName": "Ana", "lastName": "Silva", "delivery": "Link" }),
        )
        .await
        .expect(201);
    (
        created.body["id"].as_str().unwrap().to_owned(),
        created.body["link"].as_str().unwrap().to_owned(),
    )
}

/// The link in an invitation email.
fn link_in(email: &Value) -> String {
    let text = email["text"].as_str().unwrap();
    text.split_whitespace()
        .find(|word| word.starts_with("http") && word.contains("#token="))
        .unwrap_or_else(|| panic!("no invitation link in the email"))
        .to_owned()
}

/// Signs in at the provider's login form as `login`.
async fn sign_in_at_provider(browser: &Browser, login: &str) {
    let field = browser.wait_for_element("#login").await;
    browser.type_into(&field, login).await;
    let password = browser.find("#password").await;
    browser.type_into(&password, "correct horse battery").await;
    let submit = browser.find("#sign-in").await;
    browser.submit(&submit).await;
}

async fn apply(kube: &ApiServer, manifest: Value) {
    let kind = manifest["kind"].as_str().unwrap();
    let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
    let resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "access.portal.dev",
        "v1alpha1",
        kind,
    ));
    let api: Api<kube::api::DynamicObject> = if kind == "Account" {
        Api::all_with(kube.client(), &resource)
    } else {
        Api::namespaced_with(kube.client(), NS, &resource)
    };
    api.patch(
        &name,
        &PatchParams::apply("kubectl").force(),
        &Patch::Apply(&manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
}

#[tokio::test]
async fn an_invitee_accepts_from_the_emailed_link_by_signing_in_with_the_right_tenant() {
    ensure_chromium();
    let idp = OidcLogin::start().await;
    let mail = Maildev::start().await;
    let portal = production_portal(&idp, &mail).await;
    let contoso = idp.tenant("contoso");
    let fabrikam = idp.tenant("fabrikam");

    // The operator, against the API server double, invites Ana by email.
    let kube = support::kube_double([NS.to_owned()]).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(portal_operator::controller::run(
        kube.client(),
        portal_operator::portal_client::HttpPortal::new(&portal.base, &portal.platform_key)
            .unwrap(),
        Arc::new(portal_operator::controller::metrics::Metrics::default()),
        portal_operator::controller::Config::default(),
        async {
            let _ = stopped.await;
        },
    ));
    apply(&kube, json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "Account",
        "metadata": { "name": "contoso" },
        "spec": { "displayName": "Contoso Ltd", "type": "Partner", "tenantId": contoso, "namespaces": [NS] }
    }))
    .await;
    apply(&kube, json!({
        "apiVersion": "access.portal.dev/v1alpha1", "kind": "AdminInvitation",
        "metadata": { "name": "ana-owner", "namespace": NS },
        "spec": { "accountRef": { "name": "contoso" }, "email": "ana.silva@contoso.example",
                  "firstName": "Ana", "lastName": "Silva", "roles": ["AccountOwner", "BrandContributor"] }
    }))
    .await;
    let invitations: Api<AdminInvitation> = Api::namespaced(kube.client(), NS);
    let phase_is = |phase: AdminInvitationPhase| {
        let invitations = invitations.clone();
        move || {
            let invitations = invitations.clone();
            async move {
                invitations
                    .get_opt("ana-owner")
                    .await
                    .unwrap()
                    .filter(|i| i.status.as_ref().and_then(|s| s.phase) == Some(phase))
            }
        }
    };
    let pending = wait_for(
        Duration::from_secs(20),
        "the invitation Pending",
        phase_is(AdminInvitationPhase::Pending),
    )
    .await;
    let portal_id = pending.status.unwrap().portal_id.unwrap();
    let email = mail.wait_for_email_to("ana.silva@contoso.example").await;
    let link = link_in(&email);

    let browser = Browser::start().await;
    browser.open(&link).await;
    assert_eq!(browser.outcome().await, "pending");
    assert!(
        !browser.url().await.contains("token"),
        "the token is taken out of the address bar"
    );
    assert_eq!(browser.text_of("h1").await, "Administer Contoso Ltd");
    let roles = browser.text_of("#roles").await;
    assert!(
        roles.contains("Account Owner") && roles.contains("Admin invitations"),
        "each role with what it allows: {roles}"
    );
    let expires = browser.text_of("#expires").await;
    assert!(expires.starts_with("in 48 hours ("), "{expires}");
    browser.screenshot("invitation").await;

    // Signed in with Fabrikam's user: the seeds' remedy, both tenants named, still pending.
    let sign_in = browser.find("#sign-in").await;
    assert_eq!(browser.text(&sign_in).await, "Sign in with Microsoft");
    browser.submit(&sign_in).await;
    browser.wait_for_element("#login").await;
    browser.screenshot("identity-provider").await;
    sign_in_at_provider(&browser, "bob@fabrikam.example").await;
    assert_eq!(browser.outcome().await, "wrong-tenant");
    assert_eq!(browser.text_of("#signed-in-tenant").await, fabrikam);
    assert_eq!(browser.text_of("#expected-tenant").await, contoso);
    let page = browser.text_of("main").await.to_lowercase();
    assert!(
        page.contains("sign out of all microsoft accounts") && page.contains("private browsing"),
        "the seeds' remedy: {page}"
    );
    browser.screenshot("wrong-tenant").await;
    let recorded = portal
        .platform()
        .get(&format!("/v1/invitations/{portal_id}"))
        .await
        .expect(200);
    assert_eq!(recorded.body["state"], "Pending");
    assert_eq!(
        recorded.body["lastFailure"]["reason"], "WrongTenant",
        "{:#}",
        recorded.body
    );
    wait_for(
        Duration::from_secs(20),
        "the AdminInvitation to show the wrong tenant",
        || async {
            let invitation = invitations.get("ana-owner").await.unwrap();
            let status = invitation.status?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
            (status.phase == Some(AdminInvitationPhase::Pending) && ready.reason == "WrongTenant")
                .then_some(())
        },
    )
    .await;

    // Use another account: the provider asks again, and Ana's sign-in is accepted.
    let another = browser.find("#use-another-account").await;
    browser.submit(&another).await;
    sign_in_at_provider(&browser, "ana@contoso.example").await;
    assert_eq!(browser.outcome().await, "accepted");
    assert_eq!(
        browser.text_of("h1").await,
        "You are now an administrator of Contoso Ltd"
    );
    browser.screenshot("accepted").await;
    let accepted = wait_for(
        Duration::from_secs(20),
        "the AdminInvitation Accepted",
        phase_is(AdminInvitationPhase::Accepted),
    )
    .await;
    assert!(
        accepted.status.unwrap().accepted_by.is_some(),
        "the operator records who accepted"
    );

    // The callback cannot be replayed, and the link now says it was used.
    let callback = browser.url().await;
    assert!(callback.contains("/oidc/callback?"), "{callback}");
    browser.open(&callback).await;
    assert_eq!(browser.outcome().await, "reused");
    browser.open(&link).await;
    assert_eq!(browser.outcome().await, "already-accepted");
    assert!(
        browser
            .text_of("main")
            .await
            .contains("sign in to the portal instead")
    );
    browser.screenshot("already-accepted").await;

    browser.quit().await;
    let _ = stop.send(());
    operator.await.unwrap().unwrap();
    kube.stop().await;
    portal.stop().await;
}

#[tokio::test]
async fn an_entra_style_multi_tenant_issuer_sends_the_invitee_to_the_accounts_own_tenant() {
    ensure_chromium();
    let idp = OidcLogin::start_multi_tenant().await;
    let mail = Maildev::start().await;
    let portal = production_portal(&idp, &mail).await;
    let contoso = idp.tenant("contoso");
    let platform = portal.platform();
    let account = platform
        .account(json!({ "type": "Partner", "displayName": "Contoso Ltd", "tenantId": contoso }))
        .await;
    let (id, link) = link_invitation(&platform, &account, "ana.silva@contoso.example").await;

    let browser = Browser::start().await;
    browser.open(&link).await;
    assert_eq!(browser.outcome().await, "pending");
    let sign_in = browser.find("#sign-in").await;
    browser.submit(&sign_in).await;
    browser.wait_for_element("#login").await;
    let at = browser.url().await;
    assert!(
        at.contains(&format!("/{contoso}/v2.0/")),
        "the sign-in happens at Contoso's own authority: {}",
        at.split('?').next().unwrap()
    );
    assert_eq!(browser.text_of("#tenant").await, "Tenant contoso");

    // Fabrikam's user cannot even sign in there (AADSTS50020): the page says what to do.
    sign_in_at_provider(&browser, "bob@fabrikam.example").await;
    assert_eq!(browser.outcome().await, "wrong-tenant");
    assert!(
        browser
            .text_of("main")
            .await
            .contains("private browsing window")
    );
    let recorded = platform
        .get(&format!("/v1/invitations/{id}"))
        .await
        .expect(200);
    assert_eq!(recorded.body["lastFailure"]["reason"], "WrongTenant");

    // Ana's sign-in there is accepted: `iss` is the template with her `tid`.
    let another = browser.find("#use-another-account").await;
    browser.submit(&another).await;
    sign_in_at_provider(&browser, "ana@contoso.example").await;
    assert_eq!(browser.outcome().await, "accepted");
    let state = platform
        .get(&format!("/v1/invitations/{id}"))
        .await
        .expect(200);
    assert_eq!(state.body["state"], "Accepted");

    browser.quit().await;
    portal.stop().await;
}

#[tokio::test]
async fn refusals_expiry_revocation_and_missing_tokens_end_on_pages_that_say_what_to_do() {
    ensure_chromium();
    let idp = OidcLogin::start().await;
    let mail = Maildev::start().await;
    let portal = production_portal(&idp, &mail).await;
    let platform = portal.platform();
    let account = platform
        .account(json!({ "type": "Partner", "displayName": "Contoso Ltd", "tenantId": idp.tenant("contoso") }))
        .await;
    let invite = |email: &'static str| link_invitation(&platform, &account, email);
    let browser = Browser::start().await;

    // The page without its token says what it needs.
    browser
        .open(&format!("{}/invitations/accept", portal.base))
        .await;
    assert_eq!(browser.outcome().await, "no-token");
    assert!(browser.text_of("#status").await.contains("#token="));
    browser.screenshot("no-token").await;

    // AADSTS50105: the provider refuses a user who is not assigned to the app.
    let (id, link) = invite("unassigned@contoso.example").await;
    browser.open(&link).await;
    assert_eq!(browser.outcome().await, "pending");
    let sign_in = browser.find("#sign-in").await;
    browser.submit(&sign_in).await;
    sign_in_at_provider(&browser, "unassigned@contoso.example").await;
    assert_eq!(browser.outcome().await, "not-assigned-to-application");
    let page = browser.text_of("main").await;
    assert!(
        page.contains("AADSTS50105") && page.contains("Users and groups"),
        "the remedy: {page}"
    );
    browser.screenshot("not-assigned").await;
    let recorded = platform
        .get(&format!("/v1/invitations/{id}"))
        .await
        .expect(200);
    assert_eq!(
        recorded.body["lastFailure"]["reason"], "NotAssignedToApplication",
        "{:#}",
        recorded.body
    );

    // Revoked.
    let (id, link) = invite("revoked@contoso.example").await;
    platform
        .delete(&format!("/v1/invitations/{id}"))
        .await
        .expect(204);
    browser.open(&link).await;
    assert_eq!(browser.outcome().await, "revoked");

    // Expired: the portal's clock passes the 48 hours.
    let (_, link) = invite("late@contoso.example").await;
    portal.clock.advance(Duration::from_secs(49 * 3600));
    browser.open(&link).await;
    assert_eq!(browser.outcome().await, "expired");
    assert!(
        browser
            .text_of("main")
            .await
            .contains("ask an administrator to create a new invitation")
    );
    browser.screenshot("expired").await;

    // A made-up token.
    browser
        .open(&format!(
            "{}/invitations/accept#token=not-a-real-token",
            portal.base
        ))
        .await;
    assert_eq!(browser.outcome().await, "unknown");

    // No page shows a secret: the pages' HTML never carries the provider's code or a token.
    let html = browser
        .execute("return document.documentElement.outerHTML", json!([]))
        .await;
    assert!(!html.as_str().unwrap().contains("not-a-real-token"));

    browser.quit().await;
    portal.stop().await;
}

#[tokio::test]
async fn an_account_manager_activates_from_the_emailed_link_in_their_language() {
    ensure_chromium();
    let mail = Maildev::start().await;
    let portal = TestPortal::start_with_options(
        Backend::Sqlite,
        Options {
            smtp_url: Some(mail.smtp_url()),
            ..Options::default()
        },
    )
    .await;
    let platform = portal.platform();
    let account = platform
        .account(json!({ "type": "Partner", "displayName": "Contoso Ltd" }))
        .await;
    platform
        .post(
            &format!("/v1/accounts/{account}/account-managers"),
            json!({ "email": "camille@contoso.example", "firstName": "Camille", "lastName": "Dubois", "language": "fr" }),
        )
        .await
        .expect(201);
    let email = mail.wait_for_email_to("camille@contoso.example").await;
    let text = email["text"].as_str().unwrap().to_owned();
    let temporary = text
        .lines()
        .find_map(|line| line.strip_prefix("Mot de passe temporaire : "))
        .expect("the temporary password in the email")
        .trim()
        .to_owned();
    let link = text
        .split_whitespace()
        .find(|word| word.contains("/account-managers/activate"))
        .unwrap()
        .to_owned();

    let browser = Browser::start().await;
    browser.open(&link).await;
    assert_eq!(browser.outcome().await, "form");
    assert_eq!(
        browser.text_of("h1").await,
        "Activez votre accès de gestionnaire de compte"
    );
    assert!(browser.text_of("#policy").await.contains("12 caractères"));
    browser.screenshot("activation").await;

    let fill = |temporary: String, new: &'static str, again: &'static str| {
        let browser = &browser;
        async move {
            for (css, value) in [
                ("#username", "camille@contoso.example".to_owned()),
                ("#temporary_password", temporary),
                ("#new_password", new.to_owned()),
                ("#repeat_password", again.to_owned()),
            ] {
                let field = browser.find(css).await;
                browser.clear(&field).await;
                browser.type_into(&field, &value).await;
            }
            let submit = browser.find("#activate").await;
            browser.submit(&submit).await;
            browser.outcome().await
        }
    };
    // A wrong temporary password: the generic answer.
    assert_eq!(
        fill(
            "pas-le-bon".into(),
            "une phrase longue et à moi",
            "une phrase longue et à moi"
        )
        .await,
        "refused"
    );
    assert!(browser.text_of("#error").await.contains("incorrect"));
    browser.screenshot("activation-refused").await;
    // The new password twice, not the same.
    assert_eq!(
        fill(
            temporary.clone(),
            "une phrase longue et à moi",
            "une autre phrase longue"
        )
        .await,
        "refused"
    );
    assert!(browser.text_of("#error").await.contains("pas identiques"));
    // Right.
    assert_eq!(
        fill(
            temporary.clone(),
            "une phrase longue et à moi",
            "une phrase longue et à moi"
        )
        .await,
        "activated"
    );
    browser.screenshot("activated").await;

    // The temporary password no longer works.
    let again = portal
        .anonymous()
        .post(
            "/v1/account-managers/activate",
            json!({ "username": "camille@contoso.example", "temporaryPassword": temporary,
                    "newPassword": "yet another long password" }),
        )
        .await;
    assert_eq!(again.status, 409, "{:#}", again.body);

    browser.quit().await;
    portal.stop().await;
}

#[tokio::test]
async fn an_end_user_activates_from_the_emailed_link_with_their_user_id() {
    ensure_chromium();
    let mail = Maildev::start().await;
    let portal = TestPortal::start_with_options(
        Backend::Sqlite,
        Options {
            smtp_url: Some(mail.smtp_url()),
            ..Options::default()
        },
    )
    .await;
    let platform = portal.platform();
    let account = platform
        .account(json!({ "type": "Partner", "displayName": "Contoso Ltd" }))
        .await;
    platform
        .post(
            &format!("/v1/accounts/{account}/subscriptions"),
            json!({ "licenseType": "Standard", "quantity": 1 }),
        )
        .await
        .expect(201);
    platform
        .post(
            &format!("/v1/accounts/{account}/users"),
            json!({ "userId": "dana@contoso.example", "firstName": "Dana", "lastName": "Lee", "licenseType": "Standard" }),
        )
        .await
        .expect(201);
    let email = mail.wait_for_email_to("dana@contoso.example").await;
    let text = email["text"].as_str().unwrap().to_owned();
    let temporary = text
        .lines()
        .find_map(|line| line.strip_prefix("Temporary password: "))
        .expect("the temporary password in the email")
        .trim()
        .to_owned();
    let link = text
        .split_whitespace()
        .find(|word| word.contains("/users/activate"))
        .expect("the activation link in the email")
        .to_owned();

    let browser = Browser::start().await;
    browser.open(&link).await;
    assert_eq!(browser.outcome().await, "form");
    assert_eq!(
        browser.text_of("h1").await,
        "Activate your voice service account"
    );
    browser.screenshot("user-activation").await;
    for (css, value) in [
        ("#username", "dana@contoso.example".to_owned()),
        ("#temporary_password", temporary.clone()),
        ("#new_password", "a long phrase of my own".to_owned()),
        ("#repeat_password", "a long phrase of my own".to_owned()),
    ] {
        let field = browser.find(css).await;
        browser.type_into(&field, &value).await;
    }
    let submit = browser.find("#activate").await;
    browser.submit(&submit).await;
    assert_eq!(browser.outcome().await, "activated");
    assert_eq!(browser.text_of("h1").await, "Your account is active");
    browser.screenshot("user-activated").await;
    let users = platform
        .all_pages(&format!("/v1/accounts/{account}/users"))
        .await;
    assert_eq!(users[0]["state"], "Active");

    browser.quit().await;
    portal.stop().await;
}

#[tokio::test]
async fn the_development_sign_in_shows_the_same_invitation_and_accepts_as_anyone() {
    ensure_chromium();
    let portal = TestPortal::start_with_options(
        Backend::Sqlite,
        Options {
            dev_login: true,
            ..Options::default()
        },
    )
    .await;
    let platform = portal.platform();
    let partner = platform
        .account(json!({ "type": "Partner", "displayName": "Northwind" }))
        .await;
    let client = platform
        .account(
            json!({ "type": "Client", "parentId": partner, "displayName": "Contoso",
                         "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47" }),
        )
        .await;
    let (id, link) = link_invitation(&platform, &client, "ana@contoso.example").await;

    let browser = Browser::start().await;
    browser.open(&link).await;
    assert_eq!(browser.outcome().await, "pending");
    assert_eq!(browser.text_of("h1").await, "Administer Contoso");
    assert!(
        browser
            .text_of(".banner")
            .await
            .starts_with("DEVELOPMENT SIGN-IN"),
        "the development sign-in is labelled"
    );
    browser.screenshot("dev-sign-in").await;

    let type_in = |css: &'static str, text: &'static str| {
        let browser = &browser;
        async move {
            let field = browser.find(css).await;
            browser.type_into(&field, text).await;
        }
    };
    type_in("#email", "ana.silva@contoso.example").await;
    type_in("#tenant", "00000000-0000-0000-0000-000000000001").await;
    let accept = browser.find("#dev-accept").await;
    browser.submit(&accept).await;
    assert_eq!(browser.outcome().await, "wrong-tenant");
    assert_eq!(
        platform
            .get(&format!("/v1/invitations/{id}"))
            .await
            .expect(200)
            .body["state"],
        "Pending",
        "a refused attempt leaves the invitation pending"
    );

    // Back to the invitation, and accepted with the account's own tenant.
    let again = browser.find("#try-again").await;
    browser.submit(&again).await;
    assert_eq!(browser.outcome().await, "pending");
    type_in("#email", "ana.silva@contoso.example").await;
    let accept = browser.find("#dev-accept").await;
    browser.submit(&accept).await;
    assert_eq!(browser.outcome().await, "accepted");
    let state = platform
        .get(&format!("/v1/invitations/{id}"))
        .await
        .expect(200);
    assert_eq!(state.body["state"], "Accepted");
    assert!(state.body["acceptedBy"].is_string(), "{:#}", state.body);

    browser.quit().await;
    portal.stop().await;
}

/// Installs Debian's Chromium and chromedriver when they are missing.
fn ensure_chromium() {
    support::ensure_debian_packages(&["chromium", "chromium-driver"], || {
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
    });
}

/// A headless Chromium session behind chromedriver, which runs in its own process group so
/// that the browser it starts goes with it.
struct Browser {
    driver: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// An element reference from the WebDriver protocol.
struct Element(String);

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let driver_url = format!("http://127.0.0.1:{port}");
        wait_for(Duration::from_secs(20), "chromedriver to be ready", || {
            let http = http.clone();
            let url = format!("{driver_url}/status");
            async move {
                let status: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                (status["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        // The flags this closed network needs: no background connections to Google's hosts.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let session: Value = http
            .post(format!("{driver_url}/session"))
            .json(&json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            } } }))
            .send()
            .await
            .expect("ask chromedriver for a session")
            .json()
            .await
            .unwrap();
        let session_id = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {session}"));
        Browser {
            driver,
            base: format!("{driver_url}/session/{session_id}"),
            http,
            _profile: profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .unwrap();
        // An error may quote the page's address: never print the link's token or a callback's
        // code and state.
        assert!(
            answer["value"]["error"].is_null(),
            "WebDriver {path}: {}",
            answer["value"]["message"]
                .as_str()
                .unwrap_or_default()
                .split(['#', '?'])
                .next()
                .unwrap_or_default()
        );
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find(&self, css: &str) -> Element {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        Element(found[ELEMENT_KEY].as_str().unwrap().to_owned())
    }

    async fn type_into(&self, element: &Element, text: &str) {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn clear(&self, element: &Element) {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{}/clear", element.0),
            Some(json!({})),
        )
        .await;
    }

    /// Clicks an element that submits a form, and waits for the next page to load.
    async fn submit(&self, element: &Element) {
        self.execute("window.__before_submit = true", json!([]))
            .await;
        self.click(element).await;
        wait_for(Duration::from_secs(15), "the next page", || async {
            let loaded = self
                .execute(
                    "return window.__before_submit === undefined && document.readyState === 'complete'",
                    json!([]),
                )
                .await;
            (loaded == true).then_some(())
        })
        .await;
    }

    async fn click(&self, element: &Element) {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        )
        .await;
    }

    async fn text(&self, element: &Element) -> String {
        self.command(
            reqwest::Method::GET,
            &format!("/element/{}/text", element.0),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    async fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Waits for the portal's page to settle on an outcome (its `data-outcome`, once the
    /// invitation page has left "opening") and returns it.
    async fn outcome(&self) -> String {
        wait_for(
            Duration::from_secs(15),
            "the page to show the answer",
            || async {
                let outcome = self
                    .execute(
                        "const e = document.querySelector('[data-outcome]'); \
                         return e && document.readyState === 'complete' && e.dataset.outcome !== 'opening' \
                           ? e.dataset.outcome : null",
                        json!([]),
                    )
                    .await;
                outcome.as_str().map(str::to_owned)
            },
        )
        .await
    }

    /// Waits until the page has an element matching `css`, for pages the browser reaches by
    /// redirects (the identity provider's form).
    async fn wait_for_element(&self, css: &str) -> Element {
        wait_for(
            Duration::from_secs(15),
            &format!("an element {css}"),
            || async {
                let found = self
                    .execute(
                        "return document.readyState === 'complete' && document.querySelector(arguments[0]) !== null",
                        json!([css]),
                    )
                    .await;
                (found == true).then_some(())
            },
        )
        .await;
        self.find(css).await
    }

    async fn text_of(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.text(&element).await
    }

    async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn window(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// Saves a screenshot of the page as `target/screenshots/NAME.png` at a laptop width and
    /// as `NAME-phone.png` at a phone width.
    async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        for (suffix, width, height) in [("", 1280, 900), ("-phone", 390, 844)] {
            self.window(width, height).await;
            let png = self
                .command(reqwest::Method::GET, "/screenshot", None)
                .await;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(png.as_str().unwrap())
                .unwrap();
            std::fs::write(dir.join(format!("{name}{suffix}.png")), bytes).unwrap();
        }
        self.window(1280, 900).await;
    }

    async fn quit(mut self) {
        let _ = self.http.delete(&self.base).send().await;
        self.stop_driver();
        let _ = self.driver.wait().await;
    }

    fn stop_driver(&mut self) {
        if let Some(pid) = self.driver.id() {
            // The whole group: chromedriver and the browser processes it started.
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop_driver();
    }
}
