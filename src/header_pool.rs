//! Header maps reused across requests, one stack per thread.
//!
//! A request's map and its upstream answer's map were four of the six allocations of a
//! proxied request, and a map sized for a dozen fields (about 1.3 KiB of entries) is
//! above glibc's per-thread cache, so each took the allocator's slow path. A map given
//! back here keeps its capacity and is handed out again, still warm in the cache, to the
//! next head parsed on the same thread (the workers are one thread each).
use std::cell::RefCell;

use http::HeaderMap;

/// Maps kept per thread: more than a worker has in flight at any moment in the usual
/// case; beyond it maps are freed as before.
const KEEP: usize = 128;
/// Maps that grew past this many fields (a client sending a hundred) are freed, not
/// kept, so one odd request does not pin its memory.
const MAX_KEPT_FIELDS: usize = 96;
/// New maps start with room for this many fields, enough for a typical request plus the
/// forwarded headers the proxy adds, so a pooled map rarely needs to grow.
const MIN_FIELDS: usize = 16;

thread_local! {
    static POOL: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for `fields` fields.
pub(crate) fn take(fields: usize) -> HeaderMap {
    let pooled = POOL.try_with(|p| p.borrow_mut().pop()).ok().flatten();
    match pooled {
        Some(mut map) => {
            // Pooled maps are empty (`give` clears them), so room for `fields` more is
            // room for `fields`.
            if map.capacity() < fields {
                map.reserve(fields);
            }
            map
        }
        None => HeaderMap::with_capacity(fields.max(MIN_FIELDS)),
    }
}

/// Hands a map back once its fields are no longer needed.
pub(crate) fn give(mut map: HeaderMap) {
    let cap = map.capacity();
    if cap == 0 || cap > MAX_KEPT_FIELDS {
        return;
    }
    map.clear();
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < KEEP {
            p.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HOST, HeaderValue};

    #[test]
    fn a_given_map_comes_back_empty_with_its_room() {
        let mut map = take(4);
        assert!(map.capacity() >= MIN_FIELDS);
        map.insert(HOST, HeaderValue::from_static("a.example"));
        let room = map.capacity();
        give(map);
        let again = take(2);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
    }

    #[test]
    fn a_pooled_map_grows_to_what_is_asked() {
        give(HeaderMap::with_capacity(4));
        let map = take(40);
        assert!(map.capacity() >= 40);
    }

    #[test]
    fn huge_and_empty_maps_are_not_kept() {
        // Empty the pool, then offer what it must refuse.
        while POOL.with(|p| p.borrow_mut().pop()).is_some() {}
        give(HeaderMap::new());
        give(HeaderMap::with_capacity(MAX_KEPT_FIELDS * 2));
        assert_eq!(POOL.with(|p| p.borrow().len()), 0);
        for _ in 0..KEEP + 10 {
            give(HeaderMap::with_capacity(8));
        }
        assert_eq!(POOL.with(|p| p.borrow().len()), KEEP);
    }
}
