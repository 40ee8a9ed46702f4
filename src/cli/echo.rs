//! `portcullis echo`: a stand-in pod for demos and tests.
use std::process::ExitCode;

pub fn run(addr: std::net::SocketAddr, name: String) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    use anyhow::Context as _;
    rt.block_on(portcullis::echo::run_echo(addr, name))
        .with_context(|| format!("echo pod on {addr}"))?;
    Ok(ExitCode::SUCCESS)
}
