//! A small bounded cache of recent auth outcomes, keyed by a SHA-256 digest of what
//! identifies the request (the Authorization header, or the expanded `auth-cache-key`), so
//! no credential is ever held in plain text.
//!
//! It lives inside the compiled policy, so a recompile (a changed Secret, a changed
//! annotation) starts it empty. Once full, expired entries are swept; if none were, new
//! outcomes are simply not remembered until some expire.
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Entries one cache holds at most.
pub const MAX_ENTRIES: usize = 4096;

pub type Key = [u8; 32];

/// The digest of `parts`, each length-prefixed so `ab`+`c` and `a`+`bc` differ.
pub fn key(parts: &[&[u8]]) -> Key {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[derive(Debug)]
pub struct Cache<V> {
    entries: Mutex<HashMap<Key, (Instant, V)>>,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> Cache<V> {
    /// The unexpired value for `key`.
    pub fn get(&self, key: &Key) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (until, v) = entries.get(key)?;
        (*until > Instant::now()).then(|| v.clone())
    }

    pub fn put(&self, key: Key, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, (until, _)| *until > now);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(key, (now + ttl, value));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_keyed_by_digest() {
        let cache: Cache<u8> = Cache::default();
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        for i in 0..MAX_ENTRIES + 10 {
            cache.put(key(&[&i.to_le_bytes()]), 1, Duration::from_secs(60));
        }
        assert_eq!(cache.len(), MAX_ENTRIES, "full: new entries are not kept");
        assert_eq!(cache.get(&key(&[&0usize.to_le_bytes()])), Some(1));
        assert_eq!(cache.get(&key(&[b"absent"])), None);
        cache.put(key(&[b"zero"]), 2, Duration::ZERO);
        assert_eq!(cache.get(&key(&[b"zero"])), None);
    }
}
