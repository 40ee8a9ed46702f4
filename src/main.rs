//! The `portcullis` binary: parses the command line, sets up logging and the TLS
//! provider, and hands off to the library. Errors end here as `anyhow` reports.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod cli;

#[derive(Parser, Debug)]
#[command(
    name = "portcullis",
    version,
    about = "Kubernetes admission webhook and ingress data plane"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PORTCULLIS_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the webhook, the ingress gateway and the admin listener.
    Serve(Box<cli::serve::ServeArgs>),
    /// Run the admission rules over manifests offline; exit 1 when anything is denied.
    Check {
        /// Manifest files or directories (YAML or JSON, multi-document, Lists; directories
        /// are read recursively); `-` reads standard input.
        #[arg(required = true)]
        files: Vec<String>,
        /// Settings file (the same one `serve` takes).
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        /// A Polaris configuration file (checks, exemptions, customChecks, mutations).
        #[arg(long, env = "PORTCULLIS_POLARIS_CONFIG")]
        polaris_config: Option<PathBuf>,
        /// Only run these rules (repeatable); a rule that is off runs too.
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// Output format: table, json, sarif (code-scanning UIs) or junit (CI test reports).
        #[arg(long, value_enum, default_value_t = cli::check::Output::Table)]
        output: cli::check::Output,
        /// Exit 1 on findings of this action or worse: `deny` (default) or `warn`.
        #[arg(long, value_enum, default_value_t = cli::check::FailOn::Deny)]
        fail_on: cli::check::FailOn,
        /// A manifests directory standing in for the cluster: Ingresses are checked
        /// against its routes, Services, TLS Secrets and IngressClasses, as the webhook
        /// checks them against the live configuration.
        #[arg(long)]
        manifests: Option<PathBuf>,
    },
    /// Audit manifests offline with every rule and Polaris' score; exit 3 on a danger
    /// (--set-exit-code-on-danger), 4 below a score (--set-exit-code-below-score).
    Audit(cli::audit::AuditArgs),
    /// Report what would change if these Ingresses and this ingress-nginx ConfigMap were
    /// served by portcullis; exit 1 when anything would behave differently.
    Migrate(cli::migrate::MigrateArgs),
    /// Write a development CA and serving certificate for a webhook Service.
    Certs(cli::certs::CertsArgs),
    /// Print the compiled route table of a manifests directory.
    Routes {
        /// The manifests directory to compile (for a running `serve`, the directory it
        /// watches: run-example.sh prints it).
        #[arg(long, env = "PORTCULLIS_MANIFESTS")]
        manifests: PathBuf,
        /// Settings file (the same one `serve` takes: IngressClass controller, classless
        /// Ingresses).
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List every admission rule with its default action, mutation, Polaris category and
    /// what it checks; `rules ID` adds how to fix it, `--output json` gives every field.
    Rules(cli::rules::RulesArgs),
    /// A small echo backend that answers with what it received (for demos and tests).
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081", env = "PORTCULLIS_ECHO_ADDR")]
        addr: std::net::SocketAddr,
        /// The name it reports in every answer (the "pod" name).
        #[arg(long, default_value = "echo", env = "PORTCULLIS_ECHO_NAME")]
        name: String,
    },
}

/// What is logged when `RUST_LOG` is not set (see `init_logging`).
const DEFAULT_LOG_FILTER: &str = "info,rustls=error";

/// Operational logs go to stderr; access-log lines (one JSON object per request) go to
/// stdout from a thread of their own (`log_writer`), so they can be collected apart from
/// the rest and never slow a request.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    // rustls warns once per handshake about what the peer did wrong (an IP address as
    // SNI, a fatal alert it is about to send): any client could fill the log that way.
    // nginx logs client-caused handshake failures at `info` too; our handshake counters
    // (`/metrics`) keep the figures. RUST_LOG, when set, decides alone.
    let env =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // Colours only for a person at a terminal: in files and log collectors the escape
    // codes are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let ops = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    tracing_subscriber::registry().with(env).with(ops).init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    portcullis::tls::install_provider();
    let result = match cli.command {
        Command::Serve(args) => cli::serve::run(*args),
        Command::Check {
            files,
            config,
            polaris_config,
            rules,
            output,
            manifests,
            fail_on,
        } => cli::check::run(
            &files,
            &cli::check::CheckArgs {
                config: config.as_deref(),
                polaris_config: polaris_config.as_deref(),
                rules: &rules,
                output,
                manifests: manifests.as_deref(),
                fail_on,
            },
        ),
        Command::Audit(args) => cli::audit::run(&args),
        Command::Migrate(args) => cli::migrate::run(&args),
        Command::Certs(args) => cli::certs::run(&args),
        Command::Routes { manifests, config } => cli::routes::run(&manifests, config.as_deref()),
        Command::Rules(args) => cli::rules::run(&args),
        Command::Echo { addr, name } => cli::echo::run(addr, name),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::Subscriber;
    use tracing_subscriber::layer::{Context, Layer};
    use tracing_subscriber::prelude::*;

    use super::DEFAULT_LOG_FILTER;

    /// Records the target of every event the filter lets through.
    struct Targets(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Targets {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if let Ok(mut seen) = self.0.lock() {
                seen.push(event.metadata().target().to_owned());
            }
        }
    }

    #[test]
    fn the_default_filter_drops_rustls_warnings_and_keeps_our_info() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER))
            .with(Targets(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "rustls::msgs::handshake", "Illegal SNI extension");
            tracing::error!(target: "rustls::conn", "an error rustls reports");
            tracing::info!(target: "portcullis::server", "listening");
            tracing::debug!(target: "portcullis::server", "not at info");
        });
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, ["rustls::conn", "portcullis::server"]);
    }
}
