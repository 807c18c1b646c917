//! The `alerts` singleton job: the replica leading the election evaluates every
//! alert rule every `every` (`--alert-evaluate-seconds`) and sends due webhooks
//! every second, so retries keep their schedule whatever the evaluation period.
//! A new leader starts at once: a firing is one row per rule, period, threshold and
//! subject, so two replicas briefly both leading still announce each crossing once,
//! and a delivery interrupted by a change of leader is sent again (at least once,
//! under the same delivery id).

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_runtime::Shutdown;
use tokio::sync::watch;

use crate::service::{AlertMemory, Service};

/// How often due deliveries are looked for.
const DELIVERY_TICK: Duration = Duration::from_secs(1);

pub async fn alert_when_leading(
    service: Arc<Service>,
    mut leader: watch::Receiver<bool>,
    every: Duration,
    shutdown: Shutdown,
) {
    let mut memory = AlertMemory::default();
    let mut evaluated: Option<Instant> = None;
    loop {
        if *leader.borrow_and_update() {
            let now = switchyard_runtime::now_ms();
            if evaluated.is_none_or(|at| at.elapsed() >= every) {
                evaluated = Some(Instant::now());
                match service.evaluate_alerts(&mut memory, now).await {
                    Ok(0) => {}
                    Ok(fired) => tracing::info!(fired, "alert rules evaluated"),
                    Err(e) => tracing::warn!(error = %e, "alert rules not evaluated; will retry"),
                }
            }
            if let Err(e) = service
                .deliver_due_alerts(switchyard_runtime::now_ms())
                .await
            {
                tracing::warn!(error = %e, "alert deliveries not read; will retry");
            }
        } else {
            // A follower forgets: when it leads again, it looks afresh.
            evaluated = None;
            memory = AlertMemory::default();
        }
        tokio::select! {
            () = shutdown.clone().wait() => return,
            () = switchyard_coord::leadership_changed(&mut leader) => {}
            () = tokio::time::sleep(DELIVERY_TICK.min(every)) => {}
        }
    }
}
