//! `portcullis audit --audit-path DIR` over tests/audit/manifests (nested folders,
//! multi-document YAML, a JSON List, a non-manifest file that is skipped), compared with
//! the expected JSON report in tests/audit/expected.json. The expected counts were worked
//! out by hand from the manifests' comments: 5 successes, 2 warnings, 3 dangers, so the
//! score is 2·5 / (10 + 2 + 6) · 100 = 55 (rounded down); shop 66, ops 33.
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const CHECKS: &str = "tagNotSpecified,hostNetworkSet,missingPodDisruptionBudget,rolebindingClusterAdminRole,sensitiveConfigmapContent";

fn audit(extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "audit",
            "--audit-path",
            "tests/audit/manifests",
            "--polaris-config",
            "tests/audit/polaris.yaml",
            "--checks",
            CHECKS,
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn directory_audit_matches_the_expected_report() {
    let out = audit(&["--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want_text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/audit/expected.json"),
    )
    .unwrap();
    let want: Value = serde_json::from_str(&want_text).unwrap();
    assert_eq!(got, want);
    assert_eq!(got["score"], 55);
    let c = &got["counts"];
    let (s, w, d) = (
        c["successes"].as_u64().unwrap(),
        c["warnings"].as_u64().unwrap(),
        c["dangers"].as_u64().unwrap(),
    );
    assert_eq!((s, w, d), (5, 2, 3));
    assert_eq!(
        got["score"].as_u64().unwrap(),
        2 * s * 100 / (2 * s + w + 2 * d)
    );
}

#[test]
fn exit_codes_follow_polaris() {
    assert_eq!(audit(&["--set-exit-code-on-danger"]).status.code(), Some(3));
    assert_eq!(
        audit(&["--set-exit-code-below-score", "60"]).status.code(),
        Some(4)
    );
    assert_eq!(
        audit(&["--set-exit-code-below-score", "55"]).status.code(),
        Some(0)
    );
    // A danger wins over the score, as in Polaris.
    assert_eq!(
        audit(&[
            "--set-exit-code-on-danger",
            "--set-exit-code-below-score",
            "90"
        ])
        .status
        .code(),
        Some(3)
    );
}

#[test]
fn only_failed_tests_and_html() {
    let out = audit(&["--format", "json", "--only-show-failed-tests"]);
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["score"], 55, "scores still count every check");
    let results: Vec<&Value> = got["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["results"].as_array().unwrap())
        .collect();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r["success"] == false));

    let out = audit(&["--format", "html"]);
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<div class=\"score\">55</div>"));
    assert!(html.contains("ConfigMap ops/creds"));
    assert!(html.contains("key &quot;db_password&quot; is named like a credential"));
    for external in ["<script", "src=", "href=", "@import"] {
        assert!(
            !html.contains(external),
            "HTML must be self-contained: {external}"
        );
    }
}

#[test]
fn unknown_check_ids_are_an_error_listing_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "audit",
            "--audit-path",
            "tests/audit/manifests",
            "--checks",
            "nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"nope\"") && err.contains("hostPathSet"),
        "{err}"
    );
}

#[test]
fn polaris_json_has_polaris_layout() {
    let out = audit(&["--format", "polaris-json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["PolarisOutputVersion"], "1.0");
    assert_eq!(got["SourceType"], "Path");
    assert_eq!(got["SourceName"], "tests/audit/manifests");
    assert_eq!(got["Score"], 55);
    assert!(got["AuditTime"].as_str().is_some_and(|t| t.ends_with('Z')));
    let info = &got["ClusterInfo"];
    assert_eq!(
        (info["Namespaces"].as_u64(), info["Controllers"].as_u64()),
        (Some(2), Some(3))
    );
    let results = got["Results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    let find = |kind: &str, name: &str| {
        results
            .iter()
            .find(|r| r["Kind"] == kind && r["Name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} in {results:?}"))
    };
    // A pod-level finding, a container finding keyed by the container's name, and the
    // configured severity.
    let api = find("Deployment", "api");
    assert_eq!(api["Namespace"], "shop");
    let pod = &api["PodResult"];
    assert_eq!(pod["Results"]["hostNetworkSet"]["Success"], false);
    assert_eq!(pod["Results"]["hostNetworkSet"]["Severity"], "warning");
    assert_eq!(pod["Results"]["hostNetworkSet"]["ID"], "hostNetworkSet");
    let containers = pod["ContainerResults"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["Name"], "api");
    let tag = &containers[0]["Results"]["tagNotSpecified"];
    assert_eq!(tag["Success"], false);
    assert_eq!(tag["Severity"], "danger");
    assert_eq!(tag["Category"], "Reliability");
    assert!(tag["Message"].as_str().is_some_and(|m| !m.is_empty()));
    // A success on a clean workload; an object without pods has no PodResult.
    assert_eq!(
        find("Deployment", "web")["PodResult"]["Results"]["tagNotSpecified"]["Success"],
        true
    );
    let creds = find("ConfigMap", "creds");
    assert!(creds["PodResult"].is_null());
    assert_eq!(
        creds["Results"]["sensitiveConfigmapContent"]["Success"],
        false
    );
    assert_eq!(creds["CreatedTime"], "0001-01-01T00:00:00Z");
}
