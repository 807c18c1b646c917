//! The REST contract of accounts and the tree (`/x-users`, `/x-info`, `/x-dna`):
//! policies bounded by the parent, who may change or see whom, listing, deletion,
//! and bad input refused without a change. On SQLite and Postgres, in process.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::http::{Method, StatusCode};
use common::{App, UPSTREAM};
use serde_json::{Value, json};
use switchyard_core::apikey;

switchyard_tests::every_backend!(
    policies_never_exceed_the_parent,
    account_tree_listing_and_deletion,
    the_tree_is_searched_by_name,
    the_credit_ledger_is_paged,
    bad_account_input_gets_clear_errors_and_changes_nothing,
);

/// Policies never exceed the parent; narrowing a parent narrows the effective policy
/// of every descendant; only ancestors change an account.
async fn policies_never_exceed_the_parent(url: &str) {
    let app = App::new(url).await;
    let patch =
        |path: String, key: String, body: Value| app.call(Method::PATCH, path, key, Some(body));
    let info = |key: String, id: Option<String>| {
        let path = id.map_or_else(|| "/x-info".to_owned(), |id| format!("/x-info?id={id}"));
        app.call(Method::GET, path, key, None)
    };

    let (status, main) = app
        .post(
            "/x-users",
            &app.root,
            json!({"name": "acme", "policy": {"models": ["gpt-4o*", "claude*"], "rpm": 100, "client_cidrs": ["10.0.0.0/8", "127.0.0.0/8"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{main}");
    let main_key = main["api_key"].as_str().unwrap().to_owned();
    let main_id = main["account"]["id"].as_str().unwrap().to_owned();
    app.post(
        "/x-keys",
        &main_key,
        json!({"provider": "openai", "base_url": UPSTREAM, "secret": "sk-abc-123456789", "models": ["*"]}),
    )
    .await;
    let accounts = app.count("SELECT count(*) FROM accounts").await;

    // Wider than the parent: refused with 422, naming every offending entry.
    let (status, err) = app
        .post(
            "/x-users",
            &main_key,
            json!({"name": "greedy", "policy": {"models": ["gpt-*", "claude-3"], "rpm": 500, "client_cidrs": ["11.0.0.0/8"]}}),
        )
        .await;
    assert_eq!(status.as_u16(), 422, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    for entry in ["models gpt-*", "rpm", "500", "client_cidrs 11.0.0.0/8"] {
        assert!(message.contains(entry), "{message} should name {entry}");
    }
    assert!(!message.contains("claude-3"), "{message}");
    assert_eq!(app.count("SELECT count(*) FROM accounts").await, accounts);

    // Within bounds.
    let (status, child) = app
        .post(
            "/x-users",
            &main_key,
            json!({"name": "team", "policy": {"models": ["gpt-4o-mini"], "rpm": 50}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{child}");
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let child_id = child["account"]["id"].as_str().unwrap().to_owned();
    let (_, sibling) = app
        .post("/x-users", &main_key, json!({"name": "other"}))
        .await;
    let sibling_key = sibling["api_key"].as_str().unwrap().to_owned();
    let sibling_id = sibling["account"]["id"].as_str().unwrap().to_owned();

    let (status, view) = info(main_key.clone(), Some(child_id.clone())).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["effective_policy"]["models"], json!(["gpt-4o-mini"]));
    assert_eq!(view["effective_policy"]["rpm"], 50);
    assert_eq!(
        view["effective_policy"]["client_cidrs"],
        json!(["10.0.0.0/8", "127.0.0.0/8"])
    );
    assert_eq!(
        view["policy"],
        json!({"models": ["gpt-4o-mini"], "rpm": 50})
    );
    assert_eq!(view["ancestors"], json!([main_id]));

    // The dashboard lists exactly what the data plane lets each account call.
    let models = |key: String| {
        let call = app.call(Method::GET, "/dashboard/models".into(), key, None);
        async move { call.await.1["models"].clone() }
    };
    assert_eq!(models(child_key.clone()).await, json!(["gpt-4o-mini"]));
    assert_eq!(
        models(main_key.clone()).await,
        json!(["claude*", "gpt-4o*"])
    );
    assert_eq!(
        app.call(
            Method::GET,
            "/dashboard/models".into(),
            app.root.clone(),
            None
        )
        .await
        .0,
        403
    );

    // The operator narrows the main account: the child's effective policy narrows at
    // once, its own policy is untouched.
    let (status, v) = patch(
        format!("/x-users/{main_id}"),
        app.root.clone(),
        json!({"policy": {"models": ["claude*"]}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (_, view) = info(child_key.clone(), None).await;
    assert_eq!(view["effective_policy"]["models"], json!([]));
    assert_eq!(view["effective_policy"]["rpm"], 50);
    assert_eq!(
        view["policy"],
        json!({"models": ["gpt-4o-mini"], "rpm": 50})
    );
    let (status, err) = patch(
        format!("/x-users/{child_id}"),
        main_key.clone(),
        json!({"policy": {"models": ["gpt-4o-mini"]}}),
    )
    .await;
    assert_eq!(status, 422, "{err}");

    // Only ancestors change an account; other trees stay invisible.
    let (status, _) = patch(
        format!("/x-users/{child_id}"),
        child_key.clone(),
        json!({"name": "me"}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = patch(
        format!("/x-users/{main_id}"),
        child_key.clone(),
        json!({"name": "boss"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = patch(
        format!("/x-users/{child_id}"),
        sibling_key.clone(),
        json!({"name": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = info(sibling_key.clone(), Some(child_id.clone())).await;
    assert_eq!(status, 404);
    let (status, _) = info(child_key.clone(), Some(main_id.clone())).await;
    assert_eq!(status, 404);
    let (status, v) = info(sibling_key.clone(), None).await;
    assert_eq!(
        (status, v["account"]["id"].as_str()),
        (200, Some(sibling_id.as_str()))
    );

    // Bad updates change nothing.
    let revision = app.count("SELECT revision FROM config_revision").await;
    for (path, body, want) in [
        (
            format!("/x-users/{child_id}"),
            json!({"status": "paused"}),
            400,
        ),
        (format!("/x-users/{child_id}"), json!({}), 400),
        (
            format!("/x-users/{child_id}"),
            json!({"policy": {"client_cidrs": ["10.0.0.0/33"]}}),
            400,
        ),
        (
            format!("/x-users/{child_id}"),
            json!({"policy": {"rpm": 0}}),
            400,
        ),
        (format!("/x-users/{child_id}"), json!({"nmae": "typo"}), 400),
        (format!("/x-users/{child_id}"), json!({"name": ""}), 400),
        (
            format!("/x-users/{}", switchyard_core::ids::AccountId::new()),
            json!({"name": "x"}),
            404,
        ),
        ("/x-users/not-an-id".to_owned(), json!({"name": "x"}), 400),
    ] {
        let (status, v) = patch(path.clone(), main_key.clone(), body.clone()).await;
        assert_eq!(status, want, "{path} {body} → {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    assert_eq!(
        app.count("SELECT revision FROM config_revision").await,
        revision
    );

    // A disabled account's Manage API access ends at once.
    let (status, _) = patch(
        format!("/x-users/{sibling_id}"),
        main_key.clone(),
        json!({"status": "disabled"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = info(sibling_key, None).await;
    assert_eq!(status, 403);
}

/// The tree: children and descendants paged, deletion refused while descendants
/// exist unless cascading, and deleted accounts' keys stop working.
async fn account_tree_listing_and_deletion(url: &str) {
    let app = App::new(url).await;
    let (_, main_key) = app.owner("acme").await;
    let (_, team) = app
        .post("/x-users", &main_key, json!({"name": "team"}))
        .await;
    let team_key = team["api_key"].as_str().unwrap().to_owned();
    let team_id = team["account"]["id"].as_str().unwrap().to_owned();
    let (_, dev) = app
        .post("/x-users", &team_key, json!({"name": "dev"}))
        .await;
    let dev_key = dev["api_key"].as_str().unwrap().to_owned();
    let dev_id = dev["account"]["id"].as_str().unwrap().to_owned();
    app.post("/x-users", &main_key, json!({"name": "ops"}))
        .await;
    let get = |path: String, key: String| app.call(Method::GET, path, key, None);
    let delete = |path: String, key: String| app.call(Method::DELETE, path, key, None);

    let (status, dna) = get("/x-dna".into(), main_key.clone()).await;
    assert_eq!(status, 200, "{dna}");
    assert_eq!(
        names(&dna),
        vec![("team".into(), 1), ("ops".into(), 1), ("dev".into(), 2)]
    );
    let (_, children) = get("/x-users".into(), main_key.clone()).await;
    assert_eq!(
        names(&children),
        vec![("team".into(), 1), ("ops".into(), 1)]
    );
    let (_, page) = get("/x-dna?offset=1&limit=1".into(), main_key.clone()).await;
    assert_eq!(names(&page), vec![("ops".into(), 1)]);
    let (_, sub) = get(format!("/x-dna?id={team_id}"), main_key.clone()).await;
    assert_eq!(names(&sub), vec![("dev".into(), 1)]);
    let (_, mine) = get("/x-dna".into(), team_key.clone()).await;
    assert_eq!(names(&mine), vec![("dev".into(), 1)]);
    assert_eq!(
        get(format!("/x-dna?id={team_id}"), dev_key.clone()).await.0,
        404
    );
    let (status, mains) = get("/x-users".into(), app.root.clone()).await;
    assert_eq!((status, names(&mains)), (200, vec![("acme".into(), 1)]));
    for bad in [
        "/x-dna?limit=0",
        "/x-dna?id=nope",
        "/x-dna?offset=-1",
        "/x-dna?depth=2",
    ] {
        assert_eq!(get(bad.into(), main_key.clone()).await.0, 400, "{bad}");
    }

    // Deletion: refused while descendants exist, unless cascading.
    let accounts = app.count("SELECT count(*) FROM accounts").await;
    let (status, err) = delete(format!("/x-users/{team_id}"), main_key.clone()).await;
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cascade")
    );
    assert_eq!(
        delete(format!("/x-users/{team_id}?cascade=true"), dev_key.clone())
            .await
            .0,
        404
    );
    assert_eq!(
        delete(format!("/x-users/{team_id}?cascade=true"), team_key.clone())
            .await
            .0,
        403
    );
    assert_eq!(
        delete(
            format!("/x-users/{team_id}?cascade=maybe"),
            main_key.clone()
        )
        .await
        .0,
        400
    );
    assert_eq!(app.count("SELECT count(*) FROM accounts").await, accounts);
    let (status, done) = delete(format!("/x-users/{team_id}?cascade=true"), main_key.clone()).await;
    assert_eq!((status, done["deleted"].as_u64()), (200, Some(2)), "{done}");
    assert_eq!(
        app.count("SELECT count(*) FROM accounts").await,
        accounts - 2
    );
    assert_eq!(get("/x-self".into(), dev_key.clone()).await.0, 401);
    assert_eq!(
        get(format!("/x-info?id={dev_id}"), main_key.clone())
            .await
            .0,
        404
    );
    let (_, log) = get("/x-audit?limit=1".into(), main_key.clone()).await;
    assert_eq!(log[0]["action"], "account.delete");
    assert_eq!(log[0]["before"]["name"], "team");
}

/// `name` on `/x-users` and `/x-dna` keeps the accounts whose name contains it,
/// ignoring ASCII case, with `%` and `_` taken literally, within the caller's tree
/// only; a bad filter is a 400.
async fn the_tree_is_searched_by_name(url: &str) {
    let app = App::new(url).await;
    let (_, main_key) = app.owner("acme").await;
    let (_, other_key) = app.owner("globex").await;
    app.post("/x-users", &other_key, json!({"name": "Team Globex"}))
        .await;
    let (_, team) = app
        .post("/x-users", &main_key, json!({"name": "Team Red"}))
        .await;
    let team_key = team["api_key"].as_str().unwrap().to_owned();
    for name in ["red team dev", "blue", "50% off_x"] {
        let (status, _) = app.post("/x-users", &team_key, json!({"name": name})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let get = |path: &str, key: &str| app.call(Method::GET, path.to_owned(), key.to_owned(), None);

    let (status, found) = get("/x-dna?name=TEAM", &main_key).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        names(&found),
        vec![("Team Red".into(), 1), ("red team dev".into(), 2)],
        "the caller's tree only, to any depth"
    );
    let (_, children) = get("/x-users?name=team", &main_key).await;
    assert_eq!(names(&children), vec![("Team Red".into(), 1)]);
    let (_, paged) = get("/x-dna?name=team&offset=1&limit=1", &main_key).await;
    assert_eq!(names(&paged), vec![("red team dev".into(), 2)]);
    let (_, literal) = get("/x-dna?name=0%25%20off_", &main_key).await;
    assert_eq!(names(&literal), vec![("50% off_x".into(), 2)]);
    let (_, wildcard) = get("/x-dna?name=%25", &main_key).await;
    assert_eq!(
        names(&wildcard),
        vec![("50% off_x".into(), 2)],
        "% is a character"
    );
    let (_, none) = get("/x-dna?name=_", &main_key).await;
    assert_eq!(
        names(&none),
        vec![("50% off_x".into(), 2)],
        "_ is a character"
    );
    let (_, all) = get("/x-dna?name=", &main_key).await;
    assert_eq!(names(&all).len(), 4, "an empty name filters nothing");
    let (_, everyone) = get("/x-dna?name=team", &app.root).await;
    assert_eq!(
        names(&everyone).len(),
        3,
        "the operator searches every tree"
    );

    let long = "x".repeat(101);
    for bad in [
        "/x-dna?name=a%00b".to_owned(),
        "/x-users?name=%1B".to_owned(),
        format!("/x-dna?name={long}"),
    ] {
        let (status, err) = get(&bad, &main_key).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains("name"),
            "{err}"
        );
    }
}

/// `GET /x-users/{id}/credits?offset=&limit=`: the ledger a page at a time, newest
/// first; bad paging is a 400.
async fn the_credit_ledger_is_paged(url: &str) {
    let app = App::new(url).await;
    let (_, main_key) = app.owner("acme").await;
    let (_, team) = app
        .post("/x-users", &main_key, json!({"name": "team"}))
        .await;
    let team_id = team["account"]["id"].as_str().unwrap().to_owned();
    let credits = format!("/x-users/{team_id}/credits");
    for n in 1..=3 {
        let (status, _) = app
            .post(
                &credits,
                &main_key,
                json!({"amount_nanos": n, "note": format!("n{n}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let get = |path: String| app.call(Method::GET, path, main_key.clone(), None);
    let notes = |v: &Value| -> Vec<String> {
        v["ledger"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["note"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = get(credits.clone()).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(notes(&all), ["n3", "n2", "n1"]);
    assert_eq!(all["allocated_nanos"], 6);
    let (_, first) = get(format!("{credits}?limit=2")).await;
    assert_eq!(notes(&first), ["n3", "n2"]);
    let (_, rest) = get(format!("{credits}?offset=2&limit=2")).await;
    assert_eq!(notes(&rest), ["n1"]);
    assert_eq!(rest["allocated_nanos"], 6, "the balance on every page");
    for bad in ["limit=0", "limit=1001", "offset=-1", "page=1"] {
        let (status, err) = get(format!("{credits}?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
}

/// The names and depths of a tree listing, in order.
fn names(v: &Value) -> Vec<(String, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["depth"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Malformed, unknown, oversized or unauthenticated account writes get a clear
/// error in the API's shape, and nothing is stored.
async fn bad_account_input_gets_clear_errors_and_changes_nothing(url: &str) {
    let app = App::new(url).await;
    let (_, created) = app
        .post("/x-users", &app.root, json!({"name": "acme"}))
        .await;
    let main_key = created["api_key"].as_str().unwrap().to_owned();
    let accounts = app.count("SELECT count(*) FROM accounts").await;
    let revision = app.count("SELECT revision FROM config_revision").await;

    let expect_error = |(status, v): (StatusCode, Value), want: u16| {
        assert_eq!(status.as_u16(), want);
        let message = v["error"]["message"].as_str().unwrap().to_owned();
        assert!(!message.is_empty());
        message
    };

    expect_error(app.post_raw("/x-users", &main_key, "{not json").await, 400);
    expect_error(app.post_raw("/x-users", &main_key, "{}").await, 400);
    let m = expect_error(
        app.post_raw("/x-users", &main_key, r#"{"name":"x","quota":5}"#)
            .await,
        400,
    );
    assert!(m.contains("quota"), "{m}");
    expect_error(
        app.post_raw("/x-users", &main_key, r#"{"name":"   "}"#)
            .await,
        400,
    );
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(70 * 1024));
    expect_error(app.post_raw("/x-users", &main_key, &big).await, 413);
    expect_error(app.post_raw("/x-users", "", r#"{"name":"x"}"#).await, 401);
    expect_error(
        app.post_raw(
            "/x-users",
            apikey::generate().clear.expose(),
            r#"{"name":"x"}"#,
        )
        .await,
        401,
    );

    assert_eq!(app.count("SELECT count(*) FROM accounts").await, accounts);
    assert_eq!(
        app.count("SELECT revision FROM config_revision").await,
        revision
    );
}
