//! Certificate rotation on disk while clients keep calling: by atomic rename of new files,
//! and by the Kubernetes Secret volume layout (`..data` symlink swap). No call may fail,
//! new connections must see the new certificate quickly, and a broken key file must leave
//! the old certificate in place.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Client, Proto, leaf_der};
use portcullis::tls::{CertReloader, DevCerts, server_config};
use tokio::sync::Mutex;

/// How soon a rotation must be visible to new connections.
const ROTATION_BOUND: Duration = Duration::from_secs(3);

/// How the certificate files are laid out and replaced.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Plain files replaced by writing a temporary file and renaming it over the old one.
    Rename,
    /// kubelet's AtomicWriter: `..<ts>/tls.crt`, `..data -> ..<ts>`, `tls.crt -> ..data/tls.crt`.
    Kubernetes,
}

fn write_atomically(path: &Path, data: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// kubelet names each payload directory after a timestamp; any unique name will do.
fn version_dir(generation: u32) -> String {
    format!("..2026_01_01_00_00_{generation:02}.{generation:09}")
}

impl Layout {
    /// Lays out generation 0.
    fn install(self, dir: &Path, certs: &DevCerts) {
        match self {
            Layout::Rename => self.rotate(dir, certs, 0),
            Layout::Kubernetes => {
                self.rotate(dir, certs, 0);
                for f in ["tls.crt", "tls.key"] {
                    std::os::unix::fs::symlink(Path::new("..data").join(f), dir.join(f)).unwrap();
                }
            }
        }
    }

    /// Replaces the files with `certs` as generation `generation` (> 0 after install).
    fn rotate(self, dir: &Path, certs: &DevCerts, generation: u32) {
        match self {
            Layout::Rename => {
                write_atomically(&dir.join("tls.crt"), &certs.cert_pem);
                write_atomically(&dir.join("tls.key"), &certs.key_pem);
            }
            // Write a new payload directory, point `..data` at it with one atomic rename,
            // then remove the previous directory: the order kubelet uses.
            Layout::Kubernetes => {
                let version = version_dir(generation);
                let vdir = dir.join(&version);
                fs::create_dir(&vdir).unwrap();
                fs::write(vdir.join("tls.crt"), &certs.cert_pem).unwrap();
                fs::write(vdir.join("tls.key"), &certs.key_pem).unwrap();
                let tmp = dir.join("..data_tmp");
                std::os::unix::fs::symlink(&version, &tmp).unwrap();
                fs::rename(&tmp, dir.join("..data")).unwrap();
                if generation > 0 {
                    fs::remove_dir_all(dir.join(version_dir(generation - 1))).unwrap();
                }
            }
        }
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    old: DevCerts,
    new: DevCerts,
    newer: DevCerts,
    ca: Arc<String>,
    reloader: CertReloader,
    server: common::TestServer,
}

async fn rig(layout: Layout) -> Rig {
    common::init();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let old = DevCerts::generate("portcullis", "test").unwrap();
    let new = DevCerts::generate("portcullis", "test").unwrap();
    let newer = DevCerts::generate("portcullis", "test").unwrap();
    // Clients trust every CA involved, as they would during a CA-preserving rotation.
    let ca = Arc::new(format!("{}{}{}", old.ca_pem, new.ca_pem, newer.ca_pem));
    layout.install(&dir, &old);
    let (reloader, resolver) =
        CertReloader::with_new_resolver(dir.join("tls.crt"), dir.join("tls.key")).unwrap();
    let handler = common::handler(|_req, _conn| async { common::ok("ok") });
    let server = common::start(handler, Some(server_config(resolver).unwrap())).await;
    Rig {
        _dir: tmp,
        dir,
        old,
        new,
        newer,
        ca,
        reloader,
        server,
    }
}

/// Counters shared by the client loops.
#[derive(Default)]
struct Tally {
    calls: AtomicUsize,
    failures: AtomicUsize,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, what: &str, res: anyhow::Result<u16>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match res {
            Ok(200) => {}
            Ok(status) => self.fail(format!("{what}: status {status}")),
            Err(e) => self.fail(format!("{what}: {e:#}")),
        }
    }

    fn fail(&self, msg: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.errors.lock().unwrap().push(msg);
    }
}

async fn rotate_under_load(layout: Layout) {
    let rig = rig(layout).await;
    let addr = rig.server.addr;
    let old_der = leaf_der(&rig.old.cert_pem);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    // The leaf seen by the most recent fresh connection.
    let last_leaf = Arc::new(Mutex::new(Vec::new()));
    let mut loops = Vec::new();

    // Fresh connections, alternating HTTP/1.1 and h2.
    {
        let (stop, tally, ca, last_leaf) = (
            stop.clone(),
            tally.clone(),
            rig.ca.clone(),
            last_leaf.clone(),
        );
        loops.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let proto = if i.is_multiple_of(2) {
                    Proto::H1
                } else {
                    Proto::H2
                };
                i += 1;
                let res = async {
                    let mut c = Client::tls(addr, "localhost", ca.as_bytes(), proto).await?;
                    let status = c.get("localhost", "/").await?.status.as_u16();
                    *last_leaf.lock().await = c.peer_leaf.clone().unwrap_or_default();
                    Ok(status)
                }
                .await;
                tally.record("fresh connection", res);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // Kept-alive connections opened before the rotation, one per protocol.
    for proto in [Proto::H1, Proto::H2] {
        let (stop, tally) = (stop.clone(), tally.clone());
        let mut client = Client::tls(addr, "localhost", rig.ca.as_bytes(), proto)
            .await
            .unwrap();
        assert_eq!(client.peer_leaf.as_deref(), Some(old_der.as_slice()));
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let res = client
                    .get("localhost", "/")
                    .await
                    .map(|r| r.status.as_u16());
                tally.record("kept-alive connection", res);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        *last_leaf.lock().await,
        old_der,
        "old certificate not served first"
    );
    let before_rotation = tally.calls.load(Ordering::Relaxed);

    // Two rotations: a watch that only survives the first (a watch on a file, or on a
    // symlink target that the swap deletes) fails the second.
    let mut delays = Vec::new();
    for (generation, certs) in [(1, &rig.new), (2, &rig.newer)] {
        let want = leaf_der(&certs.cert_pem);
        let rotated_at = Instant::now();
        layout.rotate(&rig.dir, certs, generation);
        while *last_leaf.lock().await != want {
            assert!(
                rotated_at.elapsed() < ROTATION_BOUND,
                "{layout:?}: generation {generation} not served within {ROTATION_BOUND:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        delays.push(rotated_at.elapsed());
        // Keep calling for a while: later fresh connections must keep getting it.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(*last_leaf.lock().await, want, "{layout:?}: went back");
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }

    let errors = tally.errors.lock().unwrap().clone();
    assert_eq!(
        tally.failures.load(Ordering::Relaxed),
        0,
        "{layout:?}: {errors:?}"
    );
    let total = tally.calls.load(Ordering::Relaxed);
    assert!(
        before_rotation >= 10 && total >= before_rotation + 10,
        "{layout:?}: too few calls ({before_rotation} before, {total} total)"
    );
    let status = rig.reloader.status();
    assert!(status.loaded >= 3, "{status:?}");
    eprintln!("{layout:?}: rotations visible after {delays:?}; {total} calls, {status:?}");
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_atomic_rename() {
    rotate_under_load(Layout::Rename).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_kubernetes_symlink_swap() {
    rotate_under_load(Layout::Kubernetes).await;
}

async fn served_leaf(addr: std::net::SocketAddr, ca: &str) -> Vec<u8> {
    let (reply, client) = common::https_get(addr, "localhost", ca.as_bytes(), Proto::H1, "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    client.peer_leaf.unwrap()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn broken_key_keeps_the_old_certificate() {
    for layout in [Layout::Rename, Layout::Kubernetes] {
        let rig = rig(layout).await;
        let addr = rig.server.addr;
        let old_der = leaf_der(&rig.old.cert_pem);
        assert_eq!(served_leaf(addr, &rig.ca).await, old_der);
        let errors_before =
            common::metric("portcullis_tls_cert_reloads_total", &[("result", "error")])
                .unwrap_or(0.0);

        // New certificate, but a key that is not PEM at all.
        let broken = DevCerts {
            key_pem: "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
                .into(),
            ..rig.new.clone()
        };
        layout.rotate(&rig.dir, &broken, 1);
        wait_until("the failed reload", || rig.reloader.status().failed >= 1).await;
        assert!(rig.reloader.status().last_error.is_some());
        assert!(
            common::metric("portcullis_tls_cert_reloads_total", &[("result", "error")])
                .unwrap_or(0.0)
                > errors_before
        );
        // Still the old certificate, and still serving.
        for _ in 0..3 {
            assert_eq!(served_leaf(addr, &rig.ca).await, old_der, "{layout:?}");
        }

        // The reloader survived the failure: a good pair is picked up again.
        layout.rotate(&rig.dir, &rig.new, 2);
        let new_der = leaf_der(&rig.new.cert_pem);
        let deadline = Instant::now() + Duration::from_secs(5);
        while served_leaf(addr, &rig.ca).await != new_der {
            assert!(
                Instant::now() < deadline,
                "{layout:?}: good pair never loaded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rig.reloader.status().last_error, None);
        rig.server.stop().await;
    }
}
