//! Admin (main accounts): provider keys.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use crate::console::Console;
use crate::console::session::Signed;
use crate::console::views::{self, Nav};
use crate::service::ProviderKeyView;

pub const ROUTES: &[(&str, &[&str])] = &[("/admin/provider-keys", &["GET"])];

pub fn routes() -> Router<Console> {
    Router::new().route("/admin/provider-keys", get(provider_keys))
}

/// `GET /admin/provider-keys`: a main account's provider keys (Admin).
async fn provider_keys(State(c): State<Console>, signed: Signed) -> Response {
    match c.service.provider_keys(&signed.caller).await {
        Ok(keys) => views::page(
            StatusCode::OK,
            &ProviderKeysPage {
                nav: signed.nav("admin-keys"),
                keys: keys.iter().map(ProviderKeyLine::from).collect(),
            },
        ),
        Err(e) => views::failure_in(Some(signed.nav("admin-keys")), &e),
    }
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
