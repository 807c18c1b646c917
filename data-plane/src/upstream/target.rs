//! Where an attempt on a provider key goes and how it proves itself, by the key's
//! kind: the key's base URL joined to a path (an endpoint's own, or the one protocol
//! translation gives, e.g. Gemini's `/models/{model}:streamGenerateContent?alt=sse`),
//! and the one header that carries the secret.

use http::{HeaderName, HeaderValue, Uri, header};
use switchyard_core::snapshot::ProviderKind;
use zeroize::Zeroizing;

/// The URI of `path` on the upstream at `base_url` (stored without a trailing
/// slash); `None` when that is not an `http` or `https` URL with a host.
pub fn uri(base_url: &str, path: &str) -> Option<Uri> {
    let text = format!("{base_url}{path}");
    // A URL parser first: it puts a host in IDNA form and escapes what a URI may
    // not hold, as a general HTTP client would.
    let uri: Uri = reqwest::Url::parse(&text).ok()?.as_str().parse().ok()?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return None;
    }
    Some(uri)
}

/// The header carrying `secret` to an upstream of `kind`, marked sensitive so no
/// layer logs it: OpenAI's `Authorization: Bearer`, Anthropic's `x-api-key`,
/// Gemini's `x-goog-api-key` (never `?key=`, which would put the secret in URLs).
/// `None` when the secret holds bytes a header cannot carry.
pub fn credential(kind: ProviderKind, secret: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let (name, value) = match kind {
        ProviderKind::OpenAi => {
            let mut v = Zeroizing::new(Vec::with_capacity(secret.len() + 7));
            v.extend_from_slice(b"Bearer ");
            v.extend_from_slice(secret);
            (header::AUTHORIZATION, v)
        }
        ProviderKind::Anthropic => (
            HeaderName::from_static("x-api-key"),
            Zeroizing::new(secret.to_vec()),
        ),
        ProviderKind::Gemini => (
            HeaderName::from_static("x-goog-api-key"),
            Zeroizing::new(secret.to_vec()),
        ),
    };
    let mut value = HeaderValue::from_bytes(&value).ok()?;
    value.set_sensitive(true);
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gemini_call_goes_to_the_translators_path_under_the_versioned_base() {
        let base = switchyard_core::base_url::GEMINI_DEFAULT;
        assert_eq!(
            uri(
                base,
                "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
            )
            .unwrap(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            uri(
                "http://127.0.0.1:9000/v1beta",
                "/models/gemini-2.5-pro:generateContent"
            )
            .unwrap(),
            "http://127.0.0.1:9000/v1beta/models/gemini-2.5-pro:generateContent"
        );
        for bad in ["not a url", "ftp://files.example.com/v1beta", "/v1beta"] {
            assert_eq!(uri(bad, "/models/m:generateContent"), None, "{bad}");
        }
    }

    #[test]
    fn each_kind_carries_the_secret_in_its_own_header_only() {
        let (name, value) = credential(ProviderKind::Gemini, b"AIza-secret").unwrap();
        assert_eq!(name, "x-goog-api-key");
        assert_eq!(value, "AIza-secret");
        assert!(value.is_sensitive());
        assert_ne!(name, header::AUTHORIZATION);

        let (name, value) = credential(ProviderKind::OpenAi, b"sk-1").unwrap();
        assert_eq!(
            (name, value.to_str().unwrap()),
            (header::AUTHORIZATION, "Bearer sk-1")
        );
        assert!(value.is_sensitive());
        let (name, value) = credential(ProviderKind::Anthropic, b"sk-ant").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("x-api-key", "sk-ant")
        );

        for kind in ProviderKind::ALL {
            assert!(credential(kind, b"line\nbreak").is_none(), "{kind:?}");
        }
    }
}
