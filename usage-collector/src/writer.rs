//! One writer per collector. Batches from every ingest stream that wait at the same
//! moment go into one transaction (a group commit): concurrent data planes do not
//! contend for the same rollup rows, and each commit carries more events.

use switchyard_core::usage::UsageEvent;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Stored, UsageStore};

/// Transactions in flight at once: one commits while the next is written.
const WRITERS: usize = 2;

/// Events one transaction takes at most.
const MAX_GROUP_EVENTS: usize = 4096;

struct Job {
    events: Vec<UsageEvent>,
    done: oneshot::Sender<Result<Stored, String>>,
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
    pub async fn store(&self, events: Vec<UsageEvent>) -> Result<Stored, String> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job { events, done })
            .await
            .map_err(|_| "the usage writer stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the usage writer stopped".to_owned())?
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
        match store.insert_batches(&batches).await {
            Ok(stored) => {
                for (job, landed) in jobs.into_iter().zip(stored) {
                    let _ = job.done.send(Ok(landed));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for job in jobs {
                    let _ = job.done.send(Err(reason.clone()));
                }
            }
        }
    }
}
