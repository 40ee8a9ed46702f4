//! `portcullis certs`: a development CA and serving certificate, either for the webhook
//! Service (printing the caBundle) or, with `--host`, for ingress hosts as a TLS Secret.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use portcullis::tls::DevCerts;

#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    /// The webhook Service name (manifests/ ships `portcullis-webhook`).
    #[arg(
        long,
        default_value = "portcullis-webhook",
        env = "PORTCULLIS_WEBHOOK_SERVICE"
    )]
    service: String,
    /// The webhook Service namespace.
    #[arg(
        long,
        default_value = "portcullis",
        env = "PORTCULLIS_WEBHOOK_NAMESPACE"
    )]
    namespace: String,
    /// Where ca.crt, tls.crt and tls.key are written: by default the same untracked
    /// folder `serve --cert-dir` uses.
    #[arg(long, default_value = "dev-certs")]
    out: PathBuf,
    /// Issue for these ingress hosts instead of the webhook Service (repeatable;
    /// `*.example.com` allowed).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// With --host: also write OUT/secret.yaml, a kubernetes.io/tls Secret of this name.
    #[arg(long)]
    secret: Option<String>,
    /// Namespace of the Secret written by --secret.
    #[arg(long, default_value = "default")]
    secret_namespace: String,
}

pub fn run(args: &CertsArgs) -> anyhow::Result<ExitCode> {
    if args.hosts.is_empty() {
        let bundle = portcullis::tls::run_certs(&args.service, &args.namespace, &args.out)?;
        eprintln!("wrote ca.crt, tls.crt, tls.key to {}", args.out.display());
        eprintln!("caBundle for the webhook configurations:");
        println!("{bundle}");
        return Ok(ExitCode::SUCCESS);
    }
    let certs = DevCerts::generate_for_names(&args.hosts)?;
    certs.write_to(&args.out)?;
    if let Some(name) = &args.secret {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let secret = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": args.secret_namespace},
            "data": {"tls.crt": b64(&certs.cert_pem), "tls.key": b64(&certs.key_pem), "ca.crt": b64(&certs.ca_pem)},
        });
        let path = args.out.join("secret.yaml");
        std::fs::write(&path, serde_json::to_string_pretty(&secret)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!(
        "wrote ca.crt, tls.crt, tls.key for {} to {}",
        args.hosts.join(", "),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
