//! Console sessions: sign-in with a key (used once to recognise the caller, never
//! kept), a random session id in a cookie whose hash alone is stored, idle and
//! absolute expiry, and the checks every state change passes (same origin, the
//! session's CSRF token).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use switchyard_core::apikey::KeyHash;
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::{AccountId, IssuedKeyId};
use switchyard_runtime::now_ms;

use super::views::{self, Nav, SignInPage};
use super::{Console, ConsoleSettings};
use crate::service::{ApiError, Caller};
use crate::store::SessionRecord;

/// The session cookie's name.
pub const COOKIE: &str = "sy_console";

/// The largest form body a console page accepts.
const MAX_FORM: usize = 64 * 1024;

/// A fresh random 256-bit secret, as hex.
fn secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What the store keeps of a session id.
pub fn id_hash(id: &str) -> String {
    KeyHash::of(id).to_hex()
}

/// Whether a session is still alive at `now_ms`.
pub fn is_live(s: &SessionRecord, idle_ms: i64, now_ms: i64) -> bool {
    now_ms < s.expires_at_ms && now_ms < s.last_seen_at_ms.saturating_add(idle_ms)
}

/// The `Set-Cookie` value that holds `id`, or (for `None`) removes the cookie.
pub fn cookie(id: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// The session id the request's cookies carry.
fn cookie_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a state-changing request comes from a page of this console: its `Origin`
/// (or `Referer`) names the host it was sent to (`Host`, or an HTTP/2 request's
/// authority). A browser sends `Origin: null` for a
/// form under `Referrer-Policy: no-referrer`; then `Sec-Fetch-Site` must say
/// `same-origin`. A request that shows none of these is refused.
pub fn same_origin(headers: &HeaderMap, authority: Option<&str>) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = text("host").or(authority) else {
        return false;
    };
    let authority = |url: &str| {
        url.strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .map(|rest| rest.split('/').next().unwrap_or_default().to_owned())
    };
    if let Some(origin) = text("origin").filter(|o| *o != "null") {
        return authority(origin).is_some_and(|a| a.eq_ignore_ascii_case(host));
    }
    if let Some(referer) = text("referer") {
        return authority(referer).is_some_and(|a| a.eq_ignore_ascii_case(host));
    }
    text("sec-fetch-site") == Some("same-origin")
}

/// The client's address (the peer; no proxy in front is trusted).
fn peer_addr(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Where a request came from as far as the console can believe it: the client's
/// address (from `X-Forwarded-For` when the peer is one of the trusted proxies) and
/// whether the browser reached it over HTTPS (the operator says so for every request,
/// or a trusted proxy's `X-Forwarded-Proto` does).
pub struct Origin {
    pub client: IpAddr,
    pub https: bool,
}

impl Origin {
    pub fn of(parts: &Parts, settings: &ConsoleSettings) -> Self {
        let peer = peer_addr(parts);
        let trusted = &settings.trusted_proxies;
        let from_proxy = trusted.iter().any(|n| n.contains(&peer));
        let text = |name: &'static str| {
            parts
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
        };
        let client = switchyard_core::request::client_ip(peer, text("x-forwarded-for"), trusted);
        // The proxy nearest the console appends last: its word is the one believed.
        let forwarded_https = from_proxy
            && text("x-forwarded-proto")
                .flat_map(|v| v.split(','))
                .next_back()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        Self {
            client,
            https: settings.secure_cookie || forwarded_https,
        }
    }
}

/// A signed-in browser: who it acts as (recognised again on every request, so a
/// revoked key or a disabled account ends its sessions) and its session.
pub struct Signed {
    pub caller: Caller,
    pub session: SessionRecord,
    /// The browser reached the console over HTTPS (see [`Origin`]).
    pub https: bool,
}

impl Signed {
    pub fn nav(&self, active: &'static str) -> Nav {
        Nav::new(&self.caller, &self.session.csrf_token, active)
    }
}

/// Why a request has no usable session: the browser goes to the sign-in page.
fn to_sign_in(ended: bool, secure: bool) -> Response {
    let target = if ended {
        "/sign-in?ended=1"
    } else {
        "/sign-in"
    };
    let mut response = Redirect::to(target).into_response();
    if ended && let Ok(v) = HeaderValue::from_str(&cookie(None, secure)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

impl FromRequestParts<Console> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let secure = Origin::of(parts, &console.settings).https;
        let Some(id) = cookie_id(&parts.headers) else {
            return Err(to_sign_in(false, secure));
        };
        let hash = id_hash(id);
        let store = console.service.store();
        let session = match store.session(&hash).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(to_sign_in(true, secure)),
            Err(e) => return Err(views::failure(&ApiError::from(e))),
        };
        let now = now_ms();
        let idle = i64::try_from(console.settings.idle.as_millis()).unwrap_or(i64::MAX);
        if !is_live(&session, idle, now) {
            if let Err(e) = store.delete_session(&hash).await {
                return Err(views::failure(&ApiError::from(e)));
            }
            return Err(to_sign_in(true, secure));
        }
        let caller = match caller_of(console, &session, now).await {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::Unauthenticated | ErrorCode::PermissionDenied
                ) =>
            {
                if let Err(e) = store.delete_session(&hash).await {
                    return Err(views::failure(&ApiError::from(e)));
                }
                return Err(to_sign_in(true, secure));
            }
            Err(e) => return Err(views::failure(&e)),
        };
        if let Err(e) = store.touch_session(&hash, now).await {
            return Err(views::failure(&ApiError::from(e)));
        }
        Ok(Self {
            caller,
            session,
            https: secure,
        })
    }
}

/// The caller a session stands for, recognised by the same rules as a bearer key.
async fn caller_of(
    console: &Console,
    session: &SessionRecord,
    now_ms: i64,
) -> Result<Caller, ApiError> {
    let ended = || ApiError::new(ErrorCode::Unauthenticated, "the session has ended");
    match (&session.key_id, &session.root_mark) {
        (Some(key), _) => {
            let key: IssuedKeyId = key.parse().map_err(|_| ended())?;
            let caller = console.service.authenticate_issued_key(key, now_ms).await?;
            let same = match &caller {
                Caller::Account { account, .. } => {
                    session.account_id.as_deref() == Some(account.id.to_string().as_str())
                }
                Caller::Root => false,
            };
            if same { Ok(caller) } else { Err(ended()) }
        }
        (None, Some(mark)) if *mark == console.service.root_mark() => Ok(Caller::Root),
        _ => Err(ended()),
    }
}

/// A form posted from a signed-in page: the session, the same-origin check and the
/// session's CSRF token all pass before any handler sees the fields.
pub struct Posted {
    pub signed: Signed,
    pub form: Fields,
}

/// A form's fields (the last value of a repeated name wins).
pub struct Fields(HashMap<String, String>);

impl Fields {
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    async fn read(body: Body) -> Result<Self, Response> {
        let bytes = to_bytes(body, MAX_FORM).await.map_err(|_| {
            views::failure(&ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("a form is at most {MAX_FORM} bytes"),
            ))
        })?;
        Ok(Self(
            url::form_urlencoded::parse(&bytes).into_owned().collect(),
        ))
    }
}

fn forbidden_post() -> Response {
    views::failure(&ApiError::new(
        ErrorCode::PermissionDenied,
        "this form did not come from this console's page, or the page is stale; reload it and try again",
    ))
}

impl FromRequest<Console> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, console: &Console) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        if !same_origin(&parts.headers, parts.uri.authority().map(|a| a.as_str())) {
            return Err(forbidden_post());
        }
        let signed = Signed::from_request_parts(&mut parts, console).await?;
        let form = Fields::read(body).await?;
        let token = form.get("csrf");
        let expected = signed.session.csrf_token.as_bytes();
        // Equal lengths are compared in full, whatever the first difference.
        let matches = token.len() == expected.len()
            && token
                .bytes()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !matches {
            return Err(forbidden_post());
        }
        Ok(Self { signed, form })
    }
}

#[derive(serde::Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    ended: Option<String>,
}

/// `GET /sign-in` (a browser already signed in goes to the overview).
pub async fn sign_in_page(
    axum::extract::Query(q): axum::extract::Query<SignInQuery>,
    signed: Result<Signed, Response>,
) -> Response {
    if signed.is_ok() {
        return Redirect::to("/").into_response();
    }
    let notice = q
        .ended
        .map(|_| "Your session has ended; sign in again.".to_owned());
    views::page(
        StatusCode::OK,
        &SignInPage {
            error: None,
            notice,
        },
    )
}

/// `POST /sign-in`: the key recognises the caller once; a session is opened.
pub async fn sign_in(State(console): State<Console>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if !same_origin(&parts.headers, parts.uri.authority().map(|a| a.as_str())) {
        return forbidden_post();
    }
    let origin = Origin::of(&parts, &console.settings);
    let addr = origin.client;
    let now = now_ms();
    if let Err(wait_ms) = console.limiter.check(addr, now) {
        let secs = (wait_ms.saturating_add(999) / 1000).max(1);
        let mut response = views::page(
            StatusCode::TOO_MANY_REQUESTS,
            &SignInPage {
                error: Some(format!(
                    "Too many failed sign-ins from this address; try again in {secs} seconds."
                )),
                notice: None,
            },
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let form = match Fields::read(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let key = form.get("key").trim();
    let caller = match console
        .service
        .authenticate((!key.is_empty()).then_some(key), now)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            if matches!(
                e.code,
                ErrorCode::Unauthenticated | ErrorCode::PermissionDenied
            ) {
                console.limiter.record_failure(addr, now);
            }
            let status =
                StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            return views::page(
                status,
                &SignInPage {
                    error: Some(e.message),
                    notice: None,
                },
            );
        }
    };
    console.limiter.record_success(addr);
    let id = secret();
    let absolute = i64::try_from(console.settings.absolute.as_millis()).unwrap_or(i64::MAX);
    let idle = i64::try_from(console.settings.idle.as_millis()).unwrap_or(i64::MAX);
    let (account_id, key_id, root_mark) = match &caller {
        Caller::Root => (None, None, Some(console.service.root_mark())),
        Caller::Account { account, key } => {
            (Some(account.id.to_string()), Some(key.to_string()), None)
        }
    };
    let record = SessionRecord {
        id_hash: id_hash(&id),
        account_id,
        key_id,
        root_mark,
        created_at_ms: now,
        last_seen_at_ms: now,
        expires_at_ms: now.saturating_add(absolute),
        csrf_token: secret(),
    };
    let store = console.service.store();
    // Sessions that ended are removed as new ones begin.
    if let Err(e) = store.purge_sessions(now, now.saturating_sub(idle)).await {
        tracing::warn!(error = %e, "could not remove ended console sessions");
    }
    if let Err(e) = store.create_session(&record).await {
        return views::failure(&ApiError::from(e));
    }
    let who = match &caller {
        Caller::Root => "root".to_owned(),
        Caller::Account { account, .. } => account.id.to_string(),
    };
    tracing::info!(caller = %who, "console sign-in");
    let mut response = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie(Some(&id), origin.https)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// `POST /sign-out`: the session is deleted, the cookie cleared.
pub async fn sign_out(State(console): State<Console>, posted: Posted) -> Response {
    if let Err(e) = console
        .service
        .store()
        .delete_session(&posted.signed.session.id_hash)
        .await
    {
        return views::failure(&ApiError::from(e));
    }
    let mut response = Redirect::to("/sign-in").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie(None, posted.signed.https)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// The account a page names in its path, parsed; anything else is "not found".
pub fn account_id(text: &str) -> Result<AccountId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::new(ErrorCode::NotFound, format!("account {text:?} not found")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(last_seen: i64, expires: i64) -> SessionRecord {
        SessionRecord {
            id_hash: String::new(),
            account_id: None,
            key_id: None,
            root_mark: None,
            created_at_ms: 0,
            last_seen_at_ms: last_seen,
            expires_at_ms: expires,
            csrf_token: String::new(),
        }
    }

    #[test]
    fn idle_and_absolute_expiry() {
        assert!(is_live(&session(1_000, 10_000), 500, 1_499));
        assert!(!is_live(&session(1_000, 10_000), 500, 1_500));
        assert!(!is_live(&session(9_900, 10_000), 500, 10_000));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn origins() {
        let host = ("host", "console.example:8080");
        assert!(same_origin(
            &headers(&[host, ("origin", "http://console.example:8080")]),
            None
        ));
        assert!(!same_origin(
            &headers(&[host, ("origin", "http://evil.example")]),
            None
        ));
        assert!(same_origin(
            &headers(&[host, ("origin", "null"), ("sec-fetch-site", "same-origin")]),
            None
        ));
        assert!(!same_origin(
            &headers(&[host, ("origin", "null"), ("sec-fetch-site", "cross-site")]),
            None
        ));
        assert!(same_origin(
            &headers(&[host, ("referer", "https://console.example:8080/keys")]),
            None
        ));
        assert!(!same_origin(&headers(&[host]), None));
        let origin_only = headers(&[("origin", "http://console.example:8080")]);
        assert!(same_origin(&origin_only, Some("console.example:8080")));
        assert!(!same_origin(
            &headers(&[("origin", "http://console.example:8080")]),
            None
        ));
    }

    #[test]
    fn cookies() {
        let set = cookie(Some("ab"), true);
        assert_eq!(
            set,
            "sy_console=ab; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(cookie(None, false).contains("Max-Age=0"));
        let id = "a".repeat(64);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={id}"))
                .unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(cookie_id(&h), Some(id.as_str()));
        h.insert(header::COOKIE, HeaderValue::from_static("sy_console=short"));
        assert_eq!(cookie_id(&h), None);
    }
}
