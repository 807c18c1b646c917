//! Rate limits when the shared store fails, with two data-plane processes sharing
//! one Redis: a minute spent before Redis restarts empty stays spent, and owners who
//! fail open get, while Redis is away, each limit divided by the live data planes the
//! control plane counts (no `--limits-local-share-replicas` given).

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::redis::RedisServer;
use switchyard_tests::system::{System, chat, start_system_opts, wait_for_key_at};
use switchyard_tests::wait;

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A sub-account of `owner`'s account with an RPM: its API key, known to every replica.
async fn rated(sys: &System, urls: &[String], owner: &str, name: &str, rpm: u32) -> String {
    let (status, created) = sys
        .post(
            "/x-users",
            owner,
            json!({"name": name, "policy": {"rpm": rpm}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    for url in urls {
        wait_for_key_at(sys, url, &key).await;
    }
    key
}

/// `n` chat calls at once with `key`, taking the replicas in turn: how many were
/// admitted; every other answer must be a rate-limit refusal.
async fn admitted(sys: &System, urls: &[String], key: &str, n: usize) -> usize {
    let mut body = chat("count me", false);
    body["max_tokens"] = json!(20);
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let request = sys
                .http
                .post(format!("{}/v1/chat/completions", urls[i % urls.len()]))
                .bearer_auth(key)
                .json(&body);
            tokio::spawn(async move {
                let r = request.send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            })
        })
        .collect();
    let mut ok = 0;
    for c in calls {
        let (status, answer) = c.await.unwrap();
        assert!(status == 200 || status == 429, "{status} {answer}");
        ok += usize::from(status == 200);
    }
    ok
}

/// The live data-plane count the replica at `url` last heard from the control plane.
async fn live_data_planes(sys: &System, url: &str) -> u64 {
    let ready: Value = sys
        .http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ready["live_data_planes"].as_u64().unwrap()
}

async fn wait_for_count(sys: &System, url: &str, count: u64) {
    let what = format!("{url} to count {count} data planes");
    wait::until(Duration::from_secs(20), what, async || {
        (live_data_planes(sys, url).await == count).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_windows_hold_when_redis_loses_its_counters_or_goes_away() {
    let mut redis = RedisServer::start().unwrap();
    let redis_url = redis.url();
    let shared = [
        "--redis-url",
        redis_url.as_str(),
        "--redis-namespace",
        "lost:",
    ];
    let kek = Keyring::generate_spec("k1").to_string();
    let sys = start_system_opts(4 * 1024 * 1024, &kek, &kek, &shared).await;
    let mut second = sys.another_data_plane(&shared).await;
    let urls = vec![sys.data.url("http"), second.url("http")];
    let fake = FakeUpstream::start(None).await.unwrap();

    // A fail-closed owner spends a minute's 30 requests over both replicas; Redis
    // restarts with nothing; both keep being called: nothing more is admitted in that
    // minute. A run that straddles two minutes proves nothing and is made again.
    let (_, closed_owner) = sys.owner("closed", &fake).await;
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs <= 3, "no run fit in one minute");
        let key = rated(&sys, &urls, &closed_owner, &format!("spent-{runs}"), 30).await;
        wait::early_in_a_minute(30_000).await;
        let minute = now_ms() / 60_000;
        assert_eq!(admitted(&sys, &urls, &key, 40).await, 30);
        redis.restart_empty().unwrap();
        let after = admitted(&sys, &urls, &key, 40).await;
        let after_more = admitted(&sys, &urls[1..], &key, 10).await;
        if now_ms() / 60_000 != minute {
            continue;
        }
        assert_eq!(
            after + after_more,
            0,
            "the minute was spent before the loss"
        );
        break;
    }

    // An owner who fails open, Redis gone, no share set by hand: each replica admits
    // half of the 20 a minute, as the control plane counts two live data planes.
    let open_owner = sys.owner_failing_open("open", &fake).await;
    for url in &urls {
        wait_for_count(&sys, url, 2).await;
    }
    let keys = [
        rated(&sys, &urls, &open_owner, "open-1", 20).await,
        rated(&sys, &urls, &open_owner, "open-2", 20).await,
        rated(&sys, &urls, &open_owner, "open-3", 20).await,
    ];
    redis.kill();
    let mut runs = keys.iter();
    loop {
        let key = runs.next().expect("no run fit in one minute");
        wait::early_in_a_minute(30_000).await;
        let minute = now_ms() / 60_000;
        // Shares round up: together at most the limit plus one per replica beyond
        // the first; 20 over two is exact.
        let together = admitted(&sys, &urls, key, 60).await;
        if now_ms() / 60_000 != minute {
            continue;
        }
        assert_eq!(together, 20);
        break;
    }

    // One data plane stops: the other hears that it is alone.
    second.kill();
    wait_for_count(&sys, &urls[0], 1).await;
}
