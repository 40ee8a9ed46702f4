//! `portcullis echo`
use std::process::ExitCode;

pub fn run(_addr: std::net::SocketAddr, _name: String) -> anyhow::Result<ExitCode> {
    anyhow::bail!("echo is not wired yet")
}
