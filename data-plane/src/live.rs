//! The data plane's one piece of swappable state: the compiled snapshot.
//!
//! Everything derived from a snapshot is built before a single atomic store, so a
//! request sees one consistent version from start to end. Readers never lock.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use switchyard_core::snapshot::Compiled;

#[derive(Default)]
pub struct Live {
    snapshot: ArcSwapOption<Compiled>,
}

impl Live {
    /// The current snapshot, if one has arrived. Hold it for one request, never
    /// across a reload.
    pub fn load(&self) -> Option<Arc<Compiled>> {
        self.snapshot.load_full()
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
        self.snapshot.rcu(|current| match current {
            Some(cur) if cur.version() > next.version() => {
                installed = false;
                Some(cur.clone())
            }
            _ => {
                installed = true;
                Some(next.clone())
            }
        });
        installed
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
