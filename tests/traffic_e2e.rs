//! Rate limits, cookie affinity and upstream hashing through the real binary:
//! `portcullis serve` with a manifests directory and a settings file, echo pods on
//! 127.0.0.x, and clients bound to their own 127.0.0.x source addresses. An EndpointSlice
//! rewritten on disk takes a sticky pod out, through the same file watch and endpoint
//! refresh a cluster change would use.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use e2e::{
    Portcullis, eventually, ingress, ingress_class, pod, service, slice, write_atomic, yaml,
};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const LIMITED: &str = "limited.e2e.test";
const STICKY: &str = "sticky.e2e.test";
const HASHED: &str = "hashed.e2e.test";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client_from(source: &str) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_local_address(Some(source.parse::<IpAddr>().unwrap()));
    Client::builder(TokioExecutor::new()).build(http)
}

struct Answer {
    status: u16,
    pod: String,
    set_cookie: Option<String>,
}

async fn get(
    c: &HttpClient,
    gw: &Portcullis,
    host: &str,
    path: &str,
    cookie: Option<&str>,
) -> Answer {
    let mut req = Request::get(format!("http://{}{path}", gw.http)).header("host", host);
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        c.request(req.body(Full::default()).unwrap()),
    )
    .await
    .expect("request timed out")
    .expect("request failed");
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let answer = Answer {
        status: resp.status().as_u16(),
        pod: header("x-echo-name").unwrap_or_default(),
        set_cookie: header("set-cookie"),
    };
    let _ = resp.into_body().collect().await;
    answer
}

#[tokio::test]
async fn limits_affinity_and_hashing_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    let mut pods = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (addr, task) = pod(&format!("127.0.0.{}", 201 + i), &format!("web-{i}")).await;
        pods.push(addr);
        tasks.push(task);
    }
    let slices = |ready: [bool; 3]| {
        yaml(
            &(0..3)
                .map(|i| slice("web", &format!("web-{i}"), pods[i], ready[i]))
                .collect::<Vec<_>>(),
        )
    };
    write_atomic(m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(m, "10-web.yaml", &yaml(&[service("web")]));
    write_atomic(m, "20-slices.yaml", &slices([true; 3]));
    write_atomic(
        m,
        "30-ingresses.yaml",
        &yaml(&[
            ingress(
                "limited",
                LIMITED,
                None,
                &[("/", "web")],
                &[
                    ("nginx.ingress.kubernetes.io/limit-rpm", "1"),
                    ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "2"),
                    ("nginx.ingress.kubernetes.io/limit-whitelist", "127.0.0.213"),
                ],
            ),
            ingress(
                "sticky",
                STICKY,
                None,
                &[("/", "web")],
                &[("nginx.ingress.kubernetes.io/affinity", "cookie")],
            ),
            ingress(
                "hashed",
                HASHED,
                None,
                &[("/", "web")],
                &[("nginx.ingress.kubernetes.io/upstream-hash-by", "$arg_k")],
            ),
        ]),
    );
    let settings = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(settings.path(), "proxy: {limitReqStatusCode: 429}\n").unwrap();
    let config = settings.path().to_str().unwrap();
    let gw = Portcullis::start(m, &["--config", config]).await;

    // Limits: 1 a minute plus a burst of 2 per address, 429 from the settings file.
    for source in ["127.0.0.211", "127.0.0.212"] {
        let c = client_from(source);
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(get(&c, &gw, LIMITED, "/", None).await.status);
        }
        assert_eq!(got, [200, 200, 200, 429, 429], "from {source}");
    }
    let exempt = client_from("127.0.0.213");
    for _ in 0..10 {
        assert_eq!(get(&exempt, &gw, LIMITED, "/", None).await.status, 200);
    }
    // Other Ingresses have no limit.
    let c = client_from("127.0.0.211");
    for _ in 0..5 {
        assert_eq!(get(&c, &gw, STICKY, "/", None).await.status, 200);
    }

    // Affinity: the cookie of the first answer keeps a client on its pod.
    let first = get(&c, &gw, STICKY, "/", None).await;
    let line = first.set_cookie.expect("the first answer sets the cookie");
    assert!(
        line.starts_with("INGRESSCOOKIE=") && line.contains("HttpOnly"),
        "{line}"
    );
    let cookie = line.split(';').next().unwrap().to_string();
    for _ in 0..10 {
        let again = get(&c, &gw, STICKY, "/", Some(&cookie)).await;
        assert_eq!(again.pod, first.pod);
        assert!(again.set_cookie.is_none());
    }
    // Hashing: each key keeps its pod.
    let mut owner = HashMap::new();
    for k in 0..30 {
        let path = format!("/?k={k}");
        let p = get(&c, &gw, HASHED, &path, None).await.pod;
        assert_eq!(get(&c, &gw, HASHED, &path, None).await.pod, p);
        owner.insert(k, p);
    }
    let used: std::collections::HashSet<_> = owner.values().collect();
    assert!(used.len() > 1, "30 keys spread over the pods");

    // The sticky pod stops being ready (its EndpointSlice rewritten): its client moves.
    let index: usize = first.pod.trim_start_matches("web-").parse().unwrap();
    let mut ready = [true; 3];
    ready[index] = false;
    write_atomic(m, "20-slices.yaml", &slices(ready));
    let (moved, _) = eventually(Duration::from_secs(10), "client moved", || async {
        let now = get(&c, &gw, STICKY, "/", Some(&cookie)).await;
        (now.pod != first.pod && now.status == 200).then_some(now.pod)
    })
    .await;
    for _ in 0..5 {
        assert_eq!(get(&c, &gw, STICKY, "/", Some(&cookie)).await.pod, moved);
    }
    // Hash keys of the remaining pods stay where they were.
    for (k, p) in &owner {
        let now = get(&c, &gw, HASHED, &format!("/?k={k}"), None).await.pod;
        if *p != first.pod {
            assert_eq!(&now, p, "key {k}");
        } else {
            assert_ne!(now, first.pod, "key {k}");
        }
    }
    drop(tasks);
}
