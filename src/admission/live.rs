//! Read access to the live configuration for rules that judge an object against what is
//! already served (Ingress route collisions, backend Services, TLS Secrets). Implemented by
//! the ingress snapshot; a review sees one snapshot from start to end.
//!
//! Without live state (no snapshot, `portcullis check` without `--manifests`) the rules
//! that need it find nothing.
use k8s_openapi::api::networking::v1::Ingress;

use crate::ingress::backends::PortRef;
use crate::ingress::inspect::{DefaultScope, RouteClaim};

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
