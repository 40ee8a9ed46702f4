//! What the dashboard page shows, as one JSON document: the routes of a snapshot, each
//! backend's endpoints joined with what the balancer has learned about them, request
//! rates per Ingress, the problems, the recent admission decisions and the last audit.
//!
//! Pure: the caller passes the snapshot and a lookup for the live endpoint figures, so
//! this is tested without a running proxy. It cannot fail.
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::audit::AuditSummary;
use super::rates::IngressRate;
use crate::admission::recent::RecentDecision;
use crate::ingress::model::routes::{endpoint_state, route_rows};
use crate::ingress::model::snapshot::Snapshot;

/// What the balancer knows about one endpoint address right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointLive {
    pub in_flight: usize,
    /// Latency estimate in milliseconds; None before the first answer.
    pub ewma_ms: Option<f64>,
    /// Sitting out a backoff after connect failures.
    pub ejected: bool,
    pub consecutive_failures: u32,
}

/// The document behind the page (`GET /dashboard/state.json`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardState {
    pub generation: u64,
    pub routes: Vec<RouteView>,
    pub backends: Vec<BackendView>,
    pub ingresses: Vec<IngressRate>,
    pub problems: serde_json::Value,
    pub decisions: Vec<RecentDecision>,
    /// The last background audit of the served objects (layout in `dashboard::audit`):
    /// null while auditing is off or before the first audit has finished, so readers
    /// can tell "no audit" from "no findings".
    #[serde(serialize_with = "shared_audit")]
    pub audit: Option<Arc<AuditSummary>>,
}

/// The summary is shared with the audit cell rather than copied per request.
fn shared_audit<S: serde::Serializer>(
    audit: &Option<Arc<AuditSummary>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    audit.as_deref().serialize(s)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    pub host: String,
    pub path: String,
    pub path_type: &'static str,
    pub canary: Option<String>,
    pub ingress: String,
    pub backend: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendView {
    pub name: String,
    /// `name:port` for ExternalName Services, which have no endpoints.
    pub external: Option<String>,
    /// No endpoint may take requests: the route answers 503.
    pub unavailable: bool,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub address: String,
    /// `ready`, `serving`, `terminating`, `not-ready` (as `portcullis routes` prints).
    pub state: String,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// Takes new requests (ready, or the serving+terminating fallback).
    pub eligible: bool,
    pub in_flight: usize,
    pub ewma_ms: Option<f64>,
    pub ejected: bool,
    pub consecutive_failures: u32,
}

/// Builds the dashboard document. `live` gives the balancer's figures for an address
/// (None: no request was ever sent there).
pub fn build(
    snapshot: &Snapshot,
    live: &dyn Fn(SocketAddr) -> Option<EndpointLive>,
    ingresses: Vec<IngressRate>,
    problems: serde_json::Value,
    decisions: Vec<RecentDecision>,
    audit: Option<Arc<AuditSummary>>,
) -> DashboardState {
    let rows = route_rows(snapshot);
    let mut backends: Vec<BackendView> = Vec::new();
    for row in &rows {
        let b = &row.backend;
        if backends.iter().any(|v| *v.name == *b.name) {
            continue;
        }
        let set = b.endpoints.load();
        let endpoints = set
            .all
            .iter()
            .map(|e| {
                let l = live(e.addr);
                EndpointView {
                    address: e.addr.to_string(),
                    state: endpoint_state(e),
                    ready: e.ready,
                    serving: e.serving,
                    terminating: e.terminating,
                    eligible: set.eligible.contains(&e.addr),
                    in_flight: l.map_or(0, |l| l.in_flight),
                    ewma_ms: l.and_then(|l| l.ewma_ms),
                    ejected: l.is_some_and(|l| l.ejected),
                    consecutive_failures: l.map_or(0, |l| l.consecutive_failures),
                }
            })
            .collect();
        backends.push(BackendView {
            name: b.name.to_string(),
            external: b.external.as_ref().map(|(n, p)| format!("{n}:{p}")),
            unavailable: b.external.is_none() && set.eligible.is_empty(),
            endpoints,
        });
    }
    let routes = rows
        .into_iter()
        .map(|r| RouteView {
            host: r.host,
            path: r.path,
            path_type: r.path_type,
            canary: r.canary,
            ingress: r.ingress.to_string(),
            backend: r.backend.name.to_string(),
        })
        .collect();
    DashboardState {
        generation: snapshot.generation,
        routes,
        backends,
        ingresses,
        problems,
        decisions,
        audit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::build::compile::{CompileOptions, compile};
    use crate::source::{Object, ObjectStore};

    /// A snapshot compiled from real objects: one Ingress, one Service, two endpoints.
    fn snapshot() -> Snapshot {
        let docs = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: portcullis
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec: {controller: portcullis.io/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  rules:
  - host: shop.example.test
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-1
  namespace: shop
  labels: {kubernetes.io/service-name: api}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.0.0.1], conditions: {ready: true}}
- {addresses: [10.0.0.2], conditions: {ready: false, serving: false}}
"#;
        let values: Vec<serde_json::Value> = serde_saphyr::from_multiple(docs).unwrap();
        let objects = values
            .into_iter()
            .filter_map(|v| Object::from_value(v).unwrap())
            .collect();
        let mut store = ObjectStore::new();
        store.replace_origin("test.yaml", objects, Vec::new());
        compile(&store, &CompileOptions::default(), None)
    }

    #[test]
    fn joins_routes_endpoints_and_live_figures() {
        let snap = snapshot();
        let busy: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let live = move |addr: SocketAddr| {
            (addr == busy).then_some(EndpointLive {
                in_flight: 3,
                ewma_ms: Some(1.5),
                ejected: true,
                consecutive_failures: 2,
            })
        };
        let state = build(
            &snap,
            &live,
            Vec::new(),
            serde_json::json!([]),
            Vec::new(),
            None,
        );
        assert_eq!(state.routes.len(), 1);
        let r = &state.routes[0];
        assert_eq!(
            (r.host.as_str(), r.path.as_str(), r.path_type),
            ("shop.example.test", "/api", "Prefix")
        );
        assert_eq!(
            (r.ingress.as_str(), r.backend.as_str()),
            ("shop/web", "shop/api:80")
        );
        assert_eq!(r.canary, None);

        assert_eq!(state.backends.len(), 1);
        let b = &state.backends[0];
        assert!(!b.unavailable);
        let eps: Vec<(&str, &str, bool)> = b
            .endpoints
            .iter()
            .map(|e| (e.address.as_str(), e.state.as_str(), e.eligible))
            .collect();
        assert_eq!(
            eps,
            [
                ("10.0.0.1:8080", "ready", true),
                ("10.0.0.2:8080", "not-ready", false)
            ]
        );
        assert_eq!(b.endpoints[0].in_flight, 3);
        assert_eq!(b.endpoints[0].ewma_ms, Some(1.5));
        assert!(b.endpoints[0].ejected);
        assert_eq!(b.endpoints[1].in_flight, 0);
        assert!(!b.endpoints[1].ejected);

        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["routes"][0]["pathType"], "Prefix");
        assert_eq!(json["backends"][0]["endpoints"][0]["inFlight"], 3);
        assert_eq!(
            json["backends"][0]["endpoints"][1]["ewmaMs"],
            serde_json::Value::Null
        );
        assert!(json["audit"].is_null());
    }

    #[test]
    fn an_empty_snapshot_has_no_routes_or_backends() {
        let state = build(
            &Snapshot::default(),
            &|_| None,
            Vec::new(),
            serde_json::json!([{"message": "x"}]),
            Vec::new(),
            None,
        );
        assert!(state.routes.is_empty() && state.backends.is_empty());
        assert_eq!(state.problems[0]["message"], "x");
    }

    #[test]
    fn carries_the_last_audit() {
        use crate::admission::audit::{Counts, NamespaceResult};
        use crate::dashboard::audit::Finding;
        let counts = Counts {
            successes: 6,
            warnings: 1,
            dangers: 1,
        };
        let audit = AuditSummary {
            time_ms: 1_700_000_000_000,
            duration_ms: 2.0,
            source: "/manifests".into(),
            objects: 3,
            score: counts.score(),
            counts,
            namespaces: vec![NamespaceResult {
                namespace: "shop".into(),
                score: counts.score(),
                counts,
            }],
            findings: vec![Finding {
                kind: "Deployment".into(),
                namespace: "shop".into(),
                name: "web".into(),
                check: "tagNotSpecified".into(),
                severity: "danger",
                message: "pin a tag".into(),
                path: "/spec/template/spec/containers/0/image".into(),
            }],
            findings_total: 2,
            truncated: true,
        };
        let state = build(
            &Snapshot::default(),
            &|_| None,
            Vec::new(),
            serde_json::json!([]),
            Vec::new(),
            Some(Arc::new(audit)),
        );
        let json = serde_json::to_value(&state).unwrap();
        let a = &json["audit"];
        assert_eq!(a["score"], 80);
        assert_eq!(a["objects"], 3);
        assert_eq!(a["timeMs"], 1_700_000_000_000u64);
        assert_eq!(a["source"], "/manifests");
        assert_eq!(a["counts"]["dangers"], 1);
        assert_eq!(a["namespaces"][0]["namespace"], "shop");
        assert_eq!(a["namespaces"][0]["score"], 80);
        assert_eq!(a["findingsTotal"], 2);
        assert_eq!(a["truncated"], true);
        let f = &a["findings"][0];
        assert_eq!(
            (&f["kind"], &f["namespace"], &f["name"]),
            (&"Deployment".into(), &"shop".into(), &"web".into())
        );
        assert_eq!(
            (&f["check"], &f["severity"], &f["message"]),
            (
                &"tagNotSpecified".into(),
                &"danger".into(),
                &"pin a tag".into()
            )
        );
    }
}
