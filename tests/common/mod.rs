//! Helpers shared by the integration tests: start `server::serve` on a loopback port, and
//! talk to it with a real hyper client over HTTP/1.1 or HTTP/2, plain or over rustls.
//!
//! Typical use:
//! ```ignore
//! mod common;
//! use common::{Client, Proto};
//! common::init();
//! let server = common::start(common::handler(|_req, _conn| async { ok("hi") }), None).await;
//! let mut client = Client::plain(server.addr, Proto::H1).await?;
//! let reply = client.get("example.test", "/").await?;
//! server.stop().await;
//! ```
//! Every network step is bounded by `TIMEOUT`, so a broken server fails a test instead of
//! hanging it.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::body::Body;
use portcullis::body::RequestBody;
use portcullis::server::{self, ConnInfo, Handler, Respond, ServeOptions, Shutdown};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Upper bound for any single connect, handshake or request in the helpers.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the rustls provider and a test log subscriber (`RUST_LOG` filters it).
/// Call it first in every test; repeated calls are harmless.
pub fn init() {
    portcullis::tls::install_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Turns an async closure into a `Handler`.
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<RequestBody>, Arc<ConnInfo>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    Arc::new(move |req, conn| Box::pin(f(req, conn)))
}

/// A 200 text response.
pub fn ok(msg: impl Into<String>) -> Response<Body> {
    portcullis::body::text(StatusCode::OK, msg)
}

/// A server started by `start*`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    /// The `serve` task; it finishes when `serve` returns.
    pub task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Triggers shutdown and waits (bounded) for `serve` to return.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let res = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("serve did not return after shutdown");
        res.expect("serve task panicked")
            .expect("serve returned an error");
    }
}

/// `serve` on 127.0.0.1 with a random port and default options (listener name "test",
/// short grace so a failing test does not wait long).
pub async fn start(handler: impl Respond, tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
    let mut opts = ServeOptions::new("test");
    opts.grace = Duration::from_secs(5);
    start_with(handler, tls, opts).await
}

/// `serve` on 127.0.0.1 with a random port and the given options.
pub async fn start_with(
    handler: impl Respond,
    tls: Option<Arc<rustls::ServerConfig>>,
    opts: ServeOptions,
) -> TestServer {
    start_on("127.0.0.1", handler, tls, opts).await
}

/// `serve` on `ip` (any 127.x.y.z works on Linux) with a random port.
pub async fn start_on(
    ip: &str,
    handler: impl Respond,
    tls: Option<Arc<rustls::ServerConfig>>,
    opts: ServeOptions,
) -> TestServer {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server::serve(
        listener,
        tls,
        handler,
        shutdown.clone(),
        opts,
    ));
    TestServer {
        addr,
        shutdown,
        task,
    }
}

/// Which HTTP version a client speaks. Over TLS it is also the only ALPN protocol offered;
/// in plain text H2 is prior-knowledge h2c.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

/// A collected response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header value as a string, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One client connection (kept alive across requests).
pub struct Client {
    sender: Sender,
    proto: Proto,
    tls: bool,
    /// DER of the certificate the server presented (TLS only).
    pub peer_leaf: Option<Vec<u8>>,
    /// The ALPN protocol the server selected (TLS only).
    pub alpn: Option<Vec<u8>>,
    conn: JoinHandle<()>,
}

impl Client {
    /// A plain-text connection to `addr`.
    pub async fn plain(addr: SocketAddr, proto: Proto) -> anyhow::Result<Client> {
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .context("connect timed out")??;
        Self::handshake(TokioIo::new(tcp), proto, false, None, None).await
    }

    /// A TLS connection to `addr` trusting only the certificates in `ca_pem`.
    /// `server_name` is sent as SNI and checked against the certificate; an IP address
    /// (e.g. "127.0.0.1") sends NO SNI, which is how the no-SNI default is tested.
    pub async fn tls(
        addr: SocketAddr,
        server_name: &str,
        ca_pem: &[u8],
        proto: Proto,
    ) -> anyhow::Result<Client> {
        let alpn: &[&[u8]] = match proto {
            Proto::H1 => &[b"http/1.1"],
            Proto::H2 => &[b"h2"],
        };
        let config = portcullis::tls::client_config(ca_pem, alpn)?;
        let name = ServerName::try_from(server_name.to_string())?;
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .context("connect timed out")??;
        let stream = tokio::time::timeout(
            TIMEOUT,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .context("TLS handshake timed out")??;
        let (_, session) = stream.get_ref();
        let peer_leaf = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.to_vec());
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        Self::handshake(TokioIo::new(stream), proto, true, peer_leaf, alpn).await
    }

    async fn handshake<I>(
        io: TokioIo<I>,
        proto: Proto,
        tls: bool,
        peer_leaf: Option<Vec<u8>>,
        alpn: Option<Vec<u8>>,
    ) -> anyhow::Result<Client>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = match proto {
            Proto::H1 => {
                let (sender, conn) = tokio::time::timeout(TIMEOUT, http1::handshake(io)).await??;
                // with_upgrades: the upgrade test takes the socket over after a 101.
                let task = tokio::spawn(async move {
                    let _ = conn.with_upgrades().await;
                });
                (Sender::H1(sender), task)
            }
            Proto::H2 => {
                let (sender, conn) =
                    tokio::time::timeout(TIMEOUT, http2::handshake(TokioExecutor::new(), io))
                        .await??;
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                (Sender::H2(sender), task)
            }
        };
        Ok(Client {
            sender,
            proto,
            tls,
            peer_leaf,
            alpn,
            conn,
        })
    }

    /// Builds a GET the way a real client would: HTTP/1.1 gets an origin-form URI and a
    /// `Host` header, HTTP/2 an absolute URI (the `:authority`) and no `Host`.
    pub fn request(&self, host: &str, path: &str) -> Request<Full<Bytes>> {
        let builder = match self.proto {
            Proto::H1 => Request::get(path).header(http::header::HOST, host),
            Proto::H2 => {
                let scheme = if self.tls { "https" } else { "http" };
                Request::get(format!("{scheme}://{host}{path}"))
            }
        };
        builder
            .body(Full::new(Bytes::new()))
            .expect("valid request")
    }

    /// GET `path` from `host` and collect the answer.
    pub async fn get(&mut self, host: &str, path: &str) -> anyhow::Result<Reply> {
        let req = self.request(host, path);
        self.send(req).await
    }

    /// Sends `req` unchanged and collects the answer.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        let resp = self.send_raw(req).await?;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(TIMEOUT, body.collect())
            .await
            .context("reading the body timed out")??
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }

    /// Sends `req` and returns the response head with its body unread (for upgrades and
    /// streaming).
    pub async fn send_raw(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> anyhow::Result<Response<Incoming>> {
        let fut = async {
            match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await?;
                    Ok::<_, hyper::Error>(s.send_request(req).await?)
                }
                Sender::H2(s) => {
                    s.ready().await?;
                    Ok(s.send_request(req).await?)
                }
            }
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| anyhow!("request timed out"))?
            .map_err(Into::into)
    }

    /// Whether the connection has ended (the server closed it, or it failed).
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// Waits (bounded) until the server has closed the connection.
    pub async fn closed(self) -> anyhow::Result<()> {
        match tokio::time::timeout(TIMEOUT, self.conn).await {
            Ok(_) => Ok(()),
            Err(_) => bail!("connection still open after {TIMEOUT:?}"),
        }
    }
}

/// One request on a fresh TLS connection: SNI `server_name`, host `server_name`.
pub async fn https_get(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &[u8],
    proto: Proto,
    path: &str,
) -> anyhow::Result<(Reply, Client)> {
    let mut client = Client::tls(addr, server_name, ca_pem, proto).await?;
    let reply = client.get(server_name, path).await?;
    Ok((reply, client))
}

/// The DER of the first certificate in `cert_pem` (the leaf), to compare with
/// `Client::peer_leaf`.
pub fn leaf_der(cert_pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("valid PEM")
        .to_vec()
}

/// The value of one sample in the metrics exposition, e.g.
/// `metric("portcullis_connections_open", &[("listener", "x")])`.
pub fn metric(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = String::from_utf8(portcullis::metrics::encode()).ok()?;
    let label_text = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(",");
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{label_text}}} ")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}
