//! Rate limits and credits: which counters a request touches, and the arithmetic of
//! admission and settlement. Pure: the limiters (in-process, Redis) apply exactly
//! these rules to their counters.
//!
//! - A request counts against its issued key, its account **and every ancestor**:
//!   each account's own limits bind the sum of its subtree.
//! - Admission reserves the request's most it can cost on every counter at once, all
//!   or nothing: it is admitted only if every reservation fits under its limit.
//! - Settlement replaces the reservation by what was used. So a counter can pass its
//!   limit only by what actual usage exceeded its reservation (the overshoot bound).
//! - Windows are fixed: the UTC minute (RPM, TPM), the UTC day or month (credit).

use std::fmt;

use crate::ids::{AccountId, IssuedKeyId};
use crate::model::ModelPattern;
use crate::policy::{CreditLimit, ModelLimit, Period, Policy, min_opt};
use crate::rules::Price;
use crate::time::UtcDay;
use crate::usage::TokenUsage;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// Counters outlive their window a little, so a late settlement still finds them.
const GRACE_MS: i64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    Minute,
    Day,
    Month,
}

impl Window {
    /// The number of the window `now_ms` falls in (minutes, days or months since 1970).
    pub fn id(self, now_ms: i64) -> i64 {
        match self {
            Self::Minute => now_ms.div_euclid(MINUTE_MS),
            Self::Day => now_ms.div_euclid(DAY_MS),
            Self::Month => {
                let (y, m, _) = UtcDay::of_unix_ms(now_ms).civil();
                y * 12 + i64::from(m) - 1
            }
        }
    }

    /// When the window holding `now_ms` ends.
    pub fn end_ms(self, now_ms: i64) -> i64 {
        match self {
            Self::Minute => (now_ms.div_euclid(MINUTE_MS) + 1) * MINUTE_MS,
            Self::Day => (now_ms.div_euclid(DAY_MS) + 1) * DAY_MS,
            Self::Month => UtcDay::of_unix_ms(now_ms).first_of_next_month().start_ms(),
        }
    }
}

impl From<Period> for Window {
    fn from(p: Period) -> Self {
        match p {
            Period::Day => Self::Day,
            Period::Month => Self::Month,
        }
    }
}

/// What a counter limits, for the refusal a client reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitKind {
    KeyRpm,
    AccountRpm,
    ModelRpm(ModelPattern),
    ModelTpm(ModelPattern),
    Credit(Period),
}

impl LimitKind {
    /// A stable name, for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::KeyRpm => "key_rpm",
            Self::AccountRpm => "account_rpm",
            Self::ModelRpm(_) => "model_rpm",
            Self::ModelTpm(_) => "model_tpm",
            Self::Credit(_) => "credit",
        }
    }
}

/// One counter a request is charged to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// The counter's name, window included (limiters add their own prefix).
    pub counter: String,
    pub limit: u64,
    /// Reserved at admission.
    pub reserve: u64,
    /// What is spent: requests, tokens or nano-dollars.
    pub unit: Unit,
    /// The counter is dropped after this (its window's end, plus grace).
    pub expires_at_ms: i64,
    /// When the window ends: the wait a refusal names.
    pub window_end_ms: i64,
    pub kind: LimitKind,
    /// The account whose limit it is (`None`: the issued key's).
    pub account: Option<AccountId>,
}

/// What a counter counts, so settlement knows what to put in place of the reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Requests,
    Tokens,
    CostNanos,
}

/// The limits of one account that bind its subtree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountLimits {
    pub account: AccountId,
    pub rpm: Option<u32>,
    pub model_limits: Vec<(ModelPattern, ModelLimit)>,
    pub credit: Option<CreditLimit>,
}

impl AccountLimits {
    /// The account's own limits (`None` when it sets none), with the main account's
    /// rules' model caps added for a main account.
    pub fn of(account: AccountId, own: &Policy, rules_caps: Option<&Policy>) -> Option<Self> {
        let mut model_limits: Vec<(ModelPattern, ModelLimit)> = own
            .model_limits
            .iter()
            .map(|(p, l)| (p.clone(), *l))
            .collect();
        for (p, l) in rules_caps.iter().flat_map(|r| r.model_limits.iter()) {
            match model_limits.iter_mut().find(|(q, _)| q == p) {
                Some((_, mine)) => {
                    mine.rpm = min_opt(mine.rpm, l.rpm);
                    mine.tpm = min_opt(mine.tpm, l.tpm);
                }
                None => model_limits.push((p.clone(), *l)),
            }
        }
        let limits = Self {
            account,
            rpm: own.rpm,
            model_limits,
            credit: own.credit,
        };
        let none =
            limits.rpm.is_none() && limits.model_limits.is_empty() && limits.credit.is_none();
        (!none).then_some(limits)
    }
}

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

/// Who calls, as limits see it.
pub struct LimitSubject<'a> {
    pub key: IssuedKeyId,
    /// The effective per-key RPM of the key's account.
    pub key_rpm: Option<u32>,
    /// The limits of the caller's account and its ancestors that set any.
    pub chain: &'a [AccountLimits],
}

/// The counter of an account's credit in the window holding `now_ms`.
fn credit_counter(account: AccountId, window: Window, now_ms: i64) -> String {
    counter_name(format_args!("a:{account}:credit:{}", window.id(now_ms)))
}

/// A counter's name in one allocation: `format!` would start small and grow a
/// name (an id, a pattern, a window) two or three times, on every admitted call.
fn counter_name(parts: std::fmt::Arguments<'_>) -> String {
    use std::fmt::Write as _;
    let mut name = String::with_capacity(96);
    // Writing into a String cannot fail.
    let _ = name.write_fmt(parts);
    name
}

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

/// How many replicas divide each limit while the shared store is away (owners who
/// fail open): the operator's count when set, else the number of live data planes
/// the control plane last reported, else one.
pub fn share_replicas(hand_set: Option<u32>, live_data_planes: Option<u32>) -> u32 {
    hand_set
        .or(live_data_planes)
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// One replica's limit while the shared store is away: its share of `limit` (rounded
/// up, so `replicas` shares sum to at most `limit + replicas - 1`), less what it
/// already admitted in the same window through the shared store before it went away.
pub fn local_share_limit(limit: u64, replicas: u32, admitted_here: u64) -> u64 {
    limit
        .div_ceil(u64::from(replicas.max(1)))
        .saturating_sub(admitted_here)
}

/// Every counter a request to `model` is charged to, at `now_ms`.
pub fn plan(subject: &LimitSubject<'_>, model: &str, r: Reservation, now_ms: i64) -> Vec<Charge> {
    let minute = Window::Minute;
    let charge =
        |counter: String, limit: u64, reserve: u64, unit, window: Window, kind, account| {
            let end = window.end_ms(now_ms);
            Charge {
                counter,
                limit,
                reserve,
                unit,
                expires_at_ms: end + GRACE_MS,
                window_end_ms: end,
                kind,
                account,
            }
        };
    let m = minute.id(now_ms);
    let mut out = Vec::new();
    if let Some(rpm) = subject.key_rpm {
        out.push(charge(
            counter_name(format_args!("k:{}:rpm:{m}", subject.key)),
            u64::from(rpm),
            1,
            Unit::Requests,
            minute,
            LimitKind::KeyRpm,
            None,
        ));
    }
    for a in subject.chain {
        let id = a.account;
        if let Some(rpm) = a.rpm {
            out.push(charge(
                counter_name(format_args!("a:{id}:rpm:{m}")),
                u64::from(rpm),
                1,
                Unit::Requests,
                minute,
                LimitKind::AccountRpm,
                Some(id),
            ));
        }
        for (pattern, limit) in a.model_limits.iter().filter(|(p, _)| p.matches(model)) {
            if let Some(rpm) = limit.rpm {
                out.push(charge(
                    counter_name(format_args!("a:{id}:m:{pattern}:rpm:{m}")),
                    u64::from(rpm),
                    1,
                    Unit::Requests,
                    minute,
                    LimitKind::ModelRpm(pattern.clone()),
                    Some(id),
                ));
            }
            if let Some(tpm) = limit.tpm {
                out.push(charge(
                    counter_name(format_args!("a:{id}:m:{pattern}:tpm:{m}")),
                    tpm,
                    r.tokens,
                    Unit::Tokens,
                    minute,
                    LimitKind::ModelTpm(pattern.clone()),
                    Some(id),
                ));
            }
        }
        if let Some(credit) = a.credit {
            let window = Window::from(credit.period);
            out.push(charge(
                credit_counter(id, window, now_ms),
                credit.limit_nanos,
                r.cost_nanos,
                Unit::CostNanos,
                window,
                LimitKind::Credit(credit.period),
                Some(id),
            ));
        }
    }
    out
}

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

/// What a request used, per unit, once it is over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Used {
    pub tokens: u64,
    pub cost_nanos: u64,
}

impl Charge {
    /// A rate counter (RPM or TPM): its window is one minute, and a shared store that
    /// lost it gets it back from the replicas' own shares (credit comes from the ledger).
    pub fn is_rate(&self) -> bool {
        !matches!(self.kind, LimitKind::Credit(_))
    }

    /// What this counter keeps of the request: a request stays counted; tokens and
    /// money become what was used.
    pub fn actual(&self, used: Used) -> u64 {
        match self.unit {
            Unit::Requests => self.reserve,
            Unit::Tokens => used.tokens,
            Unit::CostNanos => used.cost_nanos,
        }
    }
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
    use proptest::prelude::*;

    // 2026-11-21T10:00:30Z
    const NOW: i64 = 1_795_219_200_000 + 10 * 3_600_000 + 30_000;

    fn limits(rpm: Option<u32>, credit: Option<u64>) -> AccountLimits {
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
    fn windows_and_their_ends() {
        assert_eq!(Window::Minute.end_ms(NOW) - NOW, 30_000);
        assert_eq!(Window::Minute.id(NOW), NOW / 60_000);
        assert_eq!(crate::time::utc_day(Window::Day.end_ms(NOW)), "2026-11-22");
        assert_eq!(
            crate::time::utc_day(Window::Month.end_ms(NOW)),
            "2026-12-01"
        );
        let december = Window::Month.end_ms(NOW) + 1;
        assert_eq!(Window::Month.id(december), Window::Month.id(NOW) + 1);
        assert_eq!(
            crate::time::utc_day(Window::Month.end_ms(december)),
            "2027-01-01"
        );
    }

    #[test]
    fn a_request_is_charged_to_its_key_and_every_ancestor() {
        let child = limits(Some(10), None);
        let main = limits(Some(100), Some(5_000));
        let chain = [child.clone(), main.clone()];
        let subject = LimitSubject {
            key: IssuedKeyId::new(),
            key_rpm: Some(3),
            chain: &chain,
        };
        let r = Reservation {
            tokens: 300,
            cost_nanos: 40,
        };
        let charges = plan(&subject, "gpt-4o", r, NOW);
        let kinds: Vec<_> = charges.iter().map(|c| (&c.kind, c.account)).collect();
        assert_eq!(charges.len(), 1 + 3 + 4);
        assert_eq!(kinds[0], (&LimitKind::KeyRpm, None));
        assert!(kinds.contains(&(&LimitKind::AccountRpm, Some(child.account))));
        assert!(kinds.contains(&(&LimitKind::AccountRpm, Some(main.account))));
        let credit = charges
            .iter()
            .find(|c| matches!(c.kind, LimitKind::Credit(_)))
            .unwrap();
        assert_eq!((credit.reserve, credit.limit), (40, 5_000));
        assert!(credit.counter.ends_with(&Window::Month.id(NOW).to_string()));
        // A model no cap names touches only the request counters.
        let other = plan(&subject, "claude-3", r, NOW);
        assert_eq!(other.len(), 1 + 2 + 1);
    }

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

    #[test]
    fn rules_caps_join_the_main_accounts_own() {
        let mut own = Policy::default();
        own.model_limits.insert(
            "gpt*".parse().unwrap(),
            ModelLimit {
                rpm: Some(50),
                tpm: None,
            },
        );
        let mut caps = Policy::default();
        caps.model_limits.insert(
            "gpt*".parse().unwrap(),
            ModelLimit {
                rpm: Some(20),
                tpm: Some(9),
            },
        );
        let id = AccountId::new();
        let l = AccountLimits::of(id, &own, Some(&caps)).unwrap();
        assert_eq!(
            l.model_limits[0].1,
            ModelLimit {
                rpm: Some(20),
                tpm: Some(9)
            }
        );
        assert_eq!(AccountLimits::of(id, &Policy::default(), None), None);
    }

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

    #[test]
    fn the_share_follows_the_live_data_planes_unless_set_by_hand() {
        assert_eq!(share_replicas(None, None), 1);
        assert_eq!(share_replicas(None, Some(3)), 3);
        assert_eq!(
            share_replicas(Some(2), Some(3)),
            2,
            "the operator's count wins"
        );
        assert_eq!(share_replicas(None, Some(0)), 1);
        assert_eq!(local_share_limit(60, 2, 0), 30);
        assert_eq!(local_share_limit(61, 2, 0), 31);
        assert_eq!(local_share_limit(60, 2, 25), 5);
        assert_eq!(local_share_limit(60, 2, 45), 0);
        assert_eq!(local_share_limit(60, 0, 0), 60);
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

        /// The replicas' shares together pass the limit only by the rounding up of
        /// each share: at most one per replica beyond the first.
        #[test]
        fn shares_sum_to_about_the_limit(limit in 0u64..100_000, replicas in 1u32..64) {
            let sum = u64::from(replicas) * local_share_limit(limit, replicas, 0);
            prop_assert!(sum >= limit);
            prop_assert!(sum < limit + u64::from(replicas));
        }

        #[test]
        fn settlement_never_goes_below_zero(current in 0u64..1000, reserved in 0u64..2000, actual in 0u64..2000) {
            let after = settle(current, reserved, actual);
            prop_assert_eq!(after, (current + actual).saturating_sub(reserved));
        }
    }
}
