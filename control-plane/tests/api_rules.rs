//! The REST contract of a main account's rules: the whole document (`/x-conf`) and
//! single entries (`/x-config`), validated as a whole; a bad edit changes nothing.
//! On SQLite and Postgres, in process; the rules reaching the data plane are in
//! `tests/tests/e2e.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{App, UPSTREAM};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

switchyard_tests::every_backend!(rules_are_validated_as_a_whole, rules_compare_and_set);

/// Rules of a main account: the whole document and single entries, validated as a
/// whole; a bad edit changes nothing; only a main account has rules.
async fn rules_are_validated_as_a_whole(url: &str) {
    let app = App::new(url).await;
    let (_, main_key) = app.owner("acme").await;
    let (status, _) = app
        .post(
            "/x-keys",
            &main_key,
            json!({"provider": "openai", "base_url": UPSTREAM, "secret": "sk-abc-123456789", "models": ["*"], "level": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, child) = app
        .post("/x-users", &main_key, json!({"name": "team"}))
        .await;
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let call = |method: Method, path: &str, body: Option<Value>| {
        app.call(method, path.to_owned(), main_key.clone(), body)
    };

    let (status, empty) = call(Method::GET, "/x-conf", None).await;
    assert_eq!((status, empty), (200, json!({})));
    let doc = json!({
        "model_mapper": {"gpt-4": "gpt-4o", "old": "gpt-4"},
        "level_mapper": {"gpt-4o*": 1, "*": 2},
        "switch_over": {"1": 2},
        "resources": ["/v1/chat/completions"],
        "model_limits": {"gpt-4o*": {"rpm": 100, "tpm": 100000}},
        "pricing": {"gpt-4o*": {"input_per_million_nanos": 2500000000u64, "cached_input_per_million_nanos": 0,
                                 "output_per_million_nanos": 10000000000u64, "per_request_nanos": 0}}
    });
    let (status, stored) = call(Method::PUT, "/x-conf", Some(doc.clone())).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(call(Method::GET, "/x-conf", None).await.1, doc);

    // Whole-document problems are all named, and nothing changes.
    let revision = app.count("SELECT revision FROM config_revision").await;
    let (status, err) = call(
        Method::PUT,
        "/x-conf",
        Some(json!({"model_mapper": {"a": "b", "b": "a"}, "level_mapper": {"x*": 9}, "switch_over": {"1": 2, "2": 1}})),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    for want in ["mapping cycle", "level 9 has no provider key", "never ends"] {
        assert!(message.contains(want), "{message} should say {want}");
    }
    for (method, path, body, want) in [
        (
            Method::PUT,
            "/x-conf",
            json!({"pricing": {"m": {"input_per_million_nanos": -1}}}),
            400,
        ),
        (Method::PUT, "/x-conf", json!({"levels": {}}), 400),
        (Method::PATCH, "/x-conf", json!({"bogus": {}}), 400),
        (Method::PUT, "/x-config/levels?key=a", json!(1), 400),
        (Method::PUT, "/x-config/switch_over?key=2", json!(1), 422),
        (Method::PUT, "/x-config/level_mapper?key=g*x", json!(1), 400),
        (Method::PUT, "/x-config/model_mapper", json!("x"), 400),
        (
            Method::DELETE,
            "/x-config/model_mapper?key=nope",
            Value::Null,
            404,
        ),
    ] {
        let (status, v) = call(method.clone(), path, Some(body.clone())).await;
        assert_eq!(status, want, "{method} {path} {body} → {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    assert_eq!(
        app.count("SELECT revision FROM config_revision").await,
        revision
    );
    assert_eq!(call(Method::GET, "/x-conf", None).await.1, doc);

    // Sections replace only themselves; entries one at a time.
    let (status, v) = call(Method::PATCH, "/x-conf", Some(json!({"resources": null}))).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("resources").is_none());
    assert_eq!(v["model_mapper"], doc["model_mapper"]);
    let (status, v) = call(
        Method::PUT,
        "/x-config/model_mapper?key=legacy",
        Some(json!("gpt-4o")),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (_, section) = call(Method::GET, "/x-config/model_mapper", None).await;
    assert_eq!(
        section,
        json!({"gpt-4": "gpt-4o", "legacy": "gpt-4o", "old": "gpt-4"})
    );
    let (status, _) = call(Method::DELETE, "/x-config/model_mapper?key=legacy", None).await;
    assert_eq!(status, 200);
    let (status, v) = call(Method::PUT, "/x-config/resources?key=/v1/audio/*", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resources"], json!(["/v1/audio/*"]));
    assert_eq!(call(Method::GET, "/x-config/nope", None).await.0, 400);

    // Only a main account has rules.
    assert_eq!(
        app.call(Method::GET, "/x-conf".into(), child_key.clone(), None)
            .await
            .0,
        403
    );
    assert_eq!(
        app.call(Method::PUT, "/x-conf".into(), child_key, Some(json!({})))
            .await
            .0,
        403
    );
    let (_, log) = call(Method::GET, "/x-audit?limit=1", None).await;
    assert_eq!(log[0]["action"], "rules.update");
    assert_eq!(log[0]["after"]["resources"], json!(["/v1/audio/*"]));
}

/// One rules call with an optional `If-Match`: the status, the `ETag` and the JSON.
async fn tagged_call(
    app: &App,
    method: Method,
    path: &str,
    key: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> (u16, String, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    if let Some(tag) = if_match {
        request = request.header(header::IF_MATCH, tag);
    }
    let request = match body {
        Some(b) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get(header::ETAG)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        etag,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Compare-and-set: every rules answer names its revision (`ETag`); a write with
/// `If-Match` applies only at that revision, one made at an older revision is refused
/// with 409 and changes nothing; without `If-Match` a write applies as before.
async fn rules_compare_and_set(url: &str) {
    let app = App::new(url).await;
    let (_, key) = app.owner("acme").await;

    let (status, etag, _) = tagged_call(&app, Method::GET, "/x-conf", &key, None, None).await;
    assert_eq!(
        (status, etag.as_str()),
        (200, "\"0\""),
        "never saved: revision 0"
    );

    // Two admins read revision 0; the first save wins, the second is refused.
    let (status, etag, v) = tagged_call(
        &app,
        Method::PUT,
        "/x-config/model_mapper?key=alias",
        &key,
        Some("\"0\""),
        Some(json!("gpt-4o")),
    )
    .await;
    assert_eq!((status, etag.as_str()), (200, "\"1\""), "{v}");
    let revision = app.count("SELECT revision FROM config_revision").await;
    for (method, path, body) in [
        (
            Method::PATCH,
            "/x-conf",
            Some(json!({"model_mapper": {"alias": "other"}})),
        ),
        (Method::PUT, "/x-conf", Some(json!({}))),
        (
            Method::PUT,
            "/x-config/model_mapper?key=alias",
            Some(json!("other")),
        ),
        (Method::DELETE, "/x-config/model_mapper?key=alias", None),
    ] {
        let (status, _, v) =
            tagged_call(&app, method.clone(), path, &key, Some("\"0\""), body).await;
        assert_eq!(status, 409, "{method} {path}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(
                "another admin saved these rules at revision 1; your edit was not applied"
            ),
            "{message}"
        );
    }
    assert_eq!(
        app.count("SELECT revision FROM config_revision").await,
        revision,
        "a refused edit commits nothing"
    );
    let (_, etag, section) = tagged_call(
        &app,
        Method::GET,
        "/x-config/model_mapper",
        &key,
        None,
        None,
    )
    .await;
    assert_eq!(
        (etag.as_str(), section),
        ("\"1\"", json!({"alias": "gpt-4o"}))
    );

    // At the current revision (quoted or bare) the edit applies.
    let (status, etag, v) = tagged_call(
        &app,
        Method::PATCH,
        "/x-conf",
        &key,
        Some("1"),
        Some(json!({"forward_headers": ["x-trace"]})),
    )
    .await;
    assert_eq!((status, etag.as_str()), (200, "\"2\""), "{v}");
    assert_eq!(v["model_mapper"], json!({"alias": "gpt-4o"}));

    // A malformed If-Match is refused before anything is read.
    for bad in ["\"x\"", "-1", "W/\"2\"", "99999999999999999999", "*"] {
        let (status, _, v) = tagged_call(
            &app,
            Method::PUT,
            "/x-conf",
            &key,
            Some(bad),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {v}");
    }
    // Without If-Match the write applies to whatever is current, as before.
    let (status, etag, _) =
        tagged_call(&app, Method::PUT, "/x-conf", &key, None, Some(json!({}))).await;
    assert_eq!((status, etag.as_str()), (200, "\"3\""));
}
