//! Which counters a request is charged to: its issued key's, and those of its account
//! and every ancestor, each named with its window.

use crate::ids::{AccountId, IssuedKeyId};
use crate::model::ModelPattern;
use crate::policy::{CreditLimit, ModelLimit, Period, Policy, min_opt};

use super::reservation::Reservation;
use super::window::{GRACE_MS, Window};

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

/// Who calls, as limits see it.
pub struct LimitSubject<'a> {
    pub key: IssuedKeyId,
    /// The effective per-key RPM of the key's account.
    pub key_rpm: Option<u32>,
    /// The limits of the caller's account and its ancestors that set any.
    pub chain: &'a [AccountLimits],
}

/// The counter of an account's credit in the window holding `now_ms`.
pub(super) fn credit_counter(account: AccountId, window: Window, now_ms: i64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::fixtures::{NOW, limits};

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
}
