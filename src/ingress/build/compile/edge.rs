//! The compile side of `ingress::request::edge`: resolving each Ingress's error backend (its
//! `default-backend` annotation, else the controller-wide one), and adding the extra host
//! names of `server-alias` and `from-to-www-redirect` once every rule is in place, so a
//! real host always wins over an alias or a www twin, whatever the Ingresses' ages.
use std::sync::Arc;

use super::{Compiler, Plan};
use crate::ingress::build::backends::{self, PortRef};
use crate::ingress::model::policy::Policy;
use crate::ingress::model::problem::Problem;
use crate::ingress::model::route_metrics::RouteMetrics;
use crate::ingress::model::router::RouterBuilder;
use crate::ingress::model::snapshot::{Backend, Lookup, PathType, Route, Snapshot};
use crate::ingress::request::edge::EdgePolicy;

/// The route that answers `path` on `host`, if any.
fn route_at<'a>(snapshot: &'a Snapshot, host: &str, path: &str) -> Option<&'a Route> {
    match snapshot.router.lookup(host, path) {
        Lookup::Matched { route, .. } => Some(route),
        Lookup::NotFound => None,
    }
}

impl Compiler<'_> {
    /// Fills the plan's error backend and codes from its annotations and the defaults.
    pub(super) fn resolve_edge(&mut self, plan: &mut Plan) {
        let defaults = self.edge_defaults;
        let parsed = plan.policy.edge.clone();
        if parsed.is_none() && defaults.backend.is_none() {
            return;
        }
        let mut edge = parsed.map_or_else(EdgePolicy::default, |e| (*e).clone());
        edge.error_backend = match (&edge.default_backend, &defaults.backend) {
            (Some(name), _) => {
                let port = self.first_port(&plan.namespace, name);
                match port {
                    Some(port) => {
                        Some(self.shared_backend(Some(plan), &plan.namespace, name, port))
                    }
                    None => {
                        let m = format!(
                            "default-backend: Service {}/{name} does not exist or has no port; ignored",
                            plan.namespace
                        );
                        self.problem(plan.origin.as_deref(), &plan.key, m);
                        None
                    }
                }
            }
            (None, Some((ns, name, port))) => {
                Some(self.shared_backend(Some(plan), ns, name, port.clone()))
            }
            (None, None) => None,
        };
        if edge.error_codes.is_empty() {
            edge.error_codes = defaults.codes.clone();
        }
        if !edge.error_codes.is_empty() && edge.error_backend.is_none() {
            let m = "custom-http-errors: no default-backend annotation and no proxy.defaultBackend setting; the upstream's errors pass unchanged".to_string();
            self.problem(plan.origin.as_deref(), &plan.key, m);
        }
        let mut policy = (*plan.policy).clone();
        policy.edge = Some(Arc::new(edge));
        plan.policy = Arc::new(policy);
    }

    /// The first port of a Service, which ingress-nginx's `default-backend` uses.
    fn first_port(&self, namespace: &str, service: &str) -> Option<PortRef> {
        let svc = self.store.service(namespace, service)?;
        let port = svc.spec.as_ref()?.ports.as_ref()?.first()?;
        Some(PortRef::Number(port.port))
    }

    /// A backend from the shared cache (so endpoint changes refresh it), its problems
    /// reported once per Ingress (or once, for the controller-wide one).
    fn shared_backend(
        &mut self,
        plan: Option<&Plan>,
        namespace: &str,
        service: &str,
        port: PortRef,
    ) -> Arc<Backend> {
        let key = (
            namespace.to_string(),
            service.to_string(),
            port,
            backends::ResolveAs::default(),
        );
        let (store, filter) = (self.store, self.filter);
        let (backend, messages) = self
            .backends
            .entry(key)
            .or_insert_with_key(|(ns, svc, port, _)| {
                let (b, m) = backends::resolve(store, filter, ns, svc, port, Default::default());
                (Arc::new(b), m)
            })
            .clone();
        let owner: Arc<str> = plan.map_or_else(|| Arc::from(""), |p| p.key.clone());
        if !messages.is_empty() && self.reported.insert((owner, backend.name.clone())) {
            for m in messages {
                match plan {
                    Some(p) => self.problem(p.origin.as_deref(), &p.key, m),
                    None => self.problems.push(Problem {
                        file: None,
                        object: None,
                        message: format!("proxy.defaultBackend: {m}"),
                    }),
                }
            }
        }
        backend
    }

    /// The controller-wide default backend answers what no rule matches, as ingress-nginx's
    /// does, unless a rule-less Ingress's `defaultBackend` already took that place.
    pub(super) fn add_default_catch_all(&mut self, builder: &mut RouterBuilder) {
        let Some((ns, name, port)) = self.edge_defaults.backend.clone() else {
            return;
        };
        let backend = self.shared_backend(None, &ns, &name, port);
        let ingress: Arc<str> = Arc::from("");
        let path: Arc<str> = Arc::from("/");
        let metrics = Arc::new(RouteMetrics::new(
            ingress.clone(),
            None,
            path.clone(),
            backend.name.clone(),
            None,
        ));
        let route = Route {
            ingress,
            host: None,
            path,
            path_type: PathType::Prefix,
            backend,
            policy: Arc::new(Policy::default()),
            metrics,
        };
        // Taken: an Ingress's own catch-all wins, as in ingress-nginx.
        let _ = builder.set_catch_all(route);
    }

    /// `server-alias` names, then the twins of `from-to-www-redirect`; each only where no
    /// rule (or earlier alias) has the name already.
    pub(super) fn add_edge_hosts(&mut self, plans: &[Plan], builder: &mut RouterBuilder) {
        for plan in plans.iter().filter(|p| p.canary.is_none()) {
            let Some(edge) = plan.policy.edge.as_deref() else {
                continue;
            };
            // ingress-nginx gives the aliases to the server of the Ingress's first host.
            let Some(host) = plan.paths.iter().find_map(|p| p.host.as_deref()) else {
                continue;
            };
            for alias in &edge.aliases {
                if builder.alias(alias, host).is_err() {
                    let m = format!(
                        "server-alias {alias}: the name is already served by a rule or another alias; ignored"
                    );
                    self.problem(plan.origin.as_deref(), &plan.key, m);
                }
            }
        }
        for plan in plans.iter().filter(|p| p.canary.is_none()) {
            let Some(edge) = plan.policy.edge.as_deref().filter(|e| e.from_to_www) else {
                continue;
            };
            let mut done: Vec<&str> = Vec::new();
            for p in &plan.paths {
                let Some(host) = p.host.as_deref().filter(|h| !h.starts_with("*.")) else {
                    continue;
                };
                if done.contains(&host) {
                    continue;
                }
                done.push(host);
                let twin = match host.strip_prefix("www.") {
                    Some(bare) => bare.to_string(),
                    None => format!("www.{host}"),
                };
                // As in ingress-nginx, a name with rules of its own is not redirected.
                if builder.has_host(&twin) {
                    continue;
                }
                let mut route = self.route(plan, Some(&twin), "/", PathType::Prefix, &p.backend);
                let mut twin_edge = edge.clone();
                twin_edge.www_target = Some(Arc::from(host));
                let mut policy = (*route.policy).clone();
                policy.edge = Some(Arc::new(twin_edge));
                route.policy = Arc::new(policy);
                if let Err(e) = builder.add(route, None) {
                    let m = format!("from-to-www-redirect for {twin}: {e}");
                    self.problem(plan.origin.as_deref(), &plan.key, m);
                }
            }
        }
    }
}

/// Alias names of a host with TLS count as TLS hosts too (the alias is the same nginx
/// server there), so the HTTPS redirect applies to them alike.
pub(super) fn alias_tls_hosts(plans: &[Plan], snapshot: &mut Snapshot) {
    for plan in plans.iter().filter(|p| p.canary.is_none()) {
        let Some(edge) = plan
            .policy
            .edge
            .as_deref()
            .filter(|e| !e.aliases.is_empty())
        else {
            continue;
        };
        let Some((host, path)) = plan
            .paths
            .iter()
            .find_map(|p| Some((p.host.as_deref()?, p.path.as_str())))
        else {
            continue;
        };
        if !snapshot.tls_hosts.contains_key(host) {
            continue;
        }
        let Some(own) = route_at(snapshot, host, path) else {
            continue;
        };
        let own: *const Route = own;
        for alias in edge.aliases.iter().filter(|a| !a.starts_with("*.")) {
            // The same route object: the alias got the host's rules (a real host did not
            // take the name).
            if route_at(snapshot, alias, path).is_some_and(|r| std::ptr::eq(r, own)) {
                snapshot.tls_hosts.insert(alias.clone(), ());
            }
        }
    }
}
