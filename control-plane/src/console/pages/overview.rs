//! The overview: spend, credit and requests today and this month; news.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use switchyard_core::time::UtcDay;
use switchyard_runtime::now_ms;

use crate::console::Console;
use crate::console::session::Signed;
use crate::console::views::{self, Nav, dollars, when};
use crate::service::{Caller, NewsQuery};
use crate::store::NewsItem;

pub const ROUTES: &[(&str, &[&str])] = &[("/", &["GET"])];

pub fn routes() -> Router<Console> {
    Router::new().route("/", get(overview))
}

/// `GET /`: spend, credit and requests today and this month; news.
async fn overview(State(c): State<Console>, signed: Signed) -> Response {
    let now = now_ms();
    let day = UtcDay::of_unix_ms(now);
    let today = day.to_string();
    let totals = c
        .service
        .usage_totals(&signed.caller, day.first_of_month(), day)
        .await;
    let sum = |only_today: bool| {
        totals
            .as_ref()
            .map(|rows| {
                let rows = rows.iter().filter(|r| !only_today || r.period == today);
                let (mut usage, mut billed, mut cost) = (Usage::default(), 0_i64, 0_i64);
                for r in rows {
                    usage.requests += r.requests;
                    usage.errors += r.errors;
                    billed = billed.saturating_add(r.billed_nanos);
                    cost = cost.saturating_add(r.cost_nanos);
                }
                usage.billed = dollars(billed);
                usage.cost = dollars(cost);
                usage
            })
            .map_err(|e| e.message.clone())
    };
    let credit = match &signed.caller {
        Caller::Root => None,
        Caller::Account { account, .. } => Some(
            c.service
                .credit(&signed.caller, account.id)
                .await
                .map(|v| (dollars(v.allocated_nanos), dollars(v.delegated_nanos)))
                .map_err(|e| e.message),
        ),
    };
    let news = c
        .service
        .news(&signed.caller, NewsQuery { limit: Some(10) })
        .await
        .map(|items| items.into_iter().map(NewsLine::from).collect())
        .map_err(|e| e.message);
    views::page(
        StatusCode::OK,
        &OverviewPage {
            nav: signed.nav("overview"),
            today: sum(true),
            month: sum(false),
            month_name: day.month_text(),
            credit,
            news,
        },
    )
}

/// Sums over the usage rollups.
#[derive(Default)]
pub struct Usage {
    pub requests: u64,
    pub errors: u64,
    pub billed: String,
    pub cost: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub nav: Nav,
    pub today: Result<Usage, String>,
    pub month: Result<Usage, String>,
    pub month_name: String,
    /// Allocated and delegated credit, or why it is not shown.
    pub credit: Option<Result<(String, String), String>>,
    pub news: Result<Vec<NewsLine>, String>,
}

pub struct NewsLine {
    pub at: String,
    pub title: String,
    pub body: String,
}

impl From<NewsItem> for NewsLine {
    fn from(n: NewsItem) -> Self {
        Self {
            at: when(n.at_unix_ms),
            title: n.title,
            body: n.body,
        }
    }
}
