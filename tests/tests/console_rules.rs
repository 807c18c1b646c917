//! The console's rules editor, audit log and data-planes pages in a real browser
//! against the real binaries: the owner maps a model name in the editor and a call
//! through the data plane with that name reaches the upstream as the mapped model;
//! a second browser session saves the same section first and the first session is
//! shown the conflict with both values; the audit log shows both changes with before
//! and after; the data-planes page shows the data plane at the current revision.
//! Each page is saved under `target/console-screenshots/` (the editor at 1200×900 is
//! the README's `docs/console-rules.png`), and neither browser's log shows a
//! Content-Security-Policy violation.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test says so and
//! skips.

use serde_json::{Value, json};
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::browser::Browser;
use switchyard_tests::system::{owner_with_keys, start_system};
use switchyard_tests::wait::{self, PATIENCE};

/// Every Content-Security-Policy complaint in a browser's log.
async fn csp_violations(b: &Browser) -> Vec<Value> {
    b.log()
        .await
        .into_iter()
        .filter(|e| {
            let m = e["message"].as_str().unwrap_or_default();
            m.contains("Content Security Policy") || m.contains("Refused to")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_edit_rules_in_the_console() {
    let sys = start_system(1 << 20).await;
    let console = sys.control.url("http");
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, key, _) = owner_with_keys(
        &sys,
        &fake,
        "acme",
        &[("openai", "sk-abc-123456789", 1, &["gpt-4o*"])],
    )
    .await;

    let Some(first) = Browser::start().await else {
        return;
    };
    let Some(second) = Browser::start().await else {
        return;
    };

    // The owner maps a name the upstream does not serve onto one it does.
    first.sign_in(&console, &key).await;
    first.goto(&format!("{console}/admin/rules")).await;
    assert_eq!(first.text_of("h1").await, "Rules");
    first.shoot("rules-01-editor").await;
    first
        .fill("#model_mapper-value", r#"{"smart": "gpt-4o"}"#)
        .await;
    first
        .submit("#model_mapper button[type='submit']", "p.notice")
        .await;
    assert_eq!(first.text_of("p.notice").await, "Model mapper saved.");
    assert!(
        first
            .value_of("#model_mapper-value")
            .await
            .contains("\"smart\": \"gpt-4o\"")
    );
    first.shoot("rules-02-saved").await;

    // A call with the mapped name reaches the upstream as the target model, once the
    // data plane has the new rules.
    let http = reqwest::Client::new();
    let body = json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]});
    wait::until(PATIENCE, "the mapped model to be served", async || {
        let r = http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let seen = fake.observed().bodies.lock().unwrap().last().cloned();
    assert_eq!(
        seen.unwrap()["model"],
        "gpt-4o",
        "the upstream saw the target"
    );

    // Both admins read revision 1; the second saves first.
    first.goto(&format!("{console}/admin/rules")).await;
    second.sign_in(&console, &key).await;
    second.goto(&format!("{console}/admin/rules")).await;
    second
        .fill(
            "#model_mapper-value",
            r#"{"smart": "gpt-4o", "fast": "gpt-4o-mini"}"#,
        )
        .await;
    second
        .submit("#model_mapper button[type='submit']", "p.notice")
        .await;
    first
        .fill("#model_mapper-value", r#"{"smart": "gpt-4o-mini"}"#)
        .await;
    first
        .submit("#model_mapper button[type='submit']", "#model_mapper-error")
        .await;
    let conflict = first.text_of("#model_mapper-error").await;
    assert!(
        conflict
            .contains("another admin saved these rules at revision 2; your edit was not applied"),
        "{conflict}"
    );
    assert!(
        first
            .value_of("#model_mapper-value")
            .await
            .contains("gpt-4o-mini")
    );
    let now = first
        .text_of("pre[aria-labelledby='model_mapper-now']")
        .await;
    assert!(now.contains("\"fast\": \"gpt-4o-mini\""), "{now}");
    first.shoot("rules-03-conflict").await;
    let (_, stored) = sys
        .call(
            reqwest::Method::GET,
            "/x-config/model_mapper".into(),
            key.clone(),
            None,
        )
        .await;
    assert_eq!(
        stored,
        json!({"smart": "gpt-4o", "fast": "gpt-4o-mini"}),
        "the refused edit changed nothing"
    );

    // The audit log: both saves, with what each changed.
    first.goto(&format!("{console}/admin/audit")).await;
    let table = first.text_of("ol.audit").await;
    assert_eq!(table.matches("rules.update").count(), 2, "{table}");
    assert!(
        table.contains(r#"{"smart":"gpt-4o"}"#)
            && table.contains(r#"{"fast":"gpt-4o-mini","smart":"gpt-4o"}"#),
        "{table}"
    );
    assert!(!table.contains("sk-abc-123456789"), "no secret");
    first.shoot("rules-04-audit").await;

    // The data planes: the one running, at the current revision.
    let revision = sys.status().await["config_revision"].as_u64().unwrap();
    first.goto(&format!("{console}/admin/data-planes")).await;
    wait::until(PATIENCE, "the data plane to show as current", async || {
        first.goto(&format!("{console}/admin/data-planes")).await;
        let shown = first.text_of("#config-revision").await;
        let rows = first.text_of("main").await;
        (shown == revision.to_string() && rows.contains("current")).then_some(())
    })
    .await;
    let health = first.text_of("#health-h + p + .table-wrap").await;
    assert!(health.contains("openai"), "{health}");
    first.shoot("rules-05-data-planes").await;

    // A phone-wide window: no page scrolls sideways.
    first.client.set_window_size(380, 900).await.unwrap();
    for (page, name) in [
        ("/admin/rules", "rules-07-editor-narrow"),
        ("/admin/audit", "rules-08-audit-narrow"),
        ("/admin/data-planes", "rules-09-data-planes-narrow"),
    ] {
        first.goto(&format!("{console}{page}")).await;
        first.text_of("h1").await;
        let sideways = first.sideways().await;
        assert_eq!(sideways, json!(0), "{page} does not scroll sideways");
        first.shoot(name).await;
    }
    first.client.set_window_size(1200, 900).await.unwrap();

    // The editor, as the README shows it.
    first.goto(&format!("{console}/admin/rules")).await;
    first.text_of("#model_mapper-value").await;
    first.shoot("rules-06-editor-1200x900").await;

    for b in [&first, &second] {
        let violations = csp_violations(b).await;
        assert!(violations.is_empty(), "CSP violations: {violations:?}");
    }
    first.close().await;
    second.close().await;
}
