//! Coordination between the replicas of a service: a change signal every replica
//! hears, leadership for jobs only one replica may run, and a registry of live
//! members. In etcd when deployed (leases, watches, elections); in this process when
//! embedded. Callers see one interface either way.
//!
//! Layout: here the `Coordinator` over both; `args`: the flags every service takes;
//! `etcd`: the etcd side, over a small client of committed gRPC stubs (`etcd/gen`).
//!
//! Everything here is advisory: a replica that misses a signal catches up on its own
//! periodic re-read, and etcd being away never stops a request.

mod args;
mod etcd;

pub use args::CoordArgs;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_runtime::Shutdown;
use tokio::sync::watch;

pub use etcd::{EtcdError, EtcdSettings};

#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd::EtcdError),
    #[error("etcd settings: {0}")]
    Settings(String),
}

/// Wait until `leader` (from [`Coordinator::leadership`]) changes. A leadership that
/// can no longer change (its coordinator dropped) never wakes this, so a loop that
/// selects on it beside a timer sleeps instead of spinning on a closed channel.
pub async fn leadership_changed(leader: &mut watch::Receiver<bool>) {
    if leader.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One process's handle on the coordination of its service.
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

enum Inner {
    Local(Local),
    Etcd(etcd::Etcd),
}

/// The in-process stand-in: one replica, so it always leads and hears itself.
struct Local {
    revisions: watch::Sender<u64>,
    /// Always true, and kept open: a closed channel would wake its receivers'
    /// `changed()` at once, every time.
    leading: watch::Sender<bool>,
    members: Mutex<BTreeMap<(String, String), String>>,
}

impl Default for Local {
    fn default() -> Self {
        Self {
            revisions: watch::Sender::default(),
            leading: watch::Sender::new(true),
            members: Mutex::default(),
        }
    }
}

impl Coordinator {
    /// Coordination within this process only (embedded mode, one replica).
    pub fn local() -> Self {
        Self {
            inner: Arc::new(Inner::Local(Local::default())),
        }
    }

    /// Coordination through etcd. Connects in the background and keeps trying; until
    /// then signals go unheard, nobody leads and the registry reads empty.
    pub fn etcd(settings: EtcdSettings, shutdown: Shutdown) -> Result<Self, CoordError> {
        Ok(Self {
            inner: Arc::new(Inner::Etcd(etcd::Etcd::start(settings, shutdown)?)),
        })
    }

    /// Whether this is the etcd flavour (for status pages).
    pub fn backend(&self) -> &'static str {
        match &*self.inner {
            Inner::Local(_) => "in-process",
            Inner::Etcd(_) => "etcd",
        }
    }

    /// Tell every replica (this one included) that the configuration reached
    /// `revision`. Never waits: in etcd the newest revision is put as soon as etcd
    /// takes it, and replicas also catch up on their own periodic re-read.
    pub fn announce(&self, revision: u64) {
        match &*self.inner {
            Inner::Local(l) => {
                raise(&l.revisions, revision);
            }
            Inner::Etcd(e) => e.announce(revision),
        }
    }

    /// The highest revision announced by any replica, as it changes.
    pub fn revisions(&self) -> watch::Receiver<u64> {
        match &*self.inner {
            Inner::Local(l) => l.revisions.subscribe(),
            Inner::Etcd(e) => e.revisions(),
        }
    }

    /// Whether this process leads `election`, as it changes. Leadership moves to
    /// another replica when this one stops or loses etcd for longer than its lease.
    pub fn leadership(&self, election: &str) -> watch::Receiver<bool> {
        match &*self.inner {
            Inner::Local(l) => {
                // One replica: it leads every election, for good.
                let _ = election;
                l.leading.subscribe()
            }
            Inner::Etcd(e) => e.leadership(election),
        }
    }

    /// Publish `value` as member `id` of `group` for as long as this process lives
    /// (in etcd: bound to its lease, so a dead process's entries disappear).
    pub async fn register(&self, group: &str, id: &str, value: String) {
        match &*self.inner {
            Inner::Local(l) => {
                if let Ok(mut m) = l.members.lock() {
                    m.insert((group.to_owned(), id.to_owned()), value);
                }
            }
            Inner::Etcd(e) => e.register(group, id, value).await,
        }
    }

    pub async fn unregister(&self, group: &str, id: &str) {
        match &*self.inner {
            Inner::Local(l) => {
                if let Ok(mut m) = l.members.lock() {
                    m.remove(&(group.to_owned(), id.to_owned()));
                }
            }
            Inner::Etcd(e) => e.unregister(group, id).await,
        }
    }

    /// Every live member of `group`: id and value, ordered by id.
    pub async fn members(&self, group: &str) -> Result<Vec<(String, String)>, CoordError> {
        match &*self.inner {
            Inner::Local(l) => Ok(l
                .members
                .lock()
                .map(|m| {
                    m.iter()
                        .filter(|((g, _), _)| g == group)
                        .map(|((_, id), v)| (id.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()),
            Inner::Etcd(e) => e.members(group).await,
        }
    }
}

/// Move `tx` up to `revision`, never down.
fn raise(tx: &watch::Sender<u64>, revision: u64) -> bool {
    tx.send_if_modified(|current| {
        let newer = revision > *current;
        if newer {
            *current = revision;
        }
        newer
    })
}

/// Backoff between attempts to reach etcd.
fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_coordination_hears_itself_and_always_leads() {
        let c = Coordinator::local();
        let mut revisions = c.revisions();
        c.announce(4);
        c.announce(3);
        assert!(revisions.has_changed().unwrap());
        assert_eq!(*revisions.borrow_and_update(), 4);
        let leader = c.leadership("anything");
        assert!(*leader.borrow());
        // Open and unchanged: a loop waiting on `changed()` sleeps instead of spinning.
        assert!(!leader.has_changed().unwrap());
        // With its coordinator gone the channel closes, and waiting still sleeps.
        let mut orphan = Coordinator::local().leadership("anything");
        assert!(*orphan.borrow());
        let waited = tokio::time::timeout(Duration::ZERO, leadership_changed(&mut orphan));
        assert!(waited.await.is_err(), "woke on a closed channel");
        c.register("data-planes", "b", "2".into()).await;
        c.register("data-planes", "a", "1".into()).await;
        c.register("other", "c", "3".into()).await;
        assert_eq!(
            c.members("data-planes").await.unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        c.unregister("data-planes", "a").await;
        assert_eq!(c.members("data-planes").await.unwrap().len(), 1);
    }

    #[test]
    fn backoff_grows_to_a_cap() {
        let mut b = Duration::from_millis(100);
        for _ in 0..10 {
            b = next_backoff(b);
        }
        assert_eq!(b, Duration::from_secs(2));
    }
}
