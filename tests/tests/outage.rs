//! PostgreSQL stopped under running services: readiness says so within a second, the
//! API answers 503 with `Retry-After` within its acquire timeout (not a 500 after
//! ten seconds), and both recover once the database is back.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use switchyard_tests::system::start_system;
use switchyard_tests::wait;

/// Status, `Retry-After` and JSON body of a GET, and how long it took.
async fn timed_get(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
) -> (StatusCode, Option<String>, Value, Duration) {
    let started = Instant::now();
    let mut request = http.get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let r = request.send().await.unwrap();
    let took = started.elapsed();
    let status = r.status();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry_after, body, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_fast_and_recovers() {
    let sys = start_system(64 * 1024).await;
    let control_ready = sys.admin("/readyz");
    let collector_ready = format!("{}/readyz", sys._collector.url("http"));
    let users = sys.admin("/x-users");
    for url in [&control_ready, &collector_ready] {
        let (status, _, body, _) = timed_get(&sys.http, url, None).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
    }
    let (status, _, body, _) = timed_get(&sys.http, &users, Some(&sys.root)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    sys.pg.stop().unwrap();

    for url in [&control_ready, &collector_ready] {
        let (status, _, body, took) = timed_get(&sys.http, url, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{url}: {body}");
        assert!(took < Duration::from_secs(1), "{url} took {took:?}");
    }
    let (status, retry_after, body, took) = timed_get(&sys.http, &users, Some(&sys.root)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(took < Duration::from_secs(4), "the API took {took:?}");
    assert_eq!(retry_after.as_deref(), Some("2"));
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database is unreachable"),
        "{body}"
    );

    sys.pg.start_again().unwrap();

    for url in [&control_ready, &collector_ready] {
        wait::until(
            Duration::from_secs(20),
            format!("{url} to recover"),
            async || {
                let (status, _, _, _) = timed_get(&sys.http, url, None).await;
                (status == StatusCode::OK).then_some(())
            },
        )
        .await;
    }
    let (status, _, body, _) = timed_get(&sys.http, &users, Some(&sys.root)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
