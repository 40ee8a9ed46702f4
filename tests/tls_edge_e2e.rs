//! The client-facing edge through the real binary: PROXY protocol v1 and v2 on the HTTP
//! and HTTPS listeners (the client address the pod sees, and connections without a
//! header refused), and HSTS on HTTPS answers only.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::net::SocketAddr;
use std::sync::Arc;

use common::TIMEOUT;
use e2e::{
    Portcullis, ingress, ingress_class, pod, service, slice, tls_secret, write_atomic, yaml,
};
use portcullis::tls::DevCerts;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const PLAIN: &str = "plain.edge.test";
const SECURE: &str = "secure.edge.test";

struct Site {
    gw: Portcullis,
    ca: String,
    _dir: tempfile::TempDir,
    _pod: tokio::task::JoinHandle<()>,
}

/// plain.edge.test (no TLS) and secure.edge.test (TLS, no redirect) → one echo pod;
/// `settings` is the settings file's text.
async fn site(settings: &str) -> Site {
    site_with(settings, None).await
}

/// The site, with an ingress-nginx ConfigMap handed to `serve --nginx-configmap`.
async fn site_with(settings: &str, nginx_configmap: Option<&str>) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifests");
    std::fs::create_dir(&m).unwrap();
    let (web, task) = pod("127.0.0.2", "web-1").await;
    let certs = DevCerts::generate_for_names(&[SECURE.to_string()]).unwrap();
    write_atomic(&m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(
        &m,
        "10-ingress.yaml",
        &yaml(&[
            ingress("plain", PLAIN, None, &[("/", "web")], &[]),
            ingress(
                "secure",
                SECURE,
                Some("secure-tls"),
                &[("/", "web")],
                &[("nginx.ingress.kubernetes.io/ssl-redirect", "false")],
            ),
            service("web"),
            slice("web", "web-1", web, true),
            tls_secret("secure-tls", &certs.cert_pem, &certs.key_pem),
        ]),
    );
    let config = dir.path().join("settings.yaml");
    std::fs::write(&config, settings).unwrap();
    let cm = dir.path().join("nginx-configmap.yaml");
    let mut args = vec!["--config", config.to_str().unwrap()];
    if let Some(text) = nginx_configmap {
        std::fs::write(&cm, text).unwrap();
        args.extend(["--nginx-configmap", cm.to_str().unwrap()]);
    }
    let gw = Portcullis::start(&m, &args).await;
    Site {
        gw,
        ca: certs.ca_pem.clone(),
        _dir: dir,
        _pod: task,
    }
}

/// One HTTP/1.1 GET on `io`, answer read to the end (the request asks for close).
async fn raw_get<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, host: &str) -> Option<String> {
    raw_get_with(io, host, "").await
}

async fn raw_get_with<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    host: &str,
    extra: &str,
) -> Option<String> {
    let req = format!("GET /who HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    io.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, io.read_to_end(&mut out)).await;
    read.ok()?.ok()?;
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// The echo pod's JSON from a raw answer.
fn echoed(answer: &str) -> Value {
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

fn header_of<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn connect_with(addr: SocketAddr, header: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    tcp
}

async fn tls_over(tcp: TcpStream, ca: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config: Arc<rustls::ClientConfig> =
        portcullis::tls::client_config(ca.as_bytes(), &[b"http/1.1"]).unwrap();
    let name = ServerName::try_from(SECURE.to_string()).unwrap();
    tokio::time::timeout(
        TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("TLS handshake timed out")
    .expect("TLS handshake")
}

fn v2_header(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.push(0x20 | command);
    out.push(family);
    out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn proxy_protocol_names_the_client_and_is_required() {
    let s = site("edge: {useProxyProtocol: true, proxyProtocolHeaderTimeoutSeconds: 2}\n").await;
    let gw = &s.gw;

    // v1 on HTTP: the pod sees the balancer's client, not 127.0.0.1.
    let mut tcp = connect_with(gw.http, b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\n").await;
    let answer = raw_get(&mut tcp, PLAIN).await.expect("an answer");
    let echo = echoed(&answer);
    assert_eq!(echo["headers"]["x-forwarded-for"], "203.0.113.7", "{echo}");
    assert_eq!(echo["headers"]["x-real-ip"], "203.0.113.7");

    // v2 with an IPv6 client and an unknown TLV, on HTTPS.
    let mut body = "2001:db8::9"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    body.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb, 0xEE, 0, 2, 7, 7]);
    let tcp = connect_with(gw.https, &v2_header(1, 0x21, &body)).await;
    let mut tls = tls_over(tcp, &s.ca).await;
    let answer = raw_get(&mut tls, SECURE).await.expect("an answer");
    let echo = echoed(&answer);
    assert_eq!(echo["headers"]["x-forwarded-for"], "2001:db8::9", "{echo}");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");

    // v2 LOCAL (a balancer health check): the connection's own address.
    let mut tcp = connect_with(gw.http, &v2_header(0, 0x00, &[])).await;
    let echo = echoed(&raw_get(&mut tcp, PLAIN).await.expect("an answer"));
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");

    // Without a header, or with a broken one, the connection is closed unanswered: on
    // HTTP, and on HTTPS before any handshake.
    let mut tcp = TcpStream::connect(gw.http).await.unwrap();
    assert_eq!(raw_get(&mut tcp, PLAIN).await, None);
    let mut tcp = connect_with(gw.http, b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n").await;
    assert_eq!(raw_get(&mut tcp, PLAIN).await, None);
    let tcp = TcpStream::connect(gw.https).await.unwrap();
    let config = portcullis::tls::client_config(s.ca.as_bytes(), &[b"http/1.1"]).unwrap();
    let name = ServerName::try_from(SECURE.to_string()).unwrap();
    let refused = tokio::time::timeout(
        TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("closed within the timeout");
    assert!(
        refused.is_err(),
        "a TLS client without a PROXY header was served"
    );
    // A connection that sends nothing is closed after the header timeout.
    let mut silent = TcpStream::connect(gw.http).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(TIMEOUT, silent.read(&mut buf))
        .await
        .expect("closed after the header timeout");
    assert!(matches!(n, Ok(0) | Err(_)));
    let metrics = gw.admin_get("/metrics").await.unwrap().text();
    assert!(
        metrics.contains("proxy_protocol_failures_total{listener=\"http\",reason=\"missing\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn hsts_on_https_answers_only() {
    let s = site("").await;
    let tcp = TcpStream::connect(s.gw.https).await.unwrap();
    let mut tls = tls_over(tcp, &s.ca).await;
    let answer = raw_get(&mut tls, SECURE).await.expect("an answer");
    assert_eq!(
        header_of(&answer, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains"),
        "{answer}"
    );
    // The same host over plain HTTP, and a host without TLS: no HSTS.
    for host in [SECURE, PLAIN] {
        let mut tcp = TcpStream::connect(s.gw.http).await.unwrap();
        let answer = raw_get(&mut tcp, host).await.expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(
            header_of(&answer, "strict-transport-security"),
            None,
            "{host}"
        );
    }
    // Server tokens are off by default: generated answers name no version.
    let mut tcp = TcpStream::connect(s.gw.http).await.unwrap();
    let answer = raw_get(&mut tcp, "nowhere.edge.test").await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert_eq!(header_of(&answer, "server"), Some("portcullis"));
}

/// An ingress-nginx ConfigMap's keys become settings; the settings file wins where both
/// say something.
#[tokio::test]
async fn an_ingress_nginx_configmap_becomes_settings() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ingress-nginx-controller, namespace: ingress-nginx}\ndata:\n  hsts-max-age: \"600\"\n  hsts-include-subdomains: \"false\"\n  server-tokens: \"true\"\n";
    let s = site_with("edge: {hstsMaxAge: 900}\n", Some(cm)).await;
    let tcp = TcpStream::connect(s.gw.https).await.unwrap();
    let mut tls = tls_over(tcp, &s.ca).await;
    let answer = raw_get(&mut tls, SECURE).await.expect("an answer");
    assert_eq!(
        header_of(&answer, "strict-transport-security"),
        Some("max-age=900"),
        "{answer}"
    );
    let mut tcp = TcpStream::connect(s.gw.http).await.unwrap();
    let answer = raw_get(&mut tcp, "nowhere.edge.test").await.unwrap();
    assert!(
        header_of(&answer, "server").is_some_and(|v| v.starts_with("portcullis/")),
        "{answer}"
    );
}

#[tokio::test]
async fn edge_settings_tune_hsts_and_reject_unknown_ciphers() {
    let s = site(
        "edge: {hstsMaxAge: 600, hstsIncludeSubdomains: false, hstsPreload: true, serverTokens: true, sslProtocols: TLSv1.3}\n",
    )
    .await;
    let tcp = TcpStream::connect(s.gw.https).await.unwrap();
    let mut tls = tls_over(tcp, &s.ca).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let answer = raw_get(&mut tls, SECURE).await.expect("an answer");
    assert_eq!(
        header_of(&answer, "strict-transport-security"),
        Some("max-age=600; preload")
    );
    let mut tcp = TcpStream::connect(s.gw.http).await.unwrap();
    let answer = raw_get(&mut tcp, "nowhere.edge.test").await.unwrap();
    assert!(
        header_of(&answer, "server").is_some_and(|v| v.starts_with("portcullis/")),
        "{answer}"
    );
    // A TLS 1.2-only client is refused by a TLS 1.3-only listener.
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pki_types::CertificateDer::pem_slice_iter(s.ca.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            roots
        })
        .with_no_client_auth();
    let tcp = TcpStream::connect(s.gw.https).await.unwrap();
    let name = ServerName::try_from(SECURE.to_string()).unwrap();
    let r = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    assert!(r.is_err(), "TLS 1.2 accepted");
    drop(s);

    // An unknown cipher name stops the start with a message naming it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.yaml");
    std::fs::write(
        &config,
        "edge: {sslCiphers: \"ECDHE-RSA-AES128-GCM-SHA256:BOGUS-CIPHER\"}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--manifests"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"])
        .args([
            "--admin-addr",
            "127.0.0.1:0",
            "--webhook-addr",
            "127.0.0.1:0",
        ])
        .arg("--cert-dir")
        .arg(dir.path().join("certs"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown cipher \"BOGUS-CIPHER\""), "{err}");
}

#[tokio::test]
async fn forwarded_headers_settings() {
    let xff = "X-Forwarded-For: 198.51.100.1, 10.1.1.1\r\n";
    // Off (the default): the client's X-Forwarded-For is not believed.
    let s = site("").await;
    let mut tcp = TcpStream::connect(s.gw.http).await.unwrap();
    let echo = echoed(&raw_get_with(&mut tcp, PLAIN, xff).await.unwrap());
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");
    drop(s);
    // useForwardedHeaders: the left-most address is the client, sent alone.
    let s = site("edge: {useForwardedHeaders: true}\n").await;
    let mut tcp = TcpStream::connect(s.gw.http).await.unwrap();
    let echo = echoed(&raw_get_with(&mut tcp, PLAIN, xff).await.unwrap());
    assert_eq!(echo["headers"]["x-forwarded-for"], "198.51.100.1", "{echo}");
    assert_eq!(echo["headers"]["x-real-ip"], "198.51.100.1");
    drop(s);
    // computeFullForwardedFor: the chain with the peer appended.
    let s = site("edge: {useForwardedHeaders: true, computeFullForwardedFor: true}\n").await;
    let mut tcp = TcpStream::connect(s.gw.http).await.unwrap();
    let echo = echoed(&raw_get_with(&mut tcp, PLAIN, xff).await.unwrap());
    assert_eq!(
        echo["headers"]["x-forwarded-for"],
        "198.51.100.1, 10.1.1.1, 127.0.0.1"
    );
    assert_eq!(echo["headers"]["x-real-ip"], "198.51.100.1");
}

const PASS: &str = "pass.edge.test";

/// A TLS echo pod on 127.0.0.3 with a certificate of its own for pass.edge.test.
async fn tls_pod() -> (SocketAddr, DevCerts, tokio::task::JoinHandle<()>) {
    let certs = DevCerts::generate_for_names(&[PASS.to_string()]).unwrap();
    let resolver = Arc::new(portcullis::tls::SniResolver::new(
        certs.certified_key().unwrap(),
    ));
    let config = portcullis::tls::server_config(resolver).unwrap();
    let (addr, task) = portcullis::echo::spawn_echo_tls(
        "127.0.0.3:0".parse().unwrap(),
        portcullis::echo::EchoOptions {
            name: "tls-1".into(),
            delay: std::time::Duration::ZERO,
        },
        config,
    )
    .await
    .unwrap();
    (addr, certs, task)
}

#[tokio::test]
async fn ssl_passthrough_shows_the_pods_own_certificate() {
    let (addr, pod_certs, _task) = tls_pod().await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifests");
    std::fs::create_dir(&m).unwrap();
    let (web, _web) = pod("127.0.0.2", "web-1").await;
    let ours = DevCerts::generate_for_names(&[SECURE.to_string()]).unwrap();
    write_atomic(&m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(
        &m,
        "10-ingress.yaml",
        &yaml(&[
            ingress(
                "pass",
                PASS,
                None,
                &[("/", "tlsweb")],
                &[("nginx.ingress.kubernetes.io/ssl-passthrough", "true")],
            ),
            ingress("secure", SECURE, Some("secure-tls"), &[("/", "web")], &[]),
            service("tlsweb"),
            slice("tlsweb", "tlsweb-1", addr, true),
            service("web"),
            slice("web", "web-1", web, true),
            tls_secret("secure-tls", &ours.cert_pem, &ours.key_pem),
        ]),
    );
    let on = dir.path().join("on.yaml");
    std::fs::write(&on, "edge: {enableSslPassthrough: true}\n").unwrap();
    let gw = Portcullis::start(&m, &["--config", on.to_str().unwrap()]).await;

    // A client trusting only the pod's CA completes the handshake through portcullis:
    // the pod terminated TLS, with its own certificate, and answers over it.
    let (reply, client) = common::https_get(
        gw.https,
        PASS,
        pod_certs.ca_pem.as_bytes(),
        common::Proto::H1,
        "/through",
    )
    .await
    .expect("handshake with the pod's own certificate");
    assert_eq!(
        client.peer_leaf,
        Some(common::leaf_der(&pod_certs.cert_pem))
    );
    assert_eq!(reply.header("x-echo-name"), Some("tls-1"));
    let echo: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(echo["tls"], true);
    assert_eq!(echo["path"], "/through");
    // Nothing was added on the way: no forwarded headers, it is the client's own request.
    assert!(echo["headers"]["x-forwarded-for"].is_null(), "{echo}");
    // HTTP/2 too (ALPN is between the client and the pod).
    let (reply, client) = common::https_get(
        gw.https,
        PASS,
        pod_certs.ca_pem.as_bytes(),
        common::Proto::H2,
        "/h2",
    )
    .await
    .unwrap();
    assert_eq!(client.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(reply.header("x-echo-name"), Some("tls-1"));

    // Other hosts are terminated here as before.
    let (reply, client) = common::https_get(
        gw.https,
        SECURE,
        ours.ca_pem.as_bytes(),
        common::Proto::H1,
        "/",
    )
    .await
    .unwrap();
    assert_eq!(client.peer_leaf, Some(common::leaf_der(&ours.cert_pem)));
    assert_eq!(reply.header("x-echo-name"), Some("web-1"));
    drop(gw);

    // Without enableSslPassthrough the annotation does nothing: portcullis terminates
    // (with its default certificate), so the pod's CA does not verify it.
    let gw = Portcullis::start(&m, &[]).await;
    let r = common::https_get(
        gw.https,
        PASS,
        pod_certs.ca_pem.as_bytes(),
        common::Proto::H1,
        "/",
    )
    .await;
    assert!(r.is_err(), "passed through although passthrough is off");
    drop(gw);

    // Behind a PROXY-protocol balancer: the header comes first, the ClientHello after it.
    let both = dir.path().join("both.yaml");
    std::fs::write(
        &both,
        "edge: {enableSslPassthrough: true, useProxyProtocol: true}\n",
    )
    .unwrap();
    let gw = Portcullis::start(&m, &["--config", both.to_str().unwrap()]).await;
    let tcp = connect_with(gw.https, b"PROXY TCP4 198.51.100.4 10.0.0.1 40000 443\r\n").await;
    let config =
        portcullis::tls::client_config(pod_certs.ca_pem.as_bytes(), &[b"http/1.1"]).unwrap();
    let name = ServerName::try_from(PASS.to_string()).unwrap();
    let mut tls = tokio::time::timeout(
        TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .unwrap()
    .expect("the pod's own certificate behind a PROXY header");
    let answer = raw_get(&mut tls, PASS).await.unwrap();
    assert_eq!(header_of(&answer, "x-echo-name"), Some("tls-1"));
}

const MTLS: &str = "mtls.edge.test";
const MTLS_ERR: &str = "err.edge.test";

/// A CA called `ca_name` and client certificates for `clients` (common names) signed by
/// it: (CA PEM, [(cert PEM, key PEM)]).
fn client_pki(ca_name: &str, clients: &[&str]) -> (String, Vec<(String, String)>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaves = clients
        .iter()
        .map(|cn| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, *cn);
            p.distinguished_name
                .push(DnType::OrganizationName, "Edge Tests");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        })
        .collect();
    (ca_cert.pem(), leaves)
}

/// GET /who from `host` over TLS (trusting `server_ca`), presenting `client` if given.
async fn mtls_get(
    addr: SocketAddr,
    host: &str,
    server_ca: &str,
    client: Option<&(String, String)>,
    extra: &str,
) -> String {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(server_ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = connect(addr).await;
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut tls = tokio::time::timeout(
        TIMEOUT,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake timed out")
    .expect("handshake completes whatever the certificate");
    raw_get_with(&mut tls, host, extra)
        .await
        .expect("an answer")
}

#[tokio::test]
async fn client_certificates_per_host() {
    let (client_ca, clients) = client_pki("Edge Client CA", &["alice", "bob"]);
    let (_, strangers) = client_pki("Some Other CA", &["alice"]);
    let (alice, bob, mallory) = (&clients[0], &clients[1], &strangers[0]);
    let server =
        DevCerts::generate_for_names(&[MTLS.to_string(), MTLS_ERR.to_string(), SECURE.to_string()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifests");
    std::fs::create_dir(&m).unwrap();
    let (web, _web) = pod("127.0.0.2", "web-1").await;
    let ca_secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "client-ca", "namespace": e2e::NS},
        "stringData": {"ca.crt": client_ca}
    });
    let secret_ref = format!("{}/client-ca", e2e::NS);
    write_atomic(&m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(
        &m,
        "10-ingress.yaml",
        &yaml(&[
            ingress(
                "mtls",
                MTLS,
                Some("server-tls"),
                &[("/", "web")],
                &[
                    ("nginx.ingress.kubernetes.io/auth-tls-secret", &secret_ref),
                    (
                        "nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream",
                        "true",
                    ),
                    ("nginx.ingress.kubernetes.io/auth-tls-match-cn", "CN=alice"),
                ],
            ),
            ingress(
                "mtls-err",
                MTLS_ERR,
                Some("server-tls"),
                &[("/", "web")],
                &[
                    ("nginx.ingress.kubernetes.io/auth-tls-secret", &secret_ref),
                    (
                        "nginx.ingress.kubernetes.io/auth-tls-error-page",
                        "https://errors.edge.test/cert",
                    ),
                ],
            ),
            ingress("secure", SECURE, Some("server-tls"), &[("/", "web")], &[]),
            service("web"),
            slice("web", "web-1", web, true),
            tls_secret("server-tls", &server.cert_pem, &server.key_pem),
            ca_secret,
        ]),
    );
    let gw = Portcullis::start(&m, &[]).await;
    let ca = &server.ca_pem;

    // A certificate from the trusted CA: through, with the headers nginx sets.
    let answer = mtls_get(gw.https, MTLS, ca, Some(alice), "").await;
    let echo = echoed(&answer);
    let h = &echo["headers"];
    assert_eq!(h["ssl-client-verify"], "SUCCESS", "{echo}");
    assert_eq!(h["ssl-client-subject-dn"], "O=Edge Tests,CN=alice");
    assert_eq!(h["ssl-client-issuer-dn"], "CN=Edge Client CA");
    let escaped = h["ssl-client-cert"].as_str().unwrap();
    assert!(
        escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
        "{escaped}"
    );
    assert!(!escaped.contains('\n') && !escaped.contains('/'));

    // No certificate, or one from another CA: 400 from portcullis, the pod never asked.
    let answer = mtls_get(gw.https, MTLS, ca, None, "ssl-client-verify: SUCCESS\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(header_of(&answer, "x-echo-name"), None);
    let answer = mtls_get(gw.https, MTLS, ca, Some(mallory), "").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // A valid certificate whose subject does not match auth-tls-match-cn: 403.
    let answer = mtls_get(gw.https, MTLS, ca, Some(bob), "").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

    // auth-tls-error-page: the failure is a redirect there.
    let answer = mtls_get(gw.https, MTLS_ERR, ca, None, "").await;
    assert!(answer.starts_with("HTTP/1.1 302"), "{answer}");
    assert_eq!(
        header_of(&answer, "location"),
        Some("https://errors.edge.test/cert")
    );
    let answer = mtls_get(gw.https, MTLS_ERR, ca, Some(bob), "").await;
    assert_eq!(echoed(&answer)["headers"]["ssl-client-verify"], "SUCCESS");

    // A connection opened for a host without client certificates cannot be used for
    // one with them (its client was never asked): 421, so it opens its own.
    let tcp = TcpStream::connect(gw.https).await.unwrap();
    let mut tls = tls_over(tcp, ca).await;
    let answer = raw_get(&mut tls, MTLS).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    // Hosts without the annotations are untouched.
    let answer = mtls_get(gw.https, SECURE, ca, None, "").await;
    assert!(echoed(&answer)["headers"]["ssl-client-verify"].is_null());
}

fn opaque_secret(name: &str, data: serde_json::Value) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": e2e::NS},
        "stringData": data
    })
}

#[tokio::test]
async fn backend_tls_verifies_the_pod_and_presents_a_client_certificate() {
    use rustls_pki_types::CertificateDer;
    // The pod's verifier and config below use the process default provider.
    portcullis::tls::install_provider();
    // The pod: a certificate for api.internal from CA "pod", and it demands a client
    // certificate from CA "proxy clients".
    let pod_certs = DevCerts::generate_for_names(&["api.internal".to_string()]).unwrap();
    let (client_ca, clients) = client_pki("Proxy Clients", &["portcullis"]);
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let mut pod_config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(portcullis::tls::SniResolver::new(
            pod_certs.certified_key().unwrap(),
        )));
    pod_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (pod_addr, _pod) = portcullis::echo::spawn_echo_tls(
        "127.0.0.4:0".parse().unwrap(),
        portcullis::echo::EchoOptions {
            name: "api-1".into(),
            delay: std::time::Duration::ZERO,
        },
        Arc::new(pod_config),
    )
    .await
    .unwrap();
    let other_ca = DevCerts::generate_for_names(&["api.internal".to_string()]).unwrap();
    let (client_cert, client_key) = &clients[0];

    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifests");
    std::fs::create_dir(&m).unwrap();
    let tls_annotations = |secret: &str| -> Vec<(String, String)> {
        vec![
            (
                "nginx.ingress.kubernetes.io/backend-protocol".into(),
                "HTTPS".into(),
            ),
            (
                "nginx.ingress.kubernetes.io/proxy-ssl-secret".into(),
                format!("{}/{secret}", e2e::NS),
            ),
            (
                "nginx.ingress.kubernetes.io/proxy-ssl-verify".into(),
                "on".into(),
            ),
            (
                "nginx.ingress.kubernetes.io/proxy-ssl-name".into(),
                "api.internal".into(),
            ),
            (
                "nginx.ingress.kubernetes.io/proxy-ssl-server-name".into(),
                "on".into(),
            ),
        ]
    };
    let ing = |name: &str, host: &str, secret: &str| {
        let a = tls_annotations(secret);
        let a: Vec<(&str, &str)> = a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ingress(name, host, None, &[("/", "api")], &a)
    };
    write_atomic(&m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(
        &m,
        "10-ingress.yaml",
        &yaml(&[
            ing("good", "good.edge.test", "upstream-good"),
            ing("wrong-ca", "wrong.edge.test", "upstream-wrong-ca"),
            ing("no-cert", "nocert.edge.test", "upstream-no-cert"),
            service("api"),
            slice("api", "api-1", pod_addr, true),
            opaque_secret(
                "upstream-good",
                serde_json::json!({"ca.crt": pod_certs.ca_pem, "tls.crt": client_cert, "tls.key": client_key}),
            ),
            opaque_secret(
                "upstream-wrong-ca",
                serde_json::json!({"ca.crt": other_ca.ca_pem, "tls.crt": client_cert, "tls.key": client_key}),
            ),
            opaque_secret(
                "upstream-no-cert",
                serde_json::json!({"ca.crt": pod_certs.ca_pem}),
            ),
        ]),
    );
    let gw = Portcullis::start(&m, &[]).await;

    // The right CA and a client certificate the pod accepts: through, over TLS.
    let mut tcp = TcpStream::connect(gw.http).await.unwrap();
    let answer = raw_get(&mut tcp, "good.edge.test").await.unwrap();
    let echo = echoed(&answer);
    assert_eq!(echo["tls"], true);
    assert_eq!(header_of(&answer, "x-echo-name"), Some("api-1"));
    // The pod's certificate does not chain to the configured CA: 502 from portcullis.
    let mut tcp = TcpStream::connect(gw.http).await.unwrap();
    let answer = raw_get(&mut tcp, "wrong.edge.test").await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert_eq!(header_of(&answer, "server"), Some("portcullis"));
    // No client certificate in the Secret: the pod refuses the handshake, 502.
    let mut tcp = TcpStream::connect(gw.http).await.unwrap();
    let answer = raw_get(&mut tcp, "nocert.edge.test").await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
}

/// Connects, retrying briefly: on a loaded machine a loopback connect has been seen to
/// fail once while the listener was up (the error is printed if it keeps failing).
async fn connect(addr: SocketAddr) -> TcpStream {
    let mut last = None;
    for _ in 0..20 {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return tcp,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("connect to {addr}: {last:?}");
}
