//! A consistent-hash ring over a backend's eligible endpoints, for `upstream-hash-by` and
//! balanced cookie affinity: a key maps to the first endpoint point at or after its hash,
//! so when one of N endpoints leaves (or joins) only about 1/N of the keys move.
//!
//! Hashes are a fixed function of bytes (FNV-1a with a final avalanche), never seeded:
//! every portcullis replica must send the same key to the same pod, and a cookie issued
//! by one replica must mean the same on the others.
//!
//! A ring is built once per endpoint set: the cache is keyed by the `EndpointSet`
//! pointer an `EndpointCell` hands out, which changes exactly when the endpoints do. One
//! request builds it; requests arriving meanwhile keep using the previous ring of the
//! same backend (a moment of the old endpoint list, as any in-flight request has)
//! rather than each building their own.
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::ingress::model::snapshot::{Backend, EndpointSet};

/// Points per endpoint: enough that each endpoint's share of the keys stays within a
/// few percent of 1/N.
const POINTS_PER_ENDPOINT: usize = 160;
/// Points per ring at most (2 MB): past 819 endpoints each gets fewer points (never
/// under `MIN_POINTS`), trading some evenness for bounded memory and build time.
const MAX_POINTS: usize = 1 << 17;
const MIN_POINTS: usize = 16;
/// Rings kept per policy: one per backend it routes to, plus sets just replaced.
const CACHED_RINGS: usize = 16;

/// A deterministic 64-bit hash, fed in pieces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl StableHasher {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// FNV alone clusters similar short strings; the finaliser (splitmix64's) spreads
    /// them over the whole ring.
    pub fn finish(self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl fmt::Write for StableHasher {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = StableHasher::default();
    h.write(bytes);
    h.finish()
}

/// The stable identity of an endpoint: the hash of `ip:port`. Persistent affinity
/// cookies carry it, so no pod address appears in clear.
pub fn endpoint_id(addr: SocketAddr) -> u64 {
    let mut h = StableHasher::default();
    let _ = fmt::Write::write_fmt(&mut h, format_args!("{addr}"));
    h.finish()
}

/// The ring of one endpoint set.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    /// (point, index into `nodes`), sorted by point.
    points: Vec<(u64, u32)>,
    /// The endpoints with their `endpoint_id`.
    nodes: Vec<(SocketAddr, u64)>,
}

impl Ring {
    pub fn new(eligible: &[SocketAddr]) -> Self {
        let mut nodes: Vec<(SocketAddr, u64)> =
            eligible.iter().map(|a| (*a, endpoint_id(*a))).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let per = (MAX_POINTS / nodes.len().max(1)).clamp(MIN_POINTS, POINTS_PER_ENDPOINT);
        let mut points = Vec::with_capacity(nodes.len() * per);
        for (i, (addr, _)) in nodes.iter().enumerate() {
            for p in 0..per {
                let mut h = StableHasher::default();
                let _ = fmt::Write::write_fmt(&mut h, format_args!("{addr}#{p}"));
                points.push((h.finish(), i as u32));
            }
        }
        points.sort_unstable();
        Ring { points, nodes }
    }

    /// The endpoint owning `key`, walking on past endpoints `skip` refuses; when every
    /// endpoint is refused, the owner regardless (better than no answer), unless `must`
    /// refuses it too.
    pub fn find(
        &self,
        key: u64,
        skip: impl Fn(SocketAddr) -> bool,
        must: impl Fn(SocketAddr) -> bool,
    ) -> Option<SocketAddr> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|(p, _)| *p < key);
        let n = self.points.len();
        let mut fallback = None;
        for i in 0..n {
            let (_, node) = self.points[(start + i) % n];
            let addr = self.nodes[node as usize].0;
            if must(addr) {
                continue;
            }
            if !skip(addr) {
                return Some(addr);
            }
            fallback.get_or_insert(addr);
        }
        fallback
    }

    /// The endpoint whose `endpoint_id` is `id`.
    pub(crate) fn by_id(&self, id: u64) -> Option<SocketAddr> {
        self.nodes.iter().find(|(_, i)| *i == id).map(|(a, _)| *a)
    }
}

/// Rings by endpoint set, rebuilt only when a backend's set is replaced.
#[derive(Debug, Default)]
pub(crate) struct RingCache {
    rings: ArcSwap<Vec<Cached>>,
    /// Held while one request builds a ring.
    building: Mutex<()>,
}

#[derive(Debug, Clone)]
struct Cached {
    /// The backend's name: a ring of an earlier set of the same Service port may stand
    /// in while the new one is built.
    backend: Arc<str>,
    set: Arc<EndpointSet>,
    ring: Arc<Ring>,
}

impl RingCache {
    /// The ring of `backend`'s current endpoints.
    pub(crate) fn ring(&self, backend: &Backend) -> Arc<Ring> {
        let set = backend.endpoints.load();
        let cached = self.rings.load();
        if let Some(c) = cached.iter().find(|c| Arc::ptr_eq(&c.set, &set)) {
            return c.ring.clone();
        }
        let stale = cached
            .iter()
            .rev()
            .find(|c| c.backend == backend.name)
            .map(|c| c.ring.clone());
        drop(cached);
        let _building = match (self.building.try_lock(), stale) {
            (Ok(guard), _) => guard,
            (Err(_), Some(stale)) => return stale,
            (Err(_), None) => self.building.lock().unwrap_or_else(|e| e.into_inner()),
        };
        // Built by the request that held the lock before us?
        if let Some(c) = self.rings.load().iter().find(|c| Arc::ptr_eq(&c.set, &set)) {
            return c.ring.clone();
        }
        let ring = Arc::new(Ring::new(&set.eligible));
        let entry = Cached {
            backend: backend.name.clone(),
            set: Arc::clone(&set),
            ring: ring.clone(),
        };
        self.rings.rcu(|cached| {
            let mut next: Vec<Cached> = cached
                .iter()
                // A set nobody but this cache holds has been replaced everywhere.
                .filter(|c| Arc::strong_count(&c.set) > 1 && !Arc::ptr_eq(&c.set, &entry.set))
                .cloned()
                .collect();
            if next.len() >= CACHED_RINGS {
                next.remove(0);
            }
            next.push(entry.clone());
            next
        });
        ring
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| {
                format!("10.1.{}.{}:8080", i / 200, i % 200 + 1)
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    fn owner(ring: &Ring, key: u64) -> SocketAddr {
        ring.find(key, |_| false, |_| false).unwrap()
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let all = addrs(10);
        let full = Ring::new(&all);
        let gone = all[3];
        let rest: Vec<_> = all.iter().copied().filter(|a| *a != gone).collect();
        let smaller = Ring::new(&rest);
        let keys = 20_000u64;
        let mut moved = 0;
        let mut share = std::collections::HashMap::new();
        for k in 0..keys {
            let key = stable_hash(&k.to_le_bytes());
            let before = owner(&full, key);
            *share.entry(before).or_insert(0u64) += 1;
            let after = owner(&smaller, key);
            if before != after {
                moved += 1;
                assert_eq!(before, gone, "only keys of the removed endpoint move");
            }
        }
        // About 1/10 of the keys, and each endpoint owns roughly 1/10.
        assert!((1_400..=2_600).contains(&moved), "moved {moved}");
        for (a, n) in share {
            assert!((1_300..=2_700).contains(&n), "{a} owns {n}");
        }
    }

    #[test]
    fn order_of_endpoints_does_not_matter() {
        let mut all = addrs(5);
        let a = Ring::new(&all);
        all.reverse();
        let b = Ring::new(&all);
        for k in 0..1000u64 {
            let key = stable_hash(&k.to_le_bytes());
            assert_eq!(owner(&a, key), owner(&b, key));
        }
    }

    #[test]
    fn skip_walks_on_and_must_never_returns() {
        let all = addrs(3);
        let ring = Ring::new(&all);
        let key = 42;
        let first = owner(&ring, key);
        let next = ring.find(key, |a| a == first, |_| false).unwrap();
        assert_ne!(next, first);
        // All skipped: the owner anyway; excluded by `must`: never.
        assert_eq!(ring.find(key, |_| true, |_| false), Some(first));
        assert_ne!(ring.find(key, |_| true, |a| a == first), Some(first));
        assert!(Ring::new(&[]).find(key, |_| false, |_| false).is_none());
    }

    #[test]
    fn ids_are_stable_and_hide_the_address() {
        let a: SocketAddr = "10.0.0.7:80".parse().unwrap();
        assert_eq!(endpoint_id(a), endpoint_id(a));
        assert_ne!(endpoint_id(a), endpoint_id("10.0.0.8:80".parse().unwrap()));
        let ring = Ring::new(&[a]);
        assert_eq!(ring.by_id(endpoint_id(a)), Some(a));
        // Pinned: a change here would re-route every cookie and hash key, and replicas of
        // two versions would disagree during a rollout.
        assert_eq!(stable_hash(b"portcullis"), 0xb05c_ac10_313e_2595);
        assert_ne!(stable_hash(b""), stable_hash(b"a"));
    }

    #[test]
    fn cache_rebuilds_only_when_the_set_changes() {
        use crate::ingress::model::snapshot::{EndpointCell, UpstreamProtocol};
        let backend = Backend {
            name: "default/web:80".into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: EndpointCell::new(Vec::new(), addrs(3)),
            external: None,
        };
        let cache = RingCache::default();
        let a = cache.ring(&backend);
        let b = cache.ring(&backend);
        assert!(Arc::ptr_eq(&a, &b));
        backend.endpoints.store(Arc::new(EndpointSet {
            all: Vec::new(),
            eligible: addrs(2),
        }));
        let c = cache.ring(&backend);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(
            cache.rings.load().len(),
            1,
            "the replaced set's ring is dropped"
        );
        // While another request builds, the previous ring of the backend stands in.
        let building = cache.building.lock().unwrap();
        backend.endpoints.store(Arc::new(EndpointSet {
            all: Vec::new(),
            eligible: addrs(4),
        }));
        assert!(Arc::ptr_eq(&cache.ring(&backend), &c));
        drop(building);
        assert_eq!(cache.ring(&backend).nodes.len(), 4);
    }
}
