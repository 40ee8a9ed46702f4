//! The Deployment in manifests/ starts the binary with arguments it accepts.
use std::process::Command;

use serde_json::Value;

#[test]
fn deployment_args_are_accepted_by_the_binary() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/base/deployment.yaml"
    ))
    .unwrap();
    let deployment: Value = serde_saphyr::from_str(&text).unwrap();
    let args: Vec<String> = deployment
        .pointer("/spec/template/spec/containers/0/args")
        .and_then(Value::as_array)
        .expect("the container has args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("serve"));
    // Point the config at a file that does not exist: the process must get past argument
    // parsing and fail on the file, before it ever contacts a cluster.
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            if a.starts_with("--config") {
                "--config=/nonexistent/portcullis.yaml".into()
            } else {
                a
            }
        })
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Usage:"), "arguments rejected: {stderr}");
    assert!(stderr.contains("/nonexistent/portcullis.yaml"), "{stderr}");
    assert!(!out.status.success());
}
