//! Client certificates per host (`auth-tls-*`, ingress-nginx's mutual TLS): the HTTPS
//! listener picks the host's own TLS configuration by SNI, which asks for a certificate;
//! the chain is judged once per connection against the CA of `auth-tls-secret`; every
//! request on a route with the annotations is then let through, refused (400, or a
//! redirect to `auth-tls-error-page`; 403 when `auth-tls-match-cn` does not match) or
//! passed on with the `ssl-client-*` headers.
//!
//! Failure behaviour: fails closed. A connection verified for another host's settings, a
//! plain-HTTP request, or a host whose CA Secret is missing all count as "no certificate".
//! The TLS handshake itself never fails over a certificate (so the client gets an HTTP
//! answer, as from nginx); only its signature checks, which prove the client holds the
//! key, are enforced there.
use std::sync::{Arc, OnceLock};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use regex::Regex;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::respond::{generated, redirect};
use crate::body::Body;
use crate::ingress::build::annotations::{Parser, parse_bool};
use crate::ingress::build::secret_refs::parse_secret_ref;
use crate::server::{ConnTag, PeerCheck};
use crate::tls::{Resumption, TlsPolicy};

pub static SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
pub static SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
pub static SSL_CLIENT_ISSUER_DN: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
pub static SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("ssl-client-cert");

/// `auth-tls-verify-client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyClient {
    /// A valid certificate is required.
    On,
    /// No certificate is asked for.
    Off,
    /// Asked for; none is fine, an invalid one is refused.
    Optional,
    /// Asked for; anything goes, the verdict is passed upstream.
    OptionalNoCa,
}

/// The `auth-tls-*` annotations of one Ingress.
#[derive(Debug)]
pub struct ClientAuthSpec {
    /// `namespace/name` of the Secret holding `ca.crt`.
    pub secret: String,
    pub verify: VerifyClient,
    /// `auth-tls-verify-depth`: intermediate CAs allowed between the client's certificate
    /// and the trusted CA, plus one (nginx's `ssl_verify_depth`).
    pub depth: usize,
    pub error_page: Option<String>,
    pub pass_certificate: bool,
    /// Matched against the subject DN (`CN=...,O=...`), as ingress-nginx does.
    pub match_cn: Option<Regex>,
}

impl PartialEq for ClientAuthSpec {
    fn eq(&self, o: &Self) -> bool {
        self.secret == o.secret
            && self.verify == o.verify
            && self.depth == o.depth
            && self.error_page == o.error_page
            && self.pass_certificate == o.pass_certificate
            && self.match_cn.as_ref().map(Regex::as_str) == o.match_cn.as_ref().map(Regex::as_str)
    }
}

const NAMES: [&str; 5] = [
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-error-page",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-match-cn",
];

/// Reads the group from `p`; `None` without `auth-tls-secret`.
pub(crate) fn parse(p: &mut Parser<'_>) -> Option<Arc<ClientAuthSpec>> {
    let secret = p.value("auth-tls-secret", |v| {
        if !v.contains('/') {
            return Err("expected namespace/name of a Secret with ca.crt".into());
        }
        parse_secret_ref(v, "").map(|r| r.key())
    });
    let verify = p
        .value("auth-tls-verify-client", |v| match v {
            "on" => Ok(VerifyClient::On),
            "off" => Ok(VerifyClient::Off),
            "optional" => Ok(VerifyClient::Optional),
            "optional_no_ca" => Ok(VerifyClient::OptionalNoCa),
            _ => Err("expected on, off, optional or optional_no_ca".to_string()),
        })
        .unwrap_or(VerifyClient::On);
    let depth = p
        .value("auth-tls-verify-depth", |v| match v.parse::<usize>() {
            Ok(d) if (1..=10).contains(&d) => Ok(d),
            _ => Err("expected a depth from 1 to 10".to_string()),
        })
        .unwrap_or(1);
    let error_page = p.value("auth-tls-error-page", |v| {
        let ok = (v.starts_with("http://") || v.starts_with("https://") || v.starts_with('/'))
            && v.len() <= 2048
            && v.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| v.to_string())
            .ok_or_else(|| "expected an http(s) URL or an absolute path".to_string())
    });
    let pass_certificate = p
        .value("auth-tls-pass-certificate-to-upstream", parse_bool)
        .unwrap_or(false);
    let match_cn = p.value("auth-tls-match-cn", |v| {
        if !v.contains("CN=") || v.len() > 1024 {
            return Err("expected a regular expression over the subject, containing CN=".into());
        }
        regex::RegexBuilder::new(v)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("not a valid regular expression: {e}"))
    });
    let Some(secret) = secret else {
        // Settings without a CA would mean no client check at all: refuse rather than
        // serve the Ingress open.
        if let Some(short) = NAMES.iter().find(|n| p.get(n).is_some())
            && p.get("auth-tls-secret").is_none()
            && let Some((key, _)) = p.get(short)
        {
            p.error(key, format!("{key}: needs auth-tls-secret"));
        }
        return None;
    };
    Some(Arc::new(ClientAuthSpec {
        secret,
        verify,
        depth,
        error_page,
        pass_certificate,
        match_cn,
    }))
}

/// A host's client-certificate settings with its CA, compiled for the listener.
pub struct HostClientAuth {
    pub spec: Arc<ClientAuthSpec>,
    /// Verifies chains against the CA, for the verdict after the handshake.
    strict: Arc<dyn ClientCertVerifier>,
    config: OnceLock<Option<Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for HostClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostClientAuth")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl HostClientAuth {
    /// `ca_pem`: the Secret's `ca.crt` (one or more certificates).
    pub fn new(spec: Arc<ClientAuthSpec>, ca_pem: &[u8]) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| format!("ca.crt does not parse: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca.crt holds an unusable certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("ca.crt holds no certificate".into());
        }
        let strict =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("ca.crt cannot verify clients: {e}"))?;
        Ok(HostClientAuth {
            spec,
            strict,
            config: OnceLock::new(),
        })
    }

    /// The TLS configuration for this host's connections (built on first use, with the
    /// listener's certificates, versions and suites, and its own session cache so a
    /// session from another host never resumes here without a certificate).
    pub fn server_config(
        &self,
        resolver: &Arc<dyn ResolvesServerCert>,
        policy: &TlsPolicy,
        resumption: Resumption,
    ) -> Option<Arc<rustls::ServerConfig>> {
        self.config
            .get_or_init(|| {
                let verifier = Arc::new(Lenient(self.strict.clone()));
                match crate::tls::server_config_for(
                    resolver.clone(),
                    resumption,
                    policy,
                    Some(verifier),
                ) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::error!(error = %e, "client-certificate TLS configuration failed");
                        None
                    }
                }
            })
            .clone()
    }

    fn verdict(&self, chain: Option<&[CertificateDer<'static>]>) -> (Verdict, HeaderValue) {
        let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return (Verdict::None, HeaderValue::from_static("NONE"));
        };
        if intermediates.len() >= self.spec.depth {
            let v = format!(
                "FAILED:certificate chain longer than verify depth {}",
                self.spec.depth
            );
            return (Verdict::Failed, header_value(&v));
        }
        match self
            .strict
            .verify_client_cert(leaf, intermediates, UnixTime::now())
        {
            Ok(_) => (Verdict::Success, HeaderValue::from_static("SUCCESS")),
            Err(e) => (Verdict::Failed, header_value(&format!("FAILED:{e}"))),
        }
    }
}

impl PeerCheck for HostClientAuth {
    fn check(&self, chain: Option<&[CertificateDer<'static>]>) -> ConnTag {
        let (verdict, verify) = self.verdict(chain);
        let leaf = chain.and_then(|c| c.first());
        let names = leaf.and_then(|c| crate::tls::x509_name::names(c));
        let outcome = Outcome {
            spec: self.spec.clone(),
            verdict,
            verify,
            subject: names.as_ref().map(|n| n.subject.clone()),
            issuer: names.as_ref().map(|n| header_value(&n.issuer)),
            escaped_cert: leaf
                .filter(|_| self.spec.pass_certificate)
                .map(|c| header_value(&escaped_pem(c))),
        };
        ConnTag(Arc::new(outcome))
    }
}

/// Text made safe for a header value (controls and non-ASCII as `\xXX`).
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        let cleaned: String = s
            .bytes()
            .map(|b| match b {
                0x20..=0x7e => char::from(b).to_string(),
                _ => format!("\\x{b:02X}"),
            })
            .collect();
        HeaderValue::from_str(&cleaned).unwrap_or_else(|_| HeaderValue::from_static(""))
    })
}

/// The certificate as PEM, URL-escaped like nginx's `$ssl_client_escaped_cert`.
fn escaped_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or(""));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::with_capacity(pem.len() * 3 / 2);
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    Failed,
    None,
}

/// What a connection's certificate amounted to, judged once after its handshake.
#[derive(Debug)]
struct Outcome {
    /// The settings it was judged under; a request for a route with other settings
    /// treats the connection as without a certificate.
    spec: Arc<ClientAuthSpec>,
    verdict: Verdict,
    verify: HeaderValue,
    subject: Option<String>,
    issuer: Option<HeaderValue>,
    escaped_cert: Option<HeaderValue>,
}

/// Checks a request on a route with `spec` and sets the `ssl-client-*` headers for the
/// upstream; `Some` is the answer to send instead.
/// `other_name`: the TLS connection was opened for another server name; a refusal is
/// then a 421, so the client retries on a connection of its own for this host.
pub fn admit(
    spec: &ClientAuthSpec,
    tag: Option<&ConnTag>,
    other_name: bool,
    headers: &mut HeaderMap,
) -> Option<Response<Body>> {
    let outcome = tag
        .and_then(|t| t.0.downcast_ref::<Outcome>())
        .filter(|o| *o.spec == *spec);
    let verdict = outcome.map_or(Verdict::None, |o| o.verdict);
    let refused = match spec.verify {
        VerifyClient::On => verdict != Verdict::Success,
        VerifyClient::Optional => verdict == Verdict::Failed,
        VerifyClient::Off | VerifyClient::OptionalNoCa => false,
    };
    if refused {
        if other_name && outcome.is_none() {
            return Some(generated(
                StatusCode::MISDIRECTED_REQUEST,
                "this host needs a connection of its own (client certificate)",
            ));
        }
        if let Some(page) = &spec.error_page {
            return Some(redirect(StatusCode::FOUND, page));
        }
        let why = match verdict {
            Verdict::None => "no required SSL certificate was sent",
            _ => "the SSL certificate error",
        };
        return Some(generated(StatusCode::BAD_REQUEST, why));
    }
    let subject = outcome.and_then(|o| o.subject.as_deref());
    if let Some(re) = &spec.match_cn
        && !re.is_match(subject.unwrap_or(""))
    {
        return Some(generated(
            StatusCode::FORBIDDEN,
            "client certificate unauthorized",
        ));
    }
    // Whatever the client sent under these names is not ours to pass on.
    for name in [
        &SSL_CLIENT_VERIFY,
        &SSL_CLIENT_SUBJECT_DN,
        &SSL_CLIENT_ISSUER_DN,
        &SSL_CLIENT_CERT,
    ] {
        headers.remove(name);
    }
    let Some(o) = outcome else {
        headers.insert(&SSL_CLIENT_VERIFY, HeaderValue::from_static("NONE"));
        return None;
    };
    headers.insert(&SSL_CLIENT_VERIFY, o.verify.clone());
    if let Some(s) = &o.subject {
        headers.insert(&SSL_CLIENT_SUBJECT_DN, header_value(s));
    }
    if let Some(i) = &o.issuer {
        headers.insert(&SSL_CLIENT_ISSUER_DN, i.clone());
    }
    if let Some(c) = &o.escaped_cert {
        headers.insert(&SSL_CLIENT_CERT, c.clone());
    }
    None
}

/// Asks for a certificate and lets the handshake finish whatever the chain is (the
/// verdict is given per request, as an HTTP answer); the handshake signature, which
/// proves the client holds the certificate's key, is still checked.
#[derive(Debug)]
struct Lenient(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Lenient {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::build::annotations::parse_pairs as parse;

    #[test]
    fn annotations_and_defaults() {
        let p = parse(&[("nginx.ingress.kubernetes.io/auth-tls-secret", "web/ca")]);
        assert!(p.is_ok(), "{:?}", p.errors);
        let spec = p.policy.tls_edge.unwrap().client_auth.clone().unwrap();
        assert_eq!(spec.secret, "web/ca");
        assert_eq!(spec.verify, VerifyClient::On);
        assert_eq!(spec.depth, 1);
        assert!(!spec.pass_certificate && spec.error_page.is_none() && spec.match_cn.is_none());

        let p = parse(&[
            ("nginx.ingress.kubernetes.io/auth-tls-secret", "web/ca"),
            (
                "nginx.ingress.kubernetes.io/auth-tls-verify-client",
                "optional_no_ca",
            ),
            ("nginx.ingress.kubernetes.io/auth-tls-verify-depth", "2"),
            (
                "nginx.ingress.kubernetes.io/auth-tls-error-page",
                "https://x.test/err",
            ),
            (
                "nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream",
                "true",
            ),
            (
                "nginx.ingress.kubernetes.io/auth-tls-match-cn",
                "CN=(alice|bob)",
            ),
        ]);
        assert!(
            p.is_ok() && p.warnings.is_empty(),
            "{:?} {:?}",
            p.errors,
            p.warnings
        );
        let spec = p.policy.tls_edge.unwrap().client_auth.clone().unwrap();
        assert_eq!(spec.verify, VerifyClient::OptionalNoCa);
        assert_eq!(spec.depth, 2);
        assert!(spec.pass_certificate);
        assert!(spec.match_cn.as_ref().unwrap().is_match("CN=bob,O=x"));
    }

    #[test]
    fn malformed_values_are_errors_naming_the_key() {
        let secret = ("nginx.ingress.kubernetes.io/auth-tls-secret", "web/ca");
        let cases: &[(&str, &str)] = &[
            ("nginx.ingress.kubernetes.io/auth-tls-secret", "just-a-name"),
            ("nginx.ingress.kubernetes.io/auth-tls-secret", "Web/CA!"),
            (
                "nginx.ingress.kubernetes.io/auth-tls-verify-client",
                "maybe",
            ),
            ("nginx.ingress.kubernetes.io/auth-tls-verify-depth", "0"),
            ("nginx.ingress.kubernetes.io/auth-tls-verify-depth", "x"),
            (
                "nginx.ingress.kubernetes.io/auth-tls-error-page",
                "javascript:alert(1)",
            ),
            (
                "nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream",
                "yes",
            ),
            ("nginx.ingress.kubernetes.io/auth-tls-match-cn", "alice"),
            (
                "nginx.ingress.kubernetes.io/auth-tls-match-cn",
                "CN=(unclosed",
            ),
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
        // Settings without the CA Secret refuse the Ingress instead of serving it open.
        let p = parse(&[("nginx.ingress.kubernetes.io/auth-tls-verify-client", "on")]);
        assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
        assert!(p.errors[0].message.contains("needs auth-tls-secret"));
    }

    /// A CA and a client certificate signed by it, as DER.
    fn pki(cn: &str) -> (String, CertificateDer<'static>) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "Unit CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        (ca_pem, cert.der().clone())
    }

    fn spec(verify: VerifyClient, match_cn: Option<&str>) -> Arc<ClientAuthSpec> {
        Arc::new(ClientAuthSpec {
            secret: "ns/ca".into(),
            verify,
            depth: 1,
            error_page: None,
            pass_certificate: false,
            match_cn: match_cn.map(|r| Regex::new(r).unwrap()),
        })
    }

    /// The status `admit` answers with (200 when the request may pass), and the
    /// ssl-client-verify header it set.
    fn verdict_of(
        spec: &Arc<ClientAuthSpec>,
        ca: &str,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> (u16, String) {
        let host = HostClientAuth::new(spec.clone(), ca.as_bytes()).unwrap();
        let tag = host.check(chain);
        let mut headers = HeaderMap::new();
        headers.insert(&SSL_CLIENT_VERIFY, HeaderValue::from_static("SUCCESS"));
        match admit(spec, Some(&tag), false, &mut headers) {
            Some(resp) => (resp.status().as_u16(), String::new()),
            None => (
                200,
                headers[&SSL_CLIENT_VERIFY].to_str().unwrap().to_string(),
            ),
        }
    }

    #[test]
    fn verify_modes() {
        crate::tls::install_provider();
        let (ca, good) = pki("alice");
        let (_, stranger) = pki("alice");
        let good = [good];
        let stranger = [stranger];
        use VerifyClient::*;
        // (mode, chain) → status, and the verify header when it passes.
        let on = spec(On, None);
        assert_eq!(verdict_of(&on, &ca, Some(&good)), (200, "SUCCESS".into()));
        assert_eq!(verdict_of(&on, &ca, None).0, 400);
        assert_eq!(verdict_of(&on, &ca, Some(&stranger)).0, 400);
        let optional = spec(Optional, None);
        assert_eq!(verdict_of(&optional, &ca, None), (200, "NONE".into()));
        assert_eq!(verdict_of(&optional, &ca, Some(&stranger)).0, 400);
        let no_ca = spec(OptionalNoCa, None);
        let (status, verify) = verdict_of(&no_ca, &ca, Some(&stranger));
        assert_eq!(status, 200);
        assert!(verify.starts_with("FAILED:"), "{verify}");
        let cn = spec(On, Some("CN=bob"));
        assert_eq!(verdict_of(&cn, &ca, Some(&good)).0, 403);
        // A connection judged under other settings counts as without a certificate, and a
        // client's own ssl-client-verify never survives.
        let host = HostClientAuth::new(spec(Optional, None), ca.as_bytes()).unwrap();
        let tag = host.check(Some(&good));
        let mut headers = HeaderMap::new();
        assert!(admit(&on, Some(&tag), false, &mut headers).is_some());
        assert_eq!(
            admit(&on, Some(&tag), true, &mut headers).map(|r| r.status()),
            Some(StatusCode::MISDIRECTED_REQUEST)
        );
        headers.insert(&SSL_CLIENT_VERIFY, HeaderValue::from_static("SUCCESS"));
        assert!(admit(&optional, None, false, &mut headers).is_none());
        assert_eq!(headers[&SSL_CLIENT_VERIFY], "NONE");
    }

    #[test]
    fn escaped_pem_is_a_url_component() {
        let e = escaped_pem(&[0xfb, 0xff, 0x01]);
        assert!(e.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{e}");
        assert!(e.contains("%2B%2F8B"), "{e}");
        assert!(e.ends_with("-----END%20CERTIFICATE-----%0A"));
    }
}
