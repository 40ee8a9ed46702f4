//! The `portcullis` binary: parses the command line and hands off to the library.
fn main() -> anyhow::Result<()> {
    portcullis::tls::install_provider();
    Ok(())
}
