//! Passive health per endpoint: an address that refuses connections or times out on
//! connect is skipped for a short, growing backoff (1 s, 2 s, 4 s, then 5 s) until a
//! request to it succeeds again. Only connect failures count: a 500 from a pod is an
//! answer, not a sign that the address is gone. Never fails; state is a few atomics.
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// First ejection length; doubles per consecutive failure.
const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// Longest ejection: endpoints come back quickly because the EndpointSlice, not us, is
/// the authority on whether a pod exists.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Microseconds on a process-wide monotonic clock (atomics need a plain integer).
pub(crate) fn monotonic_us() -> u64 {
    micros_at(Instant::now())
}

/// `monotonic_us()` at an instant the caller has already read: the request path reads
/// the clock once per step and shares the reading (each read is a vDSO call).
pub(crate) fn micros_at(t: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| t);
    u64::try_from(t.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX)
}

/// Connect-failure bookkeeping for one endpoint address.
#[derive(Debug, Default)]
pub struct Health {
    consecutive_failures: AtomicU32,
    /// `monotonic_us()` until which the endpoint takes no new requests; 0 = healthy.
    ejected_until_us: AtomicU64,
}

impl Health {
    /// True while the endpoint sits out its backoff.
    pub fn is_ejected(&self, now_us: u64) -> bool {
        self.ejected_until_us.load(Ordering::Relaxed) > now_us
    }

    /// Records a refused or timed-out connect; returns the backoff applied.
    pub fn record_connect_failure(&self, now_us: u64) -> Duration {
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        let backoff = BASE_BACKOFF
            .saturating_mul(1u32.checked_shl(n.min(8)).unwrap_or(u32::MAX))
            .min(MAX_BACKOFF);
        let until = now_us.saturating_add(u64::try_from(backoff.as_micros()).unwrap_or(u64::MAX));
        self.ejected_until_us.fetch_max(until, Ordering::Relaxed);
        backoff
    }

    /// A request reached the endpoint: it is healthy again.
    pub fn record_success(&self) {
        // Loads first: the common case is "already healthy", and a plain load keeps the
        // cache line shared between cores.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.ejected_until_us.load(Ordering::Relaxed) != 0 {
            self.ejected_until_us.store(0, Ordering::Relaxed);
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps_then_clears() {
        let h = Health::default();
        let t = 1_000_000;
        assert!(!h.is_ejected(t));
        assert_eq!(h.record_connect_failure(t), Duration::from_secs(1));
        assert!(h.is_ejected(t + 999_999));
        assert!(!h.is_ejected(t + 1_000_001));
        assert_eq!(h.record_connect_failure(t), Duration::from_secs(2));
        assert_eq!(h.record_connect_failure(t), Duration::from_secs(4));
        assert_eq!(h.record_connect_failure(t), Duration::from_secs(5));
        for _ in 0..40 {
            assert_eq!(h.record_connect_failure(t), Duration::from_secs(5));
        }
        assert!(h.is_ejected(t + 4_000_000));
        h.record_success();
        assert!(!h.is_ejected(t));
        assert_eq!(h.consecutive_failures(), 0);
    }
}
