//! The caller's own quota on every answer, against the real processes, with the
//! in-process limiter and with Redis: the protocol's rate-limit headers name the
//! tightest Switchyard limit along the caller's chain (key RPM, account RPM, an
//! ancestor's tighter RPM, ModelLimits RPM and TPM, credit in tokens), remaining
//! falls call by call, a refusal says nothing is left until the same reset, the
//! provider's own rate-limit headers never come through, and an owner's rule turns
//! the headers off.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::{Behaviour, FakeUpstream, PROVIDER_LIMIT};
use switchyard_tests::redis::RedisServer;
use switchyard_tests::system::{
    System, chat, owner_with_keys, settle, start_system_opts, wait_for_key,
};
use switchyard_tests::wait;

const OPENAI: &str = "/v1/chat/completions";
const ANTHROPIC: &str = "/v1/messages";

/// One answer: status, headers and body.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn number(&self, name: &str) -> u64 {
        let text = self.header(name);
        assert!(text.is_some(), "no {name}: {:?}", self.headers);
        text.unwrap().parse().unwrap()
    }

    /// Names of the headers with `prefix`.
    fn named(&self, prefix: &str) -> Vec<&str> {
        self.headers
            .keys()
            .map(|n| n.as_str())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }
}

/// A call to `path` with `key` (both credential headers, so either protocol reads it).
async fn call(sys: &System, path: &str, key: &str, body: &Value) -> Answer {
    let r = sys.proxied(path, key, body).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body,
    }
}

fn openai(stream: bool) -> Value {
    let mut body = chat("how much is left", stream);
    body["max_tokens"] = json!(100);
    body
}

fn anthropic(stream: bool) -> Value {
    json!({"model": "claude-sonnet-4", "max_tokens": 100, "stream": stream,
           "messages": [{"role": "user", "content": "how much is left"}]})
}

fn body_for(path: &str, stream: bool) -> Value {
    if path == ANTHROPIC {
        anthropic(stream)
    } else {
        openai(stream)
    }
}

/// A sub-account of `parent`'s account with `policy`: its API key, once the data plane
/// knows it.
async fn child(sys: &System, parent: &str, name: &str, policy: Value) -> String {
    let (status, created) = sys
        .post("/x-users", parent, json!({"name": name, "policy": policy}))
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    wait_for_key(sys, &key).await;
    key
}

/// The provider's own headers never come through: where Switchyard sets a header of
/// the same name, it is Switchyard's value.
fn no_provider_headers(a: &Answer) {
    for (name, value) in &a.headers {
        assert_ne!(
            value.to_str().unwrap_or_default(),
            PROVIDER_LIMIT,
            "{name} is the provider's"
        );
        assert!(
            !value.to_str().unwrap_or_default().starts_with("2020-"),
            "{name} is the provider's"
        );
    }
}

/// The trio of one kind (`requests`, `tokens`, `input-tokens`, `output-tokens`) in
/// `path`'s protocol: limit, remaining, reset.
fn trio(path: &str, kind: &str, a: &Answer) -> (u64, u64, String) {
    let name = |part: &str| {
        if path == ANTHROPIC {
            format!("anthropic-ratelimit-{kind}-{part}")
        } else {
            format!("x-ratelimit-{part}-{kind}")
        }
    };
    let reset = a.header(&name("reset"));
    assert!(reset.is_some(), "no {kind} reset: {:?}", a.headers);
    (
        a.number(&name("limit")),
        a.number(&name("remaining")),
        reset.unwrap().to_owned(),
    )
}

fn requests(path: &str, a: &Answer) -> (u64, u64, String) {
    trio(path, "requests", a)
}

fn tokens(path: &str, a: &Answer) -> (u64, u64, String) {
    trio(path, "tokens", a)
}

/// An OpenAI reset is a wait within a minute (`250ms`, `42.5s`); an Anthropic one the
/// end of the current minute in RFC 3339 (`…:00Z`).
fn minute_reset(path: &str, reset: &str) {
    if path == ANTHROPIC {
        assert!(
            reset.len() == 20 && reset.ends_with(":00Z") && reset.contains('T'),
            "{reset}"
        );
    } else {
        let ok = reset
            .strip_suffix("ms")
            .is_some_and(|n| n.parse::<u64>().is_ok())
            || reset
                .strip_suffix('s')
                .and_then(|n| n.parse::<f64>().ok())
                .is_some_and(|s| s > 0.0 && s <= 60.0);
        assert!(ok, "{reset}");
    }
}

/// `n` calls with `key` on `path`, each admitted: the requests limit is `limit` and
/// what remains falls by one a call, in one window; the answers.
async fn falling_requests(sys: &System, path: &str, key: &str, limit: u64, n: u64) -> Vec<Answer> {
    let mut answers = Vec::new();
    for i in 1..=n {
        let a = call(sys, path, key, &body_for(path, false)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let (l, remaining, reset) = requests(path, &a);
        assert_eq!((l, remaining), (limit, limit - i), "call {i} on {path}");
        minute_reset(path, &reset);
        no_provider_headers(&a);
        answers.push(a);
    }
    answers
}

/// Every scenario against one system (one limiter).
async fn scenario(sys: &System) {
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, owner, _) = owner_with_keys(
        sys,
        &fake,
        "acme",
        &[
            ("openai", "sk-quota-openai-01", 1, &["*"]),
            ("anthropic", "sk-ant-quota-02", 1, &["*"]),
        ],
    )
    .await;
    // One nano-dollar per input token, two per output token.
    sys.price_every_model(
        &owner,
        json!({
            "input_per_million_nanos": 1_000_000,
            "output_per_million_nanos": 2_000_000,
        }),
    )
    .await;
    settle(sys).await;

    // The provider does send its own headers.
    let direct = sys
        .http
        .post(format!("{}/chat/completions", fake.base_url()))
        .bearer_auth("sk-quota-openai-01")
        .json(&openai(false))
        .send()
        .await
        .unwrap();
    assert_eq!(
        direct.headers()["x-ratelimit-limit-requests"]
            .to_str()
            .unwrap(),
        PROVIDER_LIMIT
    );

    // No limit applies to the owner itself: no quota header, and not the provider's.
    for path in [OPENAI, ANTHROPIC] {
        let a = call(sys, path, &owner, &body_for(path, false)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.named("x-ratelimit-").is_empty(), "{:?}", a.headers);
        assert!(
            a.named("anthropic-ratelimit-").is_empty(),
            "{:?}",
            a.headers
        );
    }

    wait::early_in_a_minute(25_000).await;
    // The key's RPM is the tightest: 5 against the account's 50.
    let keyed = child(sys, &owner, "keyed", json!({"key_rpm": 5, "rpm": 50})).await;
    let answers = falling_requests(sys, OPENAI, &keyed, 5, 3).await;
    // No token limit applies: no token headers; no other protocol's headers.
    assert!(answers[0].header("x-ratelimit-limit-tokens").is_none());
    assert!(answers[0].named("anthropic-ratelimit-").is_empty());
    // A stream carries them too, one call further down.
    let a = call(sys, OPENAI, &keyed, &openai(true)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("data: [DONE]"), "{}", a.body);
    assert_eq!(requests(OPENAI, &a).1, 1);

    // The account's own RPM, on the Anthropic side (streamed and not).
    let rated = child(sys, &owner, "rated", json!({"rpm": 4})).await;
    falling_requests(sys, ANTHROPIC, &rated, 4, 2).await;
    let a = call(sys, ANTHROPIC, &rated, &anthropic(true)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("message_stop"), "{}", a.body);
    assert_eq!(requests(ANTHROPIC, &a).1, 1);
    assert!(a.named("x-ratelimit-").is_empty(), "{:?}", a.headers);

    // An ancestor's RPM binds its members together: once one member spent some of
    // it, it is tighter for the other than that member's own. The limit hit is a 429
    // saying nothing is left until the same reset, with Retry-After as ever.
    for path in [ANTHROPIC, OPENAI] {
        wait::early_in_a_minute(40_000).await;
        let team = child(sys, &owner, &format!("team{path}"), json!({"rpm": 4})).await;
        let first = child(sys, &team, &format!("first{path}"), json!({"rpm": 4})).await;
        let second = child(sys, &team, &format!("second{path}"), json!({"rpm": 4})).await;
        falling_requests(sys, path, &first, 4, 2).await;
        let mut reset = String::new();
        for left in [1, 0] {
            let a = call(sys, path, &second, &body_for(path, false)).await;
            assert_eq!(a.status, 200, "{}", a.body);
            let (limit, remaining, r) = requests(path, &a);
            assert_eq!(
                (limit, remaining),
                (4, left),
                "the team's count, not the member's"
            );
            reset = r;
        }
        let refused = call(sys, path, &second, &body_for(path, false)).await;
        assert_eq!(refused.status, 429, "{}", refused.body);
        assert!(refused.header("retry-after").is_some());
        let (limit, remaining, refused_reset) = requests(path, &refused);
        assert_eq!((limit, remaining), (4, 0));
        if path == ANTHROPIC {
            assert_eq!(refused_reset, reset, "the refusal's reset is the window's");
        } else {
            minute_reset(path, &refused_reset);
        }
        no_provider_headers(&refused);
        // The team's own key meets the same spent window.
        let a = call(sys, path, &team, &body_for(path, false)).await;
        assert_eq!(a.status, 429, "{}", a.body);
        let (limit, remaining, _) = requests(path, &a);
        assert_eq!((limit, remaining), (4, 0));
    }

    // ModelLimits: RPM and TPM for the model, on both protocols. The Anthropic body
    // is the smaller, so its calls go first: each reservation then covers at least
    // the one before it, and what is left falls with every call.
    wait::early_in_a_minute(40_000).await;
    let capped = child(
        sys,
        &owner,
        "capped",
        json!({"model_limits": {"*": {"rpm": 20, "tpm": 5_000}}}),
    )
    .await;
    let mut left = 5_000;
    for (i, path) in [ANTHROPIC, ANTHROPIC, OPENAI, OPENAI]
        .into_iter()
        .enumerate()
    {
        let a = call(sys, path, &capped, &body_for(path, false)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(requests(path, &a).1, 20 - 1 - i as u64);
        let (limit, remaining, reset) = tokens(path, &a);
        assert_eq!(limit, 5_000);
        assert!(
            remaining < left,
            "tokens left fall: {remaining} after {left}"
        );
        // A reservation holds at least the 100 output tokens asked for.
        assert!(remaining <= 5_000 - 100, "{remaining}");
        left = remaining;
        minute_reset(path, &reset);
        if path == ANTHROPIC {
            for kind in ["input-tokens", "output-tokens"] {
                let (limit, remaining, _) = trio(path, kind, &a);
                assert_eq!((limit, remaining), (5_000, left), "{kind}");
            }
        }
        no_provider_headers(&a);
    }
    // A call that cannot fit the TPM: 429, no tokens left, the minute's reset.
    let mut greedy = openai(false);
    greedy["max_tokens"] = json!(6_000);
    let refused = call(sys, OPENAI, &capped, &greedy).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let (limit, remaining, reset) = tokens(OPENAI, &refused);
    assert_eq!((limit, remaining), (5_000, 0));
    minute_reset(OPENAI, &reset);

    // Credit, in tokens at the model's price: the dearest per-token price (output,
    // two nano-dollars) for the tokens, each own price for input and output.
    let funded = child(
        sys,
        &owner,
        "funded",
        json!({"credit": {"limit_nanos": 1_000_000, "period": "day"}}),
    )
    .await;
    let mut left = 500_000;
    for path in [ANTHROPIC, ANTHROPIC, OPENAI, OPENAI] {
        let a = call(sys, path, &funded, &body_for(path, false)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.named("x-ratelimit-limit-requests").is_empty());
        assert!(a.named("anthropic-ratelimit-requests").is_empty());
        let (limit, remaining, reset) = tokens(path, &a);
        assert_eq!(limit, 500_000);
        assert!(remaining < left, "{remaining} after {left}");
        left = remaining;
        if path == ANTHROPIC {
            assert!(reset.ends_with("T00:00:00Z"), "the day's end: {reset}");
            assert_eq!(trio(path, "input-tokens", &a).0, 1_000_000);
            assert_eq!(trio(path, "output-tokens", &a).0, 500_000);
        } else {
            assert!(reset.ends_with('s') && reset.len() > 2, "{reset}");
        }
    }
    // Credit that cannot pay for the call: refused, nothing left until the day ends.
    let poor = child(
        sys,
        &owner,
        "poor",
        json!({"credit": {"limit_nanos": 300, "period": "day"}}),
    )
    .await;
    for (path, status) in [(OPENAI, 429), (ANTHROPIC, 402)] {
        let mut body = body_for(path, false);
        body["max_tokens"] = json!(1_000);
        let refused = call(sys, path, &poor, &body).await;
        assert_eq!(refused.status, status, "{}", refused.body);
        let (limit, remaining, _) = tokens(path, &refused);
        assert_eq!((limit, remaining), (150, 0));
    }

    // An upstream error relayed as it is carries the caller's quota, not the provider's.
    let (_, flaky, _) = owner_with_keys(
        sys,
        &fake,
        "flaky",
        &[("openai", "sk-quota-flaky-03", 1, &["*"])],
    )
    .await;
    wait::early_in_a_minute(40_000).await;
    let shaky = child(sys, &flaky, "shaky", json!({"rpm": 9})).await;
    fake.set_behaviour("sk-quota-flaky-03", Behaviour::Fail { status: 400 });
    let a = call(sys, OPENAI, &shaky, &openai(false)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let (limit, remaining, _) = requests(OPENAI, &a);
    assert_eq!((limit, remaining), (9, 8));
    no_provider_headers(&a);
    assert!(a.header("retry-after").is_none());
    // Every key failing: Switchyard's own error, still with the caller's quota.
    fake.set_behaviour("sk-quota-flaky-03", Behaviour::Fail { status: 500 });
    let a = call(sys, OPENAI, &shaky, &openai(false)).await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert_eq!(requests(OPENAI, &a).1, 7);
    no_provider_headers(&a);

    // The owner's rule turns them off: no quota headers, on answers or refusals.
    sys.set_limit_setting(&owner, "quota_headers", json!(false))
        .await;
    let (status, limits) = sys
        .call(Method::GET, "/x-config/limits".into(), owner.clone(), None)
        .await;
    assert_eq!((status, &limits["quota_headers"]), (200, &json!(false)));
    settle(sys).await;
    wait::early_in_a_minute(40_000).await;
    let quiet = child(sys, &owner, "quiet", json!({"rpm": 2})).await;
    for (path, expected) in [
        (OPENAI, 200),
        (ANTHROPIC, 200),
        (OPENAI, 429),
        (ANTHROPIC, 429),
    ] {
        let a = call(sys, path, &quiet, &body_for(path, false)).await;
        assert_eq!(a.status, expected, "{}", a.body);
        assert!(a.named("x-ratelimit-").is_empty(), "{:?}", a.headers);
        assert!(
            a.named("anthropic-ratelimit-").is_empty(),
            "{:?}",
            a.headers
        );
        assert_eq!(a.header("retry-after").is_some(), expected == 429);
    }
}

async fn start(data_args: &[&str]) -> System {
    let kek = Keyring::generate_spec("k1").to_string();
    start_system_opts(4 * 1024 * 1024, &kek, &kek, data_args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_headers_with_the_in_process_limiter() {
    let sys = start(&[]).await;
    scenario(&sys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_headers_with_redis() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let sys = start(&["--redis-url", url.as_str(), "--redis-namespace", "quota:"]).await;
    scenario(&sys).await;
}
