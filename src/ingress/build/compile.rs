//! compile: the object store → an immutable `Snapshot` (router, certificates, TLS hosts,
//! problems). Pure: no I/O, no clock; the same store and previous snapshot always give the
//! same result.
//!
//! Failure behaviour: every problem is reported in the snapshot, naming its Ingress (and
//! file). An Ingress that is invalid as a whole (bad host, path, regex, annotation value)
//! keeps the routes of its last good version from `previous`, or is not served at all if it
//! never had one. Smaller problems (a missing Service, a missing TLS Secret, a path claimed
//! by an older Ingress) leave the rest of the Ingress serving. A TLS Secret whose PEM stops
//! parsing keeps its previously parsed certificate.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use regex::Regex;
use rustls::sign::CertifiedKey;

use super::annotations::CanarySpec;
use super::backends;
use super::class::{ClassSelector, DEFAULT_CONTROLLER};
use super::endpoint_filter::EndpointFilter;
use super::endpoint_refresh::{BackendIndex, BackendKey};
use super::inspect::{BackendRef, DefaultScope, RouteClaim, inspect, main_claim};
use crate::ingress::model::live::LiveIndex;
use crate::ingress::model::policy::{Canary, Policy};
use crate::ingress::model::problem::Problem;
use crate::ingress::model::route_metrics::RouteMetrics;
use crate::ingress::model::router::{RouteError, RouterBuilder};
use crate::ingress::model::snapshot::{Backend, PathType, Route, Snapshot};
use crate::source::ObjectStore;

mod edge;

/// What compile needs to know besides the objects.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// `spec.controller` of the IngressClasses that are ours.
    pub controller: String,
    /// Serve Ingresses that name no class at all, even without a default class.
    pub watch_without_class: bool,
    /// Endpoint addresses never dialled.
    pub endpoint_filter: EndpointFilter,
    /// Controller-wide error pages and default backend.
    pub error_defaults: crate::ingress::request::edge::ErrorDefaults,
    /// Body size limit of Ingresses without `proxy-body-size` (`proxy.proxyBodySize`).
    pub default_body_limit: Option<u64>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            controller: DEFAULT_CONTROLLER.to_string(),
            watch_without_class: false,
            endpoint_filter: EndpointFilter::default(),
            error_defaults: Default::default(),
            default_body_limit: None,
        }
    }
}

/// What one compile hands to the next: the last good version of every served Ingress and
/// the certificates already parsed (so unchanged Secrets are not parsed again).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    good: HashMap<String, Arc<Ingress>>,
    certs: HashMap<String, CachedCert>,
}

#[derive(Debug)]
struct CachedCert {
    crt: Vec<u8>,
    key: Vec<u8>,
    certified: Arc<CertifiedKey>,
}

/// One Ingress, checked and ready to become routes.
struct Plan {
    key: Arc<str>,
    namespace: String,
    origin: Option<String>,
    created: Option<k8s_openapi::jiff::Timestamp>,
    policy: Arc<Policy>,
    canary: Option<CanarySpec>,
    paths: Vec<PathPlan>,
    default_backend: Option<BackendRef>,
    /// What the defaultBackend answers for (empty without one).
    default_scopes: Vec<DefaultScope>,
    tls: Vec<(Vec<String>, Option<String>)>,
    warnings: Vec<String>,
}

struct PathPlan {
    host: Option<String>,
    path: String,
    path_type: PathType,
    regex: Option<Regex>,
    claim: RouteClaim,
    backend: BackendRef,
}

/// Claimed routes → (owning Ingress, route index).
type Claims = HashMap<RouteClaim, (Arc<str>, usize)>;

/// Builds the snapshot for `store`. `previous` supplies the generation, the last good
/// Ingresses and the parsed certificates.
pub fn compile(
    store: &ObjectStore,
    opts: &CompileOptions,
    previous: Option<&Snapshot>,
) -> Snapshot {
    let mut c = Compiler {
        store,
        filter: &opts.endpoint_filter,
        prev: previous.map(|s| &s.router.memory),
        memory: Memory::default(),
        problems: store.problems(),
        backends: HashMap::new(),
        reported: HashSet::new(),
        defaults: HashMap::new(),
        edge_defaults: &opts.error_defaults,
        default_body: opts.default_body_limit,
    };
    let store_problems = c.problems.len();
    let selector = ClassSelector::new(store, &opts.controller, opts.watch_without_class);
    let mut plans = c.plans(&selector);
    plans.sort_by_key(age);
    for plan in plans.iter_mut().filter(|p| p.canary.is_none()) {
        c.resolve_edge(plan);
    }

    let mut builder = RouterBuilder::new();
    let mut claims: Claims = HashMap::new();
    for plan in plans.iter().filter(|p| p.canary.is_none()) {
        c.add_routes(plan, &mut builder, &mut claims);
    }
    let mut canaries = HashMap::new();
    for plan in plans.iter().filter(|p| p.canary.is_some()) {
        c.attach_canary(plan, &mut builder, &claims, &mut canaries);
    }
    c.add_edge_hosts(&plans, &mut builder);
    c.add_default_catch_all(&mut builder);
    let mut snapshot = Snapshot {
        generation: previous.map_or(1, |p| p.generation + 1),
        ..Snapshot::default()
    };
    for plan in plans.iter().filter(|p| p.canary.is_none()) {
        c.add_tls(plan, &mut snapshot);
    }
    for plan in plans.iter().filter(|p| p.canary.is_none()) {
        c.add_sni_routes(plan, &mut snapshot);
    }
    let (mut router, build_problems) = builder.build();
    for message in build_problems {
        c.problems.push(Problem {
            file: None,
            object: None,
            message,
        });
    }
    router.memory = c.memory;
    snapshot.router = router;
    edge::alias_tls_hosts(&plans, &mut snapshot);
    snapshot.problems = c.problems;
    snapshot.served = plans.iter().map(|p| p.key.clone()).collect();
    snapshot.served.sort();
    let routes = claims.into_iter().map(|(k, (o, _))| (k, o)).collect();
    snapshot.live = LiveIndex::build(store, selector, routes, canaries, c.defaults);
    snapshot.backends = BackendIndex::build(c.backends, store_problems);
    snapshot
}

/// Oldest first: creation time (objects without one, as in most manifest files, after
/// those with one), then namespace/name.
fn age(p: &Plan) -> (bool, Option<k8s_openapi::jiff::Timestamp>, Arc<str>) {
    (p.created.is_none(), p.created, p.key.clone())
}

struct Compiler<'a> {
    store: &'a ObjectStore,
    filter: &'a EndpointFilter,
    prev: Option<&'a Memory>,
    memory: Memory,
    problems: Vec<Problem>,
    backends: HashMap<BackendKey, (Arc<Backend>, Vec<String>)>,
    /// (Ingress, backend) pairs already reported.
    reported: HashSet<(Arc<str>, Arc<str>)>,
    /// Which Ingress's defaultBackend serves each scope, for admission.
    defaults: HashMap<DefaultScope, Arc<str>>,
    edge_defaults: &'a crate::ingress::request::edge::ErrorDefaults,
    default_body: Option<u64>,
}

impl Compiler<'_> {
    fn problem(&mut self, origin: Option<&str>, ingress: &str, message: String) {
        self.problems.push(Problem {
            file: origin.map(str::to_string),
            object: Some(format!("Ingress {ingress}")),
            message,
        });
    }

    fn plans(&mut self, selector: &ClassSelector) -> Vec<Plan> {
        let mut plans = Vec::new();
        let store = self.store;
        for (key, origin, ingress) in store.ingresses() {
            if !selector.serves(ingress) {
                continue;
            }
            match plan(key, Some(origin), ingress) {
                Ok(p) => {
                    for w in &p.warnings {
                        self.problem(Some(origin), key, w.clone());
                    }
                    self.memory.good.insert(key.to_string(), ingress.clone());
                    plans.push(p);
                }
                Err(errors) => {
                    for e in errors {
                        self.problem(Some(origin), key, e);
                    }
                    let last = self.prev.and_then(|m| m.good.get(key)).cloned();
                    match last.map(|old| (plan(key, Some(origin), &old), old)) {
                        Some((Ok(p), old)) => {
                            self.problem(
                                Some(origin),
                                key,
                                "not applied; its last good version keeps serving".into(),
                            );
                            self.memory.good.insert(key.to_string(), old);
                            plans.push(p);
                        }
                        _ => self.problem(Some(origin), key, "not applied; not served".into()),
                    }
                }
            }
        }
        for p in &mut plans {
            if !p.policy.body_size_annotated && p.policy.max_body_bytes != self.default_body {
                Arc::make_mut(&mut p.policy).max_body_bytes = self.default_body;
            }
            for m in
                crate::ingress::request::auth::resolve::attach(&mut p.policy, store, &p.namespace)
            {
                self.problem(p.origin.as_deref(), &p.key, m);
            }
        }
        plans
    }

    fn backend(&mut self, plan: &Plan, b: &BackendRef) -> Arc<Backend> {
        let how = backends::ResolveAs {
            protocol: plan.policy.backend_protocol,
            service_upstream: plan.policy.service_upstream,
        };
        let cache_key = (
            plan.namespace.clone(),
            b.service.clone(),
            b.port.clone(),
            how,
        );
        let store = self.store;
        let filter = self.filter;
        let (backend, messages) = self
            .backends
            .entry(cache_key)
            .or_insert_with(|| {
                let (backend, messages) =
                    backends::resolve(store, filter, &plan.namespace, &b.service, &b.port, how);
                (Arc::new(backend), messages)
            })
            .clone();
        if !messages.is_empty()
            && self
                .reported
                .insert((plan.key.clone(), backend.name.clone()))
        {
            for m in messages {
                self.problem(plan.origin.as_deref(), &plan.key, m);
            }
        }
        backend
    }

    fn route(
        &mut self,
        plan: &Plan,
        host: Option<&str>,
        path: &str,
        path_type: PathType,
        b: &BackendRef,
    ) -> Route {
        let host: Option<Arc<str>> = host.map(Arc::from);
        let path: Arc<str> = Arc::from(path);
        let backend = self.backend(plan, b);
        let canary = plan.policy.canary.as_ref().map(|c| c.backend.name.clone());
        let metrics = Arc::new(RouteMetrics::new(
            plan.key.clone(),
            host.clone(),
            path.clone(),
            backend.name.clone(),
            canary,
        ));
        Route {
            ingress: plan.key.clone(),
            host,
            path,
            path_type,
            backend,
            policy: plan.policy.clone(),
            metrics,
        }
    }

    fn add_routes(&mut self, plan: &Plan, builder: &mut RouterBuilder, claims: &mut Claims) {
        for p in &plan.paths {
            let claim = p.claim.clone();
            let route = self.route(plan, p.host.as_deref(), &p.path, p.path_type, &p.backend);
            match builder.add(route, p.regex.clone()) {
                Ok(i) => {
                    claims.entry(claim).or_insert((plan.key.clone(), i));
                }
                Err(RouteError::Taken) => {
                    let owner = claims.get(&claim).map_or("an earlier rule", |(k, _)| &**k);
                    let message = if owner == &*plan.key {
                        format!(
                            "{} is declared twice; the first one is used",
                            claim.describe()
                        )
                    } else {
                        format!(
                            "{} is already served by the older Ingress {owner}; ignored here",
                            claim.describe()
                        )
                    };
                    self.problem(plan.origin.as_deref(), &plan.key, message);
                }
                Err(e) => self.problem(plan.origin.as_deref(), &plan.key, e.to_string()),
            }
        }
        let Some(db) = &plan.default_backend else {
            return;
        };
        for scope in &plan.default_scopes {
            let host = match scope {
                DefaultScope::CatchAll => None,
                DefaultScope::Host(h) => h.as_deref(),
            };
            let route = self.route(plan, host, "/", PathType::Prefix, db);
            let placed = match scope {
                DefaultScope::CatchAll => builder.set_catch_all(route),
                DefaultScope::Host(_) => builder.add_host_fallback(route),
            };
            if placed.is_ok() {
                self.defaults.insert(scope.clone(), plan.key.clone());
                continue;
            }
            let message = match scope {
                DefaultScope::CatchAll => "an older rule-less Ingress already provides the catch-all defaultBackend; ignored".to_string(),
                DefaultScope::Host(h) => format!(
                    "host {} already has a defaultBackend from an older Ingress; ignored",
                    h.as_deref().unwrap_or("*")
                ),
            };
            self.problem(plan.origin.as_deref(), &plan.key, message);
        }
    }

    fn attach_canary(
        &mut self,
        plan: &Plan,
        builder: &mut RouterBuilder,
        claims: &Claims,
        canaries: &mut HashMap<RouteClaim, Arc<str>>,
    ) {
        let Some(spec) = &plan.canary else {
            return;
        };
        for p in &plan.paths {
            let own = &p.claim;
            let Some((main, (owner, index))) = main_claim(claims, own) else {
                self.problem(
                    plan.origin.as_deref(),
                    &plan.key,
                    format!("canary: no Ingress serves {}; ignored", own.describe()),
                );
                continue;
            };
            let (main, owner, index) = (main.clone(), owner.clone(), *index);
            let backend = self.backend(plan, &p.backend);
            let Some(route) = builder.route_mut(index) else {
                continue;
            };
            if let Some(existing) = &route.policy.canary {
                let name = existing.backend.name.clone();
                self.problem(
                    plan.origin.as_deref(),
                    &plan.key,
                    format!(
                        "canary: {} of Ingress {owner} already has the canary {name}; ignored",
                        own.describe()
                    ),
                );
                continue;
            }
            let mut policy = (*route.policy).clone();
            policy.canary = Some(Canary {
                backend,
                weight: spec.weight,
                header: spec.header.clone(),
                header_value: spec.header_value.clone(),
            });
            route.policy = Arc::new(policy);
            canaries.insert(main, plan.key.clone());
        }
    }

    fn add_tls(&mut self, plan: &Plan, snapshot: &mut Snapshot) {
        for (hosts, secret) in &plan.tls {
            for h in hosts {
                snapshot.tls_hosts.insert(h.clone(), ());
            }
            let Some(secret) = secret else {
                continue;
            };
            let Some(key) = self.certificate(plan, secret) else {
                continue;
            };
            for h in hosts {
                let (map, name) = match h.strip_prefix("*.") {
                    Some(parent) => (&mut snapshot.certs.wildcard, parent),
                    None => (&mut snapshot.certs.exact, h.as_str()),
                };
                match map.get(name) {
                    Some(existing) if Arc::ptr_eq(existing, &key) => {}
                    Some(_) => {
                        let m = format!(
                            "TLS host {h} already has a certificate from an older Ingress; Secret {secret} ignored for it"
                        );
                        self.problem(plan.origin.as_deref(), &plan.key, m);
                    }
                    None => {
                        map.insert(name.to_string(), key.clone());
                    }
                }
            }
        }
    }

    /// The plan's hosts that the HTTPS listener routes by SNI (`tls_edge`): for
    /// passthrough, the backend of the host's `/` path (else its first path). The oldest
    /// Ingress keeps a host.
    fn add_sni_routes(&mut self, plan: &Plan, snapshot: &mut Snapshot) {
        let Some(edge) = plan.policy.tls_edge.clone() else {
            return;
        };
        let mut hosts: Vec<&str> = plan
            .paths
            .iter()
            .filter_map(|p| p.host.as_deref())
            .collect();
        hosts.dedup();
        if let Some(spec) = &edge.client_auth {
            self.add_client_auth(plan, spec, &hosts, snapshot);
        }
        if let Some(spec) = &edge.backend_tls {
            let secret = spec.secret.as_deref().and_then(|s| {
                let (ns, name) = s.split_once('/')?;
                self.store.secret_data(ns, name)
            });
            if let Err(e) = spec.compile(secret) {
                let m = format!("proxy-ssl-*: {e}; requests to its TLS backends get 502");
                self.problem(plan.origin.as_deref(), &plan.key, m);
            }
        }
        if !edge.passthrough {
            return;
        }
        for host in hosts {
            let mut of_host = plan
                .paths
                .iter()
                .filter(|p| p.host.as_deref() == Some(host));
            let chosen = of_host
                .clone()
                .find(|p| p.path == "/")
                .or_else(|| of_host.next());
            let Some(chosen) = chosen else { continue };
            if snapshot.sni.passthrough.contains_key(host) {
                let m = format!(
                    "ssl-passthrough: host {host} is already passed through by an older Ingress"
                );
                self.problem(plan.origin.as_deref(), &plan.key, m);
                continue;
            }
            let backend = self.backend(plan, &chosen.backend);
            snapshot.sni.passthrough.insert(host.to_string(), backend);
        }
    }

    /// The hosts' client-certificate settings with the CA from `auth-tls-secret`. Without
    /// a usable CA the hosts get no certificate request, so their routes refuse requests
    /// that need one (fail closed).
    fn add_client_auth(
        &mut self,
        plan: &Plan,
        spec: &Arc<crate::ingress::request::client_auth::ClientAuthSpec>,
        hosts: &[&str],
        snapshot: &mut Snapshot,
    ) {
        use crate::ingress::request::client_auth::{HostClientAuth, VerifyClient};
        if spec.verify == VerifyClient::Off {
            return;
        }
        let (ns, name) = spec.secret.split_once('/').unwrap_or(("", ""));
        let ca = self
            .store
            .secret_data(ns, name)
            .and_then(|d| d.get("ca.crt"));
        let built = match ca {
            Some(ca) => HostClientAuth::new(spec.clone(), ca),
            None => Err("the Secret does not exist or has no ca.crt".into()),
        };
        let host_auth = match built {
            Ok(h) => Arc::new(h),
            Err(e) => {
                let m = format!(
                    "auth-tls-secret {}: {e}; requests needing a client certificate are refused",
                    spec.secret
                );
                self.problem(plan.origin.as_deref(), &plan.key, m);
                return;
            }
        };
        for host in hosts {
            if snapshot.sni.client_auth.contains_key(*host) {
                let m = format!(
                    "auth-tls-secret: host {host} already has client-certificate settings from an older Ingress"
                );
                self.problem(plan.origin.as_deref(), &plan.key, m);
                continue;
            }
            snapshot
                .sni
                .client_auth
                .insert((*host).to_string(), host_auth.clone());
        }
    }

    /// The parsed certificate of Secret `name` in the plan's namespace.
    fn certificate(&mut self, plan: &Plan, name: &str) -> Option<Arc<CertifiedKey>> {
        let key = format!("{}/{name}", plan.namespace);
        if let Some(c) = self.memory.certs.get(&key) {
            return Some(c.certified.clone());
        }
        let tls = self
            .store
            .secret(&plan.namespace, name)
            .filter(|s| crate::source::store::is_tls_secret(s));
        let Some(secret) = tls else {
            let m = format!(
                "TLS Secret {key} does not exist (or is not of type kubernetes.io/tls); the default certificate is served"
            );
            self.problem(plan.origin.as_deref(), &plan.key, m);
            return None;
        };
        let field = |k: &str| -> Option<Vec<u8>> {
            if let Some(s) = secret.string_data.as_ref().and_then(|d| d.get(k)) {
                return Some(s.as_bytes().to_vec());
            }
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|b| b.0.clone())
        };
        let (Some(crt), Some(pem_key)) = (field("tls.crt"), field("tls.key")) else {
            let m = format!(
                "TLS Secret {key} lacks tls.crt or tls.key; the default certificate is served"
            );
            self.problem(plan.origin.as_deref(), &plan.key, m);
            return None;
        };
        let previous = self.prev.and_then(|m| m.certs.get(&key));
        if let Some(p) = previous
            && p.crt == crt
            && p.key == pem_key
        {
            let certified = p.certified.clone();
            self.memory.certs.insert(
                key,
                CachedCert {
                    crt,
                    key: pem_key,
                    certified: certified.clone(),
                },
            );
            return Some(certified);
        }
        match crate::tls::certified_key_from_pem(&crt, &pem_key) {
            Ok(certified) => {
                self.memory.certs.insert(
                    key,
                    CachedCert {
                        crt,
                        key: pem_key,
                        certified: certified.clone(),
                    },
                );
                Some(certified)
            }
            Err(e) => match previous {
                Some(p) => {
                    let m =
                        format!("TLS Secret {key}: {e}; the previous certificate keeps serving");
                    self.problem(plan.origin.as_deref(), &plan.key, m);
                    let certified = p.certified.clone();
                    // Remember the good bytes, so the bad ones are tried again next time.
                    self.memory.certs.insert(
                        key,
                        CachedCert {
                            crt: p.crt.clone(),
                            key: p.key.clone(),
                            certified: certified.clone(),
                        },
                    );
                    Some(certified)
                }
                None => {
                    let m = format!("TLS Secret {key}: {e}; the default certificate is served");
                    self.problem(plan.origin.as_deref(), &plan.key, m);
                    None
                }
            },
        }
    }
}

/// Checks one Ingress (see `inspect`) and turns it into a plan; `Err` lists why it cannot
/// be served.
fn plan(key: &str, origin: Option<&str>, ingress: &Ingress) -> Result<Plan, Vec<String>> {
    let ins = inspect(ingress);
    if !ins.is_servable() {
        return Err(ins.issues.into_iter().map(|i| i.message).collect());
    }
    let default_scopes = DefaultScope::of(&ins);
    let paths = ins
        .paths
        .into_iter()
        .map(|p| PathPlan {
            claim: p.claim(),
            host: p.host,
            path: p.path,
            path_type: p.path_type,
            regex: p.regex,
            backend: p.backend,
        })
        .collect();
    Ok(Plan {
        key: Arc::from(key),
        namespace: ingress.metadata.namespace.clone().unwrap_or_default(),
        origin: origin.map(str::to_string),
        created: ingress.metadata.creation_timestamp.as_ref().map(|t| t.0),
        policy: Arc::new(ins.policy),
        canary: ins.canary,
        paths,
        default_scopes,
        default_backend: ins.default_backend,
        tls: ins.tls.into_iter().map(|t| (t.hosts, t.secret)).collect(),
        warnings: ins.warnings.into_iter().map(|w| w.message).collect(),
    })
}
