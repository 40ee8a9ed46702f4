//! Configuration reload: the snapshot in force (`ConfigHandle`) and the two drivers that
//! keep it current, one per source (a manifests directory, the Kubernetes API). Both turn
//! their store's changes into a new snapshot through the same `Publisher`. Readers never
//! wait; a request keeps the snapshot it loaded.
mod files;
mod kube;
mod publish;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use self::files::{ConfigError, FilesDriver, start_files};
pub use self::kube::{
    HeldObjects, KubeDriver, KubeError, KubeOptions, MIN_REBUILD_INTERVAL, start_kube,
};
use crate::ingress::model::snapshot::Snapshot;

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
