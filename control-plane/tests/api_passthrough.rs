//! The REST and gRPC contract of passthrough provider keys (`/x-keys` with
//! `provider: passthrough`): created and changed without a secret, with the protocol
//! they speak; a secret refused for them and required for every other kind; turning
//! a key passthrough drops its secret from the store; every change audited. On
//! SQLite and Postgres, in process; calls through them are in
//! `tests/tests/passthrough.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::http::{Method, StatusCode};
use common::{App, UPSTREAM, authed, grpc};
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::admin_service_server::AdminService;
use tonic::Code;

switchyard_tests::every_backend!(
    passthrough_keys_are_written_without_a_secret_and_audited,
    passthrough_input_is_refused_clearly_and_changes_nothing,
    passthrough_keys_over_grpc,
);

/// A main account's key.
async fn main_key(app: &App) -> String {
    let (status, created) = app
        .post("/x-users", &app.root, json!({"name": "acme"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["api_key"].as_str().unwrap().to_owned()
}

async fn patch(app: &App, key: &str, id: &str, body: Value) -> (u16, Value) {
    app.call(
        Method::PATCH,
        format!("/x-keys/{id}"),
        key.to_owned(),
        Some(body),
    )
    .await
}

/// Change key `id` (accepted): its provider, protocol and secret hint after.
async fn change(app: &App, key: &str, id: &str, body: Value) -> [String; 3] {
    let (status, changed) = patch(app, key, id, body).await;
    assert_eq!(status, 200, "{changed}");
    ["provider", "protocol", "secret_hint"].map(|f| changed[f].as_str().unwrap().to_owned())
}

/// Provider keys stored without a secret.
const NO_SECRET: &str =
    "SELECT count(*) FROM provider_keys WHERE length(secret_blob) = 0 AND secret_key_id = ''";

/// Created with its protocol and no secret; its protocol changed; turned into a key
/// with a secret and back, the secret leaving the store; each step audited.
async fn passthrough_keys_are_written_without_a_secret_and_audited(url: &str) {
    let app = App::new(url).await;
    let key = main_key(&app).await;
    let (status, pk) = app
        .post(
            "/x-keys",
            &key,
            json!({"provider": "passthrough", "protocol": "anthropic", "base_url": "http://127.0.0.1:1", "models": ["claude-*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pk}");
    assert_eq!(
        (&pk["provider"], &pk["protocol"], &pk["secret_hint"]),
        (&json!("passthrough"), &json!("anthropic"), &json!(""))
    );
    // Stored in the form the Anthropic protocol takes.
    assert_eq!(pk["base_url"], "http://127.0.0.1:1/v1");
    let id = pk["id"].as_str().unwrap().to_owned();
    assert_eq!(app.count(NO_SECRET).await, 1);

    assert_eq!(
        change(&app, &key, &id, json!({"protocol": "openai"})).await,
        ["passthrough", "openai", ""]
    );
    // The level alone keeps what the key is.
    assert_eq!(
        change(&app, &key, &id, json!({"level": 2})).await,
        ["passthrough", "openai", ""]
    );
    assert_eq!(
        change(
            &app,
            &key,
            &id,
            json!({"provider": "openai", "secret": "sk-held-secret-0042"})
        )
        .await,
        ["openai", "openai", "****0042"]
    );
    assert_eq!(app.count(NO_SECRET).await, 0);
    assert_eq!(
        change(
            &app,
            &key,
            &id,
            json!({"provider": "passthrough", "protocol": "anthropic"})
        )
        .await,
        ["passthrough", "anthropic", ""]
    );
    assert_eq!(app.count(NO_SECRET).await, 1);

    let (status, log) = app
        .call(Method::GET, "/x-audit".into(), key.clone(), None)
        .await;
    assert_eq!(status, 200, "{log}");
    let entries: Vec<(&str, Value, Value)> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == json!(id))
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["before"]["provider"].clone(),
                e["after"]["provider"].clone(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            ("provider_key.update", json!("openai"), json!("passthrough")),
            ("provider_key.update", json!("passthrough"), json!("openai")),
            (
                "provider_key.update",
                json!("passthrough"),
                json!("passthrough")
            ),
            (
                "provider_key.update",
                json!("passthrough"),
                json!("passthrough")
            ),
            ("provider_key.create", Value::Null, json!("passthrough")),
        ],
        "{log}"
    );
    assert_eq!(log[3]["before"]["protocol"], "anthropic");
    assert_eq!(log[3]["after"]["protocol"], "openai");
    assert!(!log.to_string().contains("sk-held-secret"), "{log}");
}

/// What a passthrough key may not be, and what other kinds still need, each refused
/// with a clear error and nothing stored.
async fn passthrough_input_is_refused_clearly_and_changes_nothing(url: &str) {
    let app = App::with_upstreams(url, false).await;
    let key = main_key(&app).await;
    let (status, pk) = app
        .post(
            "/x-keys",
            &key,
            json!({"provider": "passthrough", "protocol": "openai", "base_url": "https://chatgpt.com/backend-api/codex", "models": ["gpt-5*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pk}");
    // A path of its own is kept as given.
    assert_eq!(pk["base_url"], "https://chatgpt.com/backend-api/codex");
    let id = pk["id"].as_str().unwrap().to_owned();
    let providers = app.count("SELECT count(*) FROM provider_keys").await;
    let revision = app.count("SELECT revision FROM config_revision").await;

    let body = |extra: Value| {
        let mut b = json!({"base_url": "https://api.anthropic.com", "models": ["claude-*"]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (extra, field) in [
        (json!({"provider": "passthrough"}), "protocol is required"),
        (
            json!({"provider": "passthrough", "protocol": "gemini"}),
            "protocol must be",
        ),
        (
            json!({"provider": "passthrough", "protocol": "anthropic", "secret": "sk-ant-oat01-xyz"}),
            "secret: a passthrough key holds none",
        ),
        (json!({"provider": "anthropic"}), "secret is required"),
        (
            json!({"provider": "openai", "protocol": "anthropic", "secret": "sk-abc-123456789"}),
            "protocol \"anthropic\" applies to passthrough keys only",
        ),
        (
            json!({"provider": "passthrough", "protocol": "anthropic", "base_url": "http://10.0.0.1"}),
            "base_url",
        ),
        (
            json!({"provider": "passthrough", "protocol": "anthropic", "base_url": "ftp://api.anthropic.com"}),
            "base_url",
        ),
    ] {
        let (status, v) = app.post("/x-keys", &key, body(extra.clone())).await;
        assert_eq!(status, refused_with(field), "{extra} → {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{extra} → {message}");
    }
    for (change, field) in [
        (
            json!({"secret": "sk-ant-oat01-xyz"}),
            "secret: a passthrough key",
        ),
        (json!({"provider": "anthropic"}), "secret is required"),
        (json!({"protocol": "gemini"}), "protocol must be"),
    ] {
        let (status, v) = patch(&app, &key, &id, change.clone()).await;
        assert_eq!(status, refused_with(field).as_u16(), "{change} → {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{change} → {message}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM provider_keys").await,
        providers
    );
    assert_eq!(
        app.count("SELECT revision FROM config_revision").await,
        revision
    );
    // Another kind naming its own protocol again is accepted.
    let (status, v) = app
        .post(
            "/x-keys",
            &key,
            json!({"provider": "anthropic", "protocol": "anthropic", "secret": "sk-abc-123456789", "base_url": "https://api.anthropic.com", "models": ["claude-*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["protocol"], "anthropic");
}

/// The gRPC face: an empty secret is none, the protocol travels both ways.
async fn passthrough_keys_over_grpc(url: &str) {
    let app = App::new(url).await;
    let key = main_key(&app).await;
    let admin = grpc(&app);
    let add = |provider: &str, protocol: Option<&str>, secret: &str| {
        authed(
            &key,
            pb::AddProviderKeyRequest {
                provider: provider.into(),
                protocol: protocol.map(Into::into),
                secret: secret.into(),
                base_url: UPSTREAM.into(),
                models: vec!["gpt-*".into()],
                ..Default::default()
            },
        )
    };
    let view = admin
        .add_provider_key(add("passthrough", Some("openai"), ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        [&view.provider, &view.protocol, &view.secret_hint],
        ["passthrough", "openai", ""]
    );
    for (provider, protocol, secret) in [
        ("passthrough", Some("openai"), "sk-not-wanted-1234"),
        ("openai", None, ""),
    ] {
        let err = admin
            .add_provider_key(add(provider, protocol, secret))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{provider} {secret}");
    }
    let changed = admin
        .update_provider_key(authed(
            &key,
            pb::UpdateProviderKeyRequest {
                id: view.id.clone(),
                protocol: Some("anthropic".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (changed.provider.as_str(), changed.protocol.as_str()),
        ("passthrough", "anthropic")
    );
}

/// A value out of its field's range is a bad request (400); fields that do not fit
/// together are unprocessable (422).
fn refused_with(said: &str) -> StatusCode {
    if said.starts_with("protocol must be") || said == "base_url" {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}
