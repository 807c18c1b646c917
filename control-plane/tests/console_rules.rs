//! The console's Admin rules editor, audit log and data-planes pages in process, over
//! the real router and store (SQLite and Postgres): a save of every section, every
//! refusal shown beside its section (422) with nothing changed, hostile inputs, the
//! compare-and-set conflict between two admins, the audit entries with their before
//! and after, and the data planes and key health. In a real browser:
//! `tests/tests/console_rules.rs`.

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
use common::{App, UPSTREAM};
use console_tab::Tab;
use serde_json::{Value, json};

/// A signed-in tab's GET: the status, the `Location` and the page.
async fn visit(tab: &mut Tab, path: &str) -> (StatusCode, String, String) {
    let a = tab.get(path).await;
    (a.status, a.location, a.body)
}

/// The value of the first `name="<field>" value="…"` in a page.
fn field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.find(&marker).unwrap() + marker.len();
    page[at..].split('"').next().unwrap().to_owned()
}

/// The text of the element with `id` (up to its first `<`).
fn text_by_id(page: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = page.find(&marker);
    assert!(at.is_some(), "no #{id} in {page}");
    let at = at.unwrap();
    let start = at + page[at..].find('>').unwrap() + 1;
    page[start..].split('<').next().unwrap().to_owned()
}

/// The editor as a signed-in admin drives it: save one section at the revision
/// the page shows.
struct Editor {
    tab: Tab,
}

impl Editor {
    /// A session of the admin holding `key`.
    async fn signed_in(router: &Router, key: &str) -> Self {
        Self {
            tab: Tab::signed_in(router, key).await,
        }
    }

    async fn page(&mut self) -> (StatusCode, String) {
        let (status, _, page) = visit(&mut self.tab, "/admin/rules").await;
        (status, page)
    }

    /// Posts `fields` for `section` at `revision` (the page's when `None`).
    async fn save_at(
        &mut self,
        section: &str,
        revision: Option<&str>,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let (_, page) = self.page().await;
        let current = field(&page, "revision");
        let mut all = vec![
            ("section", section),
            ("revision", revision.unwrap_or(&current)),
        ];
        all.extend_from_slice(fields);
        let a = self.tab.post("/admin/rules", &all).await;
        (a.status, a.location, a.body)
    }

    async fn save(&mut self, section: &str, value: &str) -> (StatusCode, String, String) {
        self.save_at(section, None, &[("value", value)]).await
    }
}

switchyard_tests::every_backend!(
    every_section_saves_and_every_refusal_is_shown,
    two_admins_conflict_and_the_audit_shows_both,
    data_planes_and_key_health
);

/// A main account with provider keys at levels 2 and 3, its key and a sub-account's.
async fn owner(app: &App) -> (String, String) {
    let (_, key) = app.owner("acme").await;
    for level in [2, 3] {
        let (status, v) = app
            .post(
                "/x-keys",
                &key,
                json!({"provider": "openai", "base_url": UPSTREAM, "secret": "sk-level-secret-987654", "models": ["*"], "level": level}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let (_, child) = app.post("/x-users", &key, json!({"name": "team"})).await;
    (key, child["api_key"].as_str().unwrap().to_owned())
}

/// Each section saves through its form (the stored rules are what REST reads back);
/// every refusal comes back as the page with the service's message beside the
/// section, status 422, and changes nothing; only a main account has the editor.
async fn every_section_saves_and_every_refusal_is_shown(url: &str) {
    let app = App::new(url).await;
    let router = console_tab::router(&app);
    let (key, child_key) = owner(&app).await;
    let mut editor = Editor::signed_in(&router, &key).await;
    let (status, page) = editor.page().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(field(&page, "revision"), "0");
    for section in switchyard_core::rules::SECTIONS {
        assert!(
            page.contains(&format!("name=\"section\" value=\"{section}\"")),
            "a form for {section}"
        );
    }

    for (section, value) in [
        ("model_mapper", r#"{"alias": "gpt-4o"}"#),
        ("level_mapper", r#"{"gpt*": 2, "*": 3}"#),
        ("switch_over", r#"{"2": 3}"#),
        ("resources", r#"["/v1/chat/completions", "/v1/models"]"#),
        ("model_limits", r#"{"gpt*": {"rpm": 5, "tpm": 1000}}"#),
        (
            "pricing",
            r#"{"gpt*": {"input_per_million_nanos": 1, "cached_input_per_million_nanos": 0, "output_per_million_nanos": 2, "per_request_nanos": 7}}"#,
        ),
        ("forward_headers", r#"["X-Trace"]"#),
    ] {
        let (status, location, page) = editor.save(section, value).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{section}: {page}");
        assert_eq!(location, format!("/admin/rules?saved={section}#{section}"));
        let (_, rest) = app
            .call(
                Method::GET,
                format!("/x-config/{section}"),
                key.clone(),
                None,
            )
            .await;
        let mut want: Value = serde_json::from_str(value).unwrap();
        if section == "forward_headers" {
            want = json!(["x-trace"]);
        }
        assert_eq!(rest, want, "{section} as REST reads it");
    }
    let (status, _, page) = editor
        .save_at(
            "limits",
            None,
            &[
                ("default_max_output_tokens", "4096"),
                ("when_store_down", "fail_open"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (_, limits) = app
        .call(Method::GET, "/x-config/limits".into(), key.clone(), None)
        .await;
    assert_eq!(
        limits,
        json!({"default_max_output_tokens": 4096, "when_store_down": "fail_open"})
    );
    let (_, _, page) = visit(&mut editor.tab, "/admin/rules?saved=pricing").await;
    assert!(page.contains("Pricing saved."));
    assert_eq!(field(&page, "revision"), "8");
    assert!(page.contains("&#34;per_request_nanos&#34;: 7"), "{page}");
    assert!(page.contains("<option value=\"fail_open\" selected>"));
    assert!(
        page.contains("<option value=\"on\" selected>"),
        "quota headers on"
    );
    // The quota headers turned off, and the form shows them off.
    let (status, _, page) = editor
        .save_at(
            "limits",
            None,
            &[("when_store_down", "fail_open"), ("quota_headers", "off")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (_, limits) = app
        .call(Method::GET, "/x-config/limits".into(), key.clone(), None)
        .await;
    assert_eq!(
        limits,
        json!({"when_store_down": "fail_open", "quota_headers": false})
    );
    let (_, _, page) = visit(&mut editor.tab, "/admin/rules").await;
    assert!(page.contains("<option value=\"off\" selected>"), "{page}");

    // Refusals: beside their section, 422, nothing stored.
    let revision = app.count("SELECT revision FROM config_revision").await;
    let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
    let huge_name = "m".repeat(300);
    let huge_mapping = format!(r#"{{"{huge_name}": "gpt-4o"}}"#);
    for (section, value, said) in [
        ("model_mapper", "{", "not valid JSON"),
        ("model_mapper", deep.as_str(), "recursion limit exceeded"),
        ("model_mapper", r#"{"a": "b", "b": "a"}"#, "mapping cycle"),
        ("model_mapper", "{\"a\u{1}\": \"b\"}", "control character"),
        ("model_mapper", r#"{"a\u0001": "b"}"#, "model_mapper"),
        ("model_mapper", huge_mapping.as_str(), "model_mapper"),
        ("model_mapper", r#"["not", "a", "map"]"#, "invalid type"),
        (
            "level_mapper",
            r#"{"gpt*": 9}"#,
            "level 9 has no provider key",
        ),
        ("switch_over", r#"{"2": 3, "3": 2}"#, "never ends"),
        (
            "pricing",
            r#"{"m": {"input_per_million_nanos": -1}}"#,
            "invalid value",
        ),
        ("model_limits", r#"{"m": {"rpm": "many"}}"#, "invalid type"),
        ("forward_headers", r#"["bad header"]"#, "forward_headers"),
    ] {
        let (status, _, page) = editor.save(section, value).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{section} {value}"
        );
        let message = text_by_id(&page, &format!("{section}-error"));
        assert!(
            message.contains(said),
            "{section} {value:.40}: {message} should say {said}"
        );
        assert!(
            page.contains(&format!(
                "aria-describedby=\"{section}-help {section}-error\""
            )),
            "{section}: the box names its error"
        );
    }
    for (fields, said) in [
        (
            [
                ("default_max_output_tokens", "lots"),
                ("when_store_down", "fail_open"),
            ],
            "is not a whole number",
        ),
        (
            [
                ("default_max_output_tokens", "99999999"),
                ("when_store_down", "fail_open"),
            ],
            "default_max_output_tokens",
        ),
        (
            [
                ("default_max_output_tokens", ""),
                ("when_store_down", "sometimes"),
            ],
            "unknown variant",
        ),
    ] {
        let (status, _, page) = editor.save_at("limits", None, &fields).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let message = text_by_id(&page, "limits-error");
        assert!(message.contains(said), "{message} should say {said}");
    }
    // An unknown section is refused at the top of the page.
    let (status, _, page) = editor.save("levels", "{}").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("unknown section &#34;levels&#34;"), "{page}");
    // A form that lost its revision, and one past the service's bounds.
    let (status, _, page) = editor
        .save_at("model_mapper", Some("x"), &[("value", "{}")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text_by_id(&page, "model_mapper-error").contains("reload the page"));
    let (status, _, _) = editor
        .save_at("model_mapper", Some("-4"), &[("value", "{}")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A body past the form limit, and a form without its CSRF token.
    let huge = "x".repeat(70 * 1024);
    let (status, _, _) = editor.save("model_mapper", &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let refused = editor
        .tab
        .send(
            Method::POST,
            "/admin/rules",
            Some(&[
                ("section", "model_mapper"),
                ("revision", "8"),
                ("value", "{}"),
            ]),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.count("SELECT revision FROM config_revision").await,
        revision,
        "no refused save changed anything"
    );

    // An empty box clears its section.
    let (status, _, _) = editor.save("resources", "  ").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, resources) = app
        .call(Method::GET, "/x-config/resources".into(), key.clone(), None)
        .await;
    assert_eq!(resources, Value::Null);

    // A sub-account and the operator get the service's refusal.
    for other in [child_key.as_str(), app.root.as_str()] {
        let mut session = Tab::signed_in(&router, other).await;
        let (status, _, page) = visit(&mut session, "/admin/rules").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
        let refused = session
            .post(
                "/admin/rules",
                &[
                    ("section", "model_mapper"),
                    ("revision", "0"),
                    ("value", "{}"),
                ],
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    }
}

/// Two admins read the same revision; the second to save is refused with the
/// conflict message and sees the value now stored beside the one it posted; saving
/// again (now at the current revision) applies. The audit page shows both changes,
/// field by field, pages through older entries and never shows a secret.
async fn two_admins_conflict_and_the_audit_shows_both(url: &str) {
    let app = App::new(url).await;
    let router = console_tab::router(&app);
    let (key, child_key) = owner(&app).await;
    let mut first = Editor::signed_in(&router, &key).await;
    let mut second = Editor::signed_in(&router, &key).await;
    let (_, page) = first.page().await;
    let read_at = field(&page, "revision");
    assert_eq!(read_at, "0");

    let (status, _, _) = second.save("model_mapper", r#"{"alias": "theirs"}"#).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, page) = first
        .save_at(
            "model_mapper",
            Some(&read_at),
            &[("value", r#"{"alias": "mine"}"#)],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = text_by_id(&page, "model_mapper-error");
    assert!(
        message
            .contains("another admin saved these rules at revision 1; your edit was not applied"),
        "{message}"
    );
    let mine = text_by_id(&page, "model_mapper-value");
    assert!(mine.contains("mine"), "the posted value stays: {mine}");
    assert!(page.contains("Saved now (revision 1)"));
    let now_at = page.find("aria-labelledby=\"model_mapper-now\"").unwrap();
    assert!(
        page[now_at..].contains("theirs"),
        "the stored value beside it"
    );
    assert_eq!(
        field(&page, "revision"),
        "1",
        "the form now carries the current revision"
    );
    let (_, stored) = app
        .call(
            Method::GET,
            "/x-config/model_mapper".into(),
            key.clone(),
            None,
        )
        .await;
    assert_eq!(stored, json!({"alias": "theirs"}));
    // Saving again, knowingly over revision 1, applies.
    let (status, _, _) = first
        .save_at(
            "model_mapper",
            Some("1"),
            &[("value", r#"{"alias": "mine"}"#)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // The audit page: both changes, newest first, with before and after.
    let (status, _, audit) = visit(&mut first.tab, "/admin/audit").await;
    assert_eq!(status, StatusCode::OK);
    let mine_at = audit
        .find("class=\"after\">{&#34;alias&#34;:&#34;mine&#34;}")
        .unwrap();
    let theirs_at = audit
        .find("class=\"after\">{&#34;alias&#34;:&#34;theirs&#34;}")
        .unwrap();
    assert!(mine_at < theirs_at, "newest first");
    assert!(
        audit.contains("class=\"before\">{&#34;alias&#34;:&#34;theirs&#34;}"),
        "the second change names what it replaced"
    );
    assert!(
        audit.contains("<code class=\"before\">—</code>"),
        "the first save had no mapper before"
    );
    assert_eq!(audit.matches("<code>rules.update</code>").count(), 2);
    assert!(
        audit.contains("<code>provider_key.create</code>"),
        "{audit}"
    );
    assert!(!audit.contains("sk-level-secret"), "no secret on the page");
    assert!(!audit.contains("sk-abc-123456789"), "no secret on the page");

    // Enough changes for a second page: the older page continues where the first ended.
    for n in 0..25 {
        let (status, v) = app
            .call(
                Method::PUT,
                format!("/x-config/forward_headers?key=x-h{n}"),
                key.clone(),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    let (_, _, newest) = visit(&mut first.tab, "/admin/audit").await;
    assert_eq!(
        newest.matches("class=\"card audit-entry\"").count(),
        20,
        "a page of entries"
    );
    let older = newest
        .split("href=\"/admin/audit?before=")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let (status, _, page2) = visit(&mut first.tab, &format!("/admin/audit?before={older}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page2.contains("&#34;alias&#34;:&#34;theirs&#34;"));
    assert!(page2.contains("href=\"/admin/audit\">Newest"));
    for bad in ["abc", "-1", "99999999999999999999999"] {
        let (status, _, _) = visit(&mut first.tab, &format!("/admin/audit?before={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // A sub-account has no audit log of its own.
    let mut session = Tab::signed_in(&router, &child_key).await;
    let (status, _, _) = visit(&mut session, "/admin/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The data-planes page: the configuration revision, no data plane (none runs in
/// process), and the provider keys' reported health; a sub-account sees the
/// service's reason instead of key health.
async fn data_planes_and_key_health(url: &str) {
    let app = App::new(url).await;
    let router = console_tab::router(&app);
    let (key, child_key) = owner(&app).await;
    let mut session = Tab::signed_in(&router, &key).await;
    let (status, _, page) = visit(&mut session, "/admin/data-planes").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("No data plane is connected."));
    assert_eq!(
        page.matches("<span class=\"health\">unknown</span>")
            .count(),
        3
    );
    assert!(!page.contains("sk-level-secret"));
    let mut session = Tab::signed_in(&router, &child_key).await;
    let (status, _, page) = visit(&mut session, "/admin/data-planes").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("<span class=\"health\">"), "{page}");
}
