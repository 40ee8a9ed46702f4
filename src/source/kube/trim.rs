//! Trimming of watched objects before they are stored: everything compile never reads and
//! that is large or churns (managedFields, kubectl's last-applied copy, resourceVersion,
//! status that is not used, Secret keys other than the certificate).
//!
//! Failure behaviour: none; trimming only removes fields.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service, ServiceStatus};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// kubectl's copy of the whole object, often as big as the object itself.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The Secret keys compile (or a later client-certificate check) can use.
pub const SECRET_KEYS: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// Drops what no kind needs from the metadata. The resourceVersion goes too: the watcher
/// has already taken it from the event, and without it an update that changes nothing we
/// read (an Ingress status write, a relabel of nothing) compares equal to what is stored.
pub fn meta(m: &mut ObjectMeta) {
    m.managed_fields = None;
    m.resource_version = None;
    m.self_link = None;
    if let Some(annotations) = m.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            m.annotations = None;
        }
    }
}

pub fn ingress_class(o: &mut IngressClass) {
    meta(&mut o.metadata);
}

/// Ingress status is written by the status publisher, never read by compile.
pub fn ingress(o: &mut Ingress) {
    meta(&mut o.metadata);
    o.status = None;
}

/// Only the load-balancer addresses of a Service status are used (`--publish-service`).
pub fn service(o: &mut Service) {
    meta(&mut o.metadata);
    if let Some(status) = o.status.take() {
        o.status = status.load_balancer.map(|lb| ServiceStatus {
            load_balancer: Some(lb),
            conditions: None,
        });
    }
}

/// Deprecated per-endpoint topology duplicates the zone/node fields.
pub fn endpoint_slice(o: &mut EndpointSlice) {
    meta(&mut o.metadata);
    for endpoint in &mut o.endpoints {
        endpoint.deprecated_topology = None;
    }
}

pub fn endpoints(o: &mut Endpoints) {
    meta(&mut o.metadata);
}

/// A named ConfigMap keeps its `data` (the header entries); `binaryData` is never read.
pub fn config_map(o: &mut ConfigMap) {
    meta(&mut o.metadata);
    o.binary_data = None;
}

/// A TLS Secret keeps its certificate, key and CA; anything else stored beside them (some
/// tools add whole chains or PKCS#12 bundles) stays out of memory.
pub fn secret(o: &mut Secret) {
    meta(&mut o.metadata);
    if let Some(data) = o.data.as_mut() {
        keep_secret_keys(data);
    }
    if let Some(data) = o.string_data.as_mut() {
        keep_secret_keys(data);
    }
}

/// A Secret some Ingress names that is not a TLS Secret (an htpasswd file, a user map, a CA
/// bundle): every key may be the one asked for, so all are kept. An absent `data` becomes an
/// empty map, so a kept Secret is never mistaken for a [`secret_stub`].
pub fn referenced_secret(o: &mut Secret) {
    meta(&mut o.metadata);
    o.data.get_or_insert_default();
}

/// What is left of a Secret no Ingress names: its identity and type, never its data, so
/// the source knows it exists and can fetch it whole when an Ingress starts naming it.
pub fn secret_stub(o: &mut Secret) {
    let metadata = ObjectMeta {
        name: o.metadata.name.take(),
        namespace: o.metadata.namespace.take(),
        ..ObjectMeta::default()
    };
    *o = Secret {
        metadata,
        type_: o.type_.take(),
        ..Secret::default()
    };
}

/// Whether a Secret was cut down by [`secret_stub`].
pub fn is_stub(o: &Secret) -> bool {
    o.data.is_none() && o.string_data.is_none()
}

fn keep_secret_keys<V>(map: &mut BTreeMap<String, V>) {
    map.retain(|k, _| SECRET_KEYS.contains(&k.as_str()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_bookkeeping_and_keeps_what_compile_reads() {
        let mut ing: Ingress = serde_json::from_value(json!({
            "metadata": {
                "name": "web", "namespace": "ns", "resourceVersion": "42",
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "annotations": {LAST_APPLIED: "{...}", "nginx.ingress.kubernetes.io/rewrite-target": "/"}
            },
            "spec": {"ingressClassName": "portcullis"},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}
        }))
        .unwrap();
        ingress(&mut ing);
        assert_eq!(ing.metadata.resource_version, None);
        assert_eq!(ing.metadata.managed_fields, None);
        let annotations = ing.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.len(), 1);
        assert!(annotations.contains_key("nginx.ingress.kubernetes.io/rewrite-target"));
        assert!(ing.status.is_none());
        assert!(ing.spec.is_some());

        let mut class: IngressClass = serde_json::from_value(json!({
            "metadata": {"name": "c", "annotations": {LAST_APPLIED: "{}"}}
        }))
        .unwrap();
        ingress_class(&mut class);
        assert_eq!(class.metadata.annotations, None, "an emptied map goes");
    }

    #[test]
    fn service_keeps_only_load_balancer_status() {
        let mut svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns"},
            "status": {
                "loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]},
                "conditions": [{"type": "Ready", "status": "True", "reason": "x", "message": "",
                                "lastTransitionTime": "2024-01-01T00:00:00Z"}]
            }
        }))
        .unwrap();
        service(&mut svc);
        let status = svc.status.unwrap();
        assert!(status.conditions.is_none());
        let ip = status.load_balancer.unwrap().ingress.unwrap()[0].ip.clone();
        assert_eq!(ip.as_deref(), Some("192.0.2.7"));
    }

    #[test]
    fn secret_keeps_certificate_keys_only() {
        let mut s: Secret = serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "YQ==", "tls.key": "Yg==", "ca.crt": "Yw==", "bundle.p12": "ZA=="}
        }))
        .unwrap();
        secret(&mut s);
        let keys: Vec<&String> = s.data.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
    }

    #[test]
    fn unreferenced_secrets_keep_no_data() {
        let full = || -> Secret {
            serde_json::from_value(json!({
                "metadata": {"name": "s", "namespace": "ns", "labels": {"a": "b"}},
                "type": "Opaque",
                "data": {"auth": "YQ==", "alice": "Yg=="}
            }))
            .unwrap()
        };
        let mut s = full();
        secret_stub(&mut s);
        assert!(is_stub(&s));
        assert_eq!(s.metadata.name.as_deref(), Some("s"));
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert!(s.metadata.labels.is_none());
        let mut s = full();
        referenced_secret(&mut s);
        assert_eq!(s.data.as_ref().unwrap().len(), 2, "every key kept");
        let mut empty = Secret::default();
        referenced_secret(&mut empty);
        assert!(!is_stub(&empty));
    }

    #[test]
    fn slice_drops_deprecated_topology() {
        let mut s: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                           "deprecatedTopology": {"kubernetes.io/hostname": "n1"}}]
        }))
        .unwrap();
        endpoint_slice(&mut s);
        assert!(s.endpoints[0].deprecated_topology.is_none());
        assert_eq!(s.endpoints[0].addresses, ["10.0.0.1"]);
    }
}
