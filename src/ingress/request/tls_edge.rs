//! The TLS annotations of an Ingress: `ssl-passthrough` (the HTTPS listener hands the
//! connection to a pod without terminating it), client certificates (`auth-tls-*`) and
//! TLS towards the pods (`proxy-ssl-*`). Parsed once at compile time into one
//! `Option<Arc<TlsEdge>>` of the `Policy`, `None` for an Ingress without any of them.
//!
//! Failure behaviour: as for every annotation, a malformed value is an error that refuses
//! the Ingress (and admission denies it with the same message).
use std::collections::HashMap;
use std::sync::Arc;

use super::backend_tls::BackendTlsSpec;
use super::client_auth::{ClientAuthSpec, HostClientAuth};
use crate::ingress::build::annotations::{Parser, parse_bool};
use crate::ingress::model::snapshot::Backend;

/// Hosts (lower case, exact) the HTTPS listener routes by the ClientHello's server name.
#[derive(Debug, Default)]
pub struct SniTable {
    /// `ssl-passthrough` hosts and the backend their connections are spliced to.
    pub passthrough: HashMap<String, Arc<Backend>>,
    /// Hosts whose connections are asked for a client certificate.
    pub client_auth: HashMap<String, Arc<HostClientAuth>>,
}

/// The entry for `sni`: the exact host, else a `*.parent` rule host covering it.
pub fn by_sni<'m, T>(map: &'m HashMap<String, T>, sni: &str) -> Option<&'m T> {
    if map.is_empty() {
        return None;
    }
    if let Some(v) = map.get(sni) {
        return Some(v);
    }
    let (_, parent) = sni.split_once('.')?;
    map.get(&format!("*.{parent}"))
}

/// What the TLS annotations of one Ingress ask for.
#[derive(Debug, Default)]
pub struct TlsEdge {
    /// `ssl-passthrough`: the Ingress's hosts are spliced to their backend by SNI.
    pub passthrough: bool,
    /// `auth-tls-*`: client certificates on the Ingress's hosts.
    pub client_auth: Option<Arc<ClientAuthSpec>>,
    /// `proxy-ssl-*`: TLS towards the Ingress's pods.
    pub backend_tls: Option<Arc<BackendTlsSpec>>,
}

/// Reads the group from `p`; `None` when no annotation of it is set.
pub(crate) fn parse(p: &mut Parser<'_>) -> Option<Arc<TlsEdge>> {
    let passthrough = p.value("ssl-passthrough", parse_bool).unwrap_or(false);
    let client_auth = super::client_auth::parse(p);
    let backend_tls = super::backend_tls::parse(p);
    let edge = TlsEdge {
        passthrough,
        client_auth,
        backend_tls,
    };
    let any = edge.passthrough || edge.client_auth.is_some() || edge.backend_tls.is_some();
    any.then(|| Arc::new(edge))
}

#[cfg(test)]
mod tests {
    use crate::ingress::build::annotations::parse_pairs as parse;

    #[test]
    fn sni_lookup_exact_then_wildcard() {
        let mut m = std::collections::HashMap::new();
        m.insert("a.example.com".to_string(), 1);
        m.insert("*.example.com".to_string(), 2);
        assert_eq!(super::by_sni(&m, "a.example.com"), Some(&1));
        assert_eq!(super::by_sni(&m, "b.example.com"), Some(&2));
        assert_eq!(super::by_sni(&m, "x.b.example.com"), None);
        assert_eq!(super::by_sni(&m, "example.com"), None);
    }

    #[test]
    fn passthrough() {
        let p = parse(&[("nginx.ingress.kubernetes.io/ssl-passthrough", "true")]);
        assert!(p.is_ok() && p.warnings.is_empty(), "{:?}", p.warnings);
        assert!(p.policy.tls_edge.unwrap().passthrough);
        let p = parse(&[("portcullis.io/ssl-passthrough", "false")]);
        assert!(p.policy.tls_edge.is_none());
        let p = parse(&[("nginx.ingress.kubernetes.io/ssl-passthrough", "yes")]);
        assert_eq!(
            p.errors[0].key.as_deref(),
            Some("nginx.ingress.kubernetes.io/ssl-passthrough")
        );
        assert!(parse(&[]).policy.tls_edge.is_none());
    }
}
