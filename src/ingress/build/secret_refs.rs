//! Which Secrets an Ingress names: its `spec.tls` certificates and the annotations that point
//! at a Secret (`auth-secret`, `auth-tls-secret`, `proxy-ssl-secret`, under either prefix),
//! and which ConfigMaps (`auth-proxy-set-headers`).
//! Sources use this to keep in memory only Secrets some Ingress needs; compile and the
//! annotation parsers use [`parse_secret_ref`] so every reader agrees on a reference's form.
//!
//! Failure behaviour: a malformed reference is skipped here (nothing to fetch); the
//! annotation's own parser reports it.
use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::Ingress;

use super::annotations::{NGINX_PREFIX, PORTCULLIS_PREFIX};

/// Annotations (without prefix) whose value is `namespace/name` or `name` of a Secret.
pub const SECRET_ANNOTATIONS: [&str; 3] = ["auth-secret", "auth-tls-secret", "proxy-ssl-secret"];
/// Annotations (without prefix) whose value is `namespace/name` or `name` of a ConfigMap.
pub const CONFIG_MAP_ANNOTATIONS: [&str; 1] = ["auth-proxy-set-headers"];

/// A Secret named by an Ingress.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

impl SecretRef {
    /// `namespace/name`, the store's key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Parses an annotation value naming a Secret: `namespace/name`, or `name` in
/// `default_namespace` (the Ingress's own, as ingress-nginx does).
pub fn parse_secret_ref(value: &str, default_namespace: &str) -> Result<SecretRef, String> {
    parse_ref(value, default_namespace, "Secret")
}

/// [`parse_secret_ref`] for a ConfigMap (same forms, same key).
pub fn parse_config_map_ref(value: &str, default_namespace: &str) -> Result<SecretRef, String> {
    parse_ref(value, default_namespace, "ConfigMap")
}

fn parse_ref(value: &str, default_namespace: &str, kind: &str) -> Result<SecretRef, String> {
    let value = value.trim();
    let (namespace, name) = match value.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (default_namespace, value),
    };
    if !is_dns_label(namespace) {
        return Err(format!("{namespace:?} is not a valid namespace"));
    }
    if !is_dns_subdomain(name) {
        return Err(format!("{name:?} is not a valid {kind} name"));
    }
    Ok(SecretRef {
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// Every Secret `ingress` names, as `namespace/name` store keys.
pub fn referenced_secrets(ingress: &Ingress) -> BTreeSet<String> {
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeSet::new();
    let tls = ingress.spec.as_ref().and_then(|s| s.tls.as_deref());
    for entry in tls.unwrap_or_default() {
        if let Some(name) = entry.secret_name.as_deref().filter(|n| !n.is_empty()) {
            out.insert(format!("{namespace}/{name}"));
        }
    }
    if let Some(annotations) = &ingress.metadata.annotations {
        for short in SECRET_ANNOTATIONS {
            for prefix in [PORTCULLIS_PREFIX, NGINX_PREFIX] {
                let Some(value) = annotations.get(&format!("{prefix}{short}")) else {
                    continue;
                };
                if let Ok(r) = parse_secret_ref(value, namespace) {
                    out.insert(r.key());
                }
            }
        }
    }
    out
}

/// Every ConfigMap `ingress` names, as `namespace/name` store keys.
pub fn referenced_config_maps(ingress: &Ingress) -> BTreeSet<String> {
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeSet::new();
    let Some(annotations) = &ingress.metadata.annotations else {
        return out;
    };
    for short in CONFIG_MAP_ANNOTATIONS {
        for prefix in [PORTCULLIS_PREFIX, NGINX_PREFIX] {
            if let Some(value) = annotations.get(&format!("{prefix}{short}"))
                && let Ok(r) = parse_config_map_ref(value, namespace)
            {
                out.insert(r.key());
            }
        }
    }
    out
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && !s.is_empty() && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_come_from_tls_and_both_annotation_prefixes() {
        let ingress: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": {
                "nginx.ingress.kubernetes.io/auth-secret": "basic",
                "portcullis.io/auth-tls-secret": "certs/ca",
                "nginx.ingress.kubernetes.io/proxy-ssl-secret": "Bad_Name",
                "nginx.ingress.kubernetes.io/rewrite-target": "/x"
            }},
            "spec": {"tls": [{"hosts": ["a.test"], "secretName": "a-tls"}, {"hosts": ["b.test"]}]}
        }))
        .unwrap();
        let refs: Vec<String> = referenced_secrets(&ingress).into_iter().collect();
        assert_eq!(refs, ["certs/ca", "shop/a-tls", "shop/basic"]);
        assert!(referenced_config_maps(&ingress).is_empty());
        let ingress: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": {
                "nginx.ingress.kubernetes.io/auth-proxy-set-headers": "auth-headers",
                "portcullis.io/auth-proxy-set-headers": "a/b/c"
            }}
        }))
        .unwrap();
        let refs: Vec<String> = referenced_config_maps(&ingress).into_iter().collect();
        assert_eq!(refs, ["shop/auth-headers"]);
    }

    #[test]
    fn reference_forms() {
        let r = parse_secret_ref(" other/htpasswd ", "shop").unwrap();
        assert_eq!(r.key(), "other/htpasswd");
        assert_eq!(parse_secret_ref("x.y", "shop").unwrap().key(), "shop/x.y");
        assert!(parse_secret_ref("a/b/c", "shop").is_err());
        assert!(parse_secret_ref("/x", "shop").is_err());
        assert!(parse_secret_ref("Upper", "shop").is_err());
        assert!(parse_secret_ref("", "shop").is_err());
    }
}
