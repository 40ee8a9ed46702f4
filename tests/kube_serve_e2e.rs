//! `portcullis serve` with the Kubernetes source, as a child process: a kubeconfig
//! pointing at the in-process fake API server, the source chosen by default because
//! KUBERNETES_SERVICE_HOST is set (as in a pod), /readyz held at 503 until every watch has
//! listed, traffic following an EndpointSlice change, and the dashboard's background audit
//! of the watched objects.
#[path = "common/apiserver.rs"]
mod apiserver;
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apiserver::ApiServer;
use common::{Client, Proto, Reply};
use e2e::{eventually, http_get, ingress, ingress_class, pod, pod_name, service, slice};
use http::StatusCode;

const HOST: &str = "shop.kube.test";
const QUICK: Duration = Duration::from_secs(10);

struct Served {
    child: Child,
    http: SocketAddr,
    admin: SocketAddr,
    log: std::path::PathBuf,
    _scratch: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- portcullis log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Starts `portcullis serve <extra>` with KUBECONFIG for `api` and KUBERNETES_SERVICE_HOST
/// set; returns once the admin listener answers (ready or not).
async fn spawn(api: &ApiServer, extra: &[&str]) -> Served {
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = scratch.path().join("kubeconfig");
    api.kubeconfig(&kubeconfig);
    let log = scratch.path().join("portcullis.log");
    let (http, https, admin, webhook) = (free_port(), free_port(), free_port(), free_port());
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        // The stand-in pods are on loopback, which the Kubernetes source refuses otherwise.
        .arg("--allow-local-endpoints")
        .args(["--http-addr", &http.to_string()])
        .args(["--https-addr", &https.to_string()])
        .args(["--admin-addr", &admin.to_string()])
        .args(["--webhook-addr", &webhook.to_string()])
        .arg("--cert-dir")
        .arg(scratch.path().join("certs"))
        .args(extra)
        .env("KUBECONFIG", &kubeconfig)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_SOURCE")
        .env_remove("PORTCULLIS_MANIFESTS")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut p = Served {
        child,
        http,
        admin,
        log,
        _scratch: scratch,
    };
    let start = Instant::now();
    while p.readyz().await.is_err() {
        if let Some(status) = p.child.try_wait().unwrap() {
            panic!("portcullis exited with {status}");
        }
        assert!(start.elapsed() < QUICK, "admin listener never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p
}

impl Served {
    async fn readyz(&self) -> anyhow::Result<StatusCode> {
        Ok(self.get_admin("/readyz").await?.status)
    }

    async fn get_admin(&self, path: &str) -> anyhow::Result<Reply> {
        let mut c = Client::plain(self.admin, Proto::H1).await?;
        c.get("localhost", path).await
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_pod_serve_watches_the_api_and_is_ready_only_after_every_list() {
    common::init();
    let (a, _ta) = pod("127.0.0.30", "pod-a").await;
    let (b, _tb) = pod("127.0.0.31", "pod-b").await;
    let api = ApiServer::start().await;
    api.apply_all([
        ingress_class(),
        service("web"),
        slice("web", "web-1", a, true),
        ingress("shop", HOST, None, &[("/", "web")], &[]),
    ]);
    api.hold_lists("EndpointSlice");
    let p = spawn(&api, &[]).await;

    // Listeners are up, but without the slices the table would send traffic nowhere.
    for _ in 0..10 {
        assert_eq!(p.readyz().await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let r = http_get(p.http, HOST, "/").await.unwrap();
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "nothing is served before readiness"
    );
    assert!(
        api.requests_for("ingresses").iter().any(|r| !r.is_watch()),
        "the default source in a pod is kube"
    );

    api.release_lists("EndpointSlice");
    let (_, took) = eventually(QUICK, "/readyz 200", || async {
        (p.readyz().await.ok() == Some(StatusCode::OK)).then_some(())
    })
    .await;
    println!("ready {took:?} after the last list was released");
    let r = http_get(p.http, HOST, "/").await.unwrap();
    assert_eq!(pod_name(&r).as_deref(), Some("pod-a"));

    let start = Instant::now();
    api.apply(slice("web", "web-1", b, true));
    eventually(QUICK, "traffic on pod-b", || async {
        let r = http_get(p.http, HOST, "/").await.ok()?;
        (pod_name(&r).as_deref() == Some("pod-b")).then_some(())
    })
    .await;
    println!(
        "slice change served by the binary after {:?}",
        start.elapsed()
    );

    let metrics = p.get_admin("/metrics").await.unwrap().text();
    assert!(
        metrics.contains(
            r#"portcullis_kube_watch_events_total{event="init_done",kind="EndpointSlice"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"portcullis_kube_objects{kind="Ingress"} 1"#));
    assert!(p.log().contains("every watch has listed"));

    // The dashboard audits what the watches hold, without asking the API for more.
    let (audit, _) = eventually(QUICK, "the dashboard's audit", || async {
        let r = p.get_admin("/dashboard/state.json").await.ok()?;
        let state: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        let audit = state.get("audit")?.clone();
        (!audit.is_null()).then_some(audit)
    })
    .await;
    assert_eq!(audit["source"], "cluster (watched objects)", "{audit}");
    assert!(
        audit["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["kind"] == "Ingress"
                && f["name"] == "shop"
                && f["check"] == "tlsSettingsMissing")),
        "{audit}"
    );
}

#[tokio::test]
async fn manifests_with_the_kube_source_is_an_error() {
    common::init();
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--source", "kube", "--manifests"])
        .arg(dir.path())
        .args(["--admin-addr", &free_port().to_string()])
        .args(["--http-addr", &free_port().to_string()])
        .args(["--https-addr", &free_port().to_string()])
        .args(["--webhook-addr", &free_port().to_string()])
        .arg("--cert-dir")
        .arg(dir.path().join("certs"))
        .env("KUBECONFIG", Path::new("/nonexistent"))
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--manifests only applies to --source files"),
        "{err}"
    );
    assert!(api.requests().is_empty());
}
