//! The console's Overview, Usage and billing, Logs and Models pages in process: the
//! real router and store (SQLite and Postgres) over a real usage collector (its
//! store on SQLite, its gRPC face on loopback) holding the events of an owner and
//! its sub-account. The pages show what `/x-bill`, `/dashboard/logs` and
//! `/dashboard/models` answer (the prices through gRPC too); a refused query is
//! shown next to its field (422); the CSV has every row and defuses formulas;
//! charts carry no inline style.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;
#[expect(dead_code, reason = "this suite uses part of the shared tab")]
mod console_tab;

use axum::http::{HeaderMap, Method, StatusCode, header};
use common::App;
use console_tab::Tab;
use serde_json::json;
use switchyard_core::ids::{AccountId, EventId, IssuedKeyId, ProviderKeyId};
use switchyard_core::usage::{TokenUsage, UsageEvent, UsageSource};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::manage_service_server::ManageService;
use switchyard_runtime::{ShutdownTrigger, now_ms, shutdown_pair};
use switchyard_usage_collector::store::UsageStore;

/// A usage collector serving on loopback, and its store for writing events.
struct Collector {
    url: String,
    store: UsageStore,
    _stop: ShutdownTrigger,
    _dir: tempfile::TempDir,
}

impl Collector {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = UsageStore::open(&format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("usage.db").display()
        ))
        .await
        .unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", grpc.local_addr().unwrap());
        let (stop, shutdown) = shutdown_pair();
        tokio::spawn(switchyard_usage_collector::run(
            store.clone(),
            switchyard_usage_collector::Listeners { grpc, http },
            None,
            shutdown,
        ));
        Self {
            url,
            store,
            _stop: stop,
            _dir: dir,
        }
    }
}

/// One metered call of `chain` (the calling account first) a second ago.
fn event(chain: &[AccountId], model: &str, status: u16, cost_nanos: i64) -> UsageEvent {
    UsageEvent {
        id: EventId::new(),
        at_unix_ms: now_ms() - 1_000,
        account_chain: chain.to_vec(),
        issued_key: IssuedKeyId::new(),
        provider_key: Some(ProviderKeyId::new()),
        model_requested: model.into(),
        model_served: model.into(),
        level: 1,
        status,
        latency_ms: 12,
        ttfb_ms: Some(5),
        tokens: TokenUsage {
            input: 100,
            output: 20,
            cached: 0,
            cache_write: 0,
        },
        source: UsageSource::Reported,
        cost_nanos,
        billed_nanos: cost_nanos * 3 / 2,
        price_version: 1,
        path: "/v1/chat/completions".into(),
        client_addr: "127.0.0.1".into(),
        streamed: false,
        session: Some("s-1".into()),
        end_user: None,
        tag: None,
        client_protocol: None,
        upstream_protocol: None,
    }
}

/// A signed-in tab's GET: the status, the headers and the body.
async fn get(tab: &mut Tab, path: &str) -> (StatusCode, HeaderMap, String) {
    let a = tab.get(path).await;
    (a.status, a.headers, a.body)
}

/// A page the Content-Security-Policy lets through whole: no style attribute, no
/// inline script or event handler.
fn assert_no_inline_code(page: &str) {
    assert!(!page.contains("style="), "no inline style: {page}");
    assert_eq!(
        page.matches("<script").count(),
        1,
        "only the console's script"
    );
    assert!(page.contains(r#"<script src="/assets/console.js" defer></script>"#));
    assert!(!page.contains(" onclick=") && !page.contains(" onload="));
}

/// Rows of the table with this id.
fn rows(page: &str, table: &str) -> usize {
    let start = page.find(&format!("<table id=\"{table}\""));
    assert!(start.is_some(), "no table {table} in {page}");
    let start = start.unwrap();
    let body = &page[start..];
    let body = &body[body.find("<tbody>").unwrap()..body.find("</tbody>").unwrap()];
    body.matches("<tr>").count()
}

switchyard_tests::every_backend!(usage_pages_show_what_the_collector_holds);

async fn usage_pages_show_what_the_collector_holds(url: &str) {
    let collector = Collector::start().await;
    let app = App::with_collector_at(url, collector.url.clone()).await;
    let router = console_tab::router(&app);
    let (main, main_key) = app.owner("acme").await;
    let main_id: AccountId = main["account"]["id"].as_str().unwrap().parse().unwrap();
    // The owner's price for gpt*; its customer pays it plus half.
    let (status, _) = app
        .call(
            Method::PUT,
            "/x-config/pricing?key=gpt*".into(),
            main_key.clone(),
            Some(json!({"input_per_million_nanos": 2_000_000_000u64, "output_per_million_nanos": 8_000_000_000u64})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, team) = app
        .post(
            "/x-users",
            &main_key,
            json!({"name": "team", "policy": {"models": ["gpt-4o*"], "credit": {"limit_nanos": 1_000_000_000u64, "period": "month"}}, "billing": {"multiplier_ppm": 1_500_000}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{team}");
    let team_key = team["api_key"].as_str().unwrap().to_owned();
    let team_id: AccountId = team["account"]["id"].as_str().unwrap().parse().unwrap();

    // 22 calls of the team (one refused upstream), one of the owner with a model
    // name a spreadsheet would run.
    let mut events: Vec<UsageEvent> = (0..21)
        .map(|_| event(&[team_id, main_id], "gpt-4o-mini", 200, 1_000_000))
        .collect();
    // Ten of them name their end user.
    for e in &mut events[..10] {
        e.end_user = Some("alice@example.com".into());
    }
    events.push(event(&[team_id, main_id], "gpt-4o-mini", 429, 0));
    events.push(event(&[main_id], "=HYPERLINK(\"x\")", 200, 5_000_000));
    collector.store.insert(&events).await.unwrap();

    let mut owner = Tab::signed_in(&router, &main_key).await;

    // Overview: today's and the month's figures, 30-day charts, top models.
    let (status, _, page) = get(&mut owner, "/").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains(r#"data-figure="requests-today">23<"#),
        "{page}"
    );
    assert!(page.contains(r#"data-figure="tokens-month">2760<"#));
    assert_eq!(page.matches(r#"role="img""#).count(), 3);
    assert!(page.contains("<title id=\"requests-chart-title\">Requests</title>"));
    assert_no_inline_code(&page);
    assert_eq!(rows(&page, "top-models"), 2);
    assert!(page.contains("gpt-4o-mini"));
    assert!(!page.contains("=HYPERLINK(\"x\")"), "escaped in HTML");

    // Usage: per direct child by default (each child's subtree in a row, beside
    // the owner's own calls, a link down into the child); per model and per
    // provider key for the owner.
    let (status, _, page) = get(&mut owner, "/usage").await;
    assert_no_inline_code(&page);
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(rows(&page, "usage-table"), 2);
    assert!(
        page.contains(r#"<option value="child" selected>"#),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "<code>{main_id}</code> <span class=\"own\">(own calls)</span>"
        )),
        "{page}"
    );
    let drill = format!("by=child&#38;account={team_id}&#38;page=0\"");
    assert!(page.contains(&drill), "a link into the team: {page}");
    let at = page.find(&drill).unwrap();
    let href = &page[page[..at].rfind("href=\"").unwrap() + 6..at + drill.len() - 1];
    let (status, _, inside) = get(&mut owner, &href.replace("&#38;", "&")).await;
    assert_eq!(status, StatusCode::OK, "{inside}");
    assert_eq!(rows(&inside, "usage-table"), 1, "the team's own calls");
    assert!(inside.contains(&format!(
        "<code>{team_id}</code> <span class=\"own\">(own calls)</span>"
    )));
    assert!(inside.contains(&format!(r#"name="account" value="{team_id}""#)));
    assert!(inside.contains("Back to the whole tree"));
    assert!(
        !inside.contains("HYPERLINK"),
        "the owner's own calls are not the team's"
    );
    let (status, _, page) = get(&mut owner, "/usage?by=account").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(rows(&page, "usage-table"), 2);
    assert!(!page.contains("(own calls)"));
    assert!(page.contains(&team_id.to_string()));
    assert!(page.contains("Provider cost") && page.contains("Billed"));
    assert!(
        page.contains("<td class=\"num\">22</td>"),
        "the team's requests"
    );
    assert!(page.contains(r#"<svg xmlns="http://www.w3.org/2000/svg""#));
    assert!(page.contains("/usage.csv?"));
    let today = switchyard_core::time::utc_day(now_ms());
    assert!(
        page.contains(&format!("value=\"{today}\"")),
        "the range shown"
    );
    let (status, _, page) = get(&mut owner, "/usage?by=model&granularity=month").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows(&page, "usage-table"), 2);
    assert!(page.contains("<code>gpt-4o-mini</code>"));
    // Per end user: the named one, and the calls that named none.
    let (status, _, page) = get(&mut owner, "/usage?by=user").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(rows(&page, "usage-table"), 2, "{page}");
    assert!(page.contains("alice@example.com") && page.contains("(none)"));
    assert!(page.contains("<td class=\"num\">10</td>"), "alice's calls");
    let (status, _, page) = get(&mut owner, "/logs?user=alice%40example.com").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(rows(&page, "logs-table"), 10, "{page}");
    let (status, _, page) = get(&mut owner, "/usage?by=provider_key").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // One key per event here: a page of 20, then the rest.
    assert_eq!(rows(&page, "usage-table"), 20);
    assert!(page.contains("rel=\"next\""));
    let (_, _, page) = get(&mut owner, "/usage?by=provider_key&page=1").await;
    assert_eq!(rows(&page, "usage-table"), 3);

    // A refused range: the service's message next to the field, 422.
    let (status, _, page) = get(&mut owner, "/usage?from=2026-05-01&to=2026-04-01").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains(r#"aria-describedby="from-error""#), "{page}");
    assert!(page.contains(
        "id=\"from-error\" class=\"error\" role=\"alert\">`from` must not be after `to`"
    ));
    assert!(
        page.contains(r#"value="2026-05-01""#),
        "the value is shown again"
    );
    let (status, _, page) = get(&mut owner, "/usage?from=2020-01-01&to=2026-01-01").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("a bill spans at most 400 days"));
    let (status, _, page) = get(&mut owner, "/usage?to=2026-02-30").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"to-error\""));

    // CSV: every row, an attachment, formulas defused.
    let (status, headers, csv) = get(&mut owner, "/usage.csv?by=model").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let disposition = headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"switchyard-usage-"),
        "{disposition}"
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("period,model,requests,errors,"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",gpt-4o-mini,22,1,2200,440,0,0.021000000,0.031500000")),
        "{csv}"
    );
    assert!(csv.contains(",\"'=HYPERLINK(\"\"x\"\")\",1,"), "{csv}");
    let (status, _, message) = get(&mut owner, "/usage.csv?granularity=hour").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message.contains("granularity must be"));

    // Logs: filtered by model and status, a page at a time.
    let (status, _, page) = get(&mut owner, "/logs?model=gpt-4o-mini").await;
    assert_no_inline_code(&page);
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(rows(&page, "logs-table"), 20);
    assert!(!page.contains("HYPERLINK"));
    let at = page.find("rel=\"next\"").unwrap();
    let href = &page[page[..at].rfind("href=\"").unwrap() + 6..at - 2];
    let (status, _, older) = get(&mut owner, &href.replace("&#38;", "&")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows(&older, "logs-table"), 2);
    assert!(older.contains(">Newest</a>"));
    let (_, _, page) = get(&mut owner, "/logs?status=429").await;
    assert_eq!(rows(&page, "logs-table"), 1);
    assert!(page.contains("429 failed"), "status is not colour alone");
    let (status, _, page) = get(&mut owner, "/logs?status=often").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"status-error\""), "{page}");
    let (status, _, page) = get(&mut owner, "/logs?from=2026-03-01&to=2025-01-01").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"from-error\""), "{page}");

    // The sub-account: its own usage only, no provider keys, its models at its price.
    let mut team = Tab::signed_in(&router, &team_key).await;
    let (_, _, page) = get(&mut team, "/usage?by=model").await;
    assert!(page.contains("gpt-4o-mini") && !page.contains("HYPERLINK"));
    assert!(!page.contains("value=\"provider_key\""));
    let (status, _, page) = get(&mut team, "/usage?by=provider_key").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("is for the owner of the keys"));
    let (_, _, page) = get(&mut team, "/logs").await;
    assert_eq!(rows(&page, "logs-table"), 20);
    // Its overview: what is left of its $1 a month after $0.021 of provider cost.
    let (_, _, page) = get(&mut team, "/").await;
    assert!(
        page.contains(r#"data-figure="credit-left">$0.9790<"#),
        "{page}"
    );
    assert!(page.contains("Left this month"));
    assert!(page.contains(r#"data-figure="requests-month">22<"#));
    let (status, _, page) = get(&mut team, "/models").await;
    assert_no_inline_code(&page);
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(rows(&page, "models-table"), 1);
    // $2 and $8 per million at the owner's price, times 1.5.
    assert!(page.contains("<code>gpt-4o*</code>"));
    assert!(
        page.contains("$3.0000") && page.contains("$12.0000"),
        "{page}"
    );
    let (_, _, page) = get(&mut owner, "/models").await;
    assert!(page.contains("<code>*</code>") && page.contains("No price set"));
    // The same prices through REST.
    let (status, models) = app
        .call(
            Method::GET,
            "/dashboard/models".into(),
            team_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        models["prices"]["gpt-4o*"]["input_per_million_nanos"],
        3_000_000_000u64
    );
    // And through gRPC.
    let models = common::grpc(&app)
        .list_models(common::authed(&team_key, pb::ListModelsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(models.models, ["gpt-4o*"]);
    assert_eq!(
        models.prices["gpt-4o*"].output_per_million_nanos,
        12_000_000_000
    );
}
