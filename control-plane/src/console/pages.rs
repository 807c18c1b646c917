//! One handler per console page. Each calls the service method its REST route
//! calls and renders the answer, or the service's refusal.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use switchyard_core::ids::IssuedKeyId;
use switchyard_core::time::{UtcDay, parse_utc_day};
use switchyard_runtime::now_ms;

use super::Console;
use super::session::{Posted, Signed, account_id};
use super::views::{
    self, AccountLine, AccountPage, AccountsPage, KeyLine, KeysPage, NewsLine, OverviewPage,
    ProviderKeyLine, ProviderKeysPage, Refusal, Usage, dollars,
};
use crate::rest::decode_object;
use crate::service::{
    ApiError, BillQuery, Caller, CreateAccount, NewKey, NewsQuery, Requested, TreeQuery,
};

/// Sub-accounts listed per page.
const PAGE_SIZE: u32 = 20;

/// `GET /`: spend, credit and requests today and this month; news.
pub async fn overview(State(c): State<Console>, signed: Signed) -> Response {
    let now = now_ms();
    let day = UtcDay::of_unix_ms(now);
    let today = day.to_string();
    let bill = c
        .service
        .bill(
            &signed.caller,
            BillQuery {
                from: Some(Requested::Known(day.first_of_month())),
                to: Some(Requested::Known(day)),
                ..BillQuery::default()
            },
            day,
        )
        .await;
    let sum = |only_today: bool| {
        bill.as_ref()
            .map(|b| {
                let rows = b.rows.iter().filter(|r| !only_today || r.period == today);
                let (mut usage, mut billed, mut cost) = (Usage::default(), 0_i64, 0_i64);
                for r in rows {
                    usage.requests += r.requests;
                    usage.errors += r.errors;
                    billed = billed.saturating_add(r.billed_nanos);
                    cost = cost.saturating_add(r.cost_nanos);
                }
                usage.billed = dollars(billed);
                usage.cost = dollars(cost);
                usage
            })
            .map_err(|e| e.message.clone())
    };
    let credit = match &signed.caller {
        Caller::Root => None,
        Caller::Account { account, .. } => Some(
            c.service
                .credit(&signed.caller, account.id)
                .await
                .map(|v| (dollars(v.allocated_nanos), dollars(v.delegated_nanos)))
                .map_err(|e| e.message),
        ),
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
            today: sum(true),
            month: sum(false),
            month_name: day.month_text(),
            credit,
            news,
        },
    )
}

/// The keys page with whatever a form left to show.
async fn keys_page(
    c: &Console,
    signed: &Signed,
    created: Option<String>,
    refusal: Option<Refusal>,
    expires: String,
) -> Response {
    let keys = c
        .service
        .self_view(&signed.caller, now_ms())
        .await
        .map(|v| v.keys.iter().map(KeyLine::from).collect())
        .map_err(|e| e.message);
    views::page(
        form_status(refusal.is_some(), created.is_some()),
        &KeysPage {
            nav: signed.nav("keys"),
            keys,
            created,
            refusal,
            expires,
        },
    )
}

/// `GET /keys`: the account's own issued keys.
pub async fn keys(State(c): State<Console>, signed: Signed) -> Response {
    keys_page(&c, &signed, None, None, String::new()).await
}

/// `POST /keys`: a new key, with an optional expiry date (UTC midnight).
pub async fn create_key(State(c): State<Console>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let expires = form.get("expires").trim().to_owned();
    let expires_at_unix_ms = if expires.is_empty() {
        None
    } else if let Some(days) = parse_utc_day(&expires) {
        Some(days.saturating_mul(86_400_000))
    } else {
        let refusal = Refusal {
            field: "expires",
            message: format!("{expires:?} is not a date like 2026-01-31"),
        };
        return keys_page(&c, &signed, None, Some(refusal), expires).await;
    };
    match c
        .service
        .create_key(
            &signed.caller,
            None,
            NewKey { expires_at_unix_ms },
            now_ms(),
        )
        .await
    {
        Ok(created) => keys_page(&c, &signed, Some(created.api_key), None, String::new()).await,
        Err(e) => {
            let refusal = refusal(&e, &["expires"]);
            keys_page(&c, &signed, None, Some(refusal), expires).await
        }
    }
}

/// `POST /keys/{id}/revoke`.
pub async fn revoke_key(
    State(c): State<Console>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let signed = posted.signed;
    let key: IssuedKeyId = match id.parse() {
        Ok(k) => k,
        Err(_) => {
            let e = ApiError::new(
                switchyard_core::error::ErrorCode::NotFound,
                format!("issued key {id:?} not found"),
            );
            return views::failure_in(Some(signed.nav("keys")), &e);
        }
    };
    match c.service.revoke_key(&signed.caller, key).await {
        Ok(()) => Redirect::to("/keys").into_response(),
        Err(e) => views::failure_in(Some(signed.nav("keys")), &e),
    }
}

/// The sub-accounts page with whatever a form left to show.
struct AccountsForm {
    refusal: Option<Refusal>,
    name: String,
    policy: String,
    created: Option<(String, String)>,
}

async fn accounts_page(c: &Console, signed: &Signed, page: u32, form: AccountsForm) -> Response {
    let listed = c
        .service
        .descendants(
            &signed.caller,
            TreeQuery {
                id: None,
                offset: Some(page.saturating_mul(PAGE_SIZE)),
                limit: Some(PAGE_SIZE + 1),
            },
            1,
        )
        .await;
    let more = listed
        .as_ref()
        .is_ok_and(|rows| rows.len() > PAGE_SIZE as usize);
    let accounts = listed
        .map(|rows| {
            rows.iter()
                .take(PAGE_SIZE as usize)
                .map(AccountLine::from)
                .collect()
        })
        .map_err(|e| e.message);
    views::page(
        form_status(form.refusal.is_some(), form.created.is_some()),
        &AccountsPage {
            nav: signed.nav("accounts"),
            accounts,
            page,
            more,
            refusal: form.refusal,
            name: form.name,
            policy: form.policy,
            created: form.created,
        },
    )
}

/// `GET /accounts?page=N`: the caller's direct children, a page at a time.
pub async fn accounts(
    State(c): State<Console>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    let page = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let form = AccountsForm {
        refusal: None,
        name: String::new(),
        policy: String::new(),
        created: None,
    };
    accounts_page(&c, &signed, page, form).await
}

/// `POST /accounts`: a child with a name and an optional policy (JSON, as in the API).
pub async fn create_account(State(c): State<Console>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let name = form.get("name").to_owned();
    let policy = form.get("policy").trim().to_owned();
    let mut body = serde_json::Map::new();
    body.insert("name".to_owned(), serde_json::Value::String(name.clone()));
    if !policy.is_empty() {
        match serde_json::from_str::<serde_json::Value>(&policy) {
            Ok(v) => {
                body.insert("policy".to_owned(), v);
            }
            Err(e) => {
                let form = AccountsForm {
                    refusal: Some(Refusal {
                        field: "policy",
                        message: format!("policy: not JSON: {e}"),
                    }),
                    name,
                    policy,
                    created: None,
                };
                return accounts_page(&c, &signed, 0, form).await;
            }
        }
    }
    let outcome = match decode_object::<CreateAccount>(serde_json::Value::Object(body)) {
        Ok(req) => {
            c.service
                .create_account(&signed.caller, req, now_ms())
                .await
        }
        Err(e) => Err(e),
    };
    let form = match outcome {
        Ok(created) => AccountsForm {
            refusal: None,
            name: String::new(),
            policy: String::new(),
            created: Some((created.account.name, created.api_key)),
        },
        Err(e) => AccountsForm {
            refusal: Some(refusal(&e, &["policy", "name"])),
            name,
            policy,
            created: None,
        },
    };
    accounts_page(&c, &signed, 0, form).await
}

/// `GET /accounts/{id}`: one account of the caller's tree; any other is not found.
pub async fn account(State(c): State<Console>, Path(id): Path<String>, signed: Signed) -> Response {
    let nav = || signed.nav("accounts");
    let info = match account_id(&id) {
        Ok(id) => c.service.info(&signed.caller, Some(id)).await,
        Err(e) => Err(e),
    };
    match info {
        Ok(info) => views::page(
            StatusCode::OK,
            &AccountPage {
                nav: nav(),
                id: info.account.id.to_string(),
                name: info.account.name,
                status: info.account.status,
                created: views::when(info.account.created_at_unix_ms),
                policy: pretty(&info.policy),
                effective_policy: pretty(&info.effective_policy),
            },
        ),
        Err(e) => views::failure_in(Some(nav()), &e),
    }
}

/// `GET /admin/provider-keys`: a main account's provider keys (Admin).
pub async fn provider_keys(State(c): State<Console>, signed: Signed) -> Response {
    match c.service.provider_keys(&signed.caller).await {
        Ok(keys) => views::page(
            StatusCode::OK,
            &ProviderKeysPage {
                nav: signed.nav("admin"),
                keys: keys.iter().map(ProviderKeyLine::from).collect(),
            },
        ),
        Err(e) => views::failure_in(Some(signed.nav("admin")), &e),
    }
}

/// A page after a form: refused (422), something created (201), or just shown.
fn form_status(refused: bool, created: bool) -> StatusCode {
    if refused {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The service's refusal, placed at the first of `fields` its message names (the
/// whole form when it names none).
fn refusal(e: &ApiError, fields: &[&'static str]) -> Refusal {
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
