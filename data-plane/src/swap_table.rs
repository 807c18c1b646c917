//! A table the request path reads on every call and writes rarely (once per new
//! key): reads are a lock-free load; a write copies the table and swaps it in. Past
//! its bound a write starts the table over, so keys no longer used do not pile up.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

pub(crate) struct SwapTable<K, V> {
    map: ArcSwap<HashMap<K, V>>,
    most: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> SwapTable<K, V> {
    /// An empty table that keeps at most `most` entries.
    pub(crate) fn new(most: usize) -> Self {
        Self {
            map: ArcSwap::default(),
            most,
        }
    }

    /// The table as it is now.
    pub(crate) fn load(&self) -> Guard<Arc<HashMap<K, V>>> {
        self.map.load()
    }

    /// Add or replace `key`'s entry (starting over when the table is full).
    pub(crate) fn insert(&self, key: K, value: V) {
        self.map.rcu(|table| {
            let mut next = if table.len() >= self.most {
                HashMap::new()
            } else {
                HashMap::clone(table)
            };
            next.insert(key.clone(), value.clone());
            next
        });
    }
}

#[cfg(test)]
mod tests {
    use super::SwapTable;

    #[test]
    fn a_full_table_starts_over() {
        let table = SwapTable::new(2);
        table.insert(1, "a");
        table.insert(1, "b");
        assert_eq!(table.load().get(&1), Some(&"b"));
        table.insert(2, "c");
        assert_eq!(table.load().len(), 2);
        table.insert(3, "d");
        assert_eq!(table.load().len(), 1);
        assert_eq!(table.load().get(&3), Some(&"d"));
    }
}
