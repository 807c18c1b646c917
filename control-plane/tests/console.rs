//! The web console in process, over the real router and store (SQLite and Postgres):
//! sign-in and its cookie, refused and rate-limited sign-ins, sign-out, CSRF and
//! same-origin checks, expiry, the security headers on every answer, and the
//! service's refusals shown in pages (403, 404, inline field errors).

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use common::App;
use http_body_util::BodyExt;
use serde_json::json;
use switchyard_control_plane::console::{self, CONTENT_SECURITY_POLICY, ConsoleSettings};
use switchyard_control_plane::rest;
use switchyard_core::apikey::KeyHash;
use tower::ServiceExt;

const HOST: &str = "console.test";
const ORIGIN: &str = "http://console.test";

fn settings(secure_cookie: bool) -> ConsoleSettings {
    ConsoleSettings {
        idle: Duration::from_secs(30 * 60),
        absolute: Duration::from_secs(12 * 3600),
        secure_cookie,
        sign_in_failures: 3,
        trusted_proxies: Vec::new(),
    }
}

/// The REST routes and the console, as the control plane serves them.
fn router(app: &App, secure_cookie: bool) -> Router {
    rest::router(app.service.clone()).merge(console::router(
        app.service.clone(),
        settings(secure_cookie),
    ))
}

/// One browser request: from `client`, with the session `cookie` (if any), a form
/// body (if any) and an `Origin` (if any).
struct Visit<'a> {
    method: Method,
    path: &'a str,
    cookie: Option<&'a str>,
    form: Option<String>,
    origin: Option<&'a str>,
    client: [u8; 4],
    headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Visit<'a> {
    fn get(path: &'a str, cookie: Option<&'a str>) -> Self {
        Self {
            method: Method::GET,
            path,
            cookie,
            form: None,
            origin: None,
            client: [10, 0, 0, 9],
            headers: Vec::new(),
        }
    }

    fn post(path: &'a str, cookie: Option<&'a str>, fields: &[(&str, &str)]) -> Self {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        Self {
            method: Method::POST,
            path,
            cookie,
            form: Some(form),
            origin: Some(ORIGIN),
            client: [10, 0, 0, 9],
            headers: Vec::new(),
        }
    }

    fn from(mut self, client: [u8; 4]) -> Self {
        self.client = client;
        self
    }

    fn origin(mut self, origin: Option<&'a str>) -> Self {
        self.origin = origin;
        self
    }

    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    async fn send(self, router: &Router) -> (Response, String) {
        let mut request = Request::builder()
            .method(self.method)
            .uri(self.path)
            .header(header::HOST, HOST);
        if let Some(id) = self.cookie {
            request = request.header(header::COOKIE, format!("{}={id}", console::session::COOKIE));
        }
        if let Some(origin) = self.origin {
            request = request.header(header::ORIGIN, origin);
        }
        for (name, value) in self.headers {
            request = request.header(name, value);
        }
        let mut request = match self.form {
            Some(form) => request
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form)),
            None => request.body(Body::empty()),
        }
        .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((self.client, 40_000))));
        let response = router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (Response::from_parts(parts, Body::empty()), text)
    }
}

fn header_of(r: &Response, name: header::HeaderName) -> &str {
    r.headers()
        .get(name)
        .map_or("", |v| v.to_str().unwrap_or(""))
}

/// Every console answer carries the security headers; pages are not cached.
fn assert_protected(r: &Response, what: &str) {
    assert_eq!(
        header_of(r, header::CONTENT_SECURITY_POLICY),
        CONTENT_SECURITY_POLICY,
        "{what}"
    );
    assert_eq!(header_of(r, header::X_FRAME_OPTIONS), "DENY", "{what}");
    assert_eq!(
        header_of(r, header::REFERRER_POLICY),
        "no-referrer",
        "{what}"
    );
    assert_eq!(
        header_of(r, header::X_CONTENT_TYPE_OPTIONS),
        "nosniff",
        "{what}"
    );
    if !what.contains("/assets/") {
        assert_eq!(header_of(r, header::CACHE_CONTROL), "no-store", "{what}");
    }
}

fn location(r: &Response) -> &str {
    header_of(r, header::LOCATION)
}

/// Signs in with `key` from `client`: the session id from the cookie.
async fn sign_in(router: &Router, key: &str, client: [u8; 4]) -> String {
    let (r, body) = Visit::post("/sign-in", None, &[("key", key)])
        .from(client)
        .send(router)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location(&r), "/");
    let cookie = header_of(&r, header::SET_COOKIE);
    let id = cookie
        .strip_prefix("sy_console=")
        .and_then(|rest| rest.split(';').next())
        .unwrap();
    id.to_owned()
}

/// The CSRF token a signed-in page carries in its forms.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..at + 64].to_owned()
}

switchyard_tests::every_backend!(console_sessions, console_pages_use_the_service);

/// The console's routes are its own (none is a REST route), and every one answers
/// with the security headers, signed in or not.
#[tokio::test]
async fn every_console_route_is_its_own_and_protected() {
    let db = switchyard_tests::backends::TestDb::sqlite().unwrap();
    let app = App::new(&db.url).await;
    let router = router(&app, false);
    let root = sign_in(&router, &app.root, [10, 0, 2, 1]).await;
    for (path, methods) in console::routes() {
        assert!(
            rest::ROUTES.iter().all(|(rest_path, _)| rest_path != path),
            "{path} is a REST route"
        );
        let path = path.replace("{id}", "0190f2b4-0000-7000-8000-000000000000");
        for method in *methods {
            for cookie in [None, Some(root.as_str())] {
                let visit = match *method {
                    "GET" => Visit::get(&path, cookie),
                    _ => Visit::post(&path, cookie, &[]),
                };
                let (r, _) = visit.send(&router).await;
                assert_protected(&r, &format!("{method} {path}"));
            }
        }
    }
}

/// Sign-in, its cookie and what the store keeps, refused and limited sign-ins,
/// CSRF and origin checks, sign-out and expiry.
async fn console_sessions(url: &str) {
    let app = App::new(url).await;
    let router = router(&app, false);
    let (_, key) = app.owner("acme").await;

    // Unsigned: the pages send the browser to sign in; the headers are there.
    let (r, _) = Visit::get("/", None).send(&router).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/sign-in");
    assert_protected(&r, "/ unsigned");
    let (r, body) = Visit::get("/sign-in", None).send(&router).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_protected(&r, "/sign-in");
    assert!(body.contains("<label for=\"key\">"), "{body}");
    assert!(!body.contains("<script>"), "no inline script");
    for asset in ["/assets/console.css", "/assets/console.js"] {
        let (r, body) = Visit::get(asset, None).send(&router).await;
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert_protected(&r, asset);
        assert!(!body.is_empty());
    }

    // A wrong key is refused with the API's reason; repeated failures from one
    // address are answered 429 with a delay, even for the right key; another
    // address is unaffected.
    let wrong = Visit::post("/sign-in", None, &[("key", "sy-not-a-key")]).from([10, 0, 0, 1]);
    let (r, body) = wrong.send(&router).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(body.contains("invalid API key"), "{body}");
    assert!(body.contains("id=\"key-error\""), "{body}");
    for _ in 0..2 {
        let again = Visit::post("/sign-in", None, &[("key", "sy-not-a-key")]).from([10, 0, 0, 1]);
        assert_eq!(
            again.send(&router).await.0.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let (r, body) = Visit::post("/sign-in", None, &[("key", &key)])
        .from([10, 0, 0, 1])
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = header_of(&r, header::RETRY_AFTER).parse().unwrap();
    assert!(retry >= 1, "a delay is given");
    assert!(header_of(&r, header::SET_COOKIE).is_empty());

    // A sign-in from another site is refused before the key is looked at.
    let (r, _) = Visit::post("/sign-in", None, &[("key", &key)])
        .origin(Some("http://evil.example"))
        .from([10, 0, 0, 2])
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The cookie: HttpOnly, SameSite=Strict, Path=/, Secure only when configured.
    let (r, _) = Visit::post("/sign-in", None, &[("key", &key)])
        .from([10, 0, 0, 2])
        .send(&router)
        .await;
    let set = header_of(&r, header::SET_COOKIE).to_owned();
    let id = set
        .strip_prefix("sy_console=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 64, "256 random bits as hex");
    assert_eq!(
        set,
        format!("sy_console={id}; Path=/; HttpOnly; SameSite=Strict")
    );
    let secure = router_secure(&app);
    let (r, _) = Visit::post("/sign-in", None, &[("key", &key)])
        .from([10, 0, 0, 3])
        .send(&secure)
        .await;
    assert!(header_of(&r, header::SET_COOKIE).ends_with("; Secure"));

    // The store holds the id's hash, never the id or the key.
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let hashes: Vec<String> = sqlx::query_scalar("SELECT id_hash FROM console_sessions")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(hashes.contains(&KeyHash::of(&id).to_hex()));
    let dump: Vec<(String, String)> =
        sqlx::query_as("SELECT id_hash, csrf_token FROM console_sessions")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        dump.iter()
            .all(|(h, c)| *h != id && *c != id && !h.contains(&key))
    );

    // Signed in: the pages answer, with the headers; the key is not shown.
    for path in ["/", "/keys", "/accounts", "/admin/provider-keys"] {
        let (r, body) = Visit::get(path, Some(&id)).send(&router).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}: {body}");
        assert_protected(&r, path);
        assert!(body.contains("acme"), "{path}");
        assert!(!body.contains(&key), "{path} shows the key");
    }

    // A state change needs the session's CSRF token and this site's origin.
    let (_, page) = Visit::get("/keys", Some(&id)).send(&router).await;
    let csrf = csrf_of(&page);
    let (r, _) = Visit::post("/keys", Some(&id), &[]).send(&router).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no token");
    let (r, _) = Visit::post("/keys", Some(&id), &[("csrf", &"0".repeat(64))])
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a wrong token");
    let (r, _) = Visit::post("/keys", Some(&id), &[("csrf", &csrf)])
        .origin(Some("http://evil.example"))
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "another origin");
    let (r, _) = Visit::post("/keys", Some(&id), &[("csrf", &csrf)])
        .origin(None)
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no origin at all");
    let (r, body) = Visit::post("/keys", Some(&id), &[("csrf", &csrf)])
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{body}");
    assert_protected(&r, "POST /keys");

    // Sign-out deletes the session: the old cookie is refused.
    let (r, _) = Visit::post("/sign-out", Some(&id), &[("csrf", &csrf)])
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(header_of(&r, header::SET_COOKIE).contains("Max-Age=0"));
    let (r, _) = Visit::get("/", Some(&id)).send(&router).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with("/sign-in"));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM console_sessions WHERE id_hash = $1")
        .bind(KeyHash::of(&id).to_hex())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);

    // Idle and absolute expiry.
    let idle = sign_in(&router, &key, [10, 0, 0, 4]).await;
    sqlx::query("UPDATE console_sessions SET last_seen_at = last_seen_at - $1 WHERE id_hash = $2")
        .bind(31_i64 * 60 * 1000)
        .bind(KeyHash::of(&idle).to_hex())
        .execute(&pool)
        .await
        .unwrap();
    let (r, _) = Visit::get("/", Some(&idle)).send(&router).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "idle too long");
    assert_eq!(location(&r), "/sign-in?ended=1");
    let old = sign_in(&router, &key, [10, 0, 0, 4]).await;
    sqlx::query("UPDATE console_sessions SET expires_at = last_seen_at - 1 WHERE id_hash = $1")
        .bind(KeyHash::of(&old).to_hex())
        .execute(&pool)
        .await
        .unwrap();
    let (r, _) = Visit::get("/keys", Some(&old)).send(&router).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "past its absolute end");

    // A revoked key ends the sessions opened with it.
    let (_, extra) = app.post("/x-self/keys", &key, json!({})).await;
    let extra_key = extra["api_key"].as_str().unwrap().to_owned();
    let extra_id = extra["key"]["id"].as_str().unwrap().to_owned();
    let session = sign_in(&router, &extra_key, [10, 0, 0, 5]).await;
    assert_eq!(
        Visit::get("/", Some(&session))
            .send(&router)
            .await
            .0
            .status(),
        StatusCode::OK
    );
    let (status, _) = app
        .call(
            Method::DELETE,
            format!("/x-self/keys/{extra_id}"),
            key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (r, _) = Visit::get("/", Some(&session)).send(&router).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the key was revoked");

    // The operator signs in with the root key.
    let root = sign_in(&router, &app.root, [10, 0, 0, 6]).await;
    let (r, body) = Visit::get("/accounts", Some(&root)).send(&router).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(body.contains("acme"), "the operator lists main accounts");
    let (r, body) = Visit::get("/keys", Some(&root)).send(&router).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        body.contains("the operator has no account of its own"),
        "{body}"
    );
    assert!(
        !body.contains("action=\"/keys\""),
        "no key form for the operator"
    );
}

fn router_secure(app: &App) -> Router {
    router(app, true)
}

/// Pages call the service: a policy wider than the parent's is refused next to
/// its field with the API's message; another main account's ids are not found; an
/// Admin page typed by a sub-account is not allowed; a new key is shown once.
async fn console_pages_use_the_service(url: &str) {
    let app = App::new(url).await;
    let router = router(&app, false);
    let (acme, key) = app.owner("acme").await;
    let acme_id = acme["account"]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .call(
            Method::PATCH,
            format!("/x-users/{acme_id}"),
            app.root.clone(),
            Some(json!({"policy": {"rpm": 100}})),
        )
        .await;
    assert_eq!(status, 200);
    let (globex, _) = app.owner("globex").await;
    let globex_id = globex["account"]["id"].as_str().unwrap().to_owned();

    let id = sign_in(&router, &key, [10, 0, 1, 1]).await;
    let (_, page) = Visit::get("/accounts", Some(&id)).send(&router).await;
    let csrf = csrf_of(&page);

    // Wider than its own: the same refusal as the API, next to the policy field.
    let (status, api) = app
        .post(
            "/x-users",
            &key,
            json!({"name": "team", "policy": {"rpm": 1000}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = api["error"]["message"].as_str().unwrap().to_owned();
    let (r, body) = Visit::post(
        "/accounts",
        Some(&id),
        &[
            ("csrf", &csrf),
            ("name", "team"),
            ("policy", r#"{"rpm": 1000}"#),
        ],
    )
    .send(&router)
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let escaped = message.replace('\'', "&#39;").replace('"', "&#34;");
    assert!(
        body.contains(&format!(
            "id=\"policy-error\" class=\"error\" role=\"alert\">{escaped}"
        )) || body.contains(&format!(
            "id=\"policy-error\" class=\"error\" role=\"alert\">{message}"
        )),
        "{message} next to the policy field: {body}"
    );
    assert!(
        body.contains("value=\"team\""),
        "the form keeps what was typed"
    );
    // Not JSON, and a bad name: each next to its field.
    let (r, body) = Visit::post(
        "/accounts",
        Some(&id),
        &[("csrf", &csrf), ("name", "team"), ("policy", "{rpm")],
    )
    .send(&router)
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("id=\"policy-error\""), "{body}");
    let (r, body) = Visit::post("/accounts", Some(&id), &[("csrf", &csrf), ("name", " ")])
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("id=\"name-error\""), "{body}");

    // Within its own: created, its key shown once.
    let (r, body) = Visit::post(
        "/accounts",
        Some(&id),
        &[
            ("csrf", &csrf),
            ("name", "team"),
            ("policy", r#"{"rpm": 50}"#),
        ],
    )
    .send(&router)
    .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{body}");
    let at = body.find("id=\"new-key\"").unwrap();
    let child_key = body[at..]
        .split("value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap()
        .to_owned();
    assert!(switchyard_core::apikey::is_well_formed(&child_key));
    let (_, listed) = Visit::get("/accounts", Some(&id)).send(&router).await;
    assert!(listed.contains(">team</a>"));
    assert!(!listed.contains(&child_key), "shown once");

    // Paging: a page after the last shows none.
    let (r, body) = Visit::get("/accounts?page=5", Some(&id))
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(body.contains("None on this page"));

    // Another main account's id: not found, as in the API.
    let (r, body) = Visit::get(&format!("/accounts/{globex_id}"), Some(&id))
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "{body}");
    assert_protected(&r, "404");
    let (r, _) = Visit::get("/accounts/not-an-id", Some(&id))
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A key with an expiry in the past: the API's refusal next to the field.
    let (_, keys) = Visit::get("/keys", Some(&id)).send(&router).await;
    let (r, body) = Visit::post(
        "/keys",
        Some(&id),
        &[("csrf", &csrf_of(&keys)), ("expires", "2001-01-01")],
    )
    .send(&router)
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("id=\"expires-error\""), "{body}");
    assert!(body.contains("must be in the future"), "{body}");
    let next_year = switchyard_core::time::utc_day(switchyard_runtime::now_ms() + 365 * 86_400_000);
    let (r, body) = Visit::post(
        "/keys",
        Some(&id),
        &[("csrf", &csrf), ("expires", &next_year)],
    )
    .send(&router)
    .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{body}");
    assert!(body.contains(&format!("{next_year} 00:00 UTC")));

    // The sub-account signs in; the Admin page typed by hand is not allowed.
    let child = sign_in(&router, &child_key, [10, 0, 1, 2]).await;
    let (r, body) = Visit::get("/", Some(&child)).send(&router).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!body.contains("/admin/provider-keys"), "no Admin link");
    let (r, body) = Visit::get("/admin/provider-keys", Some(&child))
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("only a main account manages provider keys"),
        "{body}"
    );
    assert_protected(&r, "403");
    // Its parent is outside its tree.
    let (r, _) = Visit::get(&format!("/accounts/{acme_id}"), Some(&child))
        .send(&router)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Behind a trusted proxy the console believes its `X-Forwarded-For` (the sign-in
/// limit counts the browser, not the proxy) and its `X-Forwarded-Proto: https` (the
/// cookie is `Secure`); from any other peer both headers are ignored.
#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_the_scheme() {
    let db = switchyard_tests::backends::TestDb::sqlite().unwrap();
    let app = App::new(&db.url).await;
    let (_, key) = app.owner("acme").await;
    let router = rest::router(app.service.clone()).merge(console::router(
        app.service.clone(),
        ConsoleSettings {
            trusted_proxies: vec!["10.9.0.0/16".parse().unwrap()],
            ..settings(false)
        },
    ));
    let proxy = [10, 9, 0, 1];
    let sign_in = |client: [u8; 4], forwarded: &'static str, proto: &'static str, key: String| {
        let router = router.clone();
        async move {
            let fields = [("key", key.as_str())];
            let (r, _) = Visit::post("/sign-in", None, &fields)
                .from(client)
                .header("x-forwarded-for", forwarded)
                .header("x-forwarded-proto", proto)
                .send(&router)
                .await;
            r
        }
    };

    // The scheme: believed from the proxy only.
    let r = sign_in(proxy, "203.0.113.1", "https", key.clone()).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(header_of(&r, header::SET_COOKIE).ends_with("; Secure"));
    let r = sign_in([10, 0, 0, 5], "203.0.113.1", "https", key.clone()).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!header_of(&r, header::SET_COOKIE).contains("Secure"));
    let r = sign_in(proxy, "203.0.113.1", "http", key.clone()).await;
    assert!(!header_of(&r, header::SET_COOKIE).contains("Secure"));

    // The limit counts the browser behind the proxy: one browser's failures slow it
    // alone, not every browser the proxy carries.
    for _ in 0..3 {
        let r = sign_in(proxy, "203.0.113.7", "https", "sy-wrong".into()).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = sign_in(proxy, "203.0.113.7", "https", key.clone()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = sign_in(proxy, "203.0.113.8", "https", key.clone()).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "another browser");

    // A peer that is no proxy cannot shake the limit off by naming other clients.
    for n in 0..3 {
        let forwarded = ["198.51.100.1", "198.51.100.2", "198.51.100.3"][n];
        let r = sign_in([10, 0, 0, 7], forwarded, "https", "sy-wrong".into()).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = sign_in([10, 0, 0, 7], "198.51.100.4", "https", key).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}
