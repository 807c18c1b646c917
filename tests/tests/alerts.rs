//! Alerts through the real binaries: two control-plane replicas over one Postgres
//! and one etcd, both evaluating every second, and a data plane whose calls spend
//! an account's credit. A crossing reaches the receiver once, signed with the rule's
//! secret (and not with another); a receiver that fails twice gets the delivery
//! again, under the same delivery id, until the log shows it delivered; the test
//! webhook arrives signed.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchyard_core::alerts::{
    DEFAULT_TOLERANCE_SECS, DELIVERY_HEADER, SIGNATURE_HEADER, SignatureError, verify,
};
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::procs::Proc;
use switchyard_tests::system::{Replicated, chat, rest};
use switchyard_tests::wait;
use switchyard_tests::webhook::{Received, WebhookReceiver};

/// Long enough for a cluster on a busy machine: a few evaluation rounds and the
/// retry schedule's first two waits (2 s, 4 s).
const PATIENCE: Duration = Duration::from_secs(60);

struct Cluster {
    controls: Vec<Proc>,
    data: Proc,
    http: reqwest::Client,
    shared: Replicated,
}

impl Cluster {
    async fn start() -> Self {
        let shared = Replicated::start();
        let controls: Vec<Proc> = ["cp-a", "cp-b"]
            .into_iter()
            .map(|name| {
                shared.control_plane(name, "/alerts-test/", &["--alert-evaluate-seconds", "1"])
            })
            .collect();
        let urls = format!("{},{}", controls[0].url("grpc"), controls[1].url("grpc"));
        let data = shared.data_plane(&urls, "dp-0");
        Self {
            controls,
            data,
            http: reqwest::Client::new(),
            shared,
        }
    }

    /// A REST call to control-plane replica `cp`.
    async fn call(
        &self,
        cp: usize,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.controls[cp].url("http"));
        rest(&self.http, method, &url, key, body).await
    }

    async fn created(&self, cp: usize, path: &str, key: &str, body: Value) -> Value {
        let (status, created) = self.call(cp, Method::POST, path, key, Some(body)).await;
        assert_eq!(status, 201, "{path}: {created}");
        created
    }

    /// A chat call through the data plane: its status.
    async fn chat(&self, key: &str) -> u16 {
        self.http
            .post(format!("{}/v1/chat/completions", self.data.url("http")))
            .bearer_auth(key)
            .json(&chat("spend a little", false))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// A rule's delivery log, newest first, read through replica `cp`.
    async fn deliveries(&self, cp: usize, rule: &str, key: &str) -> Vec<Value> {
        let path = format!("/x-alerts/{rule}/deliveries");
        let (status, log) = self.call(cp, Method::GET, &path, key, None).await;
        assert_eq!(status, 200, "{log}");
        log.as_array().unwrap().clone()
    }

    fn logs(&self) -> String {
        self.controls
            .iter()
            .map(Proc::log_tail)
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

fn signed_with(received: &Received, secret: &str) -> Result<(), SignatureError> {
    verify(
        secret.as_bytes(),
        received.header(SIGNATURE_HEADER),
        received.body.as_bytes(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .try_into()
            .unwrap(),
        DEFAULT_TOLERANCE_SECS,
    )
}

/// The webhooks `receiver` got for `rule`.
fn for_rule(receiver: &WebhookReceiver, rule: &str) -> Vec<Received> {
    receiver
        .received()
        .into_iter()
        .filter(|r| r.json()["rule_id"] == rule)
        .collect()
}

#[tokio::test]
async fn alerts_fire_once_across_replicas_signed_and_retried() {
    let cluster = Cluster::start().await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let root = cluster.shared.root.clone();

    // An owner whose every call costs 1,000 nano-dollars, and a team with 10,000 a
    // month.
    let owner = cluster
        .created(0, "/x-users", &root, json!({"name": "acme"}))
        .await;
    let owner_key = owner["api_key"].as_str().unwrap().to_owned();
    cluster
        .created(
            0,
            "/x-keys",
            &owner_key,
            json!({"provider": "openai", "base_url": fake.base_url(), "secret": "sk-abc-123456789", "models": ["*"]}),
        )
        .await;
    let (status, body) = cluster
        .call(
            0,
            Method::PUT,
            "/x-conf",
            &owner_key,
            Some(json!({"pricing": {"*": {
                "input_per_million_nanos": 0,
                "cached_input_per_million_nanos": 0,
                "output_per_million_nanos": 0,
                "per_request_nanos": 1_000
            }}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let team = cluster
        .created(
            0,
            "/x-users",
            &owner_key,
            json!({"name": "team", "policy": {"credit": {"limit_nanos": 10_000, "period": "month"}}}),
        )
        .await;
    let team_id = team["account"]["id"].as_str().unwrap().to_owned();
    let team_key = team["api_key"].as_str().unwrap().to_owned();

    // The rule is written through the other replica.
    let receiver = WebhookReceiver::start(&[]).await.unwrap();
    let rule = cluster
        .created(
            1,
            "/x-alerts",
            &owner_key,
            json!({"account_id": team_id, "kind": "credit_share", "thresholds": [50, 80], "url": receiver.url}),
        )
        .await;
    let rule_id = rule["id"].as_str().unwrap().to_owned();
    let secret = rule["secret"].as_str().unwrap().to_owned();

    // Five calls: half the credit.
    wait::until_ok(
        PATIENCE,
        "the team's key to reach the data plane",
        async || match cluster.chat(&team_key).await {
            200 => Ok(()),
            other => Err(format!("{other}\n{}", cluster.data.log_tail())),
        },
    )
    .await;
    for _ in 0..4 {
        assert_eq!(cluster.chat(&team_key).await, 200);
    }
    let first = wait::until_ok(PATIENCE, "the 50 % alert", async || {
        let got = for_rule(&receiver, &rule_id);
        got.first().cloned().ok_or_else(|| cluster.logs())
    })
    .await;
    let event = first.json();
    assert_eq!(event["kind"], "credit_share");
    assert_eq!(event["account_id"], json!(team_id));
    assert_eq!(
        (event["threshold"].clone(), event["value"].clone()),
        (json!(50), json!(50))
    );
    assert_eq!(signed_with(&first, &secret), Ok(()));
    assert_eq!(
        signed_with(&first, "whsec_0000"),
        Err(SignatureError::Mismatch)
    );
    assert!(!first.header(DELIVERY_HEADER).is_empty());

    // Three more calls: 80 %. Its alert comes after every round of both replicas
    // that could have repeated the first; the first came once all the same.
    for _ in 0..3 {
        assert_eq!(cluster.chat(&team_key).await, 200);
    }
    wait::until_ok(PATIENCE, "the 80 % alert", async || {
        let got = for_rule(&receiver, &rule_id);
        if got.iter().any(|r| r.json()["threshold"] == 80) {
            Ok(())
        } else {
            Err(format!("{} webhooks\n{}", got.len(), cluster.logs()))
        }
    })
    .await;
    let thresholds: Vec<Value> = for_rule(&receiver, &rule_id)
        .iter()
        .map(|r| r.json()["threshold"].clone())
        .collect();
    assert_eq!(thresholds, [json!(50), json!(80)]);
    let log = cluster.deliveries(0, &rule_id, &owner_key).await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log.iter()
            .all(|d| d["state"] == "delivered" && d["attempts"] == 1)
    );

    // A receiver that fails twice: retried on the schedule, then delivered, every
    // attempt under the same delivery id.
    let failing = WebhookReceiver::start(&[500, 500]).await.unwrap();
    let daily = cluster
        .created(
            0,
            "/x-alerts",
            &owner_key,
            json!({"account_id": team_id, "kind": "daily_spend", "thresholds": [1_000], "url": failing.url}),
        )
        .await;
    let daily_id = daily["id"].as_str().unwrap().to_owned();
    let delivered = wait::until_ok(PATIENCE, "the retried delivery", async || {
        let log = cluster.deliveries(1, &daily_id, &owner_key).await;
        match log.first() {
            Some(d) if d["state"] == "delivered" => Ok(d.clone()),
            other => Err(format!("{other:?}\n{}", cluster.logs())),
        }
    })
    .await;
    assert_eq!(delivered["attempts"], 3, "{delivered}");
    assert_eq!(delivered["status_code"], 200);
    let attempts = failing.received();
    assert_eq!(attempts.len(), 3);
    for a in &attempts {
        assert_eq!(a.header(DELIVERY_HEADER), delivered["id"]);
        assert_eq!(signed_with(a, daily["secret"].as_str().unwrap()), Ok(()));
    }
    assert_eq!(attempts[0].json()["kind"], "daily_spend");
    assert_eq!(attempts[0].json()["value"], 8_000);

    // The test webhook, asked of either replica, arrives signed.
    let (status, test) = cluster
        .call(
            1,
            Method::POST,
            &format!("/x-alerts/{rule_id}/test"),
            &owner_key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(
        (test["delivered"].clone(), test["status_code"].clone()),
        (json!(true), json!(200))
    );
    let got = receiver.received();
    let sent = got.last().unwrap();
    assert_eq!(sent.json()["kind"], "test");
    assert_eq!(sent.header(DELIVERY_HEADER), test["delivery_id"]);
    assert_eq!(signed_with(sent, &secret), Ok(()));
    assert_eq!(
        signed_with(sent, daily["secret"].as_str().unwrap()),
        Err(SignatureError::Mismatch)
    );
}

/// The command line over `switchyard up`: a rule created (its secret printed once),
/// listed, tested (the receiver gets a signed event), its deliveries read, deleted;
/// a bad threshold is the command line's usage error.
// Two workers: the command line blocks one while the receiver answers on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_manages_alert_rules() {
    let receiver = WebhookReceiver::start(&[]).await.unwrap();
    let site = switchyard_tests::cli::Site::start();
    let acme = site.main_account("acme");
    let created = site
        .run(&[
            "alerts",
            "create",
            "--kind",
            "daily_spend",
            "--threshold",
            "0.50",
            "--webhook",
            &receiver.url,
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(created["account_id"], json!(acme));
    assert_eq!(created["thresholds"], json!([500_000_000]));
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let table = site.run(&["alerts", "list"]).ok().stdout;
    assert!(
        table.contains(&id) && table.contains("daily_spend"),
        "{table}"
    );

    let test = site.run(&["alerts", "test", &id, "-o", "json"]).ok().json();
    assert_eq!(test["delivered"], true, "{test}");
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["kind"], "test");
    assert_eq!(signed_with(&got[0], &secret), Ok(()));
    let log = site
        .run(&["alerts", "deliveries", &id, "-o", "json"])
        .ok()
        .json();
    assert_eq!(log[0]["id"], test["delivery_id"]);
    assert_eq!(log[0]["state"], "delivered");

    // A threshold the command line cannot read is its usage error (2); one the
    // server refuses is the server's message.
    for (threshold, code, says) in [("half", 2, "whole number"), ("101", 1, "out of range")] {
        let refused = site.run(&[
            "alerts",
            "create",
            "--kind",
            "credit_share",
            "--threshold",
            threshold,
            "--webhook",
            &receiver.url,
        ]);
        assert_eq!(refused.code, code, "{}", refused.stderr);
        assert!(refused.stderr.contains(says), "{}", refused.stderr);
    }

    site.run(&["alerts", "delete", &id]).ok();
    let left = site.run(&["alerts", "list", "-o", "json"]).ok().json();
    assert_eq!(left, json!([]));
}
