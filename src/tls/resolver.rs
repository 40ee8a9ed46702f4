//! SNI certificate selection: exact host, then `*.parent` wildcard, then a default.
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates by server name. Keys are lower case.
#[derive(Debug, Default, Clone)]
pub struct CertMap {
    /// `www.example.com` → key.
    pub exact: HashMap<String, Arc<CertifiedKey>>,
    /// `example.com` (the parent of `*.example.com`) → key.
    pub wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertMap {
    /// The certificate for `server_name`, if one is configured (exact beats wildcard).
    pub fn get(&self, server_name: &str) -> Option<&Arc<CertifiedKey>> {
        if let Some(k) = self.exact.get(server_name) {
            return Some(k);
        }
        let (_, parent) = server_name.split_once('.')?;
        self.wildcard.get(parent)
    }
}

/// The certificate resolver every TLS listener uses. The map and the default are swapped
/// whole (new snapshot, reloaded file); a handshake only performs two atomic loads.
pub struct SniResolver {
    map: ArcSwap<CertMap>,
    default: ArcSwap<CertifiedKey>,
}

impl SniResolver {
    /// A resolver that serves `default` to every client until a map is set.
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        SniResolver {
            map: ArcSwap::from_pointee(CertMap::default()),
            default: ArcSwap::new(default),
        }
    }

    /// Replaces the per-name certificates (keys must be lower case).
    pub fn set_map(&self, map: CertMap) {
        self.map.store(Arc::new(map));
    }

    /// Replaces the certificate for clients without SNI or with an unknown name.
    pub fn set_default(&self, default: Arc<CertifiedKey>) {
        self.default.store(default);
    }

    /// The certificate a client sending `server_name` (or none) gets.
    pub fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = server_name {
            let map = self.map.load();
            // rustls already lower-cases SNI; the check keeps this independent of that
            // and allocates only for the odd client that still sends upper case.
            let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                map.get(&name.to_ascii_lowercase()).cloned()
            } else {
                map.get(name).cloned()
            };
            if let Some(key) = found {
                return key;
            }
        }
        self.default.load_full()
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.map.load();
        f.debug_struct("SniResolver")
            .field("exact", &map.exact.len())
            .field("wildcard", &map.wildcard.len())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::generate::DevCerts;

    fn key(name: &str) -> Arc<CertifiedKey> {
        DevCerts::generate_for_names(&[name.to_string()])
            .unwrap()
            .certified_key()
            .unwrap()
    }

    fn same(a: &Arc<CertifiedKey>, b: &Arc<CertifiedKey>) -> bool {
        a.end_entity_cert().unwrap() == b.end_entity_cert().unwrap()
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let default = key("default.test");
        let exact = key("www.example.com");
        let wild = key("*.example.com");
        let r = SniResolver::new(default.clone());
        let mut map = CertMap::default();
        map.exact.insert("www.example.com".into(), exact.clone());
        map.wildcard.insert("example.com".into(), wild.clone());
        r.set_map(map);

        assert!(same(&r.pick(Some("www.example.com")), &exact));
        assert!(same(&r.pick(Some("WWW.Example.COM")), &exact));
        assert!(same(&r.pick(Some("api.example.com")), &wild));
        // A wildcard covers exactly one label.
        assert!(same(&r.pick(Some("a.b.example.com")), &default));
        assert!(same(&r.pick(Some("example.com")), &default));
        assert!(same(&r.pick(Some("other.test")), &default));
        assert!(same(&r.pick(None), &default));
    }

    #[test]
    fn swaps_are_seen_by_the_next_lookup() {
        let first = key("first.test");
        let second = key("second.test");
        let r = SniResolver::new(first.clone());
        assert!(same(&r.pick(None), &first));
        r.set_default(second.clone());
        assert!(same(&r.pick(None), &second));

        let mut map = CertMap::default();
        map.exact.insert("first.test".into(), first.clone());
        r.set_map(map);
        assert!(same(&r.pick(Some("first.test")), &first));
        r.set_map(CertMap::default());
        assert!(same(&r.pick(Some("first.test")), &second));
    }
}
