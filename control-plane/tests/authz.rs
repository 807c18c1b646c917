//! The authorisation matrix: every caller role against every endpoint, on SQLite and
//! on Postgres, through the real router without a socket. An account reaches only
//! itself and its descendants; only main accounts reach the Admin API; an account
//! never changes itself.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::Router;
use axum::http::Method;
use serde_json::{Value, json};

switchyard_tests::every_backend!(every_role_against_every_endpoint);

/// The REST router over a fresh store, and the operator's root key. Bills and logs
/// need the collector; none runs here, so an allowed bill answers 503.
async fn router(url: &str, allow_private_upstreams: bool) -> (Router, String) {
    let app = common::App::with_upstreams(url, allow_private_upstreams).await;
    (app.router, app.root)
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| ("application/json", b.to_string()));
    let (status, v) = common::send(app, method, path, key.unwrap_or_default(), body).await;
    (status.as_u16(), v)
}

async fn every_role_against_every_endpoint(url: &str) {
    let (app, root) = router(url, true).await;

    let make = |parent: String, name: &'static str| {
        let app = app.clone();
        async move {
            let (status, v) = call(
                &app,
                Method::POST,
                "/x-users",
                Some(&parent),
                Some(json!({"name": name})),
            )
            .await;
            assert_eq!(status, 201, "{v}");
            (
                v["account"]["id"].as_str().unwrap().to_owned(),
                v["api_key"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (_main_id, main) = make(root.clone(), "main").await;
    let (_, other) = make(root.clone(), "other-main").await;
    let (child_id, child) = make(main.clone(), "child").await;
    let (_, grandchild) = make(child.clone(), "grandchild").await;
    let (_, sibling) = make(main.clone(), "sibling").await;
    let (status, pk) = call(
        &app,
        Method::POST,
        "/x-keys",
        Some(&main),
        Some(json!({"provider": "openai", "base_url": "http://127.0.0.1:1/v1", "secret": "sk-abc-123456789", "models": ["*"]})),
    )
    .await;
    assert_eq!(status, 201, "{pk}");
    let pk_id = pk["id"].as_str().unwrap().to_owned();

    let roles: [(&str, &str); 6] = [
        ("root", &root),
        ("main", &main),
        ("child", &child),
        ("grandchild", &grandchild),
        ("sibling", &sibling),
        ("other-main", &other),
    ];
    // Expected status per role, in the order of `roles`. The target is `child`.
    let matrix: Vec<(Method, String, Option<Value>, [u16; 6])> = vec![
        (
            Method::GET,
            format!("/x-info?id={child_id}"),
            None,
            [200, 200, 200, 404, 404, 404],
        ),
        (
            Method::GET,
            format!("/x-dna?id={child_id}"),
            None,
            [200, 200, 200, 404, 404, 404],
        ),
        (
            Method::PATCH,
            format!("/x-users/{child_id}"),
            Some(json!({"name": "renamed"})),
            [200, 200, 403, 404, 404, 404],
        ),
        (
            Method::POST,
            format!("/x-users/{child_id}/keys"),
            Some(json!({})),
            [201, 201, 403, 404, 404, 404],
        ),
        (
            Method::GET,
            format!("/x-bill?account={child_id}"),
            None,
            [503, 503, 503, 404, 404, 404],
        ),
        (
            Method::GET,
            "/x-keys".into(),
            None,
            [403, 200, 403, 403, 403, 200],
        ),
        (
            Method::GET,
            format!("/x-keys/{pk_id}"),
            None,
            [403, 200, 403, 403, 403, 404],
        ),
        (
            Method::PATCH,
            format!("/x-keys/{pk_id}"),
            Some(json!({"weight": 2})),
            [403, 200, 403, 403, 403, 404],
        ),
        (
            Method::POST,
            format!("/x-keys/{pk_id}/discover"),
            None,
            [403, 200, 403, 403, 403, 404],
        ),
        (
            Method::GET,
            "/x-conf".into(),
            None,
            [403, 200, 403, 403, 403, 200],
        ),
        (
            Method::PATCH,
            "/x-conf".into(),
            Some(json!({"model_mapper": {"a": "b"}})),
            [403, 200, 403, 403, 403, 200],
        ),
        (
            Method::GET,
            "/x-config/model_mapper".into(),
            None,
            [403, 200, 403, 403, 403, 200],
        ),
        (
            Method::GET,
            "/x-audit".into(),
            None,
            [200, 200, 403, 403, 403, 200],
        ),
        (
            Method::GET,
            "/x-self".into(),
            None,
            [403, 200, 200, 200, 200, 200],
        ),
        (
            Method::GET,
            "/dashboard/models".into(),
            None,
            [403, 200, 200, 200, 200, 200],
        ),
        (
            Method::GET,
            "/dashboard/status".into(),
            None,
            [200, 200, 200, 200, 200, 200],
        ),
        (
            Method::GET,
            "/x-users".into(),
            None,
            [200, 200, 200, 200, 200, 200],
        ),
        (
            Method::GET,
            format!("/x-users/{child_id}/credits"),
            None,
            [200, 200, 200, 404, 404, 404],
        ),
        (
            Method::POST,
            format!("/x-users/{child_id}/credits"),
            Some(json!({"amount_nanos": 1})),
            [403, 200, 403, 404, 404, 404],
        ),
        (
            Method::GET,
            format!("/dashboard/logs?account={child_id}"),
            None,
            [503, 503, 503, 404, 404, 404],
        ),
        (
            Method::GET,
            format!("/dashboard/billing?account={child_id}"),
            None,
            [503, 503, 503, 404, 404, 404],
        ),
        (
            Method::GET,
            "/dashboard/news".into(),
            None,
            [200, 200, 200, 200, 200, 200],
        ),
        (
            Method::PUT,
            "/x-config/model_mapper?key=x".into(),
            Some(json!("y")),
            [403, 200, 403, 403, 403, 200],
        ),
        (
            Method::DELETE,
            format!("/x-self/keys/{}", uuid::Uuid::now_v7()),
            None,
            [403, 404, 404, 404, 404, 404],
        ),
    ];
    for (method, path, body, expected) in &matrix {
        // No key at all: always 401, before anything else is looked at.
        let (status, _) = call(&app, method.clone(), path, None, body.clone()).await;
        assert_eq!(status, 401, "{method} {path} without a key");
        for ((role, key), want) in roles.iter().zip(expected) {
            let (status, v) = call(&app, method.clone(), path, Some(key), body.clone()).await;
            assert_eq!(status, *want, "{role}: {method} {path} → {v}");
            if status >= 400 {
                assert!(
                    v["error"]["message"].is_string(),
                    "{role}: {method} {path} → {v}"
                );
            }
        }
    }

    // Deleting: only strict ancestors, and the account then is gone for everyone.
    for (role, key, want) in [
        ("child", &child, 403u16),
        ("sibling", &sibling, 404),
        ("other-main", &other, 404),
    ] {
        let (status, _) = call(
            &app,
            Method::DELETE,
            &format!("/x-users/{child_id}?cascade=true"),
            Some(key),
            None,
        )
        .await;
        assert_eq!(status, want, "{role} deleting child");
    }
    let (status, v) = call(
        &app,
        Method::DELETE,
        &format!("/x-users/{child_id}?cascade=true"),
        Some(&main),
        None,
    )
    .await;
    assert_eq!((status, v["deleted"].as_u64()), (200, Some(2)), "{v}");
    for key in [&child, &grandchild] {
        assert_eq!(
            call(&app, Method::GET, "/x-self", Some(key), None).await.0,
            401
        );
    }
    assert_eq!(
        call(&app, Method::GET, "/x-self", Some(&sibling), None)
            .await
            .0,
        200
    );
}

switchyard_tests::every_backend!(news_reaches_descendants_only);

async fn news_reaches_descendants_only(url: &str) {
    let (app, root) = router(url, false).await;
    let make = |parent: String, name: &'static str| {
        let app = app.clone();
        async move {
            let (_, v) = call(
                &app,
                Method::POST,
                "/x-users",
                Some(&parent),
                Some(json!({"name": name})),
            )
            .await;
            v["api_key"].as_str().unwrap().to_owned()
        }
    };
    let main = make(root.clone(), "main").await;
    let other = make(root.clone(), "other").await;
    let child = make(main.clone(), "child").await;
    let grandchild = make(child.clone(), "grandchild").await;
    let post = |key: String, title: &'static str| {
        let app = app.clone();
        async move {
            call(
                &app,
                Method::POST,
                "/dashboard/news",
                Some(&key),
                Some(json!({"title": title, "body": "b"})),
            )
            .await
        }
    };
    let titles = |key: String| {
        let app = app.clone();
        async move {
            let (status, v) = call(&app, Method::GET, "/dashboard/news", Some(&key), None).await;
            assert_eq!(status, 200, "{v}");
            v.as_array()
                .unwrap()
                .iter()
                .map(|n| n["title"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(post(root.clone(), "maintenance").await.0, 201);
    let (status, from_main) = post(main.clone(), "new models").await;
    assert_eq!(status, 201);
    assert_eq!(post(child.clone(), "team news").await.0, 201);
    assert_eq!(
        titles(grandchild.clone()).await,
        vec!["team news", "new models", "maintenance"]
    );
    assert_eq!(
        titles(child.clone()).await,
        vec!["team news", "new models", "maintenance"]
    );
    assert_eq!(
        titles(main.clone()).await,
        vec!["new models", "maintenance"]
    );
    assert_eq!(titles(other.clone()).await, vec!["maintenance"]);

    // Bad input and strangers change nothing.
    for body in [
        json!({"title": ""}),
        json!({"title": "x".repeat(201)}),
        json!({"title": "t", "body": "x".repeat(10_001)}),
        json!({"title": "t", "colour": 1}),
    ] {
        assert_eq!(
            call(
                &app,
                Method::POST,
                "/dashboard/news",
                Some(&main),
                Some(body)
            )
            .await
            .0,
            400
        );
    }
    let id = from_main["id"].as_str().unwrap();
    let path = format!("/dashboard/news/{id}");
    assert_eq!(
        call(&app, Method::DELETE, &path, Some(&child), None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            "/dashboard/news/nope",
            Some(&main),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            "/dashboard/news?limit=0",
            Some(&main),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(titles(child.clone()).await.len(), 3);
    assert_eq!(
        call(&app, Method::DELETE, &path, Some(&main), None).await.0,
        204
    );
    assert_eq!(
        titles(child.clone()).await,
        vec!["team news", "maintenance"]
    );
}

switchyard_tests::every_backend!(credit_never_exceeds_what_the_parent_can_cover);

async fn credit_never_exceeds_what_the_parent_can_cover(url: &str) {
    let (app, root) = router(url, false).await;
    let make = |parent: String, name: &'static str| {
        let app = app.clone();
        async move {
            let (_, v) = call(
                &app,
                Method::POST,
                "/x-users",
                Some(&parent),
                Some(json!({"name": name})),
            )
            .await;
            (
                v["account"]["id"].as_str().unwrap().to_owned(),
                v["api_key"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (main_id, main) = make(root.clone(), "main").await;
    let (child_id, child) = make(main.clone(), "child").await;
    let (grand_id, grand) = make(child.clone(), "grandchild").await;
    let (_, sibling) = make(main.clone(), "sibling").await;
    let allocate = |key: String, id: String, amount: i64| {
        let app = app.clone();
        async move {
            call(
                &app,
                Method::POST,
                &format!("/x-users/{id}/credits"),
                Some(&key),
                Some(json!({"amount_nanos": amount, "note": "t"})),
            )
            .await
        }
    };
    let view = |key: String, id: String| {
        let app = app.clone();
        async move {
            call(
                &app,
                Method::GET,
                &format!("/x-users/{id}/credits"),
                Some(&key),
                None,
            )
            .await
        }
    };

    // The operator grants a main account; a main account funds its children.
    assert_eq!(allocate(root.clone(), main_id.clone(), 1_000).await.0, 200);
    let (status, v) = allocate(main.clone(), child_id.clone(), 100).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["allocated_nanos"].as_i64(),
            v["available_to_delegate_nanos"].as_i64()
        ),
        (Some(100), Some(100))
    );
    let (_, m) = view(main.clone(), main_id.clone()).await;
    assert_eq!(
        (
            m["delegated_nanos"].as_i64(),
            m["available_to_delegate_nanos"].as_i64()
        ),
        (Some(100), None)
    );

    // A sub-account passes on no more than it holds.
    assert_eq!(allocate(child.clone(), grand_id.clone(), 60).await.0, 200);
    let (status, v) = allocate(child.clone(), grand_id.clone(), 50).await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot cover")
    );
    // Withdrawals never take what was already passed on, nor go below zero.
    let (status, v) = allocate(main.clone(), child_id.clone(), -50).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(allocate(main.clone(), child_id.clone(), -40).await.0, 200);
    assert_eq!(allocate(child.clone(), grand_id.clone(), -61).await.0, 422);

    // Only the direct parent allocates; strangers see nothing.
    assert_eq!(allocate(main.clone(), grand_id.clone(), 1).await.0, 403);
    assert_eq!(allocate(grand.clone(), grand_id.clone(), 1).await.0, 403);
    assert_eq!(allocate(sibling.clone(), child_id.clone(), 1).await.0, 404);
    assert_eq!(view(sibling.clone(), child_id.clone()).await.0, 404);
    assert_eq!(view(grand.clone(), child_id.clone()).await.0, 404);
    for body in [
        json!({"amount_nanos": 0}),
        json!({"amount_nanos": "5"}),
        json!({"amount_nanos": 5, "memo": "x"}),
        json!({"amount_nanos": i64::MAX}),
    ] {
        let (status, _) = call(
            &app,
            Method::POST,
            &format!("/x-users/{child_id}/credits"),
            Some(&main),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}");
    }

    // Concurrent top-ups: exactly what the parent can cover gets through.
    let (_, c) = view(child.clone(), child_id.clone()).await;
    let room = c["available_to_delegate_nanos"].as_i64().unwrap();
    assert_eq!(room, 0);
    assert_eq!(allocate(main.clone(), child_id.clone(), 100).await.0, 200);
    let tries = (0..30).map(|_| allocate(child.clone(), grand_id.clone(), 10));
    let results = futures_util::future::join_all(tries).await;
    assert_eq!(results.iter().filter(|(s, _)| *s == 200).count(), 10);
    assert!(results.iter().all(|(s, _)| *s == 200 || *s == 422));
    let (_, c) = view(child.clone(), child_id.clone()).await;
    assert_eq!(
        (c["allocated_nanos"].as_i64(), c["delegated_nanos"].as_i64()),
        (Some(160), Some(160))
    );
    let (_, g) = view(grand.clone(), grand_id.clone()).await;
    assert_eq!(g["allocated_nanos"].as_i64(), Some(160));
    assert_eq!(g["ledger"].as_array().unwrap().len(), 11);

    // Deleting a subtree returns its credit to the parent's pool.
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/x-users/{grand_id}"),
        Some(&child),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, c) = view(child.clone(), child_id.clone()).await;
    assert_eq!(c["delegated_nanos"].as_i64(), Some(0));
}
