//! Limits across replicas: four data-plane processes share one Redis, and the caps an
//! owner sets hold for the sum of what they admit.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::procs::Proc;
use switchyard_tests::redis::RedisServer;
use switchyard_tests::system::{
    System, chat, settle, start_system_opts, usage_logs, wait_for_key_at,
};
use switchyard_tests::wait;

/// A sub-account of `parent_key`'s account with `policy`: its API key.
async fn child(sys: &System, parent_key: &str, name: &str, policy: Value) -> String {
    let (status, created) = sys
        .post(
            "/x-users",
            parent_key,
            json!({"name": name, "policy": policy}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["api_key"].as_str().unwrap().to_owned()
}

/// Until every replica knows `key`.
async fn known_everywhere(sys: &System, urls: &[String], key: &str) {
    for url in urls {
        wait_for_key_at(sys, url, key).await;
    }
}

/// `n` chat calls at once with `key`, spread over the replicas: each status and body.
async fn burst(sys: &System, urls: &[String], key: &str, n: usize) -> Vec<(u16, Value)> {
    let mut body = chat("count me", false);
    body["max_tokens"] = json!(20);
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let http = sys.http.clone();
            let url = format!("{}/v1/chat/completions", urls[i % urls.len()]);
            let key = key.to_owned();
            let body = body.clone();
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let mut answer: Value = r.json().await.unwrap_or(Value::Null);
                answer["retry_after_header"] = json!(retry_after);
                (status, answer)
            })
        })
        .collect();
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

/// The cost of every usage event of `key`'s tree, by account, once `n` have arrived.
async fn spend(sys: &System, key: &str, n: usize) -> Vec<(String, i64)> {
    usage_logs(sys, key, n)
        .await
        .iter()
        .map(|e| {
            (
                e["account_id"].as_str().unwrap_or_default().to_owned(),
                e["cost_nanos"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_hold_across_four_replicas_sharing_redis() {
    let mut redis = RedisServer::start().unwrap();
    let redis_url = redis.url();
    let shared = [
        "--redis-url",
        redis_url.as_str(),
        "--redis-namespace",
        "e2e:",
        "--limits-local-share-replicas",
        "4",
    ];
    let kek = Keyring::generate_spec("k1").to_string();
    let sys = start_system_opts(4 * 1024 * 1024, &kek, &kek, &shared).await;
    let mut replicas: Vec<Proc> = Vec::new();
    for _ in 0..3 {
        replicas.push(sys.another_data_plane(&shared).await);
    }
    let urls: Vec<String> = std::iter::once(sys.data.url("http"))
        .chain(replicas.iter().map(|p| p.url("http")))
        .collect();
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, owner) = sys.owner("acme", &fake).await;
    // One nano-dollar per token, in and out: a call's cost is its token count.
    sys.price_every_model(
        &owner,
        json!({
            "input_per_million_nanos": 1_000_000,
            "cached_input_per_million_nanos": 1_000_000,
            "output_per_million_nanos": 1_000_000,
            "per_request_nanos": 0
        }),
    )
    .await;

    // RPM: 60 a minute for the account, 200 calls at once over four replicas.
    let rated = child(&sys, &owner, "rated", json!({"rpm": 60})).await;
    known_everywhere(&sys, &urls, &rated).await;
    wait::early_in_a_minute(40_000).await;
    let answers = burst(&sys, &urls, &rated, 200).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 429)
        .map(|(_, a)| a)
        .collect();
    assert_eq!(ok, 60, "exactly the cap is admitted");
    assert_eq!(limited.len(), 140);
    let message = limited[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("60 requests per minute"), "{message}");
    assert_eq!(limited[0]["error"]["type"], "rate_limit_error");
    assert_eq!(limited[0]["retry_after_header"], true);

    // Credit: a team with 3,000 nano-dollars a day, and two members with 2,000 each.
    // Every call reserves its prompt estimate plus 20 output tokens, and costs less.
    let team = child(
        &sys,
        &owner,
        "team",
        json!({"credit": {"limit_nanos": 3_000, "period": "day"}}),
    )
    .await;
    let credit = |n: u64| json!({"credit": {"limit_nanos": n, "period": "day"}});
    let a = child(&sys, &team, "a", credit(2_000)).await;
    let b = child(&sys, &team, "b", credit(2_000)).await;
    known_everywhere(&sys, &urls, &a).await;
    known_everywhere(&sys, &urls, &b).await;
    let (from_a, from_b) = tokio::join!(burst(&sys, &urls, &a, 60), burst(&sys, &urls, &b, 60));
    let admitted = from_a
        .iter()
        .chain(&from_b)
        .filter(|(s, _)| *s == 200)
        .count();
    let refused: Vec<&Value> = from_a
        .iter()
        .chain(&from_b)
        .filter(|(s, _)| *s == 429)
        .map(|(_, a)| a)
        .collect();
    assert!(admitted > 0, "some calls fit");
    assert_eq!(admitted + refused.len(), 120);
    assert_eq!(refused[0]["error"]["type"], "insufficient_quota");
    // OpenAI clients read it from `code` too.
    assert_eq!(refused[0]["error"]["code"], "insufficient_quota");
    assert!(
        refused[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("credit of account"),
        "{}",
        refused[0]
    );
    // What was spent: never more than the team's cap (every call cost less than it
    // reserved, so the overshoot bound is zero here), and each member within its own.
    let events = spend(&sys, &team, admitted).await;
    let total: i64 = events.iter().map(|(_, c)| c).sum();
    assert!(total > 0);
    assert!(total <= 3_000, "team spent {total}");
    for member in [&from_a, &from_b] {
        let n = member.iter().filter(|(s, _)| *s == 200).count();
        assert!(n > 0, "each member got some calls in");
    }
    let by_account =
        |id: &str| -> i64 { events.iter().filter(|(a, _)| a == id).map(|(_, c)| c).sum() };
    for (account, _) in &events {
        assert!(
            by_account(account) <= 2_000,
            "{account} spent {}",
            by_account(account)
        );
    }

    // Redis restarts empty: every counter is gone. The period's spend is rebuilt from
    // the collector's rollups before anything is admitted, so a cap still holds for
    // the day instead of starting over. An account spends until its credit refuses.
    let saver = child(&sys, &owner, "saver", credit(200)).await;
    known_everywhere(&sys, &urls, &saver).await;
    let mut calls = 0;
    loop {
        let (mut status, mut answer) = burst(&sys, &urls[..1], &saver, 1).await.remove(0);
        if status == 429 {
            // A refusal may count reservations whose settlement has not landed yet;
            // the credit is spent only if it still refuses once every call is in
            // the ledger (what a rebuild reads).
            spend(&sys, &saver, calls).await;
            (status, answer) = burst(&sys, &urls[..1], &saver, 1).await.remove(0);
            if status == 429 {
                assert_eq!(answer["error"]["type"], "insufficient_quota", "{answer}");
                break;
            }
        }
        assert_eq!(status, 200, "{answer}");
        calls += 1;
        assert!(calls < 100, "the credit never ran out");
    }
    let spent: i64 = spend(&sys, &saver, calls)
        .await
        .iter()
        .map(|(_, c)| c)
        .sum();
    assert!(spent > 0 && spent <= 200, "spent {spent}");
    redis.restart_empty().unwrap();
    for url in &urls {
        let (status, answer) = burst(&sys, std::slice::from_ref(url), &saver, 1)
            .await
            .remove(0);
        assert_eq!(status, 429, "{url} after the restart: {answer}");
        assert_eq!(answer["error"]["type"], "insufficient_quota", "{answer}");
    }
    // Calls within what is left still go through.
    let (status, answer) = burst(&sys, &urls[1..2], &a, 1).await.remove(0);
    assert!(status == 200 || status == 429, "{answer}");

    // The owner's default output reservation applies to calls that name no maximum:
    // 5,000 tokens (5,000 nano-dollars here) cannot fit a 2,000 credit, 500 can.
    let frugal = child(&sys, &owner, "frugal", credit(2_000)).await;
    known_everywhere(&sys, &urls, &frugal).await;
    let unbounded_call = |url: &str| {
        sys.http
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(&frugal)
            .json(&chat("no maximum named", false))
            .send()
    };
    for (tokens, admitted) in [(5_000, false), (500, true)] {
        sys.set_limit_setting(&owner, "default_max_output_tokens", json!(tokens))
            .await;
        settle(&sys).await;
        let r = unbounded_call(&urls[2]).await.unwrap();
        assert_eq!(r.status() == StatusCode::OK, admitted, "default {tokens}");
    }
    // Bad settings are refused with a reason, and change nothing.
    for (key, value, why) in [
        (
            "default_max_output_tokens",
            json!(0),
            "between 1 and 1000000",
        ),
        ("default_max_output_tokens", json!("lots"), "invalid type"),
        ("when_store_down", json!("sometimes"), "unknown variant"),
        ("burst", json!(1), "unknown field"),
    ] {
        let (status, body) = sys
            .call(
                Method::PUT,
                format!("/x-config/limits?key={key}"),
                owner.clone(),
                Some(value),
            )
            .await;
        assert!(status == 400 || status == 422, "{key}: {status} {body}");
        assert!(body.to_string().contains(why), "{key}: {body}");
    }
    let (status, body) = sys
        .call(Method::GET, "/x-config/limits".into(), owner.clone(), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"default_max_output_tokens": 500, "when_store_down": "fail_closed"})
    );

    // Redis gone: each owner's policy decides. Calls that have limits of an owner who
    // fails closed (the default) are refused with a reason; calls without limits are
    // not affected; an owner who fails open gets each replica's share of its limits
    // (12 a minute over 4 replicas: 3 on each).
    let open_owner = sys.owner_failing_open("open", &fake).await;
    let opened = child(&sys, &open_owner, "opened", json!({"rpm": 12})).await;
    known_everywhere(&sys, &urls, &opened).await;
    redis.kill();
    let (status, answer) = burst(&sys, &urls[..1], &a, 1).await.remove(0);
    assert_eq!(status, 503, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("limit store is unreachable"), "{message}");
    let (status, answer) = burst(&sys, &urls[..1], &owner, 1).await.remove(0);
    assert_eq!(status, 200, "{answer}");
    wait::early_in_a_minute(40_000).await;
    let shares = burst(&sys, &urls[..1], &opened, 5).await;
    let statuses: Vec<u16> = shares.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{shares:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{shares:?}"
    );

    // The metrics say which policy decided, and that the store is down.
    let metrics = sys
        .http
        .get(format!("{}/metrics", urls[0]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "switchyard_limit_store_up 0",
        "switchyard_limit_store_down_decisions_total{policy=\"fail_closed\"} 1",
        "switchyard_limit_store_down_decisions_total{policy=\"fail_open\"} 5",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_limit_refusals_total{limit=\"credit\"}")),
        "{metrics}"
    );
}
