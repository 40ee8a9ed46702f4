//! TCP connects by DNS name, for ExternalName backends.
//!
//! Compile already refuses an ExternalName that *is* a loopback address or name, but a
//! name can still resolve to one. Anyone allowed to create a Service could then point an
//! Ingress at the proxy's own admin listener or at services bound to the node's
//! loopback, so the answer is filtered here, at connect time, on every connect (DNS
//! answers change).
use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;

/// Why a name could not be connected to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("resolving {0} failed: {1}")]
    Lookup(String, #[source] io::Error),
    #[error("{0} resolves only to loopback or unspecified addresses ({1}); refused")]
    Forbidden(String, String),
    #[error("{0} resolved to no address")]
    Empty(String),
    /// Every allowed address failed; the last error tells why.
    #[error("connect to {0} failed: {1}")]
    Connect(String, #[source] io::Error),
}

/// Addresses a proxied request must never reach through a DNS name.
pub fn forbidden(ip: IpAddr) -> bool {
    // `::ffff:127.0.0.1` is loopback too, though `Ipv6Addr::is_loopback` says no.
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified()
}

/// Resolves `host` and connects to the first allowed address that accepts, in the
/// resolver's order.
pub async fn connect(host: &str, port: u16) -> Result<TcpStream, ResolveError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ResolveError::Lookup(host.to_string(), e))?
        .collect();
    let (refused, allowed): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.into_iter().partition(|a| forbidden(a.ip()));
    if allowed.is_empty() {
        if refused.is_empty() {
            return Err(ResolveError::Empty(host.to_string()));
        }
        let list: Vec<String> = refused.iter().map(|a| a.ip().to_string()).collect();
        return Err(ResolveError::Forbidden(host.to_string(), list.join(", ")));
    }
    let mut last = None;
    for addr in allowed {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::other("no address tried"));
    Err(ResolveError::Connect(host.to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_in_every_spelling_is_forbidden() {
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(forbidden(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "10.0.0.1",
            "93.184.216.34",
            "2001:db8::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(!forbidden(good.parse().unwrap()), "{good}");
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_before_any_connect() {
        // A listener is there to accept: only the filter can stop the connect.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = connect("localhost", port).await.unwrap_err();
        assert!(matches!(err, ResolveError::Forbidden(..)), "{err}");
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(50), listener.accept()).await;
        assert!(accepted.is_err(), "the proxy connected to loopback");
    }
}
