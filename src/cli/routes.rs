//! `portcullis routes`
use std::path::Path;
use std::process::ExitCode;

pub fn run(_manifests: &Path, _config: Option<&Path>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("routes is not wired yet")
}
