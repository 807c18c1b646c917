//! Provider keys of kind `gemini`, over REST and gRPC: accepted, their base URL kept
//! in Gemini's stored form (`…/v1beta`, the SDK's bare host given its version), the
//! kind stored, listed and carried into the snapshot; a kind changed to and from
//! `gemini`; unknown kinds refused with a message naming the three. On SQLite and
//! Postgres, in process.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::http::{Method, StatusCode};
use common::{App, authed, grpc};
use serde_json::json;
use switchyard_core::snapshot::ProviderKind;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::admin_service_server::AdminService;
use tonic::Code;

switchyard_tests::every_backend!(
    gemini_keys_over_rest_take_gemini_base_urls,
    gemini_keys_over_grpc_match_rest,
);

async fn gemini_keys_over_rest_take_gemini_base_urls(url: &str) {
    let app = App::new(url).await;
    let (_, owner) = app.owner("acme").await;
    let revision = app.count("SELECT revision FROM config_revision").await;

    // The Gemini SDK's bare host gets the version; a pasted call loses its method.
    for (given, stored) in [
        ("http://127.0.0.1:1", "http://127.0.0.1:1/v1beta"),
        ("http://127.0.0.1:1/v1beta/", "http://127.0.0.1:1/v1beta"),
        (
            "http://127.0.0.1:1/v1beta/models/gemini-2.5-flash",
            "http://127.0.0.1:1/v1beta",
        ),
        ("http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1"),
    ] {
        let (status, pk) = app
            .post(
                "/x-keys",
                &owner,
                json!({"provider": "gemini", "base_url": given, "secret": "AIza-gemini-000001",
                       "models": ["gemini-*"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pk}");
        assert_eq!(pk["provider"], "gemini");
        assert_eq!(pk["base_url"], stored, "{given}");
        assert_eq!(pk["secret_hint"], "****0001");
    }
    assert!(app.count("SELECT revision FROM config_revision").await > revision);

    let snapshot = app.service.store().load_snapshot().await.unwrap();
    let gemini: Vec<_> = snapshot
        .provider_keys
        .iter()
        .filter(|k| k.kind == ProviderKind::Gemini)
        .collect();
    assert_eq!(gemini.len(), 4);
    assert!(gemini[0].base_url.ends_with("/v1beta") || gemini[0].base_url.ends_with("/v1"));

    // Re-pointed to OpenAI and back: the kind changes, the list shows it.
    let (status, list) = app
        .call(Method::GET, "/x-keys".into(), owner.clone(), None)
        .await;
    assert_eq!(status, 200);
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["provider"] == "gemini")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for kind in ["openai", "gemini"] {
        let (status, v) = app
            .call(
                Method::PATCH,
                format!("/x-keys/{id}"),
                owner.clone(),
                Some(json!({"provider": kind})),
            )
            .await;
        assert_eq!((status, v["provider"].as_str()), (200, Some(kind)), "{v}");
    }

    // Unknown kinds, Google's other names among them, are refused and name the three.
    let before = app.count("SELECT count(*) FROM provider_keys").await;
    for kind in ["google", "Gemini", "vertex", ""] {
        let (status, v) = app
            .post(
                "/x-keys",
                &owner,
                json!({"provider": kind, "base_url": "http://127.0.0.1:1", "secret": "AIza-x-0000000",
                       "models": ["gemini-*"]}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind} → {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("\"gemini\""), "{message}");
    }
    let (status, v) = app
        .call(
            Method::PATCH,
            format!("/x-keys/{id}"),
            owner.clone(),
            Some(json!({"provider": "google"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        app.count("SELECT count(*) FROM provider_keys").await,
        before
    );
}

async fn gemini_keys_over_grpc_match_rest(url: &str) {
    let app = App::new(url).await;
    let (_, owner) = app.owner("acme").await;
    let admin = grpc(&app);
    let add = |provider: &str| pb::AddProviderKeyRequest {
        provider: provider.into(),
        base_url: "http://127.0.0.1:1".into(),
        secret: "AIza-gemini-000002".into(),
        models: vec!["gemini-2.5-*".into()],
        level: Some(1),
        weight: None,
        protocol: None,
    };
    let view = admin
        .add_provider_key(authed(&owner, add("gemini")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.provider, "gemini");
    assert_eq!(view.base_url, "http://127.0.0.1:1/v1beta");
    assert_eq!(view.secret_hint, "****0002");

    // REST reads what gRPC wrote.
    let (status, v) = app
        .call(
            Method::GET,
            format!("/x-keys/{}", view.id),
            owner.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["provider"].as_str(), v["base_url"].as_str()),
        (Some("gemini"), Some("http://127.0.0.1:1/v1beta"))
    );

    let err = admin
        .add_provider_key(authed(&owner, add("google")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("\"gemini\""), "{}", err.message());
}
