//! The Kubernetes source: one cluster-wide watch per kind (IngressClass, Ingress, Service,
//! EndpointSlice, Secrets, optionally v1 Endpoints), plus one watch by name per ConfigMap an
//! Ingress names (`configmaps`), feeding the `ObjectStore` through [`Watches`]. The driver
//! that recompiles and publishes a snapshot when they change is `reload::kube`.
//!
//! Failure behaviour: nothing here ends on an API error; the watches retry with backoff
//! (see `watch`). After a relist (a 410 Gone, a lost watch) the kind's objects are
//! replaced by the listed ones, so deletions missed meanwhile take effect.
mod configmaps;
mod secrets;
mod trim;
mod watch;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use prometheus::{IntGaugeVec, Opts};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::configmaps::ConfigMaps;
use self::secrets::{Keeper, Wanted};
pub use self::trim::LAST_APPLIED;
pub use self::watch::Change;
use super::store::{Kind, Object, ObjectStore};
use crate::ingress::build::compile::CompileOptions;

/// Changes queued between the watches and the driver; a full queue holds the watches back
/// (their events wait in the socket) instead of growing memory.
const CHANGE_QUEUE: usize = 1024;

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

/// The running watches of one source and what the driver keeps beside the store for them:
/// which kinds have not listed yet, and the Secrets and ConfigMaps the Ingresses name.
pub(crate) struct Watches {
    changes: mpsc::Receiver<Change>,
    /// Kinds whose first list has not completed yet.
    unlisted: BTreeSet<Kind>,
    /// The non-TLS Secrets held: those the Ingresses name.
    keeper: Keeper,
    /// The ConfigMaps held: those the Ingresses name.
    config_maps: ConfigMaps,
    /// Ingresses changed since the named Secrets were last recomputed.
    refs_stale: bool,
}

impl Watches {
    /// Starts one watch per kind (v1 Endpoints only with `endpoints`); the tasks are the
    /// caller's to abort.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        client: kube::Client,
        opts: &CompileOptions,
        endpoints: bool,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let (tx, rx) = mpsc::channel(CHANGE_QUEUE);
        let wanted = Wanted::default();
        let keeper = Keeper::new(
            wanted.clone(),
            opts,
            client.clone(),
            tx.clone(),
            origin(Kind::Secret),
        );
        let config_maps =
            ConfigMaps::new(opts, client.clone(), tx.clone(), origin(Kind::ConfigMap));

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
        if endpoints {
            spawn(
                Kind::Endpoints,
                runtime.spawn(watch::run::<Endpoints>(client, tx, wanted)),
            );
        }
        let watches = Watches {
            changes: rx,
            unlisted: kinds,
            keeper,
            config_maps,
            refs_stale: false,
        };
        (watches, tasks)
    }

    /// Waits for the next change and applies it with whatever is queued behind it; true if
    /// any of it changed the store, `None` once the queue is closed.
    pub(crate) async fn next(&mut self, store: &mut ObjectStore) -> Option<bool> {
        let change = self.changes.recv().await?;
        let mut dirty = self.apply(store, change);
        dirty |= self.drain(store);
        Some(dirty)
    }

    /// Whether every watch has completed its first list.
    pub(crate) fn listed(&self) -> bool {
        self.unlisted.is_empty()
    }

    /// Whether named Secrets or ConfigMaps are still being read.
    pub(crate) fn fetching(&self) -> bool {
        self.keeper.fetching() || self.config_maps.fetching()
    }

    /// Applies whatever is already queued; true if any of it changed the store.
    pub(crate) fn drain(&mut self, store: &mut ObjectStore) -> bool {
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

/// Sets the `kube_objects` gauge from the store.
pub(crate) fn set_object_gauges(store: &ObjectStore) {
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
