//! Usage and billing: the bill (`/x-bill`) over any range the service accepts, by day
//! or month, grouped by direct child (each child's whole subtree in one row, a link
//! down into it; the default), account, model, provider key or endpoint; a chart, a
//! paged table with provider cost and billed amount side by side, and the same rows
//! as CSV.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use switchyard_core::time::{Granularity, UtcDay};
use switchyard_core::usage::{RollupBy, RollupRow};
use switchyard_runtime::now_ms;

use super::{PAGE_SIZE, is_form_refusal, refusal};
use crate::console::Console;
use crate::console::chart::{Chart, Series, Size, Unit};
use crate::console::session::Signed;
use crate::console::views::{self, Nav, Refusal};
use crate::service::{ApiError, Bill, BillQuery, Caller, Requested};

pub const ROUTES: &[(&str, &[&str])] = &[("/usage", &["GET"]), ("/usage.csv", &["GET"])];

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/usage", get(usage))
        .route("/usage.csv", get(usage_csv))
}

/// The form's fields as given (kept as text so a refused value is shown again).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct UsageForm {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub granularity: String,
    #[serde(default)]
    pub by: String,
    /// Only this account's subtree (a descendant's, reached through its row).
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub page: String,
}

/// What the table's rows are per.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The direct child's whole subtree, beside the account's own calls.
    Child,
    Account,
    Model,
    ProviderKey,
    Endpoint,
    /// The end user the client named.
    User,
    Session,
    Tag,
}

impl Group {
    fn of(text: &str) -> Self {
        match text {
            "account" => Self::Account,
            "model" => Self::Model,
            "provider_key" => Self::ProviderKey,
            "endpoint" => Self::Endpoint,
            "user" => Self::User,
            "session" => Self::Session,
            "tag" => Self::Tag,
            _ => Self::Child,
        }
    }

    pub fn heading(self) -> &'static str {
        match self {
            Self::Child => "Direct child",
            Self::Account => "Account",
            Self::Model => "Model",
            Self::ProviderKey => "Provider key",
            Self::Endpoint => "Endpoint",
            Self::User => "End user",
            Self::Session => "Session",
            Self::Tag => "Tag",
        }
    }

    fn key(self, row: &RollupRow) -> &str {
        match self {
            Self::Child | Self::Account => &row.account_id,
            Self::Model => &row.model,
            Self::ProviderKey => &row.provider_key_id,
            Self::Endpoint => &row.endpoint,
            Self::User | Self::Session | Self::Tag if row.folded => "other (past the daily cap)",
            Self::User | Self::Session | Self::Tag => match row.label.as_deref() {
                None | Some("") => "(none)",
                Some(label) => label,
            },
        }
    }
}

/// A field's text as the service reads it; blank means not given.
fn given<T: std::str::FromStr>(text: &str) -> Option<Requested<T>> {
    let text = text.trim();
    (!text.is_empty()).then(|| Requested::from(text.to_owned()))
}

impl UsageForm {
    /// The service's query for this form: an empty field is the service's default,
    /// except the range, which defaults to the last 30 days, and the grouping, which
    /// defaults to rows per direct child (a row per child however big the tree);
    /// rows per model are summed by model here: for the owner's whole tree from the
    /// rows per endpoint, for anyone else (or a subtree) from the rows per child.
    fn query(&self, today: UtcDay, owner: bool) -> BillQuery {
        let account = self.account.trim();
        BillQuery {
            from: given(&self.from).or(Some(Requested::Known(today.plus_days(-29)))),
            to: given(&self.to).or(Some(Requested::Known(today))),
            granularity: given(&self.granularity),
            account: (!account.is_empty()).then(|| account.to_owned()),
            by: match self.by.as_str() {
                "model" if owner && account.is_empty() => {
                    Some(Requested::Known(RollupBy::Endpoint))
                }
                "model" | "" => Some(Requested::Known(RollupBy::Child)),
                other => given(other),
            },
            ..BillQuery::default()
        }
    }

    fn group(&self) -> Group {
        Group::of(&self.by)
    }

    /// The form as a query string, with another page number.
    fn link(&self, page: u32) -> String {
        self.link_in(&self.account, &self.by, page)
    }

    /// The form as a query string for another account's subtree and grouping.
    fn link_in(&self, account: &str, by: &str, page: u32) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .append_pair("granularity", &self.granularity)
            .append_pair("by", by)
            .append_pair("account", account)
            .append_pair("page", &page.to_string())
            .finish()
    }
}

/// Sums of rollup rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_nanos: i64,
    pub billed_nanos: i64,
}

impl Totals {
    pub fn add(&mut self, r: &RollupRow) {
        self.requests = self.requests.saturating_add(r.requests);
        self.errors = self.errors.saturating_add(r.errors);
        self.input_tokens = self.input_tokens.saturating_add(r.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(r.output_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(r.cached_tokens);
        self.cost_nanos = self.cost_nanos.saturating_add(r.cost_nanos);
        self.billed_nanos = self.billed_nanos.saturating_add(r.billed_nanos);
    }

    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Rows summed per period and per `group` key, in period then key order.
pub fn grouped(rows: &[RollupRow], group: Group) -> BTreeMap<(String, String), Totals> {
    let mut out: BTreeMap<(String, String), Totals> = BTreeMap::new();
    for r in rows {
        out.entry((r.period.clone(), group.key(r).to_owned()))
            .or_default()
            .add(r);
    }
    out
}

/// Rows summed per period, over every period from `from` to `to` (none missing).
pub fn per_period(
    rows: &[RollupRow],
    from: UtcDay,
    to: UtcDay,
    g: Granularity,
) -> Vec<(String, Totals)> {
    let mut sums: BTreeMap<String, Totals> = periods(from, to, g)
        .into_iter()
        .map(|p| (p, Totals::default()))
        .collect();
    for r in rows {
        if let Some(t) = sums.get_mut(&r.period) {
            t.add(r);
        }
    }
    sums.into_iter().collect()
}

/// Every period from `from` to `to`: `YYYY-MM-DD` days or `YYYY-MM` months.
fn periods(from: UtcDay, to: UtcDay, g: Granularity) -> Vec<String> {
    match g {
        Granularity::Day => (from.number()..=to.number())
            .map(|n| UtcDay::from_number(n).to_string())
            .collect(),
        Granularity::Month => {
            let mut out = Vec::new();
            let mut month = from.first_of_month();
            while month <= to {
                out.push(month.month_text());
                month = month.first_of_next_month();
            }
            out
        }
    }
}

/// Money in a value as the chart reads it (nothing below zero).
pub fn chart_nanos(nanos: i64) -> u64 {
    u64::try_from(nanos).unwrap_or(0)
}

/// One line of the table.
pub struct Line {
    pub period: String,
    pub key: String,
    /// In rows per direct child: the query string of the child's own page.
    pub drill: Option<String>,
    /// In rows per direct child: the row of the account's own calls.
    pub own: bool,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: String,
    pub billed: String,
}

impl Line {
    fn new(period: String, key: String, t: &Totals) -> Self {
        Self {
            period,
            key,
            drill: None,
            own: false,
            requests: t.requests,
            errors: t.errors,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cost: precise_dollars(t.cost_nanos),
            billed: precise_dollars(t.billed_nanos),
        }
    }
}

/// Nano-dollars as dollars with at least four decimals and as many more as the
/// amount has (a call can cost millionths of a dollar).
pub fn precise_dollars(nanos: i64) -> String {
    let exact = exact_dollars(nanos);
    let trimmed = exact.trim_end_matches('0');
    let keep = (exact.len() - 5).max(trimmed.len());
    match exact.strip_prefix('-') {
        Some(_) => format!("-${}", &exact[1..keep]),
        None => format!("${}", &exact[..keep]),
    }
}

/// What an accepted query shows.
pub struct Shown {
    /// The query string of the whole tree's page, when this one shows a subtree.
    pub up: Option<String>,
    pub chart: String,
    pub lines: Vec<Line>,
    pub total: Line,
    pub previous: Option<String>,
    pub next: Option<String>,
    pub csv: String,
}

#[derive(Template)]
#[template(path = "usage.html")]
pub struct UsagePage {
    pub nav: Nav,
    pub form: UsageForm,
    /// Per provider key and per endpoint are offered (the owner of the keys).
    pub owner: bool,
    pub group: &'static str,
    /// Rows per direct child: the account-scoped link of each is shown.
    pub per_child: bool,
    pub refusal: Option<Refusal>,
    pub shown: Option<Shown>,
}

/// The bill for the form, or the service's refusal.
async fn bill(c: &Console, signed: &Signed, form: &UsageForm) -> Result<Bill, ApiError> {
    let today = UtcDay::of_unix_ms(now_ms());
    let owner = signed.nav("usage").admin;
    c.service
        .bill(&signed.caller, form.query(today, owner), today)
        .await
}

/// `GET /usage`.
async fn usage(
    State(c): State<Console>,
    signed: Signed,
    Query(mut form): Query<UsageForm>,
) -> Response {
    let nav = signed.nav("usage");
    let owner = nav.admin;
    let group = form.group();
    let page_number: u32 = form.page.parse().unwrap_or(0);
    // Whose own calls a row per child is: the account asked for, else the caller.
    let own = match (form.account.trim(), &signed.caller) {
        ("", Caller::Account { account, .. }) => account.id.to_string(),
        (asked, _) => asked.to_owned(),
    };
    let (status, refused, shown) = match bill(&c, &signed, &form).await {
        Ok(bill) => {
            // The range the service answered for, shown in the form.
            form.from = bill.from.to_string();
            form.to = bill.to.to_string();
            let shown = show(&bill, &form, group, page_number, &own);
            (StatusCode::OK, None, Some(shown))
        }
        Err(e) if is_form_refusal(&e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(refusal(&e, &["from", "to", "granularity", "by", "account"])),
            None,
        ),
        Err(e) => return views::failure_in(Some(nav), &e),
    };
    views::page(
        status,
        &UsagePage {
            nav,
            owner,
            group: group.heading(),
            per_child: group == Group::Child,
            form,
            refusal: refused,
            shown,
        },
    )
}

/// The chart and one page of the table; rows per child link down into each child
/// (not `own`, whose row holds the account's own calls).
fn show(bill: &Bill, form: &UsageForm, group: Group, page: u32, own: &str) -> Shown {
    let sums = per_period(&bill.rows, bill.from, bill.to, bill.granularity);
    let labels: Vec<String> = sums.iter().map(|(p, _)| p.clone()).collect();
    let chart = Chart {
        id: "usage-chart",
        title: "Provider cost and billed amount",
        unit: Unit::Nanos,
        size: Size::Wide,
        labels: &labels,
        series: vec![
            Series {
                name: "Provider cost",
                values: sums
                    .iter()
                    .map(|(_, t)| chart_nanos(t.cost_nanos))
                    .collect(),
            },
            Series {
                name: "Billed",
                values: sums
                    .iter()
                    .map(|(_, t)| chart_nanos(t.billed_nanos))
                    .collect(),
            },
        ],
    }
    .html();
    let rows = grouped(&bill.rows, group);
    let mut total = Totals::default();
    for r in &bill.rows {
        total.add(r);
    }
    let size = PAGE_SIZE as usize;
    let skip = (page as usize).saturating_mul(size);
    let lines: Vec<Line> = rows
        .iter()
        .skip(skip)
        .take(size)
        .map(|((period, key), t)| {
            let mut line = Line::new(period.clone(), key.clone(), t);
            if group == Group::Child {
                line.own = key == own;
                line.drill = (!line.own).then(|| form.link_in(key, "child", 0));
            }
            line
        })
        .collect();
    let more = rows.len() > skip.saturating_add(size);
    Shown {
        up: (!form.account.trim().is_empty()).then(|| form.link_in("", &form.by, 0)),
        chart,
        lines,
        total: Line::new("Total".into(), String::new(), &total),
        previous: (page > 0).then(|| form.link(page - 1)),
        next: more.then(|| form.link(page + 1)),
        csv: form.link(0),
    }
}

/// `GET /usage.csv`: the same rows as the table, every page, as a CSV attachment.
async fn usage_csv(
    State(c): State<Console>,
    signed: Signed,
    Query(form): Query<UsageForm>,
) -> Response {
    let bill = match bill(&c, &signed, &form).await {
        Ok(bill) => bill,
        Err(e) if is_form_refusal(&e) => {
            return (StatusCode::UNPROCESSABLE_ENTITY, e.message).into_response();
        }
        Err(e) => return views::failure_in(Some(signed.nav("usage")), &e),
    };
    let group = form.group();
    let body = csv(&grouped(&bill.rows, group), group);
    let disposition = format!(
        "attachment; filename=\"switchyard-usage-{}-{}.csv\"",
        bill.from, bill.to
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// The rows as CSV: a header line, then one line per period and key.
fn csv(rows: &BTreeMap<(String, String), Totals>, group: Group) -> String {
    let key = match group {
        Group::Child => "child_account_id",
        Group::Account => "account_id",
        Group::Model => "model",
        Group::ProviderKey => "provider_key_id",
        Group::Endpoint => "endpoint",
        Group::User => "user",
        Group::Session => "session",
        Group::Tag => "tag",
    };
    let mut out = format!(
        "period,{key},requests,errors,input_tokens,output_tokens,cached_tokens,provider_cost_usd,billed_usd\r\n"
    );
    for ((period, k), t) in rows {
        let cells = [
            period.clone(),
            k.clone(),
            t.requests.to_string(),
            t.errors.to_string(),
            t.input_tokens.to_string(),
            t.output_tokens.to_string(),
            t.cached_tokens.to_string(),
            exact_dollars(t.cost_nanos),
            exact_dollars(t.billed_nanos),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Nano-dollars as dollars with every digit (`0.000001500`).
fn exact_dollars(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    format!("{sign}{}.{:09}", n / 1_000_000_000, n % 1_000_000_000)
}

/// One CSV cell: a cell a spreadsheet would read as a formula (starting with `=`,
/// `+`, `-`, `@`, a tab or a carriage return) is prefixed with `'`; a cell holding
/// a comma, quote or line break is quoted, its quotes doubled.
fn csv_cell(text: &str) -> String {
    let defused = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(period: &str, account: &str, model: &str, cost: i64) -> RollupRow {
        RollupRow {
            period: period.into(),
            account_id: account.into(),
            model: model.into(),
            requests: 1,
            input_tokens: 10,
            output_tokens: 5,
            cost_nanos: cost,
            billed_nanos: cost * 2,
            ..RollupRow::default()
        }
    }

    #[test]
    fn cells_cannot_become_formulas() {
        assert_eq!(csv_cell("gpt-4o"), "gpt-4o");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("a\nb"), "\"a\nb\"");
        assert_eq!(csv_cell(""), "");
        assert_eq!(exact_dollars(1_500), "0.000001500");
        assert_eq!(exact_dollars(-2_000_000_001), "-2.000000001");
        assert_eq!(precise_dollars(32_000), "$0.000032");
        assert_eq!(precise_dollars(1_500_000_000), "$1.5000");
        assert_eq!(precise_dollars(0), "$0.0000");
        assert_eq!(precise_dollars(-2_000_000_001), "-$2.000000001");
    }

    #[test]
    fn rows_grouped_and_written() {
        let rows = vec![
            row("2026-01-02", "a", "=cmd", 100),
            row("2026-01-01", "a", "m", 7),
            row("2026-01-01", "b", "m", 3),
        ];
        let by_model = grouped(&rows, Group::Model);
        assert_eq!(by_model.len(), 2);
        let m = by_model[&("2026-01-01".to_owned(), "m".to_owned())];
        assert_eq!((m.requests, m.cost_nanos, m.billed_nanos), (2, 10, 20));
        let text = csv(&by_model, Group::Model);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "period,model,requests,errors,input_tokens,output_tokens,cached_tokens,provider_cost_usd,billed_usd"
        );
        assert_eq!(lines[1], "2026-01-01,m,2,0,20,10,0,0.000000010,0.000000020");
        assert_eq!(
            lines[2],
            "2026-01-02,'=cmd,1,0,10,5,0,0.000000100,0.000000200"
        );
        assert_eq!(grouped(&rows, Group::Account).len(), 3);
    }

    #[test]
    fn every_period_is_charted() {
        let day = |t: &str| t.parse::<UtcDay>().unwrap();
        let rows = vec![row("2026-01-30", "a", "m", 5)];
        let days = per_period(
            &rows,
            day("2026-01-29"),
            day("2026-02-02"),
            Granularity::Day,
        );
        assert_eq!(days.len(), 5);
        assert_eq!(days[1].0, "2026-01-30");
        assert_eq!(days[1].1.cost_nanos, 5);
        let months = periods(day("2025-12-31"), day("2026-02-01"), Granularity::Month);
        assert_eq!(months, ["2025-12", "2026-01", "2026-02"]);
    }

    #[test]
    fn the_form_becomes_the_services_query() {
        let today: UtcDay = "2026-03-31".parse().unwrap();
        let q = UsageForm::default().query(today, false);
        assert_eq!(
            q.from,
            Some(Requested::Known("2026-03-02".parse().unwrap()))
        );
        assert_eq!(q.to, Some(Requested::Known(today)));
        assert!(q.granularity.is_none() && q.account.is_none());
        assert_eq!(q.by, Some(Requested::Known(RollupBy::Child)), "per child");
        let form = UsageForm {
            from: "2026-02-30".into(),
            by: "model".into(),
            ..UsageForm::default()
        };
        let q = form.query(today, false);
        assert_eq!(q.from, Some(Requested::Unknown("2026-02-30".into())));
        assert_eq!(q.by, Some(Requested::Known(RollupBy::Child)));
        let q = form.query(today, true);
        assert_eq!(
            q.by,
            Some(Requested::Known(RollupBy::Endpoint)),
            "the owner's"
        );
        assert_eq!(form.group(), Group::Model);
        assert!(form.link(2).ends_with("by=model&account=&page=2"));
        let within = UsageForm {
            account: "0190-child".into(),
            ..form
        };
        let q = within.query(today, true);
        assert_eq!(q.account.as_deref(), Some("0190-child"));
        assert_eq!(
            q.by,
            Some(Requested::Known(RollupBy::Child)),
            "per endpoint covers the whole tree only"
        );
        assert_eq!(UsageForm::default().group(), Group::Child);
    }
}
