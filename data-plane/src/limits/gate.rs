//! The admission gate: a call's cost reserved on every counter of its key and
//! account chain, or a refusal naming the limit. Counters that lost their data are
//! rebuilt on the cold branch; a store that cannot be reached is answered by the
//! owner's `when_store_down` rule.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use switchyard_core::limits::{self, Charge, LimitSubject, Refusal, Reservation, Used};
use switchyard_core::quota::{self, Quota};
use switchyard_core::rules::{Price, StoreDown};
use switchyard_core::snapshot::{Caller, Compiled};
use switchyard_runtime::now_ms;

use super::limiter::{Counted, Limiter, LimiterError};
use super::rebuild::Rebuilder;
use crate::metric;

/// Where limit counters live and what happens when they cannot be reached.
pub struct Gate {
    /// Where limit counters live (Redis, shared; or this process).
    pub limiter: Arc<Limiter>,
    /// Puts the period's spend back into counters that lost it.
    pub rebuilder: Rebuilder,
    /// Counters for owners who fail open while the shared limiter cannot be reached.
    pub local_share: LocalShare,
    /// The last limit check reached the counters: 1, did not: 0, none yet: 2.
    store_up: AtomicU8,
}

/// This replica's own counters, used while the shared limiter is unreachable for the
/// owners whose rules say `fail_open`: every limit divided by the replica count.
pub struct LocalShare {
    /// The operator's replica count, which wins over the live one.
    pub hand_set: Option<u32>,
    /// Live data planes as the control plane last reported (0: none reported yet).
    pub live_data_planes: Arc<AtomicU32>,
    pub counters: Arc<Limiter>,
}

/// Counters charged for an admitted request, and where they live.
pub struct Admitted {
    pub limiter: Arc<Limiter>,
    pub charges: Vec<Charge>,
    /// The caller's own quota after this call's reservation.
    pub quota: Quota,
}

/// Why the gate did not admit a call.
#[derive(Debug)]
pub enum Refused {
    /// The counters cannot be reached and the owner fails closed.
    StoreDown(LimiterError),
    /// A limit would be exceeded; the quota says so for the limit's kind.
    Limit(Refusal, Quota),
    /// The limiter named a charge the call does not have.
    Inconsistent,
}

impl Gate {
    pub fn new(limiter: Arc<Limiter>, rebuilder: Rebuilder, local_share: LocalShare) -> Self {
        Self {
            limiter,
            rebuilder,
            local_share,
            store_up: AtomicU8::new(2),
        }
    }

    /// Reserve the request's cost on every counter of its key and account chain, or
    /// refuse it naming the limit. `None`: no limit applies. `price`, the owner's for
    /// the model, turns credit into tokens for the caller's quota.
    pub async fn admit(
        &self,
        snapshot: &Compiled,
        caller: &Caller,
        model: &str,
        reservation: Reservation,
        price: Option<&Price>,
    ) -> Result<Option<Admitted>, Refused> {
        let now = now_ms();
        let subject = LimitSubject {
            key: caller.key,
            key_rpm: caller.policy.key_rpm,
            chain: &caller.limits,
        };
        let charges = limits::plan(&subject, model, reservation, now);
        if charges.is_empty() {
            return Ok(None);
        }
        let mut outcome = self.limiter.admit_counted(&charges, now).await;
        if matches!(outcome, Err(LimiterError::Unprimed)) {
            // Rare and slow (a read from the collector): boxed, its future does not
            // widen every call's.
            outcome = Box::pin(self.rebuilt_then_admit(&charges, snapshot, now)).await;
        }
        // The gauge is set when the state flips, not on every call.
        let up = u8::from(outcome.is_ok());
        if self.store_up.swap(up, Ordering::Relaxed) != up {
            metrics::gauge!(metric::LIMIT_STORE_UP).set(f64::from(up));
        }
        let (limiter, charges, counted) = match outcome {
            Ok(counted) => (self.limiter.clone(), charges, counted),
            Err(e) => self.store_down(snapshot, caller, charges, e, now).await?,
        };
        match counted.verdict {
            Ok(()) => {
                let quota = quota::quota(&charges, &counted.values, price, None);
                Ok(Some(Admitted {
                    limiter,
                    charges,
                    quota,
                }))
            }
            Err(i) => {
                let Some(refusal) = charges.get(i).map(|c| Refusal::of(c, now)) else {
                    return Err(Refused::Inconsistent);
                };
                metrics::counter!(metric::LIMIT_REFUSALS, "limit" => refusal.kind.as_str())
                    .increment(1);
                let quota = quota::quota(&charges, &counted.values, price, Some(i));
                Err(Refused::Limit(refusal, quota))
            }
        }
    }

    /// The counters started empty: put the period's spend back, then admit.
    async fn rebuilt_then_admit(
        &self,
        charges: &[Charge],
        snapshot: &Compiled,
        now: i64,
    ) -> Result<Counted, LimiterError> {
        self.rebuilder
            .ensure_primed(&self.limiter, snapshot, now)
            .await?;
        self.limiter.admit_counted(charges, now).await
    }

    /// The counters cannot be reached: refuse, or admit on this replica's share of
    /// each limit, as the owner's rule says.
    async fn store_down(
        &self,
        snapshot: &Compiled,
        caller: &Caller,
        charges: Vec<Charge>,
        e: LimiterError,
        now: i64,
    ) -> Result<(Arc<Limiter>, Vec<Charge>, Counted), Refused> {
        let policy = snapshot
            .limit_settings(caller.main_account())
            .when_store_down;
        metrics::counter!(metric::LIMIT_STORE_DOWN_DECISIONS, "policy" => policy.as_str())
            .increment(1);
        match policy {
            StoreDown::FailClosed => {
                tracing::error!(reason = %e, "limits cannot be checked; refusing (fail closed)");
                Err(Refused::StoreDown(e))
            }
            StoreDown::FailOpen => {
                tracing::warn!(reason = %e, "limits cannot be checked; admitting on this replica's share of each limit (fail open)");
                let share = self.local_share.charges(charges, &self.limiter);
                // The stand-in counters are primed from the start: they cannot fail.
                let counted = self
                    .local_share
                    .counters
                    .admit_counted(&share, now)
                    .await
                    .unwrap_or(Counted {
                        verdict: Ok(()),
                        values: Vec::new(),
                    });
                Ok((self.local_share.counters.clone(), share, counted))
            }
        }
    }
}

impl Admitted {
    /// Replace the reservations by what the call used, without waiting.
    pub fn settle(self, used: Used, now_ms: i64) {
        self.limiter
            .settle_in_background(self.charges, used, now_ms);
    }
}

impl LocalShare {
    /// The charges with every limit cut to this replica's share, less what it
    /// admitted in the same window through `shared` before it went away.
    fn charges(&self, charges: Vec<Charge>, shared: &Limiter) -> Vec<Charge> {
        let known = self.live_data_planes.load(Ordering::Relaxed);
        let replicas = limits::share_replicas(self.hand_set, (known > 0).then_some(known));
        charges
            .into_iter()
            .map(|mut c| {
                c.limit =
                    limits::local_share_limit(c.limit, replicas, shared.admitted_here(&c.counter));
                c
            })
            .collect()
    }
}
