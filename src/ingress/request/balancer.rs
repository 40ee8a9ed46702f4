//! Endpoint choice for a backend: power of two random choices by peak-EWMA latency ×
//! (in-flight + 1), or round robin when the Ingress asks for it. An endpoint with no
//! latency history is as cheap as the rival it is compared with and wins ties, so a new
//! pod gets traffic at once, limited by its in-flight count until it has answered.
//!
//! What is learned about an endpoint (latency estimate, in-flight count, passive health)
//! lives here, keyed by address and outside the snapshot, so a configuration change keeps
//! it: the same pod address keeps the same `Arc<EndpointStats>` across snapshot swaps.
//! Only `Backend.eligible` addresses are candidates; ejected ones are skipped unless all
//! are ejected (fail open). Never fails; `pick` returns `None` only when there is no
//! candidate at all.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::ingress::model::policy::Balance;
use crate::ingress::model::snapshot::{Backend, Endpoint};
use crate::ingress::request::cow_map::CowMap;
use crate::ingress::request::health::{Health, monotonic_us};

/// Decay time constant of the latency estimate (linkerd and ingress-nginx use 10 s).
const DECAY_US: f64 = 10_000_000.0;
/// Added to every latency estimate so in-flight counts still matter when estimates are
/// zero (no endpoint has history yet).
const FLOOR_US: f64 = 1.0;
/// Stats of addresses unused for this long are forgotten (pods that went away).
const FORGET_AFTER_US: u64 = 10 * 60 * 1_000_000;
/// How often the forgetting sweep may run.
const SWEEP_EVERY_US: u64 = 60 * 1_000_000;

/// What is known about one endpoint address.
#[derive(Debug)]
pub struct EndpointStats {
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once: every upstream request carries it.
    pub authority: Option<http::uri::Authority>,
    in_flight: AtomicUsize,
    /// Latency estimate in µs as `f64` bits; 0 = no sample yet.
    ewma_bits: AtomicU64,
    last_sample_us: AtomicU64,
    last_used_us: AtomicU64,
    pub health: Health,
    /// Caps concurrent requests to this address: the upstream pool has no such limit.
    pub permits: Arc<Semaphore>,
}

impl EndpointStats {
    fn new(addr: SocketAddr, max_concurrency: usize) -> Self {
        Self {
            addr,
            authority: http::uri::Authority::try_from(addr.to_string()).ok(),
            in_flight: AtomicUsize::new(0),
            ewma_bits: AtomicU64::new(0),
            last_sample_us: AtomicU64::new(0),
            last_used_us: AtomicU64::new(monotonic_us()),
            health: Health::default(),
            permits: Arc::new(Semaphore::new(max_concurrency.max(1))),
        }
    }

    /// Latency estimate in µs decayed to `now_us` (idle endpoints drift back to cheap);
    /// `None` before the first sample.
    fn estimate_us(&self, now_us: u64) -> Option<f64> {
        let est = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        if est == 0.0 {
            return None;
        }
        let last = self.last_sample_us.load(Ordering::Relaxed);
        let elapsed = now_us.saturating_sub(last) as f64;
        Some(est * (-elapsed / DECAY_US).exp())
    }

    /// The P2C load figure: latency estimate × (in-flight + 1).
    fn cost(&self, estimate_us: f64) -> f64 {
        let in_flight = self.in_flight.load(Ordering::Relaxed) as f64;
        (estimate_us + FLOOR_US) * (in_flight + 1.0)
    }

    /// `observe_at` reading the clock itself.
    #[cfg(test)]
    pub(crate) fn observe(&self, rtt: Duration) {
        self.observe_at(rtt, monotonic_us());
    }

    /// Feeds one observed latency (time to response headers) seen at `now` (on the
    /// `monotonic_us` scale). A sample above the estimate replaces it at once (peak),
    /// lower ones pull it down with exponential decay.
    pub(crate) fn observe_at(&self, rtt: Duration, now: u64) {
        let sample = rtt.as_secs_f64() * 1_000_000.0;
        let prev = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        let last = self.last_sample_us.swap(now, Ordering::Relaxed);
        let next = if prev == 0.0 || sample > prev {
            sample
        } else {
            let w = (-(now.saturating_sub(last) as f64) / DECAY_US).exp();
            prev * w + sample * (1.0 - w)
        };
        // Concurrent observers may overwrite each other: one lost sample is harmless.
        self.ewma_bits
            .store(next.max(f64::MIN_POSITIVE).to_bits(), Ordering::Relaxed);
    }

    /// The current latency estimate, undecayed (for tests and debugging).
    pub fn estimate(&self) -> Duration {
        Duration::from_secs_f64(f64::from_bits(self.ewma_bits.load(Ordering::Relaxed)) / 1e6)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request in flight to an endpoint; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointStats>);

impl InFlight {
    pub fn stats(&self) -> &Arc<EndpointStats> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A chosen endpoint.
#[derive(Debug, Clone)]
pub struct Pick {
    pub addr: SocketAddr,
    pub stats: Arc<EndpointStats>,
}

/// Endpoint choice with state that survives snapshot swaps.
#[derive(Debug)]
pub struct Balancer {
    stats: CowMap<SocketAddr, EndpointStats>,
    /// Round-robin positions per backend name.
    cursors: CowMap<Arc<str>, AtomicUsize>,
    max_concurrency: usize,
    last_sweep_us: AtomicU64,
}

impl Balancer {
    /// `max_concurrency`: requests allowed in flight to one endpoint address at once.
    pub fn new(max_concurrency: usize) -> Self {
        Self {
            stats: CowMap::new(),
            cursors: CowMap::new(),
            max_concurrency,
            last_sweep_us: AtomicU64::new(monotonic_us()),
        }
    }

    /// The stats kept for `addr`, if a request was ever sent there.
    pub fn stats(&self, addr: SocketAddr) -> Option<Arc<EndpointStats>> {
        self.stats.get(&addr)
    }

    /// The stats for `addr`, created on first use.
    pub(crate) fn stats_for(&self, addr: SocketAddr) -> Arc<EndpointStats> {
        self.stats
            .get_or_insert_with(&addr, || EndpointStats::new(addr, self.max_concurrency))
    }

    /// Chooses an eligible endpoint of `backend`, never `exclude` (the one a retry is
    /// moving away from). `None` when no candidate exists.
    pub fn pick(
        &self,
        backend: &Backend,
        balance: Balance,
        exclude: Option<SocketAddr>,
    ) -> Option<Pick> {
        self.pick_at(backend, balance, exclude, monotonic_us())
    }

    /// `pick` with the clock already read (`now` on the `monotonic_us` scale).
    pub(crate) fn pick_at(
        &self,
        backend: &Backend,
        balance: Balance,
        exclude: Option<SocketAddr>,
        now: u64,
    ) -> Option<Pick> {
        let set = backend.endpoints.load();
        let eligible = &set.eligible;
        if eligible.is_empty() {
            return None;
        }
        self.maybe_sweep(now);
        let map = self.stats.load();
        // One lookup per candidate: whether it is ejected, its cost and the pick's stats
        // all come from it (the map's lookups were most of a pick's instructions).
        let usable = |addr: SocketAddr| -> Option<Candidate<'_>> {
            if Some(addr) == exclude {
                return None;
            }
            let stats = map.get(&addr);
            if stats.is_some_and(|s| s.health.is_ejected(now)) {
                return None;
            }
            Some((addr, stats))
        };
        let n = eligible.len();
        let chosen = match balance {
            Balance::RoundRobin => {
                let cursor = match self.cursors.get(&backend.name) {
                    Some(c) => c,
                    None => self
                        .cursors
                        .get_or_insert_with(&backend.name, || AtomicUsize::new(0)),
                };
                let start = cursor.fetch_add(1, Ordering::Relaxed);
                (0..n).find_map(|i| usable(eligible[start.wrapping_add(i) % n]))
            }
            Balance::Ewma => {
                let first = first_usable_from(eligible, fastrand::usize(0..n), &usable);
                let second = if n > 1 {
                    let mut j = fastrand::usize(0..n - 1);
                    if let Some((i, _)) = first
                        && j >= i
                    {
                        j += 1;
                    }
                    first_usable_from(eligible, j % n, &usable)
                } else {
                    None
                };
                match (first, second) {
                    (Some((_, a)), Some((_, b))) if a.0 != b.0 => Some(cheaper(a, b, now)),
                    (Some((_, a)), _) => Some(a),
                    (None, _) => None,
                }
            }
        };
        // Every candidate is ejected: trying one beats answering 503 to everyone, and
        // the EndpointSlice says these pods exist.
        let (chosen, known) = chosen.or_else(|| {
            let start = fastrand::usize(0..n);
            (0..n)
                .map(|i| eligible[(start + i) % n])
                .find(|a| Some(*a) != exclude)
                .map(|a| (a, map.get(&a)))
        })?;
        // Usually known already: the same map answered without a second load.
        let known = known.cloned();
        drop(map);
        let stats = known.unwrap_or_else(|| self.stats_for(chosen));
        stats.last_used_us.store(now, Ordering::Relaxed);
        Some(Pick {
            addr: chosen,
            stats,
        })
    }

    /// Forgets addresses unused for a long time, at most once a minute.
    fn maybe_sweep(&self, now: u64) {
        let last = self.last_sweep_us.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY_US
            || self
                .last_sweep_us
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let stale = |s: &EndpointStats| {
            s.in_flight() == 0
                && now.saturating_sub(s.last_used_us.load(Ordering::Relaxed)) > FORGET_AFTER_US
        };
        if self.stats.load().values().any(|s| stale(s)) {
            self.stats.retain(|_, s| !stale(s));
        }
    }

    /// `addr` as a pick, for choices made outside this balancer (affinity, hashing).
    pub(crate) fn pick_addr(&self, addr: SocketAddr) -> Pick {
        let stats = self.stats_for(addr);
        stats.last_used_us.store(monotonic_us(), Ordering::Relaxed);
        Pick { addr, stats }
    }

    /// Whether `addr` sits out a passive-health backoff at `now`.
    pub(crate) fn is_ejected(&self, addr: SocketAddr, now: u64) -> bool {
        self.stats
            .load()
            .get(&addr)
            .is_some_and(|s| s.health.is_ejected(now))
    }

    /// Number of addresses with kept state.
    pub fn tracked(&self) -> usize {
        self.stats.len()
    }
}

/// The P2C comparison. An endpoint without latency history borrows its rival's estimate
/// (slow start, like ingress-nginx seeding new endpoints with known scores): it wins
/// while it has no more requests in flight than the rival, so a new pod gets traffic at
/// once without being flooded before its first answer. Ties go to the newcomer.
fn cheaper<'m>(a: Candidate<'m>, b: Candidate<'m>, now: u64) -> Candidate<'m> {
    let (sa, sb) = (a.1.map(|s| &**s), b.1.map(|s| &**s));
    let ea = sa.and_then(|s| s.estimate_us(now));
    let eb = sb.and_then(|s| s.estimate_us(now));
    let (xa, xb) = match (ea, eb) {
        (Some(x), Some(y)) => (x, y),
        (Some(x), None) => (x, x),
        (None, Some(y)) => (y, y),
        (None, None) => (0.0, 0.0),
    };
    let cost = |s: Option<&EndpointStats>, est: f64| match s {
        Some(s) => s.cost(est),
        None => est + FLOOR_US,
    };
    let (ca, cb) = (cost(sa, xa), cost(sb, xb));
    if cb < ca || (cb == ca && eb.is_none() && ea.is_some()) {
        b
    } else {
        a
    }
}

/// The addresses that may take new requests, as `Backend.eligible` expects them: the
/// ready endpoints; if there are none, the serving and terminating ones (kube-proxy's
/// fallback, so a rollout's last pods still answer); de-duplicated, order kept.
pub fn eligible_from(endpoints: &[Endpoint]) -> Vec<SocketAddr> {
    fn take(endpoints: &[Endpoint], f: impl Fn(&Endpoint) -> bool) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        for e in endpoints.iter().filter(|e| f(e)) {
            if !out.contains(&e.addr) {
                out.push(e.addr);
            }
        }
        out
    }
    let ready = take(endpoints, |e| e.ready);
    if !ready.is_empty() {
        return ready;
    }
    take(endpoints, |e| e.serving && e.terminating)
}

/// An address that may be picked, with its kept state when it has some.
type Candidate<'m> = (SocketAddr, Option<&'m Arc<EndpointStats>>);

/// The first usable address at or after index `start` (wrapping), with its index.
fn first_usable_from<'m>(
    eligible: &[SocketAddr],
    start: usize,
    usable: &impl Fn(SocketAddr) -> Option<Candidate<'m>>,
) -> Option<(usize, Candidate<'m>)> {
    let n = eligible.len();
    (0..n)
        .map(|i| (start + i) % n)
        .find_map(|i| usable(eligible[i]).map(|c| (i, c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::model::snapshot::{EndpointCell, UpstreamProtocol};

    fn backend(addrs: &[&str]) -> Backend {
        let eligible: Vec<SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        Backend {
            name: "default/web:80".into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: EndpointCell::new(Vec::new(), eligible),
            external: None,
        }
    }

    #[test]
    fn eligible_ready_then_serving_terminating() {
        let ep = |a: &str, ready, serving, terminating| Endpoint {
            addr: a.parse().unwrap(),
            ready,
            serving,
            terminating,
        };
        let all = [
            ep("10.0.0.1:80", false, true, true),
            ep("10.0.0.2:80", true, true, false),
            ep("10.0.0.2:80", true, true, false),
            ep("10.0.0.3:80", false, false, false),
        ];
        let got: Vec<String> = eligible_from(&all).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["10.0.0.2:80"]);
        let got: Vec<String> = eligible_from(&[all[0].clone(), all[3].clone()])
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(got, ["10.0.0.1:80"]);
        assert!(eligible_from(&[all[3].clone()]).is_empty());
        // Serving but not terminating and not ready is a pod that is simply not ready.
        assert!(eligible_from(&[ep("10.0.0.4:80", false, true, false)]).is_empty());
    }

    #[test]
    fn empty_backend_has_no_pick() {
        let b = Balancer::new(10);
        assert!(b.pick(&backend(&[]), Balance::Ewma, None).is_none());
        assert!(b.pick(&backend(&[]), Balance::RoundRobin, None).is_none());
    }

    #[test]
    fn round_robin_cycles_in_order() {
        let b = Balancer::new(10);
        let be = backend(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
        let picks: Vec<_> = (0..6)
            .map(|_| {
                b.pick(&be, Balance::RoundRobin, None)
                    .unwrap()
                    .addr
                    .to_string()
            })
            .collect();
        assert_eq!(&picks[0..3], &picks[3..6]);
        let mut first: Vec<_> = picks[0..3].to_vec();
        first.sort();
        assert_eq!(first, ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
    }

    #[test]
    fn ewma_prefers_low_latency_and_new_endpoints() {
        let b = Balancer::new(10);
        let be = backend(&["10.0.0.1:80", "10.0.0.2:80"]);
        let slow = b.stats_for("10.0.0.1:80".parse().unwrap());
        slow.observe(Duration::from_millis(50));
        for _ in 0..50 {
            let p = b.pick(&be, Balance::Ewma, None).unwrap();
            assert_eq!(
                p.addr.to_string(),
                "10.0.0.2:80",
                "unseen endpoint is cheap"
            );
        }
        b.stats_for("10.0.0.2:80".parse().unwrap())
            .observe(Duration::from_millis(1));
        for _ in 0..50 {
            let p = b.pick(&be, Balance::Ewma, None).unwrap();
            assert_eq!(p.addr.to_string(), "10.0.0.2:80");
        }
    }

    #[test]
    fn new_endpoint_gets_traffic_but_is_not_flooded() {
        let b = Balancer::new(10);
        let be = backend(&["10.0.0.1:80", "10.0.0.2:80"]);
        let old = b.stats_for("10.0.0.1:80".parse().unwrap());
        old.observe(Duration::from_millis(5));
        // Equal in-flight: the newcomer wins.
        let first = b.pick(&be, Balance::Ewma, None).unwrap();
        assert_eq!(first.addr.to_string(), "10.0.0.2:80");
        // It now has a request in flight and still no answer: the known pod is cheaper.
        let _pending = first.stats.start();
        assert_eq!(
            b.pick(&be, Balance::Ewma, None).unwrap().addr.to_string(),
            "10.0.0.1:80"
        );
    }

    #[test]
    fn in_flight_raises_cost() {
        let b = Balancer::new(10);
        let be = backend(&["10.0.0.1:80", "10.0.0.2:80"]);
        let a = b.stats_for("10.0.0.1:80".parse().unwrap());
        let c = b.stats_for("10.0.0.2:80".parse().unwrap());
        a.observe(Duration::from_millis(10));
        c.observe(Duration::from_millis(10));
        let _busy: Vec<_> = (0..5).map(|_| a.start()).collect();
        for _ in 0..20 {
            assert_eq!(
                b.pick(&be, Balance::Ewma, None).unwrap().addr.to_string(),
                "10.0.0.2:80"
            );
        }
        drop(_busy);
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn peak_then_decay() {
        let b = Balancer::new(10);
        let s = b.stats_for("10.0.0.1:80".parse().unwrap());
        s.observe(Duration::from_millis(10));
        s.observe(Duration::from_millis(100));
        assert_eq!(s.estimate(), Duration::from_millis(100), "peak replaces");
        s.observe(Duration::from_millis(1));
        assert!(
            s.estimate() > Duration::from_millis(99),
            "lower samples pull slowly"
        );
    }

    #[test]
    fn ejected_skipped_then_fail_open_and_exclude() {
        let b = Balancer::new(10);
        let be = backend(&["10.0.0.1:80", "10.0.0.2:80"]);
        let dead: SocketAddr = "10.0.0.1:80".parse().unwrap();
        b.stats_for(dead)
            .health
            .record_connect_failure(monotonic_us());
        for _ in 0..30 {
            assert_ne!(b.pick(&be, Balance::Ewma, None).unwrap().addr, dead);
            assert_ne!(b.pick(&be, Balance::RoundRobin, None).unwrap().addr, dead);
        }
        // Both ejected: still one is tried.
        b.stats_for("10.0.0.2:80".parse().unwrap())
            .health
            .record_connect_failure(monotonic_us());
        assert!(b.pick(&be, Balance::Ewma, None).is_some());
        // A retry never goes back to the address it leaves.
        for _ in 0..30 {
            assert_ne!(b.pick(&be, Balance::Ewma, Some(dead)).unwrap().addr, dead);
        }
        let single = backend(&["10.0.0.1:80"]);
        assert!(b.pick(&single, Balance::Ewma, Some(dead)).is_none());
    }

    #[test]
    fn stats_shared_across_backends_with_same_addr() {
        let b = Balancer::new(10);
        let p1 = b
            .pick(&backend(&["10.0.0.9:80"]), Balance::Ewma, None)
            .unwrap();
        let p2 = b
            .pick(&backend(&["10.0.0.9:80"]), Balance::RoundRobin, None)
            .unwrap();
        assert!(Arc::ptr_eq(&p1.stats, &p2.stats));
        assert_eq!(b.tracked(), 1);
    }
}
