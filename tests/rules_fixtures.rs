//! Rule fixtures as data: `tests/rules/<ruleId>/{pass*,fail*,mutated*}.yaml`.
//!
//! For every rule folder: each object in a fail file triggers the rule, no object in a
//! pass file does, `fail-X` plus the rule's own patch equals `mutated-X` (compared as
//! JSON, with the patch applied by the json-patch crate), and `mutated-X` yields no patch
//! (idempotence). An optional `settings.yaml` holds admission settings for that folder, and
//! an optional `live/` folder holds manifests that are loaded and compiled as the live
//! configuration the rules compare with (the webhook's current snapshot), as
//! `portcullis check --manifests live/` would.
//!
//! Cross-object rules read a cluster view: the objects of the file itself, of `view.yaml`
//! (shared by the folder) and of `view<suffix>` for `pass<suffix>`/`fail<suffix>`
//! (`fail-no-pdb.yaml` reads `view-no-pdb.yaml`), as `portcullis check` forms its view
//! from every document it is given.
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use portcullis::admission::check::parse_manifests;
use portcullis::admission::cluster::ClusterView;
use portcullis::admission::settings::Action;
use portcullis::admission::{AdmissionSettings, Context, Engine, Operation};
use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::ingress::model::live::LiveState;
use portcullis::ingress::model::snapshot::Snapshot;
use serde_json::Value;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules")
}

fn load(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap();
    parse_manifests(&path.display().to_string(), &text).unwrap()
}

/// An engine that runs only `rule`, switched on even when it is off by default.
fn engine_for(rule: &str, dir: &Path) -> Engine {
    let settings_file = dir.join("settings.yaml");
    let mut settings: AdmissionSettings = if settings_file.exists() {
        serde_saphyr::from_str(&fs::read_to_string(&settings_file).unwrap()).unwrap()
    } else {
        AdmissionSettings::default()
    };
    let probe = Engine::new(AdmissionSettings::default()).unwrap();
    let rule_ref = portcullis::admission::rules::catalogue()
        .into_iter()
        .find(|r| r.id() == rule);
    let rule_ref = rule_ref.unwrap_or_else(|| {
        panic!(
            "fixture folder {rule} names no rule (known: {:?})",
            probe.rule_ids()
        )
    });
    let entry = settings.rules.entry(rule.to_string()).or_default();
    if entry.action.is_none() && rule_ref.default_action() == Action::Off {
        entry.action = Some(Action::Warn);
    }
    if entry.mutate.is_none() && rule_ref.mutation().is_some() {
        entry.mutate = Some(true);
    }
    let mut engine = Engine::new(settings).unwrap();
    engine.restrict_to(&[rule.to_string()]).unwrap();
    engine
}

/// The folder's `live/` manifests compiled into a snapshot, if it has one.
fn live_for(dir: &Path) -> Option<Snapshot> {
    let live = dir.join("live");
    if !live.is_dir() {
        return None;
    }
    let (store, problems) = portcullis::source::files::load_all(&live).unwrap();
    assert!(problems.is_empty(), "{}: {problems:?}", live.display());
    Some(compile(&store, &CompileOptions::default(), None))
}

/// The cluster view for one fixture file (see the module docs).
fn view_for(dir: &Path, name: &str, own: &[Value]) -> ClusterView {
    let suffix = name
        .strip_prefix("pass")
        .or_else(|| name.strip_prefix("fail"))
        .unwrap_or("");
    let mut view = ClusterView::new(own);
    let mut files = vec![dir.join("view.yaml")];
    if suffix != ".yaml" {
        files.push(dir.join(format!("view{suffix}")));
    }
    for f in files.into_iter().filter(|f| f.exists()) {
        for o in load(&f) {
            view.insert(o);
        }
    }
    view
}

fn ctx<'a>(
    obj: &'a Value,
    settings: &'a AdmissionSettings,
    live: Option<&'a Snapshot>,
    view: &'a ClusterView,
) -> Context<'a> {
    let api_version = obj["apiVersion"].as_str().unwrap_or("");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let kind = obj["kind"].as_str().unwrap_or("");
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut c = Context::new(group, kind, Operation::Create, ns, "", obj, settings);
    c.live = live.map(|s| s as &dyn LiveState);
    c.cluster = Some(view);
    c
}

fn apply(obj: &Value, ops: &[portcullis::admission::patch::PatchOp]) -> Value {
    let rendered = portcullis::admission::patch::render(ops);
    let patch: json_patch::Patch = serde_json::from_slice(&rendered).unwrap();
    let mut doc = obj.clone();
    json_patch::patch(&mut doc, &patch).unwrap_or_else(|e| {
        panic!(
            "patch {} does not apply: {e}",
            String::from_utf8_lossy(&rendered)
        )
    });
    doc
}

#[test]
fn every_rule_fixture_holds() {
    let mut checked = 0;
    let mut folders: Vec<PathBuf> = fs::read_dir(rules_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    for dir in folders {
        let rule = dir.file_name().unwrap().to_string_lossy().to_string();
        let engine = engine_for(&rule, &dir);
        let live = live_for(&dir);
        let live = live.as_ref();
        let mut files: HashMap<String, PathBuf> = HashMap::new();
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            files.insert(p.file_name().unwrap().to_string_lossy().to_string(), p);
        }
        let (mut passes, mut fails) = (0, 0);
        let mut names: Vec<&String> = files.keys().collect();
        names.sort();
        for name in names {
            let path = &files[name];
            if name.starts_with("pass") {
                passes += 1;
                let objs = load(path);
                let view = view_for(&dir, name, &objs);
                for obj in &objs {
                    let c = ctx(obj, engine.settings(), live, &view);
                    let found = engine.validate(&c).findings;
                    assert!(
                        found.is_empty(),
                        "{rule}/{name}: expected no finding, got {found:?}"
                    );
                    if rule_mutates(&rule) {
                        let ops = engine.mutate(&c);
                        assert!(
                            ops.is_empty(),
                            "{rule}/{name}: a passing object got a patch {ops:?}"
                        );
                    }
                }
            } else if name.starts_with("fail") {
                fails += 1;
                let objs = load(path);
                let view = view_for(&dir, name, &objs);
                for obj in &objs {
                    let c = ctx(obj, engine.settings(), live, &view);
                    if has_check(&rule) {
                        let found = engine.validate(&c).findings;
                        assert!(
                            found.iter().any(|f| f.rule == rule),
                            "{rule}/{name}: expected a {rule} finding, got {found:?}"
                        );
                        assert!(found.iter().all(|f| !f.message.is_empty()));
                    } else {
                        assert!(
                            !engine.mutate(&c).is_empty(),
                            "{rule}/{name}: expected a patch"
                        );
                    }
                }
                let suffix = name.trim_start_matches("fail");
                if let Some(mpath) = files.get(&format!("mutated{suffix}")) {
                    let mutated = load(mpath);
                    let mutated_view = ClusterView::new(&mutated);
                    assert_eq!(
                        mutated.len(),
                        objs.len(),
                        "{rule}/{name}: object counts differ"
                    );
                    for (obj, want) in objs.iter().zip(&mutated) {
                        let ops = engine.mutate(&ctx(obj, engine.settings(), live, &view));
                        let got = apply(obj, &ops);
                        assert_eq!(&got, want, "{rule}/{name}: fail + patch != mutated{suffix}");
                        let again =
                            engine.mutate(&ctx(want, engine.settings(), live, &mutated_view));
                        assert!(
                            again.is_empty(),
                            "{rule}/mutated{suffix}: second pass is not empty: {again:?}"
                        );
                    }
                }
            }
        }
        assert!(
            passes > 0 && fails > 0,
            "{rule}: needs at least one pass* and one fail* file"
        );
        checked += 1;
    }
    assert!(checked >= 2, "no rule folders found");
}

fn has_check(rule: &str) -> bool {
    // A mutation-only rule has no findings to assert; its fail files are "gets mutated".
    !MUTATION_ONLY.contains(&rule)
}

fn rule_mutates(rule: &str) -> bool {
    portcullis::admission::rules::catalogue()
        .iter()
        .any(|r| r.id() == rule && r.mutation().is_some())
}

/// Rules that only mutate.
const MUTATION_ONLY: &[&str] = &["qosClassAnnotation", "defaultMetadata"];

#[test]
fn every_rule_has_fixtures() {
    let engine = Engine::new(AdmissionSettings::default()).unwrap();
    for id in engine.rule_ids() {
        assert!(
            rules_dir().join(id).is_dir(),
            "rule {id} has no fixture folder tests/rules/{id}"
        );
    }
}
