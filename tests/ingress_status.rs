//! Ingress status end to end: the real Kubernetes source and the real status publisher
//! (leader election over a Lease, status PATCHes) against the in-process fake API server.
//! Short lease timings (1 s lease, 200 ms renewals) keep takeovers quick.
#[path = "common/apiserver.rs"]
mod apiserver;

use std::time::Duration;

use apiserver::ApiServer;
use http::Method;
use portcullis::ingress::build::compile::CompileOptions;
use portcullis::reload::{KubeDriver, KubeOptions, start_kube};
use portcullis::status::{
    AddressSource, LeaseOptions, PublisherOptions, StatusOptions, StatusTask,
    parse_status_addresses, start_status,
};
use serde_json::{Value, json};

const LEASE_NS: &str = "portcullis-system";
const WAIT: Duration = Duration::from_secs(10);

fn class(name: &str, controller: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {"controller": controller},
    })
}

fn ingress(name: &str, class: &str, host: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {
            "ingressClassName": class,
            "rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}},
            }]}}],
        },
    })
}

/// A rule-less Ingress: only a defaultBackend.
fn default_only(name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {
            "ingressClassName": "portcullis",
            "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
        },
    })
}

fn lb_service(entries: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "portcullis", "namespace": LEASE_NS},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": entries}},
    })
}

fn seed(api: &ApiServer) {
    api.apply_all([
        class("portcullis", "portcullis.io/ingress-controller"),
        class("nginx", "k8s.io/ingress-nginx"),
        ingress("ours", "portcullis", "ours.example"),
        default_only("fallback"),
        ingress("theirs", "nginx", "theirs.example"),
    ]);
}

fn lease_options(identity: &str) -> LeaseOptions {
    LeaseOptions {
        lease_duration: Duration::from_secs(1),
        renew_period: Duration::from_millis(200),
        renew_deadline: Duration::from_millis(700),
        ..LeaseOptions::new(LEASE_NS, identity)
    }
}

fn publisher_options(source: AddressSource) -> PublisherOptions {
    PublisherOptions {
        resync: Duration::from_millis(500),
        retry: Duration::from_millis(200),
        min_interval: Duration::from_millis(20),
        request_timeout: Duration::from_secs(2),
        ..PublisherOptions::new(source)
    }
}

fn fixed(addresses: &str) -> AddressSource {
    AddressSource::Static(parse_status_addresses(addresses).unwrap())
}

/// One portcullis replica: its own watches of the fake server and its status publisher.
struct Replica {
    _driver: KubeDriver,
    status: StatusTask,
}

fn replica(api: &ApiServer, identity: &str, source: AddressSource) -> Replica {
    let driver = start_kube(
        api.client(),
        CompileOptions::default(),
        KubeOptions::default(),
    )
    .unwrap();
    let opts = StatusOptions {
        lease: lease_options(identity),
        publisher: publisher_options(source),
    };
    let status = start_status(
        api.client(),
        driver.handle(),
        driver.subscribe(),
        driver.ready(),
        opts,
    );
    Replica {
        _driver: driver,
        status,
    }
}

/// `status.loadBalancer.ingress` of Ingress apps/`name` as stored by the server.
fn status_of(api: &ApiServer, name: &str) -> Value {
    api.get("Ingress", "apps", name)
        .map(|o| o["status"]["loadBalancer"]["ingress"].clone())
        .unwrap_or(Value::Null)
}

fn lease_holder(api: &ApiServer) -> Option<String> {
    api.get("Lease", LEASE_NS, "portcullis-leader")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// Status writes to Ingress apps/`name`, as the bodies that were sent.
fn writes_to(api: &ApiServer, name: &str) -> Vec<Value> {
    api.status_writes()
        .into_iter()
        .filter(|w| w.kind == "Ingress" && w.name == name)
        .map(|w| w.body)
        .collect()
}

/// The value of one sample in the Prometheus text output (0 if absent).
fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_leader_publishes_on_served_ingresses_only_and_clears_those_it_stops_serving() {
    let api = ApiServer::start().await;
    seed(&api);
    let r = replica(&api, "replica-a", fixed("10.0.0.1,lb.example.com"));
    let published = json!([{"hostname": "lb.example.com"}, {"ip": "10.0.0.1"}]);

    eventually("status on the served Ingresses", || {
        status_of(&api, "ours") == published && status_of(&api, "fallback") == published
    })
    .await;
    assert!(r.status.is_leader());
    assert_eq!(lease_holder(&api).as_deref(), Some("replica-a"));
    for w in api.status_writes() {
        assert_eq!(w.method, Method::PATCH);
        assert!(
            w.content_type.starts_with("application/merge-patch+json"),
            "{}",
            w.content_type
        );
        assert_eq!(w.code, 200);
    }

    // Steady state: resyncs re-read every status and find nothing to write.
    let lists = || {
        api.requests_for("ingresses")
            .into_iter()
            .filter(|r| r.method == Method::GET && !r.is_watch())
            .count()
    };
    let (writes_before, lists_before) = (api.status_writes().len(), lists());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        api.status_writes().len(),
        writes_before,
        "nothing to change"
    );
    assert!(lists() >= lists_before + 2, "resyncs re-read the statuses");
    // Another class's Ingress is never written.
    assert!(writes_to(&api, "theirs").is_empty());
    assert_eq!(status_of(&api, "theirs"), Value::Null);

    // `ours` moves to the other class (its status kept, as a spec update does): cleared.
    let mut moved = api.get("Ingress", "apps", "ours").unwrap();
    moved["spec"]["ingressClassName"] = json!("nginx");
    api.apply(moved);
    eventually("the status of the moved Ingress cleared", || {
        status_of(&api, "ours") == json!([])
    })
    .await;
    let clears = writes_to(&api, "ours");
    assert_eq!(
        clears.last().unwrap(),
        &json!({"status": {"loadBalancer": {"ingress": []}}})
    );
    assert_eq!(status_of(&api, "fallback"), published, "others untouched");

    // Cleared once: later cycles leave it alone.
    let n = writes_to(&api, "ours").len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(writes_to(&api, "ours").len(), n);
    assert!(writes_to(&api, "theirs").is_empty());

    // `theirs` becomes ours: published.
    let mut adopted = api.get("Ingress", "apps", "theirs").unwrap();
    adopted["spec"]["ingressClassName"] = json!("portcullis");
    api.apply(adopted);
    eventually("status on the newly served Ingress", || {
        status_of(&api, "theirs") == published
    })
    .await;

    let metrics = String::from_utf8(portcullis::metrics::encode()).unwrap();
    assert!(
        metric(&metrics, "portcullis_ingress_status_writes_total") >= 4.0,
        "{metrics}"
    );

    r.status.shutdown().await;
    assert_eq!(lease_holder(&api), None, "released on shutdown");
}

#[tokio::test]
async fn drift_is_repaired_by_the_resync() {
    let api = ApiServer::start().await;
    seed(&api);
    let r = replica(&api, "replica-a", fixed("10.0.0.1"));
    eventually("first publish", || {
        status_of(&api, "ours") == json!([{"ip": "10.0.0.1"}])
    })
    .await;

    // Someone overwrites the status behind our back (no snapshot change follows: the
    // source does not keep Ingress status).
    let mut tampered = api.get("Ingress", "apps", "ours").unwrap();
    tampered["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.66"}]}});
    api.apply(tampered);
    eventually("the status repaired", || {
        status_of(&api, "ours") == json!([{"ip": "10.0.0.1"}])
    })
    .await;
    drop(r);
}

#[tokio::test]
async fn publish_service_addresses_are_used_and_followed() {
    let api = ApiServer::start().await;
    seed(&api);
    api.apply(lb_service(
        json!([{"ip": "203.0.113.7"}, {"hostname": "lb.example.net"}]),
    ));
    let source = AddressSource::Service {
        namespace: LEASE_NS.into(),
        name: "portcullis".into(),
    };
    let r = replica(&api, "replica-a", source);
    let first = json!([{"hostname": "lb.example.net"}, {"ip": "203.0.113.7"}]);
    eventually("the Service's addresses published", || {
        status_of(&api, "ours") == first && status_of(&api, "fallback") == first
    })
    .await;
    let gets = api
        .requests_for("portcullis")
        .into_iter()
        .filter(|r| r.method == Method::GET && r.path.contains("/services/"))
        .count();
    assert!(gets >= 1);

    // The load balancer gets a new address: every served Ingress follows.
    api.apply(lb_service(json!([{"ip": "203.0.113.8"}])));
    eventually("the new address published", || {
        status_of(&api, "ours") == json!([{"ip": "203.0.113.8"}])
            && status_of(&api, "fallback") == json!([{"ip": "203.0.113.8"}])
    })
    .await;
    assert!(writes_to(&api, "theirs").is_empty());
    drop(r);
}

#[tokio::test]
async fn a_missing_publish_service_is_retried_not_fatal() {
    let api = ApiServer::start().await;
    seed(&api);
    let source = AddressSource::Service {
        namespace: LEASE_NS.into(),
        name: "portcullis".into(),
    };
    let r = replica(&api, "replica-a", source);
    eventually("leadership", || r.status.is_leader()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        api.status_writes().is_empty(),
        "nothing known, nothing written"
    );
    let metrics = String::from_utf8(portcullis::metrics::encode()).unwrap();
    assert!(
        metric(
            &metrics,
            "portcullis_ingress_status_errors_total{stage=\"addresses\"}"
        ) >= 1.0,
        "{metrics}"
    );
    api.apply(lb_service(json!([{"ip": "203.0.113.9"}])));
    eventually("publish once the Service exists", || {
        status_of(&api, "ours") == json!([{"ip": "203.0.113.9"}])
    })
    .await;
    drop(r);
}

/// Each replica publishes its own address, so the statuses show which one wrote.
#[tokio::test]
async fn only_the_lease_holder_writes_and_the_other_takes_over_after_expiry() {
    let api = ApiServer::start().await;
    seed(&api);
    let a = replica(&api, "replica-a", fixed("10.0.0.1"));
    let b = replica(&api, "replica-b", fixed("10.0.0.2"));
    eventually("a leader", || lease_holder(&api).is_some()).await;
    eventually("the leader's status", || {
        let s = status_of(&api, "ours");
        s == json!([{"ip": "10.0.0.1"}]) || s == json!([{"ip": "10.0.0.2"}])
    })
    .await;
    // Several renewals and resyncs: leadership stays put and the follower never writes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        a.status.is_leader() != b.status.is_leader(),
        "exactly one leader"
    );
    let (leader, follower, leader_ip, follower_ip, follower_id) = if a.status.is_leader() {
        (a, b, "10.0.0.1", "10.0.0.2", "replica-b")
    } else {
        (b, a, "10.0.0.2", "10.0.0.1", "replica-a")
    };
    let bodies: Vec<String> = api
        .status_writes()
        .iter()
        .map(|w| w.body.to_string())
        .collect();
    assert!(!bodies.is_empty());
    assert!(
        bodies.iter().all(|b| b.contains(leader_ip)),
        "only the leader wrote: {bodies:?}"
    );

    // The leader dies without releasing (no step-down): the follower waits for the
    // Lease to expire, then takes over and publishes its own address.
    drop(leader);
    eventually("the follower leading", || follower.status.is_leader()).await;
    assert_eq!(lease_holder(&api).as_deref(), Some(follower_id));
    eventually("the new leader's status", || {
        status_of(&api, "ours") == json!([{"ip": follower_ip}])
            && status_of(&api, "fallback") == json!([{"ip": follower_ip}])
    })
    .await;
    assert!(writes_to(&api, "theirs").is_empty());
    let lease = api.get("Lease", LEASE_NS, "portcullis-leader").unwrap();
    assert!(lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 1);
    drop(follower);
}

#[tokio::test]
async fn a_clean_shutdown_hands_the_lease_over_without_waiting_for_expiry() {
    let api = ApiServer::start().await;
    seed(&api);
    // A long lease: a takeover within the test's wait means the lease was released.
    let long = |id: &str| StatusOptions {
        lease: LeaseOptions {
            lease_duration: Duration::from_secs(60),
            renew_deadline: Duration::from_secs(40),
            ..lease_options(id)
        },
        publisher: publisher_options(fixed("10.0.0.1")),
    };
    let start = |id: &str| {
        let driver = start_kube(
            api.client(),
            CompileOptions::default(),
            KubeOptions::default(),
        )
        .unwrap();
        let status = start_status(
            api.client(),
            driver.handle(),
            driver.subscribe(),
            driver.ready(),
            long(id),
        );
        Replica {
            _driver: driver,
            status,
        }
    };
    let a = start("replica-a");
    eventually("a leads", || a.status.is_leader()).await;
    let b = start("replica-b");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!b.status.is_leader());

    let mut leadership = b.status.subscribe();
    a.status.shutdown().await;
    tokio::time::timeout(Duration::from_secs(5), leadership.wait_for(|l| *l))
        .await
        .expect("b takes over long before the 60 s lease would expire")
        .unwrap();
    assert_eq!(lease_holder(&api).as_deref(), Some("replica-b"));
    drop(b);
}

/// Kills the child if the test fails before it exits.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The wiring in `portcullis serve`: --source kube with a kubeconfig, the publish flags,
/// POD_NAME as the identity, and the Lease released on SIGTERM.
#[tokio::test]
async fn serve_publishes_status_and_releases_the_lease_on_sigterm() {
    let api = ApiServer::start().await;
    seed(&api);
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = scratch.path().join("kubeconfig");
    api.kubeconfig(&kubeconfig);
    let log = scratch.path().join("log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("serve")
            .args(["--source", "kube"])
            .args(["--publish-status-address", "10.0.0.5"])
            .args(["--lease-namespace", LEASE_NS])
            .args(["--drain-delay", "0", "--grace-period", "1"])
            .args(["--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"])
            .args([
                "--admin-addr",
                "127.0.0.1:0",
                "--webhook-addr",
                "127.0.0.1:0",
            ])
            .arg("--cert-dir")
            .arg(scratch.path().join("certs"))
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", "portcullis-7d9f-abcde")
            .env("RUST_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("PORTCULLIS_CONFIG")
            .env_remove("PORTCULLIS_PUBLISH_SERVICE")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while status_of(&api, "ours") != json!([{"ip": "10.0.0.5"}]) {
        assert!(
            tokio::time::Instant::now() < deadline && child.0.try_wait().unwrap().is_none(),
            "no status published\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status_of(&api, "fallback"), json!([{"ip": "10.0.0.5"}]));
    assert!(writes_to(&api, "theirs").is_empty());
    assert_eq!(lease_holder(&api).as_deref(), Some("portcullis-7d9f-abcde"));

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still running\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit}\n{}", logs());
    assert_eq!(lease_holder(&api), None, "released\n{}", logs());
    // Shutting down is not a reason to clear anyone's status: the next leader takes over.
    assert_eq!(status_of(&api, "ours"), json!([{"ip": "10.0.0.5"}]));
}

/// The leader posts one Warning Event per Ingress problem (here: the backend Service
/// `web` does not exist), regarding that Ingress; a second replica, not leading, posts
/// none, and the standing problem is not posted again.
#[tokio::test]
async fn the_leader_posts_a_warning_event_on_an_ingress_with_a_problem() {
    let api = ApiServer::start().await;
    seed(&api);
    let a = replica(&api, "replica-a", fixed("10.0.0.1"));
    let events_on = |name: &str| {
        api.objects("Event")
            .into_iter()
            .filter(|e| e["regarding"]["name"] == name)
            .collect::<Vec<_>>()
    };
    eventually("an Event on apps/ours", || !events_on("ours").is_empty()).await;
    let b = replica(&api, "replica-b", fixed("10.0.0.1"));
    // Let both run through several snapshots and resyncs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = events_on("ours");
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["reason"], "MissingService");
    assert_eq!(e["regarding"]["kind"], "Ingress");
    assert_eq!(e["regarding"]["namespace"], "apps");
    assert_eq!(e["reportingController"], "portcullis.io/ingress-controller");
    assert_eq!(e["reportingInstance"], "replica-a");
    assert!(
        e["note"].as_str().unwrap_or("").contains("apps/web"),
        "{e:#}"
    );
    // An Ingress of another class is none of our business.
    assert!(events_on("theirs").is_empty());
    assert!(a.status.is_leader() && !b.status.is_leader());
}
