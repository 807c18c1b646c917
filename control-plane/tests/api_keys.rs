//! The REST contract of issued keys (`/x-self`, `/x-self/keys`, `/x-self/rotate`,
//! `/x-users/{id}/keys`): several keys per account, expiry, revocation and rotation
//! as the Manage API sees them, and bad input refused without a change. On SQLite
//! and Postgres, in process; what the data plane makes of them is in
//! `tests/tests/e2e.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::http::{Method, StatusCode};
use common::App;
use serde_json::json;
use switchyard_core::apikey;

switchyard_tests::every_backend!(issued_keys_rotate_expire_and_revoke);

/// Several keys per account, expiry, revocation, and rotation with and without an
/// overlap window, seen by the Manage API.
async fn issued_keys_rotate_expire_and_revoke(url: &str) {
    let app = App::new(url).await;
    let (_, main_key) = app.owner("acme").await;
    let (_, child) = app
        .post("/x-users", &main_key, json!({"name": "team"}))
        .await;
    let child_id = child["account"]["id"].as_str().unwrap().to_owned();
    let (_, sibling) = app
        .post("/x-users", &main_key, json!({"name": "other"}))
        .await;
    let sibling_key = sibling["api_key"].as_str().unwrap().to_owned();
    let get = |path: &str, key: &str| app.call(Method::GET, path.to_owned(), key.to_owned(), None);
    let delete = |path: String, key: String| app.call(Method::DELETE, path, key, None);

    // A second key, then its revocation.
    let (status, extra) = app.post("/x-self/keys", &main_key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{extra}");
    let extra_key = extra["api_key"].as_str().unwrap().to_owned();
    let extra_id = extra["key"]["id"].as_str().unwrap().to_owned();
    assert!(apikey::is_well_formed(&extra_key));
    let (_, me) = get("/x-self", &main_key).await;
    assert_eq!(me["keys"].as_array().unwrap().len(), 2);
    assert_eq!(me["keys"][0]["in_use"], true);
    assert_eq!(me["account"]["name"], "acme");
    assert!(
        !me.to_string().contains(&extra_key),
        "a listed key shows only its tail"
    );
    let (status, _) = delete(format!("/x-self/keys/{extra_id}"), main_key.clone()).await;
    assert_eq!(status, 204);
    let (status, _) = get("/x-self", &extra_key).await;
    assert_eq!(status, 401);

    // A key that expires: refused when the time has already passed.
    let soon = switchyard_core::time::parse_utc_day("2000-01-01").unwrap();
    let (status, _) = app
        .post(
            "/x-self/keys",
            &main_key,
            json!({"expires_at_unix_ms": soon}),
        )
        .await;
    assert_eq!(status.as_u16(), 400);
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let (status, short) = app
        .post(
            "/x-self/keys",
            &main_key,
            json!({"expires_at_unix_ms": now_ms + 3000}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{short}");

    // A parent issues a key for its child; a sibling cannot.
    let (status, issued) = app
        .post(&format!("/x-users/{child_id}/keys"), &main_key, json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let (status, _) = app
        .post(
            &format!("/x-users/{child_id}/keys"),
            &sibling_key,
            json!({}),
        )
        .await;
    assert_eq!(status.as_u16(), 404);

    // Rotation with an overlap, then without one: the key used stops at once on the
    // Manage API.
    let (status, rotated) = app
        .post("/x-self/rotate", &main_key, json!({"overlap_seconds": 600}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new_key = rotated["api_key"].as_str().unwrap().to_owned();
    let (status, again) = app.post("/x-self/rotate", &new_key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let newest = again["api_key"].as_str().unwrap().to_owned();
    let (status, _) = get("/x-self", &new_key).await;
    assert_eq!(status, 401);

    // Bad input changes nothing.
    let revision = app.count("SELECT revision FROM config_revision").await;
    for (path, body) in [
        ("/x-self/rotate", json!({"overlap_seconds": 99_999_999})),
        ("/x-self/rotate", json!({"overlap": 5})),
        ("/x-self/keys", json!({"expires_at_unix_ms": "tomorrow"})),
    ] {
        let (status, v) = app.post(path, &newest, body.clone()).await;
        assert_eq!(status.as_u16(), 400, "{path} {body} → {v}");
    }
    for (path, key, want) in [
        ("/x-self/keys/not-a-key".to_owned(), newest.clone(), 400u16),
        (
            format!("/x-self/keys/{}", switchyard_core::ids::IssuedKeyId::new()),
            newest.clone(),
            404,
        ),
        (format!("/x-self/keys/{extra_id}"), sibling_key.clone(), 404),
    ] {
        let (status, _) = delete(path.clone(), key).await;
        assert_eq!(status, want, "{path}");
    }
    let (status, _) = get("/x-self", &app.root).await;
    assert_eq!(status, 403);
    assert_eq!(
        app.count("SELECT revision FROM config_revision").await,
        revision
    );
}
