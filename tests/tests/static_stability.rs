//! Static stability: a data plane keeps serving its last good snapshot while the
//! control plane is away, keeps that snapshot on disk (provider secrets sealed), starts
//! from it when no control plane answers, and catches up when one returns.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::procs::Proc;
use switchyard_tests::system::{
    System, chat, settle, spawn_data_plane, start_system, wait_for_key_at,
};
use switchyard_tests::wait::{self, PATIENCE};

const SECRET: &str = "sk-abc-123456789";

async fn status_of_call(sys: &System, url: &str, key: &str) -> u16 {
    sys.http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat("still there?", false))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn readiness(sys: &System, dp: &Proc) -> (u16, Value) {
    let r = sys
        .http
        .get(format!("{}/readyz", dp.url("http")))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Until the data plane's readiness answer satisfies `want`.
async fn wait_readiness(sys: &System, dp: &Proc, want: impl Fn(u16, &Value) -> bool) -> Value {
    wait::until_ok(
        Duration::from_secs(20),
        "the readiness wanted",
        async || {
            let (status, body) = readiness(sys, dp).await;
            if want(status, &body) {
                Ok(body)
            } else {
                Err(format!("{status} {body}:\n{}", dp.log_tail()))
            }
        },
    )
    .await
}

fn data_plane(sys: &System, file: &std::path::Path) -> Proc {
    let file = file.display().to_string();
    spawn_data_plane(
        sys._dir.path(),
        &sys.control.url("grpc"),
        &sys._collector.url("grpc"),
        &sys.data_kek,
        &["--snapshot-file", &file],
        &[],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_planes_serve_through_a_control_plane_outage() {
    let mut sys = start_system(4 * 1024 * 1024).await;
    let fake = FakeUpstream::start(Some(SECRET.into())).await.unwrap();
    let (_, key) = sys.owner("steady", &fake).await;
    let version = settle(&sys).await;
    let file = sys._dir.path().join("dp/snapshot.bin");
    let mut dp = data_plane(&sys, &file);
    let url = dp.url("http");
    wait_for_key_at(&sys, &url, &key).await;
    let body = wait_readiness(&sys, &dp, |s, b| s == 200 && b["fresh"] == true).await;
    assert_eq!(body["source"], "control_plane");
    assert!(body["snapshot_version"].as_u64().unwrap() >= version);
    assert_eq!(status_of_call(&sys, &url, &key).await, 200);
    // The snapshot is on disk, its provider secret still sealed.
    wait::until(PATIENCE, "the snapshot to be persisted", async || {
        file.exists().then_some(())
    })
    .await;
    let on_disk = std::fs::read(&file).unwrap();
    assert!(
        !on_disk
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes()),
        "a provider secret in clear on disk"
    );

    // The control plane dies for a minute: calls go on throughout (through the
    // restart below too), and readiness says the snapshot is stale.
    sys.kill_control();
    let body = wait_readiness(&sys, &dp, |s, b| s == 200 && b["fresh"] == false).await;
    assert_eq!(body["source"], "control_plane");
    let outage = Instant::now();
    let calls_for = |how_long: Duration, url: String| {
        let (sys, key) = (&sys, &key);
        async move {
            let until = Instant::now() + how_long;
            while Instant::now() < until {
                assert_eq!(status_of_call(sys, &url, key).await, 200);
                // Paced: calls spread over the outage.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    calls_for(Duration::from_secs(30), url.clone()).await;

    // The data plane restarts while the control plane is still down: it serves the
    // snapshot it persisted.
    dp.terminate(Duration::from_secs(20)).unwrap();
    dp = data_plane(&sys, &file);
    let url = dp.url("http");
    let body = wait_readiness(&sys, &dp, |s, _| s == 200).await;
    assert_eq!(body["source"], "disk", "{body}");
    assert_eq!(body["fresh"], false);
    assert!(dp.log().contains("serving the persisted snapshot"));
    calls_for(
        Duration::from_secs(60).saturating_sub(outage.elapsed()),
        url.clone(),
    )
    .await;

    // A damaged file is refused, named in the log, and the process still starts;
    // with nothing to serve it is not ready.
    let broken = sys._dir.path().join("broken.bin");
    let mut damaged = on_disk.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(&broken, &damaged).unwrap();
    let cold = data_plane(&sys, &broken);
    let body = wait_readiness(&sys, &cold, |s, _| s == 503).await;
    assert_eq!(body["source"], "none");
    assert!(cold.log().contains("damaged"), "{}", cold.log_tail());
    drop(cold);

    // The control plane returns; the data plane catches up and enforces what was
    // written since: a revoked key is refused.
    sys.restart_control();
    wait_readiness(&sys, &dp, |s, b| {
        s == 200 && b["fresh"] == true && b["source"] == "control_plane"
    })
    .await;
    let (status, rotated) = sys.post("/x-self/rotate", &key, json!({})).await;
    assert_eq!(status, 201, "{rotated}");
    wait::until_ok(PATIENCE, "the rotated key to be refused", async || {
        if status_of_call(&sys, &url, &key).await == 401 {
            Ok(())
        } else {
            Err(dp.log_tail())
        }
    })
    .await;
}
