//! Shared helpers for the proxy integration tests: hand-built routes served as production
//! serves them (`server::serve` with `gateway::handler` over a snapshot whose router holds
//! the one route under test, so listener, path normalisation and routing all run),
//! loopback "pods" on 127.0.0.x, and small HTTP clients.
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
use hyper_util::rt::TokioExecutor;
use portcullis::echo::{self, EchoOptions};
use portcullis::ingress::model::policy::Policy;
use portcullis::ingress::model::router::{RouterBuilder, compile_path_regex};
use portcullis::ingress::model::snapshot::{
    Backend, EndpointCell, PathType, Route, Snapshot, UpstreamProtocol,
};
use portcullis::ingress::request::gateway::{self, Gateway, ProxyConfig, Scheme};
use portcullis::server::{ServeOptions, Shutdown};
use tokio::net::TcpListener;

pub mod scripted_pod;

/// The one route a test proxy serves, and what the snapshot says around it.
pub struct TestRoute {
    pub route: Route,
    /// An ImplementationSpecific regex path (what `use-regex` compiles, through the
    /// router's own `compile_path_regex`): its captures become `$1…`. Without one the
    /// route's own path (`/`, Prefix) matches every request.
    pub regex: Option<&'static str>,
    /// Hosts with a TLS section (`spec.tls`): requests for them count as `host_tls`.
    pub tls_hosts: Vec<&'static str>,
}

/// What stays when a test swaps the route: the regex path and the TLS hosts.
struct Shape {
    regex: Option<&'static str>,
    tls_hosts: Vec<&'static str>,
}

impl Shape {
    /// A snapshot whose router holds only `route`, as `compile` would have built it.
    fn snapshot(&self, route: Route, generation: u64) -> Snapshot {
        let regex = self
            .regex
            .map(|p| compile_path_regex(p).expect("test regex compiles"));
        let mut builder = RouterBuilder::new();
        builder.add(route, regex).expect("the only route is free");
        let (router, problems) = builder.build();
        assert!(problems.is_empty(), "{problems:?}");
        let mut snapshot = Snapshot {
            generation,
            router,
            ..Snapshot::default()
        };
        for host in &self.tls_hosts {
            snapshot.tls_hosts.insert((*host).to_string(), ());
        }
        snapshot
    }
}

pub struct TestProxy {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    shape: Shape,
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

    /// Serves `route` from now on, as a configuration reload does: a new snapshot (same
    /// regex path and TLS hosts) is stored into the gateway's `ArcSwap`.
    pub fn set_route(&self, route: Route) {
        let snapshots = self.gateway.snapshot();
        let generation = snapshots.load().generation + 1;
        snapshots.store(Arc::new(self.shape.snapshot(route, generation)));
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
    let metrics = Arc::new(
        portcullis::ingress::model::route_metrics::RouteMetrics::new(
            ingress.clone(),
            None,
            path.clone(),
            backend.name.clone(),
            canary,
        ),
    );
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

/// A proxy on 127.0.0.1:0 that routes everything to `route`.
pub async fn start_proxy(route: Route, config: ProxyConfig) -> TestProxy {
    start_proxy_with(
        TestRoute {
            route,
            regex: None,
            tls_hosts: Vec::new(),
        },
        config,
        Scheme::Http,
    )
    .await
}

/// A proxy on 127.0.0.1:0 serving `route` as the `scheme` listener. The listener is plain
/// TCP either way: `Scheme::Https` is what the HTTPS listener's handler is given, and
/// these tests are about what the proxy does with it, not about TLS termination.
pub async fn start_proxy_with(route: TestRoute, config: ProxyConfig, scheme: Scheme) -> TestProxy {
    start_proxy_on(route, config, scheme, None).await
}

/// `start_proxy_with` on a TLS listener (h2 and http/1.1 by ALPN), as production serves
/// HTTPS: HTTP/2 streams then take the boxed path hyper's task per stream needs.
pub async fn start_proxy_tls(
    route: TestRoute,
    config: ProxyConfig,
    tls: Arc<rustls::ServerConfig>,
) -> TestProxy {
    start_proxy_on(route, config, Scheme::Https, Some(tls)).await
}

async fn start_proxy_on(
    route: TestRoute,
    config: ProxyConfig,
    scheme: Scheme,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> TestProxy {
    let shape = Shape {
        regex: route.regex,
        tls_hosts: route.tls_hosts,
    };
    let snapshot = shape.snapshot(route.route, 1);
    let gateway = Arc::new(Gateway::new(
        Arc::new(ArcSwap::from_pointee(snapshot)),
        config,
    ));
    let (addr, task) = serve_handler_on(gateway::handler(gateway.clone(), scheme), tls).await;
    TestProxy {
        addr,
        gateway,
        shape,
        task,
    }
}

/// A listener on 127.0.0.1:0 running `handler` through `server::serve`, as production
/// runs its listeners (default options). Abort the task to stop it.
pub async fn serve_handler(
    handler: impl portcullis::server::Respond,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    serve_handler_on(handler, None).await
}

async fn serve_handler_on(
    handler: impl portcullis::server::Respond,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        portcullis::server::serve(
            listener,
            tls,
            handler,
            Shutdown::new(),
            ServeOptions::new("test"),
        )
        .await
        .unwrap();
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
