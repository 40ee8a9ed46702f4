//! The status publisher: while this replica leads, every Ingress the current snapshot
//! serves gets `status.loadBalancer.ingress` = the published addresses, and every Ingress
//! it published before but no longer serves gets its status cleared. It re-runs on every
//! new snapshot, on gaining leadership, and every `resync` (re-reading all Ingress
//! statuses) to repair drift.
//!
//! Failure behaviour: a failed read or write is logged, counted and retried after `retry`;
//! nothing here is fatal. A status somebody else changed after we published it (another
//! controller took the Ingress over) is left alone rather than cleared.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tokio::sync::watch;
use tokio::time::Instant;

use super::address::{self, Address};
use super::metrics;
use crate::reload::ConfigHandle;

/// Where the published addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressSource {
    /// The load-balancer status of this Service (`--publish-service NS/NAME`), read each cycle.
    Service { namespace: String, name: String },
    /// Fixed addresses (`--publish-status-address`).
    Static(Vec<Address>),
}

#[derive(Debug, Clone)]
pub struct PublisherOptions {
    pub source: AddressSource,
    /// How often all Ingress statuses are re-read and repaired.
    pub resync: Duration,
    /// Delay before retrying after a failure.
    pub retry: Duration,
    /// Least time between two cycles, so a burst of snapshots costs one cycle.
    pub min_interval: Duration,
    /// Bound on each API request.
    pub request_timeout: Duration,
}

impl PublisherOptions {
    pub fn new(source: AddressSource) -> Self {
        PublisherOptions {
            source,
            resync: Duration::from_secs(60),
            retry: Duration::from_secs(5),
            min_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// One status write: `addresses` empty means clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// `namespace/name`.
    pub key: String,
    pub addresses: Vec<Address>,
}

/// What the publisher knows between cycles: the status each Ingress it cares about had
/// when last read or written, and what it published on which Ingress. Pure bookkeeping.
#[derive(Debug, Default)]
pub struct Book {
    observed: HashMap<String, Vec<Address>>,
    published: HashMap<String, Vec<Address>>,
}

impl Book {
    /// The writes that bring statuses to the desired state: served Ingresses whose status
    /// is not `desired` (or unknown) get `desired`; Ingresses we published on that are no
    /// longer served are cleared, unless their status is no longer what we wrote.
    /// Forgets what needs no further attention.
    pub fn plan(&mut self, served: &[Arc<str>], desired: &[Address]) -> Vec<Write> {
        let serving: HashSet<&str> = served.iter().map(|k| &**k).collect();
        let mut writes = Vec::new();
        for key in served {
            match self.observed.get(&**key) {
                Some(now) if now == desired => {
                    // Already right (perhaps written by a previous leader): ours from now on.
                    if !desired.is_empty() {
                        self.published.insert(key.to_string(), desired.to_vec());
                    }
                }
                _ => writes.push(Write {
                    key: key.to_string(),
                    addresses: desired.to_vec(),
                }),
            }
        }
        let observed = &self.observed;
        self.published.retain(|key, wrote| {
            if serving.contains(key.as_str()) {
                return true;
            }
            match observed.get(key) {
                Some(now) if now.is_empty() => false,
                // Someone else's status now: not ours to clear.
                Some(now) if now != wrote => false,
                _ => {
                    writes.push(Write {
                        key: key.clone(),
                        addresses: Vec::new(),
                    });
                    true
                }
            }
        });
        let published = &self.published;
        self.observed
            .retain(|k, _| serving.contains(k.as_str()) || published.contains_key(k));
        writes
    }

    /// A fresh read of every Ingress's status (`namespace/name`, addresses). Only served
    /// and published ones are kept; published ones missing from the list were deleted.
    pub fn observe_all(
        &mut self,
        listed: impl IntoIterator<Item = (String, Vec<Address>)>,
        served: &[Arc<str>],
    ) {
        let serving: HashSet<&str> = served.iter().map(|k| &**k).collect();
        self.observed = listed
            .into_iter()
            .filter(|(k, _)| serving.contains(k.as_str()) || self.published.contains_key(k))
            .collect();
        let observed = &self.observed;
        self.published.retain(|k, _| observed.contains_key(k));
    }

    /// A write succeeded and the Ingress's status is now `now`.
    pub fn wrote(&mut self, key: &str, now: Vec<Address>) {
        if now.is_empty() {
            self.published.remove(key);
        } else {
            self.published.insert(key.to_string(), now.clone());
        }
        self.observed.insert(key.to_string(), now);
    }

    /// A write failed: the status is unknown until the next read or write.
    pub fn failed(&mut self, key: &str) {
        self.observed.remove(key);
    }

    /// The Ingress no longer exists.
    pub fn gone(&mut self, key: &str) {
        self.observed.remove(key);
        self.published.remove(key);
    }
}

/// Publishes from `config` while `leader` says so, until `generations` closes. Nothing is
/// written before `complete` turns true: a partial snapshot must not look like Ingresses
/// that stopped being served.
pub fn start_publisher(
    client: kube::Client,
    config: ConfigHandle,
    generations: watch::Receiver<u64>,
    complete: watch::Receiver<bool>,
    leader: watch::Receiver<bool>,
    opts: PublisherOptions,
) -> tokio::task::JoinHandle<()> {
    let publisher = Publisher {
        client,
        config,
        opts,
        book: Book::default(),
        listed_at: None,
    };
    tokio::spawn(async move {
        let mut complete = complete;
        if complete.wait_for(|c| *c).await.is_ok() {
            publisher.run(generations, leader).await;
        }
    })
}

struct Publisher {
    client: kube::Client,
    config: ConfigHandle,
    opts: PublisherOptions,
    book: Book,
    /// When all statuses were last re-read; `None` forces a re-read.
    listed_at: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
enum CycleError {
    #[error("reading Service {0}: {1}")]
    Service(String, String),
    #[error("listing Ingresses: {0}")]
    List(String),
    #[error("{0} status writes failed")]
    Writes(usize),
}

impl Publisher {
    async fn run(
        mut self,
        mut generations: watch::Receiver<u64>,
        mut leader: watch::Receiver<bool>,
    ) {
        loop {
            if !*leader.borrow_and_update() {
                if leader.wait_for(|l| *l).await.is_err() {
                    return;
                }
                // A new term: statuses may have changed while another replica led.
                self.listed_at = None;
            }
            generations.mark_unchanged();
            let started = Instant::now();
            let retry_at = match self.cycle(&leader).await {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?self.opts.retry, "publishing Ingress status failed");
                    Some(started + self.opts.retry)
                }
            };
            let resync_at = self
                .listed_at
                .map_or(started + self.opts.retry, |t| t + self.opts.resync);
            let wake = retry_at.map_or(resync_at, |r| r.min(resync_at));
            tokio::select! {
                changed = generations.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Coalesce bursts of snapshots into one cycle.
                    tokio::time::sleep_until(started + self.opts.min_interval).await;
                }
                changed = leader.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn cycle(&mut self, leader: &watch::Receiver<bool>) -> Result<(), CycleError> {
        let snapshot = self.config.load_full();
        let desired = self.addresses().await?;
        let due = self
            .listed_at
            .is_none_or(|t| t.elapsed() >= self.opts.resync);
        if due {
            let listed = self.list().await?;
            self.book.observe_all(listed, &snapshot.served);
            self.listed_at = Some(Instant::now());
        }
        let writes = self.book.plan(&snapshot.served, &desired);
        let mut failed = 0;
        for w in writes {
            // Leadership can end mid-cycle; a former leader must not keep writing.
            if !*leader.borrow() {
                return Ok(());
            }
            let Some((ns, name)) = w.key.split_once('/') else {
                self.book.gone(&w.key);
                continue;
            };
            let api = Api::<Ingress>::namespaced(self.client.clone(), ns);
            let patch = Patch::Merge(address::status_patch(&w.addresses));
            let params = PatchParams::default();
            let request = api.patch_status(name, &params, &patch);
            match tokio::time::timeout(self.opts.request_timeout, request).await {
                Ok(Ok(ingress)) => {
                    metrics::write_ok();
                    let verb = if w.addresses.is_empty() {
                        "cleared"
                    } else {
                        "published"
                    };
                    tracing::info!(ingress = %w.key, addresses = ?w.addresses, "{verb} Ingress status");
                    self.book.wrote(&w.key, address::from_ingress(&ingress));
                }
                Ok(Err(kube::Error::Api(s))) if s.is_not_found() => self.book.gone(&w.key),
                Ok(Err(e)) => {
                    metrics::error("write");
                    tracing::warn!(ingress = %w.key, error = %e, "writing Ingress status failed");
                    self.book.failed(&w.key);
                    failed += 1;
                }
                Err(_) => {
                    metrics::error("write");
                    tracing::warn!(ingress = %w.key, "writing Ingress status timed out");
                    self.book.failed(&w.key);
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            return Err(CycleError::Writes(failed));
        }
        Ok(())
    }

    async fn addresses(&self) -> Result<Vec<Address>, CycleError> {
        let (ns, name) = match &self.opts.source {
            AddressSource::Static(list) => return Ok(list.clone()),
            AddressSource::Service { namespace, name } => (namespace, name),
        };
        let api = Api::<Service>::namespaced(self.client.clone(), ns);
        let fail = |e: String| {
            metrics::error("addresses");
            CycleError::Service(format!("{ns}/{name}"), e)
        };
        match tokio::time::timeout(self.opts.request_timeout, api.get(name)).await {
            Ok(Ok(svc)) => Ok(address::from_service(&svc)),
            Ok(Err(e)) => Err(fail(e.to_string())),
            Err(_) => Err(fail("timed out".into())),
        }
    }

    /// Every Ingress's current status, page by page.
    async fn list(&self) -> Result<Vec<(String, Vec<Address>)>, CycleError> {
        let api = Api::<Ingress>::all(self.client.clone());
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(500);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let page =
                match tokio::time::timeout(self.opts.request_timeout, api.list(&params)).await {
                    Ok(Ok(page)) => page,
                    Ok(Err(e)) => {
                        metrics::error("list");
                        return Err(CycleError::List(e.to_string()));
                    }
                    Err(_) => {
                        metrics::error("list");
                        return Err(CycleError::List("timed out".into()));
                    }
                };
            out.extend(page.items.iter().map(|i| {
                (
                    crate::source::store::object_key(&i.metadata),
                    address::from_ingress(i),
                )
            }));
            match page.metadata.continue_.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|k| Arc::from(*k)).collect()
    }

    fn ip(s: &str) -> Address {
        Address::ip(s.parse().unwrap())
    }

    fn write(key: &str, addresses: &[Address]) -> Write {
        Write {
            key: key.into(),
            addresses: addresses.to_vec(),
        }
    }

    #[test]
    fn unknown_or_different_statuses_of_served_ingresses_are_written() {
        let lb = [ip("10.0.0.1")];
        let mut book = Book::default();
        book.observe_all(
            [
                ("ns/right".to_string(), lb.to_vec()),
                ("ns/wrong".to_string(), vec![ip("10.9.9.9")]),
                ("ns/empty".to_string(), vec![]),
                ("ns/theirs".to_string(), vec![ip("10.9.9.9")]),
            ],
            &keys(&["ns/empty", "ns/new", "ns/right", "ns/wrong"]),
        );
        let served = keys(&["ns/empty", "ns/new", "ns/right", "ns/wrong"]);
        let writes = book.plan(&served, &lb);
        assert_eq!(
            writes,
            vec![
                write("ns/empty", &lb),
                write("ns/new", &lb),
                write("ns/wrong", &lb)
            ]
        );
        for w in &writes {
            book.wrote(&w.key, w.addresses.clone());
        }
        assert!(book.plan(&served, &lb).is_empty(), "converged");
        // New addresses: everything served is rewritten.
        let lb2 = [ip("10.0.0.2")];
        assert_eq!(book.plan(&served, &lb2).len(), 4);
    }

    #[test]
    fn ingresses_that_stop_being_served_are_cleared_once() {
        let lb = [ip("10.0.0.1")];
        let mut book = Book::default();
        let served = keys(&["ns/a", "ns/b"]);
        for w in book.plan(&served, &lb) {
            book.wrote(&w.key, w.addresses);
        }
        let writes = book.plan(&keys(&["ns/a"]), &lb);
        assert_eq!(writes, vec![write("ns/b", &[])]);
        book.wrote("ns/b", vec![]);
        assert!(book.plan(&keys(&["ns/a"]), &lb).is_empty());
        assert!(!book.observed.contains_key("ns/b"), "forgotten");
    }

    #[test]
    fn a_failed_clear_is_retried_and_a_failed_publish_too() {
        let lb = [ip("10.0.0.1")];
        let mut book = Book::default();
        book.wrote("ns/a", lb.to_vec());
        book.wrote("ns/b", lb.to_vec());
        let served = keys(&["ns/a"]);
        assert_eq!(book.plan(&served, &lb), vec![write("ns/b", &[])]);
        book.failed("ns/b");
        assert_eq!(book.plan(&served, &lb), vec![write("ns/b", &[])]);
        book.failed("ns/a");
        assert_eq!(
            book.plan(&served, &lb),
            vec![write("ns/a", &lb), write("ns/b", &[])]
        );
    }

    #[test]
    fn a_status_changed_by_someone_else_is_not_cleared() {
        let lb = [ip("10.0.0.1")];
        let mut book = Book::default();
        book.wrote("ns/a", lb.to_vec());
        // The Ingress moved to another controller, which published its own address.
        book.observe_all([("ns/a".to_string(), vec![ip("192.0.2.1")])], &[]);
        assert!(book.plan(&[], &lb).is_empty());
        assert!(book.published.is_empty() && book.observed.is_empty());
    }

    #[test]
    fn deleted_ingresses_are_forgotten() {
        let lb = [ip("10.0.0.1")];
        let mut book = Book::default();
        book.wrote("ns/a", lb.to_vec());
        book.wrote("ns/b", lb.to_vec());
        book.observe_all([("ns/a".to_string(), lb.to_vec())], &[]);
        assert_eq!(book.plan(&[], &lb), vec![write("ns/a", &[])]);
        book.gone("ns/a");
        assert!(book.plan(&[], &lb).is_empty());
    }

    #[test]
    fn a_matching_status_from_a_previous_leader_is_adopted_and_later_cleared() {
        let lb = [ip("10.0.0.1")];
        let mut book = Book::default();
        let served = keys(&["ns/a"]);
        book.observe_all(
            [
                ("ns/a".to_string(), lb.to_vec()),
                ("ns/other".to_string(), lb.to_vec()),
            ],
            &served,
        );
        assert!(book.plan(&served, &lb).is_empty(), "nothing to write");
        // An unserved Ingress with our address that we never published is not touched:
        // only what we published (or adopted while serving it) is ours to clear.
        assert!(!book.published.contains_key("ns/other"));
        assert_eq!(book.plan(&[], &lb), vec![write("ns/a", &[])]);
    }

    #[test]
    fn no_addresses_yet_means_empty_statuses_not_clears_of_others() {
        let mut book = Book::default();
        book.observe_all([("ns/a".to_string(), vec![])], &keys(&["ns/a"]));
        assert!(book.plan(&keys(&["ns/a"]), &[]).is_empty());
        assert!(
            book.published.is_empty(),
            "an empty status is nothing to clear later"
        );
    }
}
