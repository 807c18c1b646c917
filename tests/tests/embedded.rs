//! The README's quick start, as a newcomer runs it: `switchyard up --demo-upstream`,
//! then a call with the demo key, then the bill; and what it prints.
#![expect(
    clippy::panic,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::cli::up;
use switchyard_tests::wait::{self, PATIENCE};

/// The banner's lines (stdout) and the log's (stderr) share the process's output:
/// the banner must be there whole, one block from its first line to its last.
fn banner_and_logs(output: &str) -> (Vec<&str>, Vec<&str>) {
    let lines: Vec<&str> = output.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.starts_with("Switchyard is running"))
        .unwrap_or_else(|| panic!("no banner in:\n{output}"));
    let last = lines
        .iter()
        .position(|l| l.starts_with("Stop with Ctrl-C."))
        .unwrap_or_else(|| panic!("the banner has no end in:\n{output}"));
    let banner = lines[first..=last].to_vec();
    for want in [
        "proxy API (apps):",
        "admin/manage REST API:",
        "web console (browser):",
        "demo account API key:",
        "curl ",
        "switchyard login --url http://",
    ] {
        assert!(
            banner.iter().any(|l| l.contains(want)),
            "the banner lacks {want:?}; is it split by log lines?\n{output}"
        );
    }
    let logs = lines[..first]
        .iter()
        .chain(&lines[last + 1..])
        .copied()
        .filter(|l| !l.trim().is_empty())
        .collect();
    (banner, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_off_a_terminal_and_for_people_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let json = up(dir.path(), &[]);
    let output = json.log();
    let (_, logs) = banner_and_logs(&output);
    assert!(!logs.is_empty());
    for line in &logs {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{line}");
    }
    drop(json);

    let dir = tempfile::tempdir().unwrap();
    let pretty = up(dir.path(), &["--log-format", "pretty"]);
    let output = pretty.log();
    let (_, logs) = banner_and_logs(&output);
    assert!(!logs.is_empty());
    for line in &logs {
        assert!(!line.starts_with('{'), "a JSON line in pretty mode: {line}");
        assert!(
            [" INFO ", " WARN ", " ERROR "]
                .iter()
                .any(|l| line.contains(l)),
            "not a log line for people: {line}"
        );
        assert!(
            !line.contains("\u{1b}["),
            "no colours off a terminal: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_works_offline() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let up = up(dir.path(), &[]);
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
    let answer: Value = wait::until_ok(
        Duration::from_secs(20),
        "the quick start's first call",
        async || {
            let r = http
                .post(&chat)
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                Ok(r.json().await.unwrap())
            } else {
                Err(format!("{}\n{}", r.status(), up.log_tail()))
            }
        },
    )
    .await;
    assert_eq!(answer["choices"][0]["message"]["content"], "echo: hello");

    let bill_url = format!("{}/x-bill", up.url("admin"));
    let bill = wait::until_ok(PATIENCE, "usage to reach the bill", async || {
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
            Ok(bill)
        } else {
            Err(bill)
        }
    })
    .await;
    assert_eq!(bill["rows"][0]["model"], "demo-echo");
    assert_eq!(bill["rows"][0]["input_tokens"], 1);
    assert_eq!(bill["rows"][0]["output_tokens"], 2);
}
