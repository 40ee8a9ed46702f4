//! `portcullis routes --manifests DIR`: the compiled route table, for debugging.
use std::path::Path;
use std::process::ExitCode;

use portcullis::config::Settings;
use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::ingress::model::routes::render_routes;
use portcullis::source::files::load_all;

pub fn run(manifests: &Path, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let settings = match config {
        Some(p) => Settings::load(p)?,
        None => Settings::default(),
    };
    let opts = CompileOptions {
        error_defaults: settings
            .proxy
            .error_defaults()
            .map_err(|e| anyhow::anyhow!("settings: {e}"))?,
        default_body_limit: settings
            .proxy
            .body_size_limit()
            .map_err(|e| anyhow::anyhow!("settings: {e}"))?,
        controller: settings.ingress.controller,
        watch_without_class: settings.ingress.watch_without_class,
        ..Default::default()
    };
    let (store, _problems) = load_all(manifests)?;
    super::stdout::write(&render_routes(&compile(&store, &opts, None)));
    Ok(ExitCode::SUCCESS)
}
