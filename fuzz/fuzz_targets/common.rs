//! Shared by the targets: a fixed site to route against (and to review Ingresses against),
//! and what a router answer must satisfy.
// Each target includes this file and uses part of it.
#![allow(dead_code)]
use portcullis::fuzzing::parse_manifest_file;
use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::ingress::model::router::{RouteRole, compile_path_regex};
use portcullis::ingress::model::snapshot::{Lookup, PathType, Route, Snapshot};
use portcullis::source::ObjectStore;

/// Exact, wildcard and hostless hosts; Exact, Prefix and regex paths; a host fallback and
/// a catch-all.
pub const SITE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: portcullis
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec: {controller: portcullis.io/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: ["10.0.0.1"], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: catch-all, namespace: shop, creationTimestamp: "2025-01-01T00:00:00Z"}
spec:
  defaultBackend: {service: {name: web, port: {name: http}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: main, namespace: shop, creationTimestamp: "2025-01-02T00:00:00Z"}
spec:
  defaultBackend: {service: {name: web, port: {number: 80}}}
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /admin, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /admin/login, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /foo/, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /foo, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}
      - {path: "/{odd}", pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /aaa/bbb, pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 80}}}}
  - host: "*.example.com"
    http:
      paths:
      - {path: /wild, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
  - http:
      paths:
      - {path: /hostless, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: regex
  namespace: shop
  creationTimestamp: "2025-01-03T00:00:00Z"
  annotations:
    nginx.ingress.kubernetes.io/use-regex: "true"
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: "/api/(v[0-9]+)/(.*)", pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 80}}}}
      - {path: "/img/[a-z]+\\.png", pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 80}}}}
"#;

/// `SITE` compiled; it must compile without a problem.
pub fn site() -> Snapshot {
    let (objects, _) = match parse_manifest_file("site.yaml", SITE.as_bytes()) {
        Ok(parsed) => parsed,
        Err(e) => panic!("the fixed site does not parse: {e:?}"),
    };
    let mut store = ObjectStore::new();
    store.replace_origin("site.yaml", objects, Vec::new());
    let snapshot = compile(&store, &CompileOptions::default(), None);
    assert!(snapshot.problems.is_empty(), "{:?}", snapshot.problems);
    snapshot
}

pub fn role(snapshot: &Snapshot, route: &Route) -> RouteRole {
    snapshot
        .router
        .entries()
        .find(|(_, r)| std::ptr::eq(*r, route))
        .map_or_else(|| panic!("route not in the table"), |(role, _)| role)
}

pub fn host_matches(rule: Option<&str>, host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    match rule {
        None | Some("") => true,
        Some(rule) => match rule.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => rule == host,
        },
    }
}

/// The Ingress v1 Prefix rule: element-wise, a trailing slash on either side ignored.
pub fn prefix_matches(rule: &str, path: &str) -> bool {
    let rule = match rule.strip_suffix('/') {
        Some(r) if !r.is_empty() => r,
        _ => rule,
    };
    rule == "/" || path == rule || path.starts_with(&format!("{rule}/"))
}

/// Looks `host` + `path` up and checks that a rule that answers really matches them.
/// Returns the role of the answer, `None` for 404.
pub fn check_lookup(snapshot: &Snapshot, host: &str, path: &str) -> Option<RouteRole> {
    let Lookup::Matched { route, captures } = snapshot.router.lookup(host, path) else {
        return None;
    };
    let role = role(snapshot, route);
    if role != RouteRole::Rule {
        return Some(role);
    }
    assert!(
        host_matches(route.host.as_deref(), host),
        "{host:?} {path:?} answered by host {:?}",
        route.host
    );
    let ok = if route.policy.use_regex && route.path_type == PathType::ImplementationSpecific {
        let Ok(re) = compile_path_regex(&route.path) else {
            panic!("served regex {} does not compile", route.path);
        };
        assert_eq!(captures.len() + 1, re.captures_len(), "{captures:?}");
        re.is_match(path)
    } else if route.path_type == PathType::Exact {
        *route.path == *path
    } else {
        prefix_matches(&route.path, path)
    };
    assert!(
        ok,
        "{host:?} {path:?} answered by {:?} {}",
        route.path_type, route.path
    );
    Some(role)
}
