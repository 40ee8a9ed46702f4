//! Response headers the controller adds on its own behalf (ingress-nginx ConfigMap keys):
//! `Strict-Transport-Security` on HTTPS answers for hosts with TLS (`hsts*`), and the
//! version in the `Server` header of answers portcullis generates (`server-tokens`).
use http::Response;
use http::header::{self, HeaderValue};

use crate::body::Body;
use crate::config::EdgeSettings;
use crate::ingress::request::proxy::Scheme;
use crate::ingress::request::respond::SERVER_NAME;

/// What to add to responses; built once from the settings.
#[derive(Debug, Clone)]
pub struct EdgeHeaders {
    hsts: Option<HeaderValue>,
    /// `portcullis/<version>` when server tokens are on.
    server: Option<HeaderValue>,
}

impl EdgeHeaders {
    /// `None` when there is nothing to add, so the request path skips this altogether.
    pub fn from_settings(s: &EdgeSettings) -> Option<EdgeHeaders> {
        // Built once per process: a static value clones without touching a reference
        // count, and HSTS goes on most HTTPS answers.
        let hsts = s.hsts_value().and_then(|v| {
            let v: &'static str = Box::leak(v.into_boxed_str());
            HeaderValue::from_maybe_shared(bytes::Bytes::from_static(v.as_bytes())).ok()
        });
        let server = s
            .server_tokens
            .then(|| HeaderValue::from_static(concat!("portcullis/", env!("CARGO_PKG_VERSION"))));
        (hsts.is_some() || server.is_some()).then_some(EdgeHeaders { hsts, server })
    }

    /// The HSTS value for an answer over `scheme` for a host with (`host_tls`) or without
    /// TLS, if one applies (for answers written without a map; see `apply`).
    pub(crate) fn hsts_for(&self, scheme: Scheme, host_tls: bool) -> Option<&HeaderValue> {
        self.hsts
            .as_ref()
            .filter(|_| scheme == Scheme::Https && host_tls)
    }

    /// The `Server` value that replaces `portcullis` when server tokens are on.
    pub(crate) fn server_token(&self) -> Option<&HeaderValue> {
        self.server.as_ref()
    }

    /// Adds the headers that apply to a response to a request over `scheme` for a host
    /// that does (`host_tls`) or does not have TLS. HSTS is never sent over plain HTTP
    /// (browsers ignore it there), and a backend's own HSTS header is left alone.
    pub fn apply(&self, resp: &mut Response<Body>, scheme: Scheme, host_tls: bool) {
        let headers = resp.headers_mut();
        if let Some(hsts) = &self.hsts
            && scheme == Scheme::Https
            && host_tls
            // One lookup where `contains_key` and `insert` were two.
            && let header::Entry::Vacant(slot) = headers.entry(header::STRICT_TRANSPORT_SECURITY)
        {
            slot.insert(hsts.clone());
        }
        if let Some(server) = &self.server
            && headers.get(header::SERVER) == Some(&SERVER_NAME)
        {
            headers.insert(header::SERVER, server.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::request::respond::generated;
    use http::StatusCode;

    #[test]
    fn defaults_follow_ingress_nginx() {
        let e = EdgeHeaders::from_settings(&EdgeSettings::default()).unwrap();
        let mut resp = generated(StatusCode::OK, "x");
        e.apply(&mut resp, Scheme::Https, true);
        assert_eq!(
            resp.headers()[header::STRICT_TRANSPORT_SECURITY],
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(resp.headers()[header::SERVER], "portcullis");
        for (scheme, tls) in [(Scheme::Http, true), (Scheme::Https, false)] {
            let mut resp = generated(StatusCode::OK, "x");
            e.apply(&mut resp, scheme, tls);
            assert!(
                !resp
                    .headers()
                    .contains_key(header::STRICT_TRANSPORT_SECURITY)
            );
        }
    }

    #[test]
    fn settings_names_as_the_configmap_mapper_writes_them() {
        let s = crate::config::Settings::parse(
            "t",
            "edge: {useProxyProtocol: true, proxyProtocolHeaderTimeoutSeconds: 3, hsts: false, \
             hstsMaxAge: 1, hstsIncludeSubdomains: false, hstsPreload: true, serverTokens: true, \
             sslProtocols: TLSv1.3, sslCiphers: ECDHE-RSA-AES128-GCM-SHA256, \
             enableSslPassthrough: true, useForwardedHeaders: true, \
             proxyRealIpCidr: [10.0.0.0/8], computeFullForwardedFor: true}\n",
        )
        .unwrap();
        let e = &s.edge;
        assert_eq!(e.proxy_protocol(), Some(std::time::Duration::from_secs(3)));
        assert!(!e.hsts && e.hsts_preload && e.server_tokens && e.enable_ssl_passthrough);
        assert!(e.use_forwarded_headers && e.compute_full_forwarded_for);
        assert_eq!(e.proxy_real_ip_cidr, ["10.0.0.0/8"]);
        assert_eq!(e.ssl_protocols, "TLSv1.3");
        assert!(crate::config::Settings::parse("t", "edge: {hstsMaxAg: 1}\n").is_err());
    }

    #[test]
    fn preload_tokens_and_off() {
        let s = EdgeSettings {
            hsts_max_age: 60,
            hsts_include_subdomains: false,
            hsts_preload: true,
            server_tokens: true,
            ..EdgeSettings::default()
        };
        let e = EdgeHeaders::from_settings(&s).unwrap();
        let mut resp = generated(StatusCode::NOT_FOUND, "x");
        e.apply(&mut resp, Scheme::Https, true);
        assert_eq!(
            resp.headers()[header::STRICT_TRANSPORT_SECURITY],
            "max-age=60; preload"
        );
        assert!(
            resp.headers()[header::SERVER]
                .to_str()
                .unwrap()
                .starts_with("portcullis/")
        );
        let off = EdgeSettings {
            hsts: false,
            ..EdgeSettings::default()
        };
        assert!(EdgeHeaders::from_settings(&off).is_none());
    }
}
