//! Logs: the raw usage events of `/dashboard/logs` with its filters, newest first, a
//! page at a time. Events carry no prompt or completion content, so none is shown.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use switchyard_core::error::ErrorCode;
use switchyard_core::time::UtcDay;
use switchyard_core::usage::UsageEvent;
use switchyard_runtime::now_ms;

use super::usage::precise_dollars;
use super::{PAGE_SIZE, refusal};
use crate::console::Console;
use crate::console::session::Signed;
use crate::console::views::{self, Nav, Refusal, when};
use crate::service::{ApiError, LogsQuery};

pub const ROUTES: &[(&str, &[&str])] = &[("/logs", &["GET"])];

pub fn routes() -> Router<Console> {
    Router::new().route("/logs", get(logs))
}

/// The filters as given (kept as text so a refused value is shown again).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LogsForm {
    /// First UTC day shown (`YYYY-MM-DD`).
    #[serde(default)]
    pub from: String,
    /// Last UTC day shown, included.
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub session: String,
    /// The end user the client named (OpenAI's `user`, Anthropic's `metadata.user_id`).
    #[serde(default)]
    pub user: String,
    /// The `x-switchyard-tag` the client sent.
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub account: String,
    /// The cursor of the page shown (empty: the newest).
    #[serde(default)]
    pub before: String,
}

/// Text from a form field; blank means not given.
fn given(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

impl LogsForm {
    /// The service's query for these filters, or which field cannot become one.
    fn query(&self) -> Result<LogsQuery, ApiError> {
        let day = |text: &str, field: &str| -> Result<Option<UtcDay>, ApiError> {
            given(text)
                .map(|t| {
                    t.parse::<UtcDay>().map_err(|_| {
                        ApiError::new(
                            ErrorCode::InvalidRequest,
                            format!("`{field}` must be a date like 2026-01-31"),
                        )
                        .about(field)
                    })
                })
                .transpose()
        };
        let status = given(&self.status)
            .map(|t| {
                t.parse::<u16>().map_err(|_| {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("status must be an HTTP status code, not {t:?}"),
                    )
                    .about("status")
                })
            })
            .transpose()?;
        Ok(LogsQuery {
            from: day(&self.from, "from")?.map(UtcDay::start_ms),
            to: day(&self.to, "to")?.map(|d| d.plus_days(1).start_ms()),
            account: given(&self.account),
            model: given(&self.model),
            status,
            session: given(&self.session),
            user: given(&self.user),
            tag: given(&self.tag),
            before: given(&self.before),
            limit: Some(PAGE_SIZE),
        })
    }

    /// These filters as a query string, at the page `before` names.
    fn link(&self, before: &str) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .append_pair("model", &self.model)
            .append_pair("status", &self.status)
            .append_pair("session", &self.session)
            .append_pair("user", &self.user)
            .append_pair("tag", &self.tag)
            .append_pair("account", &self.account)
            .append_pair("before", before)
            .finish()
    }
}

/// One event as a line of the table.
pub struct EventLine {
    pub at: String,
    pub account: String,
    pub model_requested: String,
    pub model_served: String,
    pub status: u16,
    pub failed: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u32,
    pub cost: String,
    pub billed: String,
    pub session: String,
    pub user: String,
    pub tag: String,
    pub path: String,
    pub streamed: bool,
}

impl From<&UsageEvent> for EventLine {
    fn from(e: &UsageEvent) -> Self {
        Self {
            at: when(e.at_unix_ms),
            account: e.account().map(|a| a.to_string()).unwrap_or_default(),
            model_requested: e.model_requested.clone(),
            model_served: e.model_served.clone(),
            status: e.status,
            failed: e.status >= 400,
            input_tokens: e.tokens.input,
            output_tokens: e.tokens.output,
            latency_ms: e.latency_ms,
            cost: precise_dollars(e.cost_nanos),
            billed: precise_dollars(e.billed_nanos),
            session: e.session.clone().unwrap_or_default(),
            user: e.end_user.clone().unwrap_or_default(),
            tag: e.tag.clone().unwrap_or_default(),
            path: e.path.clone(),
            streamed: e.streamed,
        }
    }
}

#[derive(Template)]
#[template(path = "logs.html")]
pub struct LogsPage {
    pub nav: Nav,
    pub form: LogsForm,
    pub refusal: Option<Refusal>,
    /// The page's events (`None` when refused).
    pub events: Option<Vec<EventLine>>,
    /// The link to the next, older page.
    pub older: Option<String>,
    /// The link to the newest page, when this is not it.
    pub newest: Option<String>,
}

/// `GET /logs`.
async fn logs(State(c): State<Console>, signed: Signed, Query(form): Query<LogsForm>) -> Response {
    let nav = signed.nav("logs");
    let asked = match form.query() {
        Ok(query) => c.service.logs(&signed.caller, query, now_ms()).await,
        Err(e) => Err(e),
    };
    let (status, refused, events, older) = match asked {
        Ok(page) => (
            StatusCode::OK,
            None,
            Some(page.events.iter().map(EventLine::from).collect()),
            page.next.map(|n| form.link(&n)),
        ),
        Err(e) if e.code == ErrorCode::InvalidRequest => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(refusal(
                &e,
                &["from", "to", "account", "model", "status", "session"],
            )),
            None,
            None,
        ),
        Err(e) => return views::failure_in(Some(nav), &e),
    };
    let newest = given(&form.before).map(|_| form.link(""));
    views::page(
        status,
        &LogsPage {
            nav,
            form,
            refusal: refused,
            events,
            older,
            newest,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_the_services_query() {
        let form = LogsForm {
            from: "2026-01-02".into(),
            to: "2026-01-02".into(),
            model: " gpt-4o ".into(),
            status: "429".into(),
            ..LogsForm::default()
        };
        let q = form.query().unwrap();
        let day: UtcDay = "2026-01-02".parse().unwrap();
        assert_eq!(q.from, Some(day.start_ms()));
        assert_eq!(q.to, Some(day.start_ms() + 86_400_000));
        assert_eq!(q.model.as_deref(), Some("gpt-4o"));
        assert_eq!(q.status, Some(429));
        assert_eq!(q.limit, Some(PAGE_SIZE));
        assert!(q.account.is_none() && q.session.is_none() && q.before.is_none());
        let bad = LogsForm {
            from: "yesterday".into(),
            ..LogsForm::default()
        };
        assert!(bad.query().unwrap_err().message.starts_with("`from`"));
        let bad = LogsForm {
            status: "ok".into(),
            ..LogsForm::default()
        };
        assert!(bad.query().unwrap_err().message.starts_with("status"));
        assert!(form.link("c1").ends_with("&before=c1"));
    }
}
