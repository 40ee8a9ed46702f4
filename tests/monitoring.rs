//! The monitoring overlay (manifests/monitoring/): every metric its alert rules and Grafana
//! dashboard query is one portcullis exports, so no alert silently watches a name that
//! does not exist. Checked two ways: against the metric names the source registers, and
//! against a real `/metrics` scrape of the binary after a proxied request and a review.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use e2e::{Portcullis, http_get, ingress, ingress_class, pod, service, slice, write_atomic, yaml};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `portcullis_…` identifier in `text`, with histogram suffixes removed.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("portcullis_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(base.to_string());
        i = end;
    }
    out
}

/// Candidate metric names in the source: every string literal made of lower-case letters,
/// digits and underscores, with the registry's prefix (the families are defined with such
/// literals, through several constructors and helpers).
fn registered() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, piece) in text.split('"').enumerate() {
                    let metric_like = !piece.is_empty()
                        && piece.contains('_')
                        && piece
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                    if i % 2 == 1 && metric_like {
                        out.insert(format!("portcullis_{piece}"));
                    }
                }
            }
        }
    }
    out
}

fn overlay_text() -> String {
    let dir = root().join("manifests/monitoring");
    let rules = std::fs::read_to_string(dir.join("prometheusrule.yaml")).unwrap();
    let dash = std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap();
    format!("{rules}\n{dash}")
}

#[test]
fn the_overlay_parses_and_references_only_registered_metrics() {
    let dir = root().join("manifests/monitoring");
    let rules: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("prometheusrule.yaml")).unwrap())
            .unwrap();
    assert_eq!(rules["kind"], "PrometheusRule");
    let alerts: Vec<&Value> = rules["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert!(alerts.len() >= 10, "{} alerts", alerts.len());
    for a in &alerts {
        assert!(
            a["alert"]
                .as_str()
                .is_some_and(|n| n.starts_with("Portcullis"))
        );
        assert!(
            a["expr"]
                .as_str()
                .is_some_and(|e| e.contains("portcullis_")),
            "{a}"
        );
        assert!(a["annotations"]["summary"].is_string(), "{a}");
    }
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap())
            .unwrap();
    assert!(dash["panels"].as_array().unwrap().len() >= 10);

    let known = registered();
    assert!(
        known.contains("portcullis_ingress_requests_total"),
        "{known:?}"
    );
    let missing: Vec<_> = referenced(&overlay_text())
        .into_iter()
        .filter(|m| !known.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "not registered anywhere in src/: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_scrape_exports_what_the_dashboard_plots() {
    let dir = tempfile::tempdir().unwrap();
    let (web, _task) = pod("127.0.0.2", "web-1").await;
    let m: &Path = dir.path();
    write_atomic(
        m,
        "00-all.yaml",
        &yaml(&[
            ingress_class(),
            ingress("mon", "mon.e2e.test", None, &[("/", "web")], &[]),
            service("web"),
            slice("web", "web-1", web, true),
        ]),
    );
    let gw = Portcullis::start(m, &[]).await;
    assert_eq!(
        http_get(gw.http, "mon.e2e.test", "/").await.unwrap().status,
        200
    );
    let scrape = gw.admin_get("/metrics").await.unwrap().text();
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    // What a gateway that has served one request must export; the rest (admission,
    // leader, errors) appear once they happen, and are checked against the source above.
    for must in [
        "portcullis_ingress_requests_total",
        "portcullis_ingress_request_duration_seconds",
        "portcullis_ingress_upstream_duration_seconds",
        "portcullis_ingress_backend_endpoints",
        "portcullis_connections_open",
        "portcullis_connections_refused_total",
        "portcullis_config_problems",
        "portcullis_config_reloads_total",
        "portcullis_access_log_dropped_total",
        "portcullis_config_last_reload_timestamp_seconds",
        "portcullis_process_resident_memory_bytes",
        "portcullis_build_info",
    ] {
        assert!(
            referenced(&overlay_text()).contains(must),
            "{must} is not on the dashboard or in the alerts"
        );
        assert!(exported.contains(must), "{must} not exported:\n{scrape}");
    }
}
