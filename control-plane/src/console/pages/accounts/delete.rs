//! Deleting an account: a confirmation page that works without script (the
//! account's name typed again, its sub-accounts counted and named as going too),
//! then the service's delete with cascade.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::AccountId;

use super::account::AccountForm;
use crate::console::Console;
use crate::console::pages::form_status;
use crate::console::session::{Signed, account_id};
use crate::console::views::{self, Nav, Refusal};
use crate::rest::MAX_TREE_DEPTH;
use crate::service::TreeQuery;

/// Sub-accounts counted on the confirmation page; more are "at least" this many.
const COUNTED: u32 = 1000;

#[derive(Template)]
#[template(path = "account_delete.html")]
pub struct DeletePage {
    pub nav: Nav,
    pub id: String,
    pub name: String,
    /// Its descendants, up to [`COUNTED`].
    pub descendants: usize,
    pub at_least: bool,
    pub typed: String,
    pub refusal: Option<Refusal>,
}

async fn page(
    c: &Console,
    signed: &Signed,
    id: AccountId,
    typed: String,
    refusal: Option<Refusal>,
) -> Response {
    let nav = signed.nav("accounts");
    let info = match c.service.info(&signed.caller, Some(id)).await {
        Ok(info) => info,
        Err(e) => return views::failure_in(Some(nav), &e),
    };
    let below = c
        .service
        .descendants(
            &signed.caller,
            TreeQuery {
                id: Some(id.to_string()),
                offset: Some(0),
                limit: Some(COUNTED),
                name: None,
            },
            MAX_TREE_DEPTH,
        )
        .await;
    let descendants = match below {
        Ok(rows) => rows.len(),
        Err(e) => return views::failure_in(Some(nav), &e),
    };
    views::page(
        form_status(refusal.is_some(), false),
        &DeletePage {
            nav,
            id: id.to_string(),
            name: info.account.name,
            descendants,
            at_least: descendants >= COUNTED as usize,
            typed,
            refusal,
        },
    )
}

/// `GET /accounts/{id}/delete`: what would go, and the confirmation form.
pub async fn confirm(State(c): State<Console>, Path(id): Path<String>, signed: Signed) -> Response {
    match account_id(&id) {
        Ok(id) => page(&c, &signed, id, String::new(), None).await,
        Err(e) => views::failure_in(Some(signed.nav("accounts")), &e),
    }
}

/// `POST /accounts/{id}/delete`: deletes it (and, with `cascade`, its sub-accounts)
/// once its name is typed again.
pub async fn delete(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let typed = form.get("confirm").trim().to_owned();
    let name = match c.service.info(&signed.caller, Some(id)).await {
        Ok(info) => info.account.name,
        Err(e) => return views::failure_in(Some(signed.nav("accounts")), &e),
    };
    if typed != name {
        let refusal = Refusal {
            field: "confirm",
            message: "type the account's name exactly to delete it".to_owned(),
        };
        return page(&c, &signed, id, typed, Some(refusal)).await;
    }
    let cascade = form.get("cascade") == "yes";
    match c.service.delete_account(&signed.caller, id, cascade).await {
        Ok(done) => Redirect::to(&format!("/accounts?deleted={}", done.deleted)).into_response(),
        Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::PermissionDenied) => {
            views::failure_in(Some(signed.nav("accounts")), &e)
        }
        Err(e) => {
            let refusal = Refusal {
                field: "cascade",
                message: e.message,
            };
            page(&c, &signed, id, typed, Some(refusal)).await
        }
    }
}
