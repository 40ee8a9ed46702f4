//! `portcullis check [--manifests DIR] FILE...`
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis::admission::check::{Report, check_objects, parse_manifests, render_table};
use portcullis::admission::cluster::ClusterView;
use portcullis::admission::live::LiveState;
use portcullis::admission::settings::Action;
use portcullis::config::Settings;
use portcullis::ingress::compile::{CompileOptions, compile};
use portcullis::ingress::snapshot::Snapshot;
use portcullis::source::files::load_all;

#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

pub fn run(
    files: &[String],
    config: Option<&Path>,
    polaris_config: Option<&Path>,
    rules: &[String],
    output: Output,
    manifests: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let settings = match config {
        Some(p) => Settings::load(p)?,
        None => Settings::default(),
    };
    let live = match manifests {
        Some(dir) => Some(live_state(dir, &settings)?),
        None => None,
    };
    let (mut engine, notes) =
        portcullis::admission::polaris::engine(settings.admission, polaris_config)?;
    for note in notes {
        eprintln!("portcullis: {note}");
    }
    if !rules.is_empty() {
        engine.restrict_to(rules)?;
    }
    // Every document of every file is read first: together they are the cluster view the
    // cross-object rules (PDBs, HPAs, roles, ServiceAccounts) look things up in.
    let mut sources: Vec<(&str, Vec<serde_json::Value>)> = Vec::new();
    for file in files {
        let text = if file == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input")?;
            s
        } else {
            std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
        };
        sources.push((file, parse_manifests(file, &text)?));
    }
    let view = ClusterView::new(sources.iter().flat_map(|(_, objs)| objs));
    let state = live.as_ref().map(|s| s as &dyn LiveState);
    let mut reports: Vec<Report> = Vec::new();
    for (file, objects) in &sources {
        reports.extend(check_objects(&engine, file, objects, state, Some(&view)));
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        Output::Table if reports.is_empty() => println!("no findings"),
        Output::Table => print!("{}", render_table(&reports)),
    }
    let denied = reports.iter().any(|r| r.finding.action == Action::Deny);
    Ok(if denied {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The cluster state to check against: `dir` loaded and compiled as `serve` would.
fn live_state(dir: &Path, settings: &Settings) -> anyhow::Result<Snapshot> {
    let (store, _) =
        load_all(dir).with_context(|| format!("loading manifests from {}", dir.display()))?;
    let opts = CompileOptions {
        controller: settings.ingress.controller.clone(),
        watch_without_class: settings.ingress.watch_without_class,
        ..Default::default()
    };
    Ok(compile(&store, &opts, None))
}
