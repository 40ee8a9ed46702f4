//! No input makes the engine panic: every value of every rule fixture is replaced, one at a
//! time, by values of the wrong type, and the result is validated and mutated, with every
//! rule switched on. The patch produced must still apply to the object it was made for.
use std::fs;
use std::path::Path;

use portcullis::admission::check::parse_manifests;
use portcullis::admission::settings::{Action, RuleSettings};
use portcullis::admission::{AdmissionSettings, Context, Engine, Operation};
use serde_json::{Value, json};

fn all_on() -> Engine {
    let mut s = AdmissionSettings {
        required_labels: vec!["app.kubernetes.io/name".into()],
        ..Default::default()
    };
    s.defaults.labels.insert("team".into(), "x".into());
    for r in portcullis::admission::rules::catalogue() {
        let action = if r.default_action() == Action::Off {
            Some(Action::Warn)
        } else {
            None
        };
        s.rules.insert(
            r.id().to_string(),
            RuleSettings {
                action,
                mutate: Some(true),
                ..Default::default()
            },
        );
    }
    Engine::new(s).unwrap()
}

/// Every JSON Pointer in `v`.
fn pointers(v: &Value, base: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = format!("{base}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{base}/{i}");
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        _ => {}
    }
}

fn run(engine: &Engine, obj: &Value) {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let ctx = Context::new(
        group,
        kind,
        Operation::Create,
        "default",
        "",
        obj,
        engine.settings(),
    );
    let _ = engine.validate(&ctx);
    let ops = engine.mutate(&ctx);
    if !ops.is_empty() {
        let rendered = portcullis::admission::patch::render(&ops);
        let patch: json_patch::Patch = serde_json::from_slice(&rendered).unwrap();
        let mut doc = obj.clone();
        json_patch::patch(&mut doc, &patch).unwrap_or_else(|e| {
            panic!(
                "patch does not apply to {obj}: {e}: {}",
                String::from_utf8_lossy(&rendered)
            )
        });
    }
}

#[test]
fn wrong_types_anywhere_never_panic() {
    let engine = all_on();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules");
    let junk = [
        json!(null),
        json!(-1),
        json!(1.5e300),
        json!("x"),
        json!([]),
        json!({}),
        json!(true),
    ];
    let mut runs = 0;
    for dir in fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        for f in fs::read_dir(&dir).unwrap() {
            let path = f.unwrap().path();
            if path.is_dir() || path.file_name().is_some_and(|n| n == "settings.yaml") {
                continue;
            }
            let text = fs::read_to_string(&path).unwrap();
            for obj in parse_manifests("fixture", &text).unwrap() {
                let mut ptrs = Vec::new();
                pointers(&obj, String::new(), &mut ptrs);
                for p in &ptrs {
                    for j in &junk {
                        let mut broken = obj.clone();
                        if let Some(slot) = broken.pointer_mut(p) {
                            *slot = j.clone();
                        }
                        run(&engine, &broken);
                        runs += 1;
                    }
                }
            }
        }
    }
    assert!(runs > 10_000, "only {runs} variants");
}
