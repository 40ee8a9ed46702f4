//! `portcullis serve`: the webhook (HTTPS), the ingress gateway (HTTP + HTTPS) and the
//! admin listener in one runtime, stopped gracefully by SIGTERM or Ctrl-C.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use portcullis::admin::{self, AdminState};
use portcullis::admission::Engine;
use portcullis::config::Settings;
use portcullis::server::{ServeOptions, Shutdown, serve};
use portcullis::tls::{CertReloader, DevCerts, server_config};
use tokio::net::TcpListener;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Webhook HTTPS listener (`/validate`, `/mutate`).
    #[arg(long, default_value = "0.0.0.0:8443", env = "PORTCULLIS_WEBHOOK_ADDR")]
    webhook_addr: SocketAddr,
    /// Admin HTTP listener (`/metrics`, `/healthz`, `/readyz`, `/problems`).
    #[arg(long, default_value = "0.0.0.0:9090", env = "PORTCULLIS_ADMIN_ADDR")]
    admin_addr: SocketAddr,
    /// Settings file (YAML or JSON).
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Webhook serving certificate (PEM). Without it a development CA and certificate are
    /// generated into --cert-dir.
    #[arg(long, env = "PORTCULLIS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Webhook serving key (PEM).
    #[arg(long, env = "PORTCULLIS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where generated development certificates are written.
    #[arg(long, default_value = "dev-certs", env = "PORTCULLIS_CERT_DIR")]
    cert_dir: PathBuf,
    /// Seconds to keep accepting after SIGTERM (overrides the settings file).
    #[arg(long)]
    drain_delay: Option<u64>,
    /// Seconds in-flight requests get after accepting stops (overrides the settings file).
    #[arg(long)]
    grace_period: Option<u64>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))?;
    Ok(ExitCode::SUCCESS)
}

/// The webhook certificate: the configured files, or freshly generated development ones.
/// Either way the files are watched, so replacing them rotates without a restart.
fn webhook_tls(args: &ServeArgs) -> anyhow::Result<(CertReloader, Arc<rustls::ServerConfig>)> {
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let certs = DevCerts::generate("portcullis", "portcullis")?;
            certs.write_to(&args.cert_dir)?;
            tracing::warn!(
                dir = %args.cert_dir.display(),
                "no --tls-cert given: generated a development CA and serving certificate (ca.crt is the caBundle)"
            );
            (args.cert_dir.join("tls.crt"), args.cert_dir.join("tls.key"))
        }
    };
    let (reloader, resolver) = CertReloader::with_new_resolver(cert.clone(), key)
        .with_context(|| format!("loading webhook certificate {}", cert.display()))?;
    Ok((reloader, server_config(resolver)?))
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener to {addr}"))
}

async fn run_async(args: ServeArgs) -> anyhow::Result<()> {
    let mut settings = match &args.config {
        Some(p) => Settings::load(p)?,
        None => Settings::default(),
    };
    if let Some(s) = args.drain_delay {
        settings.shutdown.drain_delay_seconds = s;
    }
    if let Some(s) = args.grace_period {
        settings.shutdown.grace_period_seconds = s;
    }
    let engine = Arc::new(Engine::new(settings.admission.clone())?);
    let (_reloader, webhook_tls) = webhook_tls(&args)?;

    // The admin listener has its own shutdown, stopped last, so probes keep answering
    // (503 on /readyz) while the others drain.
    let shutdown = Shutdown::new();
    let admin_shutdown = Shutdown::new();
    let ready = Arc::new(AtomicBool::new(false));
    let admin_state = AdminState {
        ready: ready.clone(),
        shutdown: shutdown.clone(),
        problems: Arc::new(|| serde_json::json!([])),
    };

    let opts = |name: &'static str| {
        let mut o = ServeOptions::new(name);
        o.drain_delay = settings.shutdown.drain_delay();
        o.grace = settings.shutdown.grace();
        o
    };
    let webhook = tokio::spawn(serve(
        bind(args.webhook_addr, "webhook").await?,
        Some(webhook_tls),
        portcullis::admission::http::handler(engine),
        shutdown.clone(),
        opts("webhook"),
    ));
    let admin = tokio::spawn(serve(
        bind(args.admin_addr, "admin").await?,
        None,
        admin::handler(admin_state),
        admin_shutdown.clone(),
        ServeOptions::new("admin"),
    ));
    ready.store(true, Ordering::SeqCst);
    tracing::info!("portcullis is ready");

    wait_for_signal().await;
    tracing::info!(
        drain_delay = ?settings.shutdown.drain_delay(),
        grace = ?settings.shutdown.grace(),
        "shutting down: /readyz now answers 503"
    );
    shutdown.trigger();
    for (name, task) in [("webhook", webhook)] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(listener = name, error = %e, "listener ended with an error")
            }
            Err(e) => tracing::warn!(listener = name, error = %e, "listener task failed"),
        }
    }
    admin_shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
