//! Admission (every reservation fits, or none is made), the refusal a client reads,
//! and settlement, which replaces a reservation by what was used.

use std::fmt;

use crate::ids::AccountId;
use crate::policy::Period;

use super::charges::{Charge, LimitKind};

/// Whether every reservation fits: `Err(i)` names the first charge that does not.
/// `current[i]` is the value of `charges[i]`'s counter.
pub fn admit(current: &[u64], charges: &[Charge]) -> Result<(), usize> {
    for (i, c) in charges.iter().enumerate() {
        let now = current.get(i).copied().unwrap_or(0);
        if now.saturating_add(c.reserve) > c.limit {
            return Err(i);
        }
    }
    Ok(())
}

/// A counter after settlement: the reservation replaced by the actual amount, never
/// below zero.
pub fn settle(current: u64, reserved: u64, actual: u64) -> u64 {
    current.saturating_add(actual).saturating_sub(reserved)
}

/// A refusal, in words a client can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: LimitKind,
    pub account: Option<AccountId>,
    pub limit: u64,
    /// Milliseconds until the window ends.
    pub retry_after_ms: i64,
}

impl Refusal {
    pub fn of(charge: &Charge, now_ms: i64) -> Self {
        Self {
            kind: charge.kind.clone(),
            account: charge.account,
            limit: charge.limit,
            retry_after_ms: (charge.window_end_ms - now_ms).max(0),
        }
    }

    /// Credit is exhausted (as opposed to a rate limit).
    pub fn is_credit(&self) -> bool {
        matches!(self.kind, LimitKind::Credit(_))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = match self.account {
            Some(a) => format!("account {a}"),
            None => "this API key".to_owned(),
        };
        match &self.kind {
            LimitKind::KeyRpm | LimitKind::AccountRpm => write!(
                f,
                "rate limit of {whose} reached: {} requests per minute",
                self.limit
            ),
            LimitKind::ModelRpm(p) => write!(
                f,
                "rate limit of {whose} for model {p} reached: {} requests per minute",
                self.limit
            ),
            LimitKind::ModelTpm(p) => write!(
                f,
                "token limit of {whose} for model {p} reached: {} tokens per minute \
                 (this request reserves its prompt and max_tokens)",
                self.limit
            ),
            LimitKind::Credit(period) => write!(
                f,
                "credit of {whose} for this {} is used up: limit {} nano-dollars",
                match period {
                    Period::Day => "day",
                    Period::Month => "month",
                },
                self.limit
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IssuedKeyId;
    use crate::limits::charges::{LimitSubject, Unit, plan};
    use crate::limits::fixtures::{NOW, limits};
    use crate::limits::reservation::Reservation;
    use proptest::prelude::*;

    #[test]
    fn admission_is_all_or_nothing_and_names_the_first_breach() {
        let chain = [limits(Some(2), None)];
        let subject = LimitSubject {
            key: IssuedKeyId::new(),
            key_rpm: None,
            chain: &chain,
        };
        let charges = plan(&subject, "gpt-4o", Reservation::default(), NOW);
        assert_eq!(admit(&[0, 0, 0], &charges), Ok(()));
        assert_eq!(admit(&[2, 0, 0], &charges), Err(0));
        assert_eq!(admit(&[1, 5, 0], &charges), Err(1));
        let refusal = Refusal::of(&charges[1], NOW);
        assert_eq!(refusal.retry_after_ms, 30_000);
        assert!(refusal.to_string().contains("gpt*"), "{refusal}");
    }

    proptest! {
        /// However requests interleave, a counter passes its limit only by what actual
        /// usage exceeded reservations.
        #[test]
        fn overshoot_is_bounded_by_usage_beyond_reservations(
            limit in 1u64..10_000,
            requests in proptest::collection::vec((1u64..500, 0u64..600), 1..60),
        ) {
            let charge = Charge {
                counter: "c".into(),
                limit,
                reserve: 0,
                unit: Unit::CostNanos,
                expires_at_ms: 0,
                window_end_ms: 0,
                kind: LimitKind::Credit(Period::Day),
                account: None,
            };
            let mut counter = 0u64;
            let mut excess = 0u64;
            let mut in_flight = Vec::new();
            // Admit everything that fits, then settle all (worst case: all in flight).
            for (reserve, actual) in &requests {
                let c = Charge { reserve: *reserve, ..charge.clone() };
                if admit(&[counter], std::slice::from_ref(&c)).is_ok() {
                    counter += reserve;
                    in_flight.push((*reserve, *actual));
                }
            }
            prop_assert!(counter <= limit);
            for (reserve, actual) in in_flight {
                counter = settle(counter, reserve, actual);
                excess += actual.saturating_sub(reserve);
            }
            prop_assert!(counter <= limit + excess);
        }

        #[test]
        fn settlement_never_goes_below_zero(current in 0u64..1000, reserved in 0u64..2000, actual in 0u64..2000) {
            let after = settle(current, reserved, actual);
            prop_assert_eq!(after, (current + actual).saturating_sub(reserved));
        }
    }
}
