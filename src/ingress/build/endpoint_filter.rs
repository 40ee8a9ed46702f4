//! Addresses an Ingress backend is never allowed to send traffic to. In a cluster, a
//! namespace user who can write a selector-less Service and its EndpointSlice chooses the
//! addresses the proxy dials: without this, they could reach the proxy's own admin
//! listener, node-local services, or the cloud metadata endpoint (the CVE-2021-25740
//! class). The files source runs its pods on loopback by design, so there only the
//! proxy's own listeners are refused.
use std::net::{IpAddr, SocketAddr};

/// What compile refuses to put into a backend's endpoint list.
#[derive(Debug, Clone, Default)]
pub struct EndpointFilter {
    /// Refuse loopback, link-local (169.254/16, fe80::/10), unspecified and multicast
    /// addresses (the Kubernetes source).
    pub deny_local: bool,
    /// The proxy's own addresses: its listeners (an unspecified listener address stands
    /// for every local address on that port) and, in a cluster, its pod IP.
    pub own_listeners: Vec<SocketAddr>,
    pub own_ips: Vec<IpAddr>,
}

impl EndpointFilter {
    /// The Kubernetes source's filter: local addresses and everything of our own.
    pub fn cluster(own_listeners: Vec<SocketAddr>, own_ips: Vec<IpAddr>) -> Self {
        EndpointFilter {
            deny_local: true,
            own_listeners,
            own_ips,
        }
    }

    /// The files source's filter: only our own listeners.
    pub fn files(own_listeners: Vec<SocketAddr>) -> Self {
        EndpointFilter {
            deny_local: false,
            own_listeners,
            own_ips: Vec::new(),
        }
    }

    /// Why `addr` must not be dialled, if it must not.
    pub fn refuses(&self, addr: SocketAddr) -> Option<&'static str> {
        let ip = addr.ip().to_canonical();
        if self.deny_local {
            if ip.is_loopback() {
                return Some("a loopback address");
            }
            if ip.is_unspecified() {
                return Some("the unspecified address");
            }
            if ip.is_multicast() || is_broadcast(ip) {
                return Some("a multicast or broadcast address");
            }
            if is_link_local(ip) {
                return Some("a link-local address (the cloud metadata service lives there)");
            }
            if self.own_ips.contains(&ip) {
                return Some("the proxy's own pod address");
            }
        }
        let own = self.own_listeners.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip().to_canonical() == ip
                    || (l.ip().is_unspecified()
                        && (ip.is_loopback() || self.own_ips.contains(&ip))))
        });
        own.then_some("one of the proxy's own listeners")
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn is_broadcast(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cluster_refuses_local_and_own_addresses() {
        let f = EndpointFilter::cluster(
            vec![sa("0.0.0.0:9090"), sa("0.0.0.0:8443")],
            vec!["10.1.2.3".parse().unwrap()],
        );
        for bad in [
            "127.0.0.1:9090",
            "127.0.0.2:8080",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
            "169.254.169.254:80",
            "[fe80::1]:80",
            "0.0.0.0:80",
            "[::]:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
            "10.1.2.3:8080",
        ] {
            assert!(f.refuses(sa(bad)).is_some(), "{bad} allowed");
        }
        for good in [
            "10.1.2.4:8080",
            "10.1.2.4:9090",
            "[fd00::5]:80",
            "192.168.0.9:443",
        ] {
            assert_eq!(f.refuses(sa(good)), None, "{good} refused");
        }
    }

    #[test]
    fn files_refuse_only_our_listeners() {
        let f = EndpointFilter::files(vec![sa("127.0.0.1:9090"), sa("0.0.0.0:9080")]);
        assert!(f.refuses(sa("127.0.0.1:9090")).is_some());
        assert!(
            f.refuses(sa("127.0.0.5:9080")).is_some(),
            "any loopback on a wildcard listener's port"
        );
        assert_eq!(f.refuses(sa("127.0.0.2:8080")), None);
        assert_eq!(
            f.refuses(sa("127.0.0.2:9090")),
            None,
            "another loopback address is another host here"
        );
        assert_eq!(f.refuses(sa("169.254.1.1:80")), None);
    }
}
