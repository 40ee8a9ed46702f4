//! SNI certificate selection: exact host, then `*.parent` wildcard, then a default.
use std::collections::HashMap;
use std::sync::Arc;

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
