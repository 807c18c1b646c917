//! The README's quick start, as a newcomer runs it: `switchyard up --demo-upstream`,
//! then a call with the demo key, then the bill.
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_tests::procs::Proc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_works_offline() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data_dir_arg = data_dir.display().to_string();
    let up = Proc::spawn(
        "switchyard",
        &[
            "up",
            "--demo-upstream",
            "--data-dir",
            &data_dir_arg,
            "--proxy-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--demo-upstream-listen",
            "127.0.0.1:0",
        ],
        &[],
        dir.path(),
    )
    .unwrap();
    // The operator's secrets exist, readable by the owner only.
    for file in ["root-key", "kek", "demo-key"] {
        let meta = std::fs::metadata(data_dir.join(file)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077,
            0,
            "{file}"
        );
    }
    let key = std::fs::read_to_string(data_dir.join("demo-key")).unwrap();
    let http = reqwest::Client::new();
    let chat = format!("{}/v1/chat/completions", up.url("proxy"));
    let body = json!({"model": "demo-echo", "messages": [{"role": "user", "content": "hello"}]});

    // The data plane may still be waiting for its first snapshot.
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer: Value = loop {
        let r = http
            .post(&chat)
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "quick start call failed: {}\n{}",
            r.status(),
            up.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer["choices"][0]["message"]["content"], "echo: hello");

    let bill_url = format!("{}/x-bill", up.url("admin"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bill: Value = http
            .get(&bill_url)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if bill["rows"][0]["requests"] == 1 {
            assert_eq!(bill["rows"][0]["model"], "demo-echo");
            assert_eq!(bill["rows"][0]["input_tokens"], 1);
            assert_eq!(bill["rows"][0]["output_tokens"], 2);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "usage never reached the bill: {bill}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
