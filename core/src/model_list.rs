//! An upstream's own list of models, as a provider key learns it: where to ask, how
//! to read each protocol's answer (OpenAI's list object; Anthropic's pages with
//! `has_more` and `last_id`; Gemini's pages of `models/…` names with
//! `nextPageToken`), and what of it is kept. The asking itself is IO and
//! lives in the control plane.

use crate::fields::MODEL_SERVED;
use crate::types::ProviderKind;

/// Most models kept for one key: a hostile or odd upstream cannot grow the
/// snapshot without bound.
pub const MAX_MODELS: usize = 1000;
/// Most pages read from an upstream that pages its list (Anthropic, Gemini).
pub const MAX_PAGES: usize = 50;
/// Largest answer read for one page.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// The URL of the first page of the list for a key whose base URL is in its stored
/// form (`…/v1`, `…/v1beta`, see [`crate::base_url`]): `{base}/models` for every
/// protocol, with the largest page size asked for where there are pages.
pub fn first_page_url(kind: ProviderKind, base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    match kind {
        ProviderKind::OpenAi => format!("{base}/models"),
        ProviderKind::Anthropic => format!("{base}/models?limit=1000"),
        ProviderKind::Gemini => format!("{base}/models?pageSize=1000"),
    }
}

/// The URL of the page after the one that gave `cursor`: Anthropic's last id
/// (`after_id`), Gemini's page token (`pageToken`).
pub fn next_page_url(kind: ProviderKind, base_url: &str, cursor: &str) -> String {
    let first = first_page_url(kind, base_url);
    let mut encoded = String::with_capacity(cursor.len());
    for b in cursor.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let name = match kind {
        ProviderKind::Gemini => "pageToken",
        ProviderKind::OpenAi | ProviderKind::Anthropic => "after_id",
    };
    let join = if first.contains('?') { '&' } else { '?' };
    format!("{first}{join}{name}={encoded}")
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

/// One model of Gemini's list: `name` is `models/<id>`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiModel {
    name: serde_json::Value,
    #[serde(default)]
    supported_generation_methods: Vec<serde_json::Value>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiListing {
    // An empty list is answered as `{}`.
    #[serde(default)]
    models: Vec<GeminiModel>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// Read one page: `{"data": [{"id": …}, …]}` in OpenAI's and Anthropic's protocols
/// (Anthropic's also says `has_more` and `last_id`); Gemini's
/// `{"models": [{"name": "models/…", "supportedGenerationMethods": […]}, …],
/// "nextPageToken": …}`, of which only the models that answer `generateContent` are
/// kept (embedding and other models do not), named without `models/`. Entries whose
/// id is not a string are skipped.
pub fn parse_page(kind: ProviderKind, body: &[u8]) -> Result<Page, ListError> {
    if kind == ProviderKind::Gemini {
        return parse_gemini_page(body);
    }
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

fn parse_gemini_page(body: &[u8]) -> Result<Page, ListError> {
    // serde would read a struct from an array too; a list is an object.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ListError::NotAList("not a JSON object".to_owned()));
    }
    let listing: GeminiListing =
        serde_json::from_slice(body).map_err(|e| ListError::NotAList(e.to_string()))?;
    let ids = listing
        .models
        .into_iter()
        .filter(|m| {
            m.supported_generation_methods
                .iter()
                .any(|g| g.as_str() == Some("generateContent"))
        })
        .filter_map(|m| match m.name {
            serde_json::Value::String(s) => Some(match s.strip_prefix("models/") {
                Some(id) => id.to_owned(),
                None => s,
            }),
            _ => None,
        })
        .collect();
    let next_after = listing.next_page_token.filter(|t| !t.is_empty());
    Ok(Page { ids, next_after })
}

/// Whether an upstream's answer to the list refuses the credential: 401 or 403 in
/// every protocol; Gemini answers a key it does not know with 400
/// (`INVALID_ARGUMENT`, its detail's reason `API_KEY_INVALID`), which is otherwise a
/// request's fault.
pub fn refuses_credential(kind: ProviderKind, status: u16, body: &[u8]) -> bool {
    match status {
        401 | 403 => true,
        400 if kind == ProviderKind::Gemini => {
            let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
                return false;
            };
            answer["error"]["details"]
                .as_array()
                .is_some_and(|details| {
                    details
                        .iter()
                        .any(|d| d["reason"].as_str() == Some("API_KEY_INVALID"))
                })
        }
        _ => false,
    }
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
            next_page_url(
                ProviderKind::Anthropic,
                "https://api.anthropic.com/v1",
                "claude 3&x"
            ),
            "https://api.anthropic.com/v1/models?limit=1000&after_id=claude%203%26x"
        );
        assert_eq!(
            first_page_url(ProviderKind::Gemini, crate::base_url::GEMINI_DEFAULT),
            "https://generativelanguage.googleapis.com/v1beta/models?pageSize=1000"
        );
        assert_eq!(
            next_page_url(
                ProviderKind::Gemini,
                "http://127.0.0.1:9/v1beta/",
                "Cg/x+y=="
            ),
            "http://127.0.0.1:9/v1beta/models?pageSize=1000&pageToken=Cg%2Fx%2By%3D%3D"
        );
    }

    #[test]
    fn gemini_pages_keep_generating_models_without_their_prefix() {
        let page = br#"{"models":[
            {"name":"models/gemini-2.5-flash","version":"001","supportedGenerationMethods":["generateContent","countTokens"]},
            {"name":"models/text-embedding-004","supportedGenerationMethods":["embedContent"]},
            {"name":"models/aqa"},
            {"name":7,"supportedGenerationMethods":["generateContent"]},
            {"name":"tunedModels/mine","supportedGenerationMethods":["generateContent"]}
        ],"nextPageToken":"tok-2"}"#;
        assert_eq!(
            parse_page(ProviderKind::Gemini, page).unwrap(),
            Page {
                ids: vec!["gemini-2.5-flash".into(), "tunedModels/mine".into()],
                next_after: Some("tok-2".into())
            }
        );
        // The last page says no token, or an empty one; an empty list is `{}`.
        for last in [&br#"{"models":[]}"#[..], br#"{"nextPageToken":""}"#, b"{}"] {
            assert_eq!(
                parse_page(ProviderKind::Gemini, last).unwrap(),
                Page::default()
            );
        }
        for bad in [&b"[]"[..], b"not json", br#"{"models":{"name":"x"}}"#] {
            assert!(parse_page(ProviderKind::Gemini, bad).is_err());
        }
        // An OpenAI list is not Gemini's: nothing is read from it.
        assert_eq!(
            parse_page(ProviderKind::Gemini, br#"{"data":[{"id":"gpt-4o"}]}"#).unwrap(),
            Page::default()
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
    fn a_refused_credential_is_told_from_other_failures() {
        let invalid_key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
        for kind in ProviderKind::ALL {
            assert!(refuses_credential(kind, 401, b""));
            assert!(refuses_credential(kind, 403, b"{}"));
            assert!(!refuses_credential(kind, 500, invalid_key));
        }
        assert!(refuses_credential(ProviderKind::Gemini, 400, invalid_key));
        // Only Gemini says so with a 400; another 400 is not about the key.
        assert!(!refuses_credential(ProviderKind::OpenAi, 400, invalid_key));
        let bad_page =
            br#"{"error":{"code":400,"message":"page token","status":"INVALID_ARGUMENT"}}"#;
        assert!(!refuses_credential(ProviderKind::Gemini, 400, bad_page));
        assert!(!refuses_credential(ProviderKind::Gemini, 400, b"not json"));
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
