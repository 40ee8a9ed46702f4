//! Per-client-address request limits of one Ingress (`limit-rps`, `limit-rpm`,
//! `limit-burst-multiplier`, `limit-connections`, `limit-allowlist`), with the semantics
//! of nginx's `limit_req ... burst=N nodelay` and `limit_conn`: a client may send `rate`
//! requests per period plus a burst of `rate × multiplier` at once; anything beyond is
//! refused at once, never queued.
//!
//! The rate check is GCRA (the "virtual scheduling" form of a leaky bucket): each address
//! keeps one timestamp per limit, the theoretical arrival time of its next request, so a
//! check is a comparison and an add. State is kept per portcullis replica, like
//! ingress-nginx keeps it per controller pod.
//!
//! Memory is bounded: every limited Ingress has one table of `limitTableSize` slots
//! (default 16384, about 50 bytes each), allocated on its first request. An address
//! hashes (with a per-table random seed, so nobody can aim at one set) to a set of `WAYS`
//! slots under its own small lock; a new address takes the slot whose state matters
//! least — empty, then one whose timestamps are in the past (it would be allowed
//! anyway), then the one closest to that. A flood of distinct addresses therefore costs
//! nothing beyond the table, and evicts only addresses that are about to be forgiven
//! anyway.
//!
//! Failure behaviour: a refused request gets the configured status (503 by default,
//! `limitReqStatusCode` / `limitConnStatusCode`); nothing here panics or blocks on I/O.
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use http::StatusCode;
use ipnet::IpNet;

use crate::ingress::request::health::monotonic_us;

/// Addresses remembered per limited Ingress unless the settings say otherwise.
pub const DEFAULT_TABLE_SIZE: usize = 16384;
/// Slots per set: how many addresses of one set are remembered at once.
pub const WAYS: usize = 8;
/// The smallest table: a few sets, so one busy set cannot hold every address.
const MIN_SETS: usize = 8;
/// A table no snapshot uses and nobody asked for in this long is dropped from the registry.
const IDLE_TABLE_US: u64 = 10 * 60 * 1_000_000;

/// The limits an Ingress asks for; part of the registry key, so a changed annotation
/// starts from fresh state while an unchanged one keeps it across recompiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LimitSpec {
    /// Requests per second (0: no per-second limit).
    pub rps: u32,
    /// Requests per minute (0: no per-minute limit).
    pub rpm: u32,
    /// Burst = rate × this (ingress-nginx default 5).
    pub burst_multiplier: u32,
    /// Concurrent requests per address (0: unlimited).
    pub connections: u32,
}

/// The limits of one Ingress and, once it has seen traffic, their state.
#[derive(Debug)]
pub struct RateLimits {
    pub spec: LimitSpec,
    /// Client networks never limited (`limit-allowlist` / `limit-whitelist`).
    pub exempt: Vec<IpNet>,
    table: OnceLock<Arc<Table>>,
}

impl RateLimits {
    pub fn new(spec: LimitSpec, exempt: Vec<IpNet>) -> Self {
        RateLimits {
            spec,
            exempt,
            table: OnceLock::new(),
        }
    }

    /// Admits or refuses one request of `client` to Ingress `ingress`. A `Pass` holding a
    /// connection slot must be kept until the response has been sent.
    pub fn check(&self, registry: &Registry, ingress: &Arc<str>, client: IpAddr) -> Verdict {
        if self.exempt.iter().any(|n| n.contains(&client)) {
            return Verdict::Pass(None);
        }
        let table = self
            .table
            .get_or_init(|| registry.table(ingress, self.spec));
        table.admit(client, monotonic_us())
    }
}

/// The outcome of a limit check.
#[derive(Debug)]
pub enum Verdict {
    /// Go ahead; the guard (when `limit-connections` is set) frees the slot on drop.
    Pass(Option<ConnGuard>),
    /// Over `limit-rps` / `limit-rpm`.
    TooManyRequests,
    /// Over `limit-connections`.
    TooManyConnections,
}

/// Controller-wide limit settings: the status codes of refused requests (ingress-nginx
/// ConfigMap `limit-req-status-code`, `limit-conn-status-code`) and the table size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub request: StatusCode,
    pub connection: StatusCode,
    /// Addresses remembered per limited Ingress (rounded up to whole sets).
    pub table_size: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            request: StatusCode::SERVICE_UNAVAILABLE,
            connection: StatusCode::SERVICE_UNAVAILABLE,
            table_size: DEFAULT_TABLE_SIZE,
        }
    }
}

/// A status code as the settings file gives it: 400 to 599, as nginx's `limit_req_status`
/// accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "u16")]
pub struct RefusalCode(pub StatusCode);

impl TryFrom<u16> for RefusalCode {
    type Error = String;
    fn try_from(v: u16) -> Result<Self, String> {
        match StatusCode::from_u16(v) {
            Ok(s) if (400..=599).contains(&v) => Ok(RefusalCode(s)),
            _ => Err(format!("{v} is not a status code from 400 to 599")),
        }
    }
}

impl Default for RefusalCode {
    fn default() -> Self {
        RefusalCode(StatusCode::SERVICE_UNAVAILABLE)
    }
}

/// Tables by Ingress and limits, so a recompile (a new `Policy` for the same Ingress)
/// finds the state its predecessor built up. Locked only when a policy sees its first
/// request, never per request.
#[derive(Debug)]
pub struct Registry {
    tables: Mutex<HashMap<TableKey, Arc<Table>>>,
    table_size: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(DEFAULT_TABLE_SIZE)
    }
}

/// The Ingress (`namespace/name`) and its limits.
type TableKey = (Arc<str>, LimitSpec);

impl Registry {
    /// Tables of `table_size` addresses each.
    pub fn new(table_size: usize) -> Self {
        Registry {
            tables: Mutex::default(),
            table_size,
        }
    }

    fn table(&self, ingress: &Arc<str>, spec: LimitSpec) -> Arc<Table> {
        let now = monotonic_us();
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        // Only the registry holds an unused table; dropping it when idle keeps deleted or
        // re-annotated Ingresses from piling up.
        tables.retain(|_, t| {
            Arc::strong_count(t) > 1
                || now.saturating_sub(t.last_used_us.load(Ordering::Relaxed)) < IDLE_TABLE_US
        });
        tables
            .entry((ingress.clone(), spec))
            .or_insert_with(|| Arc::new(Table::new(spec, self.table_size)))
            .clone()
    }

    /// Tables currently kept.
    pub fn len(&self) -> usize {
        self.tables.lock().map(|t| t.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One address's state. `key` 0 marks an empty slot: a canonical address is stored as
/// its IPv6-mapped form, which is never `::`.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    key: u128,
    /// Theoretical arrival time (µs) per limit: the request is early, and refused, when
    /// it comes more than the burst tolerance before this.
    tat_second: u64,
    tat_minute: u64,
    in_flight: u32,
}

/// The fixed-size state of one limited Ingress.
#[derive(Debug)]
pub struct Table {
    /// Per request (µs), 0 when the limit is off, and the burst tolerance.
    second: (u64, u64),
    minute: (u64, u64),
    connections: u32,
    seed: foldhash::fast::RandomState,
    sets: Box<[Mutex<[Slot; WAYS]>]>,
    last_used_us: AtomicU64,
}

/// GCRA parameters for `rate` requests per `period_us`: the emission interval and the
/// tolerance that lets `rate × multiplier` requests through at once after idling.
fn gcra(rate: u32, period_us: u64, multiplier: u32) -> (u64, u64) {
    if rate == 0 {
        return (0, 0);
    }
    let interval = (period_us / u64::from(rate)).max(1);
    let burst = u64::from(rate).saturating_mul(u64::from(multiplier));
    (interval, interval.saturating_mul(burst))
}

impl Table {
    /// A table remembering at least `size` addresses.
    pub fn new(spec: LimitSpec, size: usize) -> Self {
        let sets = (0..size.div_ceil(WAYS).max(MIN_SETS))
            .map(|_| Mutex::new([Slot::default(); WAYS]))
            .collect();
        Table {
            second: gcra(spec.rps, 1_000_000, spec.burst_multiplier),
            minute: gcra(spec.rpm, 60_000_000, spec.burst_multiplier),
            connections: spec.connections,
            seed: foldhash::fast::RandomState::default(),
            sets,
            last_used_us: AtomicU64::new(monotonic_us()),
        }
    }

    fn locate(&self, client: IpAddr) -> (usize, u128) {
        let key = match client.to_canonical() {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let mut h = self.seed.build_hasher();
        key.hash(&mut h);
        let set = (std::hash::Hasher::finish(&h) as usize) % self.sets.len();
        (set, key)
    }

    /// Checks and records one request of `client` at `now` (µs).
    pub fn admit(self: &Arc<Self>, client: IpAddr, now: u64) -> Verdict {
        // One store a second at most: a shared cache line written per request would cost
        // more than the check itself.
        if now.saturating_sub(self.last_used_us.load(Ordering::Relaxed)) > 1_000_000 {
            self.last_used_us.store(now, Ordering::Relaxed);
        }
        let (set_index, key) = self.locate(client);
        let mut set = self.sets[set_index]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let slot = match set.iter().position(|s| s.key == key) {
            Some(i) => &mut set[i],
            None => {
                let i = victim(&set[..], now);
                set[i] = Slot {
                    key,
                    ..Slot::default()
                };
                &mut set[i]
            }
        };
        // Connections first, as ingress-nginx orders its limits: a refused request does
        // not use up rate budget.
        if self.connections > 0 && slot.in_flight >= self.connections {
            return Verdict::TooManyConnections;
        }
        let second = conforms(slot.tat_second, self.second, now);
        let minute = conforms(slot.tat_minute, self.minute, now);
        let (Some(second), Some(minute)) = (second, minute) else {
            return Verdict::TooManyRequests;
        };
        slot.tat_second = second;
        slot.tat_minute = minute;
        if self.connections == 0 {
            return Verdict::Pass(None);
        }
        slot.in_flight += 1;
        Verdict::Pass(Some(ConnGuard {
            table: self.clone(),
            set: set_index,
            key,
        }))
    }

    /// Addresses with a slot (for tests and debugging).
    #[cfg(test)]
    pub fn occupied(&self) -> usize {
        self.sets
            .iter()
            .map(|s| {
                s.lock()
                    .map(|set| set.iter().filter(|slot| slot.key != 0).count())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Slots in the table: the most addresses it can remember.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }
}

/// The new theoretical arrival time if a request at `now` conforms; `None` when it is
/// over the limit. A limit that is off always conforms.
fn conforms(tat: u64, (interval, tolerance): (u64, u64), now: u64) -> Option<u64> {
    if interval == 0 {
        return Some(0);
    }
    if tat.saturating_sub(now) > tolerance {
        return None;
    }
    Some(tat.max(now) + interval)
}

/// The slot a new address takes: an empty one, else the one whose state is least worth
/// keeping (no requests in flight, earliest arrival time: a past one means the address
/// would be admitted as if new).
fn victim(set: &[Slot], now: u64) -> usize {
    if let Some(i) = set.iter().position(|s| s.key == 0) {
        return i;
    }
    set.iter()
        .enumerate()
        .min_by_key(|(_, s)| {
            (
                s.in_flight > 0,
                s.tat_second.max(s.tat_minute).saturating_sub(now),
            )
        })
        .map_or(0, |(i, _)| i)
}

/// Counts a refused request; `reason` is `rate` or `connections`. Refusals only, so the
/// label lookup is not cached.
pub fn record_refusal(ingress: &str, reason: &str) {
    static FAMILY: OnceLock<Option<prometheus::IntCounterVec>> = OnceLock::new();
    let family = FAMILY.get_or_init(|| {
        prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "ingress_limited_requests_total",
                "Requests refused by an Ingress's limit-rps/limit-rpm/limit-connections.",
            ),
            &["ingress", "reason"],
        )
        .ok()
        .map(crate::metrics::register)
    });
    if let Some(f) = family {
        f.with_label_values(&[ingress, reason]).inc();
    }
}

/// One admitted request counted against `limit-connections` until dropped.
#[derive(Debug)]
pub struct ConnGuard {
    table: Arc<Table>,
    set: usize,
    key: u128,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut set = self.table.sets[self.set]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // The address may have been evicted meanwhile (every slot of its set busy with
        // other clients): then there is nothing left to release.
        if let Some(slot) = set.iter_mut().find(|s| s.key == self.key) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rps: u32, rpm: u32, mult: u32, conn: u32) -> Arc<Table> {
        Arc::new(Table::new(
            LimitSpec {
                rps,
                rpm,
                burst_multiplier: mult,
                connections: conn,
            },
            DEFAULT_TABLE_SIZE,
        ))
    }

    fn passes(v: &Verdict) -> bool {
        matches!(v, Verdict::Pass(_))
    }

    #[test]
    fn burst_then_refill_per_second() {
        let t = table(2, 0, 5, 0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let now = 1_000_000_000;
        // rate 2 + burst 10: eleven at once, as nginx `burst=10 nodelay` allows.
        let admitted = (0..20).filter(|_| passes(&t.admit(ip, now))).count();
        assert_eq!(admitted, 11);
        // Half a second later one more request fits (2 per second).
        assert!(passes(&t.admit(ip, now + 500_000)));
        assert!(matches!(
            t.admit(ip, now + 500_000),
            Verdict::TooManyRequests
        ));
        // Another address is not affected.
        assert!(passes(&t.admit("10.0.0.2".parse().unwrap(), now)));
    }

    #[test]
    fn per_minute_and_per_second_both_apply() {
        let t = table(100, 3, 1, 0);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let now = 5_000_000;
        // rpm 3 with multiplier 1: 3 + 3 at once.
        let admitted = (0..10).filter(|_| passes(&t.admit(ip, now))).count();
        assert_eq!(admitted, 4);
        assert!(!passes(&t.admit(ip, now + 10_000_000)));
        assert!(passes(&t.admit(ip, now + 20_000_001)));
    }

    #[test]
    fn connections_are_released_by_the_guard() {
        let t = table(0, 0, 5, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = t.admit(ip, 1);
        let b = t.admit(ip, 1);
        assert!(passes(&a) && passes(&b));
        assert!(matches!(t.admit(ip, 1), Verdict::TooManyConnections));
        drop(a);
        assert!(passes(&t.admit(ip, 1)));
    }

    #[test]
    fn a_flood_of_addresses_stays_within_the_table() {
        let t = table(1, 0, 1, 0);
        let now = 1_000_000;
        for i in 0..(t.capacity() as u32 * 4) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(passes(&t.admit(ip, now)));
        }
        // Every set had far more candidates than slots: full, and not one slot more.
        assert!(t.occupied() <= t.capacity());
        assert!(t.occupied() > t.capacity() * 9 / 10, "{}", t.occupied());
        assert_eq!(t.capacity(), DEFAULT_TABLE_SIZE, "the table never grows");
        let small = Table::new(LimitSpec::default(), 100);
        assert_eq!(small.capacity(), 104, "whole sets");
        assert_eq!(
            Table::new(LimitSpec::default(), 0).capacity(),
            MIN_SETS * WAYS
        );
    }

    #[test]
    fn eviction_prefers_forgiven_and_idle_slots() {
        let now = 100;
        let mut set = [Slot::default(); WAYS];
        for (i, s) in set.iter_mut().enumerate() {
            *s = Slot {
                key: i as u128 + 1,
                tat_second: now + 1000 + i as u64,
                tat_minute: 0,
                in_flight: 0,
            };
        }
        set[3].tat_second = now - 50;
        assert_eq!(victim(&set, now), 3, "a past arrival time is free state");
        set[3].in_flight = 1;
        assert_eq!(victim(&set, now), 0, "busy slots are kept");
    }

    #[test]
    fn registry_reuses_a_table_for_the_same_ingress_and_limits() {
        let r = Registry::default();
        let name: Arc<str> = "default/web".into();
        let spec = LimitSpec {
            rps: 1,
            burst_multiplier: 5,
            ..LimitSpec::default()
        };
        let a = r.table(&name, spec);
        let b = r.table(&name, spec);
        assert!(Arc::ptr_eq(&a, &b));
        let c = r.table(&name, LimitSpec { rps: 2, ..spec });
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn refusal_codes_are_4xx_or_5xx() {
        assert!(RefusalCode::try_from(429).is_ok());
        assert!(RefusalCode::try_from(200).is_err());
        assert!(RefusalCode::try_from(600).is_err());
    }
}
