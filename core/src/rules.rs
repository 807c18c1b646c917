//! The rules of a main account (`/x-conf`, `/x-config`): how requested models map to
//! execution models, which level (pool of provider keys) serves a model, which level
//! backs up another, which API paths may be called, per-model caps, and prices.
//! Validation is pure: a rules document is accepted whole or refused whole.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::forward;
use crate::model::ModelPattern;
use crate::policy::{ModelLimit, Policy};

mod edit;
mod limits;

pub use edit::{EditError, SECTIONS};
pub use limits::{LimitSettings, StoreDown};

/// Longest ModelMapper chain followed (`a → b → c`).
pub const MAX_MAPPING_HOPS: usize = 8;
const MAX_ENTRIES: usize = 1024;

/// Prices in nano-dollars: per million input, cached-input, cache-write and output
/// tokens, and per request. Cache writes without a price of their own cost the input
/// price.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[serde(default)]
    pub input_per_million_nanos: u64,
    #[serde(default)]
    pub cached_input_per_million_nanos: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_million_nanos: Option<u64>,
    #[serde(default)]
    pub output_per_million_nanos: u64,
    #[serde(default)]
    pub per_request_nanos: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Requested model name → execution model name (aliases, upgrades).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_mapper: BTreeMap<String, String>,
    /// Model (or `prefix*`) → level; the most specific pattern wins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub level_mapper: BTreeMap<ModelPattern, u32>,
    /// Level → backup level, used only after the level's own keys failed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub switch_over: BTreeMap<u32, u32>,
    /// API paths that may be called at all (`None`: every path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<ModelPattern>>,
    /// Hard caps per model pattern for the whole main account.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::object::map_values"
    )]
    pub model_limits: BTreeMap<ModelPattern, ModelLimit>,
    /// Price per model pattern; the most specific pattern wins.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::object::map_values"
    )]
    pub pricing: BTreeMap<ModelPattern, Price>,
    /// Client headers forwarded upstream besides the built-in allow-list
    /// (`core::forward`), as lowercase names.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lowercase_names"
    )]
    pub forward_headers: Vec<String>,
    /// How the data planes enforce this tree's limits.
    #[serde(
        default,
        skip_serializing_if = "LimitSettings::is_default",
        deserialize_with = "crate::object::one"
    )]
    pub limits: LimitSettings,
    /// Whether calls may reach provider keys of another protocol, translated.
    #[serde(
        default,
        skip_serializing_if = "TranslationSettings::is_default",
        deserialize_with = "crate::object::one"
    )]
    pub translation: TranslationSettings,
}

/// Protocol translation for an owner's tree (`/x-config/translation`): on unless the
/// owner turns it off; a policy may still forbid it for a subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslationSettings {
    /// Calls whose model only keys of another protocol serve are translated to it.
    #[serde(default = "on")]
    pub enabled: bool,
}

fn on() -> bool {
    true
}

impl Default for TranslationSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

impl TranslationSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Header names in their one form: lowercase, as HTTP/2 and `http::HeaderMap` hold them.
fn lowercase_names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    Ok(names.iter().map(|n| n.to_ascii_lowercase()).collect())
}

/// Most output tokens an owner may name as the default reservation.
pub const MAX_DEFAULT_OUTPUT_TOKENS: u32 = 1_000_000;

/// Why a rules document is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleError {
    pub section: &'static str,
    pub entry: String,
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.section, self.entry, self.reason)
    }
}

fn err(section: &'static str, entry: impl fmt::Display, reason: impl Into<String>) -> RuleError {
    RuleError {
        section,
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// A model name as a rule may name it: what a request may carry.
fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.contains('*')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Of the patterns that match `model`, the most specific (exact beats prefix, the
/// longer prefix beats the shorter).
pub(crate) fn most_specific<'a, T>(
    map: &'a BTreeMap<ModelPattern, T>,
    model: &str,
) -> Option<&'a T> {
    map.iter()
        .filter(|(p, _)| p.matches(model))
        .max_by_key(|(p, _)| match p {
            ModelPattern::Exact(_) => usize::MAX,
            ModelPattern::Prefix(prefix) => prefix.len(),
        })
        .map(|(_, v)| v)
}

impl Rules {
    /// Every problem with this document, given the levels the owner's provider keys
    /// use. Empty means it may be stored.
    pub fn problems(&self, levels: &BTreeSet<u32>) -> Vec<RuleError> {
        let mut out = Vec::new();
        if let Some(n) = self.limits.default_max_output_tokens
            && !(1..=MAX_DEFAULT_OUTPUT_TOKENS).contains(&n)
        {
            out.push(err(
                "limits",
                "default_max_output_tokens",
                format!("must be between 1 and {MAX_DEFAULT_OUTPUT_TOKENS}"),
            ));
        }
        let sizes = [
            ("model_mapper", self.model_mapper.len()),
            ("level_mapper", self.level_mapper.len()),
            ("switch_over", self.switch_over.len()),
            ("resources", self.resources.as_ref().map_or(0, Vec::len)),
            ("model_limits", self.model_limits.len()),
            ("pricing", self.pricing.len()),
        ];
        if self.forward_headers.len() > forward::MAX_OWNER_HEADERS {
            out.push(err(
                "forward_headers",
                self.forward_headers.len(),
                format!("at most {} names", forward::MAX_OWNER_HEADERS),
            ));
        }
        let mut named = BTreeSet::new();
        for name in &self.forward_headers {
            if let Some(problem) = forward::owner_name_problem(name) {
                out.push(err("forward_headers", name, problem));
            } else if !named.insert(name.to_ascii_lowercase()) {
                out.push(err("forward_headers", name, "is named twice"));
            }
        }
        for (section, n) in sizes {
            if n > MAX_ENTRIES {
                out.push(err(section, n, format!("at most {MAX_ENTRIES} entries")));
            }
        }
        for (from, to) in &self.model_mapper {
            if !valid_model_name(from) {
                out.push(err(
                    "model_mapper",
                    from,
                    "must be a model name (no `*`, no spaces)",
                ));
            }
            if !valid_model_name(to) {
                out.push(err(
                    "model_mapper",
                    from,
                    format!("target {to:?} must be a model name"),
                ));
            }
            if from == to {
                out.push(err("model_mapper", from, "maps to itself"));
            }
        }
        for start in self.model_mapper.keys() {
            let mut seen = BTreeSet::from([start.as_str()]);
            let mut cursor = start.as_str();
            while let Some(next) = self.model_mapper.get(cursor) {
                if !seen.insert(next) {
                    out.push(err("model_mapper", start, "is part of a mapping cycle"));
                    break;
                }
                if seen.len() > MAX_MAPPING_HOPS + 1 {
                    out.push(err(
                        "model_mapper",
                        start,
                        format!("chain longer than {MAX_MAPPING_HOPS} hops"),
                    ));
                    break;
                }
                cursor = next;
            }
        }
        for (pattern, level) in &self.level_mapper {
            if !levels.contains(level) {
                out.push(err(
                    "level_mapper",
                    pattern,
                    format!("level {level} has no provider key"),
                ));
            }
        }
        for (from, to) in &self.switch_over {
            if !levels.contains(from) {
                out.push(err(
                    "switch_over",
                    from,
                    format!("level {from} has no provider key"),
                ));
            }
            if !levels.contains(to) {
                out.push(err(
                    "switch_over",
                    from,
                    format!("backup level {to} has no provider key"),
                ));
            }
        }
        for start in self.switch_over.keys() {
            let mut seen = BTreeSet::from([*start]);
            let mut cursor = *start;
            while let Some(next) = self.switch_over.get(&cursor) {
                if !seen.insert(*next) {
                    out.push(err(
                        "switch_over",
                        start,
                        "the switch-over chain never ends",
                    ));
                    break;
                }
                cursor = *next;
            }
        }
        for r in self.resources.iter().flatten() {
            if !r.to_string().starts_with('/') {
                out.push(err("resources", r, "must be an API path starting with `/`"));
            }
        }
        for (pattern, limit) in &self.model_limits {
            if limit.rpm == Some(0)
                || limit.tpm == Some(0)
                || (limit.rpm.is_none() && limit.tpm.is_none())
            {
                out.push(err(
                    "model_limits",
                    pattern,
                    "needs rpm and/or tpm greater than zero",
                ));
            }
        }
        out
    }

    /// The execution model for a requested one, following the mapper (bounded).
    pub fn map_model<'a>(&'a self, requested: &'a str) -> &'a str {
        let mut model = requested;
        for _ in 0..MAX_MAPPING_HOPS {
            match self.model_mapper.get(model) {
                Some(next) => model = next,
                None => break,
            }
        }
        model
    }

    /// The level configured for a model, if any pattern names it.
    pub fn level_for(&self, model: &str) -> Option<u32> {
        most_specific(&self.level_mapper, model).copied()
    }

    /// The price of a model, if any pattern names it.
    pub fn price_for(&self, model: &str) -> Option<Price> {
        most_specific(&self.pricing, model).copied()
    }

    /// The part of the rules that bounds every account of the tree, as a policy at the
    /// top of every chain: allowed resources and per-model caps.
    pub fn as_policy(&self) -> Policy {
        Policy {
            resources: self.resources.clone(),
            model_limits: self.model_limits.clone(),
            ..Policy::default()
        }
    }
}

impl Price {
    /// The cost of one call in nano-dollars. Cache reads and cache writes are parts
    /// of the input tokens and are charged at their own price only (never twice).
    pub fn cost_nanos(&self, usage: &crate::usage::TokenUsage) -> i64 {
        let cached = usage.cached.min(usage.input);
        let written = usage.cache_write.min(usage.input - cached);
        let fresh = usage.input - cached - written;
        let per_million =
            |tokens: u64, price: u64| u128::from(tokens) * u128::from(price) / 1_000_000;
        let write_price = self
            .cache_write_per_million_nanos
            .unwrap_or(self.input_per_million_nanos);
        let total = per_million(fresh, self.input_per_million_nanos)
            + per_million(cached, self.cached_input_per_million_nanos)
            + per_million(written, write_price)
            + per_million(usage.output, self.output_per_million_nanos)
            + u128::from(self.per_request_nanos);
        i64::try_from(total).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::TokenUsage;

    fn rules(json: &str) -> Rules {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_good_document() {
        let r = rules(
            r#"{"model_mapper":{"gpt-4":"gpt-4o","old":"gpt-4"},
                "level_mapper":{"gpt-4o*":1,"gpt-4o-mini":2,"*":3},
                "switch_over":{"1":2,"2":3},
                "resources":["/v1/chat/completions","/v1/audio/*"],
                "model_limits":{"gpt-4o*":{"rpm":10}},
                "pricing":{"gpt-4o*":{"input_per_million_nanos":2500000000,"output_per_million_nanos":10000000000},
                           "gpt-4o-mini":{"input_per_million_nanos":150000000}}}"#,
        );
        assert_eq!(r.problems(&BTreeSet::from([1, 2, 3])), vec![]);
        assert_eq!(r.map_model("old"), "gpt-4o");
        assert_eq!(r.map_model("other"), "other");
        assert_eq!(r.level_for("gpt-4o-mini"), Some(2));
        assert_eq!(r.level_for("gpt-4o-2024"), Some(1));
        assert_eq!(r.level_for("claude"), Some(3));
        assert_eq!(
            r.price_for("gpt-4o-mini").unwrap().input_per_million_nanos,
            150_000_000
        );
        assert!(r.as_policy().allows_resource("/v1/audio/speech"));
        assert!(!r.as_policy().allows_resource("/v1/embeddings"));
    }

    #[test]
    fn problems_are_named() {
        let r = rules(
            r#"{"model_mapper":{"a":"b","b":"a","x":"x","bad name":"y","z":"*"},
                "level_mapper":{"gpt*":9},
                "switch_over":{"1":2,"2":1},
                "resources":["v1/chat"],
                "model_limits":{"m":{}}}"#,
        );
        let found: Vec<String> = r
            .problems(&BTreeSet::from([1, 2]))
            .iter()
            .map(ToString::to_string)
            .collect();
        for want in [
            "model_mapper a: is part of a mapping cycle",
            "model_mapper b: is part of a mapping cycle",
            "model_mapper x: maps to itself",
            "model_mapper bad name: must be a model name",
            "model_mapper z: target \"*\" must be a model name",
            "level_mapper gpt*: level 9 has no provider key",
            "switch_over 1: the switch-over chain never ends",
            "resources v1/chat: must be an API path",
            "model_limits m: needs rpm and/or tpm",
        ] {
            assert!(
                found.iter().any(|f| f.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
        let dangling = rules(r#"{"switch_over":{"1":5}}"#);
        assert_eq!(dangling.problems(&BTreeSet::from([1])).len(), 1);
        assert!(
            serde_json::from_str::<Rules>(r#"{"pricing":{"m":{"input_per_million_nanos":-1}}}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Rules>(r#"{"levels":{}}"#).is_err());
        assert!(serde_json::from_str::<Rules>(r#"{"switch_over":{"one":2}}"#).is_err());
    }

    #[test]
    fn entries_and_sections() {
        let r = Rules::default()
            .with_entry("model_mapper", "gpt-4", serde_json::json!("gpt-4o"))
            .unwrap()
            .with_entry("switch_over", "1", serde_json::json!(2))
            .unwrap()
            .with_entry("resources", "/v1/chat/completions", serde_json::Value::Null)
            .unwrap()
            .with_entry(
                "pricing",
                "gpt*",
                serde_json::json!({"per_request_nanos": 5}),
            )
            .unwrap();
        assert_eq!(r.map_model("gpt-4"), "gpt-4o");
        assert_eq!(r.switch_over.get(&1), Some(&2));
        assert_eq!(
            r.section("resources").unwrap(),
            serde_json::json!(["/v1/chat/completions"])
        );
        assert_eq!(r.section("level_mapper").unwrap(), serde_json::json!({}));
        assert_eq!(r.price_for("gpt-x").unwrap().per_request_nanos, 5);

        let r = r.without_entry("switch_over", "1").unwrap();
        assert!(r.switch_over.is_empty());
        assert!(matches!(
            r.without_entry("switch_over", "1"),
            Err(EditError::NoSuchEntry { .. })
        ));
        assert!(matches!(
            r.with_entry("levels", "a", serde_json::json!(1)),
            Err(EditError::UnknownSection(_))
        ));
        assert!(matches!(
            r.with_entry("switch_over", "one", serde_json::json!(1)),
            Err(EditError::Invalid(_))
        ));
        assert!(matches!(
            r.with_entry("level_mapper", "g*x", serde_json::json!(1)),
            Err(EditError::Invalid(_))
        ));
        assert!(matches!(
            r.with_entry("pricing", "m", serde_json::json!({"input": 1})),
            Err(EditError::Invalid(_))
        ));

        let cleared = r
            .patched(serde_json::Map::from_iter([(
                "resources".to_owned(),
                serde_json::Value::Null,
            )]))
            .unwrap();
        assert_eq!(cleared.resources, None);
        assert_eq!(cleared.model_mapper, r.model_mapper);
        assert!(
            r.patched(serde_json::Map::from_iter([(
                "bogus".to_owned(),
                serde_json::json!({})
            )]))
            .is_err()
        );
    }

    #[test]
    fn limit_settings_are_a_section_of_their_own() {
        let r = Rules::default();
        assert_eq!(r.limits.when_store_down, StoreDown::FailClosed);
        assert_eq!(r.section("limits").unwrap(), serde_json::json!({}));
        let r = r
            .with_entry("limits", "when_store_down", serde_json::json!("fail_open"))
            .unwrap()
            .with_entry(
                "limits",
                "default_max_output_tokens",
                serde_json::json!(512),
            )
            .unwrap();
        assert_eq!(r.limits.when_store_down, StoreDown::FailOpen);
        assert_eq!(r.limits.default_max_output_tokens, Some(512));
        assert!(r.problems(&BTreeSet::new()).is_empty());
        let r = r
            .without_entry("limits", "default_max_output_tokens")
            .unwrap();
        assert_eq!(r.limits.default_max_output_tokens, None);
        assert_eq!(r.limits.when_store_down, StoreDown::FailOpen);

        for bad in [
            serde_json::json!("sometimes"),
            serde_json::json!(true),
            serde_json::Value::Null,
        ] {
            assert!(matches!(
                r.with_entry("limits", "when_store_down", bad),
                Err(EditError::Invalid(_))
            ));
        }
        assert!(matches!(
            r.with_entry("limits", "max", serde_json::json!(1)),
            Err(EditError::Invalid(_))
        ));
        assert!(matches!(
            r.with_entry("limits", "default_max_output_tokens", serde_json::json!(-1)),
            Err(EditError::Invalid(_))
        ));
        for (tokens, ok) in [(0, false), (1, true), (1_000_000, true), (1_000_001, false)] {
            let r = r
                .with_entry(
                    "limits",
                    "default_max_output_tokens",
                    serde_json::json!(tokens),
                )
                .unwrap();
            let problems = r.problems(&BTreeSet::new());
            assert_eq!(problems.is_empty(), ok, "{tokens}: {problems:?}");
            if !ok {
                assert_eq!(
                    problems[0].to_string(),
                    "limits default_max_output_tokens: must be between 1 and 1000000"
                );
            }
        }
    }

    #[test]
    fn long_chains_are_refused() {
        let mut r = Rules::default();
        for i in 0..12 {
            r.model_mapper
                .insert(format!("m{i}"), format!("m{}", i + 1));
        }
        assert!(
            r.problems(&BTreeSet::new())
                .iter()
                .any(|e| e.reason.contains("hops"))
        );
    }

    #[test]
    fn cost_charges_cached_tokens_once() {
        let price = Price {
            input_per_million_nanos: 2_000_000_000,
            cached_input_per_million_nanos: 500_000_000,
            output_per_million_nanos: 8_000_000_000,
            per_request_nanos: 7,
            ..Price::default()
        };
        let usage = TokenUsage {
            input: 1_000,
            output: 500,
            cached: 400,
            cache_write: 0,
        };
        // 600 fresh × 2000 + 400 cached × 500 + 500 out × 8000 (nano-dollars per token) + 7
        assert_eq!(
            price.cost_nanos(&usage),
            1_200_000 + 200_000 + 4_000_000 + 7
        );
        let none = TokenUsage::default();
        assert_eq!(price.cost_nanos(&none), 7);
        let huge = TokenUsage {
            input: u64::MAX,
            output: u64::MAX,
            ..TokenUsage::default()
        };
        assert_eq!(price.cost_nanos(&huge), i64::MAX);
    }

    #[test]
    fn cache_writes_cost_their_own_price_or_the_input_price() {
        let usage = TokenUsage {
            input: 1_000,
            output: 0,
            cached: 300,
            cache_write: 200,
        };
        let mut price = Price {
            input_per_million_nanos: 1_000_000_000,
            cached_input_per_million_nanos: 100_000_000,
            ..Price::default()
        };
        // 500 fresh × 1000 + 300 read × 100 + 200 written × 1000 (the input price).
        assert_eq!(price.cost_nanos(&usage), 500_000 + 30_000 + 200_000);
        price.cache_write_per_million_nanos = Some(1_250_000_000);
        assert_eq!(price.cost_nanos(&usage), 500_000 + 30_000 + 250_000);
        // Parts never exceed the whole: a report claiming more is clamped, not doubled.
        let claims_too_much = TokenUsage {
            input: 100,
            output: 0,
            cached: 80,
            cache_write: 80,
        };
        assert_eq!(price.cost_nanos(&claims_too_much), 80 * 100 + 20 * 1_250);
        let text = r#"{"input_per_million_nanos":1,"cache_write_per_million_nanos":2}"#;
        let parsed: Price = serde_json::from_str(text).unwrap();
        assert_eq!(parsed.cache_write_per_million_nanos, Some(2));
        assert!(
            serde_json::to_string(&parsed)
                .unwrap()
                .contains("cache_write")
        );
        assert!(
            !serde_json::to_string(&Price::default())
                .unwrap()
                .contains("cache_write")
        );
    }

    #[test]
    fn forwarded_header_names_are_lowercase_tokens_never_refused_ones() {
        let r = rules(r#"{"forward_headers":["X-My-Header","x-team"]}"#);
        assert_eq!(r.forward_headers, vec!["x-my-header", "x-team"]);
        assert_eq!(r.problems(&BTreeSet::new()), vec![]);
        let bad = rules(
            r#"{"forward_headers":["Authorization","x y","cookie","x-team","X-TEAM","proxy-authorization"]}"#,
        );
        let found: Vec<String> = bad
            .problems(&BTreeSet::new())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].starts_with("forward_headers authorization: is never forwarded"));
        assert!(found[1].starts_with("forward_headers x y: must be a header name"));
        assert!(found[2].starts_with("forward_headers cookie: is never forwarded"));
        assert_eq!(found[3], "forward_headers x-team: is named twice");
        assert!(found[4].starts_with("forward_headers proxy-authorization: is never"));
        let many = Rules {
            forward_headers: (0..=forward::MAX_OWNER_HEADERS)
                .map(|i| format!("x-h{i}"))
                .collect(),
            ..Rules::default()
        };
        assert!(
            many.problems(&BTreeSet::new())
                .iter()
                .any(|p| p.to_string() == "forward_headers 33: at most 32 names")
        );
    }

    #[test]
    fn forwarded_header_names_are_edited_one_by_one() {
        let r = Rules::default();
        assert_eq!(r.section("forward_headers"), Ok(serde_json::json!([])));
        let r = r
            .with_entry("forward_headers", "X-One", serde_json::Value::Null)
            .unwrap();
        let r = r
            .with_entry("forward_headers", "x-one", serde_json::Value::Null)
            .unwrap();
        assert_eq!(r.forward_headers, vec!["x-one"]);
        assert_eq!(
            r.section("forward_headers"),
            Ok(serde_json::json!(["x-one"]))
        );
        let r = r.without_entry("forward_headers", "X-ONE").unwrap();
        assert!(r.forward_headers.is_empty());
        assert!(r.without_entry("forward_headers", "x-one").is_err());
    }
}
