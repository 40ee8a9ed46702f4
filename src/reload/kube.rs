//! The Kubernetes driver: turns what the watches (`source::kube`) put in the store into
//! snapshot rebuilds, exactly as the manifests driver does (`Publisher`).
//!
//! Failure behaviour: until every watch has completed its first list nothing is published
//! and `ready()` stays false, so a new replica never serves a partial route table. If a
//! compile task dies the configuration freezes at the last snapshot and an error is logged.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ConfigHandle;
use super::publish::Publisher;
use crate::ingress::build::compile::{CompileOptions, compile};
use crate::source::ObjectStore;
use crate::source::kube::{Watches, set_object_gauges};

/// Rebuilds are at least this far apart: the first change after a quiet spell is compiled
/// at once, a burst (a rollout moving many slices) is coalesced into one rebuild per
/// interval.
pub const MIN_REBUILD_INTERVAL: Duration = Duration::from_millis(25);

/// How the Kubernetes source runs.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// Also watch v1 Endpoints (needs list/watch on `endpoints`). Off by default: the
    /// EndpointSlice mirroring controller copies custom Endpoints into slices, and the
    /// least-privilege ClusterRole does not grant them (a forbidden watch would keep the
    /// replica unready forever).
    pub endpoints: bool,
    /// See [`MIN_REBUILD_INTERVAL`].
    pub min_rebuild_interval: Duration,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            endpoints: false,
            min_rebuild_interval: MIN_REBUILD_INTERVAL,
        }
    }
}

/// What can stop the source from starting.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("the Kubernetes source needs a tokio runtime")]
    NoRuntime,
}

/// The watched objects a reader outside the data plane may judge (the dashboard's audit):
/// IngressClasses, Ingresses and Services as the store holds them, shared rather than
/// copied. TLS Secrets and endpoints are left out: no rule judges them usefully, and key
/// material has no business leaving the store.
#[derive(Debug, Default, Clone)]
pub struct HeldObjects {
    pub classes: Vec<Arc<IngressClass>>,
    pub ingresses: Vec<Arc<Ingress>>,
    pub services: Vec<Arc<Service>>,
    /// `namespace/name` of every Secret held (names only: their data stays in the store).
    pub secrets: Vec<String>,
}

impl HeldObjects {
    fn of(store: &ObjectStore) -> Self {
        HeldObjects {
            classes: store.ingress_classes().cloned().collect(),
            ingresses: store.ingresses().map(|(_, _, i)| i.clone()).collect(),
            services: store.services().map(|(_, s)| s.clone()).collect(),
            secrets: store.all_secret_keys().map(str::to_string).collect(),
        }
    }
}

/// A running Kubernetes source. Dropping it stops the watches; the handle keeps serving
/// the last snapshot.
#[derive(Debug)]
pub struct KubeDriver {
    handle: ConfigHandle,
    generations: signal::Receiver<u64>,
    ready: signal::Receiver<bool>,
    held: Arc<ArcSwap<HeldObjects>>,
    tasks: Vec<JoinHandle<()>>,
}

impl KubeDriver {
    pub fn handle(&self) -> ConfigHandle {
        self.handle.clone()
    }

    /// Changes whenever a new snapshot is published (value: its generation).
    pub fn subscribe(&self) -> signal::Receiver<u64> {
        self.generations.clone()
    }

    /// Turns true (once, for good) when every watch has completed its first list and the
    /// snapshot built from those lists is published.
    pub fn ready(&self) -> signal::Receiver<bool> {
        self.ready.clone()
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The objects of the last compiled store, replaced after each routing change
    /// (endpoint churn leaves them alone).
    pub fn held(&self) -> Arc<ArcSwap<HeldObjects>> {
        self.held.clone()
    }
}

impl Drop for KubeDriver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the watches and the driver. The handle serves an empty table until the first
/// lists are in. Must be called inside a tokio runtime.
pub fn start_kube(
    client: kube::Client,
    opts: CompileOptions,
    kube: KubeOptions,
) -> Result<KubeDriver, KubeError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| KubeError::NoRuntime)?;
    let handle = ConfigHandle::new(compile(&ObjectStore::new(), &opts, None));
    let (watches, mut tasks) = Watches::start(&runtime, client, &opts, kube.endpoints);
    let (publisher, generations) = Publisher::new(handle.clone(), opts);
    let (ready_tx, ready) = signal::channel(false);
    let held = Arc::new(ArcSwap::from_pointee(HeldObjects::default()));
    let driver = Driver {
        watches,
        publisher,
        ready: ready_tx,
        min_interval: kube.min_rebuild_interval,
        held: held.clone(),
    };
    tasks.push(runtime.spawn(driver.run()));
    Ok(KubeDriver {
        handle,
        generations,
        ready,
        held,
        tasks,
    })
}

struct Driver {
    watches: Watches,
    publisher: Publisher,
    ready: signal::Sender<bool>,
    min_interval: Duration,
    held: Arc<ArcSwap<HeldObjects>>,
}

impl Driver {
    async fn run(mut self) {
        let mut store = ObjectStore::new();
        let mut last_rebuild: Option<Instant> = None;
        while let Some(dirty) = self.watches.next(&mut store).await {
            // The first snapshot waits for the named Secrets and ConfigMaps too, or an
            // Ingress with auth would refuse everyone until the next rebuild.
            let first = !*self.ready.borrow();
            let fetching = self.watches.fetching();
            if !self.watches.listed() || (first && fetching) {
                continue;
            }
            if !dirty && !first {
                continue;
            }
            // Endpoint-only changes skip the compile, so they need no pacing: a rollout's
            // slices reach traffic as they arrive.
            if !store.changes().endpoints_only()
                && let Some(at) = last_rebuild
                && at + self.min_interval > Instant::now()
            {
                tokio::time::sleep_until(at + self.min_interval).await;
                self.watches.drain(&mut store);
            }
            last_rebuild = Some(Instant::now());
            let routing = !store.changes().endpoints_only();
            let Some((back, outcome)) = self.publisher.rebuild(store, whole).await else {
                tracing::error!("Kubernetes source compile task failed; configuration is frozen");
                return;
            };
            store = back;
            let Ok(_) = outcome;
            if routing {
                self.held.store(Arc::new(HeldObjects::of(&store)));
            }
            set_object_gauges(&store);
            if !*self.ready.borrow() {
                tracing::info!(objects = ?store.counts(), "every watch has listed; configuration is complete");
                self.ready.send_replace(true);
            }
        }
    }
}

/// The kube source compiles its store as it stands.
fn whole(store: &mut ObjectStore) -> Result<Option<&mut ObjectStore>, Infallible> {
    Ok(Some(store))
}
