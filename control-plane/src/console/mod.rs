//! The web console: the Admin and Manage APIs as server-rendered pages for a browser,
//! served at `/` beside the REST routes. Every page calls the same [`Service`]
//! methods as REST, so rules, validation and authorisation exist once; a refusal is
//! shown with the API's own message next to the field it concerns.
//!
//! - [`session`]: sign-in with an issued (or the root) key, server-side sessions, the
//!   cookie, CSRF and same-origin checks.
//! - [`limiter`]: failed sign-ins per client address, in process and bounded.
//! - [`pages`]: one module per page: its routes, handlers and template data;
//!   `views`: what every page shares (the bar, refusals, money and time);
//!   `chart`: server-drawn SVG charts.
//!
//! Templates (`templates/`) and assets (`assets/`) are compiled into the binary;
//! nothing is loaded from elsewhere, which the Content-Security-Policy enforces.

mod chart;
pub mod limiter;
mod pages;
pub mod session;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::service::Service;
use limiter::SignInLimiter;

/// What every console answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const STYLESHEET: &str = include_str!("../../assets/console.css");
const SCRIPT: &str = include_str!("../../assets/console.js");

/// Operator choices for console sessions.
#[derive(Clone, Debug)]
pub struct ConsoleSettings {
    /// A session ends after this long without a request.
    pub idle: Duration,
    /// A session ends this long after sign-in, however active.
    pub absolute: Duration,
    /// Mark the session cookie `Secure` (the console is reached over HTTPS, through
    /// a proxy that terminates TLS); the control plane itself serves plain HTTP.
    pub secure_cookie: bool,
    /// Failed sign-ins from one address before it must wait.
    pub sign_in_failures: u32,
    /// Proxies in front of the console whose `X-Forwarded-For` names the client (for
    /// the sign-in limit) and whose `X-Forwarded-Proto: https` marks the cookie
    /// `Secure`. None by default: the TCP peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
            secure_cookie: false,
            sign_in_failures: 5,
            trusted_proxies: Vec::new(),
        }
    }
}

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    service: Arc<Service>,
    settings: Arc<ConsoleSettings>,
    limiter: Arc<SignInLimiter>,
}

/// The console's own routes beside the pages'.
const FIXED_ROUTES: &[(&str, &[&str])] = &[
    ("/sign-in", &["GET", "POST"]),
    ("/sign-out", &["POST"]),
    ("/assets/console.css", &["GET"]),
    ("/assets/console.js", &["GET"]),
];

/// Every console route and its methods (none collides with the REST routes).
pub fn routes() -> impl Iterator<Item = &'static (&'static str, &'static [&'static str])> {
    FIXED_ROUTES
        .iter()
        .chain(pages::ROUTES.iter().flat_map(|m| m.iter()))
}

pub fn router(service: Arc<Service>, settings: ConsoleSettings) -> Router {
    let console = Console {
        service,
        limiter: Arc::new(SignInLimiter::new(settings.sign_in_failures)),
        settings: Arc::new(settings),
    };
    Router::new()
        .merge(pages::routes())
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/sign-out", post(session::sign_out))
        .route(
            "/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLESHEET) }),
        )
        .route(
            "/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        // Counted with the API calls, under their route patterns.
        .route_layer(axum::middleware::from_fn(crate::metric::track))
        .layer(axum::middleware::map_response(protect))
        .with_state(console)
}

/// An embedded asset; it changes only with the binary.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The headers every console answer carries; pages are never cached.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, value);
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
