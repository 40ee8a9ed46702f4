//! External auth over HTTPS through the real binary: the auth service's certificate is
//! verified against the system trust store, which `SSL_CERT_FILE` points at a test CA
//! here. A service whose certificate that CA did not sign is refused (500), never trusted.
//! Its own test binary, because it sets the process environment the child inherits.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use common::{Client, Proto};
use e2e::{Portcullis, ingress, ingress_class, pod, service, slice, write_atomic, yaml};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis::tls::DevCerts;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An HTTPS auth service on `ip` with the certificate of `certs`: `Bearer good` passes
/// with `X-User: tls-alice`, anything else gets 401.
async fn tls_auth_service(ip: &str, certs: &DevCerts) -> (std::net::SocketAddr, JoinHandle<()>) {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(certs.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(certs.key_pem.as_bytes()).unwrap();
    let provider = portcullis::tls::provider();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let good = req
                        .headers()
                        .get("authorization")
                        .is_some_and(|v| v == "Bearer good");
                    let resp = match good {
                        true => Response::builder().header("x-user", "tls-alice"),
                        false => Response::builder().status(401),
                    };
                    Ok::<_, Infallible>(resp.body(Full::new(Bytes::new())).unwrap())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_auth_service_is_verified() {
    let trusted = DevCerts::generate_for_names(&["127.0.0.64".into()]).unwrap();
    let untrusted = DevCerts::generate_for_names(&["127.0.0.65".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &trusted.ca_pem).unwrap();
    // SAFETY: the only test of this binary sets it before any other thread reads the
    // environment or any child is spawned; the portcullis child inherits it.
    unsafe { std::env::set_var("SSL_CERT_FILE", &ca) };

    let (good_addr, _good) = tls_auth_service("127.0.0.64", &trusted).await;
    let (bad_addr, _bad) = tls_auth_service("127.0.0.65", &untrusted).await;
    let (web, _pod) = pod("127.0.0.66", "web-1").await;
    let m = dir.path().join("manifests");
    std::fs::create_dir(&m).unwrap();
    let url = |addr| format!("https://{addr}/verify");
    let (good_url, bad_url) = (url(good_addr), url(bad_addr));
    let annotations = |u: &str| {
        vec![
            ("nginx.ingress.kubernetes.io/auth-url", u.to_string()),
            (
                "nginx.ingress.kubernetes.io/auth-response-headers",
                "X-User".to_string(),
            ),
        ]
    };
    let ing = |name: &str, host: &str, u: &str| {
        let a = annotations(u);
        let a: Vec<(&str, &str)> = a.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ingress(name, host, None, &[("/", "web")], &a)
    };
    write_atomic(&m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(
        &m,
        "10-web.yaml",
        &yaml(&[
            service("web"),
            slice("web", "web-1", web, true),
            ing("trusted", "trusted.auth.test", &good_url),
            ing("untrusted", "untrusted.auth.test", &bad_url),
        ]),
    );
    let gw = Portcullis::start(&m, &[]).await;
    let send = |host: &'static str, auth: Option<&'static str>| {
        let addr = gw.http;
        async move {
            let mut c = Client::plain(addr, Proto::H1).await.unwrap();
            let mut req = c.request(host, "/");
            if let Some(a) = auth {
                req.headers_mut()
                    .insert("authorization", a.parse().unwrap());
            }
            c.send(req).await.unwrap()
        }
    };
    let ok = send("trusted.auth.test", Some("Bearer good")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let echoed: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(echoed["headers"]["x-user"], "tls-alice");
    assert_eq!(
        send("trusted.auth.test", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The certificate is not signed by a trusted CA: no answer is believed.
    assert_eq!(
        send("untrusted.auth.test", Some("Bearer good"))
            .await
            .status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}
