//! A signed-in browser tab for the console's in-process page suites (every one but
//! `console.rs`, whose subject is the sign-in and its session itself): a session
//! opened through the real sign-in form, forms posted with the session's CSRF token
//! and this console's origin, and every page body kept so a suite can say what no
//! page ever showed.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use switchyard_control_plane::console::{self, ConsoleSettings};
use switchyard_control_plane::rest;
use tower::ServiceExt;

use crate::common::App;

const HOST: &str = "console.test";
const ORIGIN: &str = "http://console.test";

/// One answer: status, `Location` (redirects), every header and body.
pub struct Answer {
    pub status: StatusCode,
    pub location: String,
    pub headers: HeaderMap,
    pub body: String,
}

/// A signed-in browser tab: its session cookie and CSRF token; every page body it
/// was sent is kept, so a suite can say what no page ever showed.
pub struct Tab {
    router: Router,
    cookie: String,
    csrf: String,
    pub seen: Vec<String>,
}

impl Tab {
    pub async fn signed_in(router: &Router, key: &str) -> Self {
        let mut tab = Self {
            router: router.clone(),
            cookie: String::new(),
            csrf: String::new(),
            seen: Vec::new(),
        };
        let answer = tab
            .send(Method::POST, "/sign-in", Some(&[("key", key)]))
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let home = tab.get("/").await;
        let at = home.body.find("name=\"csrf\" value=\"").unwrap() + 19;
        tab.csrf = home.body[at..at + 64].to_owned();
        tab
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, ORIGIN);
        if !self.cookie.is_empty() {
            request = request.header(
                header::COOKIE,
                format!("{}={}", console::session::COOKIE, self.cookie),
            );
        }
        let body = form.map_or_else(Body::empty, |fields| {
            Body::from(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(fields)
                    .finish(),
            )
        });
        let mut request = request
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 3, 1], 40_000))));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let text = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let location = text(header::LOCATION);
        if let Some(id) = text(header::SET_COOKIE)
            .strip_prefix("sy_console=")
            .and_then(|rest| rest.split(';').next())
            .filter(|id| !id.is_empty())
        {
            self.cookie = id.to_owned();
        }
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        self.seen.push(body.clone());
        Answer {
            status: parts.status,
            location,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    /// A form posted from a page: the session's CSRF token added.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let csrf = self.csrf.clone();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.send(Method::POST, path, Some(&all)).await
    }
}

/// Text as askama escapes it in a page.
pub fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// The refusal shown next to `field` (its `<p id="{field}-error">`), unescaped.
pub fn error_of(page: &str, field: &str) -> Option<String> {
    let open = format!("<p id=\"{field}-error\" class=\"error\" role=\"alert\">");
    let at = page.find(&open)? + open.len();
    let text = &page[at..at + page[at..].find("</p>")?];
    Some(
        text.replace("&#34;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

pub fn router(app: &App) -> Router {
    rest::router(app.service.clone()).merge(console::router(
        app.service.clone(),
        ConsoleSettings::default(),
    ))
}

/// A main account made by the operator over REST, without provider keys: its id and key.
pub async fn main_account(app: &App, name: &str) -> (String, String) {
    let (status, created) = app.post("/x-users", &app.root, json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["account"]["id"].as_str().unwrap().to_owned(),
        created["api_key"].as_str().unwrap().to_owned(),
    )
}
