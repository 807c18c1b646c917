//! The REST contract of usage views and billing: which bills (`/x-bill`) a caller
//! may ask for and with what query, and who sets an account's billing. On SQLite
//! and Postgres, in process, with no collector: every refusal here is decided
//! before one is asked. Bills and logs over real usage are in `tests/tests/e2e.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::http::{Method, StatusCode};
use common::App;
use serde_json::{Value, json};

switchyard_tests::every_backend!(
    bills_are_asked_within_the_tree,
    bad_bill_queries_get_clear_errors,
    resellers_set_their_customers_billing,
);

/// A bill covers one account's subtree within the caller's tree; per provider key
/// only for the owner of the keys and its whole tree.
async fn bills_are_asked_within_the_tree(url: &str) {
    let app = App::new(url).await;
    let (main, main_key) = app.owner("acme").await;
    let main_id = main["account"]["id"].as_str().unwrap().to_owned();
    let (status, child) = app
        .post("/x-users", &main_key, json!({"name": "team-a"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{child}");
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let child_id = child["account"]["id"].as_str().unwrap().to_owned();
    let rows = |path: String, key: String| {
        let call = app.call(Method::GET, path, key, None);
        async move {
            let (status, v) = call.await;
            (status, v["rows"].as_array().map_or(0, Vec::len))
        }
    };
    assert_eq!(
        rows(format!("/x-bill?account={main_id}"), child_key.clone())
            .await
            .0,
        404
    );
    assert_eq!(
        rows("/x-bill?account=nope".into(), main_key.clone())
            .await
            .0,
        400
    );
    assert_eq!(
        rows("/x-bill?by=provider_key".into(), child_key.clone())
            .await
            .0,
        403
    );
    for bad in [
        "by=key",
        format!("by=provider_key&account={child_id}").as_str(),
    ] {
        assert_eq!(
            rows(format!("/x-bill?{bad}"), main_key.clone()).await.0,
            400
        );
    }
}

/// Malformed bill queries get a clear error in the API's shape.
async fn bad_bill_queries_get_clear_errors(url: &str) {
    let app = App::new(url).await;
    let (_, main_key) = app.owner("acme").await;
    let expect_error = |(status, v): (StatusCode, Value), want: u16| {
        assert_eq!(status.as_u16(), want);
        let message = v["error"]["message"].as_str().unwrap().to_owned();
        assert!(!message.is_empty());
        message
    };
    for q in [
        "from=yesterday",
        "granularity=hour",
        "from=2026-02-30",
        "from=2026-05-01&to=2026-04-01",
        "bogus=1",
    ] {
        let answer = app
            .send(Method::GET, &format!("/x-bill?{q}"), &main_key, None)
            .await;
        expect_error(answer, 400);
    }
}

/// A reseller sets what its customers are billed; only the direct parent sets an
/// account's billing, and bad billing is refused.
async fn resellers_set_their_customers_billing(url: &str) {
    let app = App::new(url).await;
    let (_, main_key) = app.owner("acme").await;
    // The owner's price: 1,000 nano-dollars per input token, 2,000 per output token.
    let (status, _) = app
        .call(
            Method::PUT,
            "/x-config/pricing?key=gpt*".into(),
            main_key.clone(),
            Some(json!({"input_per_million_nanos": 1_000_000_000u64, "output_per_million_nanos": 2_000_000_000u64})),
        )
        .await;
    assert_eq!(status, 200);
    // The reseller is billed the cost plus 50%; it bills its customer a flat price per request.
    let (status, reseller) = app
        .post(
            "/x-users",
            &main_key,
            json!({"name": "reseller", "billing": {"multiplier_ppm": 1_500_000}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reseller}");
    let reseller_key = reseller["api_key"].as_str().unwrap().to_owned();
    let (status, customer) = app
        .post(
            "/x-users",
            &reseller_key,
            json!({"name": "customer", "billing": {"prices": {"gpt*": {"per_request_nanos": 1_000_000}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{customer}");
    let customer_id = customer["account"]["id"].as_str().unwrap().to_owned();

    // Only the direct parent sets billing; bad billing is refused.
    let patch = |path: String, key: &str, body: Value| {
        app.call(Method::PATCH, path, key.to_owned(), Some(body))
    };
    assert_eq!(
        patch(
            format!("/x-users/{customer_id}"),
            &main_key,
            json!({"billing": {}})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        patch(
            format!("/x-users/{customer_id}"),
            &reseller_key,
            json!({"billing": {"multiplier_ppm": 5_000_000_000u64}})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        patch(
            format!("/x-users/{customer_id}"),
            &reseller_key,
            json!({"billing": {"markup": 2}})
        )
        .await
        .0,
        400
    );
    let (_, info) = app
        .call(
            Method::GET,
            format!("/x-info?id={customer_id}"),
            reseller_key.clone(),
            None,
        )
        .await;
    assert_eq!(
        info["billing"]["prices"]["gpt*"]["per_request_nanos"],
        1_000_000
    );
}
