//! Authentication through the real binary: `portcullis serve` with a manifests directory,
//! echo pods on 127.0.0.x, and a real hyper auth service. Basic auth with every hash
//! format (fixtures written by openssl and libxcrypt), fail-closed Secrets, external auth
//! (pass with copied headers, 401/403 passed through, 500 for anything else and for no
//! answer, sign-in redirect, cache), headers from an `auth-proxy-set-headers` ConfigMap
//! (fail closed when it is missing or invalid), and `satisfy` with the source allowlist.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use common::{Client, Proto, Reply};
use e2e::{NS, Portcullis, ingress, ingress_class, pod, service, slice, write_atomic, yaml};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const PASSWORD: &str = "open sesame";
/// User → hash of PASSWORD. Written by `openssl passwd -apr1/-1/-5/-6 -salt s4ltS4lt`,
/// libxcrypt's crypt(3) (`$2b$`/`$2y$`), and `openssl sha1 -binary | base64`.
const USERS: [(&str, &str); 7] = [
    ("apr1", "$apr1$s4ltS4lt$eRIykmJwtClUoMY5jbNp.0"),
    ("md5", "$1$s4ltS4lt$kaFJMPJPftzVSWTjxFpGU."),
    (
        "sha256",
        "$5$s4ltS4lt$CIKcTIxBkX0aQ1sFcLKFzOzD/w2Cc3Daz/idm9xR8R6",
    ),
    (
        "sha512",
        "$6$s4ltS4lt$8ff68xvl1AFcXlLHnWfl7fZ5iLNJne4A3ZndBYi.AKFt5yWjhTZqsJ9usyg20/LHOi2WimT2o8R07juuFlRCt0",
    ),
    (
        "bcrypt2b",
        "$2b$05$abcdefghijklmnopqrstuupx2xBUC4954936wVIjyyPHmUBFu0wCW",
    ),
    (
        "bcrypt2y",
        "$2y$05$abcdefghijklmnopqrstuupx2xBUC4954936wVIjyyPHmUBFu0wCW",
    ),
    ("sha1", "{SHA}W8r/fyL/UzygmbNAjq2HbA67qac="),
];

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn opaque(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": NS}, "data": data
    })
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", b64(&format!("{user}:{password}")))
}

/// What the auth service saw of one subrequest.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: http::HeaderMap,
}

/// A real auth service: decides by the client's Authorization header.
/// `Bearer good` → 200 with X-User; `Bearer forbidden` → 403; `Bearer teapot` → 418;
/// anything else → 401 with a challenge.
struct AuthService {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    _task: JoinHandle<()>,
}

impl AuthService {
    async fn start(ip: &str) -> AuthService {
        let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let connections: Arc<AtomicUsize> = Arc::default();
        let log = seen.clone();
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move { Ok::<_, Infallible>(decide(&req, &log)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        AuthService {
            addr,
            seen,
            connections,
            _task: task,
        }
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a subrequest")
    }
}

fn decide(req: &Request<Incoming>, log: &Mutex<Vec<Seen>>) -> Response<Full<Bytes>> {
    log.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let answer = |status: u16| Response::builder().status(status);
    let resp = match auth {
        "Bearer good" => answer(200)
            .header("x-user", "alice")
            .header("x-not-listed", "nope")
            .header("set-cookie", "_session=refreshed; Path=/"),
        "Bearer forbidden" => answer(403).header("www-authenticate", "Bearer error=\"scope\""),
        "Bearer teapot" => answer(418),
        _ => answer(401).header("www-authenticate", "Bearer realm=\"sso\""),
    };
    resp.body(Full::new(Bytes::from_static(b"auth says")))
        .unwrap()
}

struct Rig {
    gw: Portcullis,
    auth: AuthService,
    dir: tempfile::TempDir,
    _pod: JoinHandle<()>,
}

const BASIC: &str = "basic.auth.test";
const MAP: &str = "map.auth.test";
const BROKEN: &str = "broken.auth.test";
const MISSING: &str = "missing.auth.test";
const EXT: &str = "ext.auth.test";
const SIGNIN: &str = "signin.auth.test";
const CACHED: &str = "cached.auth.test";
const DOWN: &str = "down.auth.test";
const ANY_IN: &str = "any-in.auth.test";
const ANY_OUT: &str = "any-out.auth.test";
const ALL_IN: &str = "all-in.auth.test";
const ALL_OUT: &str = "all-out.auth.test";
const OPEN: &str = "open.auth.test";
const HEADERS: &str = "headers.auth.test";
const NO_HEADERS: &str = "no-headers.auth.test";
const BAD_HEADERS: &str = "bad-headers.auth.test";

fn config_map(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS}, "data": data
    })
}

/// The ConfigMap `auth-headers` with this tenant.
fn auth_headers(tenant: &str) -> String {
    yaml(&[
        config_map(
            "auth-headers",
            json!({"X-Tenant": tenant, "X-Auth-Host": "$host", "X-Empty-Drop": ""}),
        ),
        config_map("bad-headers", json!({"Connection": "close"})),
    ])
}

fn a(k: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{k}")
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (web, pod_task) = pod("127.0.0.61", "web-1").await;
    let auth = AuthService::start("127.0.0.62").await;
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.63:0").unwrap();
        l.local_addr().unwrap()
    };
    let m = dir.path();
    let file: String = USERS
        .iter()
        .map(|(u, h)| format!("{u}:{h}\n"))
        .collect::<String>()
        + "des:ab/G8gtZdMwak\n";
    let (typ, secret, realm, secret_type) = (
        a("auth-type"),
        a("auth-secret"),
        a("auth-realm"),
        a("auth-secret-type"),
    );
    let basic_auth = |name: &'static str| {
        vec![
            (typ.clone(), "basic".to_string()),
            (secret.clone(), name.to_string()),
        ]
    };
    let url = format!("http://{}/verify?host=$host", auth.addr);
    let ing = |name: &str, host: &str, ann: Vec<(String, String)>| {
        let ann: Vec<(&str, &str)> = ann.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ingress(name, host, None, &[("/", "web")], &ann)
    };
    let mut with_realm = basic_auth("users");
    with_realm.push((realm.clone(), "Staff only".into()));
    let mut map = basic_auth("user-map");
    map.push((secret_type.clone(), "auth-map".into()));
    let ext = vec![
        (a("auth-url"), url.clone()),
        (a("auth-response-headers"), "X-User".into()),
    ];
    let mut signin = ext.clone();
    signin.push((a("auth-signin"), "https://login.auth.test/start".into()));
    let mut cached = ext.clone();
    cached.push((a("auth-cache-key"), "$http_authorization".into()));
    cached.push((a("auth-cache-duration"), "200 401 1m".into()));
    let with_headers = |cm: &str| {
        let mut v = ext.clone();
        v.push((a("auth-proxy-set-headers"), cm.to_string()));
        v
    };
    let satisfy = |allow: &str, how: &str| {
        let mut v = basic_auth("users");
        v.push((a("whitelist-source-range"), allow.to_string()));
        v.push((a("satisfy"), how.to_string()));
        v
    };
    write_atomic(m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(
        m,
        "10-ingresses.yaml",
        &yaml(&[
            ing("basic", BASIC, with_realm),
            ing("map", MAP, map),
            ing("broken", BROKEN, basic_auth("broken")),
            ing("missing", MISSING, basic_auth("nowhere")),
            ing("ext", EXT, ext.clone()),
            ing("signin", SIGNIN, signin),
            ing("cached", CACHED, cached),
            ing(
                "down",
                DOWN,
                vec![(a("auth-url"), format!("http://{dead}/verify"))],
            ),
            ing("any-in", ANY_IN, satisfy("127.0.0.0/8", "any")),
            ing("any-out", ANY_OUT, satisfy("10.0.0.0/8", "any")),
            ing("all-in", ALL_IN, satisfy("127.0.0.0/8", "all")),
            ing("all-out", ALL_OUT, satisfy("10.0.0.0/8", "all")),
            ing("open", OPEN, vec![]),
            ing("headers", HEADERS, with_headers("auth-headers")),
            ing(
                "no-headers",
                NO_HEADERS,
                with_headers(&format!("{NS}/nowhere")),
            ),
            ing("bad-headers", BAD_HEADERS, with_headers("bad-headers")),
        ]),
    );
    write_atomic(m, "40-configmaps.yaml", &auth_headers("blue"));
    write_atomic(
        m,
        "20-web.yaml",
        &yaml(&[service("web"), slice("web", "web-1", web, true)]),
    );
    write_atomic(
        m,
        "30-secrets.yaml",
        &yaml(&[
            opaque("users", json!({"auth": b64(&file)})),
            opaque("user-map", json!({"mapuser": b64(USERS[0].1)})),
            opaque("broken", json!({"auth": b64("foo:")})),
        ]),
    );
    let gw = Portcullis::start(m, &[]).await;
    Rig {
        gw,
        auth,
        dir,
        _pod: pod_task,
    }
}

impl Rig {
    async fn send(&self, host: &str, path: &str, authorization: Option<&str>) -> Reply {
        let mut c = Client::plain(self.gw.http, Proto::H1).await.unwrap();
        let mut req = c.request(host, path);
        if let Some(v) = authorization {
            req.headers_mut()
                .insert("authorization", v.parse().unwrap());
        }
        c.send(req).await.unwrap()
    }
}

fn echoed(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not echo JSON ({e}): {} {}", reply.status, reply.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_every_hash_format_and_fail_closed() {
    let rig = rig().await;
    for (user, _) in USERS {
        let ok = rig.send(BASIC, "/", Some(&basic(user, PASSWORD))).await;
        assert_eq!(ok.status, StatusCode::OK, "{user}: {}", ok.text());
        assert_eq!(echoed(&ok)["name"], "web-1");
        let wrong = rig
            .send(BASIC, "/", Some(&basic(user, "open sesame!")))
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{user}");
        assert_eq!(
            wrong.header("www-authenticate"),
            Some("Basic realm=\"Staff only\"")
        );
    }
    let none = rig.send(BASIC, "/", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Basic realm=\"Staff only\"")
    );
    // DES crypt is not supported: that user cannot sign in.
    let des = rig
        .send(BASIC, "/", Some(&basic("des", "open sesame")))
        .await;
    assert_eq!(des.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        rig.send(BASIC, "/", Some(&basic("nobody", PASSWORD)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        rig.send(BASIC, "/", Some("Bearer x")).await.status,
        StatusCode::UNAUTHORIZED
    );

    let map = rig.send(MAP, "/", Some(&basic("mapuser", PASSWORD))).await;
    assert_eq!(map.status, StatusCode::OK, "{}", map.text());
    assert_eq!(map.header("www-authenticate"), None);
    let realmless = rig.send(MAP, "/", None).await;
    assert_eq!(
        realmless.header("www-authenticate"),
        Some("Basic realm=\"\"")
    );

    // Fail closed: never served without authentication.
    for auth in [None, Some(basic("foo", "bar"))] {
        let broken = rig.send(BROKEN, "/", auth.as_deref()).await;
        assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
        let missing = rig.send(MISSING, "/", auth.as_deref()).await;
        assert_eq!(missing.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let problems = Value::from(rig.gw.problems().await.unwrap()).to_string();
    assert!(
        problems.contains("basic auth Secret e2e/nowhere does not exist"),
        "{problems}"
    );
    assert!(
        problems.contains("basic auth Secret e2e/broken is unusable"),
        "{problems}"
    );
    assert!(
        problems.contains("user \\\"des\\\" cannot sign in"),
        "{problems}"
    );

    // An Ingress without auth pays nothing and asks nothing.
    assert_eq!(rig.send(OPEN, "/", None).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_auth_decides() {
    let rig = rig().await;
    let ok = rig.send(EXT, "/orders?id=7", Some("Bearer good")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let seen = rig.auth.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, format!("/verify?host={EXT}"));
    let h = |n: &str| {
        seen.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    assert_eq!(h("x-original-url"), format!("http://{EXT}/orders?id=7"));
    assert_eq!(h("x-original-method"), "GET");
    assert_eq!(h("x-sent-from"), "nginx-ingress-controller");
    assert_eq!(h("x-auth-request-redirect"), "/orders?id=7");
    assert_eq!(
        h("authorization"),
        "Bearer good",
        "client headers passed on"
    );
    assert_eq!(h("host"), rig.auth.addr.to_string());
    assert_eq!(h("x-forwarded-host"), EXT);
    assert_eq!(
        h("x-request-id").len(),
        32,
        "a request id: {:?}",
        h("x-request-id")
    );
    // The listed header is copied upstream, others are not.
    let upstream = echoed(&ok);
    assert_eq!(upstream["headers"]["x-user"], "alice");
    assert!(upstream["headers"].get("x-not-listed").is_none());
    assert!(upstream["headers"].get("set-cookie").is_none());
    // The service's cookie reaches the client (session refresh), as nginx's add_header.
    assert_eq!(ok.header("set-cookie"), Some("_session=refreshed; Path=/"));

    // A client cannot pose as the auth service.
    let mut c = Client::plain(rig.gw.http, Proto::H1).await.unwrap();
    let mut req = c.request(EXT, "/");
    req.headers_mut()
        .insert("authorization", "Bearer good".parse().unwrap());
    req.headers_mut()
        .insert("x-user", "mallory".parse().unwrap());
    let spoofed = c.send(req).await.unwrap();
    assert_eq!(echoed(&spoofed)["headers"]["x-user"], "alice");

    let denied = rig.send(EXT, "/", None).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Bearer realm=\"sso\"")
    );
    let forbidden = rig.send(EXT, "/", Some("Bearer forbidden")).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(
        forbidden.header("www-authenticate"),
        Some("Bearer error=\"scope\"")
    );
    let teapot = rig.send(EXT, "/", Some("Bearer teapot")).await;
    assert_eq!(teapot.status, StatusCode::INTERNAL_SERVER_ERROR);
    let down = rig.send(DOWN, "/", Some("Bearer good")).await;
    assert_eq!(down.status, StatusCode::INTERNAL_SERVER_ERROR);

    // auth-signin: the 401 becomes a redirect carrying the original URL in `rd`.
    let redirect = rig.send(SIGNIN, "/a?b=c&d=e", None).await;
    assert_eq!(redirect.status, StatusCode::FOUND);
    assert_eq!(
        redirect.header("location"),
        Some(
            format!("https://login.auth.test/start?rd=http://{SIGNIN}%2Fa%3Fb%3Dc%26d%3De")
                .as_str()
        )
    );
    assert_eq!(
        rig.send(SIGNIN, "/", Some("Bearer good")).await.status,
        StatusCode::OK
    );

    // auth-cache-key: the second identical request is answered from the cache, for a
    // pass and for a 401 alike; another key asks again.
    let before = rig.auth.calls();
    for _ in 0..2 {
        let r = rig.send(CACHED, "/", Some("Bearer good")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            echoed(&r)["headers"]["x-user"],
            "alice",
            "cached headers too"
        );
    }
    assert_eq!(
        rig.auth.calls(),
        before + 1,
        "one subrequest for two requests"
    );
    for _ in 0..2 {
        let r = rig.send(CACHED, "/", Some("Bearer wrong")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(rig.auth.calls(), before + 2);
    // 403 is not in the cached statuses.
    for _ in 0..2 {
        let r = rig.send(CACHED, "/", Some("Bearer forbidden")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(rig.auth.calls(), before + 4);

    // Subrequests reuse kept-alive connections (answers are drained, not dropped).
    let connections = rig.auth.connections.load(Ordering::Relaxed);
    assert!(
        connections * 2 < rig.auth.calls(),
        "{connections} connections for {} subrequests",
        rig.auth.calls()
    );

    let metrics = rig.gw.admin_get("/metrics").await.unwrap().text();
    for series in [
        r#"portcullis_ingress_auth_total{kind="external",result="cached"}"#,
        r#"portcullis_ingress_auth_total{kind="external",result="error"}"#,
        r#"portcullis_ingress_auth_total{kind="external",result="denied"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_auth_sets_configmap_headers() {
    let rig = rig().await;
    let ok = rig.send(HEADERS, "/", Some("Bearer good")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let seen = rig.auth.last();
    assert_eq!(seen.headers["x-tenant"], "blue");
    assert_eq!(seen.headers["x-auth-host"], HEADERS, "a variable, expanded");
    // Portcullis's own headers are still there.
    assert_eq!(seen.headers["x-original-url"], format!("http://{HEADERS}/"));
    // A client cannot pose as the ConfigMap, and an empty value removes its header.
    let mut c = Client::plain(rig.gw.http, Proto::H1).await.unwrap();
    let mut req = c.request(HEADERS, "/");
    req.headers_mut()
        .insert("authorization", "Bearer good".parse().unwrap());
    req.headers_mut().insert("x-tenant", "red".parse().unwrap());
    req.headers_mut()
        .insert("x-empty-drop", "client".parse().unwrap());
    assert_eq!(c.send(req).await.unwrap().status, StatusCode::OK);
    let seen = rig.auth.last();
    assert_eq!(seen.headers["x-tenant"], "blue");
    assert!(seen.headers.get("x-empty-drop").is_none());
    let denied = rig.send(HEADERS, "/", None).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);

    // Fail closed: a missing or invalid ConfigMap never lets the auth service decide
    // without its headers, and the service is not even asked.
    let calls = rig.auth.calls();
    for host in [NO_HEADERS, BAD_HEADERS] {
        let r = rig.send(host, "/", Some("Bearer good")).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{host}");
    }
    assert_eq!(rig.auth.calls(), calls);
    let problems = Value::from(rig.gw.problems().await.unwrap()).to_string();
    assert!(
        problems.contains("auth-proxy-set-headers: ConfigMap e2e/nowhere does not exist"),
        "{problems}"
    );
    assert!(
        problems.contains("ConfigMap e2e/bad-headers is unusable"),
        "{problems}"
    );

    // A changed ConfigMap is followed.
    write_atomic(rig.dir.path(), "40-configmaps.yaml", &auth_headers("green"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = rig.send(HEADERS, "/", Some("Bearer good")).await;
        assert_eq!(r.status, StatusCode::OK);
        if rig.auth.last().headers["x-tenant"] == "green" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new tenant never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn satisfy_combines_allowlist_and_auth() {
    let rig = rig().await;
    let good = basic("apr1", PASSWORD);
    // The test client connects from 127.0.0.1.
    // any: inside the allowlist, no credentials needed.
    assert_eq!(rig.send(ANY_IN, "/", None).await.status, StatusCode::OK);
    // any: outside it, credentials instead of 403.
    let r = rig.send(ANY_OUT, "/", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        rig.send(ANY_OUT, "/", Some(&good)).await.status,
        StatusCode::OK
    );
    // all: inside the allowlist, credentials still needed.
    assert_eq!(
        rig.send(ALL_IN, "/", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        rig.send(ALL_IN, "/", Some(&good)).await.status,
        StatusCode::OK
    );
    // all: outside it, 403 whatever the credentials.
    assert_eq!(
        rig.send(ALL_OUT, "/", Some(&good)).await.status,
        StatusCode::FORBIDDEN
    );
}
