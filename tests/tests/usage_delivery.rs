//! Usage delivery under faults: the collector killed and restarted, the data plane
//! restarted while the collector is away, the link between them cut. Every call is
//! counted exactly once in the rollups, with its exact tokens.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::link::Link;
use switchyard_tests::procs::Proc;
use switchyard_tests::system::{
    System, chat, spawn_data_plane, start_system_opts, wait_for_key_at,
};
use switchyard_tests::wait::{self, PATIENCE};

/// `n` calls one after another: the tokens the upstream reported, summed.
async fn calls(sys: &System, url: &str, key: &str, n: usize) -> (u64, u64) {
    let (mut input, mut output) = (0, 0);
    for i in 0..n {
        let stream = i % 2 == 0;
        let mut body = chat(&format!("call number {i}"), stream);
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        let r = sys
            .http
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        if stream {
            // A stream: the usage is in the last data event.
            let text = r.text().await.unwrap();
            let usage = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter_map(|v| v.get("usage").cloned().filter(|u| !u.is_null()))
                .next_back()
                .unwrap();
            input += usage["prompt_tokens"].as_u64().unwrap();
            output += usage["completion_tokens"].as_u64().unwrap();
        } else {
            let body: Value = r.json().await.unwrap();
            input += body["usage"]["prompt_tokens"].as_u64().unwrap();
            output += body["usage"]["completion_tokens"].as_u64().unwrap();
        }
    }
    (input, output)
}

fn data_plane(sys: &System, link: &Link, spool: &std::path::Path) -> Proc {
    let spool = spool.display().to_string();
    spawn_data_plane(
        sys._dir.path(),
        &sys.control.url("grpc"),
        &link.url(),
        &sys.data_kek,
        &[
            "--usage-spool-dir",
            &spool,
            "--usage-flush-timeout-seconds",
            "1",
        ],
        &[],
    )
    .unwrap()
}

/// The rollups of `owner`'s tree: requests, input and output tokens.
fn rollups(sys: &System, owner: &str) -> (i64, i64, i64) {
    let sum = |column: &str| {
        sys.count(
            "usage",
            &format!(
                "SELECT COALESCE(SUM({column}), 0) FROM usage_daily WHERE main_account_id = '{owner}'"
            ),
        )
    };
    (sum("requests"), sum("input_tokens"), sum("output_tokens"))
}

/// Until the rollups hold `n` requests of `owner`'s tree (or a minute passed).
async fn wait_for_requests(sys: &System, owner: &str, n: usize) {
    let n = i64::try_from(n).unwrap();
    let what = format!("{n} requests in the rollups");
    wait::until_ok(Duration::from_secs(60), what, async || {
        let now = rollups(sys, owner);
        if now.0 >= n {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_counted_once_through_crashes_restarts_and_cuts() {
    let kek = Keyring::generate_spec("k1").to_string();
    let mut sys = start_system_opts(4 * 1024 * 1024, &kek, &kek, &[]).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (created, key) = sys.owner("acme", &fake).await;
    let owner = created["account"]["id"].as_str().unwrap().to_owned();
    let link = Link::start(sys._collector.addr("grpc")).await.unwrap();
    let spool = sys._dir.path().join("spool");
    let mut dp = data_plane(&sys, &link, &spool);
    wait_for_key_at(&sys, &dp.url("http"), &key).await;
    let per_phase = 12;
    let mut tokens = (0, 0);
    let mut add = |t: (u64, u64)| {
        tokens.0 += t.0;
        tokens.1 += t.1;
    };

    // The collector is up.
    add(calls(&sys, &dp.url("http"), &key, per_phase).await);
    // The collector crashes; calls go on, their usage waits in the spool.
    sys.kill_collector();
    add(calls(&sys, &dp.url("http"), &key, per_phase).await);
    // The data plane restarts while the collector is still away: what it held goes
    // to the spool at shutdown, and the new process finds it there.
    dp.terminate(Duration::from_secs(20)).unwrap();
    assert!(
        std::fs::read_dir(&spool).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "spool")),
        "nothing was spooled"
    );
    dp = data_plane(&sys, &link, &spool);
    wait_for_key_at(&sys, &dp.url("http"), &key).await;
    add(calls(&sys, &dp.url("http"), &key, per_phase).await);
    // The collector comes back and the spool drains; then the link is cut in the
    // middle of more calls.
    sys.restart_collector();
    wait_for_requests(&sys, &owner, 3 * per_phase).await;
    add(calls(&sys, &dp.url("http"), &key, per_phase / 2).await);
    link.cut();
    add(calls(&sys, &dp.url("http"), &key, per_phase / 2).await);
    wait::until_ok(PATIENCE, "the data plane to notice the cut", async || {
        if dp.log().contains("usage stream ended") {
            Ok(())
        } else {
            Err(dp.log_tail())
        }
    })
    .await;
    link.restore();

    let n = i64::try_from(4 * per_phase).unwrap();
    let want = (
        n,
        i64::try_from(tokens.0).unwrap(),
        i64::try_from(tokens.1).unwrap(),
    );
    wait_for_requests(&sys, &owner, 4 * per_phase).await;
    assert_eq!(
        rollups(&sys, &owner),
        want,
        "(requests, input, output) in the rollups"
    );
    // Exactly: nothing more arrives later (a window in which nothing may change),
    // and the raw events agree.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rollups(&sys, &owner), want);
    assert_eq!(
        sys.count(
            "usage",
            &format!("SELECT COUNT(*) FROM usage_events WHERE main_account_id = '{owner}'")
        ),
        n
    );
    // Everything delivered: the spool released its segments.
    let left: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "spool")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A data plane started with usage events off serves calls and meters none of them;
/// a bad value for the switch stops the process before it listens, naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_events_can_be_switched_off() {
    let kek = Keyring::generate_spec("k1").to_string();
    let sys = start_system_opts(4 * 1024 * 1024, &kek, &kek, &[]).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (created, key) = sys.owner("quiet", &fake).await;
    let owner = created["account"]["id"].as_str().unwrap().to_owned();
    let quiet = spawn_data_plane(
        sys._dir.path(),
        &sys.control.url("grpc"),
        &sys._collector.url("grpc"),
        &sys.data_kek,
        &["--usage-events", "off"],
        &[],
    )
    .unwrap();
    wait_for_key_at(&sys, &quiet.url("http"), &key).await;
    calls(&sys, &quiet.url("http"), &key, 4).await;
    // One metered call through the usual data plane: once it is in, the quiet
    // ones would be too, had they been sent.
    calls(&sys, &sys.data.url("http"), &key, 1).await;
    wait_for_requests(&sys, &owner, 1).await;
    // The quiet plane's own stream is not ordered with the other's: a window in
    // which nothing more may arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rollups(&sys, &owner).0, 1);
    assert!(
        quiet.log().contains("usage events are off"),
        "{}",
        quiet.log_tail()
    );

    let bin = switchyard_tests::procs::bin_dir()
        .unwrap()
        .join("switchyard-data-plane");
    let refused = std::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--usage-events", "sometimes"])
        .env("SWITCHYARD_KEK", &kek)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("--usage-events") && err.contains("sometimes"),
        "{err}"
    );
}
