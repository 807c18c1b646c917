//! Alert rules: the REST contract (validation, who may set and see a rule, the
//! secret shown once, audit entries), and the service's evaluation and deliveries
//! over a usage collector in process: a crossing fires once per threshold and
//! period, a failing receiver gets retries on the schedule until delivered, every
//! webhook signed. On SQLite and Postgres; across replicas in
//! `tests/tests/alerts.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::http::{Method, StatusCode};
use common::{App, authed, grpc};
use serde_json::{Value, json};
use switchyard_control_plane::service::AlertMemory;
use switchyard_core::alerts::{
    DEFAULT_TOLERANCE_SECS, DELIVERY_HEADER, SIGNATURE_HEADER, SignatureError, verify,
};
use switchyard_core::ids::AccountId;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::manage_service_server::ManageService;
use switchyard_tests::events::usage_event;
use switchyard_tests::webhook::{Received, WebhookReceiver};
use tonic::Code;

switchyard_tests::every_backend!(
    rules_are_validated_and_kept_to_the_tree,
    crossings_fire_once_and_failed_deliveries_are_retried,
    rules_over_grpc_are_their_rest_twins,
    unhealthy_keys_and_stuck_data_planes_fire_once,
    webhook_secrets_are_resealed_under_a_new_key,
);

fn account_id(created: &Value) -> String {
    created["account"]["id"].as_str().unwrap().to_owned()
}

/// Whether `received` is signed with `secret` (checked now).
fn signed_with(received: &Received, secret: &str) -> Result<(), SignatureError> {
    let now = switchyard_runtime::now_ms() / 1000;
    verify(
        secret.as_bytes(),
        received.header(SIGNATURE_HEADER),
        received.body.as_bytes(),
        now,
        DEFAULT_TOLERANCE_SECS,
    )
}

/// Who may set and see a rule, what a rule may say, and what its answers show.
async fn rules_are_validated_and_kept_to_the_tree(url: &str) {
    let app = App::new(url).await;
    let receiver = WebhookReceiver::start(&[]).await.unwrap();
    let (main, main_key) = app.owner("acme").await;
    let main_id = account_id(&main);
    let (status, team) = app
        .post(
            "/x-users",
            &main_key,
            json!({"name": "team", "policy": {"credit": {"limit_nanos": 1000, "period": "day"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{team}");
    let (team_id, team_key) = (account_id(&team), team["api_key"].as_str().unwrap());
    let (_, plain) = app
        .post("/x-users", &main_key, json!({"name": "no-limit"}))
        .await;
    let plain_id = account_id(&plain);
    let (_, stranger_key) = app.owner("stranger").await;

    let rule = |account: &str, kind: &str, thresholds: Value, hook: &str| json!({"account_id": account, "kind": kind, "thresholds": thresholds, "url": hook});
    // Refusals name the field; nothing is stored.
    for (key, body, want, says) in [
        (
            main_key.as_str(),
            rule(&team_id, "credit_share", json!([0]), &receiver.url),
            400,
            "out of range",
        ),
        (
            &main_key,
            rule(&team_id, "credit_share", json!([50, 101]), &receiver.url),
            400,
            "out of range",
        ),
        (
            &main_key,
            rule(&team_id, "credit_share", json!([]), &receiver.url),
            400,
            "needs 1-10",
        ),
        (
            &main_key,
            rule(
                &team_id,
                "daily_spend",
                json!([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
                &receiver.url,
            ),
            400,
            "needs 1-10",
        ),
        (
            &main_key,
            rule(&team_id, "spend", json!([1]), &receiver.url),
            400,
            "kind must be",
        ),
        (
            &main_key,
            rule(
                &team_id,
                "daily_spend",
                json!([1]),
                "ftp://hooks.example.com/x",
            ),
            400,
            "http or https",
        ),
        (
            &main_key,
            rule(
                &team_id,
                "daily_spend",
                json!([1]),
                "https://hooks.example.com/x?token=1",
            ),
            400,
            "query",
        ),
        (
            &main_key,
            rule(
                &team_id,
                "daily_spend",
                json!([1]),
                "https://user:pw@hooks.example.com/",
            ),
            400,
            "credentials",
        ),
        (
            &main_key,
            rule(&team_id, "daily_spend", json!([1]), "not a url"),
            400,
            "not a valid URL",
        ),
        (
            &main_key,
            rule(&plain_id, "credit_share", json!([80]), &receiver.url),
            422,
            "no credit limit",
        ),
        (
            &main_key,
            rule(&team_id, "provider_key_unhealthy", json!([]), &receiver.url),
            403,
            "only the owner",
        ),
        (
            team_key,
            rule(&main_id, "daily_spend", json!([1]), &receiver.url),
            404,
            "not found",
        ),
        (
            &stranger_key,
            rule(&team_id, "daily_spend", json!([1]), &receiver.url),
            404,
            "not found",
        ),
        (
            &main_key,
            json!({"kind": "data_plane_lag", "thresholds": [1], "url": receiver.url}),
            403,
            "only the operator",
        ),
        (
            &app.root,
            json!({"account_id": main_id, "kind": "data_plane_lag", "thresholds": [1], "url": receiver.url}),
            400,
            "leave out account_id",
        ),
        (
            &app.root,
            json!({"kind": "daily_spend", "thresholds": [1], "url": receiver.url}),
            400,
            "give account_id",
        ),
        (
            &main_key,
            json!({"account_id": null, "kind": "daily_spend", "thresholds": [1], "url": receiver.url}),
            400,
            "null",
        ),
    ] {
        let (status, err) = app.post("/x-alerts", key, body.clone()).await;
        assert_eq!(status.as_u16(), want, "{body}: {err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{body}: {message} should say {says}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM alert_rules").await, 0);

    // Without private upstreams allowed, a webhook must be https and public.
    let strict = App::with_upstreams(url, false).await;
    for (hook, says) in [
        ("http://hooks.example.com/x", "must use https"),
        ("https://127.0.0.1/x", "may not have"),
        ("https://localhost/x", "local or internal"),
    ] {
        let (status, err) = strict
            .post(
                "/x-alerts",
                &main_key,
                rule(&team_id, "daily_spend", json!([1]), hook),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{hook}: {err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{hook}: {message}");
    }
    let (status, public) = strict
        .post(
            "/x-alerts",
            &main_key,
            rule(
                &team_id,
                "daily_spend",
                json!([5]),
                "https://hooks.example.com/x",
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{public}");

    // A parent sets a rule on its descendant; the secret is shown this once.
    let (status, created) = app
        .post(
            "/x-alerts",
            &main_key,
            rule(
                &team_id,
                "credit_share",
                json!([100, 50, 80, 50]),
                &receiver.url,
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["thresholds"], json!([50, 80, 100]));
    assert_eq!(created["account_id"], json!(team_id));
    assert_eq!(created["created_by"], json!(main_id));
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let rule_id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/x-alerts/{rule_id}");
    // The account itself sees it, and its parent; the secret never again; a
    // stranger and the sibling's key do not.
    for key in [main_key.as_str(), team_key] {
        let (status, got) = app
            .call(Method::GET, path.clone(), key.to_owned(), None)
            .await;
        assert_eq!(status, 200, "{got}");
        assert!(got.get("secret").is_none(), "{got}");
        assert_eq!(got["id"], json!(rule_id));
    }
    let (status, listed) = app
        .call(
            Method::GET,
            format!("/x-alerts?account={team_id}"),
            main_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let (_, own) = app
        .call(Method::GET, "/x-alerts".into(), team_key.to_owned(), None)
        .await;
    assert_eq!(own.as_array().unwrap().len(), 2, "{own}");
    let (_, mains) = app
        .call(Method::GET, "/x-alerts".into(), main_key.clone(), None)
        .await;
    assert_eq!(mains, json!([]));
    for (method, p) in [
        (Method::GET, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::GET, format!("{path}/deliveries")),
        (Method::POST, format!("{path}/test")),
        (Method::GET, format!("/x-alerts?account={team_id}")),
    ] {
        let (status, err) = app
            .call(method.clone(), p.clone(), stranger_key.clone(), None)
            .await;
        assert_eq!(status, 404, "{method} {p}: {err}");
    }
    let long = "0".repeat(65);
    for query in [
        "/x-alerts?limit=0".to_owned(),
        format!("/x-alerts?after={long}"),
        format!("{path}/deliveries?before={long}"),
        format!("{path}/deliveries?before=a%01b"),
    ] {
        let (status, err) = app
            .call(Method::GET, query.clone(), main_key.clone(), None)
            .await;
        assert_eq!(status, 400, "{query}: {err}");
    }

    // The owner watches its keys; the operator watches data planes, its own rule
    // seen by no account.
    let (status, keys_rule) = app
        .post(
            "/x-alerts",
            &main_key,
            json!({"kind": "provider_key_unhealthy", "url": receiver.url}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{keys_rule}");
    assert_eq!(keys_rule["account_id"], json!(main_id));
    let (status, lag_rule) = app
        .post(
            "/x-alerts",
            &app.root,
            json!({"kind": "data_plane_lag", "thresholds": [3], "url": receiver.url}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{lag_rule}");
    assert_eq!(lag_rule["account_id"], Value::Null);
    let lag_path = format!("/x-alerts/{}", lag_rule["id"].as_str().unwrap());
    let (status, _) = app
        .call(Method::GET, lag_path.clone(), main_key.clone(), None)
        .await;
    assert_eq!(status, 404);
    let (_, operator) = app
        .call(Method::GET, "/x-alerts".into(), app.root.clone(), None)
        .await;
    assert_eq!(operator.as_array().unwrap().len(), 1, "{operator}");

    // Rule changes are audited in the owner's log, without the secret.
    let (status, audit) = app
        .call(Method::GET, "/x-audit".into(), main_key.clone(), None)
        .await;
    assert_eq!(status, 200, "{audit}");
    let created_entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "alert_rule.create" && e["target"] == json!(rule_id))
        .unwrap();
    assert_eq!(created_entry["after"]["kind"], "credit_share");
    assert!(!audit.to_string().contains("whsec_"), "{audit}");

    // Deleting takes the rule away; a second delete finds nothing.
    let (status, _) = app
        .call(Method::DELETE, path.clone(), main_key.clone(), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .call(Method::DELETE, path.clone(), main_key.clone(), None)
        .await;
    assert_eq!(status, 404);
    let (_, audit) = app
        .call(Method::GET, "/x-audit".into(), main_key.clone(), None)
        .await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "alert_rule.delete" && e["before"]["id"] == json!(rule_id)),
        "{audit}"
    );
    assert!(receiver.received().is_empty());

    // An account's rules go with it.
    let held = app.count("SELECT count(*) FROM alert_rules").await;
    let (status, _) = app
        .call(
            Method::DELETE,
            format!("/x-users/{team_id}"),
            main_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.count("SELECT count(*) FROM alert_rules").await,
        held - 1
    );
}

/// Spend crossing a rule's thresholds fires each once per period; a receiver that
/// fails twice gets the delivery again on the retry schedule, under the same
/// delivery id, and the log shows it delivered; every webhook verifies with the
/// rule's secret and no other; the test webhook arrives signed.
async fn crossings_fire_once_and_failed_deliveries_are_retried(url: &str) {
    let (app, usage, _collector) = App::with_usage(url).await;
    let receiver = WebhookReceiver::start(&[500, 500]).await.unwrap();
    let (main, main_key) = app.owner("acme").await;
    let main_id: AccountId = account_id(&main).parse().unwrap();
    let (_, team) = app
        .post(
            "/x-users",
            &main_key,
            json!({"name": "team", "policy": {"credit": {"limit_nanos": 100, "period": "month"}}}),
        )
        .await;
    let team_id: AccountId = account_id(&team).parse().unwrap();
    let (status, created) = app
        .post(
            "/x-alerts",
            &main_key,
            json!({"account_id": team_id.to_string(), "kind": "credit_share", "thresholds": [50, 80], "url": receiver.url}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let rule_id = created["id"].as_str().unwrap().to_owned();
    let service = &app.service;
    let mut memory = AlertMemory::default();
    let now = switchyard_runtime::now_ms();

    // 11 calls of 5 nanos: 55 % of the limit.
    let calls = |n: usize| -> Vec<_> {
        (0..n)
            .map(|_| usage_event(&[team_id, main_id], now))
            .collect()
    };
    usage.insert(&calls(11)).await.unwrap();
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 1);
    // Looked at again, by this evaluator or any other: nothing new.
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 0);
    let mut fresh = AlertMemory::default();
    assert_eq!(service.evaluate_alerts(&mut fresh, now).await.unwrap(), 0);

    // The receiver fails twice; each retry waits its turn, then it is delivered.
    assert_eq!(service.deliver_due_alerts(now).await.unwrap(), 1);
    let log = async || {
        let path = format!("/x-alerts/{rule_id}/deliveries");
        let (status, log) = app.call(Method::GET, path, main_key.clone(), None).await;
        assert_eq!(status, 200, "{log}");
        log
    };
    let first = log().await;
    assert_eq!(first[0]["state"], "pending", "{first}");
    assert_eq!(first[0]["attempts"], 1);
    assert_eq!(first[0]["status_code"], 500);
    assert_eq!(first[0]["next_attempt_unix_ms"], json!(now + 2_000));
    assert_eq!(service.deliver_due_alerts(now + 1_999).await.unwrap(), 0);
    assert_eq!(service.deliver_due_alerts(now + 2_000).await.unwrap(), 1);
    assert_eq!(log().await[0]["next_attempt_unix_ms"], json!(now + 6_000));
    assert_eq!(service.deliver_due_alerts(now + 6_000).await.unwrap(), 1);
    let done = log().await;
    assert_eq!(done.as_array().unwrap().len(), 1, "{done}");
    assert_eq!(done[0]["state"], "delivered", "{done}");
    assert_eq!(done[0]["attempts"], 3);
    assert_eq!(done[0]["status_code"], 200);
    assert_eq!(done[0]["next_attempt_unix_ms"], Value::Null);
    assert_eq!(service.deliver_due_alerts(now + 60_000).await.unwrap(), 0);

    let got = receiver.received();
    assert_eq!(got.len(), 3);
    let delivery = done[0]["id"].as_str().unwrap();
    for r in &got {
        assert_eq!(r.header(DELIVERY_HEADER), delivery);
        assert_eq!(r.body, got[0].body, "every attempt sends the same body");
        assert_eq!(signed_with(r, &secret), Ok(()));
        assert_eq!(
            signed_with(r, "whsec_not-the-secret"),
            Err(SignatureError::Mismatch)
        );
    }
    let event = got[0].json();
    assert_eq!(event["kind"], "credit_share");
    assert_eq!(event["rule_id"], json!(rule_id));
    assert_eq!(event["account_id"], json!(team_id.to_string()));
    assert_eq!(
        (event["threshold"].clone(), event["value"].clone()),
        (json!(50), json!(55))
    );
    assert_eq!(
        event["period"],
        json!(switchyard_core::time::UtcDay::of_unix_ms(now).month_text())
    );

    // Past 80 %: the next threshold, once.
    usage.insert(&calls(6)).await.unwrap();
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 1);
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 0);
    assert_eq!(service.deliver_due_alerts(now).await.unwrap(), 1);
    let got = receiver.received();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].json()["threshold"], 80);
    assert_eq!(got[3].json()["value"], 85);

    // The test webhook: sent at once, signed, answered, logged.
    let (status, test) = app
        .call(
            Method::POST,
            format!("/x-alerts/{rule_id}/test"),
            main_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["delivered"], true);
    assert_eq!(test["status_code"], 200);
    let got = receiver.received();
    let sent = got.last().unwrap();
    assert_eq!(sent.json()["kind"], "test");
    assert_eq!(sent.header(DELIVERY_HEADER), test["delivery_id"]);
    assert_eq!(signed_with(sent, &secret), Ok(()));
    let logged = log().await;
    assert_eq!(logged.as_array().unwrap().len(), 3, "{logged}");
    assert_eq!(logged[0]["firing_id"], Value::Null);

    // A receiver that is not there: the test says so; the log keeps the reason.
    let gone = {
        let r = WebhookReceiver::start(&[]).await.unwrap();
        r.url.clone()
    };
    let (_, unreachable) = app
        .post(
            "/x-alerts",
            &main_key,
            json!({"account_id": team_id.to_string(), "kind": "daily_spend", "thresholds": [1000], "url": gone}),
        )
        .await;
    let (status, test) = app
        .call(
            Method::POST,
            format!("/x-alerts/{}/test", unreachable["id"].as_str().unwrap()),
            main_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["delivered"], false);
    assert_eq!(test["status_code"], Value::Null);
    assert!(test["error"].as_str().unwrap().len() > 5, "{test}");
}

/// The Manage service's alert calls are the REST calls: the same checks, the same
/// rule seen both ways, the test webhook signed.
async fn rules_over_grpc_are_their_rest_twins(url: &str) {
    let app = App::new(url).await;
    let manage = grpc(&app);
    let receiver = WebhookReceiver::start(&[]).await.unwrap();
    let (main, main_key) = app.owner("acme").await;
    let (_, stranger_key) = app.owner("stranger").await;
    let create = |kind: &str, thresholds: Vec<u64>| pb::CreateAlertRuleRequest {
        account_id: String::new(),
        kind: kind.to_owned(),
        thresholds,
        url: receiver.url.clone(),
    };
    let refused = manage
        .create_alert_rule(authed(&main_key, create("daily_spend", vec![0])))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("out of range"), "{refused:?}");
    let refused = manage
        .create_alert_rule(authed(&main_key, create("data_plane_lag", vec![2])))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let created = manage
        .create_alert_rule(authed(&main_key, create("daily_spend", vec![7, 3])))
        .await
        .unwrap()
        .into_inner();
    let rule = created.rule.unwrap();
    assert!(created.secret.starts_with("whsec_"));
    assert_eq!(rule.thresholds, [3, 7]);
    assert_eq!(rule.account_id, account_id(&main));
    let (status, rest) = app
        .call(
            Method::GET,
            format!("/x-alerts/{}", rule.id),
            main_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["thresholds"], json!([3, 7]));
    let listed = manage
        .list_alert_rules(authed(&main_key, pb::ListAlertRulesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.rules, std::slice::from_ref(&rule));
    let by_id = pb::AlertRuleRequest {
        id: rule.id.clone(),
    };
    let hidden = manage
        .get_alert_rule(authed(&stranger_key, by_id.clone()))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let bad = manage
        .get_alert_rule(authed(&main_key, pb::AlertRuleRequest { id: "x".into() }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    let sent = manage
        .test_alert_rule(authed(&main_key, by_id.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(sent.delivered, "{sent:?}");
    assert_eq!(sent.status_code, Some(200));
    assert_eq!(
        signed_with(&receiver.received()[0], &created.secret),
        Ok(())
    );
    let log = manage
        .list_alert_deliveries(authed(
            &main_key,
            pb::ListAlertDeliveriesRequest {
                id: rule.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(log.deliveries.len(), 1);
    assert_eq!(log.deliveries[0].id, sent.delivery_id);
    assert_eq!(log.deliveries[0].state, "delivered");
    assert_eq!(log.deliveries[0].firing_id, "");

    manage
        .delete_alert_rule(authed(&main_key, by_id.clone()))
        .await
        .unwrap();
    let gone = manage
        .get_alert_rule(authed(&main_key, by_id))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

/// An unhealthy provider key fires its owner's rule once per key and day; a data
/// plane fires the operator's rule once it is seen behind at the same version twice,
/// and once per version it is stuck at.
async fn unhealthy_keys_and_stuck_data_planes_fire_once(url: &str) {
    use switchyard_control_plane::store::KeyHealthReport;

    let app = App::new(url).await;
    let service = &app.service;
    let receiver = WebhookReceiver::start(&[]).await.unwrap();
    let (_, main_key) = app.owner("acme").await;
    let (status, keys) = app
        .call(Method::GET, "/x-keys".into(), main_key.clone(), None)
        .await;
    assert_eq!(status, 200, "{keys}");
    let key_id = keys[0]["id"].as_str().unwrap().to_owned();
    let (status, health_rule) = app
        .post(
            "/x-alerts",
            &main_key,
            json!({"kind": "provider_key_unhealthy", "url": receiver.url}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{health_rule}");
    let (status, lag_rule) = app
        .post(
            "/x-alerts",
            &app.root,
            json!({"kind": "data_plane_lag", "thresholds": [2], "url": receiver.url}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{lag_rule}");
    let mut memory = AlertMemory::default();
    let now = switchyard_runtime::now_ms();

    // Healthy keys, no data plane: nothing.
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 0);
    service
        .store()
        .record_key_health(&[KeyHealthReport {
            id: key_id.parse().unwrap(),
            health: "unhealthy",
            until_ms: None,
        }])
        .await
        .unwrap();
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 1);
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 0);

    // A data plane 3 versions behind: not at the first look, at the second, once.
    let publisher = service.publisher();
    let newest = publisher.committed_revision();
    assert!(newest > 3);
    publisher
        .record_replica("dp-slow", |s| s.applied_version = newest - 3)
        .await;
    publisher
        .record_replica("dp-fine", |s| s.applied_version = newest)
        .await;
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 0);
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 1);
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 0);
    // It moves on and is stuck again at a newer version: a new crossing.
    publisher
        .record_replica("dp-slow", |s| s.applied_version = newest - 2)
        .await;
    publisher.changed(newest + 1);
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 0);
    assert_eq!(service.evaluate_alerts(&mut memory, now).await.unwrap(), 1);

    assert_eq!(service.deliver_due_alerts(now).await.unwrap(), 3);
    let mut got: Vec<(Value, Value, Value)> = receiver
        .received()
        .iter()
        .map(|r| {
            let e = r.json();
            (e["kind"].clone(), e["subject"].clone(), e["period"].clone())
        })
        .collect();
    got.sort_by_key(|g| g.2.to_string());
    let today = switchyard_core::time::UtcDay::of_unix_ms(now).to_string();
    assert_eq!(
        got,
        [
            (json!("provider_key_unhealthy"), json!(key_id), json!(today)),
            (
                json!("data_plane_lag"),
                json!("dp-slow"),
                json!(format!("v{}", newest - 3))
            ),
            (
                json!("data_plane_lag"),
                json!("dp-slow"),
                json!(format!("v{}", newest - 2))
            ),
        ]
    );
}

/// A key-encryption-key rotation re-seals webhook secrets too, under the rule's id;
/// a keyring lacking the old key reports them failed and changes nothing.
async fn webhook_secrets_are_resealed_under_a_new_key(url: &str) {
    use switchyard_control_plane::reseal::reseal_all;
    use switchyard_control_plane::store::{AlertRuleRecord, AuditEntry, Store};
    use switchyard_core::alerts::AlertKind;
    use switchyard_core::crypto::Keyring;

    let store = Store::open(url).await.unwrap();
    let old = Keyring::generate_spec("k1");
    let new = Keyring::generate_spec("k2");
    let ring_old = Keyring::parse(&old).unwrap();
    let ring_both = Keyring::parse(&format!("{},{}", new.as_str(), old.as_str())).unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let rule = AlertRuleRecord {
        id: id.clone(),
        account_id: None,
        kind: AlertKind::DataPlaneLag,
        thresholds: vec![1],
        url: "https://hooks.example.com/x".into(),
        secret: ring_old.seal(b"whsec_kept", id.as_bytes()).unwrap(),
        created_by: "root".into(),
        created_at_ms: 1,
    };
    let audit = AuditEntry {
        at_ms: 1,
        actor: "root".into(),
        owner: None,
        action: "alert_rule.create",
        target: id.clone(),
        before: None,
        after: None,
    };
    store.add_alert_rule(&rule, &audit).await.unwrap();

    let stranger = Keyring::parse(&Keyring::generate_spec("k3")).unwrap();
    let failed = reseal_all(&store, &stranger, 2).await.unwrap();
    assert_eq!(failed.failed.len(), 1);
    assert_eq!(failed.failed[0].0, id);
    let report = reseal_all(&store, &ring_both, 3).await.unwrap();
    assert_eq!(report.webhook_secrets_resealed, 1);
    assert!(report.failed.is_empty());
    let stored = store.alert_rule(&id).await.unwrap().unwrap();
    assert_eq!(stored.secret.key_id, "k2");
    assert_eq!(
        &ring_both.open(&stored.secret, id.as_bytes()).unwrap()[..],
        b"whsec_kept"
    );
    assert_eq!(
        reseal_all(&store, &ring_both, 4)
            .await
            .unwrap()
            .webhook_secrets_resealed,
        0
    );
}
