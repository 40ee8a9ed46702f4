//! Backend resolution: an Ingress backend (Service + port number or name) → the Service
//! port → per EndpointSlice, the slice port of the same name → pod addresses with their
//! conditions; Endpoints (v1) only when a Service has no slices; ExternalName Services to a
//! DNS name.
//!
//! Failure behaviour: a missing Service, an unknown port or a refused ExternalName target
//! yields an empty backend (the path still routes and answers 503) plus a message for the
//! caller to report. Endpoint addresses that do not parse are skipped with a message.
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::endpoint_filter::EndpointFilter;
use crate::ingress::model::snapshot::{Backend, Endpoint, EndpointCell, UpstreamProtocol};
use crate::source::ObjectStore;

/// An Ingress backend's port: `port.number` or `port.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRef {
    Number(i32),
    Name(String),
}

impl PortRef {
    /// Whether a Service port (number, name) is the one this reference means.
    pub fn matches(&self, number: i32, name: Option<&str>) -> bool {
        match self {
            PortRef::Number(n) => number == *n,
            PortRef::Name(n) => name == Some(n.as_str()),
        }
    }
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => f.write_str(n),
        }
    }
}

/// What an Ingress's annotations ask of how its backends are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ResolveAs {
    /// `backend-protocol`: overrides the Service port's `appProtocol`.
    pub protocol: Option<UpstreamProtocol>,
    /// `service-upstream`: one endpoint, the Service's ClusterIP and port, so a mesh
    /// sidecar or kube-proxy picks the pod (ingress-nginx's meaning).
    pub service_upstream: bool,
}

/// Resolves one backend. Returns the backend and what was wrong on the way.
pub fn resolve(
    store: &ObjectStore,
    filter: &EndpointFilter,
    namespace: &str,
    service: &str,
    port: &PortRef,
    how: ResolveAs,
) -> (Backend, Vec<String>) {
    let protocol = how.protocol;
    let mut problems = Vec::new();
    let mut backend = Backend {
        name: Arc::from(format!("{namespace}/{service}:{port}")),
        protocol: protocol.unwrap_or(UpstreamProtocol::Http1),
        endpoints: EndpointCell::default(),
        external: None,
    };
    let Some(svc) = store.service(namespace, service) else {
        problems.push(format!(
            "backend Service {namespace}/{service} does not exist; requests get 503"
        ));
        return (backend, problems);
    };
    let spec = svc.spec.as_ref();
    let ports: &[ServicePort] = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
    let svc_port = ports
        .iter()
        .find(|p| port.matches(p.port, p.name.as_deref()));
    if let Some(p) = svc_port
        && protocol.is_none()
    {
        backend.protocol = protocol_of(p.app_protocol.as_deref());
    }

    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        external(svc, svc_port, port, &mut backend, &mut problems);
        return (backend, problems);
    }
    let Some(svc_port) = svc_port else {
        problems.push(format!(
            "Service {namespace}/{service} has no port {port}; requests get 503"
        ));
        return (backend, problems);
    };

    let mut found: BTreeMap<SocketAddr, Endpoint> = BTreeMap::new();
    if how.service_upstream {
        match cluster_ip(svc, svc_port) {
            Some(addr) => {
                merge(
                    &mut found,
                    Endpoint {
                        addr,
                        ready: true,
                        serving: true,
                        terminating: false,
                    },
                );
            }
            None => problems.push(format!(
                "Service {namespace}/{service} has no ClusterIP for service-upstream; its endpoints are used"
            )),
        }
    }
    // With service-upstream the ClusterIP stands for every pod; the pods' own
    // addresses are read only when there is no ClusterIP to use.
    if found.is_empty() {
        let mut any_slice = false;
        for slice in store.endpoint_slices(namespace, service) {
            any_slice = true;
            from_slice(slice, svc_port, &mut found, &mut problems);
        }
        if !any_slice {
            from_endpoints(store, namespace, service, svc_port, &mut found);
        }
    }
    found.retain(|addr, _| match filter.refuses(*addr) {
        None => true,
        Some(why) => {
            problems.push(format!(
                "Service {namespace}/{service}: endpoint {addr} is {why}; never dialled"
            ));
            false
        }
    });
    let all: Vec<Endpoint> = found.into_values().collect();
    let eligible = eligible(&all);
    backend.endpoints = EndpointCell::new(all, eligible);
    (backend, problems)
}

/// The Service's ClusterIP with the port clients of the Service use; `None` for headless
/// Services and ones without an address yet.
fn cluster_ip(svc: &Service, port: &ServicePort) -> Option<SocketAddr> {
    let ip: IpAddr = svc.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()?;
    let port = u16::try_from(port.port).ok().filter(|p| *p != 0)?;
    Some(SocketAddr::new(ip, port))
}

/// The addresses that may take new requests: ready ones; if none, serving ∧ terminating
/// ones (kube-proxy's fallback, so draining pods still answer when nothing else can).
pub fn eligible(endpoints: &[Endpoint]) -> Vec<SocketAddr> {
    let ready: Vec<SocketAddr> = endpoints
        .iter()
        .filter(|e| e.ready)
        .map(|e| e.addr)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints
        .iter()
        .filter(|e| e.serving && e.terminating)
        .map(|e| e.addr)
        .collect()
}

/// Upstream protocol from a Service port's `appProtocol`.
pub fn protocol_of(app_protocol: Option<&str>) -> UpstreamProtocol {
    match app_protocol.map(str::to_ascii_lowercase).as_deref() {
        Some("kubernetes.io/h2c" | "h2c" | "grpc") => UpstreamProtocol::H2c,
        Some("https" | "kubernetes.io/https" | "kubernetes.io/wss" | "wss") => {
            UpstreamProtocol::Https
        }
        Some("grpcs") => UpstreamProtocol::Grpcs,
        _ => UpstreamProtocol::Http1,
    }
}

fn is_tcp(protocol: Option<&str>) -> bool {
    protocol.is_none_or(|p| p == "TCP")
}

fn from_slice(
    slice: &EndpointSlice,
    svc_port: &ServicePort,
    found: &mut BTreeMap<SocketAddr, Endpoint>,
    problems: &mut Vec<String>,
) {
    if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
        return;
    }
    let want = svc_port.name.as_deref().unwrap_or("");
    let port = match slice.ports.as_deref() {
        Some(ports) if !ports.is_empty() => ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == want && is_tcp(p.protocol.as_deref()))
            .and_then(|p| p.port),
        // An empty port list means "all ports": only a numeric targetPort says which.
        _ => match &svc_port.target_port {
            Some(IntOrString::Int(n)) => Some(*n),
            None => Some(svc_port.port),
            Some(IntOrString::String(_)) => None,
        },
    };
    let Some(port) = port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) else {
        return;
    };
    for ep in &slice.endpoints {
        // The built-in controller puts exactly one address in each endpoint.
        let Some(raw) = ep.addresses.first() else {
            continue;
        };
        let Ok(ip) = raw.parse::<IpAddr>() else {
            problems.push(format!(
                "EndpointSlice {}: address {raw:?} is not an IP; skipped",
                slice.metadata.name.as_deref().unwrap_or("")
            ));
            continue;
        };
        let c = ep.conditions.as_ref();
        let ready = c.and_then(|c| c.ready).unwrap_or(true);
        let serving = c.and_then(|c| c.serving).unwrap_or(ready);
        let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
        merge(
            found,
            Endpoint {
                addr: SocketAddr::new(ip, port),
                ready,
                serving,
                terminating,
            },
        );
    }
}

/// Slices are updated independently, so one pod can briefly sit in two of them; the more
/// available view wins so a move between slices never drops it.
fn merge(found: &mut BTreeMap<SocketAddr, Endpoint>, ep: Endpoint) {
    let rank = |e: &Endpoint| (e.ready, e.serving, !e.terminating);
    match found.get(&ep.addr) {
        Some(old) if rank(old) >= rank(&ep) => {}
        _ => {
            found.insert(ep.addr, ep);
        }
    }
}

fn from_endpoints(
    store: &ObjectStore,
    namespace: &str,
    service: &str,
    svc_port: &ServicePort,
    found: &mut BTreeMap<SocketAddr, Endpoint>,
) {
    let Some(eps) = store.endpoints(namespace, service) else {
        return;
    };
    let want = svc_port.name.as_deref().unwrap_or("");
    for subset in eps.subsets.iter().flatten() {
        let Some(port) = subset
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == want && is_tcp(p.protocol.as_deref()))
            .and_then(|p| u16::try_from(p.port).ok())
        else {
            continue;
        };
        let groups = [
            (subset.addresses.as_deref(), true),
            (subset.not_ready_addresses.as_deref(), false),
        ];
        for (addrs, ready) in groups {
            for a in addrs.unwrap_or(&[]) {
                let Ok(ip) = a.ip.parse::<IpAddr>() else {
                    continue;
                };
                merge(
                    found,
                    Endpoint {
                        addr: SocketAddr::new(ip, port),
                        ready,
                        serving: ready,
                        terminating: false,
                    },
                );
            }
        }
    }
}

fn external(
    svc: &Service,
    svc_port: Option<&ServicePort>,
    port: &PortRef,
    backend: &mut Backend,
    problems: &mut Vec<String>,
) {
    let name = svc
        .spec
        .as_ref()
        .and_then(|s| s.external_name.as_deref())
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let svc_name = crate::source::store::object_key(&svc.metadata);
    // ExternalName Services may omit ports; the Ingress's port number is then the target.
    let target = match (svc_port, port) {
        (Some(p), _) => match &p.target_port {
            Some(IntOrString::Int(n)) => *n,
            _ => p.port,
        },
        (None, PortRef::Number(n)) => *n,
        (None, PortRef::Name(n)) => {
            problems.push(format!("ExternalName Service {svc_name} has no port {n}"));
            return;
        }
    };
    let Some(target) = u16::try_from(target).ok().filter(|p| *p != 0) else {
        problems.push(format!(
            "ExternalName Service {svc_name}: port {target} is invalid"
        ));
        return;
    };
    if let Err(why) = check_external_name(&name) {
        problems.push(format!(
            "ExternalName Service {svc_name}: {why}; requests get 503"
        ));
        return;
    }
    backend.external = Some((name, target));
}

/// Refuses targets that would make the proxy talk to itself or its node.
fn check_external_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("spec.externalName is empty".into());
    }
    if let Ok(ip) = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        if crate::ingress::request::resolve::forbidden(ip) {
            return Err(format!("target {name} is a loopback address"));
        }
        return Ok(());
    }
    if name == "localhost" || name.ends_with(".localhost") {
        return Err(format!("target {name} is a loopback name"));
    }
    let valid = name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if !valid {
        return Err(format!("target {name:?} is not a DNS name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(addr: &str, ready: bool, serving: bool, terminating: bool) -> Endpoint {
        Endpoint {
            addr: addr.parse().unwrap(),
            ready,
            serving,
            terminating,
        }
    }

    #[test]
    fn eligibility_follows_kube_proxy() {
        let all = [
            ep("10.0.0.1:80", true, true, false),
            ep("10.0.0.2:80", false, true, true),
        ];
        assert_eq!(eligible(&all), vec![all[0].addr]);
        let draining = [
            ep("10.0.0.2:80", false, true, true),
            ep("10.0.0.3:80", false, false, true),
            ep("10.0.0.4:80", false, false, false),
        ];
        assert_eq!(eligible(&draining), vec![draining[0].addr]);
        assert!(eligible(&draining[1..]).is_empty());
    }

    #[test]
    fn app_protocols() {
        assert_eq!(
            protocol_of(Some("kubernetes.io/h2c")),
            UpstreamProtocol::H2c
        );
        assert_eq!(protocol_of(Some("grpc")), UpstreamProtocol::H2c);
        assert_eq!(protocol_of(Some("HTTPS")), UpstreamProtocol::Https);
        assert_eq!(
            protocol_of(Some("kubernetes.io/ws")),
            UpstreamProtocol::Http1
        );
        assert_eq!(protocol_of(None), UpstreamProtocol::Http1);
    }

    #[test]
    fn external_names_refuse_loopback() {
        for bad in [
            "localhost",
            "a.localhost",
            "127.0.0.1",
            "::1",
            "[::1]",
            "0.0.0.0",
            "",
            "a..b",
        ] {
            assert!(check_external_name(bad).is_err(), "{bad}");
        }
        for good in ["api.example.com", "10.1.2.3", "db"] {
            assert!(check_external_name(good).is_ok(), "{good}");
        }
    }
}
