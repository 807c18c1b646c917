//! The web console in a real browser: headless Chromium driven through WebDriver
//! (chromedriver) against the real binaries. An owner signs in with its key,
//! creates a sub-account (first with a policy wider than its own: the refusal shows
//! next to the field), issues a key (shown once, copied by the page's script), signs
//! out; the sub-account meets the 403 page of an Admin URL. Each page is saved as a
//! screenshot under `target/console-screenshots/`, and the browser's console log
//! must show no Content-Security-Policy violation.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test.sh` installs them
//! when it runs as root); without them the test says so and skips.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a scenario fails loudly on the first surprise"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{Value, json};
use switchyard_core::apikey;
use switchyard_tests::system::start_system;
use switchyard_tests::wait::{self, PATIENCE};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, stopped (by its own pid) when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let status = format!("{}/status", driver.url);
    wait::until_ok(PATIENCE, "chromedriver to answer", async || {
        match http.get(&status).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("status {}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    driver
}

async fn browser(driver: &Driver) -> Client {
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1200,900"],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let Value::Object(capabilities) = capabilities else {
        panic!("capabilities are an object")
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap()
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shoot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// One of chromedriver's own commands for the session (`se/log`, `goog/cdp/execute`).
async fn driver_command(driver: &Driver, client: &Client, command: &str, body: Value) -> Value {
    let session = client.session_id().await.unwrap().unwrap();
    reqwest::Client::new()
        .post(format!("{}/session/{session}/{command}", driver.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The browser's console log since the last read.
async fn browser_log(driver: &Driver, client: &Client) -> Vec<Value> {
    let answer = driver_command(driver, client, "se/log", json!({"type": "browser"})).await;
    answer["value"].as_array().cloned().unwrap_or_default()
}

/// The page's background colour as the browser computed it.
async fn background(client: &Client) -> String {
    client
        .execute(
            "return getComputedStyle(document.body).backgroundColor",
            Vec::new(),
        )
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// The current value of the field `css`.
async fn value_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn path_of(client: &Client) -> String {
    client.current_url().await.unwrap().path().to_owned()
}

/// Types into the field `css` (emptied first).
async fn fill(client: &Client, css: &str, text: &str) {
    let field = client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Clicks `css` and waits for the next page to show `then`.
async fn submit(client: &Client, css: &str, then: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(then))
        .await
        .unwrap_or_else(|e| panic!("after {css}, no {then}: {e}"));
}

async fn sign_in(client: &Client, console: &str, key: &str) {
    client.goto(&format!("{console}/sign-in")).await.unwrap();
    fill(client, "#key", key).await;
    submit(
        client,
        "form[action='/sign-in'] button",
        "form[action='/sign-out']",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_works_in_the_console() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        eprintln!(
            "SKIPPED: the console's browser test needs {CHROMIUM} and {CHROMEDRIVER} \
             (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let sys = start_system(1 << 20).await;
    let console = sys.control.url("http");
    let (status, acme) = sys
        .post("/x-users", &sys.root, json!({"name": "acme"}))
        .await;
    assert_eq!(status, 201, "{acme}");
    let key = acme["api_key"].as_str().unwrap().to_owned();
    let acme_id = acme["account"]["id"].as_str().unwrap().to_owned();
    let (status, _) = sys
        .call(
            Method::PATCH,
            format!("/x-users/{acme_id}"),
            sys.root.clone(),
            Some(json!({"policy": {"rpm": 100}})),
        )
        .await;
    assert_eq!(status, 200);

    let driver = start_driver().await;
    let client = browser(&driver).await;
    // The log is read: a line written now must come back.
    client
        .execute("console.error('sy-log-probe')", Vec::new())
        .await
        .unwrap();
    let probe = browser_log(&driver, &client).await;
    assert!(
        probe.iter().any(|e| e.to_string().contains("sy-log-probe")),
        "the browser log is readable: {probe:?}"
    );

    // Sign-in page, then the overview.
    client.goto(&format!("{console}/")).await.unwrap();
    assert_eq!(
        path_of(&client).await,
        "/sign-in",
        "unsigned: sent to sign in"
    );
    text_of(&client, "label[for='key']").await;
    shoot(&client, "01-sign-in").await;
    fill(&client, "#key", "sy-wrong").await;
    submit(&client, "form[action='/sign-in'] button", "#key-error").await;
    assert!(
        text_of(&client, "#key-error")
            .await
            .contains("invalid API key")
    );
    sign_in(&client, &console, &key).await;
    assert_eq!(path_of(&client).await, "/");
    assert_eq!(text_of(&client, "h1").await, "Overview");
    assert!(text_of(&client, ".who span").await.contains("acme"));
    shoot(&client, "02-overview").await;

    // A sub-account: a policy wider than the owner's is refused next to its field,
    // then a valid one is created and its key shown once.
    client.goto(&format!("{console}/accounts")).await.unwrap();
    fill(&client, "#name", "team").await;
    fill(&client, "#policy", r#"{"rpm": 1000}"#).await;
    submit(&client, "form[action='/accounts'] button", "#policy-error").await;
    let refusal = text_of(&client, "#policy-error").await;
    assert!(refusal.contains("policy exceeds the parent's"), "{refusal}");
    let invalid = client
        .find(Locator::Css("#policy"))
        .await
        .unwrap()
        .attr("aria-invalid")
        .await
        .unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));
    shoot(&client, "03-sub-account-refused").await;
    fill(&client, "#policy", r#"{"rpm": 50}"#).await;
    submit(&client, "form[action='/accounts'] button", "#new-key").await;
    let child_key = value_of(&client, "#new-key").await;
    assert!(apikey::is_well_formed(&child_key), "{child_key}");
    assert!(text_of(&client, "table").await.contains("team"));
    shoot(&client, "04-sub-account-created").await;

    // A key: shown once, copied by the page's script; gone on the next visit.
    client.goto(&format!("{console}/keys")).await.unwrap();
    submit(&client, "form[action='/keys'] button", "#new-key").await;
    let new_key = value_of(&client, "#new-key").await;
    assert!(apikey::is_well_formed(&new_key));
    client
        .find(Locator::Css("button[data-copy='new-key']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let copied = wait::until(PATIENCE, "the copy button to answer", async || {
        let t = text_of(&client, ".copied").await;
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert!(
        copied.starts_with("Copied") || copied.starts_with("Selected"),
        "{copied}"
    );
    shoot(&client, "05-key-created").await;
    client.goto(&format!("{console}/keys")).await.unwrap();
    text_of(&client, "table").await;
    assert!(
        !client.source().await.unwrap().contains(&new_key),
        "a key is shown once"
    );
    client.set_window_size(380, 900).await.unwrap();
    let sideways = client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        sideways,
        json!(0),
        "a narrow window does not scroll sideways"
    );
    shoot(&client, "06-keys-narrow").await;
    client.set_window_size(1200, 900).await.unwrap();

    // Revoking asks first (the page's script), then the key shows as revoked.
    let row = format!("//tr[td/code[text()='{}']]", apikey::display_tail(&new_key));
    client
        .find(Locator::XPath(&format!("{row}//button")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let question = client.get_alert_text().await.unwrap();
    assert!(question.starts_with("Revoke this key?"), "{question}");
    client.accept_alert().await.unwrap();
    let status = format!("{row}//span[contains(@class, 'status')]");
    wait::until(PATIENCE, "the key to show as revoked", async || {
        let shown = client.find(Locator::XPath(&status)).await.ok()?;
        (shown.text().await.ok()? == "revoked").then_some(())
    })
    .await;
    let (code, _) = sys
        .call(Method::GET, "/x-self".into(), new_key.clone(), None)
        .await;
    assert_eq!(code, 401, "the revoked key is refused by the API too");

    // Sign-out ends the session.
    submit(&client, "form[action='/sign-out'] button", "#key").await;
    assert_eq!(path_of(&client).await, "/sign-in");
    client.goto(&format!("{console}/keys")).await.unwrap();
    assert!(path_of(&client).await.starts_with("/sign-in"));

    // The sub-account types an Admin URL: not allowed.
    sign_in(&client, &console, &child_key).await;
    client
        .goto(&format!("{console}/admin/provider-keys"))
        .await
        .unwrap();
    assert_eq!(text_of(&client, "h1").await, "Not allowed");
    assert!(
        text_of(&client, "[data-status='403']")
            .await
            .contains("only a main account manages provider keys")
    );
    shoot(&client, "07-admin-forbidden").await;

    // A system in dark mode gets the dark colours.
    client.goto(&format!("{console}/")).await.unwrap();
    let light = background(&client).await;
    driver_command(
        &driver,
        &client,
        "goog/cdp/execute",
        json!({"cmd": "Emulation.setEmulatedMedia", "params": {
            "features": [{"name": "prefers-color-scheme", "value": "dark"}]}}),
    )
    .await;
    let dark = background(&client).await;
    assert_eq!(light, "rgb(246, 247, 249)");
    assert_eq!(dark, "rgb(15, 18, 22)");
    shoot(&client, "08-overview-dark").await;

    let log = browser_log(&driver, &client).await;
    let violations: Vec<&Value> = log
        .iter()
        .filter(|e| {
            let m = e["message"].as_str().unwrap_or_default();
            m.contains("Content Security Policy") || m.contains("Refused to")
        })
        .collect();
    assert!(violations.is_empty(), "CSP violations: {violations:?}");
    client.close().await.unwrap();
}
