//! The `edge` settings turned into what `serve` hands the ingress listeners and the
//! proxy: PROXY protocol, the HTTPS listener's TLS versions and suites, HSTS and server
//! tokens, and the forwarded-header trust of `useForwardedHeaders`.
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ipnet::IpNet;
use portcullis::config::EdgeSettings;
use portcullis::ingress::request::edge_headers::EdgeHeaders;
use portcullis::ingress::request::gateway::Gateway;
use portcullis::ingress::request::sni_routes::SniRoutes;
use portcullis::server::{EdgeOptions, SniHook};
use portcullis::tls::{Resumption, SniResolver, TlsPolicy, server_config_for};

/// The edge settings, checked and converted once at start-up.
pub struct Edge {
    pub headers: Option<EdgeHeaders>,
    pub full_forwarded_for: bool,
    proxy_protocol: Option<Duration>,
    tls: TlsPolicy,
    passthrough: bool,
}

impl Edge {
    /// Checks `s`; with `useForwardedHeaders` its CIDRs join `trusted` (the peers whose
    /// X-Forwarded-* are believed, `ingress.trustedCidrs`).
    pub fn from_settings(s: &EdgeSettings, trusted: &mut Vec<IpNet>) -> anyhow::Result<Edge> {
        let (tls, warnings) = TlsPolicy::from_openssl(&s.ssl_protocols, &s.ssl_ciphers)
            .context("edge settings (sslProtocols / sslCiphers)")?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        if s.use_forwarded_headers {
            for cidr in &s.proxy_real_ip_cidr {
                let net = cidr
                    .parse::<IpNet>()
                    .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "edge.proxyRealIpCidr: {cidr:?} is not a CIDR or an IP address"
                        )
                    })?;
                if !trusted.contains(&net) {
                    trusted.push(net);
                }
            }
        }
        if s.use_proxy_protocol {
            tracing::info!("ingress listeners expect a PROXY protocol header on every connection");
        }
        Ok(Edge {
            headers: EdgeHeaders::from_settings(s),
            // The whole chain unless useForwardedHeaders asked for the client alone;
            // trustedCidrs on its own keeps the chain, as it always did.
            full_forwarded_for: !s.use_forwarded_headers || s.compute_full_forwarded_for,
            proxy_protocol: s.proxy_protocol(),
            tls,
            passthrough: s.enable_ssl_passthrough,
        })
    }

    /// The pre-TLS steps of the ingress listener `name` (`http` or `https`).
    pub fn listener_options(
        &self,
        name: &str,
        gateway: &Arc<Gateway>,
        resolver: &Arc<SniResolver>,
        resumption: Resumption,
    ) -> EdgeOptions {
        let sni_hook = (name == "https").then(|| {
            Arc::new(SniRoutes::new(
                gateway.clone(),
                self.passthrough,
                resolver.clone(),
                self.tls.clone(),
                resumption,
            )) as Arc<dyn SniHook>
        });
        EdgeOptions {
            proxy_protocol: self.proxy_protocol,
            sni_hook,
        }
    }

    /// The HTTPS listener's TLS configuration.
    pub fn https_config(
        &self,
        resolver: Arc<SniResolver>,
        resumption: Resumption,
    ) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        Ok(server_config_for(resolver, resumption, &self.tls, None)?)
    }
}
