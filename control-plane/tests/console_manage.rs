//! The console's Manage pages in process, over the real router and store (SQLite and
//! Postgres): the tree searched and paged, an account's policy edited beside its
//! parent's bounds, rename, disable and enable, billing, credit with its ledger, keys
//! issued for a descendant, deletion confirmed by name, and the own key rotated with
//! an overlap. Every refusal is the service's, beside its field, with 422 and nothing
//! changed; hostile input and ids outside the caller's tree get the API's 403/404.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;
#[expect(dead_code, reason = "this suite uses part of the shared tab")]
mod console_tab;

use axum::Router;
use axum::http::{Method, StatusCode};
use common::App;
use console_tab::Tab;
use serde_json::{Value, json};
use switchyard_core::apikey;

/// A signed-in browser (the shared tab), its answers as (status, `Location`, page).
struct Session(Tab);

impl Session {
    async fn open(router: &Router, key: &str) -> Self {
        Self(Tab::signed_in(router, key).await)
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String, String) {
        let a = self.0.get(path).await;
        (a.status, a.location, a.body)
    }

    /// A form posted from one of this session's pages (its CSRF token added).
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String, String) {
        let a = self.0.post(path, fields).await;
        (a.status, a.location, a.body)
    }
}

/// The text of the refusal beside `field` (its `id="<field>-error"` element).
fn error_of(page: &str, field: &str) -> String {
    let marker = format!("id=\"{field}-error\"");
    let Some(at) = page.find(&marker) else {
        return String::new();
    };
    let rest = &page[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest.find("</p>").unwrap();
    rest[start..end]
        .replace("&#39;", "'")
        .replace("&#34;", "\"")
}

/// The text shown as the parent's bound of `field`.
fn bound_of(page: &str, field: &str) -> String {
    let marker = format!("data-bound=\"{field}\">");
    let at = page.find(&marker).unwrap() + marker.len();
    page[at..].split('<').next().unwrap().to_owned()
}

/// The key a page shows once.
fn new_key_of(page: &str) -> String {
    let at = page.find("id=\"new-key\"").unwrap();
    page[at..]
        .split("value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap()
        .to_owned()
}

async fn api(app: &App, method: Method, path: &str, key: &str, body: Option<Value>) -> Value {
    let (status, v) = app
        .call(method, path.to_owned(), key.to_owned(), body)
        .await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

switchyard_tests::every_backend!(
    the_tree_is_searched_and_each_account_opened,
    an_account_is_managed_from_its_page,
    credit_keys_and_deletion,
);

/// acme (rpm 100, gpt-4o*) → team (rpm 50) → dev; globex beside.
struct Tree {
    acme_key: String,
    acme_id: String,
    team_key: String,
    team_id: String,
    dev_key: String,
    dev_id: String,
    globex_id: String,
}

async fn tree(app: &App) -> Tree {
    let (acme, acme_key) = app.owner("acme").await;
    let acme_id = acme["account"]["id"].as_str().unwrap().to_owned();
    api(
        app,
        Method::PATCH,
        &format!("/x-users/{acme_id}"),
        &app.root,
        Some(json!({"policy": {"rpm": 100, "models": ["gpt-4o*"]}})),
    )
    .await;
    let (_, team) = app
        .post(
            "/x-users",
            &acme_key,
            json!({"name": "team", "policy": {"rpm": 50}}),
        )
        .await;
    let (_, dev) = app
        .post(
            "/x-users",
            team["api_key"].as_str().unwrap(),
            json!({"name": "dev"}),
        )
        .await;
    let (globex, _) = app.owner("globex").await;
    Tree {
        acme_key,
        acme_id,
        team_key: team["api_key"].as_str().unwrap().to_owned(),
        team_id: team["account"]["id"].as_str().unwrap().to_owned(),
        dev_key: dev["api_key"].as_str().unwrap().to_owned(),
        dev_id: dev["account"]["id"].as_str().unwrap().to_owned(),
        globex_id: globex["account"]["id"].as_str().unwrap().to_owned(),
    }
}

/// The tree to any depth with depth and parent, searched by name through the same
/// filter as `GET /x-users?name=`, paged; an account page shows its parent's
/// effective bounds; ids outside the tree are not found.
async fn the_tree_is_searched_and_each_account_opened(url: &str) {
    let app = App::new(url).await;
    let router = console_tab::router(&app);
    let t = tree(&app).await;
    let mut owner = Session::open(&router, &t.acme_key).await;

    let (status, _, page) = owner.get("/accounts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&format!("<a href=\"/accounts/{}\">team</a>", t.team_id)));
    assert!(page.contains(&format!("<a href=\"/accounts/{}\">dev</a>", t.dev_id)));
    assert!(
        page.contains("data-depth=\"2\""),
        "the grandchild at depth 2"
    );
    assert!(
        page.contains(&format!(
            "<td><a href=\"/accounts/{}\">team</a></td>",
            t.team_id
        )),
        "dev's parent is named"
    );
    assert!(!page.contains("globex"), "another tree is not listed");

    let (status, _, found) = owner.get("/accounts?q=DE").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        found.contains(">dev</a>") && !found.contains(">team</a></th>"),
        "{found}"
    );
    let (_, _, none) = owner.get("/accounts?q=glob").await;
    assert!(none.contains("No account"), "{none}");
    let (_, _, under) = owner.get(&format!("/accounts?under={}", t.team_id)).await;
    assert!(under.contains(">dev</a>") && under.contains("Sub-accounts of team"));
    // A search the service refuses is shown beside the search field.
    for bad in ["%1B", &"x".repeat(101)] {
        let (status, _, page) = owner.get(&format!("/accounts?q={bad}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(error_of(&page, "q").contains("name must be"), "{page}");
    }
    let (_, _, far) = owner.get("/accounts?q=e&page=9").await;
    assert!(far.contains("on this page"));
    let (_, _, first) = owner.get("/accounts?page=0").await;
    assert!(!first.contains("rel=\"next\""), "two accounts fit one page");

    // The grandchild's page: team's effective policy beside each field.
    let (status, _, page) = owner.get(&format!("/accounts/{}", t.dev_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bound_of(&page, "rpm"), "50");
    assert_eq!(bound_of(&page, "models"), "gpt-4o*");
    assert_eq!(bound_of(&page, "key_rpm"), "no limit");
    assert!(page.contains(&format!(
        "parent: <a class=\"parent\" href=\"/accounts/{}\">team</a>",
        t.team_id
    )));
    assert!(page.contains("Only its direct parent, team, allocates its credit"));

    // Not in the tree, or not an id: not found; the operator sees any account.
    for path in [
        format!("/accounts/{}", t.globex_id),
        "/accounts/not-an-id".to_owned(),
        format!("/accounts/{}/delete", t.globex_id),
        "/accounts?under=nope".to_owned(),
        format!("/accounts?under={}", t.globex_id),
    ] {
        let (status, _, _) = owner.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let mut operator = Session::open(&router, &app.root).await;
    let (status, _, page) = operator.get(&format!("/accounts/{}", t.acme_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bound_of(&page, "rpm"), "no bound");

    // A sub-account: its parent is not found; itself it may see, not change.
    let mut team = Session::open(&router, &t.team_key).await;
    let (status, _, _) = team.get(&format!("/accounts/{}", t.acme_id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = team
        .post(
            &format!("/accounts/{}/status", t.acme_id),
            &[("status", "disabled")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, own) = team.get(&format!("/accounts/{}", t.team_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(own.contains("your parent changes it") && !own.contains("action=\"/accounts/"));
    let (status, _, body) = team
        .post(&format!("/accounts/{}/policy", t.team_id), &[("rpm", "10")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("cannot change itself"));
    let info = api(
        &app,
        Method::GET,
        &format!("/x-info?id={}", t.team_id),
        &t.acme_key,
        None,
    )
    .await;
    assert_eq!(info["policy"]["rpm"], 50, "unchanged");
}

/// Policy (too wide: each excess beside its field, 422, unchanged; then valid),
/// rename, disable and enable, billing by the direct parent only; CSRF required.
async fn an_account_is_managed_from_its_page(url: &str) {
    let app = App::new(url).await;
    let router = console_tab::router(&app);
    let t = tree(&app).await;
    let mut owner = Session::open(&router, &t.acme_key).await;
    let dev_page = format!("/accounts/{}", t.dev_id);
    let dev_info = format!("/x-info?id={}", t.dev_id);
    let policy_of =
        async || api(&app, Method::GET, &dev_info, &t.acme_key, None).await["policy"].clone();

    // Too wide: the service's refusal, split beside the fields it names.
    let (status, _, page) = owner
        .post(
            &format!("{dev_page}/policy"),
            &[
                ("models", "gpt-4o-mini\nclaude-3"),
                ("rpm", "1000"),
                ("key_rpm", "5"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert_eq!(error_of(&page, "rpm"), "rpm: 1000 exceeds the parent's 50");
    assert_eq!(
        error_of(&page, "models"),
        "models claude-3: not granted by the parent"
    );
    assert_eq!(error_of(&page, "key_rpm"), "");
    assert!(page.contains("aria-describedby=\"rpm-bound rpm-error\""));
    assert!(page.contains("value=\"1000\""), "what was typed stays");
    assert_eq!(policy_of().await, json!({}), "nothing changed");
    // Hostile and malformed values: refused beside their fields, nothing changed.
    for (field, value, says) in [
        ("rpm", "99999999999", "expected u32"),
        ("rpm", "0", "greater than zero"),
        ("rpm", "ten", "expected u32"),
        ("client_cidrs", "10.0.0.0/33", "invalid"),
        ("models", "g*x", "only as its last character"),
        ("models", "gpt\u{1b}[31m", "control characters"),
        ("model_limits", "gpt-4o rpm", "model_limits"),
        ("credit", "lots", "credit"),
    ] {
        let period = if field == "credit" { "month" } else { "" };
        let (status, _, page) = owner
            .post(
                &format!("{dev_page}/policy"),
                &[(field, value), ("period", period)],
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}={value}");
        assert!(
            error_of(&page, field).contains(says),
            "{field}={value}: {}",
            page.split("role=\"alert\"").nth(1).unwrap_or_default()
        );
    }
    assert_eq!(policy_of().await, json!({}), "nothing changed");
    // Within the bounds: saved.
    let (status, location, _) = owner
        .post(
            &format!("{dev_page}/policy"),
            &[
                ("models", "gpt-4o-mini"),
                ("rpm", "20"),
                ("model_limits", "gpt-4o-mini rpm=5 tpm=1000"),
                ("credit", "2.5"),
                ("period", "day"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, format!("{dev_page}?saved=policy"));
    assert_eq!(
        policy_of().await,
        json!({"models": ["gpt-4o-mini"], "rpm": 20, "model_limits": {"gpt-4o-mini": {"rpm": 5, "tpm": 1000}},
               "credit": {"limit_nanos": 2_500_000_000u64, "period": "day"}})
    );
    let (_, _, page) = owner.get(&location).await;
    assert!(page.contains("Policy saved."));
    assert!(page.contains(">gpt-4o-mini</textarea>"));

    // Rename: a control character is refused beside the name; then renamed.
    let (status, _, page) = owner
        .post(&format!("{dev_page}/name"), &[("name", "de\u{7}v")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&page, "name").contains("printable"), "{page}");
    let (status, _, _) = owner
        .post(&format!("{dev_page}/name"), &[("name", "developers")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let info = api(&app, Method::GET, &dev_info, &t.acme_key, None).await;
    assert_eq!(info["account"]["name"], "developers");

    // Disable: its key is refused by the API; enable: it works again.
    let (status, _, _) = owner
        .post(&format!("{dev_page}/status"), &[("status", "paused")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, location, _) = owner
        .post(&format!("{dev_page}/status"), &[("status", "disabled")])
        .await;
    assert_eq!(
        (status, location.as_str()),
        (
            StatusCode::SEE_OTHER,
            format!("{dev_page}?saved=disabled").as_str()
        )
    );
    let (code, _) = app
        .call(Method::GET, "/x-self".into(), t.dev_key.clone(), None)
        .await;
    assert_eq!(code, 403, "a disabled account's key is refused");
    let (_, _, page) = owner.get(&dev_page).await;
    assert!(
        page.contains("data-status-of=\"account\">disabled<") && page.contains("id=\"enable\"")
    );
    owner
        .post(&format!("{dev_page}/status"), &[("status", "active")])
        .await;
    let (code, _) = app
        .call(Method::GET, "/x-self".into(), t.dev_key.clone(), None)
        .await;
    assert_eq!(code, 200);

    // Billing: the direct parent sets it; an ancestor further up is not allowed.
    let team_page = format!("/accounts/{}", t.team_id);
    let (status, _, page) = owner
        .post(&format!("{team_page}/billing"), &[("multiplier", "x")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!error_of(&page, "multiplier").is_empty());
    let (status, _, page) = owner
        .post(&format!("{team_page}/billing"), &[("multiplier", "2000")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&page, "multiplier").contains("at most"), "{page}");
    let (status, _, page) = owner
        .post(
            &format!("{team_page}/billing"),
            &[("prices", "{\"gpt\": 1}")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&page, "prices").contains("invalid type"), "{page}");
    let (status, _, _) = owner
        .post(&format!("{team_page}/billing"), &[("multiplier", "1.25")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let info = api(
        &app,
        Method::GET,
        &format!("/x-info?id={}", t.team_id),
        &t.acme_key,
        None,
    )
    .await;
    assert_eq!(info["billing"], json!({"multiplier_ppm": 1_250_000}));
    let (status, _, body) = owner
        .post(&format!("{dev_page}/billing"), &[("multiplier", "3")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Without the session's CSRF token nothing is changed.
    let refused = owner
        .0
        .send(
            Method::POST,
            &format!("{dev_page}/status"),
            Some(&[("status", "disabled")]),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let info = api(&app, Method::GET, &dev_info, &t.acme_key, None).await;
    assert_eq!(info["account"]["status"], "active");
}

/// Credit top-ups and withdrawals with the ledger; a key issued for a descendant,
/// shown once; deletion confirmed by name and cascading; the own key rotated.
async fn credit_keys_and_deletion(url: &str) {
    let app = App::new(url).await;
    let router = console_tab::router(&app);
    let t = tree(&app).await;
    let mut owner = Session::open(&router, &t.acme_key).await;
    let team_page = format!("/accounts/{}", t.team_id);
    let dev_page = format!("/accounts/{}", t.dev_id);
    let credits = format!("/x-users/{}/credits", t.team_id);

    // Credit: a top-up shows in the ledger; refusals beside their fields.
    let (status, location, _) = owner
        .post(
            &format!("{team_page}/credit"),
            &[
                ("amount", "10.5"),
                ("direction", "top-up"),
                ("note", "welcome"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = owner.get(&location).await;
    assert!(page.contains("Credit allocated."));
    assert!(page.contains("data-figure=\"allocated\">$10.5000<"));
    assert!(
        page.contains("<td>$10.5000</td><td>you</td><td>welcome</td>"),
        "{page}"
    );
    for (amount, direction, note, field, says) in [
        ("100", "withdraw", "", "amount", "credit refused"),
        ("abc", "top-up", "", "amount", "not a dollar amount"),
        ("-5", "top-up", "", "amount", "not a dollar amount"),
        ("0", "top-up", "", "amount", "non-zero"),
        ("99999999999", "top-up", "", "amount", "not a dollar amount"),
        ("9000000000", "top-up", "", "amount", "at most"),
        ("1", "top-up", "bad\u{0}note", "note", "note"),
    ] {
        let (status, _, page) = owner
            .post(
                &format!("{team_page}/credit"),
                &[("amount", amount), ("direction", direction), ("note", note)],
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{amount}");
        assert!(
            error_of(&page, field).contains(says),
            "{amount}: {}",
            error_of(&page, field)
        );
    }
    let credit = api(&app, Method::GET, &credits, &t.acme_key, None).await;
    assert_eq!(
        credit["allocated_nanos"], 10_500_000_000u64,
        "only the top-up"
    );
    assert_eq!(credit["ledger"].as_array().unwrap().len(), 1);
    // The ledger is paged, newest first.
    for n in 1..=20 {
        let (status, _) = app
            .post(
                &credits,
                &t.acme_key,
                json!({"amount_nanos": n * 1000, "note": format!("n{n}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, _, newest) = owner.get(&team_page).await;
    assert!(newest.contains("<td>n20</td>") && !newest.contains("<td>welcome</td>"));
    assert!(
        newest.contains("?ledger=1#ledger-h\" rel=\"next\""),
        "{newest}"
    );
    let (_, _, older) = owner.get(&format!("{team_page}?ledger=1")).await;
    assert!(older.contains("<td>welcome</td>") && !older.contains("<td>n20</td>"));
    assert!(older.contains("?ledger=0#ledger-h\" rel=\"prev\""));
    // Only the direct parent allocates: the owner on its grandchild is not allowed.
    let (status, _, _) = owner
        .post(&format!("{dev_page}/credit"), &[("amount", "1")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A key for the grandchild: shown once, and it works.
    let (status, _, page) = owner
        .post(&format!("{dev_page}/keys"), &[("expires", "2001-01-01")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&page, "expires").contains("in the future"));
    let (status, _, page) = owner
        .post(&format!("{dev_page}/keys"), &[("expires", "soon")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&page, "expires").contains("not a date"));
    let (status, _, page) = owner.post(&format!("{dev_page}/keys"), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    let key = new_key_of(&page);
    assert!(apikey::is_well_formed(&key));
    let me = api(&app, Method::GET, "/x-self", &key, None).await;
    assert_eq!(me["account"]["id"], t.dev_id.as_str());
    let (_, _, again) = owner.get(&dev_page).await;
    assert!(!again.contains(&key), "shown once");
    let (status, _, _) = owner
        .post(&format!("/accounts/{}/keys", t.globex_id), &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Rotation of the owner's own key: the overlap it picks, the new key once.
    for (overlap, says) in [("soon", "whole number"), ("100000", "at most")] {
        let (status, _, page) = owner.post("/keys/rotate", &[("overlap", overlap)]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{overlap}");
        assert!(error_of(&page, "overlap").contains(says), "{page}");
    }
    let (status, _, page) = owner.post("/keys/rotate", &[("overlap", "60")]).await;
    assert_eq!(status, StatusCode::CREATED, "{page}");
    let rotated = new_key_of(&page);
    assert!(page.contains("keeps working until"));
    api(&app, Method::GET, "/x-self", &rotated, None).await;
    let me = api(&app, Method::GET, "/x-self", &t.acme_key, None).await;
    let old = me["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["in_use"] == true)
        .unwrap()
        .clone();
    let stops = old["expires_at_unix_ms"].as_i64().unwrap();
    let now = switchyard_runtime::now_ms();
    assert!(
        (now + 55 * 60_000..=now + 61 * 60_000).contains(&stops),
        "the old key keeps working for the overlap: {old}"
    );

    // Deletion: the confirmation page counts what goes; the name must be typed;
    // without cascade the service's refusal; with it, both accounts go.
    let (status, _, page) = owner.get(&format!("{team_page}/delete")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("It has 1 sub-account below it"), "{page}");
    let accounts = app.count("SELECT count(*) FROM accounts").await;
    let (status, _, page) = owner
        .post(
            &format!("{team_page}/delete"),
            &[("confirm", "tea"), ("cascade", "yes")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&page, "confirm").contains("type the account's name"));
    let (status, _, page) = owner
        .post(&format!("{team_page}/delete"), &[("confirm", "team")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&page, "cascade").contains("cascade"), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM accounts").await, accounts);
    let mut team = Session::open(&router, &t.team_key).await;
    let (status, _, _) = team
        .post(
            &format!("{team_page}/delete"),
            &[("confirm", "team"), ("cascade", "yes")],
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an account does not delete itself"
    );
    let (status, location, _) = owner
        .post(
            &format!("{team_page}/delete"),
            &[("confirm", "team"), ("cascade", "yes")],
        )
        .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/accounts?deleted=2")
    );
    let (_, _, page) = owner.get(&location).await;
    assert!(page.contains("Deleted 2 accounts."));
    assert_eq!(
        app.count("SELECT count(*) FROM accounts").await,
        accounts - 2
    );
    let (code, _) = app.call(Method::GET, "/x-self".into(), key, None).await;
    assert_eq!(code, 401, "the deleted account's key is gone");
}
