//! Who calls, checked against the snapshot and the caller's effective policy in the
//! order the design gives: key, resource, client address.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, header};
use switchyard_core::apikey;
use switchyard_core::error::ErrorCode;
use switchyard_core::passthrough;
use switchyard_core::request;
use switchyard_core::snapshot::{Caller, Compiled};
use switchyard_runtime::now_ms;

use super::error::ProxyError;
use crate::app::App;

/// The caller and its client address, or why it may not call `path`.
pub(super) fn admit(
    app: &App,
    snapshot: &Compiled,
    path: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(Caller, IpAddr), ProxyError> {
    let presented = presented_key(headers).ok_or_else(|| {
        ProxyError::new(
            ErrorCode::Unauthenticated,
            "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
        )
    })?;
    let caller = snapshot.authenticate(presented, now_ms())?;
    if !caller.policy.allows_resource(path) {
        return Err(ProxyError::denied(format!(
            "{path} is not among this account's allowed resources"
        )));
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let client = request::client_ip(peer.ip(), forwarded, &app.trusted_proxies);
    if !caller.policy.allows_ip(client) {
        return Err(ProxyError::denied(format!(
            "client address {client} is not among this account's allowed networks"
        )));
    }
    Ok((caller, client))
}

/// The issued key: from `x-switchyard-key` when sent (the caller's `Authorization`
/// then belongs to its upstream), else the bearer of `Authorization: Bearer …`, else
/// `x-api-key` (Anthropic clients).
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(passthrough::KEY_HEADER) {
        // Sent but unreadable is a bad key, never a reason to read another header.
        return Some(v.to_str().map_or("", str::trim));
    }
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return apikey::bearer_token(v);
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Whether the caller brought its own upstream credential (for passthrough keys).
pub(super) fn own_credential(headers: &HeaderMap) -> bool {
    passthrough::own_credential(
        headers.contains_key(passthrough::KEY_HEADER),
        headers.contains_key(header::AUTHORIZATION),
    )
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn keys_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        assert_eq!(presented_key(&h), Some("k1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k2"));
        assert_eq!(presented_key(&h), Some("k2"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  k3 "),
        );
        assert_eq!(presented_key(&h), Some("k3"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_key(&h), None);
    }

    #[test]
    fn the_switchyard_key_header_wins_and_leaves_authorization_to_the_upstream() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-ant-oat01-upstream"),
        );
        assert!(!own_credential(&h));
        h.insert("x-switchyard-key", HeaderValue::from_static(" sk-sy-mine "));
        assert_eq!(presented_key(&h), Some("sk-sy-mine"));
        assert!(own_credential(&h));
        // Sent but not text: a bad key, not a fall back to Authorization.
        h.insert(
            "x-switchyard-key",
            HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(presented_key(&h), Some(""));
    }
}
