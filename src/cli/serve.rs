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
use portcullis::config::Settings;
use portcullis::dashboard::{Access, Dashboard};
use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::ingress::build::endpoint_filter::EndpointFilter;
use portcullis::ingress::request::gateway::{
    Gateway, ProxyConfig, Scheme, handler as gateway_handler,
};
use portcullis::reload::{
    ConfigHandle, FilesDriver, KubeDriver, KubeOptions, start_files, start_kube,
};
use portcullis::server::{ConnLimits, Shutdown, fd_limit, serve};
use portcullis::source::ObjectStore;
use portcullis::tls::SniResolver;
use portcullis::tls::{CertReloader, DevCerts, Resumption, server_config_with};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Webhook HTTPS listener (`/validate`, `/mutate`).
    #[arg(long, default_value = "0.0.0.0:8443", env = "PORTCULLIS_WEBHOOK_ADDR")]
    webhook_addr: SocketAddr,
    /// Admin HTTP listener (`/metrics`, `/healthz`, `/readyz`, `/problems`, `/routes`,
    /// the dashboard at `/dashboard`).
    #[arg(long, default_value = "0.0.0.0:9090", env = "PORTCULLIS_ADMIN_ADDR")]
    admin_addr: SocketAddr,
    /// Require `Authorization: Bearer <token>` for the admin listener's data (`/problems`,
    /// `/routes`, `/dashboard/state.json`; the dashboard page asks for it).
    /// `/healthz`, `/readyz` and `/metrics` stay open.
    #[arg(long, env = "PORTCULLIS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Answer the dashboard, `/problems` and `/routes` only to loopback clients (403 for
    /// others); `/healthz`, `/readyz` and `/metrics` stay open.
    #[arg(long, env = "PORTCULLIS_ADMIN_LOOPBACK_ONLY")]
    admin_loopback_only: bool,
    /// Settings file (YAML or JSON).
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// A Polaris configuration file (checks, exemptions, customChecks, mutations).
    #[arg(long, env = "PORTCULLIS_POLARIS_CONFIG")]
    polaris_config: Option<PathBuf>,
    /// An ingress-nginx controller ConfigMap manifest whose keys become settings (the
    /// settings file wins where both set something); `portcullis migrate` shows the mapping.
    #[arg(long, env = "PORTCULLIS_NGINX_CONFIGMAP")]
    nginx_configmap: Option<PathBuf>,
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
    /// Ingress HTTP listener.
    #[arg(long, default_value = "0.0.0.0:9080", env = "PORTCULLIS_HTTP_ADDR")]
    http_addr: SocketAddr,
    /// Ingress HTTPS listener (certificates chosen by SNI from the Ingresses' TLS Secrets).
    #[arg(long, default_value = "0.0.0.0:9443", env = "PORTCULLIS_HTTPS_ADDR")]
    https_addr: SocketAddr,
    /// Where the ingress configuration comes from: `kube` (watch the API server; in-cluster
    /// service account, else the kubeconfig that KUBECONFIG or ~/.kube/config names) or
    /// `files` (--manifests). Default: kube when KUBERNETES_SERVICE_HOST is set and no
    /// --manifests is given, else files.
    #[arg(long, value_enum, env = "PORTCULLIS_SOURCE")]
    source: Option<SourceKind>,
    /// With --source kube: also watch v1 Endpoints (needs list/watch on endpoints; the
    /// EndpointSlices, always watched, already mirror custom Endpoints).
    #[arg(long, env = "PORTCULLIS_WATCH_ENDPOINTS")]
    watch_endpoints: bool,
    /// With --source kube: allow endpoints on loopback and link-local addresses. Unsafe in
    /// a cluster (a namespace user could aim an Ingress at node-local services or the
    /// metadata endpoint); for tests and single-host setups whose pods are on loopback.
    #[arg(long, env = "PORTCULLIS_ALLOW_LOCAL_ENDPOINTS")]
    allow_local_endpoints: bool,
    /// Directory of Kubernetes manifests (Ingress, IngressClass, Service, EndpointSlice,
    /// Endpoints, TLS Secrets), watched for changes (--source files). Without it the
    /// gateway serves an empty route table (every request gets 404).
    #[arg(long, env = "PORTCULLIS_MANIFESTS")]
    manifests: Option<PathBuf>,
    /// Ingress default certificate (PEM), for clients whose SNI matches no Ingress.
    /// Without it one is generated.
    #[arg(long, requires = "default_key", env = "PORTCULLIS_DEFAULT_CERT")]
    default_cert: Option<PathBuf>,
    /// Key (PEM) of --default-cert.
    #[arg(long, requires = "default_cert", env = "PORTCULLIS_DEFAULT_KEY")]
    default_key: Option<PathBuf>,
    /// Port to put in HTTP→HTTPS redirects, when clients reach the HTTPS listener on a
    /// port other than 443 (a local run: 9443). In a cluster the Service maps 443.
    #[arg(long, env = "PORTCULLIS_HTTPS_REDIRECT_PORT")]
    https_redirect_port: Option<u16>,
    /// Seconds to keep accepting after SIGTERM (overrides the settings file).
    #[arg(long, env = "PORTCULLIS_DRAIN_DELAY")]
    drain_delay: Option<u64>,
    /// Seconds in-flight requests get after accepting stops (overrides the settings file).
    #[arg(long, env = "PORTCULLIS_GRACE_PERIOD")]
    grace_period: Option<u64>,
    #[command(flatten)]
    status: super::status::StatusArgs,
}

/// Where the ingress configuration comes from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Kube,
    Files,
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
fn webhook_tls(
    args: &ServeArgs,
    resumption: Resumption,
) -> anyhow::Result<(CertReloader, Arc<rustls::ServerConfig>)> {
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
    Ok((reloader, server_config_with(resolver, resumption)?))
}

/// The running configuration source; dropping it stops the watches.
#[expect(dead_code, reason = "held only so that dropping it stops the watches")]
enum Driver {
    Files(FilesDriver),
    Kube(KubeDriver),
    None,
}

/// The gateway's configuration and how to follow it.
struct ConfigSource {
    handle: ConfigHandle,
    /// Changes with every published snapshot (None: the configuration never changes).
    generations: Option<watch::Receiver<u64>>,
    /// True once the configuration is complete (the kube source's first lists are in).
    ready: watch::Receiver<bool>,
    /// The API client, with --source kube (Ingress status is written through it).
    client: Option<kube::Client>,
    /// What the dashboard's background audit reads.
    audit_from: AuditFrom,
    driver: Driver,
}

/// Where the objects for the dashboard's audit come from.
enum AuditFrom {
    Manifests {
        dir: PathBuf,
        changed_scans: Arc<std::sync::atomic::AtomicU64>,
    },
    Watched(Arc<arc_swap::ArcSwap<portcullis::reload::HeldObjects>>),
    /// No source: nothing to audit.
    Nothing,
}

/// The gateway's configuration: the Kubernetes API, the watched manifests directory, or
/// an empty table.
async fn config_source(args: &ServeArgs, settings: &Settings) -> anyhow::Result<ConfigSource> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let kind = args
        .source
        .unwrap_or(if in_cluster && args.manifests.is_none() {
            SourceKind::Kube
        } else {
            SourceKind::Files
        });
    let own_listeners = vec![
        args.webhook_addr,
        args.admin_addr,
        args.http_addr,
        args.https_addr,
    ];
    let mut endpoint_filter = match kind {
        // POD_IP comes from the downward API (manifests/base/deployment.yaml).
        SourceKind::Kube => EndpointFilter::cluster(
            own_listeners,
            std::env::var("POD_IP")
                .ok()
                .and_then(|ip| ip.parse().ok())
                .into_iter()
                .collect(),
        ),
        SourceKind::Files => EndpointFilter::files(own_listeners),
    };
    if args.allow_local_endpoints {
        tracing::warn!(
            "--allow-local-endpoints: loopback and link-local endpoints will be dialled"
        );
        endpoint_filter.deny_local = false;
    }
    let error_defaults = settings
        .proxy
        .error_defaults()
        .map_err(|e| anyhow::anyhow!("settings: {e}"))?;
    let opts = CompileOptions {
        controller: settings.ingress.controller.clone(),
        watch_without_class: settings.ingress.watch_without_class,
        endpoint_filter,
        error_defaults,
        default_body_limit: settings
            .proxy
            .body_size_limit()
            .map_err(|e| anyhow::anyhow!("settings: {e}"))?,
    };
    let (_, always_ready) = watch::channel(true);
    match (kind, &args.manifests) {
        (SourceKind::Kube, Some(_)) => {
            anyhow::bail!("--manifests only applies to --source files")
        }
        (SourceKind::Kube, None) => {
            let client = kube::Client::try_default()
                .await
                .context("configuring the Kubernetes client (in-cluster or kubeconfig)")?;
            let kube_opts = KubeOptions {
                endpoints: args.watch_endpoints,
                ..KubeOptions::default()
            };
            let driver = start_kube(client.clone(), opts, kube_opts)?;
            tracing::info!("watching the Kubernetes API for ingress configuration");
            Ok(ConfigSource {
                handle: driver.handle(),
                generations: Some(driver.subscribe()),
                ready: driver.ready(),
                client: Some(client),
                audit_from: AuditFrom::Watched(driver.held()),
                driver: Driver::Kube(driver),
            })
        }
        (SourceKind::Files, Some(dir)) => {
            let driver = start_files(dir.clone(), opts)
                .with_context(|| format!("loading manifests from {}", dir.display()))?;
            Ok(ConfigSource {
                handle: driver.handle(),
                generations: Some(driver.subscribe()),
                ready: always_ready,
                client: None,
                audit_from: AuditFrom::Manifests {
                    dir: dir.clone(),
                    changed_scans: driver.changed_scans(),
                },
                driver: Driver::Files(driver),
            })
        }
        (SourceKind::Files, None) => {
            tracing::warn!(
                "no --manifests and not in a cluster: the gateway serves an empty route table \
                 (every request gets 404); pass --manifests DIR or --source kube"
            );
            Ok(ConfigSource {
                handle: ConfigHandle::new(compile(&ObjectStore::new(), &opts, None)),
                generations: None,
                ready: always_ready,
                client: None,
                audit_from: AuditFrom::Nothing,
                driver: Driver::None,
            })
        }
    }
}

/// Watches of the kinds the cross-object rules that are on read (none: no watches), as
/// the view the webhook judges against.
fn cluster_view(
    engine: &portcullis::admission::Engine,
    client: kube::Client,
) -> Option<portcullis::admission::cluster::ClusterViewHandle> {
    use portcullis::source::cluster_watch;
    let kinds: Vec<cluster_watch::KindRef> = engine
        .rules()
        .iter()
        .filter(|r| engine.action(r.as_ref()) != portcullis::admission::Action::Off)
        .flat_map(|r| cluster_watch::kinds_for(r.id()).iter().copied())
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let handle = portcullis::admission::cluster::ClusterViewHandle::default();
    let publisher = handle.clone();
    cluster_watch::start(client, &kinds, move |objects| publisher.publish(objects));
    tracing::info!(
        kinds = kinds.len(),
        "watching the objects cross-object rules read"
    );
    Some(handle)
}

/// Starts the dashboard's background audit when it is on and there is something to
/// audit; the cell it publishes into, for the dashboard.
fn start_audit(
    settings: &portcullis::config::DashboardSettings,
    engine: &Arc<portcullis::admission::Engine>,
    source: &ConfigSource,
    cluster: Option<portcullis::admission::cluster::ClusterViewHandle>,
) -> Option<portcullis::dashboard::audit::AuditCell> {
    use portcullis::dashboard::audit_inputs::{AuditSource, ManifestsDir, Watched};
    if !settings.audit {
        tracing::info!("dashboard audit is off (dashboard.audit: false)");
        return None;
    }
    let from: Arc<dyn AuditSource> = match &source.audit_from {
        AuditFrom::Manifests { dir, changed_scans } => Arc::new(ManifestsDir {
            dir: dir.clone(),
            changed_scans: changed_scans.clone(),
        }),
        AuditFrom::Watched(held) => Arc::new(Watched {
            config: source.handle.clone(),
            held: held.clone(),
            cluster,
        }),
        AuditFrom::Nothing => return None,
    };
    let cell = portcullis::dashboard::audit::AuditCell::default();
    portcullis::dashboard::audit_task::Auditor {
        engine: engine.clone(),
        source: from,
        min_interval: settings.audit_min_interval(),
        max_findings: settings.audit_max_findings,
        cell: cell.clone(),
    }
    .spawn(source.ready.clone());
    Some(cell)
}

/// The resolver for the ingress HTTPS listener: Ingress certificates by SNI over a
/// default certificate (configured, else generated like ingress-nginx's fake one).
fn ingress_resolver(args: &ServeArgs) -> anyhow::Result<(Arc<SniResolver>, Option<CertReloader>)> {
    match (&args.default_cert, &args.default_key) {
        (Some(c), Some(k)) => {
            let (reloader, resolver) = CertReloader::with_new_resolver(c.clone(), k.clone())
                .with_context(|| format!("loading default certificate {}", c.display()))?;
            Ok((resolver, Some(reloader)))
        }
        _ => {
            let certs = DevCerts::generate_for_names(&["portcullis-default.invalid".to_string()])?;
            Ok((Arc::new(SniResolver::new(certs.certified_key()?)), None))
        }
    }
}

/// Keeps the SNI map, the endpoint gauges and the per-route series in step with every
/// new snapshot.
fn follow_snapshots(
    handle: ConfigHandle,
    generations: Option<watch::Receiver<u64>>,
    resolver: Arc<SniResolver>,
) {
    let apply = {
        let mut known: std::collections::HashSet<String> = std::collections::HashSet::new();
        // Only the handles of the previous routes, not the whole snapshot, stay alive.
        let mut routes: Vec<Arc<portcullis::ingress::model::route_metrics::RouteMetrics>> =
            Vec::new();
        move |handle: &ConfigHandle| {
            let snap = handle.load_full();
            resolver.set_map(snap.certs.clone());
            let mut now = std::collections::HashSet::new();
            for (_, route) in snap.router.entries() {
                if now.insert(route.backend.name.to_string()) {
                    portcullis::ingress::model::ingress_metrics::set_backend_gauges(&route.backend);
                }
            }
            for gone in known.difference(&now) {
                portcullis::ingress::model::ingress_metrics::remove_backend_gauges(gone);
            }
            known = now;
            let current: Vec<_> = snap
                .router
                .entries()
                .map(|(_, r)| r.metrics.clone())
                .collect();
            portcullis::ingress::model::route_metrics::retire(&routes, &current);
            routes = current;
        }
    };
    let mut apply = apply;
    apply(&handle);
    if let Some(mut generations) = generations {
        tokio::spawn(async move {
            while generations.changed().await.is_ok() {
                apply(&handle);
            }
        });
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener to {addr}"))
}

/// The settings file, laid over an ingress-nginx ConfigMap when one is given.
fn load_settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let Some(cm) = &args.nginx_configmap else {
        return Ok(match &args.config {
            Some(p) => Settings::load(p)?,
            None => Settings::default(),
        });
    };
    let data = super::migrate::configmap_file(cm)?;
    let translation = portcullis::ingress::build::nginx_configmap::translate(&data);
    for key in &translation.keys {
        if key.status.changes_behaviour() {
            tracing::warn!(
                key = %key.key,
                status = key.status.label(),
                "ingress-nginx ConfigMap key not applied (portcullis migrate explains)"
            );
        }
    }
    let (name, text) = match &args.config {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => (cm.display().to_string(), String::new()),
    };
    Ok(Settings::parse_over(&name, &text, translation.settings)?)
}

async fn run_async(args: ServeArgs) -> anyhow::Result<()> {
    let mut settings = load_settings(&args)?;
    if let Some(s) = args.drain_delay {
        settings.shutdown.drain_delay_seconds = s;
    }
    if let Some(s) = args.grace_period {
        settings.shutdown.grace_period_seconds = s;
    }
    let (engine, notes) = portcullis::admission::polaris::engine(
        settings.admission.clone(),
        args.polaris_config.as_deref(),
    )?;
    for note in notes {
        tracing::warn!("{note}");
    }
    let engine = Arc::new(engine);
    let (_reloader, webhook_tls) = webhook_tls(&args, settings.listeners.tls_resumption())?;
    let source = config_source(&args, &settings).await?;
    let config = source.handle.clone();
    let (resolver, _default_reloader) = ingress_resolver(&args)?;
    follow_snapshots(config.clone(), source.generations.clone(), resolver.clone());
    let status = super::status::start_status(
        &args.status,
        source.client.clone(),
        &config,
        source.generations.clone(),
        source.ready.clone(),
    )?;
    let cluster = source
        .client
        .clone()
        .and_then(|client| cluster_view(&engine, client));
    let audit = start_audit(&settings.dashboard, &engine, &source, cluster.clone());
    let mut trusted = Vec::new();
    for cidr in &settings.ingress.trusted_cidrs {
        trusted.push(parse_cidr(cidr)?);
    }
    let edge = super::edge::Edge::from_settings(&settings.edge, &mut trusted)?;
    if settings.ingress.access_log
        && let Err(e) = portcullis::ingress::request::log_writer::stdout()
    {
        tracing::warn!(error = %e, "no access-log thread: the access log is off");
    }
    let mut proxy = ProxyConfig {
        trusted_proxies: trusted,
        access_log: settings.ingress.access_log,
        client_body_timeout: settings.listeners.client_body_timeout(),
        https_redirect_port: args.https_redirect_port,
        edge_headers: edge.headers.clone(),
        full_forwarded_for: edge.full_forwarded_for,
        ..Default::default()
    };
    settings.proxy.apply(&mut proxy);
    let gateway = Arc::new(Gateway::new(config.shared(), proxy));
    let tunnels = gateway.proxy().tunnels().clone();

    // The admin listener has its own shutdown, stopped last, so probes keep answering
    // (503 on /readyz) while the others drain.
    let shutdown = Shutdown::new();
    let admin_shutdown = Shutdown::new();
    let ready = Arc::new(AtomicBool::new(false));
    if args.admin_token.as_deref() == Some("") {
        tracing::warn!("the admin token is empty: the admin listener's data stay unprotected");
    }
    let admin_state = AdminState {
        ready: ready.clone(),
        shutdown: shutdown.clone(),
        problems: {
            let config = config.clone();
            Arc::new(move || serde_json::to_value(&config.load().problems).unwrap_or_default())
        },
        dashboard: Some(Arc::new(match audit {
            Some(cell) => Dashboard::new(gateway.clone()).with_audit(cell),
            None => Dashboard::new(gateway.clone()),
        })),
        access: Access {
            // An empty value (a variable set but blank) means no token, not "any token".
            token: args.admin_token.clone().filter(|t| !t.is_empty()),
            loopback_only: args.admin_loopback_only,
        },
    };

    let nofile = fd_limit::raise_nofile();
    let max_connections = match settings.listeners.max_connections {
        0 => nofile.map_or(10_000, fd_limit::connection_budget),
        n => n,
    };
    tracing::info!(
        nofile = ?nofile,
        max_connections,
        per_client = settings.listeners.max_connections_per_client,
        "connection limits"
    );
    // One budget for the webhook and ingress listeners, so together they cannot take the
    // descriptors the admin listener needs.
    let limits = ConnLimits::new(
        max_connections,
        settings.listeners.max_connections_per_client,
    );
    let opts = |name: &'static str| {
        let mut o = settings.listeners.serve_options(name, limits.clone());
        o.drain_delay = settings.shutdown.drain_delay();
        o.grace = settings.shutdown.grace();
        o
    };
    let ingress_opts = |name: &'static str| {
        let mut o = opts(name);
        o.edge = edge.listener_options(
            name,
            &gateway,
            &resolver,
            settings.listeners.tls_resumption(),
        );
        o
    };
    let admin_limits = ConnLimits::new(settings.listeners.admin_max_connections, 0);
    super::memory_trim::spawn(vec![limits.clone(), admin_limits.clone()]);
    let admin_opts = settings.listeners.serve_options("admin", admin_limits);
    let webhook = tokio::spawn(serve(
        bind(args.webhook_addr, "webhook").await?,
        Some(webhook_tls),
        portcullis::admission::http::handler_with(
            engine,
            Some(config.clone()),
            cluster,
            settings
                .listeners
                .client_body_timeout()
                .min(Duration::from_secs(30)),
        ),
        shutdown.clone(),
        opts("webhook"),
    ));
    // The data plane runs on worker threads of its own (see `workers`).
    let worker_count = super::workers::count(settings.listeners.workers);
    let mut http = super::workers::start(
        "http",
        super::workers::bind(args.http_addr, worker_count, "ingress HTTP")?,
        None,
        gateway_handler(gateway.clone(), Scheme::Http),
        shutdown.clone(),
        || ingress_opts("http"),
    )?;
    let mut https = super::workers::start(
        "https",
        super::workers::bind(args.https_addr, worker_count, "ingress HTTPS")?,
        Some(edge.https_config(resolver.clone(), settings.listeners.tls_resumption())?),
        gateway_handler(gateway.clone(), Scheme::Https),
        shutdown.clone(),
        || ingress_opts("https"),
    )?;
    tracing::info!(
        workers = worker_count,
        "ingress listeners on worker threads"
    );
    let admin = tokio::spawn(serve(
        bind(args.admin_addr, "admin").await?,
        None,
        admin::handler(admin_state),
        admin_shutdown.clone(),
        admin_opts,
    ));
    set_ready_when_complete(source.ready.clone(), ready);

    wait_for_signal().await;
    tracing::info!(
        drain_delay = ?settings.shutdown.drain_delay(),
        grace = ?settings.shutdown.grace(),
        "shutting down: /readyz now answers 503"
    );
    shutdown.trigger();
    // The listeners stop accepting after the drain delay and give requests the grace
    // period from then; upgraded connections get the same end.
    let tunnels_deadline =
        tokio::time::Instant::now() + settings.shutdown.drain_delay() + settings.shutdown.grace();
    if let Some(status) = status {
        // Hand the Lease over now rather than let it expire while we drain.
        status.shutdown().await;
    }
    match webhook.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(listener = "webhook", error = %e, "listener ended with an error")
        }
        Err(e) => tracing::warn!(listener = "webhook", error = %e, "listener task failed"),
    }
    for (name, workers) in [("http", &mut http), ("https", &mut https)] {
        if let Err(e) = workers.join().await {
            tracing::warn!(listener = name, error = %e, "listener ended with an error");
        }
    }
    let open = tunnels.open();
    if open > 0 {
        tracing::info!(open, "waiting for upgraded connections (WebSocket)");
    }
    let cut = tunnels.drain(tunnels_deadline).await;
    if cut > 0 {
        tracing::warn!(cut, "grace period over; closed upgraded connections");
    }
    http.release();
    https.release();
    admin_shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
    drop(source.driver);
    tracing::info!("stopped");
    Ok(())
}

/// Turns `/readyz` to 200 once the listeners are up (they are when this is called) and the
/// configuration is complete, so a new replica never takes traffic with a partial table.
fn set_ready_when_complete(mut complete: watch::Receiver<bool>, ready: Arc<AtomicBool>) {
    tokio::spawn(async move {
        if complete.wait_for(|c| *c).await.is_ok() {
            ready.store(true, Ordering::SeqCst);
            tracing::info!("portcullis is ready");
        }
    });
}

/// A CIDR or a single address (`10.0.0.1` means `/32`).
fn parse_cidr(s: &str) -> anyhow::Result<ipnet::IpNet> {
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        return Ok(net);
    }
    let ip: std::net::IpAddr = s
        .parse()
        .with_context(|| format!("trustedCidrs: {s:?} is not a CIDR or an IP address"))?;
    Ok(ipnet::IpNet::from(ip))
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
