//! The caller's own quota, as the rate-limit headers of its protocol tell it: the
//! tightest Switchyard limit along its chain for requests and for tokens, picked from
//! what admission already knows (each counter it reserved on and its value after the
//! reservation, each window's end, the price). Pure; the data plane writes the headers.
//!
//! The rule:
//! - **Requests**: every requests counter (the key's RPM, each account's RPM up the
//!   chain, each matching ModelLimits RPM) gives `limit - value`; the smallest
//!   remaining wins.
//! - **Tokens**: every ModelLimits TPM counter the same way; and each credit counter,
//!   turned into tokens at the model's price: the credit left, less one call's
//!   per-request price, divided by the per-token price. Credit binds tokens only when
//!   its count is tighter than the TPM's, and only when the price names a per-token
//!   price. The combined tokens take the dearest per-token price (input, cache write
//!   or output): what credit surely buys whatever the mix. Input tokens take the
//!   dearer of input and cache write; output tokens the output price.
//! - **Ties**: the same remaining with the later reset wins (the longer wait once it
//!   is spent); then the first counter in charge order.
//! - **Refused**: the limit that refused the call is its kind's answer, with nothing
//!   remaining and its window's end as the reset, so the headers and the refusal agree.
//!   A credit refusal is the answer of all three token kinds.
//! - Admitted calls read the counters after their own reservation (the call counts
//!   against itself: a reservation is its most possible cost); refused ones read them
//!   as they stand.

use std::fmt::{self, Write as _};

use crate::limits::{Charge, Unit};
use crate::rules::Price;
use crate::time::civil_from_days;

/// One limit as a client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub limit: u64,
    pub remaining: u64,
    /// When the window ends (Unix ms): the limit is whole again.
    pub reset_at_ms: i64,
}

impl Bound {
    /// The tighter of two: less remaining, then the later reset, then `self`.
    fn tighter(self, other: Self) -> Self {
        if (other.remaining, std::cmp::Reverse(other.reset_at_ms))
            < (self.remaining, std::cmp::Reverse(self.reset_at_ms))
        {
            other
        } else {
            self
        }
    }
}

/// Keep the tighter of what is kept and `candidate`.
fn keep(slot: &mut Option<Bound>, candidate: Bound) {
    *slot = Some(slot.map_or(candidate, |b| b.tighter(candidate)));
}

/// The tightest limit of each kind that applies to a call (`None`: none applies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub requests: Option<Bound>,
    /// Input and output together.
    pub tokens: Option<Bound>,
    pub input_tokens: Option<Bound>,
    pub output_tokens: Option<Bound>,
}

impl Quota {
    /// Whether no limit applies at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Nano-dollars per million tokens for each token kind, the per-request price aside.
#[derive(Clone, Copy)]
struct TokenPrices {
    tokens: u64,
    input: u64,
    output: u64,
    per_request: u64,
}

impl TokenPrices {
    fn of(p: &Price) -> Self {
        let input = p
            .input_per_million_nanos
            .max(p.cache_write_per_million_nanos.unwrap_or(0));
        Self {
            tokens: input.max(p.output_per_million_nanos),
            input,
            output: p.output_per_million_nanos,
            per_request: p.per_request_nanos,
        }
    }
}

/// Tokens `nanos` buys at `per_million` nano-dollars per million (`None`: free tokens,
/// which credit does not bound).
fn tokens_for(nanos: u64, per_million: u64) -> Option<u64> {
    (per_million > 0).then(|| {
        let tokens = u128::from(nanos) * 1_000_000 / u128::from(per_million);
        u64::try_from(tokens).unwrap_or(u64::MAX)
    })
}

/// A credit counter in tokens at `per_million`.
fn credit_in_tokens(c: &Charge, left: u64, per_request: u64, per_million: u64) -> Option<Bound> {
    Some(Bound {
        limit: tokens_for(c.limit, per_million)?,
        remaining: tokens_for(left.saturating_sub(per_request), per_million)?,
        reset_at_ms: c.window_end_ms,
    })
}

/// The caller's quota. `values[i]` is `charges[i]`'s counter after the reservation
/// (admitted) or as it stands (`refused`: the index of the charge that refused the
/// call). `price`: the owner's price for the model, for credit in tokens.
pub fn quota(
    charges: &[Charge],
    values: &[u64],
    price: Option<&Price>,
    refused: Option<usize>,
) -> Quota {
    let prices = price.map(TokenPrices::of);
    let mut q = Quota::default();
    // What the limit that refused the call says: it answers for its kinds, even where
    // another counter shows as little left.
    let mut hit = Quota::default();
    for (i, c) in charges.iter().enumerate() {
        let refusing = refused == Some(i);
        let left = if refusing {
            0
        } else {
            c.limit.saturating_sub(values.get(i).copied().unwrap_or(0))
        };
        let into = if refusing { &mut hit } else { &mut q };
        let bound = Bound {
            limit: c.limit,
            remaining: left,
            reset_at_ms: c.window_end_ms,
        };
        match c.unit {
            Unit::Requests => keep(&mut into.requests, bound),
            Unit::Tokens => {
                keep(&mut into.tokens, bound);
                keep(&mut into.input_tokens, bound);
                keep(&mut into.output_tokens, bound);
            }
            Unit::CostNanos => {
                let Some(p) = prices else { continue };
                let kinds = [
                    (&mut into.tokens, p.tokens),
                    (&mut into.input_tokens, p.input),
                    (&mut into.output_tokens, p.output),
                ];
                for (slot, per_million) in kinds {
                    if let Some(b) = credit_in_tokens(c, left, p.per_request, per_million) {
                        keep(slot, b);
                    }
                }
            }
        }
    }
    Quota {
        requests: hit.requests.or(q.requests),
        tokens: hit.tokens.or(q.tokens),
        input_tokens: hit.input_tokens.or(q.input_tokens),
        output_tokens: hit.output_tokens.or(q.output_tokens),
    }
}

/// Short header text built on the stack: no allocation until it becomes a header value.
#[derive(Clone, Copy)]
pub struct HeaderText {
    buf: [u8; 32],
    len: usize,
}

impl HeaderText {
    fn new() -> Self {
        Self {
            buf: [0; 32],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only `write_str` fills the buffer, with whole `&str`s.
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl fmt::Write for HeaderText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl fmt::Debug for HeaderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_str().fmt(f)
    }
}

/// A wait in OpenAI's reset format (Go's duration text, to the millisecond): `250ms`,
/// `1s`, `1.5s`, `6m0s`, `1h0m0s`; `0s` for none.
pub fn openai_reset(wait_ms: i64) -> HeaderText {
    let mut t = HeaderText::new();
    let ms = u64::try_from(wait_ms).unwrap_or(0);
    // At most 20 digits and a few letters: always fits.
    let _ = if ms == 0 {
        t.write_str("0s")
    } else if ms < 1_000 {
        write!(t, "{ms}ms")
    } else {
        let (h, m, s, frac) = (
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1_000 % 60,
            ms % 1_000,
        );
        let hours = if h > 0 { write!(t, "{h}h") } else { Ok(()) };
        let minutes = if h > 0 || m > 0 {
            write!(t, "{m}m")
        } else {
            Ok(())
        };
        let seconds = write!(t, "{s}");
        let fraction = if frac > 0 {
            // Three digits, trailing zeros dropped: 500 → ".5", 250 → ".25".
            let mut digits = frac;
            let mut width = 3;
            while digits % 10 == 0 {
                digits /= 10;
                width -= 1;
            }
            write!(t, ".{digits:0width$}")
        } else {
            Ok(())
        };
        hours
            .and(minutes)
            .and(seconds)
            .and(fraction)
            .and(t.write_str("s"))
    };
    t
}

/// A moment as RFC 3339 UTC to the second (`2026-11-21T10:01:00Z`), as Anthropic's
/// reset headers carry it; a moment inside a second is rounded up to the next.
pub fn rfc3339(unix_ms: i64) -> HeaderText {
    let mut t = HeaderText::new();
    let secs = unix_ms.div_euclid(1_000) + i64::from(unix_ms.rem_euclid(1_000) > 0);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    let _ = write!(
        t,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        of_day / 3_600,
        of_day / 60 % 60,
        of_day % 60
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AccountId, IssuedKeyId};
    use crate::limits::{AccountLimits, LimitSubject, Reservation, Window, plan};
    use crate::policy::{CreditLimit, ModelLimit, Period};

    // 2026-11-21T10:00:30Z
    const NOW: i64 = 1_795_219_200_000 + 10 * 3_600_000 + 30_000;
    const MINUTE_END: i64 = NOW + 30_000;

    fn account(rpm: Option<u32>, model: Option<ModelLimit>, credit: Option<u64>) -> AccountLimits {
        AccountLimits {
            account: AccountId::new(),
            rpm,
            model_limits: model
                .map(|l| ("gpt*".parse().unwrap(), l))
                .into_iter()
                .collect(),
            credit: credit.map(|limit_nanos| CreditLimit {
                limit_nanos,
                period: Period::Month,
            }),
        }
    }

    fn charges(key_rpm: Option<u32>, chain: &[AccountLimits], r: Reservation) -> Vec<Charge> {
        plan(
            &LimitSubject {
                key: IssuedKeyId::new(),
                key_rpm,
                chain,
            },
            "gpt-4o",
            r,
            NOW,
        )
    }

    fn bound(limit: u64, remaining: u64, reset_at_ms: i64) -> Option<Bound> {
        Some(Bound {
            limit,
            remaining,
            reset_at_ms,
        })
    }

    #[test]
    fn the_tightest_requests_limit_along_the_chain() {
        // The key allows 10 a minute, the member 50, its parent 20.
        let chain = [account(Some(50), None, None), account(Some(20), None, None)];
        let c = charges(Some(10), &chain, Reservation::default());
        // After this call's reservation: 3 on the key, 5 on the member, 18 on the parent.
        let q = quota(&c, &[3, 5, 18], None, None);
        assert_eq!(
            q.requests,
            bound(20, 2, MINUTE_END),
            "the parent is tightest"
        );
        assert_eq!(q.tokens, None, "no token limit applies");
        let q = quota(&c, &[9, 5, 10], None, None);
        assert_eq!(q.requests, bound(10, 1, MINUTE_END), "now the key is");
        assert!(quota(&[], &[], None, None).is_empty());
    }

    #[test]
    fn model_limits_bind_requests_and_tokens() {
        let chain = [account(
            Some(100),
            Some(ModelLimit {
                rpm: Some(4),
                tpm: Some(1_000),
            }),
            None,
        )];
        let r = Reservation {
            tokens: 300,
            cost_nanos: 0,
        };
        let c = charges(None, &chain, r);
        let q = quota(&c, &[1, 1, 300], None, None);
        assert_eq!(q.requests, bound(4, 3, MINUTE_END));
        assert_eq!(q.tokens, bound(1_000, 700, MINUTE_END));
        assert_eq!(q.input_tokens, q.tokens);
        assert_eq!(q.output_tokens, q.tokens);
    }

    #[test]
    fn credit_counts_in_tokens_where_it_is_tighter() {
        let price = Price {
            input_per_million_nanos: 1_000_000,
            output_per_million_nanos: 4_000_000,
            per_request_nanos: 100,
            ..Price::default()
        };
        let chain = [account(
            None,
            Some(ModelLimit {
                rpm: None,
                tpm: Some(100_000),
            }),
            Some(20_000),
        )];
        let c = charges(None, &chain, Reservation::default());
        let month_end = Window::Month.end_ms(NOW);
        // 10,100 nano-dollars left, less one call's 100: 10,000 buys 2,500 tokens at
        // the output price, 10,000 at the input price.
        let q = quota(&c, &[0, 9_900], Some(&price), None);
        assert_eq!(q.tokens, bound(5_000, 2_500, month_end));
        assert_eq!(q.output_tokens, bound(5_000, 2_500, month_end));
        assert_eq!(q.input_tokens, bound(20_000, 10_000, month_end));
        // The TPM is tighter once the minute is mostly spent.
        let q = quota(&c, &[99_000, 9_900], Some(&price), None);
        assert_eq!(q.tokens, bound(100_000, 1_000, MINUTE_END));
        // Without a price (or with free tokens) credit says nothing of tokens.
        let q = quota(&c, &[0, 9_900], None, None);
        assert_eq!(q.tokens, bound(100_000, 100_000, MINUTE_END));
        let free = Price {
            per_request_nanos: 5,
            ..Price::default()
        };
        assert_eq!(quota(&c, &[0, 0], Some(&free), None).tokens, q.tokens);
    }

    #[test]
    fn ties_go_to_the_later_reset() {
        let chain = [account(None, None, Some(1_000_000))];
        let price = Price {
            input_per_million_nanos: 1_000_000,
            output_per_million_nanos: 1_000_000,
            ..Price::default()
        };
        let mut c = charges(None, &chain, Reservation::default());
        let mut tpm = c[0].clone();
        tpm.unit = Unit::Tokens;
        tpm.limit = 1_000_000;
        tpm.window_end_ms = MINUTE_END;
        c.insert(0, tpm);
        let q = quota(&c, &[0, 0], Some(&price), None);
        assert_eq!(
            q.tokens,
            bound(1_000_000, 1_000_000, Window::Month.end_ms(NOW))
        );
    }

    #[test]
    fn the_refusing_limit_answers_with_nothing_left() {
        let chain = [
            account(Some(50), None, None),
            account(Some(3), None, Some(10)),
        ];
        let c = charges(Some(10), &chain, Reservation::default());
        // The parent's RPM refused: values as they stand, this call not counted.
        let q = quota(&c, &[0, 0, 3, 0], None, Some(2));
        assert_eq!(q.requests, bound(3, 0, MINUTE_END));
        // Another counter that shows nothing left does not hide the refusing one.
        let q = quota(&c, &[10, 0, 2, 0], None, Some(2));
        assert_eq!(q.requests, bound(3, 0, MINUTE_END));
        // Credit refused: every token kind says nothing is left until the month ends.
        let price = Price {
            input_per_million_nanos: 1_000,
            output_per_million_nanos: 1_000,
            ..Price::default()
        };
        let q = quota(&c, &[0, 0, 0, 9], Some(&price), Some(3));
        let month_end = Window::Month.end_ms(NOW);
        assert_eq!(q.tokens, bound(10_000, 0, month_end));
        assert_eq!(q.input_tokens, bound(10_000, 0, month_end));
        assert_eq!(q.requests, bound(3, 3, MINUTE_END));
    }

    #[test]
    fn a_tpm_refusal_is_every_token_kinds_answer() {
        let chain = [account(
            None,
            Some(ModelLimit {
                rpm: None,
                tpm: Some(500),
            }),
            None,
        )];
        let c = charges(None, &chain, Reservation::default());
        let q = quota(&c, &[400], None, Some(0));
        assert_eq!(q.tokens, bound(500, 0, MINUTE_END));
        assert_eq!(q.output_tokens, bound(500, 0, MINUTE_END));
        assert_eq!(q.requests, None);
    }

    #[test]
    fn openai_reset_texts() {
        let cases = [
            (0, "0s"),
            (-5, "0s"),
            (250, "250ms"),
            (1_000, "1s"),
            (1_500, "1.5s"),
            (1_250, "1.25s"),
            (59_001, "59.001s"),
            (360_000, "6m0s"),
            (90_500, "1m30.5s"),
            (3_600_000, "1h0m0s"),
            (31 * 86_400_000, "744h0m0s"),
        ];
        for (ms, text) in cases {
            assert_eq!(openai_reset(ms).as_str(), text, "{ms} ms");
        }
    }

    #[test]
    fn rfc3339_texts() {
        assert_eq!(rfc3339(MINUTE_END).as_str(), "2026-11-21T10:01:00Z");
        assert_eq!(rfc3339(MINUTE_END - 999).as_str(), "2026-11-21T10:01:00Z");
        assert_eq!(rfc3339(0).as_str(), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Window::Month.end_ms(NOW)).as_str(),
            "2026-12-01T00:00:00Z"
        );
    }
}
