//! The console's provider-key form with passthrough keys, in process over the real
//! router and store (SQLite and Postgres): added with a protocol and no secret, shown
//! as holding none; a secret typed for one, or a missing protocol, refused beside its
//! field (422) with nothing stored.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;
#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod console_tab;

use axum::http::{Method, StatusCode};
use common::App;
use console_tab::{Tab, error_of, main_account, router};
use serde_json::Value;

switchyard_tests::every_backend!(passthrough_keys_are_added_from_the_form);

/// The add form for a passthrough key of `protocol`, with `secret` typed.
fn form<'a>(protocol: &'a str, secret: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("provider", "passthrough"),
        ("protocol", protocol),
        ("base_url", "https://api.anthropic.com"),
        ("secret", secret),
        ("models", "claude-*"),
        ("level", "1"),
        ("weight", "1"),
    ]
}

async fn passthrough_keys_are_added_from_the_form(url: &str) {
    let app = App::new(url).await;
    let router = router(&app);
    let (_, key) = main_account(&app, "acme").await;
    let mut tab = Tab::signed_in(&router, &key).await;

    let page = tab.get("/admin/provider-keys").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("<option value=\"passthrough\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<label for=\"protocol\">"),
        "{}",
        page.body
    );

    // Refused beside their fields, nothing stored.
    for (fields, field, says) in [
        (
            form("anthropic", "sk-ant-oat01-typed"),
            "secret",
            "holds none",
        ),
        (form("", ""), "protocol", "protocol is required"),
        (form("gemini", ""), "protocol", "protocol must be"),
    ] {
        let answer = tab.post("/admin/provider-keys", &fields).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let shown = error_of(&answer.body, field)
            .unwrap_or_else(|| panic!("no refusal beside {field}: {}", answer.body));
        assert!(shown.contains(says), "{field}: {shown}");
        assert!(!answer.body.contains("sk-ant-oat01-typed"));
    }
    let (_, keys) = app
        .call(Method::GET, "/x-keys".into(), key.clone(), None)
        .await;
    assert_eq!(keys.as_array().unwrap().len(), 0, "{keys}");

    let added = tab
        .post("/admin/provider-keys", &form("anthropic", ""))
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert!(
        added.body.contains("passthrough (anthropic)"),
        "{}",
        added.body
    );
    let (_, keys) = app
        .call(Method::GET, "/x-keys".into(), key.clone(), None)
        .await;
    let made: &Value = &keys[0];
    assert_eq!(
        (&made["provider"], &made["protocol"], &made["base_url"]),
        (
            &Value::from("passthrough"),
            &Value::from("anthropic"),
            &Value::from("https://api.anthropic.com/v1")
        )
    );
    let id = made["id"].as_str().unwrap();
    let page = tab.get(&format!("/admin/provider-keys/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("<dt>Protocol</dt><dd>anthropic</dd>"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("each call carries its caller's own provider credential"),
        "{}",
        page.body
    );
}
