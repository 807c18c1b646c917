//! `/v1/models` lists what a key granted by pattern serves: the models its upstream
//! lists itself, learnt when the key is added, narrowed by each caller's policy; a key
//! whose upstream has no list still shows its explicit models. The real processes and
//! a fake upstream.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_fake_upstream::{Behaviour, FakeUpstream};
use switchyard_tests::system::{System, start_system, wait_for_key};
use switchyard_tests::wait;

async fn listed(sys: &System, key: &str) -> Vec<String> {
    let r = sys
        .http
        .get(sys.proxy("/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "list", "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model", "{m}");
            m["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// `/v1/models` for `key`, once it is `want` (the list travels with a later snapshot).
async fn until_listed(sys: &System, key: &str, want: &[&str]) {
    wait::until_ok(
        Duration::from_secs(20),
        format_args!("/v1/models to be {want:?}"),
        async || {
            let now = listed(sys, key).await;
            if now == want {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_key_granted_every_model_lists_its_upstreams_models_within_each_policy() {
    let sys = start_system(1024 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    fake.set_models(&["o3", "gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]);
    fake.set_behaviour("sk-no-list-0002", Behaviour::NoModelList);

    let (status, created) = sys
        .post("/x-users", &sys.root, json!({"name": "acme"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let owner = created["api_key"].as_str().unwrap().to_owned();
    for (secret, models) in [
        ("sk-every-model-0001", json!(["*"])),
        ("sk-no-list-0002", json!(["legacy-model"])),
    ] {
        let (status, pk) = sys
            .post(
                "/x-keys",
                &owner,
                json!({"provider": "openai", "base_url": fake.base_url(), "secret": secret, "models": models}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pk}");
    }
    let (status, team) = sys
        .post(
            "/x-users",
            &owner,
            json!({"name": "team", "policy": {"models": ["gpt-4o*", "legacy-model"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{team}");
    let team = team["api_key"].as_str().unwrap().to_owned();
    wait_for_key(&sys, &team).await;

    // The owner: every model the upstream lists, and the explicit one of the key
    // whose upstream has none; sorted, once each.
    until_listed(
        &sys,
        &owner,
        &[
            "gpt-4o",
            "gpt-4o-mini",
            "legacy-model",
            "o3",
            "text-embedding-3-small",
        ],
    )
    .await;
    // The sub-account: what its policy allows of them.
    until_listed(&sys, &team, &["gpt-4o", "gpt-4o-mini", "legacy-model"]).await;

    // The key without a list says so; the other shows what it learnt.
    let (status, keys) = sys
        .call(reqwest::Method::GET, "/x-keys".into(), owner.clone(), None)
        .await;
    assert_eq!(status, 200, "{keys}");
    let keys = keys.as_array().unwrap();
    let errors: Vec<&Value> = keys.iter().map(|k| &k["discovery_error"]).collect();
    assert!(errors.contains(&&json!("no model list")), "{keys:?}");
    assert!(errors.contains(&&Value::Null), "{keys:?}");

    // A listed model is callable through the pattern key.
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&team)
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// A Gemini key learns its upstream's models from Gemini's own list: every page
/// (`nextPageToken`), names without `models/`, only models that generate content,
/// asked with the key in `x-goog-api-key` (the fake refuses any other credential).
#[tokio::test]
async fn a_gemini_key_learns_the_generating_models_of_every_page() {
    let sys = start_system(1024 * 1024).await;
    let fake = FakeUpstream::start(Some("AIza-gemini-right-01".into()))
        .await
        .unwrap();
    // More than one page of the fake's (20 a page), out of order.
    let mut models: Vec<String> = (0..24).map(|i| format!("gemini-2.5-v{i:02}")).collect();
    models.reverse();
    fake.set_models(&models.iter().map(String::as_str).collect::<Vec<_>>());

    let (status, created) = sys
        .post("/x-users", &sys.root, json!({"name": "acme"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let owner = created["api_key"].as_str().unwrap().to_owned();
    // The SDK's form of the base URL: the bare host.
    let bare = format!("http://{}", fake.addr);
    let (status, pk) = sys
        .post(
            "/x-keys",
            &owner,
            json!({"provider": "gemini", "base_url": bare, "secret": "AIza-gemini-right-01", "models": ["gemini-*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pk}");
    assert_eq!(pk["base_url"], fake.gemini_base_url());
    models.sort();
    assert_eq!(pk["discovery_error"], Value::Null, "{pk}");
    assert_eq!(pk["discovered_models"], json!(models), "{pk}");
    assert!(
        !pk.to_string()
            .contains(switchyard_fake_upstream::GEMINI_EMBEDDING_MODEL)
    );
    assert_eq!(fake.model_list_calls(), 2);

    // A refused credential is the key's discovery error, asked on demand.
    let (status, wrong) = sys
        .post(
            "/x-keys",
            &owner,
            json!({"provider": "gemini", "base_url": fake.gemini_base_url(), "secret": "AIza-gemini-wrong-02", "models": ["gemini-x"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{wrong}");
    let id = wrong["id"].as_str().unwrap();
    let (status, asked) = sys
        .post(&format!("/x-keys/{id}/discover"), &owner, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    assert_eq!(
        asked["discovery_error"],
        "the upstream refused the credential (401)"
    );
    assert_eq!(asked["discovered_models"], json!([]));
}
