//! `portcullis check FILE...`
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis::admission::Engine;
use portcullis::admission::check::{Report, check_objects, parse_manifests, render_table};
use portcullis::admission::settings::Action;
use portcullis::config::Settings;

#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

pub fn run(
    files: &[String],
    config: Option<&Path>,
    rules: &[String],
    output: Output,
) -> anyhow::Result<ExitCode> {
    let settings = match config {
        Some(p) => Settings::load(p)?,
        None => Settings::default(),
    };
    let mut engine = Engine::new(settings.admission)?;
    if !rules.is_empty() {
        engine.restrict_to(rules)?;
    }
    let mut reports: Vec<Report> = Vec::new();
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
        let objects = parse_manifests(file, &text)?;
        reports.extend(check_objects(&engine, file, &objects));
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
