//! `portcullis check` as CI pipelines use it, through the real binary: directories and
//! stdin as inputs, file:line in every format, a summary of what was checked and skipped,
//! input it cannot interpret refused (exit 2) instead of passed, `--fail-on`, SARIF and
//! JUnit output, and a reader that goes away (`| head`) ending the output quietly.
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use serde_json::Value;

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: \"nginx:latest\"}]}\n";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check")
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A tree: a/web.yaml (a Deployment on line 3 after a comment), a/b/sys.yaml (kube-system),
/// a/b/crd.json (a kind no rule reads), notes.txt (not a manifest).
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::create_dir_all(a.join("b")).unwrap();
    std::fs::write(a.join("web.yaml"), format!("# the shop\n---\n{DEPLOYMENT}")).unwrap();
    std::fs::write(
        a.join("b/sys.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: kube-system}\nspec: {containers: [{name: c, image: x}]}\n",
    )
    .unwrap();
    std::fs::write(
        a.join("b/crd.json"),
        r#"{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    dir
}

#[test]
fn directories_are_read_recursively_with_lines_and_a_summary() {
    let dir = tree();
    let root = dir.path().display().to_string();
    let r = check(&["--output=json", "--rule=tagNotSpecified", &root], None);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let rows: Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0]["source"].as_str().unwrap().ends_with("a/web.yaml"));
    assert_eq!(
        rows[0]["line"], 3,
        "the document starts after the comment and ---"
    );
    assert_eq!(rows[0]["rule"], "tagNotSpecified");
    // notes.txt is not a manifest file; the other two are skipped, each with its reason.
    let summary = r.stderr.lines().last().unwrap_or("");
    assert_eq!(
        summary,
        "checked 1 objects in 3 inputs: 1 denied, 0 warnings; skipped 2 \
         (1 kind Widget (example.com/v1) is checked by no rule, 1 in skipped namespace kube-system)",
        "{}",
        r.stderr
    );
}

#[test]
fn what_cannot_be_interpreted_is_refused_not_passed() {
    let misspelled = "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n";
    let r = check(&["-"], Some(misspelled));
    assert_eq!(
        r.code, 0,
        "an unknown kind is skipped, not an error: {}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("kind Deploymnet (apps/v1) is checked by no rule"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("no findings"));

    for (bad, why) in [
        ("hello: world\n", "not a Kubernetes object"),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {selector: {}, template: {spec: {containers: \"oops\"}}}\n",
            "Deployment is malformed",
        ),
        ("a: [1, 2\n", "-:1"),
    ] {
        let r = check(&["-"], Some(bad));
        assert_eq!(r.code, 2, "{bad:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(why), "{bad:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("could not be read or interpreted"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn fail_on_warn_and_the_ci_formats() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("web.yaml");
    std::fs::write(&f, DEPLOYMENT).unwrap();
    let file = f.display().to_string();
    // readinessProbeMissing is a warning: exit 0 by default, 1 with --fail-on warn.
    let warn = ["--rule=readinessProbeMissing", file.as_str()];
    assert_eq!(check(&warn, None).code, 0);
    let mut strict = vec!["--fail-on=warn"];
    strict.extend(warn);
    assert_eq!(check(&strict, None).code, 1);

    let r = check(&["--output=sarif", &file], None);
    let sarif: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .any(|x| x["ruleId"] == "tagNotSpecified" && x["level"] == "error")
    );
    assert!(results.iter().any(|x| x["level"] == "warning"));
    assert!(results.iter().all(|x| {
        x["locations"][0]["physicalLocation"]["region"]["startLine"] == 1
            && x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == file.as_str()
    }));

    let r = check(&["--output=junit", &file], None);
    assert!(r.stdout.starts_with("<?xml"), "{}", r.stdout);
    assert!(r.stdout.contains("<testcase classname="), "{}", r.stdout);
    assert!(
        r.stdout.contains("<failure type=\"tagNotSpecified\""),
        "{}",
        r.stdout
    );
    assert_eq!(r.stdout.matches("<testsuite ").count(), 1);
    assert_eq!(r.stdout.matches("</testsuite>").count(), 1);
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    // Enough findings that the output cannot fit in the pipe before the reader leaves.
    let many: String = (0..300)
        .map(|i| DEPLOYMENT.replace("name: web,", &format!("name: web{i},")) + "---\n")
        .collect();
    let f = dir.path().join("many.yaml");
    std::fs::write(&f, many).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check"])
        .arg(&f)
        .env_remove("PORTCULLIS_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    out.read_exact(&mut first).unwrap();
    drop(out);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(status.code(), Some(101), "{err}");
    assert_eq!(status.code(), Some(1), "the verdict stands: denied objects");
}
