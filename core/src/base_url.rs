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
//! - Either: a trailing slash goes, and so does an endpoint of the key's protocol at
//!   the end (`…/v1/chat/completions`, `…/v1/messages`).

use crate::endpoint::Endpoint;
use crate::types::ProviderKind;

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
    }
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
    fn normalising_twice_changes_nothing() {
        for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
            for p in [
                "",
                "/",
                "/v1",
                "/x/v1/",
                "/v1/messages",
                "/v1/chat/completions",
                "/a",
            ] {
                let once = normalised_path(kind, p);
                assert_eq!(normalised_path(kind, &once), once, "{kind:?} {p}");
            }
        }
    }
}
