//! One writer per collector. Batches from every ingest stream that wait at the same
//! moment go into one transaction (a group commit): concurrent data planes do not
//! contend for the same rollup rows, and each commit carries more events.

use switchyard_core::usage::UsageEvent;
use tokio::sync::{mpsc, oneshot};

use crate::metric;
use crate::store::{Quarantined, StoreError, Stored, UsageStore};

/// Transactions in flight at once: one commits while the next is written.
const WRITERS: usize = 2;

/// Events one transaction takes at most.
const MAX_GROUP_EVENTS: usize = 4096;

struct Job {
    events: Vec<UsageEvent>,
    done: oneshot::Sender<Result<Stored, WriteError>>,
}

/// Why a batch was not stored; then nothing of it is.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the usage writer stopped")]
    Stopped,
    /// The group's transaction failed; every batch in it gets the same error.
    #[error(transparent)]
    Store(std::sync::Arc<StoreError>),
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Start the writing task; it ends when every handle is dropped.
    pub fn start(store: UsageStore) -> Self {
        let (jobs, queue) = mpsc::channel(64);
        let queue = std::sync::Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..WRITERS {
            tokio::spawn(write(store.clone(), queue.clone()));
        }
        Self { jobs }
    }

    /// Store a batch (with whatever else is waiting) and say how it landed; `Err`
    /// when the transaction failed, and then nothing of it is stored.
    pub async fn store(&self, events: Vec<UsageEvent>) -> Result<Stored, WriteError> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job { events, done })
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }
}

async fn write(store: UsageStore, queue: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
    loop {
        // Take a group while holding the queue; write it without.
        let jobs = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut size = first.events.len();
            let mut jobs = vec![first];
            while size < MAX_GROUP_EVENTS {
                match queue.try_recv() {
                    Ok(job) => {
                        size += job.events.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        let batches: Vec<&[UsageEvent]> = jobs.iter().map(|j| j.events.as_slice()).collect();
        let started = std::time::Instant::now();
        let written: Result<Vec<Stored>, StoreError> = match store.insert_batches(&batches).await {
            // The store refused something in the group: find it, set it aside, and
            // store the rest, so one bad event never holds its batch (or anyone
            // else's) back. A replay would fail the same way for ever.
            Err(e) if e.is_permanent() => {
                tracing::error!(error = %e, "the usage store refused a group of events; storing them one by one");
                one_by_one(&store, &batches).await
            }
            other => other,
        };
        metrics::histogram!(metric::WRITE_DURATION).record(started.elapsed());
        record(&batches, written.as_deref().ok());
        match written {
            Ok(stored) => {
                for (job, landed) in jobs.into_iter().zip(stored) {
                    let _ = job.done.send(Ok(landed));
                }
            }
            Err(e) => {
                let e = std::sync::Arc::new(e);
                for job in jobs {
                    let _ = job.done.send(Err(WriteError::Store(e.clone())));
                }
            }
        }
    }
}

/// Each event in a transaction of its own; those the store refuses go to the
/// quarantine. Fails as a whole only on a failure that is not the data's.
async fn one_by_one(
    store: &UsageStore,
    batches: &[&[UsageEvent]],
) -> Result<Vec<Stored>, StoreError> {
    let mut landed = Vec::with_capacity(batches.len());
    let mut refused = Vec::new();
    for batch in batches {
        let mut stored = Stored::default();
        for event in *batch {
            match store.insert(std::slice::from_ref(event)).await {
                Ok(s) => {
                    stored.new += s.new;
                    stored.duplicates += s.duplicates;
                }
                Err(e) if e.is_permanent() => {
                    stored.quarantined += 1;
                    refused.push(Quarantined::new(
                        &event.id.to_string(),
                        STORE_REFUSED,
                        &e.to_string(),
                        event,
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        landed.push(stored);
    }
    set_aside(store, &refused).await?;
    Ok(landed)
}

/// The quarantine's reason for an event the store itself refused.
pub const STORE_REFUSED: &str = "store_refused";

/// Put events in the quarantine, counted by reason and logged one by one.
pub async fn set_aside(store: &UsageStore, rows: &[Quarantined]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    store.quarantine(rows, switchyard_runtime::now_ms()).await?;
    for q in rows {
        metrics::counter!(metric::EVENTS_QUARANTINED, "reason" => q.kind).increment(1);
        tracing::error!(event = %q.event_id, reason = q.kind, detail = %q.reason, "usage event quarantined");
    }
    Ok(())
}

/// The metrics of one transaction: what it stored, and how long after each call.
fn record(batches: &[&[UsageEvent]], stored: Option<&[Stored]>) {
    let Some(stored) = stored else {
        metrics::counter!(metric::WRITE_FAILURES).increment(1);
        return;
    };
    let (new, duplicates) = stored.iter().fold((0u64, 0u64), |(n, d), s| {
        (n + u64::from(s.new), d + u64::from(s.duplicates))
    });
    metrics::counter!(metric::EVENTS_STORED).increment(new);
    metrics::counter!(metric::EVENTS_DUPLICATE).increment(duplicates);
    metrics::histogram!(metric::WRITE_EVENTS).record((new + duplicates) as f64);
    let now = switchyard_runtime::now_ms();
    // The newest event of each batch: how far behind the collector is, not how long
    // a replayed backlog waited.
    let lag = metrics::histogram!(metric::INGEST_LAG);
    for newest in batches
        .iter()
        .filter_map(|b| b.iter().map(|e| e.at_unix_ms).max())
    {
        lag.record((now - newest).max(0) as f64 / 1000.0);
    }
}
