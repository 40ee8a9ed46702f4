//! End-to-end helpers: the real `portcullis` binary run as a child process on loopback
//! ports, a manifests directory written the way an operator (or a volume update) would,
//! echo pods on 127.0.0.x, and clients for the gateway, the webhook and the admin
//! listener.
//!
//! Include it next to `common` with `#[path = "common/e2e.rs"] mod e2e;`.
//!
//! Failure behaviour: every wait is bounded; a child that does not become ready fails the
//! test with the tail of its log, and the child is killed when its `Portcullis` drops
//! (also when a test panics), so no process outlives its test.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::StatusCode;
use portcullis::echo::{EchoOptions, spawn_echo_with};
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::common::{Client, Proto, Reply, TIMEOUT};

/// How long a started binary may take to answer 200 on `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a start is retried when a port picked as free was taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// The namespace every test object lives in.
pub const NS: &str = "e2e";

/// A running `portcullis serve`.
pub struct Portcullis {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub webhook: SocketAddr,
    /// The webhook's generated development CA and certificate (`ca.crt`, `tls.crt`, ...).
    pub cert_dir: PathBuf,
    log: PathBuf,
    _scratch: tempfile::TempDir,
}

/// A loopback port nobody listens on right now (it may be taken again before use; the
/// start retries when that happens).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Portcullis {
    /// Starts `portcullis serve --manifests <manifests> <extra…>` and waits until `/readyz`
    /// answers 200. Without `--drain-delay` in `extra` the drain delay is 0.
    pub async fn start(manifests: &Path, extra: &[&str]) -> Portcullis {
        Self::start_limited(manifests, extra, None).await
    }

    /// [`Portcullis::start`] with the file-descriptor limit lowered to `nofile` (soft and
    /// hard, through the shell's `ulimit`, so the binary cannot raise it again).
    pub async fn start_limited(
        manifests: &Path,
        extra: &[&str],
        nofile: Option<u64>,
    ) -> Portcullis {
        super::common::init();
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut p = Self::spawn(manifests, extra, nofile);
            match p.wait_ready().await {
                Ok(()) => return p,
                Err(e) => {
                    last_log = p.log();
                    // Only a lost race for a port is worth another try.
                    if !last_log.contains("binding the") {
                        panic!("portcullis did not become ready: {e:#}\n--- log ---\n{last_log}");
                    }
                }
            }
        }
        panic!("portcullis could not bind its ports in {START_ATTEMPTS} attempts\n{last_log}");
    }

    fn spawn(manifests: &Path, extra: &[&str], nofile: Option<u64>) -> Portcullis {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let cert_dir = scratch.path().join("webhook-certs");
        let log = scratch.path().join("portcullis.log");
        let (http, https, admin, webhook) = (
            loopback(free_port()),
            loopback(free_port()),
            loopback(free_port()),
            loopback(free_port()),
        );
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file handle");
        // The production default drain delay (5 s, for load balancers) would only slow
        // tests down; a test that is about the drain passes its own `--drain-delay`.
        let drain: &[&str] = if extra.contains(&"--drain-delay") {
            &[]
        } else {
            &["--drain-delay", "0"]
        };
        let bin = env!("CARGO_BIN_EXE_portcullis");
        let mut command = match nofile {
            None => Command::new(bin),
            Some(n) => {
                let mut c = Command::new("sh");
                // `exec` keeps the pid, so terminate() still signals portcullis itself.
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin);
                c
            }
        };
        let child = command
            .arg("serve")
            .arg("--manifests")
            .arg(manifests)
            .args(["--http-addr", &http.to_string()])
            .args(["--https-addr", &https.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--webhook-addr", &webhook.to_string()])
            .arg("--cert-dir")
            .arg(&cert_dir)
            .args(drain)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("PORTCULLIS_CONFIG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn portcullis");
        Portcullis {
            child,
            http,
            https,
            admin,
            webhook,
            cert_dir,
            log,
            _scratch: scratch,
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited early with {status}");
            }
            if let Ok(reply) = self.admin_get("/readyz").await
                && reply.status == StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("/readyz not 200 after {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` from the admin listener on a fresh connection.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<Reply> {
        let mut c = Client::plain(self.admin, Proto::H1).await?;
        c.get("localhost", path).await
    }

    /// The configuration problems currently reported on `/problems`.
    pub async fn problems(&self) -> anyhow::Result<Vec<Value>> {
        let reply = self.admin_get("/problems").await?;
        if reply.status != StatusCode::OK {
            bail!("/problems answered {}", reply.status);
        }
        let v: Value = serde_json::from_slice(&reply.body)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// The webhook's CA certificate (PEM), written by the binary into its `--cert-dir`.
    pub fn webhook_ca(&self) -> Vec<u8> {
        std::fs::read(self.cert_dir.join("ca.crt")).expect("webhook ca.crt")
    }

    /// Sends SIGTERM, the way the kubelet stops a pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("still running {timeout:?} later");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Portcullis {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- portcullis log ---\n{}", self.log());
        }
    }
}

/// An echo pod on `ip` (any 127.x.y.z) with a kernel-chosen port. Its answers carry
/// `x-echo-name: <name>`. The task serves until it is aborted or the runtime ends.
pub async fn pod(ip: &str, name: &str) -> (SocketAddr, JoinHandle<()>) {
    slow_pod(ip, name, Duration::ZERO).await
}

/// Like [`pod`], answering every request only after `delay`.
pub async fn slow_pod(ip: &str, name: &str, delay: Duration) -> (SocketAddr, JoinHandle<()>) {
    let addr: SocketAddr = format!("{ip}:0").parse().expect("pod address");
    spawn_echo_with(
        addr,
        EchoOptions {
            name: name.to_string(),
            delay,
        },
    )
    .await
    .expect("start echo pod")
}

/// Writes `name` in `dir` atomically: a dot-file (which the watcher ignores) renamed over
/// the target, as `kubectl cp`-style tools and volume updates do.
pub fn write_atomic(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).expect("write temp manifest");
    std::fs::rename(&tmp, dir.join(name)).expect("rename manifest into place");
}

/// A multi-document YAML file of `docs` (JSON is valid YAML flow style).
pub fn yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The default IngressClass of our controller.
pub fn ingress_class() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": "portcullis",
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}
        },
        "spec": {"controller": "portcullis.io/ingress-controller"}
    })
}

/// A ClusterIP Service `name` with port 80 named `http`.
pub fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    })
}

/// An EndpointSlice of Service `service` holding one pod `addr` with readiness `ready`.
/// One slice per pod, because every pod has its own (kernel-chosen) port.
pub fn slice(service: &str, slice: &str, addr: SocketAddr, ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice,
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": service}
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": addr.port(), "protocol": "TCP"}],
        "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": ready}}]
    })
}

/// An Ingress `name` for `host` with Prefix `paths` (path, Service port 80), optionally
/// TLS from Secret `tls_secret`, with `annotations`.
pub fn ingress(
    name: &str,
    host: &str,
    tls_secret: Option<&str>,
    paths: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> Value {
    let paths: Vec<Value> = paths
        .iter()
        .map(|(path, svc)| {
            let path_type = if path.contains('(') || path.contains('$') {
                "ImplementationSpecific"
            } else {
                "Prefix"
            };
            json!({
                "path": path,
                "pathType": path_type,
                "backend": {"service": {"name": svc, "port": {"number": 80}}}
            })
        })
        .collect();
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let mut spec = json!({"rules": [{"host": host, "http": {"paths": paths}}]});
    if let Some(secret) = tls_secret {
        spec["tls"] = json!([{"hosts": [host], "secretName": secret}]);
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": spec
    })
}

/// A `kubernetes.io/tls` Secret holding `cert_pem` and `key_pem`.
pub fn tls_secret(name: &str, cert_pem: &str, key_pem: &str) -> Value {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": NS},
        "data": {"tls.crt": b64(cert_pem), "tls.key": b64(key_pem)}
    })
}

/// The leaf certificate (DER) the HTTPS listener at `addr` presents for `sni`, or for no
/// SNI at all with `None`. The certificate is not verified: this is for looking at the
/// default certificate, which no test CA signed.
pub async fn presented_leaf(addr: SocketAddr, sni: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let config = portcullis::ingress::request::upstream_tls::client_config(&[b"http/1.1"])?;
    // rustls sends no SNI for an IP address name.
    let name = match sni {
        Some(s) => ServerName::try_from(s.to_string())?,
        None => ServerName::from(addr.ip()),
    };
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    let stream = tokio::time::timeout(
        TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .context("TLS handshake timed out")??;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .context("no certificate presented")?;
    Ok(leaf)
}

/// Whether `needle` occurs in `haystack` (names in certificate DER are plain ASCII).
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Polls `check` every 20 ms until it yields `Some`, for at most `timeout`. Returns the
/// value and how long it took.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return (v, start.elapsed());
        }
        if start.elapsed() > timeout {
            panic!("{what}: not reached within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET `host` `path` over plain HTTP/1.1 on a fresh connection.
pub async fn http_get(addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<Reply> {
    let mut c = Client::plain(addr, Proto::H1).await?;
    c.get(host, path).await
}

/// The echo pod that answered, from its `x-echo-name` header.
pub fn pod_name(reply: &Reply) -> Option<String> {
    reply.header("x-echo-name").map(str::to_string)
}
