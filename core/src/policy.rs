//! Account policies and the rule that a child never exceeds its parent.
//!
//! An account's *own* policy restricts what it may do; a field left out restricts
//! nothing of its own. Its *effective* policy is the intersection of its own and every
//! ancestor's, computed at snapshot time, so narrowing a parent narrows every
//! descendant at once without rewriting them. A write that would give a child more
//! than its parent's effective policy is refused, naming each offending entry.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::ModelPattern;

/// Per-model caps (ModelLimits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Month,
}

/// A spend cap per UTC period, in nano-dollars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditLimit {
    pub limit_nanos: u64,
    pub period: Period,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Models that may be called (exact names and `prefix*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelPattern>>,
    /// API paths that may be called (`/v1/chat/completions`, `/v1/audio/*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<ModelPattern>>,
    /// Client networks that may call (v4 and v6 CIDRs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cidrs: Option<Vec<IpNet>>,
    /// Requests per minute for the whole account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Requests per minute for each of its issued keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_rpm: Option<u32>,
    /// Caps per model pattern; every pattern that matches a model applies.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::object::map_values"
    )]
    pub model_limits: BTreeMap<ModelPattern, ModelLimit>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::object::option"
    )]
    pub credit: Option<CreditLimit>,
    /// Calls of this account and its descendants never reach provider keys of
    /// another protocol through translation. Forbidden anywhere on the chain wins.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forbid_translation: bool,
}

const MAX_ENTRIES: usize = 512;

/// One entry of a child policy that its parent does not grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Excess {
    pub field: &'static str,
    pub entry: String,
    pub reason: String,
}

impl fmt::Display for Excess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A scalar field is its own entry: named once.
        if self.entry == self.field {
            write!(f, "{}: {}", self.field, self.reason)
        } else {
            write!(f, "{} {}: {}", self.field, self.entry, self.reason)
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("{0} lists more than {MAX_ENTRIES} entries")]
    TooMany(&'static str),
    #[error("resources: {0:?} must be an API path starting with `/`")]
    BadResource(String),
    #[error("{0} must be greater than zero")]
    Zero(String),
}

pub(crate) fn min_opt<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn intersect_patterns(a: &[ModelPattern], b: &[ModelPattern]) -> Vec<ModelPattern> {
    let mut out: Vec<ModelPattern> = a
        .iter()
        .flat_map(|x| b.iter().filter_map(|y| x.intersect(y)))
        .collect();
    out.sort();
    out.dedup();
    // Drop entries another entry already covers.
    let covered: Vec<bool> = out
        .iter()
        .enumerate()
        .map(|(i, p)| {
            out.iter()
                .enumerate()
                .any(|(j, q)| i != j && p.within(q) && !(q.within(p) && j > i))
        })
        .collect();
    out.into_iter()
        .zip(covered)
        .filter(|(_, c)| !c)
        .map(|(p, _)| p)
        .collect()
}

fn net_within(a: &IpNet, b: &IpNet) -> bool {
    b.contains(a)
}

fn intersect_nets(a: &[IpNet], b: &[IpNet]) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = a
        .iter()
        .flat_map(|x| {
            b.iter().filter_map(move |y| {
                if net_within(x, y) {
                    Some(*x)
                } else if net_within(y, x) {
                    Some(*y)
                } else {
                    None
                }
            })
        })
        .map(|n| n.trunc())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn intersect_lists<T: Clone>(
    a: &Option<Vec<T>>,
    b: &Option<Vec<T>>,
    f: impl Fn(&[T], &[T]) -> Vec<T>,
) -> Option<Vec<T>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, None) => x.clone(),
        (None, y) => y.clone(),
    }
}

impl Policy {
    /// Checks serde cannot express: sizes, path shapes, zero caps.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let too_many = |n: Option<usize>, f| {
            if n.unwrap_or(0) > MAX_ENTRIES {
                Err(PolicyError::TooMany(f))
            } else {
                Ok(())
            }
        };
        too_many(self.models.as_ref().map(Vec::len), "models")?;
        too_many(self.resources.as_ref().map(Vec::len), "resources")?;
        too_many(self.client_cidrs.as_ref().map(Vec::len), "client_cidrs")?;
        too_many(Some(self.model_limits.len()), "model_limits")?;
        for r in self.resources.iter().flatten() {
            let text = r.to_string();
            if !text.starts_with('/') {
                return Err(PolicyError::BadResource(text));
            }
        }
        if self.rpm == Some(0) {
            return Err(PolicyError::Zero("rpm".into()));
        }
        if self.key_rpm == Some(0) {
            return Err(PolicyError::Zero("key_rpm".into()));
        }
        for (model, limit) in &self.model_limits {
            if limit.rpm == Some(0) || limit.tpm == Some(0) {
                return Err(PolicyError::Zero(format!("model_limits {model}")));
            }
        }
        Ok(())
    }

    /// What both policies allow: the effective policy of a child under `self`.
    #[must_use]
    pub fn intersect(&self, child: &Policy) -> Policy {
        let mut model_limits = self.model_limits.clone();
        for (pattern, limit) in &child.model_limits {
            let merged = model_limits.entry(pattern.clone()).or_default();
            merged.rpm = min_opt(merged.rpm, limit.rpm);
            merged.tpm = min_opt(merged.tpm, limit.tpm);
        }
        Policy {
            models: intersect_lists(&self.models, &child.models, intersect_patterns),
            resources: intersect_lists(&self.resources, &child.resources, intersect_patterns),
            client_cidrs: intersect_lists(&self.client_cidrs, &child.client_cidrs, intersect_nets),
            rpm: min_opt(self.rpm, child.rpm),
            key_rpm: min_opt(self.key_rpm, child.key_rpm),
            model_limits,
            // Each account's credit cap binds its own spend (and its descendants');
            // caps along the chain are enforced one by one, not merged.
            credit: child.credit,
            forbid_translation: self.forbid_translation || child.forbid_translation,
        }
    }

    /// The effective policy of the last account of `chain` (main account first).
    pub fn effective<'a>(chain: impl IntoIterator<Item = &'a Policy>) -> Policy {
        chain
            .into_iter()
            .fold(Policy::default(), |acc, p| acc.intersect(p))
    }

    /// Of the models `served` (provider key patterns), those this policy lets an
    /// account call, as patterns: what `/v1/models` and `/dashboard/models` list.
    pub fn callable_models(&self, served: &[ModelPattern]) -> Vec<ModelPattern> {
        match &self.models {
            Some(allowed) => intersect_patterns(allowed, served),
            None => intersect_patterns(served, served),
        }
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p.matches(model)))
    }

    pub fn allows_resource(&self, path: &str) -> bool {
        self.resources
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p.matches(path)))
    }

    pub fn allows_ip(&self, ip: std::net::IpAddr) -> bool {
        self.client_cidrs
            .as_ref()
            .is_none_or(|ns| ns.iter().any(|n| n.contains(&ip)))
    }

    /// Every entry of `child` that `self` (the parent's effective policy) does not
    /// grant. Empty means the child stays within bounds.
    pub fn excesses(&self, child: &Policy) -> Vec<Excess> {
        let mut out = Vec::new();
        let mut list = |field: &'static str,
                        parent: &Option<Vec<ModelPattern>>,
                        child: &Option<Vec<ModelPattern>>| {
            if let (Some(parent), Some(child)) = (parent, child) {
                for c in child {
                    if !parent.iter().any(|p| c.within(p)) {
                        out.push(Excess {
                            field,
                            entry: c.to_string(),
                            reason: "not granted by the parent".into(),
                        });
                    }
                }
            }
        };
        list("models", &self.models, &child.models);
        list("resources", &self.resources, &child.resources);
        if let (Some(parent), Some(child)) = (&self.client_cidrs, &child.client_cidrs) {
            for c in child {
                if !parent.iter().any(|p| net_within(c, p)) {
                    out.push(Excess {
                        field: "client_cidrs",
                        entry: c.to_string(),
                        reason: "outside the parent's networks".into(),
                    });
                }
            }
        }
        let mut cap =
            |field: &'static str, entry: String, parent: Option<u64>, child: Option<u64>| {
                if let (Some(p), Some(c)) = (parent, child)
                    && c > p
                {
                    out.push(Excess {
                        field,
                        entry,
                        reason: format!("{c} exceeds the parent's {p}"),
                    });
                }
            };
        cap(
            "rpm",
            "rpm".into(),
            self.rpm.map(u64::from),
            child.rpm.map(u64::from),
        );
        cap(
            "key_rpm",
            "key_rpm".into(),
            self.key_rpm.map(u64::from),
            child.key_rpm.map(u64::from),
        );
        for (pattern, limit) in &child.model_limits {
            for (parent_pattern, parent_limit) in &self.model_limits {
                if pattern.within(parent_pattern) {
                    cap(
                        "model_limits",
                        format!("{pattern} rpm"),
                        parent_limit.rpm.map(u64::from),
                        limit.rpm.map(u64::from),
                    );
                    cap(
                        "model_limits",
                        format!("{pattern} tpm"),
                        parent_limit.tpm,
                        limit.tpm,
                    );
                }
            }
        }
        if let (Some(p), Some(c)) = (self.credit, child.credit) {
            if p.period != c.period {
                out.push(Excess {
                    field: "credit",
                    entry: "period".into(),
                    reason: "must match the parent's period".into(),
                });
            } else if c.limit_nanos > p.limit_nanos {
                out.push(Excess {
                    field: "credit",
                    entry: "limit_nanos".into(),
                    reason: format!("{} exceeds the parent's {}", c.limit_nanos, p.limit_nanos),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pats(list: &[&str]) -> Option<Vec<ModelPattern>> {
        Some(list.iter().map(|p| p.parse().unwrap()).collect())
    }

    fn nets(list: &[&str]) -> Option<Vec<IpNet>> {
        Some(list.iter().map(|p| p.parse().unwrap()).collect())
    }

    #[test]
    fn parses_and_refuses_unknown_fields() {
        let p: Policy = serde_json::from_str(
            r#"{"models":["gpt-4o*","claude-3"],"resources":["/v1/chat/completions"],"client_cidrs":["10.0.0.0/8","2001:db8::/32"],
                "rpm":60,"model_limits":{"gpt-4o":{"rpm":10,"tpm":1000}},"credit":{"limit_nanos":5,"period":"month"}}"#,
        )
        .unwrap();
        p.validate().unwrap();
        assert!(p.allows_model("gpt-4o-mini"));
        assert!(!p.allows_model("gpt-4"));
        assert!(p.allows_ip("10.1.2.3".parse().unwrap()));
        assert!(p.allows_ip("2001:db8::1".parse().unwrap()));
        assert!(!p.allows_ip("192.168.0.1".parse().unwrap()));
        assert!(serde_json::from_str::<Policy>(r#"{"modles":["x"]}"#).is_err());
        assert!(serde_json::from_str::<Policy>(r#"{"client_cidrs":["10.0.0.0/33"]}"#).is_err());
        assert!(serde_json::from_str::<Policy>(r#"{"models":["g*x"]}"#).is_err());
        assert!(serde_json::from_str::<Policy>(r#"{"rpm":-1}"#).is_err());
        assert!(
            serde_json::from_str::<Policy>(r#"{"credit":{"limit_nanos":1,"period":"week"}}"#)
                .is_err()
        );
        let bad: Policy = serde_json::from_str(r#"{"resources":["v1/chat"]}"#).unwrap();
        assert_eq!(
            bad.validate(),
            Err(PolicyError::BadResource("v1/chat".into()))
        );
        let zero: Policy = serde_json::from_str(r#"{"rpm":0}"#).unwrap();
        assert!(zero.validate().is_err());
    }

    #[test]
    fn empty_policy_allows_everything() {
        let p = Policy::default();
        assert!(p.allows_model("anything"));
        assert!(p.allows_resource("/v1/x"));
        assert!(p.allows_ip("1.2.3.4".parse().unwrap()));
        assert_eq!(serde_json::to_string(&p).unwrap(), "{}");
    }

    #[test]
    fn intersection_narrows() {
        let parent = Policy {
            models: pats(&["gpt-4o*", "claude*"]),
            client_cidrs: nets(&["10.0.0.0/8"]),
            rpm: Some(100),
            ..Default::default()
        };
        let child = Policy {
            models: pats(&["gpt*"]),
            client_cidrs: nets(&["10.1.0.0/16", "192.168.0.0/16"]),
            rpm: Some(500),
            ..Default::default()
        };
        let eff = parent.intersect(&child);
        assert_eq!(eff.models, pats(&["gpt-4o*"]));
        assert_eq!(eff.client_cidrs, nets(&["10.1.0.0/16"]));
        assert_eq!(eff.rpm, Some(100));
        assert!(!eff.allows_model("claude-3"));
    }

    #[test]
    fn excesses_name_each_entry() {
        let parent = Policy {
            models: pats(&["gpt-4o*"]),
            resources: pats(&["/v1/chat/*"]),
            client_cidrs: nets(&["10.0.0.0/8"]),
            rpm: Some(100),
            model_limits: BTreeMap::from([(
                "gpt-4o*".parse().unwrap(),
                ModelLimit {
                    rpm: Some(10),
                    tpm: None,
                },
            )]),
            credit: Some(CreditLimit {
                limit_nanos: 100,
                period: Period::Month,
            }),
            ..Default::default()
        };
        let child = Policy {
            models: pats(&["gpt-4o-mini", "gpt-*", "claude"]),
            resources: pats(&["/v1/chat/completions", "/v1/audio/*"]),
            client_cidrs: nets(&["10.2.0.0/16", "11.0.0.0/8"]),
            rpm: Some(200),
            model_limits: BTreeMap::from([(
                "gpt-4o-mini".parse().unwrap(),
                ModelLimit {
                    rpm: Some(20),
                    tpm: Some(5),
                },
            )]),
            credit: Some(CreditLimit {
                limit_nanos: 101,
                period: Period::Month,
            }),
            ..Default::default()
        };
        let entries: Vec<String> = parent
            .excesses(&child)
            .iter()
            .map(|e| format!("{}:{}", e.field, e.entry))
            .collect();
        assert_eq!(
            entries,
            vec![
                "models:gpt-*",
                "models:claude",
                "resources:/v1/audio/*",
                "client_cidrs:11.0.0.0/8",
                "rpm:rpm",
                "model_limits:gpt-4o-mini rpm",
                "credit:limit_nanos",
            ]
        );
        let said: Vec<String> = parent
            .excesses(&child)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            said.contains(&"rpm: 200 exceeds the parent's 100".to_owned()),
            "{said:?}"
        );
        assert!(
            said.contains(&"model_limits gpt-4o-mini rpm: 20 exceeds the parent's 10".to_owned()),
            "{said:?}"
        );
        assert!(Policy::default().excesses(&child).is_empty());
        assert!(parent.excesses(&Policy::default()).is_empty());
    }

    fn pattern() -> impl Strategy<Value = ModelPattern> {
        ("[ab]{0,3}", any::<bool>()).prop_filter_map("non-empty", |(s, prefix)| {
            if prefix {
                format!("{s}*").parse().ok()
            } else {
                s.parse().ok()
            }
        })
    }

    fn patterns() -> impl Strategy<Value = Option<Vec<ModelPattern>>> {
        prop::option::of(prop::collection::vec(pattern(), 0..4))
    }

    fn net() -> impl Strategy<Value = IpNet> {
        (0u8..4, 0u8..4, 8u8..=32).prop_map(|(a, b, len)| {
            IpNet::new(std::net::IpAddr::from([10, a, b, 0]), len)
                .unwrap()
                .trunc()
        })
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (
            patterns(),
            prop::option::of(prop::collection::vec(net(), 0..3)),
            prop::option::of(1u32..100),
        )
            .prop_map(|(models, cidrs, rpm)| Policy {
                models,
                client_cidrs: cidrs,
                rpm,
                ..Default::default()
            })
    }

    proptest! {
        /// The effective policy allows a model exactly when every account on the chain does.
        #[test]
        fn effective_is_the_intersection(chain in prop::collection::vec(policy(), 1..4), model in "[ab]{0,4}",
                                        ip in (0u8..4, 0u8..4, 0u8..=255)) {
            let eff = Policy::effective(&chain);
            let ip = std::net::IpAddr::from([10, ip.0, ip.1, ip.2]);
            prop_assert_eq!(eff.allows_model(&model), chain.iter().all(|p| p.allows_model(&model)));
            prop_assert_eq!(eff.allows_ip(ip), chain.iter().all(|p| p.allows_ip(ip)));
            let min_rpm = chain.iter().filter_map(|p| p.rpm).min();
            prop_assert_eq!(eff.rpm, min_rpm);
        }

        /// A child within bounds allows nothing its parent does not.
        #[test]
        fn within_bounds_means_subset(parent in policy(), child in policy(), model in "[ab]{0,4}",
                                      ip in (0u8..4, 0u8..4, 0u8..=255)) {
            let ip = std::net::IpAddr::from([10, ip.0, ip.1, ip.2]);
            if parent.excesses(&child).is_empty() {
                if child.models.is_some() && child.allows_model(&model) {
                    prop_assert!(parent.allows_model(&model));
                }
                if child.client_cidrs.is_some() && child.allows_ip(ip) {
                    prop_assert!(parent.allows_ip(ip));
                }
            }
        }

        /// The callable list admits a model exactly when the policy allows it and some
        /// served pattern serves it.
        #[test]
        fn callable_models_are_allowed_and_served(policy in policy(), served in prop::collection::vec(pattern(), 0..4),
                                                  model in "[ab]{0,4}") {
            let listed = policy.callable_models(&served).iter().any(|p| p.matches(&model));
            let expected = policy.allows_model(&model) && served.iter().any(|p| p.matches(&model));
            prop_assert_eq!(listed, expected);
        }

        /// Intersection is commutative in what it allows.
        #[test]
        fn intersection_commutes(a in policy(), b in policy(), model in "[ab]{0,4}") {
            prop_assert_eq!(a.intersect(&b).allows_model(&model), b.intersect(&a).allows_model(&model));
        }
    }
}
