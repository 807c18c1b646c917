//! The most a request can cost, reserved at admission.

use crate::rules::Price;
use crate::usage::TokenUsage;

/// The most a request can cost, reserved at admission.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reservation {
    pub tokens: u64,
    pub cost_nanos: u64,
}

/// A prompt's tokens are estimated as half its body's bytes: a token carries at
/// least two bytes of JSON-encoded text in practice, so this rarely falls short.
pub const BYTES_PER_TOKEN_ESTIMATE: u64 = 2;

/// The reservation of a request: its prompt estimate plus the most output it asked
/// for (or the owner's default), priced with the owner's price for the model.
pub fn reservation(body_bytes: usize, max_output: u64, price: Option<&Price>) -> Reservation {
    let prompt = u64::try_from(body_bytes).unwrap_or(u64::MAX) / BYTES_PER_TOKEN_ESTIMATE;
    let tokens = prompt.saturating_add(max_output);
    let cost = price.map_or(0, |p| {
        // The prompt at the dearer of the input and cache-write prices: a call may
        // write all of it to the provider's cache.
        let writes_cost_more = p
            .cache_write_per_million_nanos
            .is_some_and(|w| w > p.input_per_million_nanos);
        p.cost_nanos(&TokenUsage {
            input: prompt,
            output: max_output,
            cached: 0,
            cache_write: if writes_cost_more { prompt } else { 0 },
        })
    });
    Reservation {
        tokens,
        cost_nanos: u64::try_from(cost).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_cover_prompt_and_output() {
        let price = Price {
            input_per_million_nanos: 1_000_000,
            cached_input_per_million_nanos: 0,
            output_per_million_nanos: 2_000_000,
            per_request_nanos: 7,
            ..Price::default()
        };
        let r = reservation(400, 100, Some(&price));
        assert_eq!(r.tokens, 200 + 100);
        assert_eq!(r.cost_nanos, 200 + 200 + 7);
        assert_eq!(reservation(400, 100, None).cost_nanos, 0);
    }
}
