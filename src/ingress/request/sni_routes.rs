//! The HTTPS listener's `SniHook`: from the ClientHello's server name, which connections
//! are not terminated here (`ssl-passthrough`: spliced to a pod as raw TCP) and which get
//! a TLS configuration of their host's own (client certificates).
//!
//! Failure behaviour: a passthrough connection whose backend has no reachable endpoint
//! (one retry on another) is closed; the client sees a failed handshake, which is all a
//! proxy that does not terminate TLS can say.
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::server::ResolvesServerCert;
use tokio::net::TcpStream;

use crate::ingress::model::policy::Balance;
use crate::ingress::model::snapshot::Backend;
use crate::ingress::request::gateway::Gateway;
use crate::ingress::request::health::monotonic_us;
use crate::ingress::request::tls_edge::by_sni;
use crate::server::prefixed::Prefixed;
use crate::server::{SniChoice, SniHook};
use crate::tls::{Resumption, TlsPolicy};

/// The hook over the gateway's current snapshot.
pub struct SniRoutes {
    gateway: Arc<Gateway>,
    /// `enableSslPassthrough`: without it the annotation is ignored, as in ingress-nginx.
    passthrough: bool,
    /// What per-host TLS configurations are built from: the listener's certificates,
    /// versions, suites and resumption.
    resolver: Arc<dyn ResolvesServerCert>,
    tls: TlsPolicy,
    resumption: Resumption,
}

impl SniRoutes {
    pub fn new(
        gateway: Arc<Gateway>,
        passthrough: bool,
        resolver: Arc<dyn ResolvesServerCert>,
        tls: TlsPolicy,
        resumption: Resumption,
    ) -> Self {
        SniRoutes {
            gateway,
            passthrough,
            resolver,
            tls,
            resumption,
        }
    }
}

impl SniHook for SniRoutes {
    fn active(&self) -> bool {
        let snap = self.gateway.snapshot().load();
        (self.passthrough && !snap.sni.passthrough.is_empty()) || !snap.sni.client_auth.is_empty()
    }

    fn route(&self, sni: Option<&str>) -> SniChoice {
        let Some(sni) = sni else {
            return SniChoice::Default;
        };
        let snap = self.gateway.snapshot().load();
        if self.passthrough
            && let Some(backend) = by_sni(&snap.sni.passthrough, sni)
        {
            let (gateway, backend) = (self.gateway.clone(), backend.clone());
            return SniChoice::Splice(Box::new(move |client, remote| {
                Box::pin(splice(gateway, backend, client, remote))
            }));
        }
        if let Some(auth) = by_sni(&snap.sni.client_auth, sni)
            && let Some(config) = auth.server_config(&self.resolver, &self.tls, self.resumption)
        {
            return SniChoice::Tls {
                config,
                check: auth.clone(),
            };
        }
        SniChoice::Default
    }
}

/// Connects to an endpoint of `backend` (a second one if the first refuses) and copies
/// bytes both ways until either side closes.
async fn splice(
    gateway: Arc<Gateway>,
    backend: Arc<Backend>,
    mut client: Prefixed<TcpStream>,
    remote: SocketAddr,
) {
    let proxy = gateway.proxy();
    let timeout = proxy.config().connect_timeout;
    let mut exclude = None;
    for _ in 0..2 {
        let Some(pick) = proxy.balancer().pick(&backend, Balance::default(), exclude) else {
            tracing::debug!(backend = %backend.name, %remote, "ssl-passthrough: no ready endpoint");
            return;
        };
        let mut upstream = match tokio::time::timeout(timeout, TcpStream::connect(pick.addr)).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(endpoint = %pick.addr, error = %e, "ssl-passthrough: connect failed");
                pick.stats.health.record_connect_failure(monotonic_us());
                exclude = Some(pick.addr);
                continue;
            }
            Err(_) => {
                tracing::debug!(endpoint = %pick.addr, "ssl-passthrough: connect timed out");
                pick.stats.health.record_connect_failure(monotonic_us());
                exclude = Some(pick.addr);
                continue;
            }
        };
        let _ = upstream.set_nodelay(true);
        pick.stats.health.record_success();
        let _in_flight = pick.stats.start();
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => {
                tracing::debug!(endpoint = %pick.addr, %remote, up, down, "ssl-passthrough connection closed")
            }
            Err(e) => {
                tracing::debug!(endpoint = %pick.addr, %remote, error = %e, "ssl-passthrough connection failed")
            }
        }
        return;
    }
}
