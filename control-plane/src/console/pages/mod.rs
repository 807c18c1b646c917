//! One module per console page (or group of pages): its routes, its handlers and
//! the data its templates show. Each handler calls the service method its REST route
//! calls and renders the answer, or the service's refusal.

use axum::Router;
use axum::http::StatusCode;

use super::Console;
use super::views::Refusal;
use crate::service::ApiError;

mod accounts;
mod admin;
mod keys;
mod logs;
mod models;
mod overview;
mod usage;

/// Rows listed per page of any list.
pub const PAGE_SIZE: u32 = 20;

/// Every page route and its methods, module by module.
pub const ROUTES: &[&[(&str, &[&str])]] = &[
    overview::ROUTES,
    keys::ROUTES,
    accounts::ROUTES,
    admin::ROUTES,
    usage::ROUTES,
    logs::ROUTES,
    models::ROUTES,
];

/// Every page's routes.
pub fn routes() -> Router<Console> {
    Router::new()
        .merge(overview::routes())
        .merge(keys::routes())
        .merge(accounts::routes())
        .merge(admin::routes())
        .merge(usage::routes())
        .merge(logs::routes())
        .merge(models::routes())
}

/// A page after a form: refused (422), something created (201), or just shown.
pub fn form_status(refused: bool, created: bool) -> StatusCode {
    if refused {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

pub fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The service's refusal, placed at the first of `fields` its message names (the
/// whole form when it names none).
pub fn refusal(e: &ApiError, fields: &[&'static str]) -> Refusal {
    let field = fields
        .iter()
        .find(|f| e.message.contains(**f))
        .copied()
        .unwrap_or("");
    Refusal {
        field,
        message: e.message.clone(),
    }
}
