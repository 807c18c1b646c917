//! What the console's templates show, and how a page or a refusal becomes an answer.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use switchyard_core::error::ErrorCode;

use crate::service::{ApiError, Caller};

/// The bar at the top of every signed-in page.
pub struct Nav {
    /// The account's name, or "operator".
    pub who: String,
    pub account_id: String,
    pub csrf: String,
    /// Which tab is open.
    pub active: &'static str,
    /// A main account: the Admin pages are offered.
    pub admin: bool,
    /// The root key: the Operator pages are offered.
    pub operator: bool,
}

impl Nav {
    pub fn new(caller: &Caller, csrf: &str, active: &'static str) -> Self {
        let (who, account_id, admin) = match caller {
            Caller::Root => ("operator".to_owned(), String::new(), false),
            Caller::Account { account, .. } => (
                account.name.clone(),
                account.id.to_string(),
                account.parent.is_none(),
            ),
        };
        Self {
            who,
            account_id,
            csrf: csrf.to_owned(),
            active,
            admin,
            operator: matches!(caller, Caller::Root),
        }
    }
}

/// A refusal shown next to the field it concerns (`field` empty: the whole form).
pub struct Refusal {
    pub field: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn on(&self, field: &str) -> Option<&str> {
        (self.field == field).then_some(self.message.as_str())
    }
}

#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    pub error: Option<String>,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub nav: Option<Nav>,
    pub status: u16,
    pub title: &'static str,
    pub message: String,
}

/// A rendered page with its status.
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A refusal as a whole page (403, 404, 503...), with the service's own message.
pub fn failure(e: &ApiError) -> Response {
    failure_in(None, e)
}

/// Like [`failure`], inside the signed-in frame.
pub fn failure_in(nav: Option<Nav>, e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let title = match e.code {
        ErrorCode::PermissionDenied => "Not allowed",
        ErrorCode::NotFound => "Not found",
        ErrorCode::Unavailable => "Unavailable",
        ErrorCode::Internal => "Something went wrong",
        _ => "Refused",
    };
    page(
        status,
        &ErrorPage {
            nav,
            status: status.as_u16(),
            title,
            message: e.message.clone(),
        },
    )
}

/// Nano-dollars as dollars with four decimals.
pub fn dollars(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let cents_e2 = (n + 50_000) / 100_000; // ten-thousandths of a dollar, rounded
    format!("{sign}${}.{:04}", cents_e2 / 10_000, cents_e2 % 10_000)
}

/// A Unix millisecond time as `YYYY-MM-DD HH:MM UTC`.
pub fn when(unix_ms: i64) -> String {
    let day = switchyard_core::time::utc_day(unix_ms);
    let minute = unix_ms.rem_euclid(86_400_000) / 60_000;
    format!("{day} {:02}:{:02} UTC", minute / 60, minute % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_time() {
        assert_eq!(dollars(0), "$0.0000");
        assert_eq!(dollars(1_234_567_890), "$1.2346");
        assert_eq!(dollars(-50_000), "-$0.0001");
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(86_400_000 + 61 * 60_000), "1970-01-02 01:01 UTC");
    }
}
