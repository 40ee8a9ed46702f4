//! compile: objects → snapshot. Merging, conflicts, class selection, annotations, backend
//! resolution, last-good behaviour, TLS, canaries, default backends, and `routes` output.
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::ingress::model::routes::{render_routes, routes_json};
use portcullis::ingress::model::snapshot::{Lookup, PathType, Route, Snapshot, UpstreamProtocol};
use portcullis::source::files::{FileSource, load_all};
use portcullis::source::{Object, ObjectStore};

const CLASS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portcullis}
spec: {controller: portcullis.io/ingress-controller}
"#;

fn objects(yaml: &str) -> Vec<Object> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).unwrap();
    docs.into_iter()
        .filter_map(|d| Object::from_value(d).unwrap())
        .collect()
}

fn store(yaml: &str) -> ObjectStore {
    let mut s = ObjectStore::new();
    s.replace_origin(
        "test.yaml",
        objects(&format!("{CLASS}\n---\n{yaml}")),
        vec![],
    );
    s
}

fn build(yaml: &str) -> Snapshot {
    compile(&store(yaml), &CompileOptions::default(), None)
}

/// An Ingress of our class with one rule per (host, path, type, service, port).
fn ingress(
    ns_name: &str,
    created: Option<&str>,
    annotations: &str,
    paths: &[(&str, &str, &str, &str, &str)],
) -> String {
    let (ns, name) = ns_name.split_once('/').unwrap();
    let created = created
        .map(|c| format!("\n  creationTimestamp: \"{c}\""))
        .unwrap_or_default();
    let mut rules = String::new();
    for (host, path, t, svc, port) in paths {
        let host = if host.is_empty() {
            String::new()
        } else {
            format!("host: \"{host}\"\n    ")
        };
        let port = match port.parse::<u16>() {
            Ok(n) => format!("{{number: {n}}}"),
            Err(_) => format!("{{name: {port}}}"),
        };
        rules.push_str(&format!(
            "  - {host}http:\n      paths:\n      - {{path: \"{path}\", pathType: {t}, backend: {{service: {{name: {svc}, port: {port}}}}}}}\n"
        ));
    }
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}{created}\n  annotations: {{{annotations}}}\nspec:\n  ingressClassName: portcullis\n  rules:\n{rules}---\n"
    )
}

fn service(ns_name: &str, ports: &str) -> String {
    let (ns, name) = ns_name.split_once('/').unwrap();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: {ports}\n---\n"
    )
}

fn slice(ns_name: &str, svc: &str, ports: &str, endpoints: &str) -> String {
    let (ns, name) = ns_name.split_once('/').unwrap();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\nports: {ports}\nendpoints: {endpoints}\n---\n"
    )
}

fn route<'a>(s: &'a Snapshot, host: &str, path: &str) -> Option<&'a Route> {
    match s.router.lookup(host, path) {
        Lookup::Matched { route, .. } => Some(route),
        Lookup::NotFound => None,
    }
}

fn owner(s: &Snapshot, host: &str, path: &str) -> Option<String> {
    route(s, host, path).map(|r| r.ingress.to_string())
}

fn addrs(list: &[SocketAddr]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

fn problems_about<'a>(s: &'a Snapshot, needle: &str) -> Vec<&'a str> {
    s.problems
        .iter()
        .filter(|p| p.to_string().contains(needle))
        .map(|p| p.message.as_str())
        .collect()
}

#[test]
fn rules_for_one_host_merge_across_ingresses() {
    let s = build(&format!(
        "{}{}{}",
        ingress("a/web", None, "", &[("x.com", "/", "Prefix", "web", "80")]),
        ingress(
            "b/api",
            None,
            "",
            &[("x.com", "/api", "Prefix", "api", "80")]
        ),
        ingress(
            "b/other",
            None,
            "",
            &[("y.com", "/api", "Prefix", "api", "80")]
        ),
    ));
    assert_eq!(owner(&s, "x.com", "/").as_deref(), Some("a/web"));
    assert_eq!(owner(&s, "x.com", "/api/v1").as_deref(), Some("b/api"));
    assert_eq!(owner(&s, "y.com", "/api").as_deref(), Some("b/other"));
    assert_eq!(owner(&s, "y.com", "/"), None);
    // Per-Ingress backends in their own namespaces.
    assert_eq!(&*route(&s, "x.com", "/").unwrap().backend.name, "a/web:80");
    assert_eq!(
        &*route(&s, "x.com", "/api").unwrap().backend.name,
        "b/api:80"
    );
    assert_eq!(s.generation, 1);
}

#[test]
fn conflicting_paths_oldest_wins_and_both_are_named() {
    let s = build(&format!(
        "{}{}{}",
        ingress(
            "z/new",
            Some("2025-06-01T00:00:00Z"),
            "",
            &[("x.com", "/p", "Prefix", "svc-n", "80")]
        ),
        ingress(
            "a/old",
            Some("2024-01-01T00:00:00Z"),
            "",
            &[("x.com", "/p", "Prefix", "svc-o", "80")]
        ),
        // Same path, other type: not a conflict.
        ingress(
            "m/exact",
            Some("2025-07-01T00:00:00Z"),
            "",
            &[("x.com", "/p", "Exact", "svc-e", "80")]
        ),
    ));
    assert_eq!(owner(&s, "x.com", "/p/q").as_deref(), Some("a/old"));
    assert_eq!(owner(&s, "x.com", "/p").as_deref(), Some("m/exact"));
    let conflict: Vec<_> = s
        .problems
        .iter()
        .filter(|p| p.message.contains("already served"))
        .collect();
    assert_eq!(conflict.len(), 1, "{:?}", s.problems);
    assert_eq!(conflict[0].object.as_deref(), Some("Ingress z/new"));
    assert!(conflict[0].message.contains("a/old"));
    assert_eq!(conflict[0].file.as_deref(), Some("test.yaml"));

    // Without timestamps (typical manifests) namespace/name decides; a timestamp is older.
    let s = build(&format!(
        "{}{}{}",
        ingress("b/x", None, "", &[("x.com", "/q", "Prefix", "s", "80")]),
        ingress("a/x", None, "", &[("x.com", "/q", "Prefix", "s", "80")]),
        ingress("c/x", None, "", &[("x.com", "/r", "Prefix", "s", "80")]),
    ));
    assert_eq!(owner(&s, "x.com", "/q").as_deref(), Some("a/x"));
    let s = build(&format!(
        "{}{}",
        ingress("a/x", None, "", &[("x.com", "/q", "Prefix", "s", "80")]),
        ingress(
            "b/x",
            Some("2030-01-01T00:00:00Z"),
            "",
            &[("x.com", "/q", "Prefix", "s", "80")]
        ),
    ));
    assert_eq!(owner(&s, "x.com", "/q").as_deref(), Some("b/x"));
}

#[test]
fn class_selection_never_serves_other_classes() {
    let other = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec: {controller: k8s.io/ingress-nginx}
---
"#;
    let base = ingress(
        "ns/ours",
        None,
        "",
        &[("ours.com", "/", "Prefix", "s", "80")],
    );
    let theirs = base
        .replace("name: ours", "name: theirs")
        .replace("ours.com", "theirs.com")
        .replace("ingressClassName: portcullis", "ingressClassName: nginx");
    let legacy_ours = base
        .replace("name: ours", "name: legacy")
        .replace("ours.com", "legacy.com")
        .replace("  ingressClassName: portcullis\n", "")
        .replace(
            "annotations: {}",
            "annotations: {kubernetes.io/ingress.class: portcullis}",
        );
    let legacy_theirs = legacy_ours
        .replace("name: legacy", "name: legacy-theirs")
        .replace("legacy.com", "legacy-theirs.com")
        .replace("ingress.class: portcullis", "ingress.class: nginx");
    let classless = base
        .replace("name: ours", "name: none")
        .replace("ours.com", "none.com")
        .replace("  ingressClassName: portcullis\n", "");
    let all = format!("{other}{base}{theirs}{legacy_ours}{legacy_theirs}{classless}");

    let s = build(&all);
    assert!(route(&s, "ours.com", "/").is_some());
    assert!(route(&s, "legacy.com", "/").is_some());
    assert!(route(&s, "theirs.com", "/").is_none());
    assert!(route(&s, "legacy-theirs.com", "/").is_none());
    // Another controller's default class does not make class-less Ingresses ours.
    assert!(route(&s, "none.com", "/").is_none());
    assert!(
        problems_about(&s, "theirs").is_empty(),
        "others are ignored silently"
    );
    // Only our Ingresses are served, so only they get a published status.
    let served: Vec<&str> = s.served.iter().map(|k| &**k).collect();
    assert_eq!(served, ["ns/legacy", "ns/ours"]);

    let opts = CompileOptions {
        watch_without_class: true,
        ..CompileOptions::default()
    };
    let s = compile(&store(&all), &opts, None);
    assert!(route(&s, "none.com", "/").is_some());
    assert!(route(&s, "theirs.com", "/").is_none());
    assert!(route(&s, "legacy-theirs.com", "/").is_none());

    let opts = CompileOptions {
        controller: "example.com/other".into(),
        ..CompileOptions::default()
    };
    let s = compile(&store(&all), &opts, None);
    assert!(s.router.is_empty());
}

#[test]
fn annotations_reach_the_route_policy() {
    let s = build(&ingress(
        "ns/a",
        None,
        r#"nginx.ingress.kubernetes.io/whitelist-source-range: "10.0.0.0/8", portcullis.io/proxy-read-timeout: "5s", nginx.ingress.kubernetes.io/backend-protocol: GRPC, nginx.ingress.kubernetes.io/enable-modsecurity: "true""#,
        &[("x.com", "/", "Prefix", "s", "80")],
    ));
    let r = route(&s, "x.com", "/").unwrap();
    assert_eq!(r.policy.allow_source.len(), 1);
    assert_eq!(
        r.policy.read_timeout,
        Some(std::time::Duration::from_secs(5))
    );
    assert_eq!(r.backend.protocol, UpstreamProtocol::H2c);
    assert_eq!(
        problems_about(&s, "enable-modsecurity").len(),
        1,
        "unsupported = warning"
    );
}

#[test]
fn malformed_annotation_refuses_a_new_ingress_and_keeps_a_known_one() {
    let good = ingress(
        "ns/a",
        None,
        r#"nginx.ingress.kubernetes.io/whitelist-source-range: "10.0.0.0/8""#,
        &[("x.com", "/", "Prefix", "s", "80")],
    );
    let bad = good.replace("10.0.0.0/8", "10.0.0.0/88");
    let other = ingress("ns/b", None, "", &[("y.com", "/", "Prefix", "s", "80")]);

    // Never seen good: not served at all (a broken allowlist must not open the backend).
    let s = build(&format!("{bad}{other}"));
    assert!(route(&s, "x.com", "/").is_none());
    assert_eq!(s.served, [Arc::from("ns/b")]);
    assert!(
        route(&s, "y.com", "/").is_some(),
        "other Ingresses unaffected"
    );
    let msgs = problems_about(&s, "Ingress ns/a");
    assert!(
        msgs.iter().any(|m| m.contains("whitelist-source-range")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("not served")), "{msgs:?}");

    // Seen good before: the last good version keeps serving, with its policy.
    let opts = CompileOptions::default();
    let first = compile(&store(&format!("{good}{other}")), &opts, None);
    let second = compile(&store(&format!("{bad}{other}")), &opts, Some(&first));
    assert_eq!(second.generation, 2);
    let r = route(&second, "x.com", "/").expect("last good keeps serving");
    assert_eq!(second.served, [Arc::from("ns/a"), Arc::from("ns/b")]);
    assert_eq!(r.policy.allow_source[0].to_string(), "10.0.0.0/8");
    assert!(
        problems_about(&second, "Ingress ns/a")
            .iter()
            .any(|m| m.contains("last good"))
    );
    // ... and stays the last good one across further broken compiles.
    let third = compile(&store(&format!("{bad}{other}")), &opts, Some(&second));
    assert!(route(&third, "x.com", "/").is_some());
    // Deleting the Ingress really removes it.
    let fourth = compile(&store(&other), &opts, Some(&third));
    assert!(route(&fourth, "x.com", "/").is_none());
    let fifth = compile(&store(&format!("{bad}{other}")), &opts, Some(&fourth));
    assert!(
        route(&fifth, "x.com", "/").is_none(),
        "memory ends with the deletion"
    );
}

#[test]
fn invalid_paths_hosts_and_regexes_refuse_the_ingress() {
    let cases = [
        ingress("ns/a", None, "", &[("x.com", "/a//b", "Prefix", "s", "80")]),
        ingress(
            "ns/a",
            None,
            "",
            &[("x.com", "/a/../b", "Exact", "s", "80")],
        ),
        ingress("ns/a", None, "", &[("x.com", "a", "Prefix", "s", "80")]),
        ingress("ns/a", None, "", &[("X.com", "/", "Prefix", "s", "80")]),
        ingress("ns/a", None, "", &[("10.0.0.1", "/", "Prefix", "s", "80")]),
        ingress("ns/a", None, "", &[("x.com", "/", "Whatever", "s", "80")]),
        ingress(
            "ns/a",
            None,
            "nginx.ingress.kubernetes.io/use-regex: \"true\"",
            &[("x.com", "/a(", "ImplementationSpecific", "s", "80")],
        ),
    ];
    for yaml in cases {
        let s = build(&yaml);
        assert!(s.router.is_empty(), "{yaml}");
        assert!(
            problems_about(&s, "not served").len() == 1,
            "{yaml}: {:?}",
            s.problems
        );
    }
}

#[test]
fn regex_paths_and_rewrite_captures() {
    let s = build(&ingress(
        "ns/a",
        None,
        r#"nginx.ingress.kubernetes.io/rewrite-target: "/$2""#,
        &[(
            "x.com",
            "/something(/|$)(.*)",
            "ImplementationSpecific",
            "s",
            "80",
        )],
    ));
    match s.router.lookup("x.com", "/Something/new") {
        Lookup::Matched { route, captures } => {
            assert_eq!(&*route.path, "/something(/|$)(.*)");
            assert_eq!(captures, ["/", "new"]);
            assert_eq!(route.policy.rewrite_target.as_deref(), Some("/$2"));
        }
        Lookup::NotFound => panic!("regex did not match"),
    }
    // Without use-regex an ImplementationSpecific path is a plain prefix.
    let s = build(&ingress(
        "ns/a",
        None,
        "",
        &[("x.com", "/app", "ImplementationSpecific", "s", "80")],
    ));
    assert!(route(&s, "x.com", "/app/x").is_some());
    assert!(route(&s, "x.com", "/apple").is_none());
}

#[test]
fn named_ports_resolve_per_slice_and_merge_deduplicated() {
    let yaml = format!(
        "{}{}{}{}{}",
        ingress("ns/a", None, "", &[("x.com", "/", "Prefix", "web", "http")]),
        service(
            "ns/web",
            "[{name: http, port: 80, targetPort: web}, {name: admin, port: 9000}]"
        ),
        // Pods expose the named targetPort on different numbers: one slice per number.
        slice(
            "ns/web-1",
            "web",
            "[{name: http, port: 8080}, {name: admin, port: 9000}]",
            r#"[{addresses: ["10.0.0.1"]}, {addresses: ["10.0.0.2"], conditions: {ready: false}}]"#,
        ),
        slice(
            "ns/web-2",
            "web",
            "[{name: http, port: 8081}]",
            r#"[{addresses: ["10.0.0.3"], conditions: {ready: true}}]"#,
        ),
        // The same endpoint briefly in two slices: counted once, the ready view wins.
        slice(
            "ns/web-3",
            "web",
            "[{name: http, port: 8080}]",
            r#"[{addresses: ["10.0.0.2"], conditions: {ready: true}}, {addresses: ["not-an-ip"]}]"#,
        ),
    );
    let s = build(&yaml);
    let b = &route(&s, "x.com", "/").unwrap().backend;
    assert_eq!(&*b.name, "ns/web:http");
    assert_eq!(
        addrs(&b.endpoints.load().eligible),
        ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8081"]
    );
    assert_eq!(b.endpoints.load().all.len(), 3);
    assert_eq!(problems_about(&s, "not-an-ip").len(), 1);
}

#[test]
fn readiness_fallback_to_serving_terminating() {
    let yaml = format!(
        "{}{}{}",
        ingress("ns/a", None, "", &[("x.com", "/", "Prefix", "web", "80")]),
        service("ns/web", "[{port: 80}]"),
        slice(
            "ns/web-1",
            "web",
            "[{port: 8080}]",
            r#"[{addresses: ["10.0.0.1"], conditions: {ready: false, serving: true, terminating: true}},
                {addresses: ["10.0.0.2"], conditions: {ready: false, serving: false, terminating: true}},
                {addresses: ["10.0.0.3"], conditions: {ready: false}}]"#,
        ),
    );
    let s = build(&yaml);
    let b = &route(&s, "x.com", "/").unwrap().backend;
    assert_eq!(addrs(&b.endpoints.load().eligible), ["10.0.0.1:8080"]);
    // serving defaults to ready when absent.
    let set = b.endpoints.load();
    let e3 = set
        .all
        .iter()
        .find(|e| e.addr.to_string() == "10.0.0.3:8080")
        .unwrap();
    assert!(!e3.serving && !e3.terminating);

    let none_left = yaml.replace(
        "serving: true, terminating: true",
        "serving: false, terminating: true",
    );
    let s = build(&none_left);
    assert!(
        route(&s, "x.com", "/")
            .unwrap()
            .backend
            .endpoints
            .load()
            .eligible
            .is_empty()
    );
}

#[test]
fn endpoints_v1_only_without_slices() {
    let endpoints = r#"
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: ns}
subsets:
- addresses: [{ip: 10.0.1.1}]
  notReadyAddresses: [{ip: 10.0.1.2}]
  ports: [{name: http, port: 9000}]
---
"#;
    let base = format!(
        "{}{}{endpoints}",
        ingress("ns/a", None, "", &[("x.com", "/", "Prefix", "web", "80")]),
        service("ns/web", "[{name: http, port: 80}]"),
    );
    let s = build(&base);
    let b = &route(&s, "x.com", "/").unwrap().backend;
    assert_eq!(addrs(&b.endpoints.load().eligible), ["10.0.1.1:9000"]);
    assert_eq!(b.endpoints.load().all.len(), 2);
    assert!(!b.endpoints.load().all[1].ready && !b.endpoints.load().all[1].serving);

    let with_slice = format!(
        "{base}{}",
        slice(
            "ns/web-1",
            "web",
            "[{name: http, port: 8080}]",
            r#"[{addresses: ["10.0.0.9"]}]"#
        )
    );
    let s = build(&with_slice);
    let b = &route(&s, "x.com", "/").unwrap().backend;
    assert_eq!(
        addrs(&b.endpoints.load().eligible),
        ["10.0.0.9:8080"],
        "slices win over Endpoints"
    );
}

#[test]
fn external_name_services_and_loopback_refusal() {
    let ext = |name: &str, target: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  type: ExternalName\n  externalName: {target}\n---\n"
        )
    };
    let yaml = format!(
        "{}{}{}{}",
        ingress("ns/a", None, "", &[("x.com", "/", "Prefix", "ext", "443")]),
        ingress("ns/b", None, "", &[("y.com", "/", "Prefix", "local", "80")]),
        ext("ext", "api.example.com."),
        ext("local", "127.0.0.1"),
    );
    let s = build(&yaml);
    let b = &route(&s, "x.com", "/").unwrap().backend;
    assert_eq!(b.external, Some(("api.example.com".to_string(), 443)));
    let b = &route(&s, "y.com", "/").unwrap().backend;
    assert_eq!(b.external, None);
    assert!(b.endpoints.load().eligible.is_empty());
    assert_eq!(problems_about(&s, "loopback").len(), 1);
}

#[test]
fn missing_service_and_port_still_route_with_503_and_problem() {
    let yaml = format!(
        "{}{}{}",
        ingress("ns/a", None, "", &[("x.com", "/", "Prefix", "ghost", "80")]),
        ingress("ns/b", None, "", &[("y.com", "/", "Prefix", "web", "81")]),
        service("ns/web", "[{port: 80, appProtocol: kubernetes.io/h2c}]"),
    );
    let s = build(&yaml);
    let r = route(&s, "x.com", "/").expect("still routes");
    assert!(r.backend.endpoints.load().eligible.is_empty() && r.backend.external.is_none());
    assert_eq!(problems_about(&s, "ghost does not exist").len(), 1);
    assert!(
        route(&s, "y.com", "/")
            .unwrap()
            .backend
            .endpoints
            .load()
            .eligible
            .is_empty()
    );
    assert_eq!(problems_about(&s, "has no port 81").len(), 1);
}

#[test]
fn app_protocol_and_annotation_override() {
    let yaml = format!(
        "{}{}{}",
        ingress("ns/a", None, "", &[("x.com", "/", "Prefix", "web", "80")]),
        ingress(
            "ns/b",
            None,
            "portcullis.io/backend-protocol: HTTP",
            &[("y.com", "/", "Prefix", "web", "80")]
        ),
        service("ns/web", "[{port: 80, appProtocol: kubernetes.io/h2c}]"),
    );
    let s = build(&yaml);
    assert_eq!(
        route(&s, "x.com", "/").unwrap().backend.protocol,
        UpstreamProtocol::H2c
    );
    assert_eq!(
        route(&s, "y.com", "/").unwrap().backend.protocol,
        UpstreamProtocol::Http1
    );
}

#[test]
fn resource_backends_are_skipped_with_a_warning() {
    let yaml = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: r, namespace: ns}
spec:
  ingressClassName: portcullis
  rules:
  - host: x.com
    http:
      paths:
      - path: /bucket
        pathType: Prefix
        backend: {resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: b}}
      - path: /
        pathType: Prefix
        backend: {service: {name: web, port: {number: 80}}}
"#;
    let s = build(yaml);
    assert_eq!(owner(&s, "x.com", "/bucket").as_deref(), Some("ns/r"));
    assert_eq!(&*route(&s, "x.com", "/bucket").unwrap().path, "/");
    assert_eq!(problems_about(&s, "resource backends").len(), 1);
}

#[test]
fn default_backends_catch_all_and_host_fallback() {
    let catch_all = |name: &str, created: &str, svc: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: ns, creationTimestamp: \"{created}\"}}\nspec:\n  ingressClassName: portcullis\n  defaultBackend: {{service: {{name: {svc}, port: {{number: 80}}}}}}\n---\n"
        )
    };
    let with_fallback = ingress(
        "ns/site",
        None,
        "",
        &[("x.com", "/api", "Prefix", "api", "80")],
    )
    .replace(
        "spec:\n",
        "spec:\n  defaultBackend: {service: {name: site-default, port: {number: 80}}}\n",
    );
    let yaml = format!(
        "{}{}{with_fallback}{}",
        catch_all("newer", "2025-01-01T00:00:00Z", "newer"),
        catch_all("older", "2020-01-01T00:00:00Z", "older"),
        ingress(
            "ns/yy",
            None,
            "",
            &[("y.com", "/api", "Prefix", "api", "80")]
        ),
    );
    let s = build(&yaml);
    let backend =
        |host: &str, path: &str| route(&s, host, path).map(|r| r.backend.name.to_string());
    assert_eq!(backend("x.com", "/api").as_deref(), Some("ns/api:80"));
    assert_eq!(
        backend("x.com", "/other").as_deref(),
        Some("ns/site-default:80")
    );
    // No fallback on y.com: requests matching no rule go to the catch-all.
    assert_eq!(backend("y.com", "/other").as_deref(), Some("ns/older:80"));
    assert_eq!(backend("unknown.com", "/").as_deref(), Some("ns/older:80"));
    assert_eq!(problems_about(&s, "catch-all").len(), 1);
    // Rule-less Ingresses are served too, even the one whose catch-all lost to an older one.
    let served: Vec<&str> = s.served.iter().map(|k| &**k).collect();
    assert_eq!(served, ["ns/newer", "ns/older", "ns/site", "ns/yy"]);
    let rendered = render_routes(&s);
    assert!(rendered.contains("catch-all"), "{rendered}");
}

#[test]
fn canary_attaches_to_the_main_route() {
    let yaml = format!(
        "{}{}{}",
        ingress(
            "ns/main",
            None,
            "",
            &[
                ("x.com", "/", "Prefix", "web", "80"),
                ("x.com", "/b", "Prefix", "web", "80")
            ]
        ),
        ingress(
            "ns/canary",
            None,
            r#"nginx.ingress.kubernetes.io/canary: "true", nginx.ingress.kubernetes.io/canary-weight: "25", nginx.ingress.kubernetes.io/canary-by-header: X-Canary"#,
            &[
                ("x.com", "/", "Prefix", "web-v2", "80"),
                ("x.com", "/nomain", "Prefix", "web-v2", "80")
            ]
        ),
        service("ns/web-v2", "[{port: 80}]"),
    );
    let s = build(&yaml);
    let r = route(&s, "x.com", "/").unwrap();
    assert_eq!(&*r.ingress, "ns/main", "a canary never owns a route");
    let c = r.policy.canary.as_ref().expect("canary attached");
    assert_eq!(&*c.backend.name, "ns/web-v2:80");
    assert_eq!(c.weight, 25);
    assert_eq!(c.header.as_ref().unwrap().as_str(), "x-canary");
    assert!(
        route(&s, "x.com", "/b").unwrap().policy.canary.is_none(),
        "only the same path"
    );
    assert_eq!(owner(&s, "x.com", "/nomain").as_deref(), Some("ns/main"));
    assert_eq!(problems_about(&s, "no Ingress serves").len(), 1);
    assert_eq!(s.served, [Arc::from("ns/canary"), Arc::from("ns/main")]);
    assert!(render_routes(&s).contains("canary (weight 25%, header x-canary)"));
    // The admin listener's /routes says the same as data: the canary row follows its route.
    let json = routes_json(&s);
    let rows = json["routes"].as_array().unwrap();
    let at = rows
        .iter()
        .position(|r| r["path"] == "/" && r["canary"].is_null())
        .unwrap();
    assert_eq!(rows[at]["ingress"], "ns/main");
    assert_eq!(rows[at + 1]["canary"], "weight 25%, header x-canary");
    assert_eq!(rows[at + 1]["backend"], "ns/web-v2:80");
    assert_eq!(rows[at + 1]["pathType"], "Prefix");
    assert_eq!(json["generation"], s.generation);
    assert!(json["problems"].as_array().unwrap().iter().any(|p| {
        p["message"]
            .as_str()
            .is_some_and(|m| m.contains("no Ingress serves"))
    }));
}

fn tls_secret(name: &str, crt: &str, key: &str) -> String {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata: {{name: {name}, namespace: ns}}\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        indent(crt),
        indent(key)
    )
}

fn tls_ingress(name: &str, hosts: &[&str], secret: &str) -> String {
    let base = ingress(
        &format!("ns/{name}"),
        None,
        "",
        &[(hosts[0], "/", "Prefix", "web", "80")],
    );
    base.replace(
        "spec:\n",
        &format!(
            "spec:\n  tls:\n  - hosts: [\"{}\"]\n    secretName: {secret}\n",
            hosts.join("\", \"")
        ),
    )
}

#[test]
fn tls_certificates_map_exact_and_wildcard_hosts() {
    portcullis::tls::install_provider();
    let a =
        rcgen::generate_simple_self_signed(vec!["a.example.com".into(), "*.example.com".into()])
            .unwrap();
    let (crt, key) = (a.cert.pem(), a.signing_key.serialize_pem());
    let yaml = format!(
        "{}{}{}{}",
        tls_secret("a-tls", &crt, &key),
        tls_ingress("a", &["a.example.com", "*.example.com"], "a-tls"),
        tls_ingress("missing", &["m.example.org"], "nope"),
        tls_ingress("bad", &["b.example.org"], "bad-tls") + &tls_secret("bad-tls", &crt, "garbage"),
    );
    let opts = CompileOptions::default();
    let st = store(&yaml);
    let s = compile(&st, &opts, None);
    assert!(s.certs.exact.contains_key("a.example.com"));
    assert!(s.certs.wildcard.contains_key("example.com"));
    assert!(s.certs.get("www.example.com").is_some());
    assert!(s.certs.get("m.example.org").is_none());
    for h in [
        "a.example.com",
        "*.example.com",
        "m.example.org",
        "b.example.org",
    ] {
        assert!(s.tls_hosts.contains_key(h), "{h}");
    }
    assert_eq!(problems_about(&s, "ns/nope does not exist").len(), 1);
    assert_eq!(problems_about(&s, "TLS Secret ns/bad-tls").len(), 1);
    // Routes still serve when the Secret is missing.
    assert!(route(&s, "m.example.org", "/").is_some());

    // An unchanged Secret is not parsed again: the same key object is reused.
    let again = compile(&st, &opts, Some(&s));
    assert!(Arc::ptr_eq(
        &s.certs.exact["a.example.com"],
        &again.certs.exact["a.example.com"]
    ));

    // A Secret whose PEM breaks keeps the previous certificate.
    let broken = yaml.replace(
        &tls_secret("a-tls", &crt, &key),
        &tls_secret("a-tls", "junk", &key),
    );
    let third = compile(&store(&broken), &opts, Some(&again));
    assert!(third.certs.exact.contains_key("a.example.com"));
    assert!(
        problems_about(&third, "previous certificate").len() == 1,
        "{:?}",
        third.problems
    );
}

#[test]
fn a_broken_file_changes_nothing_served() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("class.yaml", CLASS);
    write(
        "app.yaml",
        &format!(
            "{}{}{}",
            ingress("ns/a", None, "", &[("x.com", "/", "Prefix", "web", "80")]),
            service("ns/web", "[{port: 80}]"),
            slice(
                "ns/web-1",
                "web",
                "[{port: 8080}]",
                r#"[{addresses: ["10.0.0.1"]}]"#
            ),
        ),
    );
    let mut source = FileSource::new(dir.path());
    let mut st = ObjectStore::new();
    source.scan(&mut st).unwrap();
    let opts = CompileOptions::default();
    let first = compile(&st, &opts, None);
    assert!(first.problems.is_empty(), "{:?}", first.problems);
    let before = render_routes(&first);

    // Truncated mid-write, and an object that does not deserialize: neither applies.
    for broken in [
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns}\nspec: {ports: 80}\n",
    ] {
        write("app.yaml", broken);
        assert!(source.scan(&mut st).unwrap());
        let next = compile(&st, &opts, Some(&first));
        assert_eq!(
            route(&next, "x.com", "/").map(|r| addrs(&r.backend.endpoints.load().eligible)),
            Some(vec!["10.0.0.1:8080".to_string()])
        );
        assert!(!next.problems.is_empty());
        let after = render_routes(&next);
        let table = |s: &str| {
            s.split("\nNo problems")
                .next()
                .unwrap()
                .split("\nProblems")
                .next()
                .unwrap()
                .lines()
                .skip(1)
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(table(&before), table(&after));
    }
}

#[test]
fn fixture_directory_end_to_end() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ingress/site");
    let (st, load_problems) = load_all(&dir).unwrap();
    assert!(load_problems.is_empty(), "{load_problems:?}");
    let s = compile(&st, &CompileOptions::default(), None);
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    let web = route(&s, "shop.example.com", "/").unwrap();
    assert_eq!(
        addrs(&web.backend.endpoints.load().eligible),
        ["10.0.0.1:8080"]
    );
    assert_eq!(web.backend.endpoints.load().all.len(), 2);
    // Class-less Ingress served through our default class; Endpoints v1 fallback; h2c.
    let api = route(&s, "shop.example.com", "/api/x").unwrap();
    assert_eq!(&*api.ingress, "shop/api");
    assert_eq!(
        addrs(&api.backend.endpoints.load().eligible),
        ["10.0.1.1:9000"]
    );
    assert_eq!(api.backend.protocol, UpstreamProtocol::H2c);
    assert_eq!(api.policy.max_body_bytes, Some(8 << 20));
    assert_eq!(api.path_type, PathType::Prefix);
    // The nginx-class Ingress is not ours: /admin goes to our `/` rule.
    assert_eq!(
        &*route(&s, "shop.example.com", "/admin").unwrap().ingress,
        "shop/web"
    );
    let text = render_routes(&s);
    for needle in [
        "shop.example.com",
        "/api",
        "shop/api",
        "10.0.0.2:8080 (serving+terminating)",
        "10.0.1.2:9000 (not-ready)",
        "No problems.",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
}

#[test]
fn service_upstream_sends_to_the_cluster_ip() {
    let svc = |name: &str, cluster_ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  clusterIP: \"{cluster_ip}\"\n  ports: [{{port: 80, targetPort: 8080}}]\n---\n"
        )
    };
    let pods = |svc: &str| {
        slice(
            &format!("ns/{svc}-1"),
            svc,
            "[{port: 8080}]",
            r#"[{addresses: ["10.0.0.1"], conditions: {ready: true}}]"#,
        )
    };
    let yaml = format!(
        "{}{}{}{}{}{}",
        ingress(
            "ns/a",
            None,
            r#"nginx.ingress.kubernetes.io/service-upstream: "true""#,
            &[
                ("x.com", "/", "Prefix", "web", "80"),
                ("y.com", "/", "Prefix", "headless", "80")
            ]
        ),
        svc("web", "10.96.0.10"),
        pods("web"),
        svc("headless", "None"),
        pods("headless"),
        ingress("ns/b", None, "", &[("z.com", "/", "Prefix", "web", "80")]),
    );
    let s = build(&yaml);
    let web = &route(&s, "x.com", "/").unwrap().backend;
    assert_eq!(addrs(&web.endpoints.load().eligible), ["10.96.0.10:80"]);
    // A headless Service has no ClusterIP: its pods are used, and the problem is named.
    let headless = &route(&s, "y.com", "/").unwrap().backend;
    assert_eq!(
        addrs(&headless.endpoints.load().eligible),
        ["10.0.0.1:8080"]
    );
    assert_eq!(problems_about(&s, "no ClusterIP").len(), 1);
    // The same Service without the annotation still goes to its pods.
    let plain = &route(&s, "z.com", "/").unwrap().backend;
    assert_eq!(addrs(&plain.endpoints.load().eligible), ["10.0.0.1:8080"]);
}

#[test]
fn controller_wide_body_size_applies_where_no_annotation_says_otherwise() {
    let yaml = format!(
        "{}{}{}{}",
        ingress(
            "ns/plain",
            None,
            "",
            &[("a.com", "/", "Prefix", "web", "80")]
        ),
        ingress(
            "ns/own",
            None,
            r#"nginx.ingress.kubernetes.io/proxy-body-size: "5m""#,
            &[("b.com", "/", "Prefix", "web", "80")]
        ),
        ingress(
            "ns/unlimited",
            None,
            r#"nginx.ingress.kubernetes.io/proxy-body-size: "0""#,
            &[("c.com", "/", "Prefix", "web", "80")]
        ),
        service("ns/web", "[{port: 80}]"),
    );
    let opts = CompileOptions {
        default_body_limit: Some(1 << 20),
        ..CompileOptions::default()
    };
    let s = compile(&store(&yaml), &opts, None);
    let limit = |host: &str| route(&s, host, "/").unwrap().policy.max_body_bytes;
    assert_eq!(limit("a.com"), Some(1 << 20));
    assert_eq!(limit("b.com"), Some(5 << 20));
    assert_eq!(limit("c.com"), None, "0 keeps the body unlimited");
    // Without the setting nothing changes.
    let s = build(&yaml);
    assert_eq!(route(&s, "a.com", "/").unwrap().policy.max_body_bytes, None);
}
