//! The console's Admin provider-key pages in process, over the real router and store
//! (SQLite and Postgres) and a running fake upstream: every action and every refusal
//! (next to its field, 422, nothing changed), hostile inputs, another owner's ids
//! (404), callers the pages are not for (403), and a provider secret that no page
//! ever shows.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;
#[expect(dead_code, reason = "this suite uses part of the shared tab")]
mod console_tab;

use axum::http::{Method, StatusCode};
use common::App;
use console_tab::{Tab, error_of, escaped, main_account, router};
use serde_json::{Value, json};
use switchyard_control_plane::store::KeyHealthReport;
use switchyard_fake_upstream::FakeUpstream;

/// The provider secret typed into the add form; no page may ever show it.
const SECRET: &str = "sk-console-only-secret-0123456789";

switchyard_tests::every_backend!(
    provider_keys_are_added_changed_and_deleted_in_pages,
    provider_key_forms_refuse_beside_the_field,
    private_upstreams_are_refused_as_the_api_refuses_them,
);

/// `key`'s provider keys as the API shows them.
async fn api_keys(app: &App, key: &str) -> Vec<Value> {
    let (status, keys) = app
        .call(Method::GET, "/x-keys".into(), key.to_owned(), None)
        .await;
    assert_eq!(status, 200, "{keys}");
    keys.as_array().unwrap().clone()
}

/// A form's fields, in order.
type Form<'a> = Vec<(&'a str, &'a str)>;

/// The add form's fields, valid unless changed.
fn add_form<'a>(base_url: &'a str, secret: &'a str) -> Form<'a> {
    vec![
        ("provider", "openai"),
        ("base_url", base_url),
        ("secret", secret),
        ("models", "gpt-4o*\no3"),
        ("level", "2"),
        ("weight", "3"),
    ]
}

/// `form` with the field `name` set to `value`.
fn with<'a>(mut form: Form<'a>, name: &str, value: &'a str) -> Form<'a> {
    for field in &mut form {
        if field.0 == name {
            field.1 = value;
        }
    }
    form
}

/// Add, list (health from the data planes, discovered models), discover (a list and
/// a failure), change, disable and enable, delete; another owner's keys are not
/// found; a sub-account and the operator are not allowed; paging.
async fn provider_keys_are_added_changed_and_deleted_in_pages(url: &str) {
    let app = App::new(url).await;
    let router = router(&app);
    let fake = FakeUpstream::start(None).await.unwrap();
    fake.set_models(&["gpt-4o", "gpt-4o-mini", "o3"]);
    let base_url = fake.base_url();
    let (_, key) = main_account(&app, "acme").await;
    let (_, globex) = app.owner("globex").await;
    let foreign = api_keys(&app, &globex).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tab = Tab::signed_in(&router, &key).await;

    // The empty list; the add form's secret is a password field with no value.
    let page = tab.get("/admin/provider-keys").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No provider keys yet"), "{}", page.body);
    assert!(
        page.body.contains(
            "<input id=\"secret\" name=\"secret\" type=\"password\" autocomplete=\"new-password\" spellcheck=\"false\">"
        ),
        "{}",
        page.body
    );
    assert!(page.body.contains("<label for=\"secret\">"));

    // Added: shown in the list with everything but the secret.
    let added = tab
        .post("/admin/provider-keys", &add_form(&base_url, SECRET))
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert!(added.body.contains("Provider key added"));
    let listed = api_keys(&app, &key).await;
    assert_eq!(listed.len(), 1);
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (
            &listed[0]["level"],
            &listed[0]["weight"],
            &listed[0]["models"]
        ),
        (&json!(2), &json!(3), &json!(["gpt-4o*", "o3"]))
    );
    assert!(
        added
            .body
            .contains(&format!("href=\"/admin/provider-keys/{id}\""))
    );
    assert!(added.body.contains(&format!("<code>{base_url}</code>")));
    assert!(added.body.contains("<td>gpt-4o*, o3</td>"));
    assert!(
        added
            .body
            .contains("health-unknown\">Unknown: no call yet</span>")
    );
    assert!(
        added
            .body
            .contains("<td class=\"discovered\">not asked yet</td>")
    );
    assert!(
        added
            .body
            .contains("<span class=\"status active\">active</span>")
    );

    // Health as the data planes report it, in words.
    let store = app.service.store();
    let key_id = id.parse().unwrap();
    store
        .record_key_health(&[KeyHealthReport {
            id: key_id,
            health: "healthy",
            until_ms: None,
        }])
        .await
        .unwrap();
    let page = tab.get("/admin/provider-keys").await;
    assert!(
        page.body.contains("health-healthy\">Healthy</span>"),
        "{}",
        page.body
    );
    store
        .record_key_health(&[KeyHealthReport {
            id: key_id,
            health: "cooling_down",
            until_ms: Some(86_400_000 + 61 * 60_000),
        }])
        .await
        .unwrap();
    let page = tab.get(&format!("/admin/provider-keys/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(
            "health-cooling_down\" id=\"key-health\">Cooling down until 1970-01-02 01:01 UTC</span>"
        ),
        "{}",
        page.body
    );
    assert!(page.body.contains("Not asked yet."));
    assert!(page.body.contains("<code>****6789</code>"), "the hint only");

    // Discovery now: the upstream's list.
    let asked = tab
        .post(&format!("/admin/provider-keys/{id}/discover"), &[])
        .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert!(asked.body.contains("it lists 3 models."), "{}", asked.body);
    for m in ["gpt-4o", "gpt-4o-mini", "o3"] {
        assert!(
            asked.body.contains(&format!("<li><code>{m}</code></li>")),
            "{m}"
        );
    }
    let page = tab.get("/admin/provider-keys").await;
    assert!(
        page.body
            .contains("<td class=\"discovered\">gpt-4o, gpt-4o-mini, o3</td>")
    );
    // An upstream that answers nothing: the reason, on the key and in the notice.
    let (status, dead) = app
        .post(
            "/x-keys",
            &key,
            json!({"provider": "openai", "base_url": common::UPSTREAM, "secret": "sk-dead-0123456789", "models": ["x"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{dead}");
    let dead_id = dead["id"].as_str().unwrap();
    let asked = tab
        .post(&format!("/admin/provider-keys/{dead_id}/discover"), &[])
        .await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(
        asked.body.contains("The upstream was asked; no list:"),
        "{}",
        asked.body
    );
    assert!(asked.body.contains("id=\"discovery-error\">No list: "));

    // Changed: only what differs is sent; the API shows the change.
    let path = format!("/admin/provider-keys/{id}");
    let saved = tab
        .post(
            &path,
            &[
                ("models", "gpt-4o, o3-mini"),
                ("level", "5"),
                ("weight", "3"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(saved.body.contains("Saved."));
    let now = &api_keys(&app, &key).await[0];
    assert_eq!(
        (&now["level"], &now["weight"], &now["models"]),
        (&json!(5), &json!(3), &json!(["gpt-4o", "o3-mini"]))
    );
    // The same values again: the API's "nothing to change", for the whole form.
    let same = tab
        .post(
            &path,
            &[
                ("models", "gpt-4o\no3-mini"),
                ("level", "5"),
                ("weight", "3"),
            ],
        )
        .await;
    assert_eq!(same.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        same.body
            .contains("id=\"form-error\">nothing to change</p>"),
        "{}",
        same.body
    );

    // Disabled, then enabled again.
    let off = tab
        .post(&format!("{path}/status"), &[("status", "disabled")])
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert!(off.body.contains("Disabled: data planes stop using it"));
    assert!(
        off.body
            .contains("<input type=\"hidden\" name=\"status\" value=\"active\">")
    );
    assert_eq!(api_keys(&app, &key).await[0]["status"], "disabled");
    let on = tab
        .post(&format!("{path}/status"), &[("status", "active")])
        .await;
    assert_eq!(on.status, StatusCode::OK);
    assert_eq!(api_keys(&app, &key).await[0]["status"], "active");

    // Another owner's key, and ids that are none: not found, for every action, and
    // the other owner's key is untouched.
    let junk = "x".repeat(5000);
    for other in [foreign.as_str(), "not-an-id", "%01%02%7F", junk.as_str()] {
        let page = tab.get(&format!("/admin/provider-keys/{other}")).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{other}");
        assert!(page.body.contains("data-status=\"404\""));
        for (action, fields) in [
            ("", vec![("level", "9")]),
            ("/status", vec![("status", "disabled")]),
            ("/discover", vec![]),
            ("/delete", vec![]),
        ] {
            let answer = tab
                .post(&format!("/admin/provider-keys/{other}{action}"), &fields)
                .await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{other}{action}");
        }
    }
    let theirs = &api_keys(&app, &globex).await[0];
    assert_eq!(
        (&theirs["status"], &theirs["level"]),
        (&json!("active"), &json!(1))
    );

    // A form without the session's token changes nothing.
    let forged = tab
        .send(
            Method::POST,
            &format!("{path}/delete"),
            Some(&[("csrf", &"0".repeat(64))]),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(api_keys(&app, &key).await.len(), 2);

    // Deleted: back to the list, gone from the API.
    let gone = tab.post(&format!("{path}/delete"), &[]).await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    assert_eq!(gone.location, "/admin/provider-keys");
    let (status, _) = app
        .call(Method::GET, format!("/x-keys/{id}"), key.clone(), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(tab.get(&path).await.status, StatusCode::NOT_FOUND);

    // Paging: twenty to a page.
    for n in 0..20 {
        let (status, _) = app
            .post(
                "/x-keys",
                &key,
                json!({"provider": "anthropic", "base_url": common::UPSTREAM, "secret": format!("sk-many-{n:04}-abcdef"), "models": ["claude-*"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let first = tab.get("/admin/provider-keys").await;
    assert_eq!(first.body.matches("<tr data-key=").count(), 20);
    assert!(
        first
            .body
            .contains("href=\"/admin/provider-keys?page=1\" rel=\"next\"")
    );
    let second = tab.get("/admin/provider-keys?page=1").await;
    assert_eq!(second.body.matches("<tr data-key=").count(), 1);
    assert!(second.body.contains("rel=\"prev\""));
    assert!(!second.body.contains("rel=\"next\""));
    for odd in ["?page=4000000000", "?page=-1", "?page=%00"] {
        let page = tab.get(&format!("/admin/provider-keys{odd}")).await;
        assert_eq!(page.status, StatusCode::OK, "{odd}");
    }

    // A sub-account: every page and form is the service's 403.
    let (status, child) = app.post("/x-users", &key, json!({"name": "team"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut sub = Tab::signed_in(&router, child["api_key"].as_str().unwrap()).await;
    let dead_path = format!("/admin/provider-keys/{dead_id}");
    for answer in [
        sub.get("/admin/provider-keys").await,
        sub.get(&dead_path).await,
        sub.post("/admin/provider-keys", &add_form(&base_url, SECRET))
            .await,
        sub.post(&format!("{dead_path}/delete"), &[]).await,
    ] {
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
        assert!(
            answer
                .body
                .contains("only a main account manages provider keys")
        );
    }
    // The operator holds none.
    let mut root = Tab::signed_in(&router, &app.root).await;
    let answer = root.get("/admin/provider-keys").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("the operator holds no provider keys"));
    assert_eq!(
        api_keys(&app, &key).await.len(),
        21,
        "nothing added by them"
    );

    for body in tab.seen.iter().chain(&sub.seen) {
        assert!(!body.contains(SECRET), "a page shows the secret");
    }
}

/// Every refusal of the add and change forms: 422, the API's message next to its
/// field, the form back with everything typed but the secret, nothing stored.
async fn provider_key_forms_refuse_beside_the_field(url: &str) {
    let app = App::new(url).await;
    let router = router(&app);
    let (_, key) = main_account(&app, "acme").await;
    let mut tab = Tab::signed_in(&router, &key).await;
    let base = "https://api.example.com/v1";
    let long_url = format!("https://api.example.com/{}", "a".repeat(3000));
    let long_secret = format!("{SECRET}{}", "s".repeat(5000));
    let control_secret = format!("{SECRET}\u{1}");
    let many_models = (0..300)
        .map(|n| format!("m{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let cases: Vec<(Form, &str, &str)> = vec![
        (
            with(add_form(base, SECRET), "provider", "bogus"),
            "provider",
            "provider must be",
        ),
        (
            with(
                add_form(base, SECRET),
                "base_url",
                "http://user:pw@api.example.com/v1",
            ),
            "base_url",
            "must not carry credentials",
        ),
        (
            with(add_form(base, SECRET), "base_url", "not a url"),
            "base_url",
            "is not a valid URL",
        ),
        (
            with(add_form(base, SECRET), "base_url", "ftp://api.example.com"),
            "base_url",
            "must use http or https",
        ),
        (
            with(add_form(base, SECRET), "base_url", &long_url),
            "base_url",
            "longer than 2048",
        ),
        (
            with(
                add_form(base, SECRET),
                "base_url",
                "https://api.example.com/v1?x=\u{7}",
            ),
            "base_url",
            "must not have a query",
        ),
        (add_form(base, ""), "secret", "secret is required"),
        (add_form(base, &control_secret), "secret", "secret must be"),
        (add_form(base, &long_secret), "secret", "secret must be"),
        (
            with(add_form(base, SECRET), "models", " , \n"),
            "models",
            "models must list",
        ),
        (
            with(add_form(base, SECRET), "models", "gpt*4"),
            "models",
            "models:",
        ),
        (
            with(add_form(base, SECRET), "models", "gpt\u{0}4"),
            "models",
            "models:",
        ),
        (
            with(add_form(base, SECRET), "models", &many_models),
            "models",
            "models must list",
        ),
        (
            with(add_form(base, SECRET), "level", "1001"),
            "level",
            "level must be 0-1000",
        ),
        (
            with(add_form(base, SECRET), "level", "-1"),
            "level",
            "level",
        ),
        (
            with(add_form(base, SECRET), "level", "99999999999999999999999"),
            "level",
            "level",
        ),
        (
            with(add_form(base, SECRET), "level", "two"),
            "level",
            "level",
        ),
        (
            with(add_form(base, SECRET), "weight", "0"),
            "weight",
            "weight must be 1-1000",
        ),
        (
            with(add_form(base, SECRET), "weight", "1.5"),
            "weight",
            "weight",
        ),
    ];
    for (form, field, says) in &cases {
        let answer = tab.post("/admin/provider-keys", form).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            answer.body
        );
        let shown = error_of(&answer.body, field)
            .unwrap_or_else(|| panic!("no refusal beside {field}: {}", answer.body));
        assert!(shown.contains(says), "{field}: {shown}");
        assert!(
            answer
                .body
                .contains(&format!("aria-describedby=\"{field}-error\"")),
            "{field}"
        );
        // Every field but the secret comes back as typed.
        for (name, value) in form {
            match *name {
                "secret" => {
                    if !value.is_empty() {
                        assert!(!answer.body.contains(value), "the secret is filled back");
                    }
                }
                "models" => assert!(
                    answer
                        .body
                        .contains(&format!(">{}</textarea>", escaped(value))),
                    "{field}"
                ),
                "provider" => {}
                _ => assert!(
                    answer
                        .body
                        .contains(&format!("value=\"{}\"", escaped(value))),
                    "{name} kept ({field})"
                ),
            }
        }
    }
    assert!(api_keys(&app, &key).await.is_empty(), "nothing stored");
    // The same message as the API's for the same request.
    let (status, api) = app
        .post(
            "/x-keys",
            &key,
            json!({"provider": "openai", "base_url": "http://user:pw@api.example.com/v1", "secret": SECRET, "models": ["x"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer = tab
        .post(
            "/admin/provider-keys",
            &with(
                add_form(base, SECRET),
                "base_url",
                "http://user:pw@api.example.com/v1",
            ),
        )
        .await;
    assert_eq!(
        error_of(&answer.body, "base_url").as_deref(),
        api["error"]["message"].as_str()
    );
    // A form larger than any page sends: refused whole, nothing stored.
    let huge = "m,".repeat(40_000);
    let answer = tab
        .post(
            "/admin/provider-keys",
            &with(add_form(base, SECRET), "models", &huge),
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(api_keys(&app, &key).await.is_empty());

    // The change form: each refusal beside its field, the key unchanged.
    let (status, pk) = app
        .post(
            "/x-keys",
            &key,
            json!({"provider": "openai", "base_url": base, "secret": SECRET, "models": ["gpt-4o"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pk}");
    let path = format!("/admin/provider-keys/{}", pk["id"].as_str().unwrap());
    for (fields, field, says) in [
        (
            [("models", ""), ("level", "1"), ("weight", "1")],
            "models",
            "models must list",
        ),
        (
            [("models", "a b"), ("level", "1"), ("weight", "1")],
            "models",
            "models:",
        ),
        (
            [("models", "gpt-4o"), ("level", "5000"), ("weight", "1")],
            "level",
            "level must be",
        ),
        (
            [("models", "gpt-4o"), ("level", "1"), ("weight", "0")],
            "weight",
            "weight must be",
        ),
        (
            [
                ("models", "gpt-4o"),
                ("level", "1"),
                ("weight", "\u{1b}[2J"),
            ],
            "weight",
            "weight",
        ),
    ] {
        let answer = tab.post(&path, &fields).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let shown = error_of(&answer.body, field)
            .unwrap_or_else(|| panic!("no refusal beside {field}: {}", answer.body));
        assert!(shown.contains(says), "{field}: {shown}");
    }
    let status = tab
        .post(&format!("{path}/status"), &[("status", "paused\u{7}")])
        .await;
    assert_eq!(status.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error_of(&status.body, "status")
            .unwrap()
            .contains("status must be")
    );
    let now = &api_keys(&app, &key).await[0];
    assert_eq!(
        (
            &now["models"],
            &now["level"],
            &now["weight"],
            &now["status"]
        ),
        (&json!(["gpt-4o"]), &json!(1), &json!(1), &json!("active")),
        "nothing changed"
    );
    for body in &tab.seen {
        assert!(!body.contains(SECRET), "a page shows the secret");
    }
}

/// Where upstreams may not be private, the base-URL rule's refusal shows beside the
/// field, word for word the API's.
async fn private_upstreams_are_refused_as_the_api_refuses_them(url: &str) {
    let app = App::with_upstreams(url, false).await;
    let router = router(&app);
    let (_, key) = main_account(&app, "acme").await;
    let mut tab = Tab::signed_in(&router, &key).await;
    for (base_url, says) in [
        (
            "http://127.0.0.1:8080/v1",
            "points at an address upstreams may not have",
        ),
        (
            "http://169.254.169.254/latest",
            "points at an address upstreams may not have",
        ),
        (
            "http://[fd00::1]/v1",
            "points at an address upstreams may not have",
        ),
        (
            "http://localhost:11434/v1",
            "names a local or internal host",
        ),
    ] {
        let answer = tab
            .post("/admin/provider-keys", &add_form(base_url, SECRET))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{base_url}"
        );
        let shown = error_of(&answer.body, "base_url").unwrap();
        assert!(shown.contains(says), "{shown}");
        let (_, api) = app
            .post(
                "/x-keys",
                &key,
                json!({"provider": "openai", "base_url": base_url, "secret": SECRET, "models": ["gpt-4o*", "o3"]}),
            )
            .await;
        assert_eq!(Some(shown.as_str()), api["error"]["message"].as_str());
        assert!(
            answer
                .body
                .contains(&format!("value=\"{}\"", escaped(base_url)))
        );
        assert!(!answer.body.contains(SECRET));
    }
    assert!(api_keys(&app, &key).await.is_empty());
}
