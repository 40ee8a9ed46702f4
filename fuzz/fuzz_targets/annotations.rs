//! Every annotation parser, through `parse_annotations` and `inspect` on an Ingress that
//! uses regex paths, TLS and a defaultBackend (so every annotation has something to act
//! on). Input: records separated by NUL, each `key=value`; a key starting with `p:` or
//! `n:` stands for the `portcullis.io/` or `nginx.ingress.kubernetes.io/` prefix, which
//! keeps the interesting keys a few bytes away for the fuzzer.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use portcullis::ingress::build::annotations::{
    NGINX_PREFIX, PORTCULLIS_PREFIX, parse_annotations, parse_headers, parse_ranges,
};
use portcullis::ingress::build::inspect::inspect;
use portcullis::source::Object;
use serde_json::json;

fn annotations(data: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(data);
    let mut map = BTreeMap::new();
    for record in text.split('\0') {
        let (key, value) = record.split_once('=').unwrap_or((record, ""));
        let key = if let Some(short) = key.strip_prefix("p:") {
            format!("{PORTCULLIS_PREFIX}{short}")
        } else if let Some(short) = key.strip_prefix("n:") {
            format!("{NGINX_PREFIX}{short}")
        } else {
            key.to_string()
        };
        map.insert(key, value.to_string());
    }
    map
}

fn ingress(annotations: &BTreeMap<String, String>) -> Option<Object> {
    let doc = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "fuzz", "namespace": "shop", "annotations": annotations},
        "spec": {
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
            "rules": [{
                "host": "shop.example.com",
                "http": {"paths": [
                    {"path": "/api/(v[0-9]+)/(.*)", "pathType": "ImplementationSpecific",
                     "backend": {"service": {"name": "api", "port": {"name": "http"}}}},
                    {"path": "/static", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 8080}}}},
                    {"path": "/", "pathType": "Exact",
                     "backend": {"service": {"name": "web", "port": {"number": 8080}}}}
                ]}
            }]
        }
    });
    Object::from_value(doc).ok().flatten()
}

fuzz_target!(|data: &[u8]| {
    let map = annotations(data);
    for value in map.values() {
        let _ = parse_ranges(value);
        if let Ok(headers) = parse_headers(value) {
            for (name, _) in headers {
                assert!(
                    !matches!(
                        name.as_str(),
                        "host" | "content-length" | "transfer-encoding"
                    ),
                    "{value:?} set {name}"
                );
            }
        }
    }
    let parsed = parse_annotations(&map);
    if let Some(canary) = &parsed.canary {
        assert!(canary.weight <= 100, "canary weight {}", canary.weight);
    }
    let snippet = map.keys().any(|k| {
        (k.starts_with(PORTCULLIS_PREFIX) || k.starts_with(NGINX_PREFIX)) && k.ends_with("-snippet")
    });
    if snippet {
        assert!(!parsed.is_ok(), "a snippet annotation was accepted");
    }
    let Some(Object::Ingress(ing)) = ingress(&map) else {
        return;
    };
    let inspection = inspect(&ing);
    if inspection.is_servable() {
        assert!(
            parsed.is_ok(),
            "inspect serves what the annotation parser refused"
        );
    }
});
