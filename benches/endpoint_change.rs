//! Scale: 10,000 Ingress rules on 5,000 hosts with 20,000 endpoints (5,000 Services with
//! one 4-endpoint EndpointSlice each), as the Kubernetes source stores them. Prints
//! (a) the time from an EndpointSlice change applied to the store until a request-path
//! lookup on another thread sees it (the endpoint fast path: take the store's changes,
//! refresh the affected backends, no compile), (b) the full compile time that any other
//! change costs, for comparison, and (c) the process's RSS holding the store and the
//! snapshot. Run with `cargo bench --bench endpoint_change`.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::ingress::build::endpoint_refresh::refresh;
use portcullis::ingress::model::snapshot::Lookup;
use portcullis::reload::ConfigHandle;
use portcullis::source::{Object, ObjectStore};
use serde_json::json;

const RULES: usize = 10_000;
const HOSTS: usize = 5_000;
const ENDPOINTS_PER_SERVICE: u32 = 4;
/// One Service per host, so 20,000 endpoints.
const SERVICES: usize = HOSTS;
const CHANGES: usize = 400;

fn obj(v: serde_json::Value) -> Object {
    match Object::from_value(v) {
        Ok(Some(o)) => o,
        other => panic!("bench fixture: {other:?}"),
    }
}

fn host(h: usize) -> String {
    format!("h{h}.example.com")
}

fn pod(service: usize, n: u32) -> String {
    format!("10.{}.{}.{n}", service / 250, service % 250)
}

/// Service `s`'s slice; `extra` picks its last pod, so two values alternate.
fn slice(s: usize, extra: u32) -> Object {
    let mut endpoints: Vec<serde_json::Value> = (1..ENDPOINTS_PER_SERVICE)
        .map(|n| json!({"addresses": [pod(s, n)]}))
        .collect();
    endpoints.push(json!({"addresses": [pod(s, extra)]}));
    obj(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc{s}-1"), "namespace": "bench",
                     "labels": {"kubernetes.io/service-name": format!("svc{s}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": endpoints,
    }))
}

fn store() -> ObjectStore {
    let mut st = ObjectStore::new();
    st.insert(
        "kubernetes:ingressclasses",
        obj(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "portcullis"},
            "spec": {"controller": "portcullis.io/ingress-controller"}
        })),
    );
    for s in 0..SERVICES {
        st.insert(
            "kubernetes:services",
            obj(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc{s}"), "namespace": "bench"},
                "spec": {"ports": [{"name": "http", "port": 80}]}
            })),
        );
        st.insert("kubernetes:endpointslices", slice(s, ENDPOINTS_PER_SERVICE));
    }
    for i in 0..RULES {
        let h = i % HOSTS;
        st.insert(
            "kubernetes:ingresses",
            obj(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": format!("ing{i}"), "namespace": "bench"},
                "spec": {"ingressClassName": "portcullis", "rules": [{
                    "host": host(h),
                    "http": {"paths": [{
                        "path": format!("/r{i}"), "pathType": "Prefix",
                        "backend": {"service": {"name": format!("svc{h}"), "port": {"name": "http"}}}
                    }]}
                }]}
            })),
        );
    }
    st
}

/// VmRSS and VmHWM of this process in MiB.
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn show(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: n {} p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(percentile(&samples, 1.0)),
    );
}

fn main() {
    // `cargo bench` passes --bench; a filter that names another bench skips this one.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"endpoint_change".contains(a.as_str()))
    {
        return;
    }
    let (rss_start, _) = rss();
    let opts = CompileOptions::default();
    let mut st = store();
    st.take_changes();
    let started = Instant::now();
    let first = compile(&st, &opts, None);
    let first_compile = started.elapsed();
    assert!(first.problems.is_empty(), "{:?}", first.problems.first());
    let routes = first.router.len();
    let backends = first.backends.len();
    let handle = ConfigHandle::new(first);
    let (rss_held, hwm) = rss();
    println!(
        "{RULES} Ingress rules ({routes} routes), {HOSTS} hosts, {} endpoints, {backends} backends",
        SERVICES * ENDPOINTS_PER_SERVICE as usize
    );
    println!(
        "RSS holding store + snapshot: {rss_held:.1} MiB (process start {rss_start:.1} MiB, peak {hwm:.1} MiB)"
    );
    println!(
        "first compile: {:.1} ms",
        first_compile.as_secs_f64() * 1000.0
    );

    // The request side: another thread doing what the gateway does per request (load the
    // snapshot, route, load the backend's endpoints) until it sees the awaited address.
    let (want_tx, want_rx) = mpsc::channel::<(String, String, SocketAddr)>();
    let (seen_tx, seen_rx) = mpsc::channel::<Instant>();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let handle = handle.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while let Ok((host, path, addr)) = want_rx.recv() {
                loop {
                    let snapshot = handle.load();
                    let seen = match snapshot.router.lookup(&host, &path) {
                        Lookup::Matched { route, .. } => {
                            route.backend.endpoints.load().eligible.contains(&addr)
                        }
                        Lookup::NotFound => false,
                    };
                    if seen {
                        let _ = seen_tx.send(Instant::now());
                        break;
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::hint::spin_loop();
                }
            }
        })
    };

    let mut fast = Vec::new();
    let mut generations = Vec::new();
    for k in 0..CHANGES {
        // Spread over the Services (7919 is prime to 5,000, so none is changed twice);
        // each change replaces the Service's last pod by a new one.
        let s = (k * 7919) % SERVICES;
        let extra = ENDPOINTS_PER_SERVICE + 1;
        let addr: SocketAddr = format!("{}:8080", pod(s, extra)).parse().unwrap();
        // Rule `/r{s}` is one of host `s`'s two rules.
        let wanted = (host(s), format!("/r{s}"), addr);
        // Decoding the object is the watch's work, not the store's: done before the clock.
        let changed = slice(s, extra);
        let _ = want_tx.send(wanted);
        let start = Instant::now();
        st.insert("kubernetes:endpointslices", changed);
        let changes = st.take_changes();
        assert!(changes.endpoints_only());
        let snapshot = handle.load_full();
        let refreshed = refresh(&snapshot, &st, &opts.endpoint_filter, &changes.endpoints_of)
            .expect("an endpoint-only change");
        assert_eq!(refreshed.len(), 1);
        let seen = seen_rx.recv().expect("the reader saw the change");
        fast.push(seen.duration_since(start));
        generations.push(snapshot.generation);
    }
    stop.store(true, Ordering::Relaxed);
    drop(want_tx);
    let _ = reader.join();
    assert!(
        generations.iter().all(|g| *g == 1),
        "the fast path published no snapshot"
    );
    show(
        "(a) EndpointSlice change in the store -> seen by a request-path lookup",
        fast,
    );

    // The fast path's one walk over the whole store: checking its own problems are unchanged.
    let mut walk = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        std::hint::black_box(st.problems());
        walk.push(start.elapsed());
    }
    show(
        "    of which ObjectStore::problems (store-wide check)",
        walk,
    );

    let mut full = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let previous = handle.load_full();
        let next = compile(&st, &opts, Some(&previous));
        handle.store(Arc::new(next));
        full.push(start.elapsed());
    }
    show(
        "(b) full compile + swap (any other change; every change before the fast path)",
        full,
    );
    let (rss_end, hwm_end) = rss();
    println!("RSS at the end: {rss_end:.1} MiB (peak {hwm_end:.1} MiB)");
}
