//! The reload driver: the current `Snapshot` behind an `ArcSwap` (`ConfigHandle`), and the
//! task that keeps it in step with a manifests directory: watch → debounce → rescan changed
//! files → compile → swap. Readers never wait; a request keeps the snapshot it loaded.
//!
//! Failure behaviour: an unreadable directory at start is an error; later it only counts a
//! failed reload and keeps the current snapshot. Problems in files or objects are logged
//! once each (when they first appear), exported as a gauge, and never stop a reload.
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio::sync::watch;

use super::compile::{CompileOptions, compile};
use super::problem::Problem;
use super::snapshot::Snapshot;
use crate::source::ObjectStore;
use crate::source::files::{DEBOUNCE, FileSource, FilesError};

/// Shared read access to the current snapshot.
#[derive(Debug, Clone, Default)]
pub struct ConfigHandle(Arc<ArcSwap<Snapshot>>);

impl ConfigHandle {
    pub fn new(snapshot: Snapshot) -> Self {
        ConfigHandle(Arc::new(ArcSwap::from_pointee(snapshot)))
    }

    /// The current snapshot, for one request (cheap, lock-free).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.0.load()
    }

    /// The current snapshot as an owned `Arc`, for long-lived holders.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }

    /// The shared cell itself, for the gateway, which loads it per request.
    pub fn shared(&self) -> Arc<ArcSwap<Snapshot>> {
        self.0.clone()
    }

    /// Publishes a new snapshot.
    pub fn store(&self, snapshot: Arc<Snapshot>) {
        self.0.store(snapshot);
    }
}

/// What can stop the driver from starting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("the manifests watcher needs a tokio runtime")]
    NoRuntime,
}

/// A running manifests-directory driver. Dropping it stops the watch; the handle keeps
/// serving the last snapshot.
#[derive(Debug)]
pub struct FilesDriver {
    handle: ConfigHandle,
    generations: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl FilesDriver {
    pub fn handle(&self) -> ConfigHandle {
        self.handle.clone()
    }

    /// Changes whenever a new snapshot is published (value: its generation).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generations.clone()
    }
}

impl Drop for FilesDriver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Loads `dir`, publishes the first snapshot, and keeps it current from then on. Must be
/// called inside a tokio runtime.
pub fn start_files(
    dir: impl Into<PathBuf>,
    opts: CompileOptions,
) -> Result<FilesDriver, ConfigError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
    let mut source = FileSource::new(dir);
    // Watch before the first scan so nothing written in between is missed.
    let (watcher, mut events) = source.watch()?;
    let mut store = ObjectStore::new();
    let started = Instant::now();
    source.scan(&mut store)?;
    let first = compile(&store, &opts, None);
    report(&first, &[], started);
    let handle = ConfigHandle::new(first);
    let (tx, generations) = watch::channel(handle.load().generation);

    let reader = handle.clone();
    let task = runtime.spawn(async move {
        // Owned by the task: dropping the watcher would end the events.
        let _watcher = watcher;
        let mut state = Some((source, store));
        while events.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while events.try_recv().is_ok() {}
            let Some((mut source, mut store)) = state.take() else {
                break;
            };
            let previous = reader.load_full();
            let opts = opts.clone();
            // Parsing and compiling are CPU work; keep them off the async workers.
            let joined = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let outcome = match source.scan(&mut store) {
                    Ok(true) => Ok(Some(compile(&store, &opts, Some(&previous)))),
                    Ok(false) => Ok(None),
                    Err(e) => Err(e),
                };
                (source, store, outcome, previous, started)
            })
            .await;
            let Ok((source, store, outcome, previous, started)) = joined else {
                tracing::error!("manifests reload task failed; configuration is frozen");
                break;
            };
            state = Some((source, store));
            match outcome {
                Ok(Some(snapshot)) => {
                    report(&snapshot, &previous.problems, started);
                    let generation = snapshot.generation;
                    reader.store(Arc::new(snapshot));
                    let _ = tx.send(generation);
                }
                Ok(None) => {}
                Err(e) => {
                    if let Some(m) = metrics() {
                        m.reloads.with_label_values(&["error"]).inc();
                    }
                    tracing::warn!(error = %e, "manifests reload failed; current configuration kept");
                }
            }
        }
    });
    Ok(FilesDriver {
        handle,
        generations,
        task,
    })
}

struct Metrics {
    reloads: IntCounterVec,
    problems: IntGauge,
}

/// The reload metrics; `None` only if their (constant) definitions were refused.
fn metrics() -> Option<&'static Metrics> {
    static METRICS: OnceLock<Option<Metrics>> = OnceLock::new();
    METRICS
        .get_or_init(|| {
            let reloads = IntCounterVec::new(
                Opts::new(
                    "config_reloads_total",
                    "Configuration rebuilds by result: ok, problems (built, with problems), \
                     error (source unreadable, nothing changed).",
                ),
                &["result"],
            )
            .ok()?;
            let problems = IntGauge::new(
                "config_problems",
                "Problems in the configuration currently served.",
            )
            .ok()?;
            Some(Metrics {
                reloads: crate::metrics::register(reloads),
                problems: crate::metrics::register(problems),
            })
        })
        .as_ref()
}

/// Counts the reload, sets the gauge and logs each problem that is new since `before`.
fn report(snapshot: &Snapshot, before: &[Problem], started: Instant) {
    if let Some(m) = metrics() {
        let result = if snapshot.problems.is_empty() {
            "ok"
        } else {
            "problems"
        };
        m.reloads.with_label_values(&[result]).inc();
        m.problems.set(snapshot.problems.len() as i64);
    }
    let known: HashSet<String> = before.iter().map(Problem::to_string).collect();
    for p in snapshot
        .problems
        .iter()
        .filter(|p| !known.contains(&p.to_string()))
    {
        tracing::warn!(
            file = p.file.as_deref().unwrap_or("-"),
            object = p.object.as_deref().unwrap_or("-"),
            "{}",
            p.message
        );
    }
    tracing::info!(
        generation = snapshot.generation,
        routes = snapshot.router.len(),
        problems = snapshot.problems.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "ingress configuration loaded"
    );
}
