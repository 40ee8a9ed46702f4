//! The ConfigMaps the kube source holds: only those the Ingresses of our class name
//! (`auth-proxy-set-headers`, see `ingress::build::secret_refs`). ConfigMaps are never watched
//! cluster-wide (a cluster has many, and some are large): each named one gets its own
//! watch, limited by a `metadata.name=` field selector in its namespace, so it is read
//! once when first named (the watch's list, a GET in effect) and followed afterwards.
//! When the Ingresses change, [`ConfigMaps::refresh`] recomputes the set: watches of
//! ConfigMaps no longer named stop and their objects leave the store.
//!
//! Each watch carries a number; a report is used only from the current watch of its key,
//! so one stopped and restarted never lets a late report of the old one through.
//!
//! Failure behaviour: a watch retries with backoff (0.8 s doubling to 30 s) for as long as
//! the ConfigMap stays named; an error keeps what is held (and ends the first snapshot's
//! wait for it: compile then reports the ConfigMap missing and its routes refuse
//! requests). Memory is bounded by the named ConfigMaps: one watch task each.
use std::collections::{BTreeSet, HashMap};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::trim;
use super::watch::Change;
use crate::ingress::build::class::ClassSelector;
use crate::ingress::build::compile::CompileOptions;
use crate::ingress::build::secret_refs::referenced_config_maps;
use crate::source::store::{Kind, Object, ObjectStore};

/// What the watch of one named ConfigMap saw.
// Moved once, like `Change`; boxing would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Seen {
    Found(ConfigMap),
    /// It does not exist (listed empty, or deleted).
    Missing,
    /// The API failed; the watch retries, what is held stays.
    Failed,
}

/// The driver's side: which ConfigMaps are named, and their watches.
pub struct ConfigMaps {
    controller: String,
    watch_without_class: bool,
    client: Client,
    changes: mpsc::Sender<Change>,
    origin: &'static str,
    /// Key → number and task of its watch.
    watching: HashMap<String, (u64, AbortHandle)>,
    /// Named ConfigMaps whose watch has not reported yet (the first snapshot waits).
    unlisted: BTreeSet<String>,
    next: u64,
}

impl Drop for ConfigMaps {
    fn drop(&mut self) {
        for (_, task) in self.watching.values() {
            task.abort();
        }
    }
}

impl ConfigMaps {
    pub fn new(
        opts: &CompileOptions,
        client: Client,
        changes: mpsc::Sender<Change>,
        origin: &'static str,
    ) -> Self {
        ConfigMaps {
            controller: opts.controller.clone(),
            watch_without_class: opts.watch_without_class,
            client,
            changes,
            origin,
            watching: HashMap::new(),
            unlisted: BTreeSet::new(),
            next: 0,
        }
    }

    /// Named ConfigMaps not read yet.
    pub fn fetching(&self) -> bool {
        !self.unlisted.is_empty()
    }

    /// Recomputes the named ConfigMaps from the stored Ingresses we serve; true if the
    /// store changed.
    pub fn refresh(&mut self, store: &mut ObjectStore) -> bool {
        let ours = ClassSelector::new(store, &self.controller, self.watch_without_class);
        let now: BTreeSet<String> = store
            .ingresses()
            .filter(|(_, _, ingress)| ours.serves(ingress))
            .flat_map(|(_, _, ingress)| referenced_config_maps(ingress))
            .collect();
        let gone: Vec<String> = self
            .watching
            .keys()
            .filter(|k| !now.contains(*k))
            .cloned()
            .collect();
        let mut changed = false;
        for key in gone {
            if let Some((_, task)) = self.watching.remove(&key) {
                task.abort();
            }
            self.unlisted.remove(&key);
            if store.config_map_by_key(&key).is_some() {
                store.remove(self.origin, Kind::ConfigMap, &key);
                changed = true;
            }
        }
        for key in now {
            if !self.watching.contains_key(&key) {
                self.follow(key);
            }
        }
        changed
    }

    /// A report of the watch numbered `seq`; true if the store changed.
    pub fn seen(&mut self, store: &mut ObjectStore, key: &str, seq: u64, seen: Seen) -> bool {
        if self
            .watching
            .get(key)
            .is_none_or(|(current, _)| *current != seq)
        {
            return false;
        }
        self.unlisted.remove(key);
        match seen {
            Seen::Found(mut cm) => {
                trim::config_map(&mut cm);
                let object = Object::ConfigMap(cm);
                if store.holds(self.origin, &object) {
                    return false;
                }
                store.insert(self.origin, object);
                true
            }
            Seen::Missing => {
                if store.config_map_by_key(key).is_none() {
                    return false;
                }
                store.remove(self.origin, Kind::ConfigMap, key);
                true
            }
            Seen::Failed => false,
        }
    }

    fn follow(&mut self, key: String) {
        let Some((namespace, name)) = key.split_once('/') else {
            return;
        };
        self.next += 1;
        let seq = self.next;
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let task = tokio::spawn(watch_one(
            api,
            name.to_string(),
            key.clone(),
            seq,
            self.changes.clone(),
        ));
        self.unlisted.insert(key.clone());
        self.watching.insert(key, (seq, task.abort_handle()));
    }
}

/// Watches one ConfigMap by name and reports what it sees until the driver stops it.
async fn watch_one(
    api: Api<ConfigMap>,
    name: String,
    key: String,
    seq: u64,
    out: mpsc::Sender<Change>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watch_stream(api, config).default_backoff().boxed();
    let mut listed: Option<ConfigMap> = None;
    while let Some(item) = stream.next().await {
        let seen = match item {
            Err(e) => {
                tracing::warn!(configmap = %key, error = %e, "watching a ConfigMap an Ingress names failed; retrying");
                Seen::Failed
            }
            Ok(Event::Init) => {
                listed = None;
                continue;
            }
            Ok(Event::InitApply(cm)) => {
                listed = Some(cm);
                continue;
            }
            Ok(Event::InitDone) => match listed.take() {
                Some(cm) => Seen::Found(cm),
                None => Seen::Missing,
            },
            Ok(Event::Apply(cm)) => Seen::Found(cm),
            Ok(Event::Delete(_)) => Seen::Missing,
        };
        let change = Change::ConfigMap {
            key: key.clone(),
            seq,
            seen,
        };
        if out.send(change).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORIGIN: &str = "kubernetes:configmaps";

    fn cm(tenant: &str) -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": "hdrs", "namespace": "ns", "resourceVersion": "7"},
            "data": {"X-Tenant": tenant}, "binaryData": {"blob": "YQ=="}
        }))
        .unwrap()
    }

    fn held(store: &ObjectStore) -> Option<String> {
        let cm = store.config_map_by_key("ns/hdrs")?;
        assert!(cm.binary_data.is_none() && cm.metadata.resource_version.is_none());
        cm.data.as_ref()?.get("X-Tenant").cloned()
    }

    #[tokio::test]
    async fn only_the_current_watch_counts() {
        // The client builds a TLS connector; run alone (nextest), no other test has
        // installed the process's crypto provider yet.
        crate::tls::install_provider();
        // Nothing listens there: the watch tasks retry until they are stopped.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let (tx, _rx) = mpsc::channel(8);
        let opts = CompileOptions {
            watch_without_class: true,
            ..CompileOptions::default()
        };
        let mut cms = ConfigMaps::new(&opts, client, tx, ORIGIN);
        let mut store = ObjectStore::new();
        let ingress = |annotations: serde_json::Value| {
            Object::from_value(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "web", "namespace": "ns", "annotations": annotations},
                "spec": {}
            }))
            .unwrap()
            .unwrap()
        };
        let named = json!({"nginx.ingress.kubernetes.io/auth-proxy-set-headers": "hdrs"});
        store.insert("kubernetes:ingresses", ingress(named.clone()));
        assert!(!cms.refresh(&mut store));
        assert!(cms.fetching(), "the first snapshot waits for it");
        let first = cms.watching["ns/hdrs"].0;
        assert!(cms.seen(&mut store, "ns/hdrs", first, Seen::Found(cm("blue"))));
        assert!(!cms.fetching());
        assert_eq!(held(&store).as_deref(), Some("blue"));
        assert!(!cms.seen(&mut store, "ns/hdrs", first, Seen::Found(cm("blue"))));

        // Unnamed: dropped, and a late report of its watch is ignored.
        store.insert("kubernetes:ingresses", ingress(json!({})));
        assert!(cms.refresh(&mut store));
        assert_eq!(held(&store), None);
        assert!(!cms.seen(&mut store, "ns/hdrs", first, Seen::Found(cm("red"))));
        assert_eq!(held(&store), None);

        // Named again: a new watch, and only its reports count.
        store.insert("kubernetes:ingresses", ingress(named));
        cms.refresh(&mut store);
        let second = cms.watching["ns/hdrs"].0;
        assert!(second > first);
        assert!(!cms.seen(&mut store, "ns/hdrs", first, Seen::Found(cm("red"))));
        assert!(!cms.seen(&mut store, "ns/hdrs", second, Seen::Failed));
        assert!(!cms.fetching(), "an error ends the wait");
        assert!(cms.seen(&mut store, "ns/hdrs", second, Seen::Found(cm("green"))));
        assert!(cms.seen(&mut store, "ns/hdrs", second, Seen::Missing));
        assert_eq!(held(&store), None);
    }
}
