//! `portcullis migrate` through the real binary: a verdict per annotation and ConfigMap
//! key, exit 1 when behaviour would change and 0 when it would not, and a settings file
//! written from the ConfigMap.
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn migrate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("migrate")
        .args(args)
        .output()
        .expect("run portcullis migrate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const CONFIGMAP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
data:
  proxy-read-timeout: "120"
  use-forwarded-headers: "true"
  proxy-real-ip-cidr: "10.0.0.0/8"
  proxy-buffering: "off"
"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write manifest");
}

fn ingress(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: shop\n  annotations: {annotations}\nspec:\n  defaultBackend: {{service: {{name: web, port: {{number: 80}}}}}}\n"
    )
}

#[test]
fn clean_ingresses_and_configmap_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "web.yaml",
        &ingress(
            "web",
            r#"{nginx.ingress.kubernetes.io/rewrite-target: /, nginx.ingress.kubernetes.io/proxy-buffering: "off"}"#,
        ),
    );
    write(dir.path(), "cm.yaml", CONFIGMAP);
    let settings = dir.path().join("settings.json");
    let manifests = dir.path().to_str().expect("utf-8 path");
    let (code, out, err) = migrate(&[
        "--manifests",
        manifests,
        "--write-settings",
        settings.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Ingress shop/web"), "{out}");
    assert!(out.contains("Nothing would change behaviour."), "{out}");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings).expect("settings written"))
            .expect("settings JSON");
    assert_eq!(written["proxy"]["readTimeoutSeconds"], 120);
    assert_eq!(written["edge"]["proxyRealIpCidr"][0], "10.0.0.0/8");
    assert_eq!(written["edge"]["useForwardedHeaders"], true);
}

#[test]
fn unsupported_unknown_and_invalid_annotations_fail_with_json_verdicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a.yaml",
        &ingress(
            "waf",
            r#"{nginx.ingress.kubernetes.io/enable-modsecurity: "true", nginx.ingress.kubernetes.io/made-up: "1"}"#,
        ),
    );
    write(
        dir.path(),
        "b.yaml",
        &ingress(
            "broken",
            r#"{nginx.ingress.kubernetes.io/proxy-read-timeout: "soon", nginx.ingress.kubernetes.io/server-snippet: "x"}"#,
        ),
    );
    let manifests = dir.path().to_str().expect("utf-8 path");
    let (code, out, err) = migrate(&["--manifests", manifests, "--output", "json"]);
    assert_eq!(code, 1, "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("report JSON");
    let ingresses = report["ingresses"].as_array().expect("ingresses");
    assert_eq!(ingresses.len(), 2);
    let find = |name: &str| {
        ingresses
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {out}"))
    };
    let verdict = |ing: &Value, key: &str| -> String {
        ing["annotations"]
            .as_array()
            .and_then(|a| a.iter().find(|v| v["key"] == key))
            .and_then(|v| v["status"].as_str())
            .unwrap_or("missing")
            .to_string()
    };
    let waf = find("waf");
    assert_eq!(waf["refused"], false);
    assert_eq!(
        verdict(waf, "nginx.ingress.kubernetes.io/enable-modsecurity"),
        "not supported"
    );
    assert_eq!(
        verdict(waf, "nginx.ingress.kubernetes.io/made-up"),
        "unknown"
    );
    let broken = find("broken");
    assert_eq!(broken["refused"], true);
    assert_eq!(
        verdict(broken, "nginx.ingress.kubernetes.io/proxy-read-timeout"),
        "invalid"
    );
    assert_eq!(
        verdict(broken, "nginx.ingress.kubernetes.io/server-snippet"),
        "refused"
    );
}

#[test]
fn a_configmap_key_that_would_be_lost_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "web.yaml", &ingress("web", "{}"));
    let cm = dir.path().join("nginx-cm.yaml");
    std::fs::write(
        &cm,
        CONFIGMAP.replace("proxy-buffering: \"off\"", "use-gzip: \"true\""),
    )
    .expect("write cm");
    let other = tempfile::tempdir().expect("tempdir");
    write(other.path(), "web.yaml", &ingress("web", "{}"));
    let (code, out, err) = migrate(&[
        "--manifests",
        other.path().to_str().expect("utf-8 path"),
        "--configmap",
        cm.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("use-gzip"), "{out}");
    assert!(out.contains("Behaviour would change"), "{out}");
}

/// docs/MIGRATING.md carries the catalogue as `migrate --list` prints it.
#[test]
fn the_migration_guide_lists_the_catalogue() {
    let (code, table, err) = migrate(&["--list"]);
    assert_eq!(code, 0, "{err}");
    assert!(table.lines().count() > 100, "{table}");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/MIGRATING.md"))
        .expect("docs/MIGRATING.md");
    let start = "<!-- generated: portcullis migrate --list -->\n";
    let section = doc
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once("<!-- end generated -->"))
        .map(|(inside, _)| inside)
        .expect("generated section markers");
    assert_eq!(
        section, table,
        "regenerate the table: portcullis migrate --list"
    );
}
