//! The endpoint fast path: when only EndpointSlices or Endpoints changed, the backends
//! that read them get their endpoint sets recomputed (the same `backends::resolve` and
//! endpoint filter compile uses) and swapped into their `EndpointCell`s, in the snapshot
//! already being served. No route is compiled and no generation is published; a request
//! sees the new set on its next endpoint load.
//!
//! Failure behaviour: anything the fast path cannot express without a compile (a changed
//! problem list, a backend whose protocol or ExternalName target would change) is
//! answered with `NeedsCompile` before any cell is touched, and the caller compiles as
//! for any other change. So `/problems` and the routes always describe the store.
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::backends::{self, PortRef, ResolveAs};
use super::endpoint_filter::EndpointFilter;
use crate::ingress::model::snapshot::{Backend, Snapshot};
use crate::source::ObjectStore;

/// namespace, Service, port, how the annotations resolve it: one resolved backend per
/// distinct key.
pub(crate) type BackendKey = (String, String, PortRef, ResolveAs);

/// A snapshot's backends by the `namespace/service` whose endpoints they read.
#[derive(Debug, Default)]
pub struct BackendIndex {
    by_service: HashMap<String, Vec<Indexed>>,
    /// How many of the snapshot's problems came from the store itself (load problems,
    /// duplicates); compile lists them first.
    store_problems: usize,
}

#[derive(Debug)]
struct Indexed {
    key: BackendKey,
    backend: Arc<Backend>,
    /// What resolving it reported, as compile put it into the snapshot's problems.
    messages: Vec<String>,
}

impl BackendIndex {
    /// Indexes compile's resolved backends.
    pub(crate) fn build(
        backends: impl IntoIterator<Item = (BackendKey, (Arc<Backend>, Vec<String>))>,
        store_problems: usize,
    ) -> Self {
        let mut by_service: HashMap<String, Vec<Indexed>> = HashMap::new();
        for (key, (backend, messages)) in backends {
            by_service
                .entry(format!("{}/{}", key.0, key.1))
                .or_default()
                .push(Indexed {
                    key,
                    backend,
                    messages,
                });
        }
        BackendIndex {
            by_service,
            store_problems,
        }
    }

    /// Backends in the index.
    pub fn len(&self) -> usize {
        self.by_service.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_service.is_empty()
    }
}

/// Why an endpoint change needs a full compile after all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NeedsCompile {
    #[error("the store's own problems changed")]
    StoreProblems,
    #[error("backend {0}: what resolving it reports changed")]
    Messages(Arc<str>),
    #[error("backend {0}: its protocol or ExternalName target changed")]
    Shape(Arc<str>),
}

/// Recomputes the endpoints of every backend of `snapshot` reading a Service in
/// `services` (`namespace/service`) and swaps the sets that differ. Returns the backends
/// whose set changed (for their gauges).
pub fn refresh(
    snapshot: &Snapshot,
    store: &ObjectStore,
    filter: &EndpointFilter,
    services: &BTreeSet<String>,
) -> Result<Vec<Arc<Backend>>, NeedsCompile> {
    let index = &snapshot.backends;
    let from_store = store.problems();
    if snapshot.problems.get(..index.store_problems) != Some(&from_store[..]) {
        return Err(NeedsCompile::StoreProblems);
    }
    // Everything is resolved before any cell changes, so a refusal leaves the snapshot
    // exactly as compiled.
    let mut fresh = Vec::new();
    for entry in services
        .iter()
        .filter_map(|s| index.by_service.get(s))
        .flatten()
    {
        let (namespace, service, port, how) = &entry.key;
        let (resolved, messages) = backends::resolve(store, filter, namespace, service, port, *how);
        let old = &entry.backend;
        if messages != entry.messages {
            return Err(NeedsCompile::Messages(old.name.clone()));
        }
        if resolved.protocol != old.protocol || resolved.external != old.external {
            return Err(NeedsCompile::Shape(old.name.clone()));
        }
        let set = resolved.endpoints.into_set();
        if *set != **old.endpoints.load() {
            fresh.push((old.clone(), set));
        }
    }
    Ok(fresh
        .into_iter()
        .map(|(backend, set)| {
            backend.endpoints.store(set);
            backend
        })
        .collect())
}
