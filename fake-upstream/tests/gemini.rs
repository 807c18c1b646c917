//! The fake's Gemini endpoints, over HTTP: answers, streams, token counts, the paged
//! model list, the two places a credential may come from, and each way a
//! credential can be told to misbehave, in Google's error shape.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_fake_upstream::{Behaviour, FakeUpstream, GEMINI_EMBEDDING_MODEL};

/// A client (reqwest's TLS needs a crypto provider, even for plain HTTP).
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn post(fake: &FakeUpstream, call: &str, secret: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}/models/{call}", fake.gemini_base_url()))
        .header("x-goog-api-key", secret)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The JSON answer to a call.
async fn answer(fake: &FakeUpstream, call: &str, secret: &str, body: Value) -> Value {
    post(fake, call, secret, body).await.json().await.unwrap()
}

fn hello() -> Value {
    json!({"systemInstruction": {"parts": [{"text": "be brief"}]},
           "contents": [{"role": "user", "parts": [{"text": "hello there"}]}]})
}

/// The `data:` payloads of an SSE body.
fn events(text: &str) -> Vec<Value> {
    text.split("\r\n\r\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn generate_content_echoes_with_usage_metadata() {
    let fake = FakeUpstream::start(None).await.unwrap();
    let r = post(&fake, "gemini-2.5-flash:generateContent", "g-1", hello()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let candidate = &v["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(
        candidate["content"]["parts"][0]["text"],
        "echo: hello there"
    );
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    // Four words in, three out, by the fake's rule.
    assert_eq!(
        v["usageMetadata"],
        json!({"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7})
    );
    assert_eq!(fake.observed().authorizations.lock().unwrap()[0], "g-1");
    assert_eq!(fake.calls_with("g-1"), 1);
}

#[tokio::test]
async fn tools_are_answered_with_a_function_call() {
    let fake = FakeUpstream::start(None).await.unwrap();
    let mut body = hello();
    body["tools"] = json!([{"functionDeclarations": [{"name": "lookup", "parametersJsonSchema": {"type": "object"}}]}]);
    let v = answer(&fake, "gemini-2.5-pro:generateContent", "g", body.clone()).await;
    assert_eq!(
        v["candidates"][0]["content"]["parts"][1]["functionCall"],
        json!({"name": "lookup", "args": {"echo": "hello there"}})
    );
    let text = post(
        &fake,
        "gemini-2.5-pro:streamGenerateContent?alt=sse",
        "g",
        body,
    )
    .await
    .text()
    .await
    .unwrap();
    let chunks = events(&text);
    let last = chunks.last().unwrap();
    assert_eq!(
        last["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "lookup"
    );
}

#[tokio::test]
async fn streams_are_sse_of_whole_responses_with_usage_last() {
    let fake = FakeUpstream::start(None).await.unwrap();
    let r = post(
        &fake,
        "gemini-2.5-flash:streamGenerateContent?alt=sse",
        "g",
        hello(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let chunks = events(&r.text().await.unwrap());
    let text: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "echo: hello there");
    let (last, rest) = chunks.split_last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["promptTokenCount"], 4);
    assert!(
        rest.iter().all(|c| c.get("usageMetadata").is_none()
            && c["candidates"][0].get("finishReason").is_none()),
        "{rest:?}"
    );
    // Without `alt=sse`: one JSON array of the same responses.
    let v = answer(
        &fake,
        "gemini-2.5-flash:streamGenerateContent",
        "g",
        hello(),
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), chunks.len());
}

#[tokio::test]
async fn tokens_are_counted_with_or_without_a_whole_request() {
    let fake = FakeUpstream::start(None).await.unwrap();
    let contents = json!({"contents": [{"parts": [{"text": "one two three"}]}]});
    let v = answer(&fake, "gemini-2.5-flash:countTokens", "g", contents).await;
    assert_eq!(v, json!({"totalTokens": 3}));
    let wrapped = json!({"generateContentRequest": hello()});
    let v = answer(&fake, "gemini-2.5-flash:countTokens", "g", wrapped).await;
    assert_eq!(v, json!({"totalTokens": 4}));
    let r = post(&fake, "gemini-2.5-flash:embedContent", "g", hello()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "NOT_FOUND");
}

#[tokio::test]
async fn the_credential_comes_from_the_header_or_the_query() {
    let fake = FakeUpstream::start(Some("AIza-right".into()))
        .await
        .unwrap();
    let http = http();
    let url = format!(
        "{}/models/gemini-2.5-flash:generateContent",
        fake.gemini_base_url()
    );
    let by_query = http
        .post(format!("{url}?key=AIza-right"))
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), StatusCode::OK);
    let wrong = post(
        &fake,
        "gemini-2.5-flash:generateContent",
        "AIza-wrong",
        hello(),
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let v: Value = wrong.json().await.unwrap();
    assert_eq!(v["error"]["code"], 401);
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    // Bearer is not Gemini's: refused like no credential at all.
    let bearer = http
        .post(&url)
        .bearer_auth("AIza-right")
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_credential_misbehaves_as_told_in_googles_error_shape() {
    let fake = FakeUpstream::start(None).await.unwrap();
    fake.set_behaviour(
        "limited",
        Behaviour::RateLimit {
            retry_after_secs: 7,
        },
    );
    fake.set_behaviour("failing", Behaviour::Fail { status: 503 });
    fake.set_behaviour("refused", Behaviour::Reject);
    fake.set_behaviour("cut", Behaviour::CutAfter { events: 1 });
    fake.set_behaviour("early", Behaviour::EndAfter { events: 1 });
    fake.set_behaviour("stalled", Behaviour::Stall);
    fake.set_behaviour("no-usage", Behaviour::OmitUsage);

    let r = post(&fake, "m:generateContent", "limited", hello()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "7");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(v["error"]["message"].is_string());

    let v = answer(&fake, "m:generateContent", "failing", hello()).await;
    assert_eq!(
        (v["error"]["code"].clone(), v["error"]["status"].clone()),
        (json!(503), json!("UNAVAILABLE"))
    );
    // Google refuses an invalid key with a 400 naming `API_KEY_INVALID`.
    let r = post(&fake, "m:generateContent", "refused", hello()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(v["error"]["details"][0]["reason"], "API_KEY_INVALID");

    // Cut: the first event arrives, then the connection breaks.
    let r = post(&fake, "m:streamGenerateContent?alt=sse", "cut", hello()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.is_err(), "a cut stream is an error");
    // Ended early: one event and a clean end, without a finish reason.
    let text = post(&fake, "m:streamGenerateContent?alt=sse", "early", hello())
        .await
        .text()
        .await
        .unwrap();
    let chunks = events(&text);
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0]["candidates"][0].get("finishReason").is_none());

    let v = answer(&fake, "m:generateContent", "no-usage", hello()).await;
    assert!(v.get("usageMetadata").is_none(), "{v}");
    assert!(v.get("candidates").is_some(), "{v}");

    // Stalled: no answer within a while (the client gives up, not the fake).
    let stalled = http()
        .post(format!(
            "{}/models/m:generateContent",
            fake.gemini_base_url()
        ))
        .header("x-goog-api-key", "stalled")
        .timeout(Duration::from_millis(300))
        .json(&hello())
        .send()
        .await;
    assert!(stalled.unwrap_err().is_timeout());
}

#[tokio::test]
async fn the_model_list_pages_and_names_models_as_gemini_does() {
    let fake = FakeUpstream::start(None).await.unwrap();
    let many: Vec<String> = (0..25).map(|i| format!("gemini-x-{i:02}")).collect();
    fake.set_models(&many.iter().map(String::as_str).collect::<Vec<_>>());
    fake.set_behaviour("none", Behaviour::NoModelList);
    let http = http();
    let mut names = Vec::new();
    let mut url = format!("{}/models?pageSize=1000", fake.gemini_base_url());
    let mut pages = 0;
    loop {
        let v: Value = http
            .get(&url)
            .header("x-goog-api-key", "g")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        for m in v["models"].as_array().unwrap() {
            names.push(m["name"].as_str().unwrap().to_owned());
            assert!(m["supportedGenerationMethods"].is_array(), "{m}");
        }
        match v["nextPageToken"].as_str() {
            Some(token) => {
                url = format!(
                    "{}/models?pageSize=1000&pageToken={token}",
                    fake.gemini_base_url()
                )
            }
            None => break,
        }
    }
    assert_eq!(pages, 2, "at most 20 a page");
    assert_eq!(names.len(), 26);
    assert_eq!(names[0], "models/gemini-x-00");
    assert_eq!(names[25], format!("models/{GEMINI_EMBEDDING_MODEL}"));
    assert_eq!(fake.model_list_calls(), 2);

    let r = http
        .get(format!("{}/models?key=none", fake.gemini_base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "NOT_FOUND");
}
