//! Models: exactly what the account may call (`/dashboard/models`), with the price it
//! is billed for each.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use switchyard_core::rules::Price;

use crate::console::Console;
use crate::console::session::Signed;
use crate::console::views::{self, Nav, dollars};

pub const ROUTES: &[(&str, &[&str])] = &[("/models", &["GET"])];

pub fn routes() -> Router<Console> {
    Router::new().route("/models", get(models))
}

/// A price in nano-dollars as dollars.
fn money(nanos: u64) -> String {
    dollars(i64::try_from(nanos).unwrap_or(i64::MAX))
}

/// A price as the table shows it.
pub struct PriceLine {
    pub input: String,
    pub cached_input: String,
    pub cache_write: String,
    pub output: String,
    pub per_request: String,
}

impl From<&Price> for PriceLine {
    fn from(p: &Price) -> Self {
        Self {
            input: money(p.input_per_million_nanos),
            cached_input: money(p.cached_input_per_million_nanos),
            // Without a price of its own a cache write costs the input price.
            cache_write: money(
                p.cache_write_per_million_nanos
                    .unwrap_or(p.input_per_million_nanos),
            ),
            output: money(p.output_per_million_nanos),
            per_request: money(p.per_request_nanos),
        }
    }
}

pub struct ModelLine {
    pub model: String,
    /// A `prefix*` pattern: every model whose name starts so.
    pub pattern: bool,
    pub price: Option<PriceLine>,
}

#[derive(Template)]
#[template(path = "models.html")]
pub struct ModelsPage {
    pub nav: Nav,
    pub models: Vec<ModelLine>,
}

/// `GET /models`.
async fn models(State(c): State<Console>, signed: Signed) -> Response {
    let nav = signed.nav("models");
    let list = match c.service.dashboard_models(&signed.caller).await {
        Ok(list) => list,
        Err(e) => return views::failure_in(Some(nav), &e),
    };
    let models = list
        .models
        .iter()
        .map(|m| ModelLine {
            model: m.clone(),
            pattern: m.ends_with('*'),
            price: list.prices.get(m).map(PriceLine::from),
        })
        .collect();
    views::page(StatusCode::OK, &ModelsPage { nav, models })
}
