//! The console's Operator and Admin provider-key pages in a real browser (headless
//! Chromium through WebDriver) against the real binaries and a fake upstream. The
//! operator creates a main account (its key shown once, copied by the page's
//! script) and signs out; the owner signs in with that key, adds a provider key
//! (first one the base-URL rule refuses, shown beside the field with the secret not
//! filled back), sees it healthy after a call, asks its upstream for its models,
//! disables it (the data plane stops using it), deletes it; no page and no log
//! shows the secret. Each page is saved as a screenshot under
//! `target/console-screenshots/`, and the browser's log must show no
//! Content-Security-Policy violation.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test says so
//! and skips.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_core::apikey;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::browser::Browser;
use switchyard_tests::system::{System, chat, start_system, wait_for_key};
use switchyard_tests::wait::{self, PATIENCE};

/// The provider secret typed into the form; no page may show it.
const SECRET: &str = "sk-browser-typed-secret-0123456789";

/// One chat call through the data plane with `key`: its status and answer.
async fn call(sys: &System, key: &str) -> (StatusCode, Value) {
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat("hello", false))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_makes_an_owner_who_manages_provider_keys() {
    let sys = start_system(1 << 20).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    fake.set_models(&["gpt-4o", "gpt-4o-mini"]);
    let console = sys.control.url("http");
    let Some(b) = Browser::start().await else {
        return;
    };
    let client = &b.client;

    // The operator: main accounts, one created with its key shown once.
    b.sign_in(&console, &sys.root).await;
    b.goto(&format!("{console}/operator/accounts")).await;
    assert_eq!(b.text_of("h1").await, "Main accounts");
    b.shoot("console-admin-01-operator-accounts").await;
    b.fill("#name", "acme").await;
    b.submit("form[action='/operator/accounts'] button", "#new-key")
        .await;
    let key = b.value_of("#new-key").await;
    assert!(apikey::is_well_formed(&key), "{key}");
    b.click("button[data-copy='new-key']").await;
    wait::until(PATIENCE, "the copy button to answer", async || {
        let t = b.text_of(".copied").await;
        (!t.is_empty()).then_some(())
    })
    .await;
    assert!(b.text_of("table").await.contains("acme"));
    b.shoot("console-admin-02-operator-created").await;
    b.goto(&format!("{console}/operator/accounts")).await;
    b.text_of("table").await;
    assert!(
        !client.source().await.unwrap().contains(&key),
        "the key is shown once"
    );
    b.submit("form[action='/sign-out'] button", "#key").await;

    // The owner: no provider keys yet; no Operator page.
    b.sign_in(&console, &key).await;
    b.goto(&format!("{console}/operator/accounts")).await;
    assert_eq!(b.text_of("h1").await, "Not allowed");
    b.goto(&format!("{console}/admin/provider-keys")).await;
    assert_eq!(b.text_of("h1").await, "Provider keys");
    b.shoot("console-admin-03-provider-keys-empty").await;

    // Refused by the base-URL rule: the reason beside the field, everything typed
    // back but the secret.
    let with_credentials = fake.base_url().replace("http://", "http://user:pw@");
    b.fill("#base_url", &with_credentials).await;
    b.fill("#secret", SECRET).await;
    b.fill("#models", "gpt-4o*").await;
    b.fill("#weight", "2").await;
    b.submit(
        "form[action='/admin/provider-keys'] button",
        "#base_url-error",
    )
    .await;
    let refusal = b.text_of("#base_url-error").await;
    assert!(refusal.contains("must not carry credentials"), "{refusal}");
    assert_eq!(
        b.attr_of("#base_url", "aria-invalid").await.as_deref(),
        Some("true")
    );
    assert_eq!(b.value_of("#base_url").await, with_credentials);
    assert_eq!(b.value_of("#models").await, "gpt-4o*");
    assert_eq!(b.value_of("#weight").await, "2");
    assert_eq!(
        b.value_of("#secret").await,
        "",
        "the secret is not filled back"
    );
    assert!(!client.source().await.unwrap().contains(SECRET));
    b.shoot("console-admin-04-provider-key-refused").await;

    // Added: listed, its health unknown until a call.
    b.fill("#base_url", &fake.base_url()).await;
    b.fill("#secret", SECRET).await;
    b.submit("form[action='/admin/provider-keys'] button", "#added-h")
        .await;
    let row = b.text_of("table").await;
    assert!(row.contains(&fake.base_url()), "{row}");
    assert!(row.contains("gpt-4o*"), "{row}");
    assert!(!client.source().await.unwrap().contains(SECRET));
    b.shoot("console-admin-05-provider-key-added").await;
    let (status, keys) = sys
        .call(Method::GET, "/x-keys".into(), key.clone(), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(keys[0]["weight"], 2, "{keys}");
    let id = keys[0]["id"].as_str().unwrap().to_owned();

    // A call through the data plane: the key serves it, and the page shows it
    // healthy once the data plane has reported.
    wait_for_key(&sys, &key).await;
    wait::until_ok(PATIENCE, "a call served through the new key", async || {
        let (status, body) = call(&sys, &key).await;
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
    let list = format!("{console}/admin/provider-keys");
    wait::until_ok(PATIENCE, "the key to show as healthy", async || {
        b.goto(&list).await;
        let badge = b.text_of("tr[data-key] .badge").await;
        if badge == "Healthy" {
            Ok(())
        } else {
            Err(badge)
        }
    })
    .await;
    b.shoot("console-admin-06-provider-key-healthy").await;
    client.set_window_size(380, 900).await.unwrap();
    assert_eq!(b.sideways().await, json!(0), "the list at phone width");
    b.shoot("console-admin-07-provider-keys-narrow").await;
    client.set_window_size(1200, 900).await.unwrap();

    // The key's page: its upstream asked for its models now.
    fake.set_models(&["gpt-4o", "gpt-4o-mini", "gpt-4o-2026"]);
    b.click(&format!("a[href='/admin/provider-keys/{id}']"))
        .await;
    b.text_of("#key-health").await;
    let key_page = format!("{console}/admin/provider-keys/{id}");
    assert_eq!(b.path().await, format!("/admin/provider-keys/{id}"));
    b.submit("form[action$='/discover'] button", "#notice")
        .await;
    let notice = b.text_of("#notice").await;
    assert!(notice.contains("it lists 3 models"), "{notice}");
    assert!(b.text_of("#discovered").await.contains("gpt-4o-2026"));
    assert!(!client.source().await.unwrap().contains(SECRET));
    b.shoot("console-admin-08-provider-key-discovered").await;
    client.set_window_size(380, 900).await.unwrap();
    assert_eq!(b.sideways().await, json!(0), "a key's page at phone width");
    client.set_window_size(1200, 900).await.unwrap();

    // Disabled: the data plane stops using it; the call fails as the API says.
    b.goto(&key_page).await;
    b.submit("form[action$='/status'] button", "#notice").await;
    assert!(b.text_of("#notice").await.starts_with("Disabled"));
    assert_eq!(b.text_of("#key-status").await, "disabled");
    b.shoot("console-admin-09-provider-key-disabled").await;
    let refused = wait::until_ok(PATIENCE, "a disabled key to serve no more", async || {
        let (status, body) = call(&sys, &key).await;
        if status == StatusCode::NOT_FOUND {
            Ok(body)
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no provider key of this account serves model"),
        "{refused}"
    );

    // Deleted, after the page asks.
    b.click("form[action$='/delete'] button").await;
    let question = client.get_alert_text().await.unwrap();
    assert!(
        question.starts_with("Delete this provider key?"),
        "{question}"
    );
    client.accept_alert().await.unwrap();
    wait::until(PATIENCE, "the list after deleting", async || {
        (b.path().await == "/admin/provider-keys").then_some(())
    })
    .await;
    assert!(
        b.text_of("#list-h + p")
            .await
            .contains("No provider keys yet")
    );
    b.shoot("console-admin-10-provider-key-deleted").await;
    let (status, keys) = sys
        .call(Method::GET, "/x-keys".into(), key.clone(), None)
        .await;
    assert_eq!((status, keys), (200, json!([])));
    assert!(
        !client.source().await.unwrap().contains(SECRET),
        "no page shows the secret"
    );

    let control_log = sys.control.log();
    assert!(
        control_log.contains("provider key added"),
        "the log is read"
    );
    for (name, log) in [
        ("control plane", control_log),
        ("data plane", sys.data.log()),
    ] {
        assert!(!log.contains(SECRET), "the {name} logs the secret");
    }

    let violations = b.csp_violations().await;
    assert!(violations.is_empty(), "CSP violations: {violations:?}");
    b.close().await;
}
