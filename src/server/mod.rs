//! Listeners: accept, optional TLS, HTTP/1.1 + HTTP/2 serving, graceful shutdown.
//!
//! Failure behaviour: after start nothing here ends a listener except shutdown. Accept
//! errors back off and retry; a failed handshake or broken connection ends only itself.
//!
//! CONTRACT used by every handler (admission, admin, ingress proxy): a [`Respond`] gets the
//! request and what is known about its connection, and returns a response. It never fails:
//! errors are turned into responses by the handler itself.
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::body::RequestBody;
use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder as AutoBuilder;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::body::Body;
use crate::metrics;
use crate::sock::Sock;

mod activity;
mod backlog;
pub mod client_hello;
pub(crate) mod date;
pub(crate) mod edge;
pub mod fd_limit;
mod gate;
pub(crate) mod h1;
mod h1_write;
mod h2;
mod http_conn;
mod limits;
pub(crate) mod prefixed;
pub mod proxy_protocol;
pub mod raw;
#[cfg(test)]
mod test_waker;
mod timed_io;

pub use activity::monotonic_ms;
pub use edge::{ConnTag, EdgeOptions, PeerCheck, SniChoice, SniHook};
use http_conn::serve_http;
pub use limits::{ConnLimits, Refusal, Slot};
pub use raw::{RawAnswer, RawRequest};
use timed_io::TimedIo;

/// What the server knows about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// True when the connection is TLS.
    pub tls: bool,
    /// The SNI name the client sent, lower case.
    pub sni: Option<String>,
}

/// A boxed response future.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// A request handler shared by every connection of a listener.
pub type Handler = Arc<dyn Fn(Request<RequestBody>, Arc<ConnInfo>) -> ResponseFuture + Send + Sync>;

/// What answers a listener's requests (the contract above). A [`Handler`] boxes each
/// request's future; a type of its own (the ingress gateway's) lets the connection hold
/// the future in place instead, which saves a large allocation per request.
pub trait Respond: Clone + Send + Sync + 'static {
    fn respond(
        self,
        req: Request<RequestBody>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<Body>> + Send + use<Self>;

    /// The same answer behind a pointer, for protocols that move the future around
    /// (HTTP/2 moves each stream's future into an allocation of its own).
    fn respond_boxed(self, req: Request<RequestBody>, conn: Arc<ConnInfo>) -> ResponseFuture {
        Box::pin(self.respond(req, conn))
    }

    /// Whether `respond_raw` may take requests; the server skips offering them otherwise.
    const RAW: bool = false;

    /// Answers a plain HTTP/1.1 request from the bytes of its head (see `raw.rs`), with the
    /// answer's head written into `out`. `keep_alive`: the client and the connection allow
    /// another request. The default declines, so the request is served by `respond`.
    fn respond_raw<'a>(
        &'a self,
        req: RawRequest<'a>,
        conn: &'a ConnInfo,
        keep_alive: bool,
        out: &'a mut Vec<u8>,
    ) -> impl Future<Output = RawAnswer> + Send + 'a {
        let _ = (req, conn, keep_alive, out);
        std::future::ready(RawAnswer::Declined)
    }
}

impl Respond for Handler {
    fn respond(
        self,
        req: Request<RequestBody>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<Body>> + Send + use<> {
        self(req, conn)
    }

    fn respond_boxed(self, req: Request<RequestBody>, conn: Arc<ConnInfo>) -> ResponseFuture {
        self(req, conn)
    }
}

/// A shutdown signal shared by every listener and the readiness probe. Cloning is cheap;
/// all clones see the same state.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    /// The same state as `tx`, readable per request without touching the channel's lock.
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::Sender::new(false)),
            flag: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts draining. Idempotent.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        self.tx.send_replace(true);
    }

    /// Whether `trigger` was called.
    pub fn is_draining(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Resolves once `trigger` was called (at once if it already was).
    pub async fn draining(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|draining| *draining).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

/// How one listener behaves. The defaults follow nginx's where nginx has one.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Listener name, the `listener` label of its metrics and a field of its logs.
    pub name: &'static str,
    /// How long to keep accepting after shutdown was triggered, so load balancers and
    /// kube-proxy stop sending traffic before the socket closes.
    pub drain_delay: Duration,
    /// How long in-flight requests may take once accepting has stopped; connections
    /// still open after that are dropped.
    pub grace: Duration,
    /// Longest a TLS handshake may take, from accept (waiting for the ClientHello included).
    pub handshake_timeout: Duration,
    /// Longest a new connection may take to deliver its first request head (the TCP
    /// connection's first byte, the protocol sniff and, on TLS, the time after the
    /// handshake included). nginx: `client_header_timeout`.
    pub header_read_timeout: Duration,
    /// An idle connection (no request in flight) that has served a request is closed
    /// after this. nginx: `keepalive_timeout`, 75 s.
    pub keep_alive_timeout: Duration,
    /// A write to the client blocked this long closes the connection. nginx:
    /// `send_timeout`, 60 s.
    pub send_timeout: Duration,
    /// HTTP/2 PING interval and how long to wait for its answer.
    pub h2_keep_alive_interval: Duration,
    pub h2_keep_alive_timeout: Duration,
    /// Largest request head (HTTP/1.1) or header list (HTTP/2) in bytes; larger ones get
    /// 431. nginx: `large_client_header_buffers 4 8k`, so 32 KiB.
    pub max_header_bytes: usize,
    /// Largest single header (name + value) in bytes; larger ones get 431. nginx: 8 KiB.
    pub max_header_line_bytes: usize,
    /// The connection budget this listener draws from (shared between listeners that
    /// should share one).
    pub limits: Arc<ConnLimits>,
    /// PROXY protocol and ClientHello routing before TLS; off by default.
    pub edge: EdgeOptions,
}

impl ServeOptions {
    /// Defaults for a listener called `name`: no drain delay, 20 s grace, 10 s for the
    /// TLS handshake, 20 s to the first request head, 75 s keep-alive, 60 s send
    /// timeout, PING every 30 s, 32 KiB of headers (8 KiB each), no connection limit.
    pub fn new(name: &'static str) -> Self {
        ServeOptions {
            name,
            drain_delay: Duration::ZERO,
            grace: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(20),
            keep_alive_timeout: Duration::from_secs(75),
            send_timeout: Duration::from_secs(60),
            h2_keep_alive_interval: Duration::from_secs(30),
            h2_keep_alive_timeout: Duration::from_secs(20),
            max_header_bytes: 32 * 1024,
            max_header_line_bytes: 8 * 1024,
            limits: ConnLimits::unlimited(),
            edge: EdgeOptions::default(),
        }
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self::new("server")
    }
}

/// Serves `listener` until `shutdown` fires, then drains: keeps accepting for
/// `drain_delay` (HTTP/1.1 responses carry `Connection: close` meanwhile and HTTP/2
/// connections get GOAWAY, so clients move to new connections while those are still
/// accepted), stops accepting, closes idle connections, lets in-flight requests finish
/// within `grace`, and returns.
///
/// With `tls` the listener is HTTPS (ALPN decides nothing: HTTP/1.1 and h2 are both
/// served on any connection, told apart by the h2 preface). Upgrades (WebSocket) work.
///
/// Never fails after start: accept errors (EMFILE, ECONNABORTED, ...) are logged and
/// retried; connection and handshake errors only end that connection.
pub async fn serve<H: Respond>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: H,
    shutdown: Shutdown,
    opts: ServeOptions,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let metrics = ListenerMetrics::new(opts.name);
    let acceptor = tls.map(TlsAcceptor::from);
    let builder = Arc::new(http_builder(&opts));
    let mut tasks = JoinSet::new();
    // Flips when accepting stops: idle connections close, new ones get their head timeout.
    let (stopped_tx, stopped) = watch::channel(false);
    let settings = Arc::new(ConnSettings::from(&opts));
    tracing::info!(listener = opts.name, addr = %local, tls = acceptor.is_some(), "listening");

    let ctx = AcceptCtx {
        local,
        acceptor,
        handler,
        builder,
        metrics: metrics.clone(),
        settings,
        stopped,
        shutdown: shutdown.clone(),
        limits: opts.limits.clone(),
    };
    let stop = async {
        shutdown.draining().await;
        tracing::info!(listener = opts.name, delay = ?opts.drain_delay, "draining");
        tokio::time::sleep(opts.drain_delay).await;
    };
    let mut stop = pin!(stop);
    loop {
        let (stream, remote) = tokio::select! {
            biased;
            () = &mut stop => break,
            // Reap finished connection tasks so the set does not grow without bound.
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    // A handler bug: this connection is lost, the listener carries on.
                    tracing::error!(listener = opts.name, error = %e, "connection task panicked");
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: ask idle connections to make room,
                    // back off instead of spinning, keep serving what is open.
                    if matches!(e.raw_os_error(), Some(23 | 24)) {
                        opts.limits.raise_pressure();
                    }
                    metrics.accept_errors.inc();
                    tracing::warn!(listener = opts.name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        accept(&ctx, &mut tasks, stream, remote);
    }
    // Connections the kernel completed before we stopped are taken and served (they get a
    // moment to deliver their request) rather than reset with the listener.
    for (stream, remote) in backlog::take_backlog(listener) {
        accept(&ctx, &mut tasks, stream, remote);
    }
    stopped_tx.send_replace(true);

    tracing::info!(
        listener = opts.name,
        connections = tasks.len(),
        "stopped accepting; waiting for in-flight requests"
    );
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(opts.grace, drained).await.is_err() {
        tracing::warn!(
            listener = opts.name,
            grace = ?opts.grace,
            connections = tasks.len(),
            "grace period over; closing remaining connections"
        );
    }
    // Whatever is left is cut off, so no connection outlives `serve`. (Upgraded
    // connections already left hyper; the ingress proxy drains them in
    // `ingress::request::tunnels`.)
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    tracing::info!(listener = opts.name, "stopped");
    Ok(())
}

/// What every accepted connection is started with.
struct AcceptCtx<H> {
    local: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    handler: H,
    builder: Arc<HttpBuilder>,
    metrics: ListenerMetrics,
    settings: Arc<ConnSettings>,
    stopped: watch::Receiver<bool>,
    shutdown: Shutdown,
    limits: Arc<ConnLimits>,
}

/// Admits one accepted connection against the limits and starts its task.
fn accept<H: Respond>(
    ctx: &AcceptCtx<H>,
    tasks: &mut JoinSet<()>,
    stream: TcpStream,
    remote: SocketAddr,
) {
    let name = ctx.settings.name;
    ctx.metrics.accepted.inc();
    let slot = match ctx.limits.admit(remote.ip().to_canonical()) {
        Ok(slot) => slot,
        Err(refusal) => {
            // Closing at once (rather than leaving it in the backlog) tells the client
            // now, and frees the descriptor for the idle-connection cleanup.
            ctx.metrics.refused(refusal).inc();
            tracing::debug!(listener = name, remote = %remote, reason = refusal.as_str(), "connection refused");
            drop(stream);
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let conn = Conn {
        stream,
        remote,
        local: ctx.local,
        acceptor: ctx.acceptor.clone(),
        handler: ctx.handler.clone(),
        builder: ctx.builder.clone(),
        metrics: ctx.metrics.clone(),
        settings: ctx.settings.clone(),
        signals: Signals {
            stopped: ctx.stopped.clone(),
            shutdown: ctx.shutdown.clone(),
            pressure: ctx.limits.pressure(),
        },
        _slot: slot,
    };
    tasks.spawn(conn.run());
}

const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type HttpBuilder = AutoBuilder<TokioExecutor>;

fn http_builder(opts: &ServeOptions) -> HttpBuilder {
    let mut builder = AutoBuilder::new(TokioExecutor::new());
    // hyper's own head timer is off: the connection task enforces the head timeout (first
    // request) and the keep-alive idle timeout (a partial head between requests counts as
    // idle) itself, and hyper's timer would cost a clock read and a timer-wheel reset on
    // every request.
    // Responses go out from one flat buffer (hyper copies the body in) rather than as a
    // `writev` of head and body slices: measured faster for small answers (3 rounds of
    // `--tests http`: 51,279 against 47,545 requests per core) and no slower for 16 KiB
    // and 64 KiB bodies (docs/PERFORMANCE.md).
    builder
        .http1()
        .writev(false)
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(opts.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(opts.h2_keep_alive_interval)
        .keep_alive_timeout(opts.h2_keep_alive_timeout)
        .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// The per-connection part of `ServeOptions`, shared by every connection task.
#[derive(Debug)]
struct ConnSettings {
    name: &'static str,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
    send_timeout: Duration,
    max_header_line_bytes: usize,
    /// The largest request head: hyper's read buffer limit, and where `h1` hands over.
    max_head_bytes: usize,
    edge: EdgeOptions,
    /// HTTP/2 over TLS, which `h2` serves.
    h2: h2::H2Settings,
}

impl From<&ServeOptions> for ConnSettings {
    fn from(o: &ServeOptions) -> Self {
        ConnSettings {
            name: o.name,
            handshake_timeout: o.handshake_timeout,
            header_read_timeout: o.header_read_timeout,
            keep_alive_timeout: o.keep_alive_timeout,
            send_timeout: o.send_timeout,
            max_header_line_bytes: o.max_header_line_bytes,
            max_head_bytes: o.max_header_bytes.max(8192),
            edge: o.edge.clone(),
            h2: h2::H2Settings {
                keep_alive_interval: o.h2_keep_alive_interval,
                keep_alive_timeout: o.h2_keep_alive_timeout,
                max_header_list_size: u32::try_from(o.max_header_bytes).unwrap_or(u32::MAX),
            },
        }
    }
}

/// What a connection task listens to besides its own connection.
struct Signals {
    /// True once the listener stopped accepting.
    stopped: watch::Receiver<bool>,
    shutdown: Shutdown,
    /// Changes when the connection budget runs low.
    pressure: watch::Receiver<u64>,
}

/// One accepted connection, moved into its own task.
struct Conn<H> {
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    handler: H,
    builder: Arc<HttpBuilder>,
    metrics: ListenerMetrics,
    settings: Arc<ConnSettings>,
    signals: Signals,
    _slot: Slot,
}

/// What serving a connection needs once its stream is settled.
struct Served<H> {
    local: SocketAddr,
    handler: H,
    builder: Arc<HttpBuilder>,
    metrics: ListenerMetrics,
    settings: Arc<ConnSettings>,
    signals: Signals,
}

/// How a connection is terminated.
struct Termination {
    acceptor: TlsAcceptor,
    deadline: tokio::time::Instant,
    /// Set when the configuration came from an `SniHook`: judges the client's chain.
    check: Option<Arc<dyn PeerCheck>>,
}

impl<H: Respond> Conn<H> {
    async fn run(self) {
        let _open = self.metrics.open_guard();
        let Conn {
            stream,
            remote,
            local,
            acceptor,
            handler,
            builder,
            metrics,
            settings,
            signals,
            _slot,
        } = self;
        let served = Served {
            local,
            handler,
            builder,
            metrics,
            settings,
            signals,
        };
        // The handshake, waiting for its first byte included, has one deadline: a
        // silent connection is cheap to hold only for so long.
        let deadline = tokio::time::Instant::now() + served.settings.handshake_timeout;
        let edge = &served.settings.edge;
        // One check per connection when the pre-TLS steps are configured but have nothing
        // to do (no host routed by server name): the ordinary path below is taken.
        let prelude = edge.proxy_protocol.is_some()
            || (acceptor.is_some() && edge.sni_hook.as_ref().is_some_and(|h| h.active()));
        if prelude {
            served.run_edge(stream, remote, acceptor, deadline).await;
            return;
        }
        let Some(acceptor) = acceptor else {
            served.finish(Sock::new(stream), remote, None).await;
            return;
        };
        served.metrics.handshakes.inc();
        if !served.handshake_started(&stream, deadline).await {
            served.metrics.handshake_failures.inc();
            tracing::debug!(listener = served.settings.name, remote = %remote, "no TLS handshake started");
            return;
        }
        let tls = Termination {
            acceptor,
            deadline,
            check: None,
        };
        served.finish(Sock::new(stream), remote, Some(tls)).await;
    }
}

impl<H: Respond> Served<H> {
    /// A client that has not started its handshake when accepting stops is idle, like a
    /// keep-alive connection between requests: close it rather than hold the shutdown
    /// until the timeout. One that has started is drained like the others. Pressure on
    /// the connection budget closes it too.
    async fn handshake_started(&self, stream: &TcpStream, deadline: tokio::time::Instant) -> bool {
        let mut stopped = self.signals.stopped.clone();
        let mut pressure = self.signals.pressure.clone();
        let mut first = [0u8; 1];
        tokio::select! {
            biased;
            peeked = tokio::time::timeout_at(deadline, stream.peek(&mut first)) => {
                matches!(peeked, Ok(Ok(n)) if n > 0)
            }
            _ = stopped.wait_for(|s| *s) => false,
            _ = pressure.changed() => false,
        }
    }

    /// The listener's pre-TLS steps (`EdgeOptions`), then TLS or HTTP as usual.
    async fn run_edge(
        self,
        stream: TcpStream,
        remote: SocketAddr,
        acceptor: Option<TlsAcceptor>,
        deadline: tokio::time::Instant,
    ) {
        let name = self.settings.name;
        let tls = acceptor.is_some();
        if tls {
            self.metrics.handshakes.inc();
        }
        let prelude = match edge::prelude(stream, remote, &self.settings.edge, tls, deadline, name)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                if tls {
                    self.metrics.handshake_failures.inc();
                }
                tracing::debug!(listener = name, remote = %remote, error = %e, "connection closed before TLS or HTTP");
                return;
            }
        };
        let Some(acceptor) = acceptor else {
            self.finish(prelude.stream, prelude.remote, None).await;
            return;
        };
        let tls = match prelude.choice {
            SniChoice::Default => Termination {
                acceptor,
                deadline,
                check: None,
            },
            SniChoice::Tls { config, check } => Termination {
                acceptor: TlsAcceptor::from(config),
                deadline,
                check: Some(check),
            },
            SniChoice::Splice(splice) => {
                splice(prelude.stream, prelude.remote).await;
                return;
            }
        };
        self.finish(prelude.stream, prelude.remote, Some(tls)).await;
    }

    /// Terminates TLS when asked to, then serves HTTP.
    async fn finish<S>(self, stream: S, remote: SocketAddr, tls: Option<Termination>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let name = self.settings.name;
        let Some(tls) = tls else {
            let info = ConnInfo {
                remote,
                local: self.local,
                tls: false,
                sni: None,
            };
            let io = TimedIo::new(stream, self.settings.send_timeout);
            serve_http(
                io,
                info,
                None,
                false,
                self.handler,
                &self.builder,
                self.signals,
                &self.settings,
            )
            .await;
            return;
        };
        let stream = match tokio::time::timeout_at(tls.deadline, tls.acceptor.accept(stream)).await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                self.metrics.handshake_failures.inc();
                // Scanners and clients that distrust the certificate do this all day:
                // not worth a warning each.
                tracing::debug!(listener = name, remote = %remote, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                self.metrics.handshake_failures.inc();
                tracing::debug!(listener = name, remote = %remote, "TLS handshake timed out");
                return;
            }
        };
        let session = stream.get_ref().1;
        let alpn_h2 = session.alpn_protocol() == Some(b"h2");
        let sni = session.server_name().map(str::to_ascii_lowercase);
        let tag = tls
            .check
            .map(|check| check.check(session.peer_certificates()));
        let info = ConnInfo {
            remote,
            local: self.local,
            tls: true,
            sni,
        };
        let io = TimedIo::new(stream, self.settings.send_timeout);
        serve_http(
            io,
            info,
            tag,
            alpn_h2,
            self.handler,
            &self.builder,
            self.signals,
            &self.settings,
        )
        .await;
    }
}

/// Per-listener metric children, resolved once per `serve` so the accept path does no
/// label lookups.
#[derive(Clone)]
struct ListenerMetrics {
    accepted: IntCounter,
    accept_errors: IntCounter,
    refused_full: IntCounter,
    refused_per_client: IntCounter,
    open: IntGauge,
    handshakes: IntCounter,
    handshake_failures: IntCounter,
}

impl ListenerMetrics {
    fn new(name: &str) -> Self {
        let f = families();
        ListenerMetrics {
            accepted: f.accepted.with_label_values(&[name]),
            accept_errors: f.accept_errors.with_label_values(&[name]),
            refused_full: f.refused.with_label_values(&[name, Refusal::Full.as_str()]),
            refused_per_client: f
                .refused
                .with_label_values(&[name, Refusal::PerClient.as_str()]),
            open: f.open.with_label_values(&[name]),
            handshakes: f.handshakes.with_label_values(&[name]),
            handshake_failures: f.handshake_failures.with_label_values(&[name]),
        }
    }

    fn refused(&self, why: Refusal) -> &IntCounter {
        match why {
            Refusal::Full => &self.refused_full,
            Refusal::PerClient => &self.refused_per_client,
        }
    }

    fn open_guard(&self) -> OpenGuard {
        self.open.inc();
        OpenGuard(self.open.clone())
    }
}

/// Decrements the open-connections gauge however the connection task ends (including
/// being aborted at the end of the grace period).
struct OpenGuard(IntGauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct Families {
    accepted: IntCounterVec,
    accept_errors: IntCounterVec,
    refused: IntCounterVec,
    open: IntGaugeVec,
    handshakes: IntCounterVec,
    handshake_failures: IntCounterVec,
}

fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    // Constant names and labels: creating these cannot fail at run time.
    FAMILIES.get_or_init(|| Families {
        accepted: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "connections_accepted_total",
                    "TCP connections accepted, by listener.",
                ),
                &["listener"],
            )
            .expect("valid metric definition"),
        ),
        accept_errors: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "accept_errors_total",
                    "accept() failures (usually out of file descriptors), by listener.",
                ),
                &["listener"],
            )
            .expect("valid metric definition"),
        ),
        refused: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "connections_refused_total",
                    "Connections closed at accept because a connection limit was reached, by listener and limit.",
                ),
                &["listener", "reason"],
            )
            .expect("valid metric definition"),
        ),
        open: metrics::register(
            IntGaugeVec::new(
                Opts::new(
                    "connections_open",
                    "Connections currently open, by listener.",
                ),
                &["listener"],
            )
            .expect("valid metric definition"),
        ),
        handshakes: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "tls_handshakes_total",
                    "TLS handshakes started, by listener.",
                ),
                &["listener"],
            )
            .expect("valid metric definition"),
        ),
        handshake_failures: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "tls_handshake_failures_total",
                    "TLS handshakes that failed or timed out, by listener.",
                ),
                &["listener"],
            )
            .expect("valid metric definition"),
        ),
    })
}
