//! The invitation link opened in a real browser: headless Chromium, driven over the W3C
//! WebDriver protocol by chromedriver, against the portal's development sign-in page. The page
//! reads the token from the link's fragment, posts the acceptance, and shows the portal's answer:
//! the seeds' wrong-tenant remedy, then the acceptance.
//!
//! Chromium and chromedriver come from Debian's packages (`chromium`, `chromium-driver`); when
//! they are missing, the test installs them with apt-get (it needs root), and fails with what to
//! install when it cannot.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Backend, Options, TestPortal, wait_for};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

#[tokio::test]
async fn dev_sign_in_page_shows_the_wrong_tenant_remedy_then_accepts_in_a_real_browser() {
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
    let invitation = platform
        .post(
            &format!("/v1/accounts/{client}/invitations"),
            json!({ "email": "ana@contoso.example", "firstName": "Ana", "lastName": "Silva", "delivery": "Link" }),
        )
        .await
        .expect(201);
    let id = invitation.body["id"].as_str().unwrap().to_owned();
    let link = invitation.body["link"].as_str().unwrap().to_owned();

    let browser = Browser::start().await;

    // Without the token (no fragment), the page says it needs the link.
    browser
        .open(&format!("{}/invitations/accept", portal.base))
        .await;
    let result = browser.find("#result").await;
    assert!(
        browser
            .text(&result)
            .await
            .contains("This page needs the invitation link"),
        "the page explains what it needs"
    );

    browser.open(&link).await;
    let title = browser.execute("return document.title", json!([])).await;
    assert!(
        title.as_str().unwrap().starts_with("DEVELOPMENT sign-in"),
        "the page is labelled: {title}"
    );
    let email = browser.find("#email").await;
    browser.type_into(&email, "ana.silva@contoso.example").await;
    let tenant = browser.find("#tenant").await;
    browser
        .type_into(&tenant, "00000000-0000-0000-0000-000000000001")
        .await;
    let submit = browser.find("button[type=submit]").await;
    browser.click(&submit).await;
    let outcome = browser.outcome().await;
    assert_eq!(outcome, "refused");
    let refusal = browser.text(&browser.find("#result").await).await;
    let lowercase = refusal.to_lowercase();
    assert!(
        refusal.starts_with("Not accepted")
            && lowercase.contains("sign out of all microsoft accounts")
            && lowercase.contains("private browsing window"),
        "the wrong-tenant refusal carries the seeds' remedy: {refusal}"
    );
    assert_eq!(
        platform
            .get(&format!("/v1/invitations/{id}"))
            .await
            .expect(200)
            .body["state"],
        "Pending",
        "a refused attempt leaves the invitation pending"
    );

    // Again with the account's own tenant: accepted.
    browser.clear(&tenant).await;
    browser
        .execute(
            "delete document.getElementById('result').dataset.outcome",
            json!([]),
        )
        .await;
    browser.click(&submit).await;
    assert_eq!(browser.outcome().await, "accepted");
    let accepted = browser.text(&browser.find("#result").await).await;
    assert!(
        accepted.starts_with("Accepted."),
        "the page says so: {accepted}"
    );
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
        // An error may quote the page's address: never print the link's token.
        assert!(
            answer["value"]["error"].is_null(),
            "WebDriver {path}: {}",
            answer["value"]["message"]
                .as_str()
                .unwrap_or_default()
                .split("#token=")
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

    /// Waits for the page to show the portal's answer: "accepted" or "refused".
    async fn outcome(&self) -> String {
        wait_for(
            Duration::from_secs(10),
            "the page to show the answer",
            || async {
                let outcome = self
                    .execute(
                        "return document.getElementById('result').dataset.outcome || null",
                        json!([]),
                    )
                    .await;
                outcome.as_str().map(str::to_owned)
            },
        )
        .await
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
