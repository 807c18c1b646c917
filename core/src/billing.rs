//! What a parent bills its child for the child's usage: the provider cost as is, times
//! a multiplier, or at the parent's own prices for the models it names — so a reseller
//! can charge its customers. Usage keeps both the provider cost and the billed amount.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::ModelPattern;
use crate::rules::{Price, most_specific};
use crate::usage::TokenUsage;

/// The largest multiplier accepted: ×1000.
const MAX_MULTIPLIER_PPM: u64 = 1_000_000_000;
const MAX_PRICES: usize = 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Billing {
    /// Bill the provider cost times this, in millionths (`1250000` is ×1.25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier_ppm: Option<u64>,
    /// Prices that replace the provider cost for the models they name; the most
    /// specific pattern wins.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::object::map_values"
    )]
    pub prices: BTreeMap<ModelPattern, Price>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BillingError {
    #[error("billing multiplier_ppm must be at most {MAX_MULTIPLIER_PPM} (×1000)")]
    Multiplier,
    #[error("billing prices list more than {MAX_PRICES} models")]
    TooManyPrices,
}

impl Billing {
    pub fn validate(&self) -> Result<(), BillingError> {
        if self.multiplier_ppm.is_some_and(|m| m > MAX_MULTIPLIER_PPM) {
            return Err(BillingError::Multiplier);
        }
        if self.prices.len() > MAX_PRICES {
            return Err(BillingError::TooManyPrices);
        }
        Ok(())
    }

    /// The amount billed for one call, given its provider cost.
    pub fn billed_nanos(&self, model: &str, tokens: &TokenUsage, cost_nanos: i64) -> i64 {
        if let Some(price) = most_specific(&self.prices, model) {
            return price.cost_nanos(tokens);
        }
        match self.multiplier_ppm {
            None => cost_nanos,
            Some(ppm) => {
                let billed = i128::from(cost_nanos) * i128::from(ppm) / 1_000_000;
                i64::try_from(billed).unwrap_or(if billed < 0 { i64::MIN } else { i64::MAX })
            }
        }
    }

    /// The price the account is billed for a model, given the owner's price for it
    /// (`cost`): the parent's own price where it names the model, else the owner's
    /// price times the multiplier; `None` when neither prices the model.
    pub fn price(&self, model: &str, cost: Option<Price>) -> Option<Price> {
        if let Some(price) = most_specific(&self.prices, model) {
            return Some(*price);
        }
        let cost = cost?;
        let Some(ppm) = self.multiplier_ppm else {
            return Some(cost);
        };
        let times = |nanos: u64| {
            u64::try_from(u128::from(nanos) * u128::from(ppm) / 1_000_000).unwrap_or(u64::MAX)
        };
        Some(Price {
            input_per_million_nanos: times(cost.input_per_million_nanos),
            cached_input_per_million_nanos: times(cost.cached_input_per_million_nanos),
            cache_write_per_million_nanos: cost.cache_write_per_million_nanos.map(times),
            output_per_million_nanos: times(cost.output_per_million_nanos),
            per_request_nanos: times(cost.per_request_nanos),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_multiplier_or_own_prices() {
        let tokens = TokenUsage {
            input: 1_000,
            output: 100,
            cached: 0,
            cache_write: 0,
        };
        assert_eq!(Billing::default().billed_nanos("m", &tokens, 700), 700);
        let markup: Billing = serde_json::from_str(r#"{"multiplier_ppm":1250000}"#).unwrap();
        assert_eq!(markup.billed_nanos("m", &tokens, 800), 1_000);
        let own: Billing = serde_json::from_str(
            r#"{"multiplier_ppm":2000000,"prices":{"gpt*":{"input_per_million_nanos":1000000000}}}"#,
        )
        .unwrap();
        // Named models at the parent's prices (1,000 input tokens at 1,000 each)…
        assert_eq!(own.billed_nanos("gpt-4o", &tokens, 5), 1_000_000);
        // …others at the multiplier.
        assert_eq!(own.billed_nanos("claude", &tokens, 5), 10);
        let huge = Billing {
            multiplier_ppm: Some(MAX_MULTIPLIER_PPM),
            prices: BTreeMap::new(),
        };
        assert_eq!(huge.billed_nanos("m", &tokens, i64::MAX), i64::MAX);
    }

    #[test]
    fn the_price_billed_for_a_model() {
        let cost = Price {
            input_per_million_nanos: 1_000,
            output_per_million_nanos: 4_000,
            cache_write_per_million_nanos: Some(2_000),
            ..Price::default()
        };
        assert_eq!(Billing::default().price("m", Some(cost)), Some(cost));
        assert_eq!(Billing::default().price("m", None), None);
        let own: Billing = serde_json::from_str(
            r#"{"multiplier_ppm":1500000,"prices":{"gpt*":{"per_request_nanos":7}}}"#,
        )
        .unwrap();
        let flat = own.price("gpt-4o", None).unwrap();
        assert_eq!(
            (flat.per_request_nanos, flat.input_per_million_nanos),
            (7, 0)
        );
        let marked = own.price("claude", Some(cost)).unwrap();
        assert_eq!(marked.input_per_million_nanos, 1_500);
        assert_eq!(marked.output_per_million_nanos, 6_000);
        assert_eq!(marked.cache_write_per_million_nanos, Some(3_000));
        assert_eq!(own.price("claude", None), None);
        let huge = Billing {
            multiplier_ppm: Some(MAX_MULTIPLIER_PPM),
            prices: BTreeMap::new(),
        };
        let top = Price {
            output_per_million_nanos: u64::MAX,
            ..Price::default()
        };
        assert_eq!(
            huge.price("m", Some(top)).unwrap().output_per_million_nanos,
            u64::MAX
        );
    }

    #[test]
    fn bad_billing() {
        assert!(serde_json::from_str::<Billing>(r#"{"multiplier":2}"#).is_err());
        assert!(serde_json::from_str::<Billing>(r#"{"multiplier_ppm":-1}"#).is_err());
        let big = Billing {
            multiplier_ppm: Some(MAX_MULTIPLIER_PPM + 1),
            prices: BTreeMap::new(),
        };
        assert_eq!(big.validate(), Err(BillingError::Multiplier));
    }
}
