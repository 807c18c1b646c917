//! A Gemini provider key through the console's Admin pages, in process over the real
//! router and store (SQLite and Postgres) and a running fake upstream: the add form
//! offers the kind, a key added with the SDK's bare host is stored at `…/v1beta`, and
//! asking it for its models reads Gemini's list (its generating models only).

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;
#[expect(dead_code, reason = "this suite uses part of the signed-in tab")]
mod console_tab;

use axum::http::{Method, StatusCode};
use common::App;
use console_tab::{Tab, main_account, router};
use switchyard_fake_upstream::{FakeUpstream, GEMINI_EMBEDDING_MODEL};

switchyard_tests::every_backend!(a_gemini_key_is_added_and_asked_in_pages);

async fn a_gemini_key_is_added_and_asked_in_pages(url: &str) {
    let app = App::new(url).await;
    let router = router(&app);
    let fake = FakeUpstream::start(Some("AIza-console-gemini-01".into()))
        .await
        .unwrap();
    fake.set_models(&["gemini-2.5-pro", "gemini-2.5-flash"]);
    let (_, key) = main_account(&app, "acme").await;
    let mut tab = Tab::signed_in(&router, &key).await;

    let page = tab.get("/admin/provider-keys").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("<option value=\"gemini\">Google Gemini</option>"),
        "{}",
        page.body
    );

    let bare = format!("http://{}", fake.addr);
    let added = tab
        .post(
            "/admin/provider-keys",
            &[
                ("provider", "gemini"),
                ("base_url", bare.as_str()),
                ("secret", "AIza-console-gemini-01"),
                ("models", "gemini-*"),
                ("level", "0"),
                ("weight", "1"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let (status, keys) = app
        .call(Method::GET, "/x-keys".into(), key.clone(), None)
        .await;
    assert_eq!(status, 200, "{keys}");
    let gemini = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["provider"] == "gemini")
        .unwrap();
    assert_eq!(gemini["base_url"], fake.gemini_base_url());
    let id = gemini["id"].as_str().unwrap();

    let page = tab.get(&format!("/admin/provider-keys/{id}")).await;
    assert!(
        page.body.contains("<dt>Provider</dt><dd>gemini</dd>"),
        "{}",
        page.body
    );
    let asked = tab
        .post(&format!("/admin/provider-keys/{id}/discover"), &[])
        .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert!(asked.body.contains("it lists 2 models."), "{}", asked.body);
    for m in ["gemini-2.5-flash", "gemini-2.5-pro"] {
        assert!(
            asked.body.contains(&format!("<li><code>{m}</code></li>")),
            "{m}"
        );
    }
    assert!(!asked.body.contains(GEMINI_EMBEDDING_MODEL));
}
