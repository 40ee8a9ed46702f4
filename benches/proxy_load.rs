//! Request-path cost: the same small GET sent straight to an echo pod and through the
//! proxy, started as production starts it (`server::serve` with the gateway handler over a
//! snapshot whose router holds one hostless `/` route): listener, path normalisation,
//! routing, policy checks, forwarded headers, balancer, pooled upstream connection,
//! streamed response, metrics; access log off. The difference is what the proxy adds per
//! request. A second group keeps 32 requests in flight to show throughput with the
//! balancer's in-flight accounting.
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::ingress::model::policy::Policy;
use portcullis::ingress::model::router::RouterBuilder;
use portcullis::ingress::model::snapshot::{
    Backend, EndpointCell, PathType, Route, Snapshot, UpstreamProtocol,
};
use portcullis::ingress::request::gateway::{self, Gateway, ProxyConfig, Scheme};
use portcullis::server::{ServeOptions, Shutdown, serve};
use tokio::net::TcpListener;

type TestClient = Client<HttpConnector, Full<Bytes>>;

/// A snapshot that routes every request to `pods`, as `compile` would build it for one
/// hostless Ingress with a `/` Prefix path.
fn snapshot(pods: Vec<SocketAddr>) -> Snapshot {
    let route = Route {
        ingress: "bench/web".into(),
        host: None,
        path: "/".into(),
        path_type: PathType::Prefix,
        backend: Arc::new(Backend {
            name: "bench/web:80".into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: EndpointCell::new(Vec::new(), pods),
            external: None,
        }),
        policy: Arc::new(Policy::default()),
        metrics: Default::default(),
    };
    let mut builder = RouterBuilder::new();
    builder.add(route, None).unwrap();
    let (router, problems) = builder.build();
    assert!(problems.is_empty(), "{problems:?}");
    Snapshot {
        router,
        ..Snapshot::default()
    }
}

async fn start_proxy(pods: Vec<SocketAddr>) -> SocketAddr {
    let gateway = Arc::new(Gateway::new(
        Arc::new(ArcSwap::from_pointee(snapshot(pods))),
        ProxyConfig {
            access_log: false,
            ..ProxyConfig::default()
        },
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        None,
        gateway::handler(gateway, Scheme::Http),
        Shutdown::new(),
        ServeOptions::new("http"),
    ));
    addr
}

async fn fetch(client: &TestClient, url: &str) -> usize {
    let req = Request::get(url).body(Full::default()).unwrap();
    let resp = client.request(req).await.unwrap();
    resp.into_body().collect().await.unwrap().to_bytes().len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (pod_a, pod_b, proxy) = rt.block_on(async {
        let a = portcullis::echo::spawn_echo("127.0.0.2:0".parse().unwrap())
            .await
            .unwrap()
            .0;
        let b = portcullis::echo::spawn_echo("127.0.0.3:0".parse().unwrap())
            .await
            .unwrap()
            .0;
        let proxy = start_proxy(vec![a, b]).await;
        (a, b, proxy)
    });
    let _ = pod_b;
    let client: TestClient = Client::builder(TokioExecutor::new()).build_http();
    let direct = format!("http://{pod_a}/bench?x=1");
    let proxied = format!("http://{proxy}/bench?x=1");

    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1));
    g.bench_function("direct_to_pod", |b| {
        b.to_async(&rt).iter(|| fetch(&client, &direct))
    });
    g.bench_function("through_proxy", |b| {
        b.to_async(&rt).iter(|| fetch(&client, &proxied))
    });
    g.finish();

    let mut g = c.benchmark_group("get_32_in_flight");
    g.throughput(Throughput::Elements(32));
    g.bench_function("through_proxy", |b| {
        b.to_async(&rt).iter(|| async {
            let batch: Vec<_> = (0..32)
                .map(|_| {
                    let (client, url) = (client.clone(), proxied.clone());
                    tokio::spawn(async move { fetch(&client, &url).await })
                })
                .collect();
            for h in batch {
                h.await.unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
