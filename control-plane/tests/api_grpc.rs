//! The Admin and Manage faces over gRPC, with the REST face's validation and
//! refusals: the server's handlers called in process, without a socket, on SQLite
//! and Postgres. What needs a data plane or the collector (calls, bills over real
//! usage, logs, status) is in `tests/tests/e2e.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::http::Method;
use common::{App, UPSTREAM, authed, grpc};
use serde_json::json;
use switchyard_core::apikey;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::admin_service_server::AdminService;
use switchyard_proto::v1::manage_service_server::ManageService;
use tonic::Code;

switchyard_tests::every_backend!(grpc_manage_face_matches_rest, grpc_admin_face_matches_rest);

/// The Manage face over gRPC runs the same operations with the same authorisation
/// as REST.
async fn grpc_manage_face_matches_rest(url: &str) {
    let app = App::new(url).await;
    let manage = grpc(&app);
    let admin = grpc(&app);

    let created = manage
        .create_account(authed(&app.root, new_account("grpc-co", None)))
        .await
        .unwrap()
        .into_inner();
    let key = created.api_key.clone();
    assert!(apikey::is_well_formed(&key));
    let main_account = created.account.clone().unwrap();
    assert!(main_account.parent_id.is_empty());

    let add = |models: Vec<String>, base_url: String| pb::AddProviderKeyRequest {
        provider: "openai".into(),
        base_url,
        secret: "sk-abc-123456789".into(),
        models,
        level: None,
        weight: None,
        ..Default::default()
    };
    let view = admin
        .add_provider_key(authed(&key, add(vec!["gpt-*".into()], UPSTREAM.into())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.secret_hint, "****6789");

    // The same refusals as REST, as gRPC codes.
    let err = manage
        .create_account(authed(
            apikey::generate().clear.expose(),
            new_account("x", None),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = manage
        .create_account(tonic::Request::new(new_account("x", None)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = manage
        .create_account(authed(&key, new_account("", None)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = admin
        .add_provider_key(authed(&key, add(vec!["g*pt".into()], UPSTREAM.into())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let child = manage
        .create_account(authed(&key, new_account("child", None)))
        .await
        .unwrap()
        .into_inner();
    let err = admin
        .add_provider_key(authed(
            &child.api_key,
            add(vec!["gpt-*".into()], UPSTREAM.into()),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = manage
        .get_bill(authed(
            &key,
            pb::GetBillRequest {
                granularity: "hour".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // The rest of the Manage face: policies, the tree, keys, models, news, credit.
    let narrow = pb::Policy {
        models: Some(pb::StringList {
            values: vec!["gpt-4o-mini".into()],
        }),
        ..Default::default()
    };
    let wide = pb::Policy {
        models: Some(pb::StringList {
            values: vec!["*".into()],
        }),
        ..Default::default()
    };
    let (status, _) = app
        .call(
            Method::PATCH,
            format!("/x-users/{}", main_account.id),
            app.root.clone(),
            Some(json!({"policy": {"models": ["gpt-*"]}})),
        )
        .await;
    assert_eq!(status, 200);
    let err = manage
        .create_account(authed(&key, new_account("greedy", Some(wide))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("models *"), "{}", err.message());
    let team = manage
        .create_account(authed(&key, new_account("team", Some(narrow))))
        .await
        .unwrap()
        .into_inner();
    let team_id = team.account.unwrap().id;
    let info = manage
        .get_info(authed(
            &key,
            pb::GetInfoRequest {
                id: team_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        info.effective_policy.unwrap().models.unwrap().values,
        vec!["gpt-4o-mini".to_owned()]
    );
    let renamed = manage
        .update_account(authed(
            &key,
            pb::UpdateAccountRequest {
                id: team_id.clone(),
                name: Some("renamed".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.account.unwrap().name, "renamed");
    let err = manage
        .update_account(authed(
            &team.api_key,
            pb::UpdateAccountRequest {
                id: team_id.clone(),
                name: Some("me".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let tree = manage
        .list_accounts(authed(
            &key,
            pb::ListAccountsRequest {
                descendants: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tree.accounts.len(), 2);
    let me = manage
        .get_self(authed(&team.api_key, pb::GetSelfRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.keys.len(), 1);
    assert!(me.keys[0].in_use);
    let extra = manage
        .create_key(authed(
            &key,
            pb::CreateKeyRequest {
                account_id: team_id.clone(),
                expires_at_unix_ms: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(apikey::is_well_formed(&extra.api_key));
    manage
        .revoke_key(authed(
            &team.api_key,
            pb::RevokeKeyRequest {
                key_id: extra.key.unwrap().id,
            },
        ))
        .await
        .unwrap();
    let rotated = manage
        .rotate_key(authed(
            &team.api_key,
            pb::RotateKeyRequest {
                overlap_seconds: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let err = manage
        .get_self(authed(&team.api_key, pb::GetSelfRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let models = manage
        .list_models(authed(&rotated.api_key, pb::ListModelsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(models.models, vec!["gpt-4o-mini".to_owned()]);
    let posted = manage
        .post_news(authed(
            &key,
            pb::PostNewsRequest {
                title: "hello team".into(),
                body: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let news = manage
        .list_news(authed(&rotated.api_key, pb::ListNewsRequest { limit: 0 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(news.items[0].title, "hello team");
    manage
        .delete_news(authed(&key, pb::DeleteNewsRequest { id: posted.id }))
        .await
        .unwrap();
    let credit = manage
        .allocate_credit(authed(
            &key,
            pb::AllocateCreditRequest {
                account_id: team_id.clone(),
                amount_nanos: 100,
                note: "grant".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (credit.allocated_nanos, credit.available_to_delegate_nanos),
        (100, Some(100))
    );
    let err = manage
        .allocate_credit(authed(
            &key,
            pb::AllocateCreditRequest {
                account_id: team_id.clone(),
                amount_nanos: -101,
                note: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let seen = manage
        .get_credit(authed(
            &rotated.api_key,
            pb::GetCreditRequest {
                account_id: team_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.ledger.len(), 1);
    let gone = manage
        .delete_account(authed(
            &key,
            pb::DeleteAccountRequest {
                id: team_id,
                cascade: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.deleted, 1);
}

/// The Admin face over gRPC: provider keys, rules and the audit log, with the REST
/// face's validation and refusals.
async fn grpc_admin_face_matches_rest(url: &str) {
    let app = App::new(url).await;
    let (_, key) = app.owner("acme").await;
    let (_, child) = app.post("/x-users", &key, json!({"name": "team"})).await;
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let admin = grpc(&app);

    let keys = admin
        .list_provider_keys(authed(&key, pb::ListProviderKeysRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.keys.len(), 1);
    let id = keys.keys[0].id.clone();
    assert_eq!(keys.keys[0].health, "unknown");
    let updated = admin
        .update_provider_key(authed(
            &key,
            pb::UpdateProviderKeyRequest {
                id: id.clone(),
                models: Some(pb::StringList {
                    values: vec!["gpt*".into()],
                }),
                level: Some(2),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.level, updated.models.clone()),
        (2, vec!["gpt*".to_owned()])
    );
    let err = admin
        .update_provider_key(authed(
            &key,
            pb::UpdateProviderKeyRequest {
                id: id.clone(),
                weight: Some(0),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = admin
        .get_provider_key(authed(
            &child_key,
            pb::GetProviderKeyRequest { id: id.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        admin
            .get_provider_key(authed(&key, pb::GetProviderKeyRequest { id: id.clone() }))
            .await
            .unwrap()
            .into_inner()
            .level,
        2
    );

    // Rules: whole, patched, by entry; refused documents change nothing.
    let rules = pb::Rules {
        model_mapper: [("gpt-4".to_owned(), "gpt-4o".to_owned())].into(),
        level_mapper: [("gpt*".to_owned(), 2)].into(),
        ..Default::default()
    };
    let stored = admin
        .put_rules(authed(
            &key,
            pb::PutRulesRequest {
                rules: Some(rules),
                expected_revision: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored.model_mapper.get("gpt-4").map(String::as_str),
        Some("gpt-4o")
    );
    let bad = pb::Rules {
        switch_over: [(2, 7)].into(),
        ..Default::default()
    };
    let err = admin
        .put_rules(authed(
            &key,
            pb::PutRulesRequest {
                rules: Some(bad),
                expected_revision: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("backup level 7 has no provider key"),
        "{}",
        err.message()
    );
    let patched = admin
        .patch_rules(authed(
            &key,
            pb::PatchRulesRequest {
                rules: Some(pb::Rules {
                    resources: Some(pb::StringList {
                        values: vec!["/v1/chat/completions".into()],
                    }),
                    ..Default::default()
                }),
                sections: vec!["resources".into(), "model_mapper".into()],
                expected_revision: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(patched.model_mapper.is_empty());
    assert_eq!(patched.level_mapper.get("gpt*"), Some(&2));
    assert_eq!(
        patched.resources.unwrap().values,
        vec!["/v1/chat/completions".to_owned()]
    );
    let with_price = admin
        .put_rule_entry(authed(
            &key,
            pb::PutRuleEntryRequest {
                section: "pricing".into(),
                key: "gpt*".into(),
                value_json: r#"{"per_request_nanos": 5}"#.into(),
                expected_revision: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(with_price.pricing["gpt*"].per_request_nanos, 5);
    let err = admin
        .put_rule_entry(authed(
            &key,
            pb::PutRuleEntryRequest {
                section: "pricing".into(),
                key: "gpt*".into(),
                value_json: "{".into(),
                expected_revision: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let cleared = admin
        .delete_rule_entry(authed(
            &key,
            pb::DeleteRuleEntryRequest {
                section: "pricing".into(),
                key: "gpt*".into(),
                expected_revision: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(cleared.pricing.is_empty());

    assert_eq!(
        admin
            .get_rules(authed(&key, pb::GetRulesRequest {}))
            .await
            .unwrap()
            .into_inner(),
        cleared
    );

    // Compare-and-set: every answer names the revision; an edit made at an older one
    // is aborted and changes nothing, one at the current revision applies.
    let read = admin
        .get_rules(authed(&key, pb::GetRulesRequest {}))
        .await
        .unwrap();
    let revision: i64 = read
        .metadata()
        .get("x-rules-revision")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(revision, 4, "four saves so far");
    let stale = admin
        .put_rule_entry(authed(
            &key,
            pb::PutRuleEntryRequest {
                section: "model_mapper".into(),
                key: "old".into(),
                value_json: r#""gpt-4o""#.into(),
                expected_revision: Some(revision - 1),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert!(
        stale
            .message()
            .contains("another admin saved these rules at revision 4"),
        "{}",
        stale.message()
    );
    let saved = admin
        .delete_rule_entry(authed(
            &key,
            pb::DeleteRuleEntryRequest {
                section: "resources".into(),
                key: "/v1/chat/completions".into(),
                expected_revision: Some(revision),
            },
        ))
        .await
        .unwrap();
    assert_eq!(saved.metadata().get("x-rules-revision").unwrap(), "5");
    assert!(saved.into_inner().model_mapper.is_empty());
    let err = admin
        .get_rules(authed(&child_key, pb::GetRulesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The audit log holds all of it, newest first.
    let audit = admin
        .get_audit(authed(
            &key,
            pb::GetAuditRequest {
                before: None,
                limit: 3,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = audit.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec!["rules.update", "rules.update", "rules.update"]
    );
    admin
        .delete_provider_key(authed(
            &key,
            pb::DeleteProviderKeyRequest { id: id.clone() },
        ))
        .await
        .unwrap();
    let err = admin
        .get_provider_key(authed(&key, pb::GetProviderKeyRequest { id }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

/// An account to create, without billing of its own.
fn new_account(name: &str, policy: Option<pb::Policy>) -> pb::CreateAccountRequest {
    pb::CreateAccountRequest {
        name: name.to_owned(),
        policy,
        billing: None,
    }
}
