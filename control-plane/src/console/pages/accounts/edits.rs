//! The forms of an account's page, each calling the service method its REST route
//! calls: the policy (within the parent's effective one), rename, disable and
//! enable, billing (its direct parent), credit top-ups and withdrawals (its direct
//! parent), and keys issued for it (shown once).

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::AccountId;
use switchyard_runtime::now_ms;

use super::account::{AccountForm, Shown, after, page};
use super::form::{self, PolicyText};
use crate::console::Console;
use crate::console::pages::keys::expiry;
use crate::console::pages::refusal;
use crate::console::session::Signed;
use crate::console::views::{self, Refusal};
use crate::rest::decode_object;
use crate::service::{AllocateCredit, ApiError, NewKey, UpdateAccount};

/// `PATCH /x-users/{id}` with `body`, read as the REST API reads it.
async fn update(c: &Console, signed: &Signed, id: AccountId, body: Value) -> Result<(), ApiError> {
    let req = decode_object::<UpdateAccount>(body)?;
    c.service.update_account(&signed.caller, id, req).await?;
    Ok(())
}

/// `POST /accounts/{id}/policy`: the account's own policy, within its parent's.
pub async fn set_policy(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let text = PolicyText::posted(&form);
    let read = text.to_json().map_err(|r| vec![r]).and_then(read_policy);
    let outcome = match read {
        Ok(req) => c
            .service
            .update_account(&signed.caller, id, req)
            .await
            .map(|_| "policy"),
        Err(refusals) => {
            let shown = Shown {
                refusals,
                policy: Some(text),
                ..Shown::default()
            };
            return page(&c, &signed, id, shown).await;
        }
    };
    after(&c, &signed, id, outcome, |e| Shown {
        refusals: form::policy_refusals(&e.message),
        policy: Some(text),
        ..Shown::default()
    })
    .await
}

/// A form's `object` read as `PATCH /x-users/{id}` reads `{key: object}`. That
/// reading names no field when a value has the wrong type, so on a refusal each
/// field (`(its JSON name, the form's field)`) is read alone and each one's refusal
/// goes beside it; `fallback` places a refusal no single field explains.
fn read_update(
    key: &str,
    object: Value,
    fields: &[(&str, &'static str)],
    fallback: impl FnOnce(&ApiError) -> Vec<Refusal>,
) -> Result<UpdateAccount, Vec<Refusal>> {
    let whole = match decode_object::<UpdateAccount>(json!({ key: object })) {
        Ok(req) => return Ok(req),
        Err(e) => e,
    };
    let mut refusals = Vec::new();
    if let Value::Object(values) = &object {
        for (name, value) in values {
            if let Err(e) = decode_object::<UpdateAccount>(json!({ key: { name: value } })) {
                let field = fields
                    .iter()
                    .find(|(json_name, _)| json_name == name)
                    .map_or("", |(_, field)| *field);
                refusals.push(Refusal {
                    field,
                    message: e.message,
                });
            }
        }
    }
    if refusals.is_empty() {
        refusals = fallback(&whole);
    }
    Err(refusals)
}

fn read_policy(policy: Value) -> Result<UpdateAccount, Vec<Refusal>> {
    let fields: Vec<(&str, &'static str)> = form::POLICY_FIELDS.iter().map(|f| (*f, *f)).collect();
    read_update("policy", policy, &fields, |e| {
        form::policy_refusals(&e.message)
    })
}

/// `POST /accounts/{id}/name`.
pub async fn rename(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let name = form.get("name").to_owned();
    let outcome = update(&c, &signed, id, json!({ "name": name })).await;
    after(&c, &signed, id, outcome.map(|()| "name"), |e| Shown {
        name: Some(name),
        ..Shown::refused(Refusal {
            field: "name",
            message: e.message.clone(),
        })
    })
    .await
}

/// `POST /accounts/{id}/status`: `active` or `disabled`.
pub async fn set_status(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let status = form.get("status").to_owned();
    let outcome = update(&c, &signed, id, json!({ "status": status })).await;
    let saved = if status == "active" {
        "active"
    } else {
        "disabled"
    };
    after(&c, &signed, id, outcome.map(|()| saved), |e| {
        Shown::refused(Refusal {
            field: "status",
            message: e.message.clone(),
        })
    })
    .await
}

/// `POST /accounts/{id}/billing`: what the caller, its direct parent, bills it.
pub async fn set_billing(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let typed = (
        form.get("multiplier").trim().to_owned(),
        form.get("prices").to_owned(),
    );
    let read = form::billing_json(&typed.0, &typed.1)
        .map_err(|r| vec![r])
        .and_then(|billing| {
            read_update(
                "billing",
                billing,
                &[("multiplier_ppm", "multiplier"), ("prices", "prices")],
                |e| vec![refusal(e, &["multiplier", "prices"])],
            )
        });
    let outcome = match read {
        Ok(req) => c
            .service
            .update_account(&signed.caller, id, req)
            .await
            .map(|_| "billing"),
        Err(refusals) => {
            let shown = Shown {
                refusals,
                billing: Some(typed),
                ..Shown::default()
            };
            return page(&c, &signed, id, shown).await;
        }
    };
    after(&c, &signed, id, outcome, |e| Shown {
        billing: Some(typed),
        ..Shown::refused(refusal(e, &["multiplier", "prices"]))
    })
    .await
}

/// `POST /accounts/{id}/credit`: a top-up or a withdrawal, in dollars, by the
/// account's direct parent.
pub async fn allocate(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let amount = form.get("amount").trim().to_owned();
    let direction = form.get("direction").to_owned();
    let note = form.get("note").to_owned();
    let typed = |refusal: Refusal| Shown {
        amount: amount.clone(),
        direction: direction.clone(),
        note: note.clone(),
        ..Shown::refused(refusal)
    };
    let Some(nanos) = form::dollars_to_nanos(&amount).and_then(|n| i64::try_from(n).ok()) else {
        let refusal = Refusal {
            field: "amount",
            message: format!("amount: {amount:?} is not a dollar amount like 12.50"),
        };
        return page(&c, &signed, id, typed(refusal)).await;
    };
    let req = AllocateCredit {
        amount_nanos: if direction == "withdraw" {
            -nanos
        } else {
            nanos
        },
        note: (!note.is_empty()).then(|| note.clone()),
    };
    let outcome = c
        .service
        .allocate_credit(&signed.caller, id, req, now_ms())
        .await
        .map(|_| "credit");
    after(&c, &signed, id, outcome, |e| {
        let mut refusal = refusal(e, &["note", "amount"]);
        // "credit refused: ..." concerns the amount.
        if refusal.field.is_empty() {
            refusal.field = "amount";
        }
        typed(refusal)
    })
    .await
}

/// `POST /accounts/{id}/keys`: a key for the account, shown this once.
pub async fn issue_key(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let expires = form.get("expires").trim().to_owned();
    let expires_at_unix_ms = match expiry(&expires) {
        Ok(at) => at,
        Err(refusal) => {
            let shown = Shown {
                expires,
                ..Shown::refused(refusal)
            };
            return page(&c, &signed, id, shown).await;
        }
    };
    let created = c
        .service
        .create_key(
            &signed.caller,
            Some(id),
            NewKey { expires_at_unix_ms },
            now_ms(),
        )
        .await;
    match created {
        Ok(created) => {
            let shown = Shown {
                key: Some(created.api_key),
                ..Shown::default()
            };
            page(&c, &signed, id, shown).await
        }
        Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::PermissionDenied) => {
            views::failure_in(Some(signed.nav("accounts")), &e)
        }
        Err(e) => {
            let shown = Shown {
                expires,
                ..Shown::refused(refusal(&e, &["expires"]))
            };
            page(&c, &signed, id, shown).await
        }
    }
}
