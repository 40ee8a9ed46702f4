//! Connection limits shared by listeners: a global cap and an optional cap per client
//! address. Admission happens once per accepted connection; the returned [`Slot`] gives
//! the place back when the connection ends, however it ends.
//!
//! Near the cap the table raises *pressure*: every connection task watches it and an
//! idle one (no request in flight) closes itself, so a flood of silent connections makes
//! room for clients that send requests, the way nginx reuses idle keep-alive connections
//! when `worker_connections` runs out.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::activity::monotonic_ms;

/// Pressure starts at this share of the cap (in percent).
const PRESSURE_PERCENT: usize = 90;
/// Pressure is raised at most this often, so a burst of accepts does not wake every
/// connection task once per accept.
const PRESSURE_EVERY_MS: u64 = 20;

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener group holds `max` connections already.
    Full,
    /// This client address holds its share already.
    PerClient,
}

impl Refusal {
    /// Label value of `connections_refused_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "limit",
            Refusal::PerClient => "per_client_limit",
        }
    }
}

/// Open-connection accounting for one or more listeners.
#[derive(Debug)]
pub struct ConnLimits {
    max: usize,
    per_client: usize,
    open: AtomicUsize,
    /// Highest `open` since the last [`ConnLimits::take_peak`].
    peak: AtomicUsize,
    clients: Mutex<HashMap<IpAddr, u32>>,
    pressure: watch::Sender<u64>,
    last_pressure_ms: AtomicU64,
}

impl ConnLimits {
    /// `max` connections in all; `per_client` per client address (0: no per-client cap).
    pub fn new(max: usize, per_client: usize) -> Arc<Self> {
        Arc::new(ConnLimits {
            max: max.max(1),
            per_client,
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            clients: Mutex::new(HashMap::new()),
            pressure: watch::Sender::new(0),
            last_pressure_ms: AtomicU64::new(0),
        })
    }

    /// No practical limit: for tests and embedded uses that want none.
    pub fn unlimited() -> Arc<Self> {
        Self::new(usize::MAX / 2, 0)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections currently holding a slot.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The most connections open at once since the last call, which restarts the count
    /// from those open now. A short wave that came and went between two looks still
    /// shows.
    pub fn take_peak(&self) -> usize {
        let open = self.open();
        self.peak.swap(open, Ordering::AcqRel).max(open)
    }

    /// Takes a slot for a connection from `client`, or says why not.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refusal> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(open, Ordering::Relaxed);
        if open * 100 >= self.max.saturating_mul(PRESSURE_PERCENT) {
            self.raise_pressure();
        }
        if open > self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Full);
        }
        if self.per_client > 0 {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            let n = clients.entry(client).or_insert(0);
            if *n as usize >= self.per_client {
                drop(clients);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PerClient);
            }
            *n += 1;
        }
        Ok(Slot {
            limits: self.clone(),
            client,
        })
    }

    /// Asks idle connections to close (also used when accept runs out of descriptors).
    pub fn raise_pressure(&self) {
        let now = monotonic_ms();
        let last = self.last_pressure_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < PRESSURE_EVERY_MS && last != 0 {
            return;
        }
        self.last_pressure_ms.store(now.max(1), Ordering::Relaxed);
        self.pressure.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes each time idle connections should close.
    pub fn pressure(&self) -> watch::Receiver<u64> {
        self.pressure.subscribe()
    }

    fn release(&self, client: IpAddr) {
        if self.per_client > 0 {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = clients.get_mut(&client) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    // The map holds only addresses with open connections, so a flood of
                    // distinct addresses leaves nothing behind.
                    clients.remove(&client);
                }
            }
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One admitted connection's place; freed on drop.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<ConnLimits>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.release(self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn peak_remembers_a_wave_between_two_looks() {
        let l = ConnLimits::new(100, 0);
        let slots: Vec<_> = (0..5).map(|_| l.admit(ip("10.0.0.1")).unwrap()).collect();
        drop(slots);
        assert_eq!(l.open(), 0);
        assert_eq!(l.take_peak(), 5);
        assert_eq!(l.take_peak(), 0);
        let _one = l.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(l.take_peak(), 1);
    }

    #[test]
    fn global_cap_and_release() {
        let l = ConnLimits::new(2, 0);
        let a = l.admit(ip("127.0.0.2")).unwrap();
        let _b = l.admit(ip("127.0.0.3")).unwrap();
        assert_eq!(l.admit(ip("127.0.0.4")).unwrap_err(), Refusal::Full);
        assert_eq!(l.open(), 2);
        drop(a);
        assert_eq!(l.open(), 1);
        assert!(l.admit(ip("127.0.0.4")).is_ok());
    }

    #[test]
    fn per_client_cap_counts_each_address() {
        let l = ConnLimits::new(100, 2);
        let a1 = l.admit(ip("127.0.0.2")).unwrap();
        let _a2 = l.admit(ip("127.0.0.2")).unwrap();
        assert_eq!(l.admit(ip("127.0.0.2")).unwrap_err(), Refusal::PerClient);
        // Another address is not affected, and a refusal holds no slot.
        let _b = l.admit(ip("127.0.0.3")).unwrap();
        assert_eq!(l.open(), 3);
        drop(a1);
        assert!(l.admit(ip("127.0.0.2")).is_ok());
    }

    #[test]
    fn addresses_leave_the_table_when_their_connections_close() {
        let l = ConnLimits::new(10_000, 1);
        let slots: Vec<_> = (0..1000u32)
            .map(|i| {
                l.admit(IpAddr::from((0x7f00_0000u32 + i).to_be_bytes()))
                    .unwrap()
            })
            .collect();
        assert_eq!(l.clients.lock().unwrap().len(), 1000);
        drop(slots);
        assert!(l.clients.lock().unwrap().is_empty());
        assert_eq!(l.open(), 0);
    }

    #[test]
    fn pressure_rises_near_the_cap() {
        let l = ConnLimits::new(10, 0);
        let rx = l.pressure();
        let _held: Vec<_> = (0..8).map(|_| l.admit(ip("127.0.0.2")).unwrap()).collect();
        assert!(!rx.has_changed().unwrap(), "80% is below the pressure mark");
        let _ninth = l.admit(ip("127.0.0.2")).unwrap();
        assert!(rx.has_changed().unwrap(), "90% raises pressure");
    }
}
