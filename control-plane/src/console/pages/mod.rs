//! One module per console page (or group of pages): its routes, its handlers and
//! the data its templates show. Each handler calls the service method its REST route
//! calls and renders the answer, or the service's refusal.

use axum::Router;
use axum::http::StatusCode;

use super::Console;
use super::views::Refusal;
use switchyard_core::error::ErrorCode;

use super::session::Signed;
use crate::service::{ApiError, TreeEntry, TreeQuery};

mod accounts;
mod audit;
mod data_planes;
mod keys;
mod logs;
mod models;
mod operator;
mod overview;
mod provider_keys;
mod rules;
mod usage;

/// Rows listed per page of any list.
pub const PAGE_SIZE: u32 = 20;

/// Every page route and its methods, module by module.
pub const ROUTES: &[&[(&str, &[&str])]] = &[
    overview::ROUTES,
    keys::ROUTES,
    accounts::ROUTES,
    rules::ROUTES,
    audit::ROUTES,
    data_planes::ROUTES,
    provider_keys::ROUTES,
    operator::ROUTES,
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
        .merge(rules::routes())
        .merge(audit::routes())
        .merge(data_planes::routes())
        .merge(provider_keys::routes())
        .merge(operator::routes())
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

/// The service's refusal, placed at the form's field for the request field it is
/// about (`ApiError::field`): the first of `fields` that names it or one of its
/// path's segments, whole (`policy` for `policy.rpm`) or as the start of a longer
/// name (`expires` for `expires_at_unix_ms`); the whole form when none does.
pub fn refusal(e: &ApiError, fields: &[&'static str]) -> Refusal {
    let about = e.field.as_deref().unwrap_or_default();
    let field = fields
        .iter()
        .find(|f| {
            about.split(['.', '[']).any(|segment| {
                segment
                    .strip_prefix(**f)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
            })
        })
        .copied()
        .unwrap_or("");
    Refusal {
        field,
        message: e.message.clone(),
    }
}

/// Whether a refusal belongs next to the form (422, the form shown again) rather
/// than on a page of its own (403, 404, 503...): the request's content was refused.
pub fn is_form_refusal(e: &ApiError) -> bool {
    matches!(
        e.code,
        ErrorCode::InvalidRequest
            | ErrorCode::Unprocessable
            | ErrorCode::Conflict
            | ErrorCode::PayloadTooLarge
    )
}

/// One page of the descendants the accounts pages list (`/x-dna`'s service call):
/// those of `under` (the caller's when `None`) down to `depth`, named like `name`
/// when given; the page's rows and whether another page follows (one more row
/// asked for tells).
pub async fn descendants_page(
    c: &Console,
    signed: &Signed,
    under: Option<String>,
    name: Option<String>,
    page: u32,
    depth: u32,
) -> Result<(Vec<TreeEntry>, bool), ApiError> {
    let mut rows = c
        .service
        .descendants(
            &signed.caller,
            TreeQuery {
                id: under,
                offset: Some(page.saturating_mul(PAGE_SIZE)),
                limit: Some(PAGE_SIZE + 1),
                name,
            },
            depth,
        )
        .await?;
    let more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    Ok((rows, more))
}
