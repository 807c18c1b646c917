//! What the limits' unit tests share: a fixed now and an account's limits.

use super::charges::AccountLimits;
use crate::ids::AccountId;
use crate::policy::{CreditLimit, ModelLimit, Period};

// 2026-11-21T10:00:30Z
pub(super) const NOW: i64 = 1_795_219_200_000 + 10 * 3_600_000 + 30_000;

pub(super) fn limits(rpm: Option<u32>, credit: Option<u64>) -> AccountLimits {
    AccountLimits {
        account: AccountId::new(),
        rpm,
        model_limits: vec![(
            "gpt*".parse().unwrap(),
            ModelLimit {
                rpm: Some(5),
                tpm: Some(1_000),
            },
        )],
        credit: credit.map(|limit_nanos| CreditLimit {
            limit_nanos,
            period: Period::Month,
        }),
    }
}
