//! `portcullis certs`
use std::path::Path;
use std::process::ExitCode;

pub fn run(_service: &str, _namespace: &str, _out: &Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("certs is not wired yet")
}
