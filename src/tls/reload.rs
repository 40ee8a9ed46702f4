//! Hot reload of the serving certificate from `tls.crt`/`tls.key` files.
//!
//! The watch is on the DIRECTORY holding the files, not on the files: Kubernetes updates a
//! mounted Secret by swapping a `..data` symlink and editors replace files by rename, and a
//! watch on the file itself misses both. Any change in the directory means "re-read both
//! files"; bursts are debounced, and a slow periodic re-read covers lost events.
//!
//! Failure behaviour: a pair that does not load (missing file, bad PEM, key not matching
//! the certificate — also the normal in-between state while two files are renamed one
//! after the other) is logged, counted in `tls_cert_reloads_total{result="error"}`, and the
//! last good certificate stays in force. Only the initial load can fail `start`.
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use prometheus::{IntCounterVec, Opts};
use rustls::sign::CertifiedKey;

use super::{SniResolver, TlsError, certified_key_from_pem};

/// Timing of the reloader.
#[derive(Debug, Clone, Copy)]
pub struct ReloadOptions {
    /// Quiet time after the last event before the files are read: a Secret update or a
    /// two-file rename produces a burst of events.
    pub debounce: Duration,
    /// Longest a steady stream of events may postpone a read.
    pub max_delay: Duration,
    /// Re-read interval without events, in case the kernel dropped some (inotify queue
    /// overflow) or the directory was not watchable for a while.
    pub resync: Duration,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        ReloadOptions {
            debounce: Duration::from_millis(150),
            max_delay: Duration::from_secs(1),
            resync: Duration::from_secs(60),
        }
    }
}

/// What the reloader has done so far, for `/problems` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Successful loads, the initial one included.
    pub loaded: u64,
    /// Reads that did not produce a usable certificate.
    pub failed: u64,
    /// The error of the most recent failed read, cleared by the next success.
    pub last_error: Option<String>,
}

/// Keeps a certificate loaded from two files up to date. Dropping it stops watching.
pub struct CertReloader {
    // Held for its Drop: it ends the inotify watch.
    _watcher: RecommendedWatcher,
    tx: Sender<Msg>,
    status: Arc<Mutex<ReloadStatus>>,
}

enum Msg {
    Changed,
    Stop,
}

impl CertReloader {
    /// Loads `cert`/`key` now (an error if that fails), makes the result `resolver`'s
    /// default certificate and keeps it current as the files change.
    pub fn start(
        cert: PathBuf,
        key: PathBuf,
        resolver: Arc<SniResolver>,
    ) -> Result<CertReloader, TlsError> {
        Self::start_with(cert, key, ReloadOptions::default(), move |ck| {
            resolver.set_default(ck)
        })
    }

    /// Loads `cert`/`key` and returns a new resolver serving them by default, plus the
    /// reloader keeping it current.
    pub fn with_new_resolver(
        cert: PathBuf,
        key: PathBuf,
    ) -> Result<(CertReloader, Arc<SniResolver>), TlsError> {
        let initial = load_pair(&cert, &key)?;
        let resolver = Arc::new(SniResolver::new(initial));
        let reloader = Self::start(cert, key, resolver.clone())?;
        Ok((reloader, resolver))
    }

    /// The general form: `on_load` receives every certificate that loads, the initial one
    /// synchronously before this returns, later ones from the watcher thread.
    pub fn start_with(
        cert: PathBuf,
        key: PathBuf,
        opts: ReloadOptions,
        on_load: impl Fn(Arc<CertifiedKey>) + Send + 'static,
    ) -> Result<CertReloader, TlsError> {
        let (tx, rx) = mpsc::channel();

        // Watch before the first read: a change landing between the two is then still
        // seen (at worst as one redundant read, which the content check skips).
        let event_tx = tx.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let relevant = match res {
                Ok(event) => is_change(&event.kind),
                Err(e) => {
                    tracing::warn!(error = %e, "certificate directory watch error");
                    true
                }
            };
            if relevant {
                // The receiver is gone only when the reloader is stopping.
                let _ = event_tx.send(Msg::Changed);
            }
        })
        .map_err(|e| TlsError::Watch {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut dirs = vec![watch_dir(&cert)];
        let key_dir = watch_dir(&key);
        if !dirs.contains(&key_dir) {
            dirs.push(key_dir);
        }
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| TlsError::Watch {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                })?;
        }

        let mut state = ReloadState {
            cert,
            key,
            last_seen: None,
            on_load: Box::new(on_load),
            status: Arc::new(Mutex::new(ReloadStatus::default())),
        };
        let (cert_pem, key_pem) = state.read()?;
        let initial = certified_key_from_pem(&cert_pem, &key_pem)?;
        state.last_seen = Some((cert_pem, key_pem));
        (state.on_load)(initial);
        state.record_ok();

        let status = state.status.clone();
        std::thread::Builder::new()
            .name("cert-reload".into())
            .spawn(move || state.run(rx, opts))
            .map_err(|e| TlsError::Watch {
                path: "cert-reload thread".into(),
                reason: e.to_string(),
            })?;
        Ok(CertReloader {
            _watcher: watcher,
            tx,
            status,
        })
    }

    /// Counters and last error so far.
    pub fn status(&self) -> ReloadStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl Drop for CertReloader {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
    }
}

impl std::fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertReloader")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// Reads and parses a certificate chain and key from files.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    certified_key_from_pem(&cert_pem, &key_pem)
}

struct ReloadState {
    cert: PathBuf,
    key: PathBuf,
    /// The bytes of the last read attempt, so resyncs and our own events do not reload
    /// (or re-warn about) unchanged files.
    last_seen: Option<(Vec<u8>, Vec<u8>)>,
    on_load: Box<dyn Fn(Arc<CertifiedKey>) + Send>,
    status: Arc<Mutex<ReloadStatus>>,
}

impl ReloadState {
    fn run(mut self, rx: mpsc::Receiver<Msg>, opts: ReloadOptions) {
        loop {
            match rx.recv_timeout(opts.resync) {
                Ok(Msg::Changed) => {
                    if !settle(&rx, opts) {
                        return;
                    }
                    self.attempt();
                }
                Err(RecvTimeoutError::Timeout) => self.attempt(),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    fn attempt(&mut self) {
        let result = self.read().and_then(|(cert_pem, key_pem)| {
            let unchanged = self
                .last_seen
                .as_ref()
                .is_some_and(|(c, k)| *c == cert_pem && *k == key_pem);
            if unchanged {
                return Ok(None);
            }
            let parsed = certified_key_from_pem(&cert_pem, &key_pem);
            self.last_seen = Some((cert_pem, key_pem));
            parsed.map(Some)
        });
        match result {
            Ok(None) => {}
            Ok(Some(ck)) => {
                (self.on_load)(ck);
                self.record_ok();
                tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(
                    cert = %self.cert.display(),
                    key = %self.key.display(),
                    error = %e,
                    "certificate reload failed; keeping the previous certificate"
                );
                reloads().with_label_values(&["error"]).inc();
                let mut status = lock(&self.status);
                status.failed += 1;
                status.last_error = Some(e.to_string());
            }
        }
    }

    fn record_ok(&self) {
        reloads().with_label_values(&["ok"]).inc();
        let mut status = lock(&self.status);
        status.loaded += 1;
        status.last_error = None;
    }
}

/// Waits until events stop for `debounce` (or `max_delay` passed). False when the
/// reloader is stopping.
fn settle(rx: &mpsc::Receiver<Msg>, opts: ReloadOptions) -> bool {
    let give_up = Instant::now() + opts.max_delay;
    loop {
        let wait = opts
            .debounce
            .min(give_up.saturating_duration_since(Instant::now()));
        if wait.is_zero() {
            return true;
        }
        match rx.recv_timeout(wait) {
            Ok(Msg::Changed) => continue,
            Err(RecvTimeoutError::Timeout) => return true,
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// Whether an event can mean the files changed. inotify also reports opens and reads,
/// including our own, which would otherwise re-trigger a read forever.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn watch_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn lock(status: &Mutex<ReloadStatus>) -> std::sync::MutexGuard<'_, ReloadStatus> {
    // Nothing holding this lock can panic half-way through an update, so a poisoned
    // lock still holds consistent counters.
    match status.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn reloads() -> &'static IntCounterVec {
    static METRIC: OnceLock<IntCounterVec> = OnceLock::new();
    METRIC.get_or_init(|| {
        crate::metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "tls_cert_reloads_total",
                    "Certificate file reloads by result (ok, error).",
                ),
                &["result"],
            )
            // Constant name and labels: this cannot fail at run time.
            .expect("valid metric definition"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::DevCerts;
    use std::sync::mpsc::channel;

    fn leaf(ck: &CertifiedKey) -> Vec<u8> {
        ck.end_entity_cert().unwrap().to_vec()
    }

    fn der(certs: &DevCerts) -> Vec<u8> {
        leaf(&certs.certified_key().unwrap())
    }

    #[test]
    fn initial_load_failure_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let res = CertReloader::start_with(
            dir.path().join("tls.crt"),
            dir.path().join("tls.key"),
            ReloadOptions::default(),
            |_| {},
        );
        assert!(matches!(res, Err(TlsError::Io { .. })), "{res:?}");
    }

    #[test]
    fn reloads_on_change_and_keeps_last_good_on_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let a = DevCerts::generate_for_names(&["a.test".into()]).unwrap();
        let b = DevCerts::generate_for_names(&["b.test".into()]).unwrap();
        a.write_to(dir.path()).unwrap();
        let (loaded_tx, loaded_rx) = channel();
        let opts = ReloadOptions {
            debounce: Duration::from_millis(50),
            ..ReloadOptions::default()
        };
        let reloader = CertReloader::start_with(
            dir.path().join("tls.crt"),
            dir.path().join("tls.key"),
            opts,
            move |ck| {
                let _ = loaded_tx.send(leaf(&ck));
            },
        )
        .unwrap();
        assert_eq!(loaded_rx.recv().unwrap(), der(&a));

        fs::write(dir.path().join("tls.key"), b"not a key").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while reloader.status().failed == 0 {
            assert!(Instant::now() < deadline, "failure never recorded");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(loaded_rx.try_recv().is_err(), "a broken pair was loaded");
        assert!(reloader.status().last_error.is_some());

        b.write_to(dir.path()).unwrap();
        let got = loaded_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got, der(&b));
        // The three files are written one after another (each truncated, then filled), so
        // the watcher may see a half-written file and reload more than once; what matters
        // is that b ends up in force with no error standing.
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            let status = reloader.status();
            if status.last_error.is_none() || Instant::now() > deadline {
                break status;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.loaded >= 2, "{status:?}");
        assert_eq!(status.last_error, None);
        while let Ok(later) = loaded_rx.try_recv() {
            assert_eq!(later, der(&b), "something other than b was loaded");
        }
    }
}
