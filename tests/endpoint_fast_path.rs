//! The endpoint fast path: an EndpointSlice change swaps the affected backends' endpoint
//! sets in the snapshot in force (same generation), while any other change still
//! compiles a new snapshot; the endpoint filter and `/problems` stay what a compile would
//! give. Through the store directly and through the manifests driver on real files.
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::ingress::build::endpoint_filter::EndpointFilter;
use portcullis::ingress::build::endpoint_refresh::{NeedsCompile, refresh};
use portcullis::ingress::model::policy::Balance;
use portcullis::ingress::model::snapshot::{Backend, Lookup, Snapshot};
use portcullis::ingress::request::balancer::Balancer;
use portcullis::reload::{ConfigHandle, start_files};
use portcullis::source::{Object, ObjectStore};
use serde_json::{Value, json};

/// Generous: the machine is shared.
const BOUND: Duration = Duration::from_secs(5);

const APP: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portcullis}
spec: {controller: portcullis.io/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {ports: [{port: 80}]}
"#;

fn ingress_yaml(path: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web, namespace: ns}}\nspec:\n  ingressClassName: portcullis\n  rules:\n  - host: x.com\n    http:\n      paths:\n      - {{path: {path}, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
    )
}

fn slice_yaml(ips: &[&str]) -> String {
    let endpoints: Vec<String> = ips
        .iter()
        .map(|ip| format!("{{addresses: [\"{ip}\"]}}"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: ns\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{port: 8080}}]\nendpoints: [{}]\n",
        endpoints.join(", ")
    )
}

fn slice_object(ips: &[&str]) -> Object {
    let endpoints: Vec<Value> = ips.iter().map(|ip| json!({"addresses": [ip]})).collect();
    let value = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": "ns",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"port": 8080}],
        "endpoints": endpoints,
    });
    Object::from_value(value).unwrap().unwrap()
}

fn objects(yaml: &str) -> Vec<Object> {
    yaml.split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            let v: Value = serde_saphyr::from_str(d).unwrap();
            Object::from_value(v).unwrap().unwrap()
        })
        .collect()
}

fn backend(snapshot: &Snapshot) -> Option<&Arc<Backend>> {
    match snapshot.router.lookup("x.com", "/") {
        Lookup::Matched { route, .. } => Some(&route.backend),
        Lookup::NotFound => None,
    }
}

fn eligible(snapshot: &Snapshot) -> Vec<String> {
    backend(snapshot).map_or_else(Vec::new, |b| {
        b.endpoints
            .load()
            .eligible
            .iter()
            .map(SocketAddr::to_string)
            .collect()
    })
}

/// The endpoints the balancer actually chooses for x.com `/` over many picks.
fn chosen(handle: &ConfigHandle) -> BTreeSet<String> {
    let balancer = Balancer::new(64);
    let snapshot = handle.load();
    let Some(b) = backend(&snapshot) else {
        return BTreeSet::new();
    };
    (0..64)
        .filter_map(|_| balancer.pick(b, Balance::RoundRobin, None))
        .map(|p| p.addr.to_string())
        .collect()
}

/// A store holding the app, the Ingress and a slice, compiled once.
fn compiled(ips: &[&str], filter: EndpointFilter) -> (ObjectStore, CompileOptions, Snapshot) {
    let mut store = ObjectStore::new();
    let mut all = objects(APP);
    all.extend(objects(&ingress_yaml("/")));
    store.replace_origin("app.yaml", all, Vec::new());
    store.replace_origin("slice.yaml", vec![slice_object(ips)], Vec::new());
    store.take_changes();
    let opts = CompileOptions {
        endpoint_filter: filter,
        ..CompileOptions::default()
    };
    let snapshot = compile(&store, &opts, None);
    (store, opts, snapshot)
}

#[test]
fn a_slice_edit_is_an_endpoint_only_change_and_an_ingress_edit_is_not() {
    let (mut store, _, _) = compiled(&["10.0.0.1"], EndpointFilter::default());
    store.replace_origin("slice.yaml", vec![slice_object(&["10.0.0.2"])], Vec::new());
    let changes = store.take_changes();
    assert!(changes.endpoints_only(), "{changes:?}");
    assert_eq!(
        changes.endpoints_of.into_iter().collect::<Vec<_>>(),
        ["ns/web"]
    );

    // Rewriting a file with the same Ingress and Service but a new slice stays endpoint-only.
    let mut same = objects(APP);
    same.extend(objects(&ingress_yaml("/")));
    store.replace_origin("app.yaml", same, Vec::new());
    assert!(
        store.take_changes().endpoints_of.is_empty(),
        "identical objects are no change"
    );

    let mut edited = objects(APP);
    edited.extend(objects(&ingress_yaml("/v2")));
    store.replace_origin("app.yaml", edited, Vec::new());
    assert!(store.take_changes().routing);
}

#[test]
fn refresh_swaps_endpoints_in_the_snapshot_in_force() {
    let (mut store, opts, snapshot) = compiled(&["10.0.0.1"], EndpointFilter::default());
    let cell_before = Arc::as_ptr(backend(&snapshot).unwrap());
    store.replace_origin(
        "slice.yaml",
        vec![slice_object(&["10.0.0.2", "10.0.0.3"])],
        Vec::new(),
    );
    let changes = store.take_changes();
    let refreshed = refresh(
        &snapshot,
        &store,
        &opts.endpoint_filter,
        &changes.endpoints_of,
    )
    .unwrap();
    assert_eq!(refreshed.len(), 1);
    assert_eq!(eligible(&snapshot), ["10.0.0.2:8080", "10.0.0.3:8080"]);
    assert_eq!(Arc::as_ptr(backend(&snapshot).unwrap()), cell_before);
    assert_eq!(snapshot.generation, 1);

    // The same set again changes nothing.
    let again = refresh(
        &snapshot,
        &store,
        &opts.endpoint_filter,
        &changes.endpoints_of,
    )
    .unwrap();
    assert!(again.is_empty());
}

#[test]
fn the_endpoint_filter_holds_on_the_fast_path() {
    let own: SocketAddr = "10.0.0.9:8080".parse().unwrap();
    let filter = EndpointFilter::files(vec![own]);
    let (mut store, opts, snapshot) = compiled(&["10.0.0.1", "10.0.0.9"], filter);
    assert_eq!(eligible(&snapshot), ["10.0.0.1:8080"]);
    let problems = snapshot.problems.clone();
    assert!(
        problems.iter().any(|p| p.message.contains("10.0.0.9:8080")),
        "{problems:?}"
    );

    // The refused address stays in the slice and is still refused; the problem list is
    // unchanged, so the fast path may apply.
    store.replace_origin(
        "slice.yaml",
        vec![slice_object(&["10.0.0.2", "10.0.0.9"])],
        Vec::new(),
    );
    let changes = store.take_changes();
    refresh(
        &snapshot,
        &store,
        &opts.endpoint_filter,
        &changes.endpoints_of,
    )
    .unwrap();
    assert_eq!(eligible(&snapshot), ["10.0.0.2:8080"]);
    let all = backend(&snapshot).unwrap().endpoints.load();
    assert!(all.all.iter().all(|e| e.addr != own));
    assert_eq!(snapshot.problems, problems);
}

#[test]
fn a_newly_refused_endpoint_needs_a_compile_and_leaves_the_snapshot_alone() {
    let own: SocketAddr = "10.0.0.9:8080".parse().unwrap();
    let (mut store, opts, snapshot) = compiled(&["10.0.0.1"], EndpointFilter::files(vec![own]));
    store.replace_origin(
        "slice.yaml",
        vec![slice_object(&["10.0.0.2", "10.0.0.9"])],
        Vec::new(),
    );
    let changes = store.take_changes();
    let outcome = refresh(
        &snapshot,
        &store,
        &opts.endpoint_filter,
        &changes.endpoints_of,
    );
    assert!(
        matches!(outcome, Err(NeedsCompile::Messages(_))),
        "{outcome:?}"
    );
    assert_eq!(eligible(&snapshot), ["10.0.0.1:8080"], "nothing swapped");

    let next = compile(&store, &opts, Some(&snapshot));
    assert_eq!(eligible(&next), ["10.0.0.2:8080"]);
    assert!(
        next.problems
            .iter()
            .any(|p| p.message.contains("10.0.0.9:8080"))
    );
}

/// Polls until `check` holds for the handle.
async fn until(handle: &ConfigHandle, what: &str, check: impl Fn(&ConfigHandle) -> bool) {
    let start = Instant::now();
    while !check(handle) {
        assert!(start.elapsed() < BOUND, "never saw: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_source_slice_edit_moves_traffic_without_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), APP).unwrap();
    let ingress_file = dir.path().join("ingress.yaml");
    std::fs::write(&ingress_file, ingress_yaml("/")).unwrap();
    let slice_file = dir.path().join("slice.yaml");
    std::fs::write(&slice_file, slice_yaml(&["10.0.0.1"])).unwrap();

    let driver = start_files(dir.path(), CompileOptions::default()).unwrap();
    let handle = driver.handle();
    let generations = driver.subscribe();
    let first = handle.load().generation;
    assert_eq!(
        chosen(&handle),
        BTreeSet::from(["10.0.0.1:8080".to_string()])
    );

    std::fs::write(&slice_file, slice_yaml(&["10.0.0.2", "10.0.0.3"])).unwrap();
    let want = BTreeSet::from(["10.0.0.2:8080".to_string(), "10.0.0.3:8080".to_string()]);
    until(&handle, "the new pods chosen", |h| chosen(h) == want).await;
    assert_eq!(handle.load().generation, first, "no new snapshot");
    assert_eq!(*generations.borrow(), first, "no generation announced");

    // An Ingress edit is a routing change: it compiles a new snapshot, which serves the
    // current endpoints.
    std::fs::write(&ingress_file, ingress_yaml("/v2")).unwrap();
    until(&handle, "the Ingress edit compiled", |h| {
        h.load().generation > first
    })
    .await;
    let snapshot = handle.load_full();
    assert!(matches!(
        snapshot.router.lookup("x.com", "/v2/a"),
        Lookup::Matched { .. }
    ));
    assert!(matches!(
        snapshot.router.lookup("x.com", "/"),
        Lookup::NotFound
    ));
    match snapshot.router.lookup("x.com", "/v2") {
        Lookup::Matched { route, .. } => {
            assert_eq!(route.backend.endpoints.load().eligible.len(), 2);
        }
        Lookup::NotFound => panic!("/v2 not served"),
    }
}
