//! The live index in every snapshot: what the admission webhook checks a new Ingress
//! against (claimed routes and their owners, attached canaries, Services with their
//! ports, TLS Secret names, our IngressClasses). Built by `compile` from the same store and
//! the same claims as the router, so admission and routing never disagree.
//!
//! Admission rules read it through [`LiveState`], implemented by the snapshot; a review
//! sees one snapshot from start to end. Without live state (no snapshot, `portcullis
//! check` without `--manifests`) the rules that need it find nothing.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;

use super::snapshot::Snapshot;
use crate::ingress::build::backends::PortRef;
use crate::ingress::build::class::ClassSelector;
use crate::ingress::build::inspect::{DefaultScope, RouteClaim, main_claim};
use crate::source::ObjectStore;

/// What the live configuration knows about a backend Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortLookup {
    Found,
    NoService,
    /// The Service exists without that port; `known` lists its ports (`80`, `80/http`).
    NoPort {
        known: Vec<String>,
    },
}

/// The live configuration, as admission rules see it.
pub trait LiveState: std::fmt::Debug + Send + Sync {
    /// Whether portcullis serves `ingress` (its class, or lack of one, is ours).
    fn serves(&self, ingress: &Ingress) -> bool;
    /// The Ingress (`namespace/name`) that serves the route with this claim.
    fn route_owner(&self, claim: &RouteClaim) -> Option<&str>;
    /// The canary Ingress already attached to the main route that a canary path with this
    /// claim would join.
    fn canary_owner(&self, claim: &RouteClaim) -> Option<&str>;
    /// The Ingress serving the main route a canary path with this claim would join.
    fn canary_main(&self, claim: &RouteClaim) -> Option<&str>;
    /// The Ingress whose defaultBackend serves `scope`.
    fn default_owner(&self, scope: &DefaultScope) -> Option<&str>;
    /// Whether Service `namespace/service` exists and has `port`.
    fn service_port(&self, namespace: &str, service: &str, port: &PortRef) -> PortLookup;
    /// Whether the TLS Secret `namespace/name` exists.
    fn tls_secret_exists(&self, namespace: &str, name: &str) -> bool;
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct LiveIndex {
    selector: ClassSelector,
    /// Main routes → owning Ingress (`namespace/name`).
    routes: HashMap<RouteClaim, Arc<str>>,
    /// Main route → the canary Ingress attached to it.
    canaries: HashMap<RouteClaim, Arc<str>>,
    /// defaultBackend scope → the Ingress whose defaultBackend serves it.
    defaults: HashMap<DefaultScope, Arc<str>>,
    /// `namespace/name` → Service (shared with the store, not copied).
    services: HashMap<String, Arc<Service>>,
    /// `namespace/name` of every TLS Secret.
    tls_secrets: HashSet<String>,
}

impl LiveIndex {
    pub(crate) fn build(
        store: &ObjectStore,
        selector: ClassSelector,
        routes: HashMap<RouteClaim, Arc<str>>,
        canaries: HashMap<RouteClaim, Arc<str>>,
        defaults: HashMap<DefaultScope, Arc<str>>,
    ) -> Self {
        LiveIndex {
            selector,
            routes,
            canaries,
            defaults,
            services: store
                .services()
                .map(|(k, s)| (k.to_string(), s.clone()))
                .collect(),
            tls_secrets: store.secret_keys().map(str::to_string).collect(),
        }
    }
}

impl LiveState for Snapshot {
    fn serves(&self, ingress: &Ingress) -> bool {
        self.live.selector.serves(ingress)
    }

    fn route_owner(&self, claim: &RouteClaim) -> Option<&str> {
        self.live.routes.get(claim).map(|o| &**o)
    }

    fn canary_owner(&self, claim: &RouteClaim) -> Option<&str> {
        let (main, _) = main_claim(&self.live.routes, claim)?;
        self.live.canaries.get(main).map(|o| &**o)
    }

    fn canary_main(&self, claim: &RouteClaim) -> Option<&str> {
        main_claim(&self.live.routes, claim).map(|(_, owner)| &**owner)
    }

    fn default_owner(&self, scope: &DefaultScope) -> Option<&str> {
        self.live.defaults.get(scope).map(|o| &**o)
    }

    fn service_port(&self, namespace: &str, service: &str, port: &PortRef) -> PortLookup {
        let Some(svc) = self.live.services.get(&format!("{namespace}/{service}")) else {
            return PortLookup::NoService;
        };
        let spec = svc.spec.as_ref();
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
        if ports
            .iter()
            .any(|p| port.matches(p.port, p.name.as_deref()))
        {
            return PortLookup::Found;
        }
        // ExternalName Services may omit ports: a number is then the target (as
        // `backends::resolve` does), a name cannot be resolved.
        let external = spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");
        if external && matches!(port, PortRef::Number(_)) {
            return PortLookup::Found;
        }
        PortLookup::NoPort {
            known: ports
                .iter()
                .map(|p| match &p.name {
                    Some(n) if !n.is_empty() => format!("{}/{n}", p.port),
                    _ => p.port.to_string(),
                })
                .collect(),
        }
    }

    fn tls_secret_exists(&self, namespace: &str, name: &str) -> bool {
        self.live
            .tls_secrets
            .contains(&format!("{namespace}/{name}"))
    }
}
