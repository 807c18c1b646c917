//! Alerts: what a rule watches and the thresholds it may have, which thresholds a
//! value reaches that have not fired yet in their period, the period a firing
//! belongs to, the webhook signature (and its check, for receivers), and the
//! retry schedule of a delivery.
//!
//! A firing is unique per rule, period, threshold and subject (the store holds that
//! row), so each crossing is announced once per period whoever evaluates it.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::policy::Period;
use crate::time::UtcDay;

/// The header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-switchyard-signature";
/// The header naming a delivery: the same on every retry, so receivers drop repeats.
pub const DELIVERY_HEADER: &str = "x-switchyard-delivery";
/// A receiver's default tolerance between the signature's time and its own clock.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;
/// The most thresholds one rule holds.
pub const MAX_THRESHOLDS: usize = 10;
/// The largest daily spend a rule may name: a billion dollars, in nano-dollars.
pub const MAX_AMOUNT_NANOS: u64 = 1_000_000_000_000_000_000;
/// The largest lag (configuration versions) a rule may name.
pub const MAX_LAG_VERSIONS: u64 = 1_000_000;
/// Attempts of one delivery before it is given up.
pub const MAX_ATTEMPTS: u32 = 12;
/// The wait after the first failed attempt; each further failure doubles it.
pub const FIRST_RETRY_MS: i64 = 2_000;
/// The longest wait between two attempts.
pub const MAX_RETRY_MS: i64 = 3_600_000;

/// What a rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The account's spend in its credit period reaching a share (percent) of its
    /// credit limit.
    CreditShare,
    /// The account's spend in one UTC day reaching an amount (nano-dollars).
    DailySpend,
    /// One of the main account's provider keys reported unhealthy.
    ProviderKeyUnhealthy,
    /// A data plane this many configuration versions behind, at two evaluations
    /// in a row (operator only).
    DataPlaneLag,
}

impl AlertKind {
    pub const ALL: [Self; 4] = [
        Self::CreditShare,
        Self::DailySpend,
        Self::ProviderKeyUnhealthy,
        Self::DataPlaneLag,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreditShare => "credit_share",
            Self::DailySpend => "daily_spend",
            Self::ProviderKeyUnhealthy => "provider_key_unhealthy",
            Self::DataPlaneLag => "data_plane_lag",
        }
    }
}

impl std::str::FromStr for AlertKind {
    type Err = ThresholdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ThresholdError(format!("unknown alert kind {s:?}")))
    }
}

/// Why a rule's thresholds are refused, in words for the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ThresholdError(pub String);

/// A rule's thresholds, checked for its kind: sorted and without repeats. Shares
/// are percents 1-100; daily amounts 1 to [`MAX_AMOUNT_NANOS`]; lags 1 to
/// [`MAX_LAG_VERSIONS`] versions; an unhealthy key has no threshold (one firing per
/// key and day).
pub fn checked_thresholds(kind: AlertKind, given: &[u64]) -> Result<Vec<u64>, ThresholdError> {
    let (low, high, what) = match kind {
        AlertKind::CreditShare => (1, 100, "percents of the credit limit, 1-100"),
        AlertKind::DailySpend => (1, MAX_AMOUNT_NANOS, "nano-dollars, 1-10^18"),
        AlertKind::DataPlaneLag => (1, MAX_LAG_VERSIONS, "versions behind, 1-1000000"),
        AlertKind::ProviderKeyUnhealthy => {
            return if given.is_empty() {
                Ok(Vec::new())
            } else {
                Err(ThresholdError(
                    "provider_key_unhealthy takes no thresholds".into(),
                ))
            };
        }
    };
    if given.is_empty() || given.len() > MAX_THRESHOLDS {
        return Err(ThresholdError(format!(
            "{} needs 1-{MAX_THRESHOLDS} thresholds ({what})",
            kind.as_str()
        )));
    }
    if let Some(bad) = given.iter().find(|t| !(low..=high).contains(*t)) {
        return Err(ThresholdError(format!(
            "threshold {bad} is out of range: {} thresholds are {what}",
            kind.as_str()
        )));
    }
    let mut sorted = given.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    Ok(sorted)
}

/// The thresholds `value` reaches that have not fired in this period yet
/// (`fired`), lowest first. A jump past several fires each of them once.
pub fn reached(thresholds: &[u64], value: u64, fired: &[u64]) -> Vec<u64> {
    thresholds
        .iter()
        .copied()
        .filter(|t| value >= *t && !fired.contains(t))
        .collect()
}

/// The whole percent of `limit_nanos` that `spend_nanos` is (rounded down, so 80 %
/// is reached only at 80 % exactly or more); a zero limit counts as fully spent.
pub fn credit_share_percent(spend_nanos: u64, limit_nanos: u64) -> u64 {
    if limit_nanos == 0 {
        return 100;
    }
    let percent = u128::from(spend_nanos) * 100 / u128::from(limit_nanos);
    u64::try_from(percent).unwrap_or(u64::MAX)
}

/// The period `now_ms` falls in, as firings name it: `2026-12-08` for a day,
/// `2026-12` for a month (credit periods are UTC days and months).
pub fn period_key(period: Period, now_ms: i64) -> String {
    let day = UtcDay::of_unix_ms(now_ms);
    match period {
        Period::Day => day.to_string(),
        Period::Month => day.month_text(),
    }
}

/// Where one data plane stood at an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataPlaneLag {
    pub replica: String,
    pub applied_version: u64,
    /// Versions behind the newest committed configuration.
    pub lag: u64,
}

/// The data planes at least `threshold` versions behind now that were already
/// behind at the same applied version at the previous evaluation (`previous`:
/// replica → applied version then, for those lagging). One look is not enough: a
/// data plane is briefly behind after every write.
pub fn stuck_data_planes<'a>(
    previous: &BTreeMap<String, u64>,
    now: &'a [DataPlaneLag],
    threshold: u64,
) -> Vec<&'a DataPlaneLag> {
    now.iter()
        .filter(|d| d.lag >= threshold.max(1))
        .filter(|d| previous.get(&d.replica) == Some(&d.applied_version))
        .collect()
}

/// The body of one webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The firing's id (for a test event, the delivery's).
    pub id: String,
    pub rule_id: String,
    /// The account the rule watches; absent for the operator's rules.
    pub account_id: Option<String>,
    /// An [`AlertKind`] name, or `test`.
    pub kind: String,
    /// What crossed: a provider key id or a data plane replica; absent otherwise.
    pub subject: Option<String>,
    pub threshold: u64,
    /// The value that reached it: nano-dollars spent, percent of the credit limit,
    /// versions behind (0 for an unhealthy key).
    pub value: u64,
    /// The period it fired in (`2026-12-08`, `2026-12`, or `v<applied version>` for
    /// a data plane's lag).
    pub period: String,
    pub at_unix_ms: i64,
}

/// A new webhook secret: `whsec_` and 32 random bytes in hex.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    format!("whsec_{}", hex::encode(bytes))
}

fn mac(secret: &[u8], t_unix: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(t_unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header's value for `body` sent at `t_unix` (seconds).
pub fn sign(secret: &[u8], t_unix: i64, body: &[u8]) -> String {
    let tag = mac(secret, t_unix, body).finalize().into_bytes();
    format!("t={t_unix},v1={}", hex::encode(tag))
}

/// Why a signature does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not `t=<unix seconds>,v1=<hex>`")]
    Malformed,
    #[error("the signature is {0} s away from now, more than the tolerance")]
    Stale(i64),
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// What a receiver checks: `header` (the [`SIGNATURE_HEADER`]'s value) signs `body`
/// with `secret`, at a time within `tolerance_secs` of `now_unix`. Compared in
/// constant time; any of several `v1` entries may match (secret rotation).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => tags.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let skew = now_unix.saturating_sub(t).saturating_abs();
    if skew > tolerance_secs {
        return Err(SignatureError::Stale(skew));
    }
    let expected = mac(secret, t, body);
    if tags
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// What follows one attempt of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    /// Try again at this time (unix ms).
    RetryAt(i64),
    /// No attempt is left.
    GiveUp,
}

/// After attempt number `attempts` (1 for the first) at `now_ms`: delivered when
/// the receiver answered 2xx, else another attempt after a wait that doubles from
/// [`FIRST_RETRY_MS`] up to [`MAX_RETRY_MS`], until [`MAX_ATTEMPTS`].
pub fn next_step(attempts: u32, succeeded: bool, now_ms: i64) -> NextStep {
    if succeeded {
        return NextStep::Delivered;
    }
    if attempts >= MAX_ATTEMPTS {
        return NextStep::GiveUp;
    }
    NextStep::RetryAt(now_ms.saturating_add(retry_delay_ms(attempts)))
}

/// The wait after `failed` failed attempts (1 for the first failure).
pub fn retry_delay_ms(failed: u32) -> i64 {
    let doublings = failed.saturating_sub(1).min(30);
    FIRST_RETRY_MS
        .saturating_mul(1_i64 << doublings)
        .min(MAX_RETRY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_checked_per_kind() {
        assert_eq!(
            checked_thresholds(AlertKind::CreditShare, &[100, 50, 80, 50]).unwrap(),
            [50, 80, 100]
        );
        for bad in [&[0][..], &[101], &[]] {
            assert!(checked_thresholds(AlertKind::CreditShare, bad).is_err());
        }
        assert!(checked_thresholds(AlertKind::CreditShare, &[1; 11]).is_err());
        assert!(checked_thresholds(AlertKind::DailySpend, &[MAX_AMOUNT_NANOS]).is_ok());
        assert!(checked_thresholds(AlertKind::DailySpend, &[MAX_AMOUNT_NANOS + 1]).is_err());
        assert!(checked_thresholds(AlertKind::DataPlaneLag, &[0]).is_err());
        assert_eq!(
            checked_thresholds(AlertKind::ProviderKeyUnhealthy, &[]).unwrap(),
            Vec::<u64>::new()
        );
        assert!(checked_thresholds(AlertKind::ProviderKeyUnhealthy, &[1]).is_err());
        for kind in AlertKind::ALL {
            assert_eq!(kind.as_str().parse::<AlertKind>().unwrap(), kind);
        }
        assert!("spend".parse::<AlertKind>().is_err());
    }

    #[test]
    fn each_threshold_fires_once_per_period() {
        let t = [50, 80, 100];
        assert!(reached(&t, 49, &[]).is_empty());
        assert_eq!(reached(&t, 50, &[]), [50]);
        // A jump past two thresholds fires both, once.
        assert_eq!(reached(&t, 85, &[50]), [80]);
        assert_eq!(reached(&t, 120, &[]), [50, 80, 100]);
        assert!(reached(&t, 120, &[50, 80, 100]).is_empty());
    }

    #[test]
    fn shares_round_down_and_survive_large_numbers() {
        assert_eq!(credit_share_percent(799, 1000), 79);
        assert_eq!(credit_share_percent(800, 1000), 80);
        assert_eq!(credit_share_percent(2500, 1000), 250);
        assert_eq!(credit_share_percent(u64::MAX, u64::MAX), 100);
        assert_eq!(credit_share_percent(0, 0), 100);
    }

    #[test]
    fn periods_are_utc_days_and_months() {
        // 2026-12-08T23:59:59.999Z, then the next millisecond.
        let late = 1_796_774_399_999;
        assert_eq!(period_key(Period::Day, late), "2026-12-08");
        assert_eq!(period_key(Period::Day, late + 1), "2026-12-09");
        assert_eq!(period_key(Period::Month, late), "2026-12");
        // 2027-01-01T00:00:00Z
        assert_eq!(period_key(Period::Month, 1_798_761_600_000), "2027-01");
    }

    #[test]
    fn a_data_plane_is_stuck_only_when_seen_behind_twice() {
        let at = |replica: &str, applied_version, lag| DataPlaneLag {
            replica: replica.into(),
            applied_version,
            lag,
        };
        let now = [at("dp-a", 7, 3), at("dp-b", 9, 1), at("dp-c", 4, 6)];
        let previous = BTreeMap::from([("dp-a".to_owned(), 7), ("dp-c".to_owned(), 3)]);
        let stuck: Vec<&str> = stuck_data_planes(&previous, &now, 2)
            .iter()
            .map(|d| d.replica.as_str())
            .collect();
        // dp-b is within the threshold; dp-c moved on since the last look.
        assert_eq!(stuck, ["dp-a"]);
        assert!(stuck_data_planes(&BTreeMap::new(), &now, 1).is_empty());
    }

    #[test]
    fn signatures_verify_with_the_right_secret_only() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_") && secret.len() == 6 + 64);
        assert_ne!(secret, generate_secret());
        let body = br#"{"kind":"test"}"#;
        let header = sign(secret.as_bytes(), 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        let check = |secret: &str, header: &str, body: &[u8], now| {
            verify(secret.as_bytes(), header, body, now, DEFAULT_TOLERANCE_SECS)
        };
        assert_eq!(check(&secret, &header, body, 1_700_000_100), Ok(()));
        assert_eq!(
            check("whsec_other", &header, body, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&secret, &header, b"{}", 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&secret, &header, body, 1_700_000_301),
            Err(SignatureError::Stale(301))
        );
        for bad in ["", "v1=00", "t=1,v1=zz", "t=x,v1=00", "t=1"] {
            assert_eq!(
                check(&secret, bad, body, 1),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        // Another v1 beside the right one (a rotation) still verifies.
        let rotated = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(check(&secret, &rotated, body, 1_700_000_000), Ok(()));
        // A known vector: HMAC-SHA256("key", "1.body"), as Python's hmac gives it.
        assert_eq!(
            sign(b"key", 1, b"body"),
            "t=1,v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5"
        );
    }

    #[test]
    fn retries_back_off_doubling_up_to_a_cap() {
        let delays: Vec<i64> = (1..=13).map(retry_delay_ms).collect();
        assert_eq!(&delays[..4], [2_000, 4_000, 8_000, 16_000]);
        assert!(delays.iter().all(|d| *d <= MAX_RETRY_MS));
        assert_eq!(delays[12], MAX_RETRY_MS);
        assert_eq!(next_step(1, true, 0), NextStep::Delivered);
        assert_eq!(next_step(1, false, 10), NextStep::RetryAt(2_010));
        assert_eq!(next_step(3, false, 0), NextStep::RetryAt(8_000));
        assert_eq!(next_step(MAX_ATTEMPTS, false, 0), NextStep::GiveUp);
        assert_eq!(retry_delay_ms(u32::MAX), MAX_RETRY_MS);
    }
}
