//! The OpenAPI document describes exactly the routes the router serves, and the key
//! kinds and error answers of each.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

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

/// Every authenticated operation names the key kinds it takes and documents the
/// refusals every such call can meet, each with the error body.
#[test]
fn every_operation_documents_its_keys_and_errors() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let schemes: BTreeSet<&str> = doc["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        schemes,
        BTreeSet::from(["rootKey", "mainAccountKey", "subAccountKey"])
    );
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let security = op["security"].as_array().unwrap();
            if security.is_empty() {
                continue;
            }
            let kinds = key_kinds(op);
            assert!(!kinds.is_empty(), "{method} {path}: no key kinds");
            let mut wanted = vec!["401", "403", "503"];
            if op.get("parameters").is_some() || op.get("requestBody").is_some() {
                wanted.push("400");
            }
            if op.get("requestBody").is_some() {
                wanted.push("413");
            }
            for code in wanted {
                let response = &op["responses"][code];
                assert!(!response.is_null(), "{method} {path}: no {code} answer");
                let target = response["$ref"].as_str().unwrap();
                let body =
                    &doc["components"]["responses"][&target["#/components/responses/".len()..]];
                assert_eq!(
                    body["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{method} {path}: {code} without the error body"
                );
            }
        }
    }
}

/// The key kinds an operation's `security` names.
fn key_kinds(op: &Value) -> BTreeSet<String> {
    op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|s| s.keys().cloned())
        .collect()
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    key: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"));
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_owned())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await;
    (
        status,
        bytes
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null),
    )
}

/// The operator's key of [`router`].
const ROOT: &str = "sy-root-contract-test-key-0123456789";

/// The REST router over a fresh SQLite store in `dir`, with [`ROOT`] as the
/// operator's key.
async fn router(dir: &std::path::Path) -> axum::Router {
    let store = Store::open(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display()))
        .await
        .unwrap();
    let usage = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    rest::router(Arc::new(Service::new(
        store,
        Arc::new(Keyring::parse(&Keyring::generate_spec("k1")).unwrap()),
        KeyHash::of(ROOT),
        Publisher::new(),
        UsageServiceClient::new(usage),
        OperatorOptions::default(),
    )))
}

/// A main account made by the operator: its key.
async fn main_account(app: &axum::Router) -> String {
    let (status, main) = call(
        app,
        Method::POST,
        "/x-users",
        ROOT,
        Some(r#"{"name":"main"}"#),
    )
    .await;
    assert_eq!(status, 201, "{main}");
    main["api_key"].as_str().unwrap().to_owned()
}

/// What the document says of key kinds holds: a kind it leaves out is refused with
/// 403, a kind it names is never refused for its kind, and every answer is one the
/// operation documents.
#[tokio::test]
async fn key_kinds_are_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let root = ROOT;
    let app = router(dir.path()).await;
    let main = main_account(&app).await;
    let (status, sub) = call(
        &app,
        Method::POST,
        "/x-users",
        &main,
        Some(r#"{"name":"sub"}"#),
    )
    .await;
    assert_eq!(status, 201, "{sub}");
    let sub = sub["api_key"].as_str().unwrap().to_owned();
    let keys = [
        ("rootKey", root),
        ("mainAccountKey", main.as_str()),
        ("subAccountKey", sub.as_str()),
    ];

    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if op["security"].as_array().unwrap().is_empty() {
                continue;
            }
            let kinds = key_kinds(op);
            let uri = path
                .replace("{id}", &id)
                .replace("{key}", &id)
                .replace("{section}", "pricing")
                + if path == "/x-config/{section}" && method != "get" {
                    "?key=m"
                } else {
                    ""
                };
            // A valid body: refusals of the key kind come after the body is read.
            let body = op.get("requestBody").map(|_| match (method.as_str(), path.as_str()) {
                ("post", "/x-users") | ("patch", "/x-users/{id}") => r#"{"name":"n"}"#,
                ("post", "/x-users/{id}/credits") => r#"{"amount_nanos":1}"#,
                ("post", "/x-keys") => {
                    r#"{"provider":"openai","base_url":"https://api.example.com/v1","secret":"sk-test","models":["m"]}"#
                }
                ("patch", "/x-keys/{id}") => r#"{"weight":2}"#,
                ("post", "/dashboard/news") => r#"{"title":"t"}"#,
                _ => "{}",
            });
            for (kind, key) in keys {
                // Rotation retires the key it is called with.
                if path == "/x-self/rotate" && kinds.contains(kind) {
                    continue;
                }
                let (status, answer) = call(
                    &app,
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    &uri,
                    key,
                    body,
                )
                .await;
                let documented = op["responses"].get(status.to_string()).is_some();
                assert!(
                    documented,
                    "{method} {path} as {kind}: undocumented {status} {answer}"
                );
                if kinds.contains(kind) {
                    assert!(
                        !matches!(status, 401 | 403),
                        "{method} {path} as {kind}: {status} {answer}"
                    );
                } else {
                    assert_eq!(status, 403, "{method} {path} as {kind}: {answer}");
                }
            }
        }
    }
}

/// Inputs the document refuses are refused with 400 (413 past the size limit), in
/// the error shape; what it allows is accepted.
#[tokio::test]
async fn bodies_are_read_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let root = ROOT;
    let app = router(dir.path()).await;
    let main = main_account(&app).await;

    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(70_000));
    let cases: Vec<(Method, &str, &str, Option<&str>, u16)> = vec![
        // null in a request field: refused; inside billing, where the document allows it: taken.
        (
            Method::POST,
            "/x-users",
            root,
            Some(r#"{"name":"a","policy":null}"#),
            400,
        ),
        (
            Method::POST,
            "/x-users",
            root,
            Some(r#"{"name":null}"#),
            400,
        ),
        (
            Method::POST,
            "/x-users",
            root,
            Some(
                r#"{"name":"a","billing":{"prices":{"m":{"cache_write_per_million_nanos":null}}}}"#,
            ),
            201,
        ),
        // A struct given as a list, at the top or inside.
        (Method::POST, "/x-self/keys", &main, Some("[]"), 400),
        (Method::POST, "/x-users", root, Some(r#"["a"]"#), 400),
        (
            Method::POST,
            "/x-users",
            root,
            Some(r#"{"name":"a","policy":{"model_limits":{"m":[null,null]}}}"#),
            400,
        ),
        (
            Method::POST,
            "/x-users",
            root,
            Some(r#"{"name":"a","billing":{"prices":{"m":[]}}}"#),
            400,
        ),
        // Whole floats are the integers they spell; fractions are not.
        (
            Method::POST,
            "/x-users",
            root,
            Some(r#"{"name":"a","policy":{"rpm":60.0}}"#),
            201,
        ),
        (
            Method::POST,
            "/x-users",
            root,
            Some(r#"{"name":"a","policy":{"rpm":60.5}}"#),
            400,
        ),
        // Oversized bodies, required or optional.
        (Method::POST, "/x-users", root, Some(big.as_str()), 413),
        (Method::POST, "/x-self/keys", &main, Some(big.as_str()), 413),
        // Extreme query values are refused, never overflow.
        (
            Method::GET,
            "/dashboard/logs?from=-9223372036854775808",
            &main,
            None,
            400,
        ),
        (Method::GET, "/x-users?id=", root, None, 400),
        (Method::GET, "/x-users?limit=4294967296", root, None, 400),
    ];
    for (method, uri, key, body, want) in cases {
        let (status, answer) = call(&app, method.clone(), uri, key, body).await;
        assert_eq!(status, want, "{method} {uri} {body:?}: {answer}");
        if status >= 400 {
            assert!(answer["error"]["message"].is_string(), "{answer}");
        }
    }
}
