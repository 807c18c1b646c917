//! The console's Overview, Usage and billing, Logs and Models pages in a real
//! browser (headless Chromium through WebDriver) against the real binaries: an
//! owner with a provider key (the fake upstream) and a sub-account that calls
//! through the data plane. The calls reach the Usage page within seconds (per
//! direct child, the team's row leading down into its subtree), the CSV has their
//! rows, the Logs page filters by model, the Models page lists what the
//! sub-account may call at its price, a bad date range is refused next to its
//! field. Each page is saved under `target/console-screenshots/` (the overview
//! also as `usage-overview.png`, the picture in `docs/console-overview.png`), and
//! the browser's log must show no Content-Security-Policy violation.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test says so
//! and skips.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

use fantoccini::Locator;
use reqwest::{Method, StatusCode};
use serde_json::json;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::browser::{Browser, screenshots};
use switchyard_tests::system::{System, chat, start_system, wait_for_key};
use switchyard_tests::wait::{self, PATIENCE};

/// A chat call of `key` for `model` through the data plane.
async fn call(sys: &System, key: &str, model: &str) {
    let mut body = chat("hello there", false);
    body["model"] = json!(model);
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// The cells' text of every row of the table `css`.
async fn table_rows(b: &Browser, css: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for row in b
        .client
        .find_all(Locator::Css(&format!("{css} tbody tr")))
        .await
        .unwrap()
    {
        let mut cells = Vec::new();
        for cell in row.find_all(Locator::Css("th, td")).await.unwrap() {
            cells.push(cell.text().await.unwrap());
        }
        out.push(cells);
    }
    out
}

/// Whether a row of the Usage table names `key` (after its period) with this many
/// requests.
fn has_row(rows: &[Vec<String>], key: &str, requests: &str) -> bool {
    rows.iter()
        .any(|r| r.len() > 2 && r[1] == key && r[2] == requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_logs_and_models_in_the_console() {
    let sys = start_system(1 << 20).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let console = sys.control.url("http");
    let (_, owner_key) = sys.owner("acme", &fake).await;
    // The owner's price for gpt*: $2 in, $8 out per million tokens.
    let (status, body) = sys
        .call(
            Method::PUT,
            "/x-config/pricing?key=gpt*".into(),
            owner_key.clone(),
            Some(json!({"input_per_million_nanos": 2_000_000_000u64, "output_per_million_nanos": 8_000_000_000u64})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A sub-account for gpt-4o models, billed the cost plus half.
    let (status, team) = sys
        .post(
            "/x-users",
            &owner_key,
            json!({"name": "team", "policy": {"models": ["gpt-4o*"]}, "billing": {"multiplier_ppm": 1_500_000}}),
        )
        .await;
    assert_eq!(status, 201, "{team}");
    let team_key = team["api_key"].as_str().unwrap().to_owned();
    let team_id = team["account"]["id"].as_str().unwrap().to_owned();
    wait_for_key(&sys, &team_key).await;

    let Some(b) = Browser::start().await else {
        return;
    };
    b.sign_in(&console, &owner_key).await;

    // The sub-account calls; the owner's Usage page shows the calls within seconds.
    for model in [
        "gpt-4o-mini",
        "gpt-4o-mini",
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4o",
    ] {
        call(&sys, &team_key, model).await;
    }
    let usage = format!("{console}/usage?by=model");
    let shown = wait::until(PATIENCE, "the calls on the Usage page", async || {
        b.goto(&usage).await;
        let rows = table_rows(&b, "#usage-table").await;
        (has_row(&rows, "gpt-4o-mini", "3") && has_row(&rows, "gpt-4o", "2")).then_some(rows)
    })
    .await;
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert_eq!(
        b.attr_of("#usage-chart svg", "role").await.as_deref(),
        Some("img")
    );
    let total = b.text_of("#usage-table tfoot").await;
    assert!(total.starts_with("Total 5 0"), "{total}");
    b.shoot("usage-01-usage-by-model").await;
    // Per direct child (the default): the team's subtree in one row, with provider
    // cost and billed amount side by side; its id leads down into it.
    b.goto(&format!("{console}/usage")).await;
    let rows = table_rows(&b, "#usage-table").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(has_row(&rows, &team_id, "5"), "{rows:?}");
    b.shoot("usage-02-usage-by-account").await;
    b.submit("#usage-table tbody a", "p.subtree").await;
    let rows = table_rows(&b, "#usage-table").await;
    assert!(
        has_row(&rows, &format!("{team_id} (own calls)"), "5"),
        "{rows:?}"
    );
    assert!(b.text_of("p.subtree").await.contains(&team_id));
    b.shoot("usage-08-usage-child-subtree").await;

    // The CSV of the same query, in the same session.
    let cookie = b
        .client
        .get_named_cookie("sy_console")
        .await
        .unwrap()
        .value()
        .to_owned();
    let r = sys
        .http
        .get(format!("{console}/usage.csv?by=model"))
        .header("cookie", format!("sy_console={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("period,model,requests,"), "{csv}");
    assert!(
        lines.iter().any(|l| l.contains(",gpt-4o-mini,3,0,")),
        "{csv}"
    );
    assert!(lines.iter().any(|l| l.contains(",gpt-4o,2,0,")), "{csv}");

    // A bad date range: the service's refusal next to the field.
    b.client
        .execute(
            "document.getElementById('from').value = '2026-05-01';
             document.getElementById('to').value = '2026-04-01';",
            Vec::new(),
        )
        .await
        .unwrap();
    b.submit("form[action='/usage'] button", "#from-error")
        .await;
    let refusal = b.text_of("#from-error").await;
    assert!(
        refusal.contains("`from` must not be after `to`"),
        "{refusal}"
    );
    assert_eq!(
        b.attr_of("#from", "aria-invalid").await.as_deref(),
        Some("true")
    );
    b.shoot("usage-03-usage-refused").await;

    // Logs, filtered by model.
    b.goto(&format!("{console}/logs")).await;
    assert_eq!(table_rows(&b, "#logs-table").await.len(), 5);
    b.fill("#model", "gpt-4o").await;
    // The filtered page shows the filter in the field's own attribute.
    b.submit("form[action='/logs'] button", "#model[value='gpt-4o']")
        .await;
    let rows = table_rows(&b, "#logs-table").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter().all(|r| r[1] == "gpt-4o" && r[2] == "200 ok"),
        "{rows:?}"
    );
    b.shoot("usage-04-logs-by-model").await;

    // The overview with data.
    b.goto(&format!("{console}/")).await;
    assert_eq!(b.text_of("[data-figure='requests-today']").await, "5");
    assert!(b.text_of("#top-models").await.contains("gpt-4o-mini"));
    assert!(
        b.client
            .find_all(Locator::Css("figure.chart svg[role='img']"))
            .await
            .unwrap()
            .len()
            == 3
    );
    // The picture in the README: exactly 1200 by 900.
    b.driver_command(
        "goog/cdp/execute",
        json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
            "width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": false}}),
    )
    .await;
    b.shoot("usage-overview").await;
    let png = std::fs::read(screenshots().join("usage-overview.png")).unwrap();
    assert_eq!(&png[16..24], &[0, 0, 4, 176, 0, 0, 3, 132], "1200 × 900");
    b.driver_command(
        "goog/cdp/execute",
        json!({"cmd": "Emulation.clearDeviceMetricsOverride", "params": {}}),
    )
    .await;

    // The sub-account's models, at the price it is billed (the owner's times 1.5).
    b.submit("form[action='/sign-out'] button", "#key").await;
    b.sign_in(&console, &team_key).await;
    b.goto(&format!("{console}/models")).await;
    let rows = table_rows(&b, "#models-table").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], "gpt-4o* pattern", "{rows:?}");
    assert_eq!(
        (rows[0][1].as_str(), rows[0][4].as_str()),
        ("$3.0000", "$12.0000")
    );
    b.shoot("usage-05-models").await;

    // A phone: nothing scrolls sideways but the tables within themselves.
    b.goto(&format!("{console}/usage")).await;
    b.client.set_window_size(380, 900).await.unwrap();
    assert_eq!(
        b.sideways().await,
        json!(0),
        "a narrow window does not scroll sideways"
    );
    b.shoot("usage-06-usage-narrow").await;
    b.client.set_window_size(1200, 900).await.unwrap();

    // Dark mode: the chart follows the theme.
    b.goto(&format!("{console}/usage")).await;
    b.driver_command(
        "goog/cdp/execute",
        json!({"cmd": "Emulation.setEmulatedMedia", "params": {
            "features": [{"name": "prefers-color-scheme", "value": "dark"}]}}),
    )
    .await;
    let fill = b
        .client
        .execute(
            "return getComputedStyle(document.querySelector('#usage-chart rect.bar.s0')).fill",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(fill, json!("rgb(91, 157, 255)"), "the dark theme's colour");
    b.shoot("usage-07-usage-dark").await;

    let violations = b.csp_violations().await;
    assert!(violations.is_empty(), "CSP violations: {violations:?}");
    b.close().await;
}
