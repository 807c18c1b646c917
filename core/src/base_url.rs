//! The path of a provider key's base URL, in the one form the data plane appends an
//! endpoint to (`…/v1`, no trailing slash). Forgiving where the intent is clear: the
//! form each provider's own SDK takes, and a whole endpoint URL pasted by mistake.
//!
//! - OpenAI-compatible: the OpenAI SDK's `base_url` already ends in `/v1`
//!   (`https://api.openai.com/v1`, `http://localhost:11434/v1`,
//!   `https://openrouter.ai/api/v1`) and is kept as given; a bare host
//!   (`https://api.openai.com`) gets `/v1`, where every such server listens.
//! - Anthropic: the Anthropic SDK's base URL has no `/v1` (`https://api.anthropic.com`,
//!   `https://api.deepseek.com/anthropic`) and the SDK appends `/v1/messages`; so does
//!   this, unless the path already ends in `/v1`.
//! - Gemini: the Gemini SDK's base URL is the bare host
//!   (`https://generativelanguage.googleapis.com`) and the SDK appends its API
//!   version; so does this (`/v1beta`, [`GEMINI_DEFAULT`]), unless the path already
//!   ends in a version segment (`/v1beta`, `/v1`, `/v1alpha`), which is kept. A
//!   pasted model call or list (`…/v1beta/models/gemini-2.5-flash:generateContent`,
//!   `…/v1beta/models`) loses its `/models` part.
//! - Any: a trailing slash goes, and so does an endpoint of the key's protocol at
//!   the end (`…/v1/chat/completions`, `…/v1/messages`).

use crate::endpoint::Endpoint;
use crate::types::ProviderKind;

/// Gemini's own base URL, in its stored form: the version every Gemini model serves.
pub const GEMINI_DEFAULT: &str = "https://generativelanguage.googleapis.com/v1beta";

/// `path` (a URL's path, `/` or empty for none) in its stored form for `kind`.
pub fn normalised_path(kind: ProviderKind, path: &str) -> String {
    let mut path = path.trim_end_matches('/');
    // Longest suffix first: `/messages/count_tokens` before `/messages`.
    let mut suffixes: Vec<&str> = Endpoint::ALL
        .iter()
        .filter(|e| e.protocol().provider_kind() == kind)
        .map(|e| e.upstream_suffix())
        .collect();
    suffixes.sort_by_key(|s| std::cmp::Reverse(s.len()));
    if let Some(stripped) = suffixes.iter().find_map(|s| path.strip_suffix(s)) {
        path = stripped.trim_end_matches('/');
    }
    match kind {
        ProviderKind::OpenAi if path.is_empty() => "/v1".to_owned(),
        ProviderKind::OpenAi => path.to_owned(),
        ProviderKind::Anthropic if path.ends_with("/v1") => path.to_owned(),
        ProviderKind::Anthropic => format!("{path}/v1"),
        ProviderKind::Gemini => gemini_path(path),
    }
}

/// Gemini's stored path (see the module's text); `path` has no trailing slash.
fn gemini_path(path: &str) -> String {
    let mut path = path;
    // `…/models` or `…/models/<one segment>` (a model call): the list or a call.
    if let Some(at) = path.rfind("/models") {
        let rest = &path[at + "/models".len()..];
        if rest.is_empty() || (rest.starts_with('/') && !rest[1..].contains('/')) {
            path = path[..at].trim_end_matches('/');
        }
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    if is_version(last) {
        path.to_owned()
    } else {
        format!("{path}/v1beta")
    }
}

/// `v1`, `v1beta`, `v1alpha`, `v2beta3`: an API version segment.
fn is_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let rest = &rest[digits..];
    let rest = rest
        .strip_prefix("beta")
        .or_else(|| rest.strip_prefix("alpha"))
        .unwrap_or(rest);
    rest.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_keeps_its_sdk_form_and_gives_a_bare_host_v1() {
        let n = |p| normalised_path(ProviderKind::OpenAi, p);
        assert_eq!(n("/v1"), "/v1");
        assert_eq!(n("/v1/"), "/v1");
        assert_eq!(n(""), "/v1");
        assert_eq!(n("/"), "/v1");
        assert_eq!(n("/api/v1"), "/api/v1");
        assert_eq!(n("/openai/deployments"), "/openai/deployments");
        // A whole endpoint pasted.
        assert_eq!(n("/v1/chat/completions"), "/v1");
        assert_eq!(n("/v1/responses/"), "/v1");
        assert_eq!(n("/api/v1/embeddings"), "/api/v1");
        // Another protocol's endpoint is not this key's: left alone.
        assert_eq!(n("/v1/messages"), "/v1/messages");
    }

    #[test]
    fn anthropic_takes_its_sdk_form_without_v1() {
        let n = |p| normalised_path(ProviderKind::Anthropic, p);
        assert_eq!(n(""), "/v1");
        assert_eq!(n("/"), "/v1");
        assert_eq!(n("/v1"), "/v1");
        assert_eq!(n("/v1/"), "/v1");
        assert_eq!(n("/anthropic"), "/anthropic/v1");
        assert_eq!(n("/anthropic/v1"), "/anthropic/v1");
        assert_eq!(n("/v1/messages"), "/v1");
        assert_eq!(n("/v1/messages/count_tokens"), "/v1");
        assert_eq!(n("/anthropic/v1/messages"), "/anthropic/v1");
    }

    #[test]
    fn gemini_takes_its_sdk_form_and_keeps_the_version() {
        let n = |p| normalised_path(ProviderKind::Gemini, p);
        assert_eq!(n(""), "/v1beta");
        assert_eq!(n("/"), "/v1beta");
        assert_eq!(n("/v1beta"), "/v1beta");
        assert_eq!(n("/v1beta/"), "/v1beta");
        assert_eq!(n("/v1"), "/v1");
        assert_eq!(n("/v1alpha"), "/v1alpha");
        // A gateway's prefix without a version gets the SDK's.
        assert_eq!(
            n("/acct/gw/google-ai-studio"),
            "/acct/gw/google-ai-studio/v1beta"
        );
        // A whole call or the list pasted.
        assert_eq!(
            n("/v1beta/models/gemini-2.5-flash:generateContent"),
            "/v1beta"
        );
        assert_eq!(
            n("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            "/v1beta"
        );
        assert_eq!(n("/v1beta/models"), "/v1beta");
        assert_eq!(n("/v1beta/models/"), "/v1beta");
        // Not versions: a version is `v`, digits, maybe `alpha`/`beta` and digits.
        assert_eq!(n("/vertex"), "/vertex/v1beta");
        assert_eq!(n("/v"), "/v/v1beta");
        assert_eq!(n("/v1gamma"), "/v1gamma/v1beta");
        let default =
            GEMINI_DEFAULT.trim_start_matches("https://generativelanguage.googleapis.com");
        assert_eq!(n(default), default);
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for kind in ProviderKind::ALL {
            for p in [
                "",
                "/",
                "/v1",
                "/x/v1/",
                "/v1/messages",
                "/v1/chat/completions",
                "/a",
                "/v1beta/models/m:generateContent",
            ] {
                let once = normalised_path(kind, p);
                assert_eq!(normalised_path(kind, &once), once, "{kind:?} {p}");
            }
        }
    }
}
