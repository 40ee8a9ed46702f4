//! compile's side of the edge annotations: which routes get an `EdgePolicy` (none for an
//! Ingress without them, so it keeps the fast path), error backends from the annotation or
//! the controller-wide defaults, and the host names `server-alias` and
//! `from-to-www-redirect` add, always losing to real hosts whatever the ages.
use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::ingress::model::snapshot::{Lookup, Route, Snapshot};
use portcullis::ingress::request::edge::ErrorDefaults;
use portcullis::source::{Object, ObjectStore};

const OBJECTS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portcullis}
spec: {controller: portcullis.io/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: error-pages, namespace: shop}
spec: {ports: [{name: http, port: 8080}, {name: admin, port: 9090}]}
---
apiVersion: v1
kind: Service
metadata: {name: errors, namespace: ops}
spec: {ports: [{name: http, port: 80}]}
"#;

fn ingress(name: &str, created: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("\n    nginx.ingress.kubernetes.io/{k}: \"{v}\""))
        .collect();
    format!(
        r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: shop
  creationTimestamp: "{created}"
  annotations:{annotations}
spec:
  ingressClassName: portcullis
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
    )
}

fn build(ingresses: &[String], opts: &CompileOptions) -> Snapshot {
    let yaml = format!("{OBJECTS}{}", ingresses.concat());
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    let objects: Vec<Object> = docs
        .into_iter()
        .filter_map(|d| Object::from_value(d).unwrap())
        .collect();
    let mut store = ObjectStore::new();
    store.replace_origin("test.yaml", objects, vec![]);
    compile(&store, opts, None)
}

fn route<'a>(snap: &'a Snapshot, host: &str) -> &'a Route {
    match snap.router.lookup(host, "/") {
        Lookup::Matched { route, .. } => route,
        Lookup::NotFound => panic!("no route for {host}"),
    }
}

fn problems(snap: &Snapshot) -> String {
    snap.problems
        .iter()
        .map(|p| p.message.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn plain_ingress_has_no_edge_policy() {
    let snap = build(
        &[ingress("plain", "2024-01-01T00:00:00Z", "plain.test", &[])],
        &CompileOptions::default(),
    );
    assert!(route(&snap, "plain.test").policy.edge.is_none());
}

#[test]
fn error_backends_from_annotation_and_defaults() {
    let opts = CompileOptions {
        error_defaults: ErrorDefaults::from_settings(Some("ops/errors:80"), &[404]).unwrap(),
        ..CompileOptions::default()
    };
    let snap = build(
        &[
            ingress("plain", "2024-01-01T00:00:00Z", "plain.test", &[]),
            ingress(
                "own",
                "2024-01-01T00:00:00Z",
                "own.test",
                &[
                    ("custom-http-errors", "503"),
                    ("default-backend", "error-pages"),
                ],
            ),
        ],
        &opts,
    );
    let plain = route(&snap, "plain.test").policy.edge.clone().unwrap();
    assert_eq!(plain.error_codes, [404]);
    assert_eq!(
        &*plain.error_backend.as_ref().unwrap().name,
        "ops/errors:80"
    );
    let own = route(&snap, "own.test").policy.edge.clone().unwrap();
    assert_eq!(own.error_codes, [503]);
    // The Service's first port, as ingress-nginx takes it.
    assert_eq!(
        &*own.error_backend.as_ref().unwrap().name,
        "shop/error-pages:8080"
    );

    // Codes without any backend: reported; a missing Service: reported.
    let snap = build(
        &[
            ingress(
                "codes",
                "2024-01-01T00:00:00Z",
                "codes.test",
                &[("custom-http-errors", "404")],
            ),
            ingress(
                "missing",
                "2024-01-01T00:00:00Z",
                "missing.test",
                &[("default-backend", "nothing")],
            ),
        ],
        &CompileOptions::default(),
    );
    let p = problems(&snap);
    assert!(p.contains("no default-backend annotation"), "{p}");
    assert!(
        p.contains("default-backend: Service shop/nothing does not exist"),
        "{p}"
    );
    assert!(
        route(&snap, "codes.test")
            .policy
            .edge
            .as_ref()
            .unwrap()
            .error_backend
            .is_none()
    );
}

#[test]
fn aliases_and_www_twins_lose_to_real_hosts() {
    let snap = build(
        &[
            // Older than the Ingress that owns real.test: the alias still loses.
            ingress(
                "aliased",
                "2020-01-01T00:00:00Z",
                "main.test",
                &[
                    ("server-alias", "alias.test, real.test"),
                    ("from-to-www-redirect", "true"),
                ],
            ),
            ingress("real", "2024-01-01T00:00:00Z", "real.test", &[]),
            ingress(
                "taken",
                "2020-01-01T00:00:00Z",
                "taken.test",
                &[("from-to-www-redirect", "true")],
            ),
            ingress("twin", "2024-01-01T00:00:00Z", "www.taken.test", &[]),
        ],
        &CompileOptions::default(),
    );
    assert_eq!(&*route(&snap, "alias.test").ingress, "shop/aliased");
    assert_eq!(&*route(&snap, "real.test").ingress, "shop/real");
    assert!(problems(&snap).contains("server-alias real.test"));

    let twin = route(&snap, "www.main.test");
    let edge = twin.policy.edge.as_ref().unwrap();
    assert_eq!(edge.www_target.as_deref(), Some("main.test"));
    assert!(
        route(&snap, "main.test")
            .policy
            .edge
            .as_ref()
            .unwrap()
            .www_target
            .is_none()
    );
    assert_eq!(&*route(&snap, "www.taken.test").ingress, "shop/twin");
}

#[test]
fn aliases_of_a_tls_host_are_tls_hosts() {
    let tls = ingress(
        "secure",
        "2020-01-01T00:00:00Z",
        "secure.test",
        &[("server-alias", "alias.secure.test, taken.test")],
    )
    .replace(
        "spec:\n  ingressClassName: portcullis\n",
        "spec:\n  ingressClassName: portcullis\n  tls: [{hosts: [secure.test]}]\n",
    );
    let snap = build(
        &[
            tls,
            ingress("taken", "2024-01-01T00:00:00Z", "taken.test", &[]),
        ],
        &CompileOptions::default(),
    );
    assert!(snap.tls_hosts.contains_key("secure.test"));
    assert!(snap.tls_hosts.contains_key("alias.secure.test"));
    assert!(!snap.tls_hosts.contains_key("taken.test"));
}

#[test]
fn controller_wide_default_backend_answers_unmatched_requests() {
    let opts = CompileOptions {
        error_defaults: ErrorDefaults::from_settings(Some("ops/errors:80"), &[]).unwrap(),
        ..CompileOptions::default()
    };
    let snap = build(
        &[ingress("plain", "2024-01-01T00:00:00Z", "plain.test", &[])],
        &opts,
    );
    assert_eq!(&*route(&snap, "nobody.test").backend.name, "ops/errors:80");
    assert_eq!(&*route(&snap, "plain.test").backend.name, "shop/web:80");
    // Without the setting, nothing.
    let snap = build(
        &[ingress("plain", "2024-01-01T00:00:00Z", "plain.test", &[])],
        &CompileOptions::default(),
    );
    assert!(matches!(
        snap.router.lookup("nobody.test", "/"),
        Lookup::NotFound
    ));
    // A rule-less Ingress's defaultBackend keeps the catch-all.
    let own = r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: fallback, namespace: shop}
spec:
  ingressClassName: portcullis
  defaultBackend: {service: {name: web, port: {number: 80}}}
"#;
    let snap = build(&[own.to_string()], &opts);
    assert_eq!(&*route(&snap, "nobody.test").backend.name, "shop/web:80");
}
