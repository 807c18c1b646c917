//! The REST contract of usage views and billing: which bills (`/x-bill`) a caller
//! may ask for and with what query, and who sets an account's billing. On SQLite
//! and Postgres, in process, mostly with no collector: those refusals are decided
//! before one is asked. Bills per label run over a collector in process (its store
//! fed directly); bills and logs over real calls are in `tests/tests/e2e.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::http::{Method, StatusCode};
use common::App;
use serde_json::{Value, json};
use switchyard_core::ids::AccountId;
use switchyard_core::usage::UsageEvent;
use switchyard_tests::events::usage_event;

switchyard_tests::every_backend!(
    bills_are_asked_within_the_tree,
    bad_bill_queries_get_clear_errors,
    resellers_set_their_customers_billing,
    bills_by_label_keep_to_the_subtree,
    bills_per_child_sum_each_subtree,
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
    // Each refusal names the parameter it is about (`param`, as OpenAI's errors
    // do) where there is one.
    for (q, param) in [
        ("from=yesterday", json!("from")),
        ("granularity=hour", json!("granularity")),
        ("from=2026-02-30", json!("from")),
        ("to=2026-02-30", json!("to")),
        ("from=2026-05-01&to=2026-04-01", json!("from")),
        ("by=users", json!("by")),
        ("account=nope", json!("account")),
        (
            "by=endpoint&account=0190a000-0000-7000-8000-000000000000",
            json!("account"),
        ),
        ("bogus=1", Value::Null),
    ] {
        let answer = app
            .send(Method::GET, &format!("/x-bill?{q}"), &main_key, None)
            .await;
        assert_eq!(answer.1["error"]["param"], param, "{q}: {}", answer.1);
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
    // Refused, naming the field within the body.
    let (status, v) = patch(
        format!("/x-users/{customer_id}"),
        &reseller_key,
        json!({"billing": {"multiplier_ppm": 5_000_000_000u64}}),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["param"]),
        (400, &json!("billing.multiplier_ppm"))
    );
    let (status, v) = patch(
        format!("/x-users/{customer_id}"),
        &reseller_key,
        json!({"billing": {"markup": 2}}),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["param"]),
        (400, &json!("billing")),
        "{v}"
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

/// A call of `chain[0]` now, carrying the labels given.
fn labelled_call(
    chain: &[AccountId],
    user: Option<&str>,
    session: Option<&str>,
    tag: Option<&str>,
) -> UsageEvent {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    UsageEvent {
        session: session.map(str::to_owned),
        end_user: user.map(str::to_owned),
        tag: tag.map(str::to_owned),
        ..usage_event(chain, now.try_into().unwrap())
    }
}

/// Bills per end user, session and tag: each caller sees the labels of its own
/// subtree's calls, summed over its accounts; calls without one count under "".
async fn bills_by_label_keep_to_the_subtree(url: &str) {
    let (app, usage, _stop) = App::with_usage(url).await;
    let (main, main_key) = app.owner("acme").await;
    let id = |v: &Value| -> AccountId { v["account"]["id"].as_str().unwrap().parse().unwrap() };
    let main_id = id(&main);
    let (status, team) = app
        .post("/x-users", &main_key, json!({"name": "team-a"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{team}");
    let (_, other) = app
        .post("/x-users", &main_key, json!({"name": "team-b"}))
        .await;
    let (team_id, team_key) = (id(&team), team["api_key"].as_str().unwrap().to_owned());
    let other_id = id(&other);
    usage
        .insert(&[
            labelled_call(&[main_id], Some("ada"), Some("s-main"), Some("ops")),
            labelled_call(
                &[team_id, main_id],
                Some("bob"),
                Some("s-team"),
                Some("build"),
            ),
            labelled_call(&[team_id, main_id], Some("bob"), None, None),
            labelled_call(&[team_id, main_id], None, None, Some("build")),
            labelled_call(&[other_id, main_id], Some("carol"), None, Some("ops")),
        ])
        .await
        .unwrap();
    let bill = |query: &str, key: &str| {
        let call = app.call(
            Method::GET,
            format!("/x-bill?{query}"),
            key.to_owned(),
            None,
        );
        let query = query.to_owned();
        async move {
            let (status, v) = call.await;
            assert_eq!(status, 200, "{query}: {v}");
            let mut rows: Vec<(String, u64)> = v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    assert!(r.get("account_id").is_none() && r.get("folded").is_none());
                    (
                        r["label"].as_str().unwrap().to_owned(),
                        r["requests"].as_u64().unwrap(),
                    )
                })
                .collect();
            rows.sort();
            (v["by"].clone(), rows)
        }
    };
    let rows = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
        pairs.iter().map(|(l, n)| ((*l).to_owned(), *n)).collect()
    };
    // The owner sees its whole tree.
    assert_eq!(
        bill("by=user", &main_key).await,
        (
            json!("user"),
            rows(&[("", 1), ("ada", 1), ("bob", 2), ("carol", 1)])
        )
    );
    assert_eq!(
        bill("by=tag&granularity=month", &main_key).await.1,
        rows(&[("", 1), ("build", 2), ("ops", 2)])
    );
    // A sub-account sees its own calls' labels only, never its siblings' or parent's.
    assert_eq!(
        bill("by=user", &team_key).await.1,
        rows(&[("", 1), ("bob", 2)])
    );
    assert_eq!(
        bill("by=session", &team_key).await,
        (json!("session"), rows(&[("", 2), ("s-team", 1)]))
    );
    assert_eq!(
        bill("by=tag", &team_key).await.1,
        rows(&[("", 1), ("build", 2)])
    );
    // The owner may ask for one subtree.
    assert_eq!(
        bill(&format!("by=user&account={other_id}"), &main_key)
            .await
            .1,
        rows(&[("carol", 1)])
    );
    let (status, _) = app
        .call(
            Method::GET,
            format!("/x-bill?by=user&account={main_id}"),
            team_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 404);
    // An unknown grouping is refused as before, naming every one there is.
    let (status, v) = app
        .call(
            Method::GET,
            "/x-bill?by=users".into(),
            main_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"]["message"],
        "by must be \"account\", \"child\", \"provider_key\", \"endpoint\", \"user\", \"session\" or \"tag\", not \"users\""
    );
    // The logs filter by end user and tag, within the caller's subtree.
    let logs = |query: &str, key: &str| {
        let call = app.call(
            Method::GET,
            format!("/dashboard/logs?{query}"),
            key.to_owned(),
            None,
        );
        async move {
            let (status, v) = call.await;
            (status, v["events"].as_array().map_or(0, Vec::len), v)
        }
    };
    assert_eq!(logs("user=bob", &team_key).await.1, 2);
    assert_eq!(logs("user=ada", &team_key).await.1, 0);
    assert_eq!(logs("tag=ops", &main_key).await.1, 2);
    let (_, _, page) = logs("user=bob&tag=build", &main_key).await;
    assert_eq!(page["events"][0]["user"], "bob");
    assert_eq!(page["events"][0]["tag"], "build");
    for bad in ["tag=a%20b", "user=a%0Ab", "tag="] {
        let (status, _, v) = logs(bad, &main_key).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"]["message"].is_string());
    }
}

/// Bills per direct child: each child's whole subtree in one row beside the asked
/// account's own calls, for the owner, one of its subtrees, a sub-account and the
/// operator (a row per main account); one model alone when asked.
async fn bills_per_child_sum_each_subtree(url: &str) {
    let (app, usage, _stop) = App::with_usage(url).await;
    let (main, main_key) = app.owner("acme").await;
    let id = |v: &Value| -> AccountId { v["account"]["id"].as_str().unwrap().parse().unwrap() };
    let main_id = id(&main);
    // A child of the account whose key asks.
    let app = &app;
    let child = |parent_key: String, name: &'static str| async move {
        let (status, created) = app
            .post("/x-users", &parent_key, json!({"name": name}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        (
            id(&created),
            created["api_key"].as_str().unwrap().to_owned(),
        )
    };
    let (team, team_key) = child(main_key.clone(), "team-a").await;
    let (other, _) = child(main_key.clone(), "team-b").await;
    let (project, project_key) = child(team_key.clone(), "project").await;
    let (service, _) = child(project_key, "service").await;
    let call = |chain: &[AccountId], model: &str| UsageEvent {
        model_served: model.into(),
        ..labelled_call(chain, None, None, None)
    };
    usage
        .insert(&[
            call(&[main_id], "m"),
            call(&[team, main_id], "m"),
            call(&[project, team, main_id], "m"),
            call(&[service, project, team, main_id], "m"),
            call(&[service, project, team, main_id], "x"),
            call(&[other, main_id], "m"),
        ])
        .await
        .unwrap();
    let bill = |query: String, key: String| {
        let call = app.call(Method::GET, format!("/x-bill?{query}"), key, None);
        async move {
            let (status, v) = call.await;
            assert_eq!(status, 200, "{query}: {v}");
            assert_eq!(v["by"], "child");
            let mut rows: Vec<(String, String, u64)> = v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["account_id"].as_str().unwrap().to_owned(),
                        r["model"].as_str().unwrap().to_owned(),
                        r["requests"].as_u64().unwrap(),
                    )
                })
                .collect();
            rows.sort();
            rows
        }
    };
    let want = |rows: &[(AccountId, &str, u64)]| {
        let mut rows: Vec<(String, String, u64)> = rows
            .iter()
            .map(|(a, m, n)| (a.to_string(), (*m).to_owned(), *n))
            .collect();
        rows.sort();
        rows
    };
    let month = "by=child&granularity=month";
    assert_eq!(
        bill(month.into(), main_key.clone()).await,
        want(&[
            (main_id, "m", 1),
            (team, "m", 3),
            (team, "x", 1),
            (other, "m", 1)
        ])
    );
    assert_eq!(
        bill(format!("{month}&account={team}"), main_key.clone()).await,
        want(&[(team, "m", 1), (project, "m", 2), (project, "x", 1)])
    );
    assert_eq!(
        bill(month.into(), team_key.clone()).await,
        want(&[(team, "m", 1), (project, "m", 2), (project, "x", 1)])
    );
    // One model: a condition of the collector's statement, in every grouping.
    assert_eq!(
        bill(format!("{month}&model=x"), main_key.clone()).await,
        want(&[(team, "x", 1)])
    );
    let (status, v) = app
        .call(
            Method::GET,
            "/x-bill?granularity=month&model=x".into(),
            main_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"].as_array().unwrap().len(), 1);
    assert_eq!(v["rows"][0]["account_id"], service.to_string());
    // The operator without an account: a row per main account's tree.
    assert_eq!(
        bill(format!("{month}&model=m"), app.root.clone()).await,
        want(&[(main_id, "m", 5)])
    );
    // A sibling's subtree stays out of reach.
    let (status, _) = app
        .call(
            Method::GET,
            format!("/x-bill?by=child&account={other}"),
            team_key,
            None,
        )
        .await;
    assert_eq!(status, 404);
}
