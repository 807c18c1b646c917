//! The data plane's one piece of swappable state: the compiled snapshot.
//!
//! Everything derived from a snapshot is built before a single atomic store, so a
//! request sees one consistent version from start to end. Readers never lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};

use arc_swap::ArcSwapOption;
use switchyard_core::snapshot::Compiled;

/// Where the served snapshot came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    None,
    /// The file the last run left (static stability); possibly stale.
    Disk,
    ControlPlane,
}

#[derive(Default)]
pub struct Live {
    snapshot: ArcSwapOption<Compiled>,
    source: AtomicU8,
    /// A snapshot stream is up and its newest snapshot is served.
    following: AtomicBool,
    /// When the served snapshot was installed (Unix ms; 0: none yet).
    installed_at_ms: AtomicI64,
}

impl Live {
    pub fn source(&self) -> Source {
        match self.source.load(Ordering::Relaxed) {
            1 => Source::Disk,
            2 => Source::ControlPlane,
            _ => Source::None,
        }
    }

    /// Whether what is served is the control plane's newest, as far as is known.
    pub fn fresh(&self) -> bool {
        self.following.load(Ordering::Relaxed)
    }

    pub fn set_following(&self, following: bool) {
        self.following.store(following, Ordering::Relaxed);
    }

    /// Install a snapshot read from disk at start, before any stream answered.
    pub fn install_from_disk(&self, next: Compiled) -> bool {
        let installed = self.install(next);
        if installed {
            // Only the first install can come from disk; a stream never lowers it.
            let _ = self
                .source
                .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
        }
        installed
    }

    /// Install a snapshot from the control plane.
    pub fn install_followed(&self, next: Compiled) -> bool {
        let installed = self.install(next);
        self.source.store(2, Ordering::Relaxed);
        installed
    }

    /// The current snapshot, if one has arrived. Hold it for one request, never
    /// across a reload.
    pub fn load(&self) -> Option<Arc<Compiled>> {
        self.snapshot.load_full()
    }

    /// When the served snapshot was installed (Unix ms), if one is.
    pub fn installed_at_ms(&self) -> Option<i64> {
        Some(self.installed_at_ms.load(Ordering::Relaxed)).filter(|at| *at > 0)
    }

    pub fn version(&self) -> u64 {
        self.snapshot.load().as_ref().map_or(0, |s| s.version())
    }

    /// Install `next` unless it is older than what is served. Returns whether it was
    /// installed. The compare-and-swap loop keeps two concurrent installs from moving
    /// the version backwards.
    pub fn install(&self, next: Compiled) -> bool {
        let next = Arc::new(next);
        let mut installed = false;
        let previous = self.snapshot.rcu(|current| match current {
            Some(cur) if cur.version() > next.version() => {
                installed = false;
                Some(cur.clone())
            }
            _ => {
                installed = true;
                Some(next.clone())
            }
        });
        if installed {
            self.installed_at_ms
                .store(switchyard_runtime::now_ms(), Ordering::Relaxed);
            retire(previous);
        }
        installed
    }
}

/// How long a replaced snapshot is held after the swap.
const RETIRE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Release a replaced snapshot off the request path. Freeing a large one takes
/// milliseconds; held here until the requests that loaded it are done, the last
/// reference (and the freeing) is this thread's rather than a request's.
fn retire(old: Option<Arc<Compiled>>) {
    let Some(old) = old else { return };
    let spawned = std::thread::Builder::new()
        .name("retire-snapshot".into())
        .spawn(move || {
            std::thread::sleep(RETIRE_AFTER);
            drop(old);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to release the old snapshot");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::snapshot::Snapshot;

    fn compiled(version: u64) -> Compiled {
        Compiled::build(Snapshot {
            version,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn says_where_its_snapshot_came_from() {
        let live = Live::default();
        assert_eq!(live.source(), Source::None);
        assert!(live.install_from_disk(compiled(5)));
        assert_eq!((live.source(), live.fresh()), (Source::Disk, false));
        // The stream's older version is not installed, yet the stream has spoken.
        assert!(!live.install_followed(compiled(4)));
        live.set_following(true);
        assert_eq!((live.source(), live.fresh()), (Source::ControlPlane, true));
        assert_eq!(live.version(), 5);
    }

    #[test]
    fn never_goes_back() {
        let live = Live::default();
        assert!(live.load().is_none());
        assert!(live.install(compiled(2)));
        assert!(!live.install(compiled(1)));
        assert_eq!(live.version(), 2);
        assert!(live.install(compiled(3)));
        assert_eq!(live.version(), 3);
    }
}
