//! TLS towards the pods of one Ingress (`proxy-ssl-*`, for `backend-protocol: HTTPS` or
//! `GRPCS`): a client certificate to present, a CA to verify the pod against, the name
//! to verify (and to send as SNI), the verify depth and the protocol versions. Each such
//! Ingress gets upstream pools of its own, built on its first request, so its
//! connections (made with its certificate, checked with its CA) serve no other route.
//!
//! Failure behaviour: fails closed. A Secret that is missing or does not parse is a
//! problem of the Ingress and its TLS requests get 502 rather than an unverified
//! connection; a pod whose certificate does not verify is a connect failure (502 after
//! one retry on another endpoint).
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;

use super::upstream::{UpstreamSettings, Upstreams};
use crate::ingress::build::annotations::{Parser, parse_bool};
use crate::ingress::build::secret_refs::parse_secret_ref;
use crate::source::store::SecretData;

/// The `proxy-ssl-*` annotations of one Ingress.
#[derive(Debug)]
pub struct BackendTlsSpec {
    /// `namespace/name` of a Secret with `tls.crt`/`tls.key` (presented) and `ca.crt`.
    pub secret: Option<String>,
    pub verify: bool,
    /// `proxy-ssl-name`: the name the pod's certificate must carry.
    pub name: Option<ServerName<'static>>,
    /// `proxy-ssl-server-name`: send that name as SNI.
    pub server_name: bool,
    pub depth: usize,
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// Filled by compile from the Secret; `Err` says why requests get 502.
    compiled: OnceLock<Result<Arc<BackendTls>, String>>,
}

const NAMES: [&str; 6] = [
    "proxy-ssl-secret",
    "proxy-ssl-verify",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
    "proxy-ssl-verify-depth",
    "proxy-ssl-protocols",
];

fn on_off(v: &str) -> Result<bool, String> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        // ingress-nginx documents on/off; true/false are taken too.
        _ => parse_bool(v).map_err(|_| "expected on or off".to_string()),
    }
}

/// Reads the group from `p`; `None` when none of it is set.
pub(crate) fn parse(p: &mut Parser<'_>) -> Option<Arc<BackendTlsSpec>> {
    if !NAMES.iter().any(|n| p.get(n).is_some()) {
        return None;
    }
    let secret = p.value("proxy-ssl-secret", |v| {
        if !v.contains('/') {
            return Err("expected namespace/name of a Secret".into());
        }
        parse_secret_ref(v, "").map(|r| r.key())
    });
    let verify = p.value("proxy-ssl-verify", on_off).unwrap_or(false);
    let name = p.value("proxy-ssl-name", |v| {
        ServerName::try_from(v.to_string())
            .map_err(|_| "expected a DNS name or IP address".to_string())
    });
    let server_name = p.value("proxy-ssl-server-name", on_off).unwrap_or(false);
    let depth = p
        .value("proxy-ssl-verify-depth", |v| match v.parse::<usize>() {
            Ok(d) if (1..=10).contains(&d) => Ok(d),
            _ => Err("expected a depth from 1 to 10".to_string()),
        })
        .unwrap_or(1);
    let versions = p
        .value("proxy-ssl-protocols", parse_protocols)
        .unwrap_or_else(|| vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    if verify
        && secret.is_none()
        && let Some((key, _)) = p.get("proxy-ssl-verify")
    {
        p.error(
            key,
            format!("{key}: on needs proxy-ssl-secret (its ca.crt)"),
        );
    }
    Some(Arc::new(BackendTlsSpec {
        secret,
        verify,
        name,
        server_name,
        depth,
        versions,
        compiled: OnceLock::new(),
    }))
}

/// nginx's `proxy_ssl_protocols` list; versions older than 1.2 (in ingress-nginx's
/// default) are dropped, as rustls has none of them.
fn parse_protocols(v: &str) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let mut out: Vec<&'static SupportedProtocolVersion> = Vec::new();
    for name in v.split_whitespace() {
        match name {
            "TLSv1.3" => out.push(&rustls::version::TLS13),
            "TLSv1.2" => out.push(&rustls::version::TLS12),
            "TLSv1" | "TLSv1.1" | "SSLv3" => {}
            _ => return Err(format!("unknown protocol {name:?}")),
        }
    }
    if out.is_empty() {
        return Err("no protocol rustls supports (TLSv1.2, TLSv1.3)".into());
    }
    Ok(out)
}

impl BackendTlsSpec {
    /// Builds the client configurations from the Secret (compile calls this once per
    /// snapshot); the outcome is kept for the requests. Returns the error to report.
    pub fn compile(&self, secret: Option<SecretData<'_>>) -> Result<(), String> {
        let built = self.build(secret);
        let err = built.as_ref().err().cloned();
        let _ = self.compiled.set(built.map(Arc::new));
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The compiled settings, or why there are none.
    pub fn compiled(&self) -> Result<&Arc<BackendTls>, &str> {
        match self.compiled.get() {
            Some(Ok(b)) => Ok(b),
            Some(Err(e)) => Err(e),
            None => Err("not compiled"),
        }
    }

    fn build(&self, secret: Option<SecretData<'_>>) -> Result<BackendTls, String> {
        if self.secret.is_some() && secret.is_none() {
            return Err("the Secret does not exist".into());
        }
        let provider = crate::tls::provider();
        let verifier: Arc<dyn ServerCertVerifier> = if self.verify {
            let ca = secret
                .and_then(|s| s.get("ca.crt"))
                .ok_or("proxy-ssl-verify is on but the Secret has no ca.crt")?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| format!("ca.crt does not parse: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca.crt holds an unusable certificate: {e}"))?;
            }
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("ca.crt cannot verify pods: {e}"))?;
            Arc::new(Depth {
                inner,
                depth: self.depth,
            })
        } else {
            super::upstream_tls::unverified(provider.clone())
        };
        let client_cert = match secret.map(|s| (s.get("tls.crt"), s.get("tls.key"))) {
            Some((Some(crt), Some(key))) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("tls.crt does not parse: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| format!("tls.key does not parse: {e}"))?;
                Some((chain, key))
            }
            _ => None,
        };
        let config = |alpn: &[u8]| -> Result<Arc<ClientConfig>, String> {
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&self.versions)
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone());
            let mut c = match &client_cert {
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .map_err(|e| format!("tls.crt/tls.key cannot be used: {e}"))?,
                None => builder.with_no_client_auth(),
            };
            c.alpn_protocols = vec![alpn.to_vec()];
            c.enable_sni = self.server_name;
            Ok(Arc::new(c))
        };
        Ok(BackendTls {
            http1: config(b"http/1.1")?,
            h2: config(b"h2")?,
            name: self.name.clone(),
            upstreams: OnceLock::new(),
        })
    }
}

/// The compiled settings: client configurations and, once used, their pools.
pub struct BackendTls {
    http1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
    upstreams: OnceLock<Upstreams>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BackendTls {
    /// The pools of this Ingress, made with the proxy's pool settings on first use.
    pub fn upstreams(&self, settings: &UpstreamSettings) -> &Upstreams {
        self.upstreams.get_or_init(|| {
            Upstreams::with_tls(
                settings.clone(),
                self.http1.clone(),
                self.h2.clone(),
                self.name.clone(),
            )
        })
    }
}

/// WebPKI verification with a bound on the intermediates the pod may send (nginx's
/// `proxy_ssl_verify_depth` counts the chain from the pod's certificate to the CA).
#[derive(Debug)]
struct Depth {
    inner: Arc<WebPkiServerVerifier>,
    depth: usize,
}

impl ServerCertVerifier for Depth {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if intermediates.len() >= self.depth {
            return Err(rustls::Error::General(format!(
                "certificate chain longer than proxy-ssl-verify-depth {}",
                self.depth
            )));
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use crate::ingress::build::annotations::parse_pairs as parse;

    #[test]
    fn annotations_and_defaults() {
        let p = parse(&[(
            "nginx.ingress.kubernetes.io/proxy-ssl-secret",
            "web/upstream",
        )]);
        assert!(
            p.is_ok() && p.warnings.is_empty(),
            "{:?} {:?}",
            p.errors,
            p.warnings
        );
        let spec = p.policy.tls_edge.unwrap().backend_tls.clone().unwrap();
        assert!(!spec.verify && !spec.server_name && spec.name.is_none());
        assert_eq!((spec.depth, spec.versions.len()), (1, 2));

        let p = parse(&[
            (
                "nginx.ingress.kubernetes.io/proxy-ssl-secret",
                "web/upstream",
            ),
            ("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-name", "api.internal"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-server-name", "on"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-verify-depth", "3"),
            (
                "nginx.ingress.kubernetes.io/proxy-ssl-protocols",
                "TLSv1 TLSv1.1 TLSv1.2",
            ),
        ]);
        assert!(p.is_ok(), "{:?}", p.errors);
        let spec = p.policy.tls_edge.unwrap().backend_tls.clone().unwrap();
        assert!(spec.verify && spec.server_name);
        assert_eq!(spec.depth, 3);
        assert_eq!(spec.versions.len(), 1);
    }

    #[test]
    fn malformed_values_are_errors_naming_the_key() {
        let secret = (
            "nginx.ingress.kubernetes.io/proxy-ssl-secret",
            "web/upstream",
        );
        let cases: &[(&str, &str)] = &[
            ("nginx.ingress.kubernetes.io/proxy-ssl-secret", "upstream"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-verify", "sometimes"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-name", "not a name"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-server-name", "yes"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-verify-depth", "0"),
            (
                "nginx.ingress.kubernetes.io/proxy-ssl-protocols",
                "TLSv1 SSLv2",
            ),
            ("nginx.ingress.kubernetes.io/proxy-ssl-protocols", "TLSv1.1"),
        ];
        for (k, v) in cases {
            let p = if *k == secret.0 {
                parse(&[(k, v)])
            } else {
                parse(&[secret, (k, v)])
            };
            assert_eq!(p.errors.len(), 1, "{k}={v}: {:?}", p.errors);
            assert_eq!(p.errors[0].key.as_deref(), Some(*k));
        }
        let p = parse(&[("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on")]);
        assert!(
            p.errors[0].message.contains("needs proxy-ssl-secret"),
            "{:?}",
            p.errors
        );
    }
}
