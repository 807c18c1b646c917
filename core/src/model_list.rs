//! An upstream's own list of models, as a provider key learns it: where to ask, how
//! to read each protocol's answer (OpenAI's list object; Anthropic's pages with
//! `has_more` and `last_id`), and what of it is kept. The asking itself is IO and
//! lives in the control plane.

use crate::fields::MODEL_SERVED;
use crate::types::ProviderKind;

/// Most models kept for one key: a hostile or odd upstream cannot grow the
/// snapshot without bound.
pub const MAX_MODELS: usize = 1000;
/// Most pages read from an upstream that pages its list (Anthropic).
pub const MAX_PAGES: usize = 50;
/// Largest answer read for one page.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// The URL of the first page of the list for a key whose base URL is in its stored
/// form (`…/v1`, see [`crate::base_url`]): `{base}/models` for both protocols, with
/// Anthropic's largest page size asked for.
pub fn first_page_url(kind: ProviderKind, base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    match kind {
        ProviderKind::OpenAi => format!("{base}/models"),
        ProviderKind::Anthropic => format!("{base}/models?limit=1000"),
    }
}

/// The URL of the page after the one whose last id was `after_id` (Anthropic).
pub fn next_page_url(base_url: &str, after_id: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let mut encoded = String::with_capacity(after_id.len());
    for b in after_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{base}/models?limit=1000&after_id={encoded}")
}

/// One page of a model list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The ids as the upstream gave them (not yet checked: see [`kept`]).
    pub ids: Vec<String>,
    /// Where the next page starts, when there is one.
    pub next_after: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("the answer is not a model list ({0})")]
    NotAList(String),
}

#[derive(serde::Deserialize)]
struct Entry {
    id: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct Listing {
    data: Vec<Entry>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

/// Read one page: `{"data": [{"id": …}, …]}` in both protocols; Anthropic's also
/// says `has_more` and `last_id`. Entries whose id is not a string are skipped.
pub fn parse_page(kind: ProviderKind, body: &[u8]) -> Result<Page, ListError> {
    let listing: Listing =
        serde_json::from_slice(body).map_err(|e| ListError::NotAList(e.to_string()))?;
    let ids: Vec<String> = listing
        .data
        .into_iter()
        .filter_map(|e| match e.id {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        })
        .collect();
    let next_after = match kind {
        ProviderKind::Anthropic if listing.has_more => {
            listing.last_id.or_else(|| ids.last().cloned())
        }
        _ => None,
    };
    Ok(Page { ids, next_after })
}

/// What is kept of the ids an upstream listed: those a call may name (the bounds of
/// `core::fields`: not empty, at most 200 bytes, no control characters or
/// whitespace), deduplicated, sorted, at most [`MAX_MODELS`].
pub fn kept(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = ids
        .into_iter()
        .filter(|id| MODEL_SERVED.check(id).is_ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    out.truncate(MAX_MODELS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_asked_beside_the_endpoints() {
        assert_eq!(
            first_page_url(ProviderKind::OpenAi, "https://api.openai.com/v1"),
            "https://api.openai.com/v1/models"
        );
        assert_eq!(
            first_page_url(ProviderKind::OpenAi, "https://openrouter.ai/api/v1"),
            "https://openrouter.ai/api/v1/models"
        );
        assert_eq!(
            first_page_url(ProviderKind::Anthropic, "https://api.anthropic.com/v1"),
            "https://api.anthropic.com/v1/models?limit=1000"
        );
        assert_eq!(
            next_page_url("https://api.anthropic.com/v1", "claude 3&x"),
            "https://api.anthropic.com/v1/models?limit=1000&after_id=claude%203%26x"
        );
    }

    #[test]
    fn pages_of_both_protocols_are_read() {
        let openai =
            br#"{"object":"list","data":[{"id":"gpt-4o","object":"model"},{"id":7},{"id":"o3"}]}"#;
        assert_eq!(
            parse_page(ProviderKind::OpenAi, openai).unwrap(),
            Page {
                ids: vec!["gpt-4o".into(), "o3".into()],
                next_after: None
            }
        );
        let anthropic = br#"{"data":[{"type":"model","id":"claude-a"}],"has_more":true,"first_id":"claude-a","last_id":"claude-a"}"#;
        assert_eq!(
            parse_page(ProviderKind::Anthropic, anthropic)
                .unwrap()
                .next_after
                .as_deref(),
            Some("claude-a")
        );
        let last = br#"{"data":[{"id":"claude-b"}],"has_more":false,"last_id":"claude-b"}"#;
        assert_eq!(
            parse_page(ProviderKind::Anthropic, last)
                .unwrap()
                .next_after,
            None
        );
        for bad in [&b"[]"[..], b"{}", b"not json", br#"{"data":{"id":"x"}}"#] {
            assert!(parse_page(ProviderKind::OpenAi, bad).is_err());
        }
    }

    #[test]
    fn only_names_a_call_may_carry_are_kept_sorted_once_and_bounded() {
        let ids = ["b", "a", "b", "", "has space", "nul\0", "bell\u{7}", "ok-1"]
            .into_iter()
            .map(String::from)
            .chain(std::iter::once("x".repeat(201)));
        assert_eq!(kept(ids), ["a", "b", "ok-1"]);
        let many = (0..MAX_MODELS + 5).map(|i| format!("m{i:05}"));
        let kept_many = kept(many);
        assert_eq!(kept_many.len(), MAX_MODELS);
        assert_eq!(kept_many[0], "m00000");
    }
}
