//! The manifests-directory driver: keeps the snapshot in step with a directory: watch →
//! debounce → rescan changed files → compile → swap.
//!
//! Failure behaviour: an unreadable directory at start is an error; later it only counts a
//! failed reload and keeps the current snapshot.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::ConfigHandle;
use super::publish::{Publisher, metrics, report};
use crate::ingress::build::compile::{CompileOptions, compile};
use crate::source::ObjectStore;
use crate::source::files::{DEBOUNCE, FileSource, FilesError};

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
    changed_scans: Arc<std::sync::atomic::AtomicU64>,
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

    /// Grows with every rescan that found a manifest file changed (see
    /// `FileSource::changed_scans`).
    pub fn changed_scans(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.changed_scans.clone()
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
    let changed_scans = source.changed_scans();
    // Watch before the first scan so nothing written in between is missed.
    let (watcher, mut events) = source.watch()?;
    let mut store = ObjectStore::new();
    let started = Instant::now();
    source.scan(&mut store)?;
    // The first compile covers everything scanned so far.
    store.take_changes();
    let first = compile(&store, &opts, None);
    report(&first, &[], started);
    let handle = ConfigHandle::new(first);

    let (publisher, generations) = Publisher::new(handle.clone(), opts);
    let task = runtime.spawn(async move {
        // Owned by the task: dropping the watcher would end the events.
        let _watcher = watcher;
        let mut state = (source, store);
        while events.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while events.try_recv().is_ok() {}
            let Some((next, outcome)) = publisher.rebuild(state, rescan).await else {
                tracing::error!("manifests reload task failed; configuration is frozen");
                break;
            };
            state = next;
            if let Err(e) = outcome {
                if let Some(m) = metrics() {
                    m.reloads.with_label_values(&["error"]).inc();
                }
                tracing::warn!(error = %e, "manifests reload failed; current configuration kept");
            }
        }
    });
    Ok(FilesDriver {
        handle,
        generations,
        changed_scans,
        task,
    })
}

/// Rescans the directory; the store is worth compiling only if some file changed.
fn rescan(
    (source, store): &mut (FileSource, ObjectStore),
) -> Result<Option<&mut ObjectStore>, FilesError> {
    Ok(source.scan(store)?.then_some(store))
}
