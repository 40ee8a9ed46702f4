//! A read-mostly map: lock-free reads through `ArcSwap`, copy-on-write inserts. Used for
//! state that outlives snapshots (endpoint stats, round-robin cursors, upstream clients)
//! where a miss is rare (a new endpoint or setting) and a read happens on every request.
use std::hash::Hash;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::ingress::model::fast_map::FastMap;

/// A map whose values are shared `Arc`s; reads never block, writes copy the map.
pub struct CowMap<K, V> {
    inner: ArcSwap<FastMap<K, Arc<V>>>,
}

impl<K: Eq + Hash + Clone, V> CowMap<K, V> {
    pub fn new() -> Self {
        Self {
            inner: ArcSwap::from_pointee(FastMap::default()),
        }
    }

    /// The whole current map, for several reads that should agree with each other.
    pub fn load(&self) -> arc_swap::Guard<Arc<FastMap<K, Arc<V>>>> {
        self.inner.load()
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        self.inner.load().get(key).cloned()
    }

    /// The value for `key`, inserting `make()` when absent. Concurrent inserters of the
    /// same key agree on one value (the first stored wins).
    pub fn get_or_insert_with(&self, key: &K, make: impl Fn() -> V) -> Arc<V> {
        if let Some(v) = self.get(key) {
            return v;
        }
        let fresh = Arc::new(make());
        let mut winner = None;
        self.inner.rcu(|map| {
            if let Some(existing) = map.get(key) {
                winner = Some(existing.clone());
                return Arc::clone(map);
            }
            winner = Some(fresh.clone());
            let mut next = FastMap::clone(map);
            next.insert(key.clone(), fresh.clone());
            Arc::new(next)
        });
        winner.unwrap_or(fresh)
    }

    /// Drops every entry for which `keep` is false (one copy of the map).
    pub fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        self.inner.rcu(|map| {
            let mut next = FastMap::clone(map);
            next.retain(|k, v| keep(k, v));
            Arc::new(next)
        });
    }

    pub fn len(&self) -> usize {
        self.inner.load().len()
    }
}

impl<K: Eq + Hash + Clone, V> Default for CowMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> std::fmt::Debug for CowMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CowMap")
            .field("len", &self.inner.load().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_once_then_shared() {
        let m: CowMap<u32, String> = CowMap::new();
        let a = m.get_or_insert_with(&1, || "a".into());
        let b = m.get_or_insert_with(&1, || "b".into());
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*b, "a");
        m.get_or_insert_with(&2, || "c".into());
        m.retain(|k, _| *k == 2);
        assert!(m.get(&1).is_none());
        assert_eq!(m.len(), 1);
    }
}
