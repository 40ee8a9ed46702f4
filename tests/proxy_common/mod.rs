//! Shared helpers for the proxy integration tests: hand-built routes, a minimal hyper
//! server that calls `Gateway::forward` for one swappable route (the router is not
//! needed), loopback "pods" on 127.0.0.x, and small HTTP clients.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use portcullis::echo::{self, EchoOptions};
use portcullis::ingress::gateway::{Gateway, Inbound, ProxyConfig, Scheme};
use portcullis::ingress::policy::Policy;
use portcullis::ingress::snapshot::{
    Backend, EndpointCell, PathType, Route, Snapshot, UpstreamProtocol,
};
use portcullis::server::ConnInfo;
use regex::Regex;
use tokio::net::TcpListener;

/// What the test server routes every request to.
pub struct TestRoute {
    pub route: Route,
    /// Stand-in for the router's regex match: captures become `$1…`.
    pub regex: Option<Regex>,
    pub host_tls: bool,
}

pub struct TestProxy {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub route: Arc<ArcSwap<TestRoute>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestProxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_route(&self, route: Route) {
        let old = self.route.load();
        self.route.store(Arc::new(TestRoute {
            route,
            regex: old.regex.clone(),
            host_tls: old.host_tls,
        }));
    }
}

pub fn backend(name: &str, eligible: &[SocketAddr]) -> Arc<Backend> {
    backend_proto(name, eligible, UpstreamProtocol::Http1)
}

pub fn backend_proto(
    name: &str,
    eligible: &[SocketAddr],
    protocol: UpstreamProtocol,
) -> Arc<Backend> {
    Arc::new(Backend {
        name: name.into(),
        protocol,
        endpoints: EndpointCell::new(Vec::new(), eligible.to_vec()),
        external: None,
    })
}

pub fn route(backend: Arc<Backend>, policy: Policy) -> Route {
    let ingress: Arc<str> = "default/web".into();
    let path: Arc<str> = "/".into();
    let canary = policy.canary.as_ref().map(|c| c.backend.name.clone());
    // Labelled as `compile` labels a route, so tests can read the series.
    let metrics = Arc::new(portcullis::ingress::route_metrics::RouteMetrics::new(
        ingress.clone(),
        None,
        path.clone(),
        backend.name.clone(),
        canary,
    ));
    Route {
        ingress,
        host: None,
        path,
        path_type: PathType::Prefix,
        backend,
        policy: Arc::new(policy),
        metrics,
    }
}

/// A proxy on 127.0.0.1:0 that forwards everything to `route`.
pub async fn start_proxy(route: Route, config: ProxyConfig) -> TestProxy {
    start_proxy_with(
        TestRoute {
            route,
            regex: None,
            host_tls: false,
        },
        config,
        Scheme::Http,
    )
    .await
}

pub async fn start_proxy_with(route: TestRoute, config: ProxyConfig, scheme: Scheme) -> TestProxy {
    let gateway = Arc::new(Gateway::new(
        Arc::new(ArcSwap::from_pointee(Snapshot::default())),
        config,
    ));
    let route = Arc::new(ArcSwap::from_pointee(route));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (g, r) = (gateway.clone(), route.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, remote)) = listener.accept().await else {
                continue;
            };
            let conn = Arc::new(ConnInfo {
                remote,
                local: addr,
                tls: false,
                sni: None,
            });
            let (g, r) = (g.clone(), r.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (g, r, conn) = (g.clone(), r.clone(), conn.clone());
                        async move {
                            let tr = r.load_full();
                            let captures: Vec<String> = match &tr.regex {
                                Some(re) => re
                                    .captures(req.uri().path())
                                    .map(|c| {
                                        c.iter()
                                            .skip(1)
                                            .map(|m| {
                                                m.map_or(String::new(), |m| m.as_str().to_string())
                                            })
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                                None => Vec::new(),
                            };
                            let inbound = Inbound {
                                conn: &conn,
                                scheme,
                                host_tls: tr.host_tls,
                            };
                            Ok::<_, Infallible>(
                                g.forward(&tr.route, &captures, req, &inbound).await,
                            )
                        }
                    });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TestProxy {
        addr,
        gateway,
        route,
        task,
    }
}

/// A server on 127.0.0.1:0 that runs a real listener `Handler` (what server.rs will do).
pub async fn serve_handler(
    handler: portcullis::server::Handler,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, remote)) = listener.accept().await else {
                continue;
            };
            let conn = Arc::new(ConnInfo {
                remote,
                local: addr,
                tls: false,
                sni: None,
            });
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let fut = handler(req, conn.clone());
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// An echo pod on `ip`:0.
pub async fn pod(ip: &str) -> SocketAddr {
    echo::spawn_echo(format!("{ip}:0").parse().unwrap())
        .await
        .unwrap()
        .0
}

/// An echo pod that waits `delay` before answering.
pub async fn slow_pod(ip: &str, delay: Duration) -> SocketAddr {
    let opts = EchoOptions {
        name: String::new(),
        delay,
    };
    echo::spawn_echo_with(format!("{ip}:0").parse().unwrap(), opts)
        .await
        .unwrap()
        .0
}

/// An address on `ip` where nothing listens (connections are refused).
pub async fn dead_addr(ip: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The echo pod that answered (`echo-<addr>`).
    pub fn pod(&self) -> String {
        self.json()["name"].as_str().unwrap_or_default().to_string()
    }

    /// A request header as the echo pod saw it.
    pub fn seen(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(String::from)
    }
}

pub async fn send(client: &TestClient, req: Request<Full<Bytes>>) -> Answer {
    let resp: Response<hyper::body::Incoming> =
        tokio::time::timeout(Duration::from_secs(20), client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("body timed out")
        .expect("body failed")
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(client: &TestClient, url: &str) -> Answer {
    send(client, Request::get(url).body(Full::default()).unwrap()).await
}

pub fn echo_name(addr: SocketAddr) -> String {
    format!("echo-{addr}")
}

/// A request body fed through a channel, so the proxy sees a chunked stream.
pub fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    (tx, ChannelBody(rx))
}

pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

pub fn streaming_client() -> Client<HttpConnector, ChannelBody> {
    Client::builder(TokioExecutor::new()).build_http()
}
