//! Live configuration changes through the real binary, under load: EndpointSlice
//! readiness moved between pods, a TLS Secret swapped, broken files that must change
//! nothing. Clients run continuously while files in the watched directory are replaced
//! (atomic rename); every request must succeed, and the new state must take all traffic
//! within a bound. The observed latencies are printed (`--nocapture` shows them).
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, Proto, leaf_der};
use e2e::{
    Portcullis, eventually, http_get, ingress, ingress_class, pod, pod_name, service, slice,
    tls_secret, write_atomic, yaml,
};
use http::StatusCode;
use portcullis::tls::DevCerts;
use serde_json::Value;
use tokio::task::JoinHandle;

/// How long a change may take to reach all traffic.
const CONVERGE_BOUND: Duration = Duration::from_secs(2);
/// How long traffic must stay in the new state before a phase counts as settled.
const STABLE_FOR: Duration = Duration::from_millis(300);

/// One request of the load: when it started and which state answered it (a pod name or
/// a certificate label), or what went wrong.
#[derive(Debug, Clone)]
struct Sample {
    start: Instant,
    outcome: Result<String, String>,
}

#[derive(Clone, Default)]
struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Load {
    fn record(&self, start: Instant, outcome: Result<String, String>) {
        self.samples.lock().unwrap().push(Sample { start, outcome });
    }

    fn since(&self, t0: Instant) -> Vec<Sample> {
        let all = self.samples.lock().unwrap();
        all.iter().filter(|s| s.start >= t0).cloned().collect()
    }

    /// Waits until every request started after `t0` has been answered by a state in `want`
    /// for `STABLE_FOR`, with each state of `want` seen. Returns how long after `t0` the
    /// last request answered by an old state started (zero if none did).
    async fn converge(&self, t0: Instant, want: &[&str], what: &str) -> Duration {
        let want: BTreeSet<&str> = want.iter().copied().collect();
        let deadline = t0 + CONVERGE_BOUND + STABLE_FOR + Duration::from_secs(1);
        loop {
            let samples = self.since(t0);
            let last_old = samples
                .iter()
                .filter(|s| matches!(&s.outcome, Ok(v) if !want.contains(v.as_str())))
                .map(|s| s.start)
                .max();
            let settled_from = last_old.unwrap_or(t0);
            let seen: BTreeSet<&str> = samples
                .iter()
                .filter(|s| s.start > settled_from)
                .filter_map(|s| s.outcome.as_ref().ok())
                .map(String::as_str)
                .collect();
            let lag = settled_from - t0;
            assert!(
                lag <= CONVERGE_BOUND,
                "{what}: old state still answering {lag:?} after the change"
            );
            if settled_from.elapsed() >= STABLE_FOR && want.iter().all(|w| seen.contains(w)) {
                return lag;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not settled; states seen since the change: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients and returns every sample, asserting none failed.
    async fn finish(&self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().unwrap());
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("load task did not stop")
                .expect("load task panicked");
        }
        let samples = self.samples.lock().unwrap();
        let failures: Vec<&Sample> = samples.iter().filter(|s| s.outcome.is_err()).collect();
        assert!(
            failures.is_empty(),
            "{} of {} requests failed, first: {:?}",
            failures.len(),
            samples.len(),
            failures.first()
        );
        samples.len()
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.lock().unwrap().push(tokio::spawn(task));
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }
}

/// `conns` keep-alive connections (alternately HTTP/1.1 and h2c) sending GETs back to
/// back; each sample is the answering pod.
fn keepalive_load(load: &Load, addr: SocketAddr, host: &'static str, conns: usize) {
    for i in 0..conns {
        let load2 = load.clone();
        let proto = if i % 2 == 0 { Proto::H1 } else { Proto::H2 };
        load.spawn(async move {
            let mut client = Client::plain(addr, proto).await.unwrap();
            while load2.running() {
                let start = Instant::now();
                let outcome = match client.get(host, "/").await {
                    Ok(r) if r.status == StatusCode::OK => {
                        pod_name(&r).ok_or_else(|| format!("200 without a pod: {}", r.text()))
                    }
                    Ok(r) => Err(format!("{proto:?}: {} {}", r.status, r.text())),
                    Err(e) => Err(format!("{proto:?}: {e:#}")),
                };
                let failed = outcome.is_err();
                load2.record(start, outcome);
                if failed || client.is_closed() {
                    // Counted as a failure above; carry on so the test reports them all.
                    match Client::plain(addr, proto).await {
                        Ok(c) => client = c,
                        Err(e) => load2.record(Instant::now(), Err(format!("reconnect: {e:#}"))),
                    }
                }
            }
        });
    }
}

const MOVE: &str = "move.e2e.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoint_slice_edits_under_load_lose_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    let (a, _a) = pod("127.0.0.2", "pod-a").await;
    let (b, _b) = pod("127.0.0.3", "pod-b").await;
    write_atomic(m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(
        m,
        "10-move.yaml",
        &yaml(&[
            ingress("move", MOVE, None, &[("/", "web")], &[]),
            service("web"),
        ]),
    );
    write_atomic(m, "30-slices.yaml", &yaml(&[slice("web", "a", a, true)]));
    let gw = Portcullis::start(m, &[]).await;

    let load = Load::default();
    keepalive_load(&load, gw.http, MOVE, 4);
    let t0 = Instant::now();
    load.converge(t0, &["pod-a"], "start: A only").await;

    // 1. A not ready, B ready (B appears in the same write).
    let t1 = Instant::now();
    write_atomic(
        m,
        "30-slices.yaml",
        &yaml(&[slice("web", "a", a, false), slice("web", "b", b, true)]),
    );
    let move_lag = load.converge(t1, &["pod-b"], "A not ready, B ready").await;
    let first_b = load
        .since(t1)
        .iter()
        .find(|s| s.outcome.as_deref() == Ok("pod-b"))
        .map(|s| s.start - t1);

    // 2. Both ready: traffic spreads to A again.
    let t2 = Instant::now();
    write_atomic(
        m,
        "30-slices.yaml",
        &yaml(&[slice("web", "a", a, true), slice("web", "b", b, true)]),
    );
    load.converge(t2, &["pod-a", "pod-b"], "both ready").await;

    // 3. A's endpoint removed from the slices: all traffic to B.
    let t3 = Instant::now();
    write_atomic(m, "30-slices.yaml", &yaml(&[slice("web", "b", b, true)]));
    let remove_lag = load.converge(t3, &["pod-b"], "A removed").await;

    // 4. Back to A alone, in a separate file for B that is then deleted.
    let t4 = Instant::now();
    write_atomic(m, "30-slices.yaml", &yaml(&[slice("web", "a", a, true)]));
    write_atomic(m, "31-b.yaml", &yaml(&[slice("web", "b", b, false)]));
    let back_lag = load.converge(t4, &["pod-a"], "back to A").await;
    std::fs::remove_file(m.join("31-b.yaml")).unwrap();

    let total = load.finish().await;
    eprintln!(
        "endpoint move: {total} requests, 0 failed; all traffic on B {move_lag:?} after the \
         write (first B after {first_b:?}); removal {remove_lag:?}; back to A {back_lag:?}"
    );
    // Enough requests that every phase was crossed by traffic, not just probed.
    assert!(total > 100, "too little load to mean anything: {total}");
}

const SWAP: &str = "swap.e2e.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificate_swapped_under_load_loses_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    let (web, _web) = pod("127.0.0.2", "web-1").await;
    let v1 = DevCerts::generate_for_names(&[SWAP.to_string()]).unwrap();
    let v2 = DevCerts::generate_for_names(&[SWAP.to_string()]).unwrap();
    let (leaf1, leaf2) = (leaf_der(&v1.cert_pem), leaf_der(&v2.cert_pem));
    assert_ne!(leaf1, leaf2);
    let cas = format!("{}{}", v1.ca_pem, v2.ca_pem);
    write_atomic(
        m,
        "00-base.yaml",
        &yaml(&[
            ingress_class(),
            ingress("swap", SWAP, Some("swap-tls"), &[("/", "web")], &[]),
            service("web"),
            slice("web", "web-1", web, true),
        ]),
    );
    write_atomic(
        m,
        "40-tls.yaml",
        &yaml(&[tls_secret("swap-tls", &v1.cert_pem, &v1.key_pem)]),
    );
    let gw = Portcullis::start(m, &[]).await;

    // A connection opened before the swap keeps its certificate and keeps working.
    let mut old = Client::tls(gw.https, SWAP, cas.as_bytes(), Proto::H2)
        .await
        .unwrap();
    assert_eq!(old.peer_leaf.as_deref(), Some(&leaf1[..]));

    // Every request on a new connection (new handshake), h1 and h2 alternately.
    let load = Load::default();
    for i in 0..3 {
        let load2 = load.clone();
        let (addr, cas) = (gw.https, cas.clone());
        let (leaf1, leaf2) = (leaf1.clone(), leaf2.clone());
        let proto = if i % 2 == 0 { Proto::H1 } else { Proto::H2 };
        load.spawn(async move {
            while load2.running() {
                let start = Instant::now();
                let outcome = async {
                    let mut c = Client::tls(addr, SWAP, cas.as_bytes(), proto).await?;
                    let reply = c.get(SWAP, "/").await?;
                    anyhow::ensure!(reply.status == StatusCode::OK, "{}", reply.status);
                    match c.peer_leaf {
                        Some(l) if l == leaf1 => Ok("v1".to_string()),
                        Some(l) if l == leaf2 => Ok("v2".to_string()),
                        _ => anyhow::bail!("an unexpected certificate"),
                    }
                }
                .await
                .map_err(|e| format!("{proto:?}: {e:#}"));
                load2.record(start, outcome);
            }
        });
    }
    load.converge(Instant::now(), &["v1"], "start: v1").await;

    let t0 = Instant::now();
    write_atomic(
        m,
        "40-tls.yaml",
        &yaml(&[tls_secret("swap-tls", &v2.cert_pem, &v2.key_pem)]),
    );
    let swap_lag = load.converge(t0, &["v2"], "certificate v2").await;
    let total = load.finish().await;

    let reply = old.get(SWAP, "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    eprintln!(
        "certificate swap: {total} handshakes+requests, 0 failed; new connections all see \
         the new leaf {swap_lag:?} after the write"
    );
    assert!(total > 20, "too little load to mean anything: {total}");
}

const BROKEN: &str = "broken.e2e.test";

/// The problems on `/problems` that name `file` (by its path's last component).
async fn problems_for(gw: &Portcullis, file: &str) -> Vec<Value> {
    gw.problems()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p["file"].as_str().is_some_and(|f| f.ends_with(file)))
        .collect()
}

async fn answer(gw: &Portcullis, path: &str) -> (StatusCode, Option<String>) {
    let r = http_get(gw.http, BROKEN, path).await.unwrap();
    (r.status, pod_name(&r))
}

/// Waits until `/problems` lists a problem for `file` whose text contains `needle`.
async fn wait_problem(gw: &Portcullis, file: &str, needle: &str) -> Vec<Value> {
    let (found, _) = eventually(Duration::from_secs(3), needle, || async {
        let found = problems_for(gw, file).await;
        found
            .iter()
            .any(|p| p.to_string().contains(needle))
            .then_some(found)
    })
    .await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_change_nothing_served() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    let (a, _a) = pod("127.0.0.2", "pod-a").await;
    let (b, _b) = pod("127.0.0.3", "pod-b").await;
    write_atomic(
        m,
        "00-base.yaml",
        &yaml(&[
            ingress_class(),
            service("svc-a"),
            service("svc-b"),
            slice("svc-a", "a", a, true),
            slice("svc-b", "b", b, true),
        ]),
    );
    let good = ingress("app", BROKEN, None, &[("/v1", "svc-a")], &[]);
    write_atomic(m, "10-app.yaml", &yaml(&[good]));
    let gw = Portcullis::start(m, &[]).await;
    assert!(problems_for(&gw, "10-app.yaml").await.is_empty());
    let served = (StatusCode::OK, Some("pod-a".to_string()));
    assert_eq!(answer(&gw, "/v1/x").await, served);
    assert_eq!(answer(&gw, "/v2").await.0, StatusCode::NOT_FOUND);

    // 1. Not YAML at all: the file is not applied, its last good version stays.
    write_atomic(
        m,
        "10-app.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nspec: [unclosed\n  : :\n",
    );
    let found = wait_problem(&gw, "10-app.yaml", "YAML does not parse").await;
    assert!(
        found
            .iter()
            .any(|p| p.to_string().contains("last good version")),
        "{found:?}"
    );
    assert_eq!(answer(&gw, "/v1/x").await, served);

    // 2. Valid YAML, invalid Ingress (a regex that does not compile) that would also move
    //    /v1 to B: the Ingress keeps its last good routes.
    let bad_regex = ingress(
        "app",
        BROKEN,
        None,
        &[("/v1", "svc-b"), ("/v2/(unclosed", "svc-b")],
        &[("nginx.ingress.kubernetes.io/use-regex", "true")],
    );
    write_atomic(m, "10-app.yaml", &yaml(&[bad_regex]));
    let found = wait_problem(&gw, "10-app.yaml", "not a valid regex").await;
    assert!(
        found
            .iter()
            .any(|p| p["object"].as_str().is_some_and(|o| o.contains("app"))),
        "the problem must name the Ingress: {found:?}"
    );
    assert!(
        !found.iter().any(|p| p.to_string().contains("YAML")),
        "the old problem must be gone once the file parses: {found:?}"
    );
    assert_eq!(answer(&gw, "/v1/x").await, served);
    assert_eq!(answer(&gw, "/v2/x").await.0, StatusCode::NOT_FOUND);

    // 3. An unknown portcullis.io annotation: nothing is guessed, the Ingress is refused.
    let typo = ingress(
        "app",
        BROKEN,
        None,
        &[("/v1", "svc-b")],
        &[("portcullis.io/whitelist-source-rnage", "10.0.0.0/8")],
    );
    write_atomic(m, "10-app.yaml", &yaml(&[typo]));
    wait_problem(&gw, "10-app.yaml", "unknown portcullis.io annotation").await;
    for _ in 0..5 {
        assert_eq!(answer(&gw, "/v1/x").await, served);
    }

    // 4. Fixed: the new version applies (/v1 moves to B, /v2 appears), problems clear.
    let fixed = ingress(
        "app",
        BROKEN,
        None,
        &[("/v1", "svc-b"), ("/v2", "svc-a")],
        &[],
    );
    write_atomic(m, "10-app.yaml", &yaml(&[fixed]));
    let (_, took) = eventually(Duration::from_secs(3), "fixed file applied", || async {
        (answer(&gw, "/v1/x").await == (StatusCode::OK, Some("pod-b".into()))).then_some(())
    })
    .await;
    assert_eq!(answer(&gw, "/v2").await, served);
    let left = problems_for(&gw, "10-app.yaml").await;
    assert!(left.is_empty(), "problems left after the fix: {left:?}");
    eprintln!("broken file fixed: applied after {took:?}");
}

const VOLUME: &str = "volume.e2e.test";

/// Points `dir/..data` at `dir/<version>` the way the kubelet updates a ConfigMap or
/// Secret volume: a new timestamped directory, a `..data_tmp` symlink renamed over
/// `..data`, the old directory removed. The visible files are symlinks through `..data`.
fn volume_update(dir: &std::path::Path, version: &str, files: &[(&str, String)]) {
    use std::os::unix::fs::symlink;
    let target = dir.join(version);
    std::fs::create_dir(&target).unwrap();
    for (name, content) in files {
        std::fs::write(target.join(name), content).unwrap();
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    symlink(version, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mounted_volume_swaps_lose_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    let (a, _a) = pod("127.0.0.2", "pod-a").await;
    let (b, _b) = pod("127.0.0.3", "pod-b").await;
    let base = yaml(&[
        ingress_class(),
        ingress("volume", VOLUME, None, &[("/", "web")], &[]),
        service("web"),
    ]);
    let slices = |a_ready: bool, b_ready: bool| {
        yaml(&[slice("web", "a", a, a_ready), slice("web", "b", b, b_ready)])
    };
    volume_update(
        m,
        "..2026_01_01_00_00_00.1",
        &[
            ("00-base.yaml", base.clone()),
            ("30-slices.yaml", slices(true, false)),
        ],
    );
    let gw = Portcullis::start(m, &[]).await;
    let load = Load::default();
    keepalive_load(&load, gw.http, VOLUME, 4);
    load.converge(Instant::now(), &["pod-a"], "start: A").await;

    // A ConfigMap-style volume update moves the traffic, twice over.
    let mut lags = Vec::new();
    for (i, (version, a_ready, want)) in [
        ("..2026_01_01_00_00_00.2", false, "pod-b"),
        ("..2026_01_01_00_00_00.3", true, "pod-a"),
    ]
    .into_iter()
    .enumerate()
    {
        let t = Instant::now();
        volume_update(
            m,
            version,
            &[
                ("00-base.yaml", base.clone()),
                ("30-slices.yaml", slices(a_ready, !a_ready)),
            ],
        );
        lags.push(
            load.converge(t, &[want], &format!("volume update {i}"))
                .await,
        );
    }

    let total = load.finish().await;
    eprintln!("volume swaps: {total} requests, 0 failed; traffic moved {lags:?} after each update");
}

const IN_PLACE: &str = "in-place.e2e.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_place_writes_lose_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    let (a, _a) = pod("127.0.0.2", "pod-a").await;
    let (b, _b) = pod("127.0.0.3", "pod-b").await;
    write_atomic(
        m,
        "00-base.yaml",
        &yaml(&[
            ingress_class(),
            ingress("in-place", IN_PLACE, None, &[("/", "web")], &[]),
            service("web"),
        ]),
    );
    let slices = |a_ready: bool| {
        yaml(&[
            slice("web", "a", a, a_ready),
            slice("web", "b", b, !a_ready),
        ])
    };
    std::fs::write(m.join("30-slices.yaml"), slices(true)).unwrap();
    let gw = Portcullis::start(m, &[]).await;
    let load = Load::default();
    keepalive_load(&load, gw.http, IN_PLACE, 4);
    load.converge(Instant::now(), &["pod-a"], "start: A").await;

    // Written in place (truncate, then write), as editors and `cat >` do: no scan may
    // catch the file empty and drop the endpoints.
    let mut lags = Vec::new();
    for (i, a_ready) in [false, true, false, true].into_iter().enumerate() {
        let t = Instant::now();
        std::fs::write(m.join("30-slices.yaml"), slices(a_ready)).unwrap();
        let want = if a_ready { "pod-a" } else { "pod-b" };
        lags.push(
            load.converge(t, &[want], &format!("in-place write {i}"))
                .await,
        );
    }
    let total = load.finish().await;
    eprintln!("in-place writes: {total} requests, 0 failed; traffic moved {lags:?} after each");
}
