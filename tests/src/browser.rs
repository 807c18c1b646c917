//! A real headless Chromium driven through WebDriver (chromedriver on a free port),
//! for the console's browser tests: pages visited, forms filled, screenshots saved
//! under `target/console-screenshots/`, and the browser's own console log read.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test.sh` installs them
//! when it runs as root); without them [`Browser::start`] says so and returns `None`.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::wait::{self, PATIENCE};

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

/// One browser session; chromedriver stops when it is dropped.
pub struct Browser {
    pub client: Client,
    driver: Driver,
}

impl Browser {
    /// A headless browser, or `None` (said on stderr) when Chromium is not installed.
    pub async fn start() -> Option<Self> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            eprintln!(
                "SKIPPED: the console's browser tests need {CHROMIUM} and {CHROMEDRIVER} \
                 (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let driver = start_driver().await;
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
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap();
        Some(Self { client, driver })
    }

    /// Ends the browser session.
    pub async fn close(self) {
        self.client.clone().close().await.unwrap();
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Saves the page as `target/console-screenshots/<name>.png`.
    pub async fn shoot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
    }

    /// One of chromedriver's own commands for the session (`se/log`, `goog/cdp/execute`).
    pub async fn driver_command(&self, command: &str, body: Value) -> Value {
        let session = self.client.session_id().await.unwrap().unwrap();
        reqwest::Client::new()
            .post(format!("{}/session/{session}/{command}", self.driver.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The browser's console log since the last read.
    pub async fn log(&self) -> Vec<Value> {
        let answer = self
            .driver_command("se/log", json!({"type": "browser"}))
            .await;
        answer["value"].as_array().cloned().unwrap_or_default()
    }

    /// The page's background colour as the browser computed it.
    pub async fn background(&self) -> String {
        self.client
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

    /// The text of the element `css`, waited for.
    pub async fn text_of(&self, css: &str) -> String {
        self.element(css).await.text().await.unwrap()
    }

    /// The current value of the field `css`.
    pub async fn value_of(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// The path of the page shown.
    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Types into the field `css` (emptied first). A page still replacing the one
    /// before can hand back a field of the old document, gone before it is typed
    /// into: then the field is found again, on the page that stays.
    pub async fn fill(&self, css: &str, text: &str) {
        let mut failed = None;
        for _ in 0..5 {
            let field = self
                .client
                .wait()
                .at_most(PATIENCE)
                .for_element(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no field {css}: {e}"));
            let typed: Result<(), fantoccini::error::CmdError> = async {
                field.clear().await?;
                field.send_keys(text).await
            }
            .await;
            match typed {
                Ok(()) => return,
                Err(e) => failed = Some(e),
            }
        }
        panic!("cannot type into {css}: {failed:?}");
    }

    /// Clicks `css` and waits for the next page to show `then`.
    pub async fn submit(&self, css: &str, then: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(then))
            .await
            .unwrap_or_else(|e| panic!("after {css}, no {then}: {e}"));
    }

    /// Signs in at `console` with `key` and waits for the signed-in bar.
    pub async fn sign_in(&self, console: &str, key: &str) {
        self.goto(&format!("{console}/sign-in")).await;
        self.fill("#key", key).await;
        self.submit("form[action='/sign-in'] button", "form[action='/sign-out']")
            .await;
    }

    /// How far the page scrolls sideways (0: it fits the window's width).
    pub async fn sideways(&self) -> Value {
        self.client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                Vec::new(),
            )
            .await
            .unwrap()
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

/// `target/console-screenshots/`, created when missing.
pub fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// The element `css`, waited for.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    /// The attribute `name` of the element `css`, waited for (`None`: not set).
    pub async fn attr_of(&self, css: &str, name: &str) -> Option<String> {
        self.element(css).await.attr(name).await.unwrap()
    }

    /// Clicks the element `css`, waited for.
    pub async fn click(&self, css: &str) {
        self.element(css).await.click().await.unwrap();
    }

    /// What the browser's log (since the last read) says the Content-Security-Policy
    /// refused. A line written just before must come back, or the log is not read.
    pub async fn csp_violations(&self) -> Vec<Value> {
        self.client
            .execute("console.error('sy-log-probe')", Vec::new())
            .await
            .unwrap();
        let log = self.log().await;
        assert!(
            log.iter().any(|e| e.to_string().contains("sy-log-probe")),
            "the browser log is readable: {log:?}"
        );
        log.into_iter()
            .filter(|e| {
                let m = e["message"].as_str().unwrap_or_default();
                m.contains("Content Security Policy") || m.contains("Refused to")
            })
            .collect()
    }

    /// Clicks `css`, which asks first (the page's `data-confirm`): the question
    /// asked, accepted.
    pub async fn click_confirmed(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let question = self.client.get_alert_text().await.unwrap();
        self.client.accept_alert().await.unwrap();
        question
    }
}
