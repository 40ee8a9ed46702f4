//! Router lookup at 1, 100 and 10,000 Ingress rules, and compile time for 10,000 rules.
//!
//! Layout of N rules: one Ingress per rule, ten paths per host (`/svc{i}/api`, Prefix) plus
//! a `/` Prefix and a `/healthz` Exact on every host, a wildcard host and a hostless rule;
//! 100 Services with one 3-endpoint EndpointSlice each. Lookups cycle through requests that
//! hit deep prefixes, exact paths, the wildcard and misses.
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::ingress::model::snapshot::Lookup;
use portcullis::source::{Object, ObjectStore};
use serde_json::json;

const SERVICES: usize = 100;

fn obj(v: serde_json::Value) -> Object {
    match Object::from_value(v) {
        Ok(Some(o)) => o,
        other => panic!("bench fixture: {other:?}"),
    }
}

fn host_of(i: usize) -> String {
    format!("h{}.example.com", i / 10)
}

fn store(rules: usize) -> ObjectStore {
    let mut objects = vec![obj(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "portcullis"},
        "spec": {"controller": "portcullis.io/ingress-controller"}
    }))];
    for s in 0..SERVICES {
        objects.push(obj(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc{s}"), "namespace": "bench"},
            "spec": {"ports": [{"name": "http", "port": 80}]}
        })));
        objects.push(obj(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("svc{s}-1"), "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": format!("svc{s}")}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": (1..=3).map(|e| json!({"addresses": [format!("10.{}.0.{e}", s % 250)]}))
                .collect::<Vec<_>>()
        })));
    }
    let backend = |i: usize| json!({"service": {"name": format!("svc{}", i % SERVICES), "port": {"name": "http"}}});
    for i in 0..rules {
        let mut paths = vec![
            json!({"path": format!("/svc{i}/api"), "pathType": "Prefix", "backend": backend(i)}),
        ];
        if i % 10 == 0 {
            paths.push(json!({"path": "/", "pathType": "Prefix", "backend": backend(i)}));
            paths.push(json!({"path": "/healthz", "pathType": "Exact", "backend": backend(i)}));
        }
        objects.push(obj(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": format!("ing{i}"), "namespace": "bench"},
            "spec": {"ingressClassName": "portcullis",
                     "rules": [{"host": host_of(i), "http": {"paths": paths}}]}
        })));
    }
    objects.push(obj(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "wild", "namespace": "bench"},
        "spec": {"ingressClassName": "portcullis", "rules": [
            {"host": "*.wild.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend(0)}]}},
            {"http": {"paths": [{"path": "/any", "pathType": "Prefix", "backend": backend(1)}]}}
        ]}
    })));
    let mut st = ObjectStore::new();
    st.replace_origin("bench", objects, vec![]);
    st
}

fn requests(rules: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for k in 0..64 {
        let i = (k * 7919) % rules;
        out.push((host_of(i), format!("/svc{i}/api/v1/items/{k}")));
        out.push((host_of(i), "/healthz".to_string()));
        out.push((host_of(i), format!("/svc{i}/apixyz")));
        out.push((format!("a{k}.wild.example.com"), "/x".to_string()));
        out.push(("unknown.example.org".to_string(), "/any/thing".to_string()));
    }
    out
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    for rules in [1usize, 100, 10_000] {
        let snapshot = compile(&store(rules), &CompileOptions::default(), None);
        assert!(
            snapshot.problems.is_empty(),
            "{:?}",
            snapshot.problems.first()
        );
        let reqs = requests(rules);
        group.bench_with_input(BenchmarkId::from_parameter(rules), &reqs, |b, reqs| {
            let mut n = 0usize;
            b.iter(|| {
                let (host, path) = &reqs[n % reqs.len()];
                n = n.wrapping_add(1);
                let found = matches!(
                    snapshot.router.lookup(black_box(host), black_box(path)),
                    Lookup::Matched { .. }
                );
                black_box(found)
            })
        });
    }
    group.finish();
}

fn compile_10k(c: &mut Criterion) {
    let st = store(10_000);
    let opts = CompileOptions::default();
    let previous = compile(&st, &opts, None);
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("10000", |b| {
        b.iter(|| black_box(compile(&st, &opts, Some(&previous))))
    });
    group.finish();
}

criterion_group!(benches, lookup, compile_10k);
criterion_main!(benches);
