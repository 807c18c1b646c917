//! Counters put back after the shared store lost them: credit from the usage
//! ledger's spend, rate counters from the replicas' own shares.

use crate::ids::AccountId;
use crate::policy::CreditLimit;

use super::charges::credit_counter;
use super::window::{DAY_MS, GRACE_MS, Window};

/// One account's own spend on one UTC day (days since 1970), as the usage ledger's
/// rollups hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaySpend {
    pub day: i64,
    pub account: AccountId,
    pub cost_nanos: u64,
}

/// A counter and the value it starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterValue {
    pub counter: String,
    pub value: u64,
    pub expires_at_ms: i64,
}

/// Credit counters rebuilt from stored spend, after the counters were lost: for
/// every account with a credit limit, what its subtree spent in the current window.
/// `chain_of` names an account and its ancestors (the calling account first); spend
/// of accounts no longer known is counted nowhere.
pub fn rebuilt_credits<'a>(
    credits: impl IntoIterator<Item = (AccountId, CreditLimit)>,
    chain_of: impl Fn(AccountId) -> Option<&'a [AccountId]>,
    spend: &[DaySpend],
    now_ms: i64,
) -> Vec<CounterValue> {
    let today = Window::Day.id(now_ms);
    let month = Window::Month.id(now_ms);
    let mut day_total: std::collections::HashMap<AccountId, u64> = Default::default();
    let mut month_total: std::collections::HashMap<AccountId, u64> = Default::default();
    for s in spend {
        let in_month = Window::Month.id(s.day * DAY_MS) == month;
        if !in_month {
            continue;
        }
        for a in chain_of(s.account).unwrap_or_default() {
            let m = month_total.entry(*a).or_default();
            *m = m.saturating_add(s.cost_nanos);
            if s.day == today {
                let d = day_total.entry(*a).or_default();
                *d = d.saturating_add(s.cost_nanos);
            }
        }
    }
    credits
        .into_iter()
        .filter_map(|(account, credit)| {
            let window = Window::from(credit.period);
            let totals = match window {
                Window::Day => &day_total,
                _ => &month_total,
            };
            let value = totals.get(&account).copied().filter(|v| *v > 0)?;
            Some(CounterValue {
                counter: credit_counter(account, window, now_ms),
                value,
                expires_at_ms: window.end_ms(now_ms) + GRACE_MS,
            })
        })
        .collect()
}

/// Rate counters (RPM, TPM: one-minute windows) a replica put back into a shared
/// store that lost them: what the replica itself admitted in each window that has
/// not ended, as `(counter, amount, expires_at_ms)`. Amounts of zero are left out.
/// Every replica adds its own share once after a loss, so the counters hold the
/// window's admissions again (see `data-plane/src/limits/limiter.rs`).
pub fn restorable_shares<'a>(
    shares: impl IntoIterator<Item = (&'a str, u64, i64)>,
    now_ms: i64,
) -> Vec<CounterValue> {
    shares
        .into_iter()
        .filter(|(_, amount, expires_at_ms)| *amount > 0 && *expires_at_ms > now_ms)
        .map(|(counter, value, expires_at_ms)| CounterValue {
            counter: counter.to_owned(),
            value,
            expires_at_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IssuedKeyId;
    use crate::limits::charges::{AccountLimits, Charge, LimitSubject, plan};
    use crate::limits::fixtures::{NOW, limits};
    use crate::limits::reservation::Reservation;
    use crate::policy::Period;

    #[test]
    fn credits_are_rebuilt_from_the_subtrees_spend() {
        let (main, team, member, other) = (
            AccountId::new(),
            AccountId::new(),
            AccountId::new(),
            AccountId::new(),
        );
        let chains: std::collections::HashMap<AccountId, Vec<AccountId>> = [
            (main, vec![main]),
            (team, vec![team, main]),
            (member, vec![member, team, main]),
        ]
        .into();
        let today = Window::Day.id(NOW);
        let spend = |day, account, cost_nanos| DaySpend {
            day,
            account,
            cost_nanos,
        };
        let rows = [
            spend(today, member, 100),
            spend(today, team, 10),
            spend(today - 1, member, 1_000),
            // Last month, and an account the snapshot no longer holds.
            spend(today - 25, member, 50_000),
            spend(today, other, 7),
        ];
        let credit = |period| CreditLimit {
            limit_nanos: 1,
            period,
        };
        let credits = [
            (main, credit(Period::Month)),
            (team, credit(Period::Day)),
            (member, credit(Period::Month)),
            (other, credit(Period::Day)),
        ];
        let rebuilt = rebuilt_credits(credits, |a| chains.get(&a).map(Vec::as_slice), &rows, NOW);
        let value_of = |a: AccountId, w: Window| {
            rebuilt
                .iter()
                .find(|c| c.counter == credit_counter(a, w, NOW))
                .map(|c| c.value)
        };
        assert_eq!(value_of(main, Window::Month), Some(1_110));
        assert_eq!(value_of(team, Window::Day), Some(110));
        assert_eq!(value_of(member, Window::Month), Some(1_100));
        assert_eq!(
            value_of(other, Window::Day),
            None,
            "unknown accounts count nowhere"
        );
        assert_eq!(rebuilt.len(), 3);
        // The names are the ones admission charges.
        let planned = plan(
            &LimitSubject {
                key: IssuedKeyId::new(),
                key_rpm: None,
                chain: &[AccountLimits {
                    account: team,
                    credit: Some(credit(Period::Day)),
                    ..AccountLimits::default()
                }],
            },
            "m",
            Reservation::default(),
            NOW,
        );
        assert_eq!(planned[0].counter, credit_counter(team, Window::Day, NOW));
        let team_counter = rebuilt.iter().find(|c| c.value == 110).unwrap();
        assert_eq!(team_counter.expires_at_ms, planned[0].expires_at_ms);
    }

    #[test]
    fn shares_restore_only_live_nonzero_windows() {
        let restored = restorable_shares(
            [
                ("a:rpm:1", 30, NOW + 1),
                ("a:rpm:0", 12, NOW),
                ("a:tpm:1", 0, NOW + 60_000),
            ],
            NOW,
        );
        assert_eq!(
            restored,
            vec![CounterValue {
                counter: "a:rpm:1".into(),
                value: 30,
                expires_at_ms: NOW + 1
            }]
        );
        let chain = [limits(Some(10), Some(5))];
        let charges = plan(
            &LimitSubject {
                key: IssuedKeyId::new(),
                key_rpm: Some(3),
                chain: &chain,
            },
            "gpt-4o",
            Reservation::default(),
            NOW,
        );
        let rates: Vec<bool> = charges.iter().map(Charge::is_rate).collect();
        assert_eq!(rates, vec![true, true, true, true, false]);
    }
}
