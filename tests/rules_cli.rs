//! `portcullis rules` through the real binary: every catalogue rule listed with what it
//! checks and how to fix it, JSON that parses, a readable table, and one rule explained.
use std::process::Command;

use portcullis::admission::rules::catalogue;
use serde_json::Value;

fn rules(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("rules")
        .args(args)
        .output()
        .expect("run portcullis rules");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn json_lists_every_rule_with_checks_and_fix() {
    let (code, stdout) = rules(&["--output", "json"]);
    assert_eq!(code, 0);
    let listed: Vec<Value> = serde_json::from_str(&stdout).expect("rules JSON parses");
    let ids: Vec<&'static str> = catalogue().iter().map(|r| r.id()).collect();
    assert_eq!(listed.len(), ids.len());
    for (entry, id) in listed.iter().zip(&ids) {
        assert_eq!(entry["id"], *id);
        for field in ["default_action", "category", "checks", "fix"] {
            let text = entry[field].as_str().unwrap_or("");
            assert!(!text.trim().is_empty(), "{id}: empty {field}");
        }
    }
}

#[test]
fn table_fits_a_terminal_and_names_every_rule() {
    let (code, stdout) = rules(&[]);
    assert_eq!(code, 0);
    for r in catalogue() {
        assert!(stdout.contains(r.id()), "{} missing from the table", r.id());
        assert!(!r.checks().is_empty() && !r.fix().is_empty(), "{}", r.id());
    }
    let widest = stdout.lines().map(str::len).max().unwrap_or(0);
    assert!(widest <= 100, "a line is {widest} columns wide");
}

#[test]
fn one_rule_is_explained_with_its_fix() {
    let (code, stdout) = rules(&["tagNotSpecified"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("RULE:      tagNotSpecified"), "{stdout}");
    assert!(
        stdout.contains("FIX:") && stdout.contains("digest"),
        "{stdout}"
    );
    let (code, _) = rules(&["noSuchRule"]);
    assert_eq!(code, 2);
}
