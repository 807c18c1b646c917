//! Which provider base URLs a key may have: the rule the service applies when a key
//! is written and model discovery applies again before it asks an upstream.

use switchyard_core::netguard::UpstreamNetworks;

/// The longest base URL a provider key may have.
pub const MAX_URL: usize = 2048;

/// Why a base URL is refused, in words for the caller.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BaseUrlRefused(pub String);

/// An `http(s)` URL with a host, no credentials, query or fragment; its trailing
/// slash dropped. An address the operator does not allow (`core::netguard`: loopback,
/// private, link-local, …) is refused, so a tenant cannot reach internal services
/// through the router; so are names that only ever mean such hosts, unless the
/// operator allows some special-purpose networks (then resolution decides).
pub fn check(raw: &str, networks: &UpstreamNetworks) -> Result<String, BaseUrlRefused> {
    check_named("base_url", raw, networks)
}

/// [`check`] for a URL the caller knows as `field` (a webhook's `url` is held to
/// the same rule: the control plane must not be made to call internal services).
pub fn check_named(
    field: &str,
    raw: &str,
    networks: &UpstreamNetworks,
) -> Result<String, BaseUrlRefused> {
    let bad = |why: &str| BaseUrlRefused(format!("{field} {raw:?} {why}"));
    if raw.len() > MAX_URL {
        return Err(BaseUrlRefused(format!(
            "{field} is longer than {MAX_URL} characters"
        )));
    }
    let url = url::Url::parse(raw.trim()).map_err(|_| bad("is not a valid URL"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("must use http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "must not carry credentials; put the secret in `secret`",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    let host = url.host().ok_or_else(|| bad("has no host"))?;
    let refusal = match host {
        url::Host::Ipv4(ip) => networks.check(ip.into()).err(),
        url::Host::Ipv6(ip) => networks.check(ip.into()).err(),
        url::Host::Domain(_) => None,
    };
    if let Some(refusal) = refusal {
        return Err(bad(&format!(
            "points at an address upstreams may not have ({refusal}); the operator has not allowed this network for upstreams"
        )));
    }
    if let url::Host::Domain(d) = host
        && !networks.allow_private
        && networks.allowed.is_empty()
    {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if d == "localhost"
            || d.ends_with(".localhost")
            || d.ends_with(".internal")
            || d.ends_with(".local")
        {
            return Err(bad(
                "names a local or internal host; the operator has not allowed private upstreams",
            ));
        }
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A webhook's URL: [`check_named`], and `https` unless the operator allows private
/// upstreams (local receivers, tests), as the alert body must not travel in clear.
pub fn check_webhook(raw: &str, networks: &UpstreamNetworks) -> Result<String, BaseUrlRefused> {
    let url = check_named("url", raw, networks)?;
    if !url.starts_with("https://") && !networks.allow_private {
        return Err(BaseUrlRefused(format!(
            "url {raw:?} must use https (plain http only where the operator allows private upstreams)"
        )));
    }
    Ok(url)
}
