//! The console's Manage pages in a real browser (headless Chromium through
//! WebDriver) against the real binaries: an owner signs in, searches its tree, opens
//! a grandchild, sets its policy too wide (the refusal shows beside the field, next
//! to the parent's bound) then within bounds, tops up credit (the ledger shows it),
//! issues the grandchild a key (shown once; the data plane serves it), disables the
//! grandchild (the data plane refuses its key soon after) and rotates its own key.
//! Each page is saved as a screenshot under `target/console-screenshots/`; the
//! browser's console log must show no Content-Security-Policy violation.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test says so
//! and skips.

use fantoccini::Locator;
use reqwest::{Method, StatusCode};
use serde_json::json;
use switchyard_core::apikey;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::browser::Browser;
use switchyard_tests::system::{System, chat, start_system, wait_for_key};
use switchyard_tests::wait::{self, PATIENCE};

/// The status of a chat call with `key` through the data plane (`None`: no answer).
async fn chat_status(sys: &System, key: &str) -> Option<StatusCode> {
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat("hello", false))
        .send()
        .await
        .ok()?;
    Some(r.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_manages_its_tree_in_the_console() {
    let sys = start_system(1 << 20).await;
    let console = sys.control.url("http");
    let fake = FakeUpstream::start(None).await.unwrap();
    let (acme, key) = sys.owner("acme", &fake).await;
    let acme_id = acme["account"]["id"].as_str().unwrap().to_owned();
    let (status, _) = sys
        .call(
            Method::PATCH,
            format!("/x-users/{acme_id}"),
            sys.root.clone(),
            Some(json!({"policy": {"rpm": 100, "models": ["gpt-4o*"]}})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, team) = sys
        .post(
            "/x-users",
            &key,
            json!({"name": "team", "policy": {"rpm": 50}}),
        )
        .await;
    let team_key = team["api_key"].as_str().unwrap().to_owned();
    let (_, dev) = sys
        .post("/x-users", &team_key, json!({"name": "dev"}))
        .await;
    let dev_id = dev["account"]["id"].as_str().unwrap().to_owned();
    for name in ["ops", "research"] {
        let (status, _) = sys.post("/x-users", &key, json!({"name": name})).await;
        assert_eq!(status, 201);
    }

    let Some(b) = Browser::start().await else {
        return;
    };
    let client = &b.client;
    b.sign_in(&console, &key).await;

    // The tree, then a search that finds the grandchild.
    b.goto(&format!("{console}/accounts")).await;
    let tree = b.text_of("table.tree").await;
    for name in ["team", "ops", "research", "dev"] {
        assert!(tree.contains(name), "{name} in {tree}");
    }
    b.shoot("manage-01-tree").await;
    b.fill("#q", "DE").await;
    // Only a search's page offers the way back to the whole tree.
    b.submit("form.search button", "form.search a").await;
    let found = b.text_of("table.tree tbody").await;
    assert!(found.contains("dev") && !found.contains("ops"), "{found}");
    assert_eq!(
        b.text_of("tr[data-depth='2'] td").await,
        "2",
        "the grandchild's depth"
    );
    b.shoot("manage-02-search").await;

    // The grandchild's page: team's effective bounds beside its fields.
    client
        .find(Locator::LinkText("dev"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.text_of("#rpm-bound").await;
    assert_eq!(b.path().await, format!("/accounts/{dev_id}"));
    assert_eq!(b.text_of("[data-bound='rpm']").await, "50");
    assert_eq!(b.text_of("[data-bound='models']").await, "gpt-4o*");
    b.shoot("manage-03-grandchild").await;

    // Too wide: the service's refusal beside the field and its bound; then valid.
    b.fill("#rpm", "1000").await;
    b.submit("form[action$='/policy'] button", "#rpm-error")
        .await;
    let refusal = b.text_of("#rpm-error").await;
    assert_eq!(refusal, "rpm: 1000 exceeds the parent's 50");
    let described = client
        .find(Locator::Css("#rpm"))
        .await
        .unwrap()
        .attr("aria-describedby")
        .await
        .unwrap();
    assert_eq!(described.as_deref(), Some("rpm-bound rpm-error"));
    let focused = client
        .execute("return document.activeElement.id", Vec::new())
        .await
        .unwrap();
    assert_eq!(focused, json!("rpm"), "the refused field has the focus");
    b.shoot("manage-04-policy-refused").await;
    let (_, info) = sys
        .call(
            Method::GET,
            format!("/x-info?id={dev_id}"),
            key.clone(),
            None,
        )
        .await;
    assert_eq!(info["policy"], json!({}), "nothing changed");
    b.fill("#rpm", "20").await;
    b.submit("form[action$='/policy'] button", ".notice").await;
    assert_eq!(b.text_of(".notice").await, "Policy saved.");
    assert_eq!(b.value_of("#rpm").await, "20");
    b.shoot("manage-05-policy-saved").await;
    client.set_window_size(380, 900).await.unwrap();
    assert_eq!(
        b.sideways().await,
        json!(0),
        "a narrow window does not scroll sideways"
    );
    b.shoot("manage-05-account-narrow").await;
    client.set_window_size(1200, 900).await.unwrap();

    // Credit: the grandchild's parent, team, is the owner's to top up.
    client
        .find(Locator::Css(".crumbs a.parent"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.text_of("label[for='amount']").await;
    assert_eq!(b.text_of("h1").await, "team");
    b.fill("#amount", "12.5").await;
    b.fill("#note", "first month").await;
    b.submit("form[action$='/credit'] button", "table.ledger")
        .await;
    let ledger = b.text_of("table.ledger tbody").await;
    assert!(
        ledger.contains("$12.5000") && ledger.contains("first month"),
        "{ledger}"
    );
    assert_eq!(b.text_of("[data-figure='allocated']").await, "$12.5000");
    client
        .execute(
            "document.getElementById('credit-h').scrollIntoView()",
            Vec::new(),
        )
        .await
        .unwrap();
    b.shoot("manage-06-credit").await;

    // A key for the grandchild: shown once; the data plane serves it.
    b.goto(&format!("{console}/accounts/{dev_id}")).await;
    b.submit("form[action$='/keys'] button", "#new-key").await;
    let dev_key = b.value_of("#new-key").await;
    assert!(apikey::is_well_formed(&dev_key), "{dev_key}");
    b.shoot("manage-07-key-issued").await;
    b.goto(&format!("{console}/accounts/{dev_id}")).await;
    b.text_of("#rpm-bound").await;
    assert!(
        !client.source().await.unwrap().contains(&dev_key),
        "a key is shown once"
    );
    wait_for_key(&sys, &dev_key).await;
    assert_eq!(chat_status(&sys, &dev_key).await, Some(StatusCode::OK));

    // Disable (the page asks first): the data plane refuses the key soon after.
    let question = b.click_confirmed("#disable").await;
    assert!(question.starts_with("Disable dev?"), "{question}");
    wait::until(PATIENCE, "the account to show as disabled", async || {
        let shown = client
            .find(Locator::Css("[data-status-of='account']"))
            .await
            .ok()?;
        (shown.text().await.ok()? == "disabled").then_some(())
    })
    .await;
    b.shoot("manage-08-disabled").await;
    let refused = wait::until(PATIENCE, "the data plane to refuse the key", async || {
        chat_status(&sys, &dev_key)
            .await
            .filter(|s| *s != StatusCode::OK)
    })
    .await;
    assert!(
        matches!(refused, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
        "{refused}"
    );

    // The owner rotates its own key with an hour's overlap: the new key once.
    b.goto(&format!("{console}/keys")).await;
    b.fill("#overlap", "60").await;
    let question = b
        .click_confirmed("form[action='/keys/rotate'] button")
        .await;
    assert!(question.starts_with("Rotate the key"), "{question}");
    let rotated = wait::until(PATIENCE, "the rotated key to show", async || {
        let field = client.find(Locator::Css("#new-key")).await.ok()?;
        field.prop("value").await.ok()?
    })
    .await;
    assert!(apikey::is_well_formed(&rotated));
    assert!(
        b.text_of("#rotated-h + p")
            .await
            .contains("keeps working until")
    );
    b.shoot("manage-09-rotated").await;
    for k in [&rotated, &key] {
        let (status, _) = sys
            .call(Method::GET, "/x-self".into(), k.clone(), None)
            .await;
        assert_eq!(status, 200, "the new key, and the old within its overlap");
    }

    let violations = b.csp_violations().await;
    assert!(violations.is_empty(), "CSP violations: {violations:?}");
    b.close().await;
}
