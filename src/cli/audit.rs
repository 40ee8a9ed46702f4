//! `portcullis audit [--audit-path DIR|FILE]`: every object through every rule, Polaris'
//! score, and Polaris' CI exit codes (3 on a danger, 4 below a score). Without a path the
//! live cluster is listed read-only (in-cluster service account, else KUBECONFIG).
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis::admission::audit::{AuditReport, Input, audit_with_progress};
use portcullis::admission::audit_render;
use portcullis::admission::check::parse_manifests;
use portcullis::config::Settings;

#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    /// Polaris' own JSON layout (`polaris audit --format json`).
    PolarisJson,
    Html,
}

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// A manifest file or a directory of them (searched recursively for .yaml, .yml and
    /// .json files; multi-document YAML and Lists are unwrapped). Without it the live
    /// cluster is audited, read-only.
    #[arg(long)]
    audit_path: Option<PathBuf>,
    /// With a live cluster: only this namespace (cluster-scoped RBAC is still read).
    #[arg(long, conflicts_with = "audit_path")]
    namespace: Option<String>,
    /// Settings file (the same one `serve` takes).
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// A Polaris configuration file (checks, exemptions, customChecks).
    #[arg(long, env = "PORTCULLIS_POLARIS_CONFIG")]
    polaris_config: Option<PathBuf>,
    /// Only run these checks (comma-separated or repeated), as Polaris' `--checks`.
    #[arg(long, value_delimiter = ',')]
    checks: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report here instead of standard output.
    #[arg(long)]
    output_file: Option<PathBuf>,
    /// List only failed checks (scores still count every check).
    #[arg(long)]
    only_show_failed_tests: bool,
    /// Exit with 3 when any check with severity danger fails.
    #[arg(long)]
    set_exit_code_on_danger: bool,
    /// Exit with 4 when the overall score is below this.
    #[arg(long)]
    set_exit_code_below_score: Option<u64>,
}

/// The manifest files under `path`, sorted so reports are stable.
fn manifest_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in entries {
            let p = e
                .with_context(|| format!("reading {}", dir.display()))?
                .path();
            if p.is_dir() {
                dirs.push(p);
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
    Ok(out)
}

pub(crate) fn read_files(path: &Path) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for file in manifest_files(path)? {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {name}"))?;
        for object in parse_manifests(&name, &text)? {
            inputs.push(Input {
                file: name.clone(),
                object,
            });
        }
    }
    Ok(inputs)
}

/// The live cluster's objects, listed once; kinds that cannot be listed are named on
/// stderr and skipped.
pub(crate) fn live_inputs(
    namespace: Option<&str>,
    extra: &[(String, String)],
) -> anyhow::Result<(String, Vec<Input>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let listing = runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the cluster (in-cluster service account or KUBECONFIG)")?;
        portcullis::source::cluster_list::list_all(client, namespace, extra)
            .await
            .context("listing the cluster's objects")
    })?;
    for note in &listing.notes {
        eprintln!("portcullis: {note}");
    }
    let source = match namespace {
        Some(ns) => format!("cluster (namespace {ns})"),
        None => "cluster".to_string(),
    };
    let inputs = listing
        .objects
        .into_iter()
        .map(|object| Input {
            file: "cluster".to_string(),
            object,
        })
        .collect();
    Ok((source, inputs))
}

/// Reads, audits and renders; the exit code follows Polaris: 3 on a danger (when asked),
/// else 4 below the score (when asked), else 0.
pub fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let settings = match &args.config {
        Some(p) => Settings::load(p)?,
        None => Settings::default(),
    };
    let (mut engine, notes) =
        portcullis::admission::polaris::engine(settings.admission, args.polaris_config.as_deref())?;
    if !args.checks.is_empty() {
        engine.restrict_to(&args.checks)?;
    }
    for note in notes {
        eprintln!("portcullis: {note}");
    }
    let (source, inputs) = match &args.audit_path {
        Some(path) => (path.display().to_string(), read_files(path)?),
        None => live_inputs(args.namespace.as_deref(), &engine.related_kinds())?,
    };
    // Progress only where someone watches: a terminal on stderr, and a large audit.
    let show = std::io::stderr().is_terminal() && inputs.len() >= 1000;
    let mut progress = |done: usize, total: usize| {
        if show && (done.is_multiple_of(500) || done == total) {
            eprint!("\raudited {done}/{total} objects");
            if done == total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    };
    let mut report: AuditReport = audit_with_progress(&engine, &source, &inputs, &mut progress);
    let danger = report.has_danger();
    let score = report.score;
    if args.only_show_failed_tests {
        report.only_failures();
    }
    let text = match args.format {
        Format::Table => audit_render::table(&report),
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
        Format::PolarisJson => {
            let source_type = match args.audit_path {
                Some(_) => "Path",
                None => "Cluster",
            };
            let now =
                portcullis::ingress::request::access_log::rfc3339(std::time::SystemTime::now());
            let data = portcullis::admission::audit_polaris::render(&report, &now, source_type);
            serde_json::to_string_pretty(&data)? + "\n"
        }
        Format::Html => audit_render::html(&report),
    };
    match &args.output_file {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => {
            super::stdout::write(&text);
        }
    }
    if args.set_exit_code_on_danger && danger {
        return Ok(ExitCode::from(3));
    }
    if args
        .set_exit_code_below_score
        .is_some_and(|min| score < min)
    {
        return Ok(ExitCode::from(4));
    }
    Ok(ExitCode::SUCCESS)
}
