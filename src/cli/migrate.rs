//! `portcullis migrate`: reads Ingresses (manifests or the live cluster, read-only) and an
//! ingress-nginx controller ConfigMap, and says per annotation and per key what portcullis
//! would do with it. Exit 1 when something would behave differently, 0 when nothing would.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use portcullis::admission::audit::Input;
use portcullis::ingress::build::migrate::{self, MigrationReport};
use serde_json::Value;

/// The ConfigMap name the ingress-nginx Helm chart and manifests use.
const DEFAULT_CONFIGMAP: &str = "ingress-nginx-controller";

#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// A manifest file or directory (searched recursively) with the Ingresses and,
    /// optionally, the controller ConfigMap. Without it the live cluster is read.
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// With a live cluster: only this namespace.
    #[arg(long, conflicts_with = "manifests")]
    namespace: Option<String>,
    /// The ingress-nginx ConfigMap: a manifest file, or NAMESPACE/NAME among the objects
    /// read. Default: a ConfigMap named ingress-nginx-controller, when there is one.
    #[arg(long)]
    configmap: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Write the settings the ConfigMap amounts to here (a settings file for --config).
    #[arg(long)]
    write_settings: Option<PathBuf>,
    /// Print what portcullis does with every ingress-nginx annotation (a Markdown table,
    /// the one in docs/MIGRATING.md) and exit.
    #[arg(long, conflicts_with_all = ["manifests", "namespace", "configmap", "write_settings"])]
    list: bool,
}

pub fn run(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        super::stdout::write(&migrate::catalogue_table());
        return Ok(ExitCode::SUCCESS);
    }
    let inputs = match &args.manifests {
        Some(path) => super::audit::read_files(path)?,
        None => super::audit::live_inputs(args.namespace.as_deref(), &[])?.1,
    };
    let mut report = MigrationReport::default();
    for input in &inputs {
        if kind(&input.object) != Some("Ingress") {
            continue;
        }
        let (namespace, name) = identity(&input.object);
        report.ingresses.push(migrate::judge_ingress(
            &input.file,
            &namespace,
            &name,
            &string_map(&input.object["metadata"]["annotations"]),
        ));
    }
    if let Some((source, data)) = find_configmap(args.configmap.as_deref(), &inputs)? {
        report.configmap = Some(migrate::judge_configmap(&source, &data));
    }
    if let Some(path) = &args.write_settings {
        let Some(cm) = &report.configmap else {
            bail!("--write-settings needs a ConfigMap (--configmap)");
        };
        let text = serde_json::to_string_pretty(&cm.settings)? + "\n";
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let text = match args.output {
        Format::Text => migrate::render_text(&report),
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    super::stdout::write(&text);
    Ok(match report.changes_behaviour() {
        true => ExitCode::from(1),
        false => ExitCode::SUCCESS,
    })
}

/// Reads the `data` of the ConfigMap manifest in `path` (the first ConfigMap in it).
pub fn configmap_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let inputs = super::audit::read_files(path)?;
    inputs
        .iter()
        .find(|i| kind(&i.object) == Some("ConfigMap"))
        .map(|i| string_map(&i.object["data"]))
        .with_context(|| format!("{}: no ConfigMap in it", path.display()))
}

fn find_configmap(
    wanted: Option<&str>,
    inputs: &[Input],
) -> anyhow::Result<Option<(String, BTreeMap<String, String>)>> {
    if let Some(w) = wanted {
        let path = Path::new(w);
        if path.exists() {
            return Ok(Some((w.to_string(), configmap_file(path)?)));
        }
    }
    let found = inputs.iter().find(|i| {
        if kind(&i.object) != Some("ConfigMap") {
            return false;
        }
        let (ns, name) = identity(&i.object);
        match wanted {
            Some(w) => w == format!("{ns}/{name}"),
            None => name == DEFAULT_CONFIGMAP,
        }
    });
    match (found, wanted) {
        (Some(i), _) => {
            let (ns, name) = identity(&i.object);
            Ok(Some((
                format!("{ns}/{name} in {}", i.file),
                string_map(&i.object["data"]),
            )))
        }
        (None, Some(w)) => bail!("ConfigMap {w}: neither a file nor among the objects read"),
        (None, None) => Ok(None),
    }
}

fn kind(o: &Value) -> Option<&str> {
    o["kind"].as_str()
}

fn identity(o: &Value) -> (String, String) {
    let meta = &o["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("default").to_string(),
        meta["name"].as_str().unwrap_or("").to_string(),
    )
}

/// A map of strings; values of other types (invalid in Kubernetes) are shown as JSON.
fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default()
}
