//! `portcullis check [--manifests DIR] FILE|DIR|-...`: the rules over manifests, for people
//! and CI pipelines (table, JSON, SARIF, JUnit; a summary on stderr; `--fail-on`).
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis::admission::check::check_objects;
use portcullis::admission::check_input::{Located, interpret, parse_located};
use portcullis::admission::cluster::ClusterView;
use portcullis::admission::settings::Action;
use portcullis::config::Settings;
use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::ingress::model::live::LiveState;
use portcullis::ingress::model::snapshot::Snapshot;
use portcullis::source::files::load_all;

use super::check_output::{Outcome, Refused, Row, Skipped, json, junit, sarif, table};
use super::stdout;

#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Sarif,
    Junit,
}

/// The least severe finding that fails the run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Warn,
    Deny,
}

/// What `check` was asked to do, besides its inputs.
#[derive(Debug, Clone)]
pub struct CheckArgs<'a> {
    pub config: Option<&'a Path>,
    pub polaris_config: Option<&'a Path>,
    pub rules: &'a [String],
    pub output: Output,
    pub manifests: Option<&'a Path>,
    pub fail_on: FailOn,
}

/// Exit codes: 0 clean, 1 a finding at or above `--fail-on`, 2 an input that could not be
/// read or interpreted (the other inputs are still checked and reported).
pub fn run(inputs: &[String], args: &CheckArgs<'_>) -> anyhow::Result<ExitCode> {
    let settings = match args.config {
        Some(p) => Settings::load(p)?,
        None => Settings::default(),
    };
    let live = match args.manifests {
        Some(dir) => Some(live_state(dir, &settings)?),
        None => None,
    };
    let (mut engine, notes) =
        portcullis::admission::polaris::engine(settings.admission, args.polaris_config)?;
    for note in notes {
        eprintln!("portcullis: {note}");
    }
    if !args.rules.is_empty() {
        engine.restrict_to(args.rules)?;
    }
    let mut outcome = Outcome::default();
    // Every document of every input is read first: together they are the cluster view the
    // cross-object rules (PDBs, HPAs, roles, ServiceAccounts) look things up in.
    let mut sources: Vec<(String, Vec<Located>)> = Vec::new();
    for (name, text) in read_inputs(inputs, &mut outcome)? {
        outcome.files += 1;
        match parse_located(&name, &text) {
            Ok(docs) => sources.push((name, docs)),
            Err(e) => outcome.refused.push(Refused {
                source: name,
                line: 1,
                message: e.to_string(),
            }),
        }
    }
    let view = ClusterView::new(
        sources
            .iter()
            .flat_map(|(_, docs)| docs.iter().map(|d| &d.object)),
    );
    let state = live.as_ref().map(|s| s as &dyn LiveState);
    let mut checked_objects = Vec::new();
    for (source, docs) in &sources {
        for doc in docs {
            if let Err(message) = interpret(&doc.object) {
                outcome.refused.push(Refused {
                    source: source.clone(),
                    line: doc.line,
                    message,
                });
                continue;
            }
            let one = std::slice::from_ref(&doc.object);
            match judged(&engine, &doc.object) {
                Some(reason) => outcome.skipped.push(Skipped {
                    source: source.clone(),
                    line: doc.line,
                    object: describe(&doc.object),
                    reason,
                }),
                None => {
                    outcome.checked += 1;
                    checked_objects.push((source.clone(), doc.line, describe(&doc.object)));
                    for r in check_objects(&engine, source, one, state, Some(&view)) {
                        outcome.rows.push(Row {
                            source: source.clone(),
                            line: doc.line,
                            object: r.object,
                            rule: r.finding.rule,
                            action: r.finding.action,
                            message: r.finding.message,
                            path: r.finding.path,
                        });
                    }
                }
            }
        }
    }
    for f in &outcome.refused {
        eprintln!("portcullis: {}:{}: {}", f.source, f.line, f.message);
    }
    let text = match args.output {
        Output::Table => table(&outcome),
        Output::Json => json(&outcome),
        Output::Sarif => sarif(&outcome),
        Output::Junit => junit(&outcome, &checked_objects),
    };
    // A reader that went away (`| head`) ends the output, not the run's verdict.
    if stdout::write(&text) {
        eprintln!("{}", outcome.summary());
    }
    let failed = outcome.rows.iter().any(|r| match args.fail_on {
        FailOn::Deny => r.action == Action::Deny,
        FailOn::Warn => matches!(r.action, Action::Deny | Action::Warn),
    });
    Ok(if !outcome.refused.is_empty() {
        ExitCode::from(2)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `None` when the rules judge `obj`; otherwise why it is skipped.
fn judged(engine: &portcullis::admission::Engine, obj: &serde_json::Value) -> Option<String> {
    use portcullis::admission::context::{Context, Operation};
    use portcullis::admission::engine::{Mode, Skip};
    let api_version = obj.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let kind = obj.get("kind").and_then(|v| v.as_str()).unwrap_or("");
    let namespace = obj
        .pointer("/metadata/namespace")
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let ctx = Context::new(
        group,
        kind,
        Operation::Create,
        namespace,
        "",
        obj,
        engine.settings(),
    );
    match engine.skip(&ctx, Mode::Validate) {
        Some(Skip::Namespace) => return Some(format!("in skipped namespace {namespace}")),
        Some(Skip::Annotation) => return Some("opted out by annotation".into()),
        Some(_) => return Some("not a create".into()),
        None => {}
    }
    (!engine.judges(&ctx)).then(|| format!("kind {kind} ({api_version}) is checked by no rule"))
}

fn describe(obj: &serde_json::Value) -> String {
    let kind = obj.get("kind").and_then(|v| v.as_str()).unwrap_or("?");
    let name = obj
        .pointer("/metadata/name")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    match obj.pointer("/metadata/namespace").and_then(|v| v.as_str()) {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// (name, text) of every input: files, `-` for standard input, directories walked
/// recursively for `*.yaml`, `*.yml` and `*.json` in name order. An unreadable input is
/// refused (exit 2) without stopping the others.
fn read_inputs(inputs: &[String], outcome: &mut Outcome) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for input in inputs {
        if input == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input")?;
            out.push(("-".to_string(), s));
            continue;
        }
        let path = Path::new(input);
        let files = if path.is_dir() {
            manifest_files(path)
        } else {
            vec![path.to_path_buf()]
        };
        for f in files {
            let name = f.display().to_string();
            match std::fs::read_to_string(&f) {
                Ok(text) => out.push((name, text)),
                Err(e) => outcome.refused.push(Refused {
                    source: name,
                    line: 0,
                    message: format!("cannot be read: {e}"),
                }),
            }
        }
    }
    Ok(out)
}

fn manifest_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The cluster state to check against: `dir` loaded and compiled as `serve` would.
fn live_state(dir: &Path, settings: &Settings) -> anyhow::Result<Snapshot> {
    let (store, _) =
        load_all(dir).with_context(|| format!("loading manifests from {}", dir.display()))?;
    let opts = CompileOptions {
        error_defaults: settings
            .proxy
            .error_defaults()
            .map_err(|e| anyhow::anyhow!("settings: {e}"))?,
        default_body_limit: settings
            .proxy
            .body_size_limit()
            .map_err(|e| anyhow::anyhow!("settings: {e}"))?,
        controller: settings.ingress.controller.clone(),
        watch_without_class: settings.ingress.watch_without_class,
        ..Default::default()
    };
    Ok(compile(&store, &opts, None))
}
