//! The manifests driver end to end: real files in a temp directory, the real inotify watch,
//! and the published snapshot observed through `ConfigHandle`.
use std::path::Path;
use std::time::{Duration, Instant};

use portcullis::ingress::build::compile::CompileOptions;
use portcullis::ingress::model::snapshot::Lookup;
use portcullis::reload::{ConfigHandle, start_files};

/// Generous: the machine is shared. The measured latency is printed.
const BOUND: Duration = Duration::from_secs(3);

const APP: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portcullis}
spec: {controller: portcullis.io/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: ns}
spec:
  ingressClassName: portcullis
  rules:
  - host: x.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {ports: [{port: 80}]}
"#;

fn slice(ip: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: ns\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{port: 8080}}]\nendpoints: [{{addresses: [\"{ip}\"]}}]\n"
    )
}

fn eligible(handle: &ConfigHandle) -> Vec<String> {
    let snap = handle.load();
    match snap.router.lookup("x.com", "/") {
        Lookup::Matched { route, .. } => route
            .backend
            .endpoints
            .load()
            .eligible
            .iter()
            .map(|a| a.to_string())
            .collect(),
        Lookup::NotFound => vec!["<not found>".into()],
    }
}

/// Waits until `want` is served; returns how long it took.
async fn until(handle: &ConfigHandle, want: &[&str]) -> Duration {
    let start = Instant::now();
    loop {
        if eligible(handle) == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < BOUND,
            "still {:?}, wanted {want:?}",
            eligible(handle)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn atomic_write(path: &Path, text: &str) {
    let tmp = path.with_file_name(".tmp-write");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_reach_the_snapshot_quickly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), APP).unwrap();
    let slice_file = dir.path().join("slice.yaml");
    std::fs::write(&slice_file, slice("10.0.0.1")).unwrap();

    let driver = start_files(dir.path(), CompileOptions::default()).unwrap();
    let handle = driver.handle();
    assert_eq!(eligible(&handle), ["10.0.0.1:8080"]);
    let first_gen = handle.load().generation;

    // Editor-style atomic replace.
    atomic_write(&slice_file, &slice("10.0.0.2"));
    let t = until(&handle, &["10.0.0.2:8080"]).await;
    eprintln!("atomic replace applied in {t:?}");

    // In-place rewrite.
    std::fs::write(&slice_file, slice("10.0.0.3")).unwrap();
    let t = until(&handle, &["10.0.0.3:8080"]).await;
    eprintln!("in-place write applied in {t:?}");

    // A broken file: a new generation with a problem, same endpoints served.
    let mut generations = driver.subscribe();
    generations.borrow_and_update();
    std::fs::write(&slice_file, "endpoints: [unclosed").unwrap();
    tokio::time::timeout(BOUND, generations.changed())
        .await
        .unwrap()
        .unwrap();
    let snap = handle.load_full();
    assert!(snap.generation > first_gen);
    assert!(
        snap.problems
            .iter()
            .any(|p| p.file.as_deref().is_some_and(|f| f.ends_with("slice.yaml")))
    );
    assert_eq!(eligible(&handle), ["10.0.0.3:8080"]);

    // Removing the file removes its objects.
    std::fs::remove_file(&slice_file).unwrap();
    until(&handle, &[]).await;
    assert!(
        handle.load().problems.is_empty(),
        "{:?}",
        handle.load().problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_volume_swap_is_seen() {
    // A ConfigMap volume: visible names link through `..data` into a timestamped
    // directory; an update writes a new directory and renames a new `..data` over the old.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let version = |name: &str, ip: &str| {
        std::fs::create_dir(d.join(name)).unwrap();
        std::fs::write(d.join(name).join("app.yaml"), APP).unwrap();
        std::fs::write(d.join(name).join("slice.yaml"), slice(ip)).unwrap();
    };
    version("..2026_01", "10.0.0.1");
    std::os::unix::fs::symlink("..2026_01", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/app.yaml", d.join("app.yaml")).unwrap();
    std::os::unix::fs::symlink("..data/slice.yaml", d.join("slice.yaml")).unwrap();

    let driver = start_files(d, CompileOptions::default()).unwrap();
    let handle = driver.handle();
    assert_eq!(eligible(&handle), ["10.0.0.1:8080"]);

    version("..2026_02", "10.0.0.9");
    std::os::unix::fs::symlink("..2026_02", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..2026_01")).unwrap();
    let t = until(&handle, &["10.0.0.9:8080"]).await;
    eprintln!("volume swap applied in {t:?}");
}

#[tokio::test]
async fn unreadable_directory_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    assert!(start_files(dir.path().join("missing"), CompileOptions::default()).is_err());
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    assert!(start_files(dir.path(), CompileOptions::default()).is_err());
}
