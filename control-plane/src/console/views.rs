//! What the console's templates show, and how a page or a refusal becomes an answer.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use switchyard_core::error::ErrorCode;

use crate::service::{ApiError, Caller, IssuedKeyView, ProviderKeyView, TreeEntry};
use crate::store::NewsItem;

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

pub struct KeyLine {
    pub id: String,
    pub tail: String,
    pub status: &'static str,
    pub created: String,
    pub expires: String,
    pub in_use: bool,
}

impl From<&IssuedKeyView> for KeyLine {
    fn from(k: &IssuedKeyView) -> Self {
        Self {
            id: k.id.to_string(),
            tail: k.tail.clone(),
            status: k.status,
            created: when(k.created_at_unix_ms),
            expires: k
                .expires_at_unix_ms
                .map_or_else(|| "never".to_owned(), when),
            in_use: k.in_use,
        }
    }
}

#[derive(Template)]
#[template(path = "keys.html")]
pub struct KeysPage {
    pub nav: Nav,
    pub keys: Result<Vec<KeyLine>, String>,
    /// A key just created: shown this once.
    pub created: Option<String>,
    pub refusal: Option<Refusal>,
    pub expires: String,
}

pub struct AccountLine {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub created: String,
}

impl From<&TreeEntry> for AccountLine {
    fn from(e: &TreeEntry) -> Self {
        Self {
            id: e.account.id.to_string(),
            name: e.account.name.clone(),
            status: e.account.status,
            created: when(e.account.created_at_unix_ms),
        }
    }
}

#[derive(Template)]
#[template(path = "accounts.html")]
pub struct AccountsPage {
    pub nav: Nav,
    pub accounts: Result<Vec<AccountLine>, String>,
    pub page: u32,
    pub more: bool,
    pub refusal: Option<Refusal>,
    pub name: String,
    pub policy: String,
    /// An account just created, with its first key (shown this once).
    pub created: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub nav: Nav,
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub created: String,
    pub policy: String,
    pub effective_policy: String,
}

pub struct ProviderKeyLine {
    pub provider: &'static str,
    pub base_url: String,
    pub status: &'static str,
    pub health: String,
}

impl From<&ProviderKeyView> for ProviderKeyLine {
    fn from(k: &ProviderKeyView) -> Self {
        Self {
            provider: k.provider,
            base_url: k.base_url.clone(),
            status: k.status,
            health: k.health.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "provider_keys.html")]
pub struct ProviderKeysPage {
    pub nav: Nav,
    pub keys: Vec<ProviderKeyLine>,
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
