//! Which non-TLS Secrets the kube source holds, and fetching them when an Ingress starts
//! naming one.
//!
//! The Secret watch sees every Secret in the cluster; the watch task keeps the data of a
//! non-TLS Secret only if its key is in [`Wanted`] (the Secrets the Ingresses of our class
//! name, see `ingress::build::secret_refs`), so the store holds exactly those plus TLS
//! Secrets. When the Ingresses change, [`Keeper::refresh`] recomputes the set: Secrets no
//! longer named are dropped from the store, newly named ones are read with one GET each
//! (their earlier events were stubs). A stub arriving for a named Secret (the watch trimmed it just
//! before the set grew) is fetched the same way. Each GET carries a number; an answer is
//! used only if no newer event or GET for that key came since, so a slow GET never
//! overwrites a newer version.
//!
//! Failure behaviour: a GET that fails is retried with backoff (1 s doubling to 30 s) for
//! as long as the Secret stays named; a 404 removes the Secret, a 403 keeps what is held
//! and is logged. Memory is bounded by the named Secrets: at most one GET task each.
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::trim;
use super::watch::{Change, Fetch};
use crate::ingress::build::class::ClassSelector;
use crate::ingress::build::compile::CompileOptions;
use crate::ingress::build::secret_refs::referenced_secrets;
use crate::source::store::{Kind, Object, ObjectStore, is_tls_secret};

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The `namespace/name` keys of the Secrets some Ingress names, shared by the driver
/// (which writes it) and the Secret watch (which reads it per event).
#[derive(Debug, Clone, Default)]
pub struct Wanted(Arc<ArcSwap<BTreeSet<String>>>);

impl Wanted {
    pub fn contains(&self, key: &str) -> bool {
        self.0.load().contains(key)
    }

    pub fn set(&self, keys: BTreeSet<String>) {
        self.0.store(Arc::new(keys));
    }
}

/// The driver's side: decides what the store keeps and runs the GETs.
pub struct Keeper {
    wanted: Wanted,
    /// Which Ingresses are ours: another controller's Ingresses name Secrets we never need.
    controller: String,
    watch_without_class: bool,
    client: Client,
    changes: mpsc::Sender<Change>,
    origin: &'static str,
    /// Key → number and task of the GET whose answer is awaited.
    pending: HashMap<String, (u64, AbortHandle)>,
    next: u64,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        for (_, task) in self.pending.values() {
            task.abort();
        }
    }
}

impl Keeper {
    pub fn new(
        wanted: Wanted,
        opts: &CompileOptions,
        client: Client,
        changes: mpsc::Sender<Change>,
        origin: &'static str,
    ) -> Self {
        Keeper {
            wanted,
            controller: opts.controller.clone(),
            watch_without_class: opts.watch_without_class,
            client,
            changes,
            origin,
            pending: HashMap::new(),
            next: 0,
        }
    }

    /// GETs still awaited (the first snapshot waits for them).
    pub fn fetching(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Recomputes the named Secrets from the stored Ingresses we serve; true if the store
    /// changed.
    pub fn refresh(&mut self, store: &mut ObjectStore) -> bool {
        let ours = ClassSelector::new(store, &self.controller, self.watch_without_class);
        let now: BTreeSet<String> = store
            .ingresses()
            .filter(|(_, _, ingress)| ours.serves(ingress))
            .flat_map(|(_, _, ingress)| referenced_secrets(ingress))
            .collect();
        let before = self.wanted.0.load_full();
        if *before == now {
            return false;
        }
        self.wanted.set(now.clone());
        let mut changed = false;
        for gone in before.difference(&now) {
            self.cancel(gone);
            let held = store.secret_by_key(gone).is_some_and(|s| !is_tls_secret(s));
            if held {
                store.remove(self.origin, Kind::Secret, gone);
                changed = true;
            }
        }
        for added in now.difference(&before) {
            if store.secret_by_key(added).is_none() {
                self.fetch(added);
            }
        }
        changed
    }

    /// A watched Secret (already trimmed by the watch task); true if the store changed.
    pub fn apply(&mut self, store: &mut ObjectStore, secret: Secret) -> bool {
        let object = Object::Secret(secret);
        let key = object.key();
        let Object::Secret(secret) = &object else {
            return false;
        };
        if is_tls_secret(secret) {
            self.cancel(&key);
        } else if !self.wanted.contains(&key) {
            return self.forget(store, &key);
        } else if trim::is_stub(secret) {
            self.fetch(&key);
            return false;
        } else {
            self.cancel(&key);
        }
        if store.holds(self.origin, &object) {
            return false;
        }
        store.insert(self.origin, object);
        true
    }

    /// The whole list of Secrets: what the store should hold of it. Named Secrets listed
    /// as stubs keep their held version until their GET answers.
    pub fn relisted(&mut self, store: &ObjectStore, objects: Vec<Object>) -> Vec<Object> {
        let mut keep = Vec::new();
        for object in objects {
            let Object::Secret(secret) = &object else {
                continue;
            };
            let key = object.key();
            if is_tls_secret(secret) {
                self.cancel(&key);
                keep.push(object);
            } else if !self.wanted.contains(&key) {
                self.cancel(&key);
            } else if trim::is_stub(secret) {
                self.fetch(&key);
                if let Some(held) = store.secret_by_key(&key) {
                    keep.push(Object::Secret((**held).clone()));
                }
            } else {
                self.cancel(&key);
                keep.push(object);
            }
        }
        keep
    }

    pub fn deleted(&mut self, key: &str) {
        self.cancel(key);
    }

    /// The answer of a GET; true if the store changed.
    pub fn fetched(&mut self, store: &mut ObjectStore, key: &str, seq: u64, result: Fetch) -> bool {
        match self.pending.get(key) {
            Some((current, _)) if *current == seq => {
                self.pending.remove(key);
            }
            _ => return false,
        }
        if !self.wanted.contains(key) {
            return false;
        }
        match result {
            Fetch::Found(mut secret) => {
                if is_tls_secret(&secret) {
                    trim::secret(&mut secret);
                } else {
                    trim::referenced_secret(&mut secret);
                }
                let object = Object::Secret(secret);
                if store.holds(self.origin, &object) {
                    return false;
                }
                store.insert(self.origin, object);
                true
            }
            Fetch::Missing => self.forget(store, key),
            Fetch::Refused => false,
        }
    }

    fn forget(&mut self, store: &mut ObjectStore, key: &str) -> bool {
        self.cancel(key);
        if store.secret_by_key(key).is_none() {
            return false;
        }
        store.remove(self.origin, Kind::Secret, key);
        true
    }

    fn cancel(&mut self, key: &str) {
        if let Some((_, task)) = self.pending.remove(key) {
            task.abort();
        }
    }

    fn fetch(&mut self, key: &str) {
        let Some((namespace, name)) = key.split_once('/') else {
            return;
        };
        self.cancel(key);
        self.next += 1;
        let seq = self.next;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let task = tokio::spawn(get(
            api,
            name.to_string(),
            key.to_string(),
            seq,
            self.changes.clone(),
        ));
        self.pending
            .insert(key.to_string(), (seq, task.abort_handle()));
    }
}

/// Reads one Secret until the API answers for good, then reports it to the driver.
async fn get(api: Api<Secret>, name: String, key: String, seq: u64, out: mpsc::Sender<Change>) {
    let mut wait = RETRY_FIRST;
    let result = loop {
        match api.get_opt(&name).await {
            Ok(Some(secret)) => break Fetch::Found(secret),
            Ok(None) => break Fetch::Missing,
            Err(kube::Error::Api(status)) if status.code == 403 => {
                tracing::error!(secret = %key, "reading a Secret an Ingress names is forbidden");
                break Fetch::Refused;
            }
            Err(e) => {
                tracing::warn!(secret = %key, error = %e, "reading a Secret failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    };
    let _ = out.send(Change::Fetched { key, seq, result }).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORIGIN: &str = "kubernetes:secrets";

    fn secret(data: Option<&str>) -> Secret {
        let mut v = json!({
            "metadata": {"name": "users", "namespace": "ns"}, "type": "Opaque"
        });
        if let Some(d) = data {
            v["data"] = json!({"auth": d});
        }
        serde_json::from_value(v).unwrap()
    }

    fn held(store: &ObjectStore) -> Option<String> {
        let data = store.secret_data("ns", "users")?;
        Some(String::from_utf8_lossy(data.get("auth")?).into_owned())
    }

    fn seq(keeper: &Keeper) -> u64 {
        keeper.pending.get("ns/users").map(|(s, _)| *s).unwrap()
    }

    #[tokio::test]
    async fn only_the_newest_answer_counts() {
        // The client builds a TLS connector; run alone (nextest), no other test has
        // installed the process's crypto provider yet.
        crate::tls::install_provider();
        // Nothing listens there: the GET tasks retry until the keeper drops them.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let (tx, _rx) = mpsc::channel(8);
        let opts = CompileOptions {
            watch_without_class: true,
            ..CompileOptions::default()
        };
        let mut keeper = Keeper::new(Wanted::default(), &opts, client, tx, ORIGIN);
        let mut store = ObjectStore::new();
        let ingress = |name: &str, class: &str| {
            Object::from_value(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": name, "namespace": "ns", "annotations": {
                    "nginx.ingress.kubernetes.io/auth-secret": "users"}},
                "spec": (if class.is_empty() { json!({}) } else { json!({"ingressClassName": class}) })
            }))
            .unwrap()
            .unwrap()
        };
        // Another controller's Ingress names nothing we keep.
        store.insert("kubernetes:ingresses", ingress("theirs", "nginx"));
        assert!(!keeper.refresh(&mut store));
        assert!(!keeper.fetching());
        store.insert("kubernetes:ingresses", ingress("web", ""));

        // Newly named and not held: read by GET.
        assert!(!keeper.refresh(&mut store));
        assert!(keeper.fetching());
        let first = seq(&keeper);
        // A stub from the watch (trimmed before the set grew) asks again.
        assert!(!keeper.apply(&mut store, secret(None)));
        let second = seq(&keeper);
        assert!(second > first);
        let found = |d: &str| Fetch::Found(secret(Some(d)));
        assert!(!keeper.fetched(&mut store, "ns/users", first, found("b2xk")));
        assert_eq!(held(&store), None, "the overtaken answer is ignored");
        assert!(keeper.fetched(&mut store, "ns/users", second, found("bmV3")));
        assert_eq!(held(&store).as_deref(), Some("new"));
        assert!(!keeper.fetching());

        // A full watch event supersedes a GET in flight.
        keeper.apply(&mut store, secret(None));
        let third = seq(&keeper);
        assert!(keeper.apply(&mut store, secret(Some("bmV3ZXI="))));
        assert!(!keeper.fetched(&mut store, "ns/users", third, found("b2xk")));
        assert_eq!(held(&store).as_deref(), Some("newer"));

        // A 404 removes it; the Ingress going drops it too.
        keeper.apply(&mut store, secret(None));
        assert!(keeper.fetched(&mut store, "ns/users", seq(&keeper), Fetch::Missing));
        assert_eq!(held(&store), None);
        assert!(keeper.apply(&mut store, secret(Some("eA=="))));
        store.remove("kubernetes:ingresses", Kind::Ingress, "ns/web");
        assert!(keeper.refresh(&mut store));
        assert!(store.secret_by_key("ns/users").is_none());
        // Unnamed now: a full event is not stored.
        assert!(!keeper.apply(&mut store, secret(Some("eA=="))));
        assert!(store.secret_by_key("ns/users").is_none());
    }
}
