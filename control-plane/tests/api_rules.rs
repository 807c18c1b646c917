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

use axum::http::{Method, StatusCode};
use common::{App, UPSTREAM};
use serde_json::{Value, json};

switchyard_tests::every_backend!(rules_are_validated_as_a_whole);

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
