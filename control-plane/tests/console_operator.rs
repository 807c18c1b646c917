//! The console's Operator pages in process, over the real router and store (SQLite
//! and Postgres): main accounts listed a page at a time, created (the first key shown
//! once), disabled and enabled; refusals beside their fields, hostile ids, and every
//! caller but the operator refused.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;
#[expect(dead_code, reason = "this suite uses part of the shared tab")]
mod console_tab;

use axum::http::{Method, StatusCode};
use common::App;
use console_tab::{Tab, error_of, escaped, main_account, router};
use serde_json::{Value, json};
use switchyard_core::apikey;

switchyard_tests::every_backend!(the_operator_manages_main_accounts);

/// The operator lists main accounts a page at a time, creates one (its first key
/// shown once), disables and enables it; refusals beside their fields; nobody else
/// may.
async fn the_operator_manages_main_accounts(url: &str) {
    let app = App::new(url).await;
    let router = router(&app);
    let mut root = Tab::signed_in(&router, &app.root).await;
    let page = root.get("/operator/accounts").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("None yet."), "{}", page.body);
    assert!(
        page.body
            .contains("aria-current=\"page\">Main accounts</a>")
    );

    // Created: its key shown once, with the copy button; it works.
    let made = root
        .post(
            "/operator/accounts",
            &[("name", "acme"), ("policy", r#"{"rpm": 600}"#)],
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert!(made.body.contains("Created acme"));
    assert!(made.body.contains("data-copy=\"new-key\""));
    let at = made.body.find("id=\"new-key\"").unwrap();
    let key = made.body[at..]
        .split("value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap()
        .to_owned();
    assert!(apikey::is_well_formed(&key), "{key}");
    let (status, me) = app
        .call(Method::GET, "/x-info".into(), key.clone(), None)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["account"]["parent_id"], Value::Null, "a main account");
    assert_eq!(me["policy"]["rpm"], 600);
    let id = me["account"]["id"].as_str().unwrap().to_owned();
    let listed = root.get("/operator/accounts").await;
    assert!(listed.body.contains(&format!("<tr data-account=\"{id}\">")));
    assert!(!listed.body.contains(&key), "shown once");

    // Refusals beside their fields; nothing created.
    let before = app.count("SELECT count(*) FROM accounts").await;
    let long = "n".repeat(5000);
    for (name, policy, field, says) in [
        ("", "", "name", "name must be"),
        ("a\u{1}b", "", "name", "name must be"),
        (long.as_str(), "", "name", "name must be"),
        ("ok", "{rpm", "policy", "policy: not JSON"),
        ("ok", r#"{"rpm": -1}"#, "policy", "policy"),
        ("ok", r#"{"bogus": 1}"#, "policy", "policy"),
        ("ok", "[1]", "policy", "policy"),
    ] {
        let answer = root
            .post("/operator/accounts", &[("name", name), ("policy", policy)])
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name:?} {policy}"
        );
        let shown = error_of(&answer.body, field)
            .unwrap_or_else(|| panic!("no refusal beside {field}: {}", answer.body));
        assert!(shown.contains(says), "{shown}");
        assert!(
            answer
                .body
                .contains(&format!("value=\"{}\"", escaped(name)))
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM accounts").await, before);

    // The owner signs in; disabled, its key and its session stop; enabled, back.
    let mut owner = Tab::signed_in(&router, &key).await;
    let status_path = format!("/operator/accounts/{id}/status");
    let off = root
        .post(&status_path, &[("status", "disabled"), ("page", "0")])
        .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER, "{}", off.body);
    assert_eq!(off.location, "/operator/accounts?page=0");
    let (status, _) = app
        .call(Method::GET, "/x-self".into(), key.clone(), None)
        .await;
    assert_eq!(status, 403, "a disabled account's key is refused");
    let ended = owner.get("/").await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER);
    assert!(ended.location.starts_with("/sign-in"));
    let listed = root.get("/operator/accounts").await;
    assert!(
        listed
            .body
            .contains("<span class=\"status disabled\">disabled</span>")
    );
    assert!(
        listed
            .body
            .contains("Enable <span class=\"visually-hidden\">acme</span>")
    );
    let on = root
        .post(&status_path, &[("status", "active"), ("page", "0")])
        .await;
    assert_eq!(on.status, StatusCode::SEE_OTHER);
    let (status, _) = app
        .call(Method::GET, "/x-self".into(), key.clone(), None)
        .await;
    assert_eq!(status, 200);

    // Hostile status values and ids.
    let bad = root
        .post(&status_path, &[("status", "gone\u{0}"), ("page", "0")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error_of(&bad.body, "status")
            .unwrap()
            .contains("status must be")
    );
    let junk = "9".repeat(5000);
    for other in [
        "not-an-id",
        "0190f2b4-0000-7000-8000-000000000000",
        "%01",
        junk.as_str(),
    ] {
        let answer = root
            .post(
                &format!("/operator/accounts/{other}/status"),
                &[("status", "disabled")],
            )
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{other}");
    }
    let (status, _) = app
        .call(Method::GET, "/x-self".into(), key.clone(), None)
        .await;
    assert_eq!(status, 200, "still active");

    // Paging: twenty to a page.
    for n in 0..20 {
        main_account(&app, &format!("tenant-{n:02}")).await;
    }
    let first = root.get("/operator/accounts").await;
    assert_eq!(first.body.matches("<tr data-account=").count(), 20);
    assert!(
        first
            .body
            .contains("href=\"/operator/accounts?page=1\" rel=\"next\"")
    );
    let second = root.get("/operator/accounts?page=1").await;
    assert_eq!(second.body.matches("<tr data-account=").count(), 1);
    let far = root.get("/operator/accounts?page=4000000000").await;
    assert_eq!(far.status, StatusCode::OK);
    assert!(far.body.contains("None on this page."));

    // Nobody but the operator: a main account and a sub-account get 403, and
    // their forms create and change nothing.
    let (status, child) = app.post("/x-users", &key, json!({"name": "team"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let before = app.count("SELECT count(*) FROM accounts").await;
    for account in [key.as_str(), child_key.as_str()] {
        let mut tab = Tab::signed_in(&router, account).await;
        for answer in [
            tab.get("/operator/accounts").await,
            tab.post("/operator/accounts", &[("name", "sneaky")]).await,
            tab.post(&status_path, &[("status", "disabled")]).await,
        ] {
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
            assert!(answer.body.contains("only the operator"));
        }
        let home = tab.get("/").await;
        assert!(
            !home.body.contains("/operator/accounts"),
            "no Operator link"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM accounts").await, before);
    let (status, _) = app
        .call(Method::GET, "/x-self".into(), key.clone(), None)
        .await;
    assert_eq!(status, 200, "not disabled by them");
}
