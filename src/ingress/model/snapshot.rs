//! The immutable, compiled view of the ingress configuration that every request reads.
//!
//! CONTRACT between `compile` (which builds a `Snapshot` from the object store) and the
//! proxy (which reads it). Built once per configuration change, swapped atomically, never
//! mutated except for each backend's `EndpointCell`: a request loads one `Arc<Snapshot>`
//! and uses it from start to end.
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// Kubernetes path types as they appear in `spec.rules[].http.paths[].pathType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
}

/// How the proxy talks to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over plain TCP (the default).
    Http1,
    /// HTTP/2 with prior knowledge over plain TCP (gRPC, `kubernetes.io/h2c`).
    H2c,
    /// HTTP/1.1 or HTTP/2 over TLS to the pod.
    Https,
    /// gRPC over TLS.
    Grpcs,
}

/// One pod address of a backend with its EndpointSlice conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// A backend's pods as one value, so a reader never sees `all` and `eligible` from two
/// different EndpointSlice versions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EndpointSet {
    /// Every known endpoint, for `routes` output and gauges.
    pub all: Vec<Endpoint>,
    /// Addresses that may take new requests: the ready ones, else serving+terminating
    /// (kube-proxy's fallback), else none (503).
    pub eligible: Vec<SocketAddr>,
}

/// The one part of a snapshot that changes in place: a backend's endpoints. Pods come
/// and go far more often than routes, so an EndpointSlice change swaps this cell instead
/// of recompiling every route (see `ingress::build::endpoint_refresh`). Readers pay one atomic
/// load and never wait.
#[derive(Debug, Default)]
pub struct EndpointCell(ArcSwap<EndpointSet>);

impl EndpointCell {
    pub fn new(all: Vec<Endpoint>, eligible: Vec<SocketAddr>) -> Self {
        EndpointCell(ArcSwap::from_pointee(EndpointSet { all, eligible }))
    }

    /// The current set, for one request or one report; do not hold it across waits.
    pub fn load(&self) -> arc_swap::Guard<Arc<EndpointSet>> {
        self.0.load()
    }

    /// Publishes a new set; requests already holding the old one finish with it.
    pub fn store(&self, set: Arc<EndpointSet>) {
        self.0.store(set);
    }

    /// The set, for moving it into another backend's cell.
    pub(crate) fn into_set(self) -> Arc<EndpointSet> {
        self.0.into_inner()
    }
}

/// A Service port as a set of endpoints, resolved when the snapshot is built.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port` for logs, metrics and error pages.
    pub name: Arc<str>,
    pub protocol: UpstreamProtocol,
    /// The pods, replaced in place when only EndpointSlices or Endpoints change.
    pub endpoints: EndpointCell,
    /// ExternalName services: proxied to this DNS name and port instead of endpoints.
    pub external: Option<(String, u16)>,
}

/// What a matched request is sent to, with everything its Ingress's annotations asked for.
#[derive(Debug)]
pub struct Route {
    /// `namespace/name` of the Ingress that owns this path.
    pub ingress: Arc<str>,
    pub host: Option<Arc<str>>,
    pub path: Arc<str>,
    pub path_type: PathType,
    pub backend: Arc<Backend>,
    pub policy: Arc<crate::ingress::model::policy::Policy>,
    /// Metric handles with this route's labels, resolved once per route instead of per
    /// request (`Default`: empty labels, for routes built outside `compile`).
    pub metrics: Arc<crate::ingress::model::route_metrics::RouteMetrics>,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// A rule matched; regex captures (for rewrite-target) are in `captures`, `$1` first.
    Matched {
        route: &'a Route,
        captures: Vec<String>,
    },
    /// Nothing matched and no default backend exists: 404.
    NotFound,
}

/// The compiled configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every rebuild; shown in logs and `routes`.
    pub generation: u64,
    pub router: crate::ingress::model::router::Router,
    /// SNI map built from the TLS Secrets named by served Ingresses.
    pub certs: crate::tls::resolver::CertMap,
    /// Hosts that have TLS configured (for the HTTP→HTTPS redirect).
    pub tls_hosts: crate::ingress::model::fast_map::FastMap<String, ()>,
    /// Everything wrong with the current objects, each naming its source.
    pub problems: Vec<crate::ingress::model::problem::Problem>,
    /// `namespace/name` of every Ingress this snapshot serves (ours by class, and valid now
    /// or through its last good version), sorted: the set whose status we publish.
    pub served: Vec<Arc<str>>,
    /// What admission checks new Ingresses against: claimed routes, Services, TLS Secret
    /// names and our IngressClasses.
    pub live: crate::ingress::model::live::LiveIndex,
    /// Every backend by the Service it reads endpoints from, so an endpoint change can
    /// refresh just those.
    pub backends: crate::ingress::build::endpoint_refresh::BackendIndex,
    /// Hosts the HTTPS listener routes by SNI before TLS (passthrough, client certificates).
    pub sni: crate::ingress::request::tls_edge::SniTable,
}
