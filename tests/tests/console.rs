//! The web console in a real browser: headless Chromium driven through WebDriver
//! (chromedriver) against the real binaries. An owner signs in with its key,
//! creates a sub-account (first with a policy wider than its own: the refusal shows
//! next to the field), issues a key (shown once, copied by the page's script), signs
//! out; the sub-account meets the 403 page of an Admin URL. Each page is saved as a
//! screenshot under `target/console-screenshots/`, and the browser's console log
//! must show no Content-Security-Policy violation. A second scenario goes from an
//! empty main account to a metered call in the browser alone (provider key, ModelMapper
//! rule, sub-account within bounds, its key calling the proxy, the call on the Usage page);
//! a third shows what a session withstands (a form from another origin, a replayed
//! cookie after sign-out, repeated wrong keys).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test.sh` installs them
//! when it runs as root); without them the test says so and skips.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

use fantoccini::Locator;
use reqwest::Method;
use serde_json::{Value, json};
use switchyard_core::apikey;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::browser::Browser;
use switchyard_tests::system::{System, chat, start_system, wait_for_key};
use switchyard_tests::wait::{self, PATIENCE};

/// A main account made by the operator, with `policy` as its own: its key and id.
async fn main_account(sys: &System, name: &str, policy: Value) -> (String, String) {
    let (status, made) = sys.post("/x-users", &sys.root, json!({"name": name})).await;
    assert_eq!(status, 201, "{made}");
    let key = made["api_key"].as_str().unwrap().to_owned();
    let id = made["account"]["id"].as_str().unwrap().to_owned();
    if !policy.is_null() {
        let (status, answer) = sys
            .call(
                Method::PATCH,
                format!("/x-users/{id}"),
                sys.root.clone(),
                Some(json!({ "policy": policy })),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    (key, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_works_in_the_console() {
    let sys = start_system(1 << 20).await;
    let console = sys.control.url("http");
    let (key, _) = main_account(&sys, "acme", json!({"rpm": 100})).await;

    let Some(b) = Browser::start().await else {
        return;
    };
    let client = &b.client;
    // The log is read: a line written now must come back.
    client
        .execute("console.error('sy-log-probe')", Vec::new())
        .await
        .unwrap();
    let probe = b.log().await;
    assert!(
        probe.iter().any(|e| e.to_string().contains("sy-log-probe")),
        "the browser log is readable: {probe:?}"
    );

    // Sign-in page, then the overview.
    b.goto(&format!("{console}/")).await;
    assert_eq!(b.path().await, "/sign-in", "unsigned: sent to sign in");
    b.text_of("label[for='key']").await;
    b.shoot("01-sign-in").await;
    b.fill("#key", "sy-wrong").await;
    b.submit("form[action='/sign-in'] button", "#key-error")
        .await;
    assert!(b.text_of("#key-error").await.contains("invalid API key"));
    b.sign_in(&console, &key).await;
    assert_eq!(b.path().await, "/");
    assert_eq!(b.text_of("h1").await, "Overview");
    assert!(b.text_of(".who span").await.contains("acme"));
    b.shoot("02-overview").await;

    // A sub-account: a policy wider than the owner's is refused next to its field,
    // then a valid one is created and its key shown once.
    b.goto(&format!("{console}/accounts")).await;
    b.fill("#name", "team").await;
    b.fill("#policy", r#"{"rpm": 1000}"#).await;
    b.submit("form[action='/accounts'] button", "#policy-error")
        .await;
    let refusal = b.text_of("#policy-error").await;
    assert!(refusal.contains("policy exceeds the parent's"), "{refusal}");
    let invalid = client
        .find(Locator::Css("#policy"))
        .await
        .unwrap()
        .attr("aria-invalid")
        .await
        .unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));
    b.shoot("03-sub-account-refused").await;
    b.fill("#policy", r#"{"rpm": 50}"#).await;
    b.submit("form[action='/accounts'] button", "#new-key")
        .await;
    let child_key = b.value_of("#new-key").await;
    assert!(apikey::is_well_formed(&child_key), "{child_key}");
    assert!(b.text_of("table").await.contains("team"));
    b.shoot("04-sub-account-created").await;

    // A key: shown once, copied by the page's script; gone on the next visit.
    b.goto(&format!("{console}/keys")).await;
    b.submit("form[action='/keys'] button", "#new-key").await;
    let new_key = b.value_of("#new-key").await;
    assert!(apikey::is_well_formed(&new_key));
    client
        .find(Locator::Css("button[data-copy='new-key']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let copied = wait::until(PATIENCE, "the copy button to answer", async || {
        let t = b.text_of(".copied").await;
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert!(
        copied.starts_with("Copied") || copied.starts_with("Selected"),
        "{copied}"
    );
    b.shoot("05-key-created").await;
    b.goto(&format!("{console}/keys")).await;
    b.text_of("table").await;
    assert!(
        !client.source().await.unwrap().contains(&new_key),
        "a key is shown once"
    );
    client.set_window_size(380, 900).await.unwrap();
    let sideways = b.sideways().await;
    assert_eq!(
        sideways,
        json!(0),
        "a narrow window does not scroll sideways"
    );
    b.shoot("06-keys-narrow").await;
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
    b.submit("form[action='/sign-out'] button", "#key").await;
    assert_eq!(b.path().await, "/sign-in");
    b.goto(&format!("{console}/keys")).await;
    assert!(b.path().await.starts_with("/sign-in"));

    // The sub-account types an Admin URL: not allowed.
    b.sign_in(&console, &child_key).await;
    client
        .goto(&format!("{console}/admin/provider-keys"))
        .await
        .unwrap();
    assert_eq!(b.text_of("h1").await, "Not allowed");
    assert!(
        b.text_of("[data-status='403']")
            .await
            .contains("only a main account manages provider keys")
    );
    b.shoot("07-admin-forbidden").await;

    // A system in dark mode gets the dark colours.
    b.goto(&format!("{console}/")).await;
    let light = b.background().await;
    b.driver_command(
        "goog/cdp/execute",
        json!({"cmd": "Emulation.setEmulatedMedia", "params": {
            "features": [{"name": "prefers-color-scheme", "value": "dark"}]}}),
    )
    .await;
    let dark = b.background().await;
    assert_eq!(light, "rgb(246, 247, 249)");
    assert_eq!(dark, "rgb(15, 18, 22)");
    b.shoot("08-overview-dark").await;

    let violations = b.csp_violations().await;
    assert!(violations.is_empty(), "CSP violations: {violations:?}");
    b.close().await;
}

/// The whole way from an empty main account to a metered call, in the browser only:
/// a provider key added, a ModelMapper rule set, a sub-account made within bounds,
/// its key (shown once) calling the proxy by the mapped name, and the call on the
/// Usage page within seconds. Another owner's account is not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_goes_from_an_empty_account_to_a_metered_call() {
    let sys = start_system(1 << 20).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let console = sys.control.url("http");
    let (key, _) = main_account(&sys, "acme", json!({"rpm": 100})).await;
    let (_, globex_id) = main_account(&sys, "globex", Value::Null).await;

    let Some(b) = Browser::start().await else {
        return;
    };
    b.sign_in(&console, &key).await;

    // The provider key: the fake upstream, for gpt-4o models.
    b.goto(&format!("{console}/admin/provider-keys")).await;
    b.fill("#base_url", &fake.base_url()).await;
    b.fill("#secret", "sk-journey-0123456789abcdef").await;
    b.fill("#models", "gpt-4o*").await;
    b.submit("form[action='/admin/provider-keys'] button", "#added-h")
        .await;
    assert!(b.text_of("table").await.contains(&fake.base_url()));
    b.shoot("journey-01-provider-key").await;

    // The rule: `smart` is served as gpt-4o-mini.
    b.goto(&format!("{console}/admin/rules")).await;
    b.fill("#model_mapper-value", r#"{"smart": "gpt-4o-mini"}"#)
        .await;
    b.submit("#model_mapper button[type='submit']", "p.notice")
        .await;
    b.shoot("journey-02-model-mapper").await;

    // A sub-account: too wide first (refused beside the field), then within bounds.
    b.goto(&format!("{console}/accounts")).await;
    b.fill("#name", "team").await;
    b.fill("#policy", r#"{"rpm": 1000}"#).await;
    b.submit("form[action='/accounts'] button", "#policy-error")
        .await;
    assert!(
        b.text_of("#policy-error")
            .await
            .contains("policy exceeds the parent's")
    );
    b.fill("#policy", r#"{"rpm": 50}"#).await;
    b.submit("form[action='/accounts'] button", "#new-key")
        .await;
    let team_key = b.value_of("#new-key").await;
    assert!(apikey::is_well_formed(&team_key), "{team_key}");
    b.shoot("journey-03-sub-account-key").await;

    // The key calls the proxy by the mapped name; the upstream sees the target.
    wait_for_key(&sys, &team_key).await;
    let mut body = chat("hello", false);
    body["model"] = json!("smart");
    wait::until(
        PATIENCE,
        "a call by the mapped name to be served",
        async || {
            let r = sys
                .http
                .post(sys.proxy("/v1/chat/completions"))
                .bearer_auth(&team_key)
                .json(&body)
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    let seen = fake.observed().bodies.lock().unwrap().last().cloned();
    assert_eq!(seen.unwrap()["model"], "gpt-4o-mini");

    // The Usage page shows the call within seconds.
    let usage = format!("{console}/usage?by=model");
    wait::until(PATIENCE, "the call on the Usage page", async || {
        b.goto(&usage).await;
        let table = b
            .client
            .find(Locator::Css("#usage-table tbody"))
            .await
            .ok()?;
        table
            .text()
            .await
            .ok()
            .filter(|t| t.contains("gpt-4o-mini"))
    })
    .await;
    b.shoot("journey-04-usage").await;

    // Another owner's account is not found, typed by hand.
    b.goto(&format!("{console}/accounts/{globex_id}")).await;
    assert_eq!(b.text_of("h1").await, "Not found");

    let violations = b.csp_violations().await;
    assert!(violations.is_empty(), "CSP violations: {violations:?}");
    b.close().await;
}

/// What a session withstands: a form posted from another origin of the same site
/// (the cookie travels, the CSRF token is right, only the origin is wrong) changes
/// nothing; signing out ends the session for its cookie wherever it is replayed;
/// repeated wrong keys slow the address down, the right key included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_with_sign_out_and_forged_forms_fail() {
    let sys = start_system(1 << 20).await;
    // Another origin on the same site: a page there may post to the console.
    let elsewhere = FakeUpstream::start(None).await.unwrap();
    let console = sys.control.url("http");
    let (key, _) = main_account(&sys, "acme", Value::Null).await;
    let own_keys = async || {
        let (status, me) = sys
            .call(Method::GET, "/x-self".into(), key.clone(), None)
            .await;
        assert_eq!(status, 200, "{me}");
        me["keys"].as_array().map_or(0, Vec::len)
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let visit = async |cookie: &str| {
        http.get(format!("{console}/keys"))
            .header("cookie", format!("sy_console={cookie}"))
            .send()
            .await
            .unwrap()
            .status()
    };

    let Some(b) = Browser::start().await else {
        return;
    };
    b.sign_in(&console, &key).await;
    let cookie = b
        .client
        .get_named_cookie("sy_console")
        .await
        .unwrap()
        .value()
        .to_owned();
    assert_eq!(visit(&cookie).await, 200, "the session's cookie is live");

    // A forged form: the right token, posted from the other origin.
    b.goto(&format!("{console}/keys")).await;
    let csrf = b.value_of("form[action='/keys'] input[name='csrf']").await;
    let before = own_keys().await;
    b.goto(&elsewhere.base_url()).await;
    b.client
        .execute(
            "const f = document.createElement('form');
             f.method = 'POST'; f.action = arguments[0];
             const i = document.createElement('input');
             i.type = 'hidden'; i.name = 'csrf'; i.value = arguments[1];
             f.appendChild(i); document.body.appendChild(f); f.submit();",
            vec![json!(format!("{console}/keys")), json!(csrf)],
        )
        .await
        .unwrap();
    assert!(
        b.text_of("[data-status='403']")
            .await
            .contains("did not come from this console's page")
    );
    b.shoot("09-forged-form-refused").await;
    assert_eq!(own_keys().await, before, "the forged form made no key");

    // Signing out ends the session: its cookie, replayed, is sent to sign in.
    b.goto(&format!("{console}/")).await;
    b.submit("form[action='/sign-out'] button", "#key").await;
    let replayed = visit(&cookie).await;
    assert!(
        replayed.is_redirection(),
        "the old cookie is refused: {replayed}"
    );
    b.goto(&format!("{console}/keys")).await;
    assert_eq!(b.path().await, "/sign-in");

    // Wrong keys: after five failures the address waits, whatever it sends.
    for _ in 0..5 {
        b.fill("#key", "sy-wrong").await;
        b.submit("form[action='/sign-in'] button", "#key-error")
            .await;
    }
    b.fill("#key", &key).await;
    b.submit("form[action='/sign-in'] button", "#key-error")
        .await;
    let slowed = b.text_of("#key-error").await;
    assert!(slowed.contains("Too many failed sign-ins"), "{slowed}");
    b.shoot("10-sign-in-slowed").await;

    let violations = b.csp_violations().await;
    assert!(violations.is_empty(), "CSP violations: {violations:?}");
    b.close().await;
}
