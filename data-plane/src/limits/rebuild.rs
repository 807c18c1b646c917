//! Rebuilding credit counters after they were lost. Counters start empty when Redis
//! loses its data (or, in embedded mode, when the process restarts); admitting on
//! empty counters would hand every account its whole period's credit again. So the
//! limiter refuses to admit until the period's spend, as the usage collector's
//! daily rollups hold it, has been added back to every credit counter.
//!
//! The rebuilt counter misses what calls in flight, or usage not yet delivered to the
//! collector, cost at that moment. RPM and TPM counters are not read from the ledger:
//! each replica keeps what it admitted in the current one-minute windows and puts it
//! back itself (the replica that primes adds its own share in the same script; the
//! others when they see the new generation, see `limiter`). In embedded mode the
//! in-process counters restart with the process: credit is rebuilt here, the rate
//! windows of the minute of the restart start from zero.

use std::time::{Duration, Instant};

use switchyard_core::limits::DaySpend;
use switchyard_core::snapshot::Compiled;
use switchyard_core::time;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use tokio::sync::Mutex;
use tonic::transport::Channel;

use super::limiter::{Limiter, LimiterError};

/// Reads the period's spend from the collector and primes the counters with it.
pub struct Rebuilder {
    collector: Option<UsageServiceClient<Channel>>,
    /// One rebuild at a time in this process (across replicas, the limiter's primed
    /// marker makes sure spend is added once); it holds when the last one failed.
    running: Mutex<Option<Instant>>,
    timeout: Duration,
}

/// After a failed rebuild, calls are answered by the owner's store-down policy at
/// once for this long, instead of each waiting its turn for another try.
const RETRY_AFTER: Duration = Duration::from_secs(2);

impl Rebuilder {
    /// A rebuilder reading from the collector at `url` (connected on first use).
    pub fn new(url: &str, timeout: Duration) -> Self {
        let collector = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map(|e| {
                let channel = e
                    .connect_timeout(timeout)
                    .timeout(timeout)
                    .tcp_nodelay(true)
                    .connect_lazy();
                UsageServiceClient::new(channel)
            })
            .map_err(|e| tracing::error!(url, error = %e, "collector URL is invalid; credit counters cannot be rebuilt"))
            .ok();
        Self {
            collector,
            running: Mutex::new(None),
            timeout,
        }
    }

    /// Make sure `limiter` holds the current period's spend: a no-op when it already
    /// does, else read it from the collector and add it, once.
    pub async fn ensure_primed(
        &self,
        limiter: &Limiter,
        snapshot: &Compiled,
        now_ms: i64,
    ) -> Result<(), LimiterError> {
        let mut last_failure = self.running.lock().await;
        if last_failure.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return Err(LimiterError::Unavailable(
                "the credit rebuild failed moments ago".into(),
            ));
        }
        let rebuilt = self.rebuild(limiter, snapshot, now_ms).await;
        *last_failure = rebuilt.is_err().then(Instant::now);
        rebuilt
    }

    async fn rebuild(
        &self,
        limiter: &Limiter,
        snapshot: &Compiled,
        now_ms: i64,
    ) -> Result<(), LimiterError> {
        if limiter.is_primed().await? {
            return Ok(());
        }
        let spend = self.spend_this_month(now_ms).await?;
        let values = snapshot.rebuilt_credits(&spend, now_ms);
        let primed = limiter.prime(&values, now_ms).await?;
        if primed {
            tracing::warn!(
                counters = values.len(),
                "limit counters were empty; credit spend rebuilt from the usage ledger"
            );
        }
        Ok(())
    }

    /// Every account's own spend per day, from the first of this month until today.
    async fn spend_this_month(&self, now_ms: i64) -> Result<Vec<DaySpend>, LimiterError> {
        let Some(collector) = &self.collector else {
            return Err(LimiterError::Unavailable(
                "no usage collector to rebuild credit counters from".into(),
            ));
        };
        let today = now_ms.div_euclid(86_400_000);
        let (y, m, _) = time::civil_from_days(today);
        let first = time::days_from_civil(y, i64::from(m), 1);
        let query = pb::RollupQuery {
            main_account_id: String::new(),
            account_ids: Vec::new(),
            from_day: time::day_text(first),
            to_day: time::day_text(today),
            granularity: pb::Granularity::Day.into(),
            by_provider_key: false,
            by_endpoint: false,
            by_label: pb::RollupLabel::Unspecified.into(),
            by_child: false,
            child_ids: Vec::new(),
            model: String::new(),
        };
        let unreachable =
            |e: String| LimiterError::Unavailable(format!("usage collector for the rebuild: {e}"));
        let reply = tokio::time::timeout(self.timeout, collector.clone().query_rollups(query))
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(e.message().to_owned()))?
            .into_inner();
        Ok(reply
            .rows
            .into_iter()
            .filter_map(|r| {
                Some(DaySpend {
                    day: time::parse_utc_day(&r.period)?,
                    account: r.account_id.parse().ok()?,
                    cost_nanos: u64::try_from(r.cost_nanos).unwrap_or(0),
                })
            })
            .collect())
    }
}
