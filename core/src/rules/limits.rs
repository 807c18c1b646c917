//! How an owner's limits are enforced: the `limits` section of its rules.

use serde::{Deserialize, Serialize};

/// How an owner's limits are enforced (`/x-config/limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Output tokens reserved for a call that names no maximum (`max_tokens` and its
    /// kin); unset: the data plane's own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_max_output_tokens: Option<u32>,
    /// What the data planes do when the shared limit store cannot be reached.
    #[serde(default)]
    pub when_store_down: StoreDown,
    /// Whether answers tell callers their own quota in their protocol's rate-limit
    /// headers (`core::quota`); on unless turned off.
    #[serde(default = "on", skip_serializing_if = "is_on")]
    pub quota_headers: bool,
}

fn on() -> bool {
    true
}

fn is_on(b: &bool) -> bool {
    *b
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            default_max_output_tokens: None,
            when_store_down: StoreDown::default(),
            quota_headers: true,
        }
    }
}

impl LimitSettings {
    pub(super) fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// With the shared limit store away: refuse every call that has a limit, or admit it
/// against each replica's own counters, every limit divided by the replica count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreDown {
    #[default]
    FailClosed,
    FailOpen,
}

impl StoreDown {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailClosed => "fail_closed",
            Self::FailOpen => "fail_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EditError, Rules};

    #[test]
    fn quota_headers_are_on_until_an_owner_turns_them_off() {
        let r = Rules::default();
        assert!(r.limits.quota_headers);
        let off = r
            .with_entry("limits", "quota_headers", serde_json::json!(false))
            .unwrap();
        assert!(!off.limits.quota_headers);
        assert_eq!(
            off.section("limits").unwrap(),
            serde_json::json!({"when_store_down": "fail_closed", "quota_headers": false})
        );
        assert!(
            off.without_entry("limits", "quota_headers")
                .unwrap()
                .limits
                .quota_headers
        );
        assert!(matches!(
            r.with_entry("limits", "quota_headers", serde_json::json!("no")),
            Err(EditError::Invalid(_))
        ));
    }
}
