//! The OpenAPI document describes exactly the routes the router serves.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::Value;
use switchyard_control_plane::publisher::Publisher;
use switchyard_control_plane::rest::{self, OPENAPI, ROUTES};
use switchyard_control_plane::service::{OperatorOptions, Service};
use switchyard_control_plane::store::Store;
use switchyard_core::apikey::KeyHash;
use switchyard_core::crypto::Keyring;
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use tower::ServiceExt;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

#[test]
fn the_document_lists_exactly_the_routes() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (path.clone(), m.to_uppercase()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .iter()
                .map(move |m| ((*path).to_owned(), (*m).to_owned()))
        })
        .collect();
    assert_eq!(documented, routed);

    // Every reference points at something the document defines.
    let text = OPENAPI;
    for piece in text.split("\"$ref\": \"#/").skip(1) {
        let target = &piece[..piece.find('"').unwrap()];
        let mut node = &doc;
        for part in target.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref #/{target}");
    }
}

#[tokio::test]
async fn the_router_serves_exactly_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("t.db").display()
    ))
    .await
    .unwrap();
    let usage = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    let service = Arc::new(Service::new(
        store,
        Arc::new(Keyring::parse(&Keyring::generate_spec("k1")).unwrap()),
        KeyHash::of("root"),
        Publisher::new(),
        UsageServiceClient::new(usage),
        OperatorOptions::default(),
    ));
    let app = rest::router(service);
    let id = uuid::Uuid::now_v7().to_string();
    for (path, methods) in ROUTES {
        let concrete = path
            .replace("{id}", &id)
            .replace("{key}", &id)
            .replace("{section}", "pricing");
        for method in METHODS {
            let req = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            let status = app.clone().oneshot(req).await.unwrap().status().as_u16();
            if methods.contains(&method) {
                // Unauthenticated calls are refused before anything else; the
                // operations endpoints answer.
                assert!(
                    matches!(status, 200 | 401),
                    "{method} {path} answered {status}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} should not be routed");
            }
        }
    }
}
