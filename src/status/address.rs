//! The load-balancer addresses written into `status.loadBalancer.ingress`: parsed from
//! `--publish-status-address`, read from a Service's or an Ingress's status, and turned
//! into the merge patch that writes them.
//!
//! Failure behaviour: only flag parsing fails (at startup, naming the bad value); statuses
//! read from the API are taken as they are, in a canonical order so equal sets compare equal.
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;

/// One entry of `status.loadBalancer.ingress`. Ports are not published (as ingress-nginx
/// does not), so they take no part in comparisons either.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub ip: Option<String>,
    pub hostname: Option<String>,
}

impl Address {
    pub fn ip(ip: IpAddr) -> Self {
        Address {
            ip: Some(ip.to_string()),
            hostname: None,
        }
    }

    pub fn hostname(name: impl Into<String>) -> Self {
        Address {
            ip: None,
            hostname: Some(name.into()),
        }
    }
}

/// Why a flag value is not an address list or a Service reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("--publish-status-address is empty")]
    Empty,
    #[error("{0:?} is neither an IP address nor a DNS name")]
    NotAnAddress(String),
    #[error("--publish-service {0:?} is not NAMESPACE/NAME")]
    NotAServiceRef(String),
}

/// `--publish-status-address a,b`: IPs become `ip`, DNS names `hostname` (lower-cased, as
/// the API server only accepts lower-case names).
pub fn parse_status_addresses(value: &str) -> Result<Vec<Address>, AddressError> {
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Ok(ip) = part.parse::<IpAddr>() {
            out.push(Address::ip(ip));
        } else if is_dns_name(part) {
            out.push(Address::hostname(part.to_ascii_lowercase()));
        } else {
            return Err(AddressError::NotAnAddress(part.to_string()));
        }
    }
    if out.is_empty() {
        return Err(AddressError::Empty);
    }
    Ok(canonical(out))
}

/// `--publish-service NAMESPACE/NAME`.
pub fn parse_service_ref(value: &str) -> Result<(String, String), AddressError> {
    match value.split_once('/') {
        Some((ns, name)) if is_dns_label(ns) && is_dns_label(name) => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(AddressError::NotAServiceRef(value.to_string())),
    }
}

/// A Service's load-balancer addresses (empty until its load balancer is provisioned).
pub fn from_service(service: &Service) -> Vec<Address> {
    let entries = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    canonical(
        entries
            .into_iter()
            .flatten()
            .map(|e| Address {
                ip: e.ip.clone(),
                hostname: e.hostname.clone(),
            })
            .filter(|a| a.ip.is_some() || a.hostname.is_some())
            .collect(),
    )
}

/// What an Ingress's status says now.
pub fn from_ingress(ingress: &Ingress) -> Vec<Address> {
    let entries = ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    canonical(
        entries
            .into_iter()
            .flatten()
            .map(|e| Address {
                ip: e.ip.clone(),
                hostname: e.hostname.clone(),
            })
            .collect(),
    )
}

/// Sorted and deduplicated, so two statuses with the same entries compare equal.
pub fn canonical(mut addresses: Vec<Address>) -> Vec<Address> {
    addresses.sort();
    addresses.dedup();
    addresses
}

/// The JSON merge patch of the status subresource that sets exactly `addresses`; an empty
/// list clears the status. A merge patch replaces lists whole, so stale entries go too.
pub fn status_patch(addresses: &[Address]) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = addresses
        .iter()
        .map(|a| {
            let mut entry = serde_json::Map::new();
            if let Some(ip) = &a.ip {
                entry.insert("ip".into(), ip.clone().into());
            }
            if let Some(h) = &a.hostname {
                entry.insert("hostname".into(), h.clone().into());
            }
            serde_json::Value::Object(entry)
        })
        .collect();
    serde_json::json!({ "status": { "loadBalancer": { "ingress": entries } } })
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};

    #[test]
    fn status_addresses_split_into_ips_and_hostnames() {
        let got = parse_status_addresses(" 10.0.0.2, LB.Example.com ,2001:db8::1,").unwrap();
        assert_eq!(
            got,
            vec![
                Address::hostname("lb.example.com"),
                Address::ip("10.0.0.2".parse().unwrap()),
                Address::ip("2001:db8::1".parse().unwrap()),
            ]
        );
        assert_eq!(parse_status_addresses(" , "), Err(AddressError::Empty));
        assert_eq!(
            parse_status_addresses("10.0.0.1,not an address"),
            Err(AddressError::NotAnAddress("not an address".into()))
        );
        assert!(parse_status_addresses("-bad.example").is_err());
        assert!(parse_status_addresses("a..b").is_err());
    }

    #[test]
    fn service_refs_need_namespace_and_name() {
        assert_eq!(
            parse_service_ref("ingress/portcullis").unwrap(),
            ("ingress".to_string(), "portcullis".to_string())
        );
        for bad in ["portcullis", "/x", "ns/", "ns/a/b", "ns/a.b", "n s/x"] {
            assert!(parse_service_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_status_is_read_in_canonical_order() {
        let entry = |ip: Option<&str>, host: Option<&str>| LoadBalancerIngress {
            ip: ip.map(str::to_string),
            hostname: host.map(str::to_string),
            ..Default::default()
        };
        let svc = Service {
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(vec![
                        entry(Some("10.0.0.9"), None),
                        entry(None, Some("lb.example.com")),
                        entry(None, None),
                        entry(Some("10.0.0.1"), None),
                        entry(Some("10.0.0.9"), None),
                    ]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            from_service(&svc),
            vec![
                Address::hostname("lb.example.com"),
                Address::ip("10.0.0.1".parse().unwrap()),
                Address::ip("10.0.0.9".parse().unwrap()),
            ]
        );
        assert!(from_service(&Service::default()).is_empty());
    }

    #[test]
    fn patch_sets_or_clears_the_whole_list() {
        let p = status_patch(&[
            Address::ip("10.0.0.1".parse().unwrap()),
            Address::hostname("lb.example.com"),
        ]);
        assert_eq!(
            p,
            serde_json::json!({"status": {"loadBalancer": {"ingress": [
                {"ip": "10.0.0.1"}, {"hostname": "lb.example.com"}
            ]}}})
        );
        assert_eq!(
            status_patch(&[]),
            serde_json::json!({"status": {"loadBalancer": {"ingress": []}}})
        );
        // What we write reads back as the same set.
        let ingress: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x"},
            "status": p["status"].clone(),
        }))
        .unwrap();
        assert_eq!(
            from_ingress(&ingress),
            vec![
                Address::hostname("lb.example.com"),
                Address::ip("10.0.0.1".parse().unwrap()),
            ]
        );
    }
}
