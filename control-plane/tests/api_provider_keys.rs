//! The REST contract of provider keys (`/x-keys`) and the audit log (`/x-audit`):
//! list, get, update, disable, delete; only the owning main account sees them; the
//! secret never comes back; every change audited; bad input refused without a
//! change. On SQLite and Postgres, in process; a new secret reaching the upstream
//! is in `tests/tests/e2e.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::http::{Method, StatusCode};
use common::{App, UPSTREAM};
use serde_json::{Value, json};

switchyard_tests::every_backend!(
    provider_keys_lifecycle,
    bad_provider_key_input_gets_clear_errors_and_changes_nothing,
);

/// Provider keys: list, get, update, disable, delete; only the owning main account
/// sees them; the secret never comes back; the audit log holds every change.
async fn provider_keys_lifecycle(url: &str) {
    let app = App::new(url).await;
    let (_, main) = app
        .post("/x-users", &app.root, json!({"name": "acme"}))
        .await;
    let main_key = main["api_key"].as_str().unwrap().to_owned();
    let (_, other) = app
        .post("/x-users", &app.root, json!({"name": "other"}))
        .await;
    let other_key = other["api_key"].as_str().unwrap().to_owned();
    let (_, child) = app
        .post("/x-users", &main_key, json!({"name": "team"}))
        .await;
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let (status, pk) = app
        .post(
            "/x-keys",
            &main_key,
            json!({"provider": "openai", "base_url": UPSTREAM, "secret": "sk-first-secret-0001", "models": ["gpt*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = pk["id"].as_str().unwrap().to_owned();
    assert_eq!(pk["health"], "unknown");
    let send = |method: Method, path: String, key: String, body: Option<Value>| {
        app.call(method, path, key, body)
    };

    let (status, list) = send(Method::GET, "/x-keys".into(), main_key.clone(), None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("sk-first-secret"));
    let (status, one) = send(Method::GET, format!("/x-keys/{id}"), main_key.clone(), None).await;
    assert_eq!(
        (status, one["secret_hint"].as_str()),
        (200, Some("****0001"))
    );
    assert_eq!(
        send(Method::GET, "/x-keys".into(), child_key.clone(), None)
            .await
            .0,
        403
    );
    assert_eq!(
        send(
            Method::GET,
            format!("/x-keys/{id}"),
            other_key.clone(),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        send(
            Method::PATCH,
            format!("/x-keys/{id}"),
            other_key.clone(),
            Some(json!({"level": 2}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        send(
            Method::DELETE,
            format!("/x-keys/{id}"),
            other_key.clone(),
            None
        )
        .await
        .0,
        404
    );

    // A new secret: only its hint comes back.
    let (status, v) = send(
        Method::PATCH,
        format!("/x-keys/{id}"),
        main_key.clone(),
        Some(json!({"secret": "sk-second-secret-0002", "level": 2})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["secret_hint"].as_str(), v["level"].as_u64()),
        (Some("****0002"), Some(2))
    );

    // Bad updates change nothing.
    let revision = app.count("SELECT revision FROM config_revision").await;
    for body in [
        json!({}),
        json!({"status": "paused"}),
        json!({"models": []}),
        json!({"models": ["a*b"]}),
        json!({"weight": 0}),
        json!({"secret": "  "}),
        json!({"base_url": "ftp://x"}),
        json!({"provider": "cohere"}),
        json!({"colour": "red"}),
    ] {
        let (status, v) = send(
            Method::PATCH,
            format!("/x-keys/{id}"),
            main_key.clone(),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body} → {v}");
    }
    assert_eq!(
        send(Method::GET, "/x-keys/nope".into(), main_key.clone(), None)
            .await
            .0,
        400
    );
    assert_eq!(
        app.count("SELECT revision FROM config_revision").await,
        revision
    );

    // Disabled, then deleted: gone.
    let (status, _) = send(
        Method::PATCH,
        format!("/x-keys/{id}"),
        main_key.clone(),
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        send(
            Method::DELETE,
            format!("/x-keys/{id}"),
            main_key.clone(),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        send(Method::GET, format!("/x-keys/{id}"), main_key.clone(), None)
            .await
            .0,
        404
    );
    assert_eq!(app.count("SELECT count(*) FROM provider_keys").await, 0);

    // Every change is in the owner's audit log, newest first, secrets redacted.
    let (status, log) = send(Method::GET, "/x-audit".into(), main_key.clone(), None).await;
    assert_eq!(status, 200, "{log}");
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "provider_key.delete",
            "provider_key.update",
            "provider_key.update",
            "provider_key.create",
            "account.create",
            "account.create",
        ]
    );
    let text = log.to_string();
    assert!(
        !text.contains("sk-first-secret") && !text.contains("sk-second-secret"),
        "{text}"
    );
    let update = &log[2];
    assert_eq!(update["before"]["secret_hint"], "****0001");
    assert_eq!(update["after"]["secret_hint"], "****0002");
    assert_eq!(update["actor"], main["account"]["id"]);
    let seq = log[0]["seq"].as_i64().unwrap();
    let (_, older) = send(
        Method::GET,
        format!("/x-audit?before={seq}&limit=2"),
        main_key.clone(),
        None,
    )
    .await;
    assert_eq!(older.as_array().unwrap().len(), 2);
    assert_eq!(older[0]["action"], "provider_key.update");
    let (_, theirs) = send(Method::GET, "/x-audit".into(), other_key.clone(), None).await;
    assert_eq!(theirs.as_array().unwrap().len(), 1);
    assert_eq!(
        send(Method::GET, "/x-audit".into(), child_key.clone(), None)
            .await
            .0,
        403
    );
    assert_eq!(
        send(
            Method::GET,
            "/x-audit?limit=0".into(),
            main_key.clone(),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        send(
            Method::GET,
            "/x-audit?limit=x".into(),
            main_key.clone(),
            None
        )
        .await
        .0,
        400
    );
    let (status, everything) = send(Method::GET, "/x-audit".into(), app.root.clone(), None).await;
    assert_eq!(status, 200);
    assert_eq!(everything.as_array().unwrap().len(), 7);
}

/// Provider keys refused for who adds them or what they say, each with a clear
/// error, and nothing stored.
async fn bad_provider_key_input_gets_clear_errors_and_changes_nothing(url: &str) {
    let app = App::new(url).await;
    let (_, created) = app
        .post("/x-users", &app.root, json!({"name": "acme"}))
        .await;
    let main_key = created["api_key"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post("/x-keys", &main_key, json!({"provider": "openai", "base_url": UPSTREAM, "secret": "sk-abc-123456789", "models": ["gpt-*"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, child) = app
        .post("/x-users", &main_key, json!({"name": "sub"}))
        .await;
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let providers = app.count("SELECT count(*) FROM provider_keys").await;
    let revision = app.count("SELECT revision FROM config_revision").await;

    let key_body = |base: &str, models: Value| json!({"provider": "openai", "base_url": base, "secret": "sk-abc-123456789", "models": models});
    for (body, key, want) in [
        (key_body(UPSTREAM, json!(["gpt-*"])), &child_key, 403u16),
        (key_body(UPSTREAM, json!(["gpt-*"])), &app.root, 403),
        (
            key_body("ftp://example.com", json!(["gpt-*"])),
            &main_key,
            400,
        ),
        (
            key_body("https://user:pw@example.com/v1", json!(["gpt-*"])),
            &main_key,
            400,
        ),
        (key_body(UPSTREAM, json!(["g*pt"])), &main_key, 400),
        (key_body(UPSTREAM, json!([])), &main_key, 400),
        (
            json!({"provider": "bogus", "base_url": UPSTREAM, "secret": "s", "models": ["m"]}),
            &main_key,
            400,
        ),
        (
            json!({"provider": "openai", "base_url": UPSTREAM, "secret": "", "models": ["m"]}),
            &main_key,
            400,
        ),
        (
            json!({"provider": "openai", "base_url": UPSTREAM, "secret": "s", "models": ["m"], "level": 5000}),
            &main_key,
            400,
        ),
    ] {
        let (status, v) = app.post("/x-keys", key, body.clone()).await;
        assert_eq!(status.as_u16(), want, "{body} → {v}");
        assert!(v["error"]["message"].is_string());
    }

    assert_eq!(
        app.count("SELECT count(*) FROM provider_keys").await,
        providers
    );
    assert_eq!(
        app.count("SELECT revision FROM config_revision").await,
        revision
    );
}
