//! The Kubernetes source: one cluster-wide watch per kind (IngressClass, Ingress, Service,
//! EndpointSlice, Secrets, optionally v1 Endpoints), plus one watch by name per ConfigMap an
//! Ingress names (`configmaps`), feeding the `ObjectStore`, and the
//! driver that recompiles and publishes a snapshot when they change, exactly as the
//! manifests driver does (`ingress::config::Publisher`).
//!
//! Failure behaviour: nothing here ends on an API error; the watches retry with backoff
//! (see `watch`). Until every watch has completed its first list nothing is published and
//! `ready()` stays false, so a new replica never serves a partial route table. After a
//! relist (a 410 Gone, a lost watch) the kind's objects are replaced by the listed ones, so
//! deletions missed meanwhile take effect. If a compile task dies the configuration freezes
//! at the last snapshot and an error is logged.
mod configmaps;
mod secrets;
mod trim;
mod watch;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use prometheus::{IntGaugeVec, Opts};
use tokio::sync::{mpsc, watch as signal};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::configmaps::ConfigMaps;
use self::secrets::{Keeper, Wanted};
pub use self::trim::LAST_APPLIED;
pub use self::watch::{Change, Fetch, Watched};
use super::store::{Kind, Object, ObjectStore};
use crate::ingress::compile::{CompileOptions, compile};
use crate::ingress::config::{ConfigHandle, Publisher};

/// Rebuilds are at least this far apart: the first change after a quiet spell is compiled
/// at once, a burst (a rollout moving many slices) is coalesced into one rebuild per
/// interval.
pub const MIN_REBUILD_INTERVAL: Duration = Duration::from_millis(25);
/// Changes queued between the watches and the driver; a full queue holds the watches back
/// (their events wait in the socket) instead of growing memory.
const CHANGE_QUEUE: usize = 1024;

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

/// The store origin of a kind's watched objects (problems name it as their source).
pub fn origin(kind: Kind) -> &'static str {
    match kind {
        Kind::IngressClass => "kubernetes:ingressclasses",
        Kind::Ingress => "kubernetes:ingresses",
        Kind::Service => "kubernetes:services",
        Kind::EndpointSlice => "kubernetes:endpointslices",
        Kind::Endpoints => "kubernetes:endpoints",
        Kind::Secret => "kubernetes:secrets",
        Kind::ConfigMap => "kubernetes:configmaps",
    }
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
    let (tx, rx) = mpsc::channel(CHANGE_QUEUE);
    let wanted = Wanted::default();
    let keeper = Keeper::new(
        wanted.clone(),
        &opts,
        client.clone(),
        tx.clone(),
        origin(Kind::Secret),
    );
    let config_maps = ConfigMaps::new(&opts, client.clone(), tx.clone(), origin(Kind::ConfigMap));
    let (publisher, generations) = Publisher::new(handle.clone(), opts);
    let (ready_tx, ready) = signal::channel(false);

    let mut kinds = BTreeSet::new();
    let mut tasks = Vec::new();
    let mut spawn = |kind: Kind, task: JoinHandle<()>| {
        kinds.insert(kind);
        tasks.push(task);
    };
    spawn(
        Kind::IngressClass,
        runtime.spawn(watch::run::<IngressClass>(
            client.clone(),
            tx.clone(),
            wanted.clone(),
        )),
    );
    spawn(
        Kind::Ingress,
        runtime.spawn(watch::run::<Ingress>(
            client.clone(),
            tx.clone(),
            wanted.clone(),
        )),
    );
    spawn(
        Kind::Service,
        runtime.spawn(watch::run::<Service>(
            client.clone(),
            tx.clone(),
            wanted.clone(),
        )),
    );
    spawn(
        Kind::EndpointSlice,
        runtime.spawn(watch::run::<EndpointSlice>(
            client.clone(),
            tx.clone(),
            wanted.clone(),
        )),
    );
    spawn(
        Kind::Secret,
        runtime.spawn(watch::run::<Secret>(
            client.clone(),
            tx.clone(),
            wanted.clone(),
        )),
    );
    if kube.endpoints {
        spawn(
            Kind::Endpoints,
            runtime.spawn(watch::run::<Endpoints>(client, tx, wanted)),
        );
    }
    let held = Arc::new(ArcSwap::from_pointee(HeldObjects::default()));
    let driver = Driver {
        changes: rx,
        publisher,
        ready: ready_tx,
        unlisted: kinds,
        min_interval: kube.min_rebuild_interval,
        held: held.clone(),
        keeper,
        config_maps,
        refs_stale: false,
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
    changes: mpsc::Receiver<Change>,
    publisher: Publisher,
    ready: signal::Sender<bool>,
    /// Kinds whose first list has not completed yet.
    unlisted: BTreeSet<Kind>,
    min_interval: Duration,
    held: Arc<ArcSwap<HeldObjects>>,
    /// The non-TLS Secrets held: those the Ingresses name.
    keeper: Keeper,
    /// The ConfigMaps held: those the Ingresses name.
    config_maps: ConfigMaps,
    /// Ingresses changed since the named Secrets were last recomputed.
    refs_stale: bool,
}

impl Driver {
    async fn run(mut self) {
        let mut store = ObjectStore::new();
        let mut last_rebuild: Option<Instant> = None;
        while let Some(change) = self.changes.recv().await {
            let mut dirty = self.apply(&mut store, change);
            dirty |= self.drain(&mut store);
            // The first snapshot waits for the named Secrets and ConfigMaps too, or an
            // Ingress with auth would refuse everyone until the next rebuild.
            let first = !*self.ready.borrow();
            let fetching = self.keeper.fetching() || self.config_maps.fetching();
            if !self.unlisted.is_empty() || (first && fetching) {
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
                self.drain(&mut store);
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

    /// Applies whatever is already queued; true if any of it changed the store.
    fn drain(&mut self, store: &mut ObjectStore) -> bool {
        let mut dirty = false;
        while let Ok(change) = self.changes.try_recv() {
            dirty |= self.apply(store, change);
        }
        if std::mem::take(&mut self.refs_stale) {
            dirty |= self.keeper.refresh(store);
            dirty |= self.config_maps.refresh(store);
        }
        dirty
    }

    /// Applies one change; false when it changed nothing compile could see.
    fn apply(&mut self, store: &mut ObjectStore, change: Change) -> bool {
        match change {
            Change::Apply(Object::Secret(secret)) => return self.keeper.apply(store, secret),
            Change::Apply(object) => {
                let origin = origin(object.kind());
                self.refs_stale |= matches!(object.kind(), Kind::Ingress | Kind::IngressClass);
                if store.holds(origin, &object) {
                    return false;
                }
                store.insert(origin, object);
            }
            Change::Delete(kind, key) => {
                self.refs_stale |= matches!(kind, Kind::Ingress | Kind::IngressClass);
                if kind == Kind::Secret {
                    self.keeper.deleted(&key);
                }
                store.remove(origin(kind), kind, &key);
            }
            Change::Relisted(kind, objects) => {
                self.unlisted.remove(&kind);
                self.refs_stale |= matches!(kind, Kind::Ingress | Kind::IngressClass);
                let objects = match kind {
                    Kind::Secret => self.keeper.relisted(store, objects),
                    _ => objects,
                };
                store.replace_origin(origin(kind), objects, Vec::new());
            }
            Change::Fetched { key, seq, result } => {
                return self.keeper.fetched(store, &key, seq, result);
            }
            Change::ConfigMap { key, seq, seen } => {
                return self.config_maps.seen(store, &key, seq, seen);
            }
        }
        true
    }
}

/// The kube source compiles its store as it stands.
fn whole(store: &mut ObjectStore) -> Result<Option<&mut ObjectStore>, Infallible> {
    Ok(Some(store))
}

fn set_object_gauges(store: &ObjectStore) {
    static GAUGE: OnceLock<Option<IntGaugeVec>> = OnceLock::new();
    let gauge = GAUGE.get_or_init(|| {
        let g = IntGaugeVec::new(
            Opts::new(
                "kube_objects",
                "Objects held from the Kubernetes watches, by kind (after trimming).",
            ),
            &["kind"],
        )
        .ok()?;
        Some(crate::metrics::register(g))
    });
    if let Some(gauge) = gauge {
        for (kind, n) in store.counts() {
            gauge
                .with_label_values(&[kind.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
