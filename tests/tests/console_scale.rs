//! The console's overview reads totals, whatever the tree's size: a main account's
//! from the per-endpoint rollups (a few rows a day), a sub-account's from its
//! subtree's rows; both agree with the bill. The logs of a sub-account's subtree
//! (its accounts listed to the collector) hold exactly its calls.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::system::{System, chat, start_system, wait_for_key};
use switchyard_tests::wait;

/// The session cookie of `key`'s console sign-in.
async fn sign_in(sys: &System, http: &reqwest::Client, key: &str) -> String {
    let base = sys.admin("");
    let r = http
        .post(sys.admin("/sign-in"))
        .header("origin", base.trim_end_matches('/'))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sy_console="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned()
}

/// The overview's figure named `figure` (`requests-today`, `requests-month`).
async fn figure(sys: &System, http: &reqwest::Client, cookie: &str, figure: &str) -> u64 {
    let page = http
        .get(sys.admin("/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = format!("data-figure=\"{figure}\">");
    assert!(page.contains(&marker), "no {figure} in {page}");
    let at = page.find(&marker).unwrap() + marker.len();
    page[at..].split('<').next().unwrap().parse().unwrap()
}

/// Requests in `key`'s bill (its own subtree, by account).
async fn billed_requests(sys: &System, key: &str) -> u64 {
    let bill = sys.bill(key).await;
    bill["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_the_tree_of_its_reader() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, main_key) = sys.owner("totals", &fake).await;
    let (status, child_account) = sys
        .post("/x-users", &main_key, json!({"name": "team"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{child_account}");
    let child_key = child_account["api_key"].as_str().unwrap().to_owned();
    let (status, grandchild_account) = sys
        .post("/x-users", &child_key, json!({"name": "project"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grandchild_account}");
    let grandchild_key = grandchild_account["api_key"].as_str().unwrap().to_owned();
    for key in [&main_key, &child_key, &grandchild_key] {
        wait_for_key(&sys, key).await;
    }
    // Three calls of the main account, two of the child, one of the grandchild.
    for key in [
        &main_key,
        &main_key,
        &main_key,
        &child_key,
        &child_key,
        &grandchild_key,
    ] {
        let r = sys
            .http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat("hello", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    wait::until_ok(
        Duration::from_secs(30),
        "the collector to hold every call",
        async || match billed_requests(&sys, &main_key).await {
            6 => Ok(()),
            n => Err(n),
        },
    )
    .await;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let main = sign_in(&sys, &http, &main_key).await;
    assert_eq!(figure(&sys, &http, &main, "requests-today").await, 6);
    assert_eq!(figure(&sys, &http, &main, "requests-month").await, 6);
    let child = sign_in(&sys, &http, &child_key).await;
    assert_eq!(figure(&sys, &http, &child, "requests-today").await, 3);
    assert_eq!(billed_requests(&sys, &child_key).await, 3);
    let grandchild = sign_in(&sys, &http, &grandchild_key).await;
    assert_eq!(figure(&sys, &http, &grandchild, "requests-month").await, 1);

    // The logs of a subtree (listed to the collector by account) and of a leaf.
    let logged = |key: String, account: String| {
        let sys = &sys;
        async move {
            let (status, page) = sys
                .call(
                    reqwest::Method::GET,
                    format!("/dashboard/logs?account={account}"),
                    key,
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            page["events"].as_array().unwrap().len()
        }
    };
    let child_id = child_account["account"]["id"].as_str().unwrap().to_owned();
    let grandchild_id = grandchild_account["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(logged(main_key.clone(), child_id.clone()).await, 3);
    assert_eq!(logged(child_key.clone(), child_id).await, 3);
    assert_eq!(logged(main_key.clone(), grandchild_id).await, 1);
    let (status, page) = sys
        .call(
            reqwest::Method::GET,
            "/dashboard/logs".into(),
            main_key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"].as_array().unwrap().len(), 6);
}
