//! The overview: requests, tokens and spend today and this month, credit left for
//! the period, the last 30 days as charts, the month's top models, and news.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use switchyard_core::policy::Period;
use switchyard_core::time::{Granularity, UtcDay};
use switchyard_core::usage::RollupRow;
use switchyard_runtime::now_ms;

use super::usage::{Totals, chart_nanos, per_period, precise_dollars};
use crate::console::Console;
use crate::console::chart::{Chart, Series, Size, Unit};
use crate::console::session::Signed;
use crate::console::views::{self, Nav, dollars, when};
use crate::service::{Caller, NewsQuery};
use crate::store::NewsItem;

pub const ROUTES: &[(&str, &[&str])] = &[("/", &["GET"])];

pub fn routes() -> Router<Console> {
    Router::new().route("/", get(overview))
}

/// Days the charts cover, today included.
const CHART_DAYS: i64 = 30;
/// Models listed as the month's top.
const TOP_MODELS: usize = 5;

/// `GET /`: the usage totals from the earlier of 30 days ago and the month's first
/// day to today, which every figure on the page is summed from; credit and news.
async fn overview(State(c): State<Console>, signed: Signed) -> Response {
    let day = UtcDay::of_unix_ms(now_ms());
    let month_start = day.first_of_month();
    let chart_start = day.plus_days(1 - CHART_DAYS);
    // Totals per day and model: a main account's from the per-endpoint rollups (a few
    // rows a day however big its tree), a sub-account's from its subtree's rows.
    let bill = c
        .service
        .usage_totals(&signed.caller, chart_start.min(month_start), day)
        .await
        .map_err(|e| e.message);
    let rows: &[RollupRow] = bill.as_ref().map_or(&[], Vec::as_slice);
    let today_text = day.to_string();
    let month_text = month_start.to_string();
    let today = sum(rows.iter().filter(|r| r.period == today_text));
    let month = sum(rows.iter().filter(|r| r.period >= month_text));
    let usage = bill
        .as_ref()
        .map(|_| Figures {
            today: Line::from(&today),
            month: Line::from(&month),
        })
        .map_err(Clone::clone);
    let charts = bill
        .as_ref()
        .map(|rows| charts(&per_period(rows, chart_start, day, Granularity::Day)))
        .map_err(Clone::clone);
    let top_models = top_models(rows.iter().filter(|r| r.period >= month_text));
    let credit = match &signed.caller {
        Caller::Root => None,
        Caller::Account { account, .. } => {
            let allocation = c
                .service
                .credit(&signed.caller, account.id)
                .await
                .map(|v| (dollars(v.allocated_nanos), dollars(v.delegated_nanos)))
                .map_err(|e| e.message);
            // The account's own cap binds its subtree's provider cost in the UTC
            // period (`switchyard_core::limits`), which the bill above sums.
            let limit = c
                .service
                .info(&signed.caller, Some(account.id))
                .await
                .ok()
                .and_then(|info| info.policy.credit)
                .map(|cap| {
                    let (spent, period) = match cap.period {
                        Period::Day => (today.cost_nanos, "today"),
                        Period::Month => (month.cost_nanos, "this month"),
                    };
                    let spent = chart_nanos(spent);
                    CreditLeft {
                        period,
                        limit: dollars(i64::try_from(cap.limit_nanos).unwrap_or(i64::MAX)),
                        spent: dollars(i64::try_from(spent).unwrap_or(i64::MAX)),
                        left: dollars(
                            i64::try_from(cap.limit_nanos.saturating_sub(spent))
                                .unwrap_or(i64::MAX),
                        ),
                    }
                });
            Some(Credit {
                allocation,
                cap: limit,
            })
        }
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
            usage,
            month_name: day.month_text(),
            credit,
            charts,
            top_models,
            news,
        },
    )
}

fn sum<'a>(rows: impl Iterator<Item = &'a RollupRow>) -> Totals {
    let mut t = Totals::default();
    for r in rows {
        t.add(r);
    }
    t
}

/// Requests, tokens and provider cost per day, as three charts.
fn charts(days: &[(String, Totals)]) -> Vec<String> {
    let labels: Vec<String> = days.iter().map(|(d, _)| d.clone()).collect();
    let one = |id: &str, title: &str, unit: Unit, value: fn(&Totals) -> u64| {
        Chart {
            id,
            title,
            unit,
            size: Size::Small,
            labels: &labels,
            series: vec![Series {
                name: title,
                values: days.iter().map(|(_, t)| value(t)).collect(),
            }],
        }
        .html()
    };
    vec![
        one("requests-chart", "Requests", Unit::Count, |t| t.requests),
        one("tokens-chart", "Tokens", Unit::Count, Totals::tokens),
        one("cost-chart", "Spend (billed)", Unit::Nanos, |t| {
            chart_nanos(t.billed_nanos)
        }),
    ]
}

/// The month's models by billed amount, then requests; at most [`TOP_MODELS`].
fn top_models<'a>(rows: impl Iterator<Item = &'a RollupRow>) -> Vec<(String, Line)> {
    let mut per_model: BTreeMap<&str, Totals> = BTreeMap::new();
    for r in rows {
        per_model.entry(&r.model).or_default().add(r);
    }
    let mut models: Vec<(&str, Totals)> = per_model.into_iter().collect();
    models.sort_by(|a, b| {
        (b.1.billed_nanos, b.1.requests)
            .cmp(&(a.1.billed_nanos, a.1.requests))
            .then(a.0.cmp(b.0))
    });
    models
        .into_iter()
        .take(TOP_MODELS)
        .map(|(m, t)| (m.to_owned(), Line::from(&t)))
        .collect()
}

/// Sums as the page shows them.
pub struct Line {
    pub requests: u64,
    pub errors: u64,
    pub tokens: u64,
    pub billed: String,
    pub cost: String,
}

impl From<&Totals> for Line {
    fn from(t: &Totals) -> Self {
        Self {
            requests: t.requests,
            errors: t.errors,
            tokens: t.tokens(),
            billed: precise_dollars(t.billed_nanos),
            cost: precise_dollars(t.cost_nanos),
        }
    }
}

pub struct Figures {
    pub today: Line,
    pub month: Line,
}

/// Allocated and delegated credit (or why it is not shown), and the cap of the
/// period, if one is set.
pub struct Credit {
    pub allocation: Result<(String, String), String>,
    pub cap: Option<CreditLeft>,
}

/// A credit cap and what is left of it in its period.
pub struct CreditLeft {
    pub period: &'static str,
    pub limit: String,
    pub spent: String,
    pub left: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub nav: Nav,
    pub usage: Result<Figures, String>,
    pub month_name: String,
    /// Absent for the operator.
    pub credit: Option<Credit>,
    /// Requests, tokens and cost over the last 30 days, each an SVG chart.
    pub charts: Result<Vec<String>, String>,
    pub top_models: Vec<(String, Line)>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_models_by_billed_then_requests() {
        let row = |model: &str, requests: u64, billed: i64| RollupRow {
            model: model.into(),
            requests,
            billed_nanos: billed,
            ..RollupRow::default()
        };
        let rows = [
            row("a", 9, 1),
            row("b", 1, 5),
            row("c", 3, 1),
            row("b", 1, 5),
            row("d", 0, 0),
            row("e", 0, 0),
            row("f", 0, 0),
        ];
        let top = top_models(rows.iter());
        let names: Vec<&str> = top.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(names, ["b", "a", "c", "d", "e"]);
        assert_eq!(top[0].1.requests, 2);
        assert_eq!(top[0].1.billed, "$0.00000001");
    }
}
