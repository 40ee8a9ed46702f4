//! Listeners: accept, optional TLS, HTTP/1.1 + HTTP/2 serving, graceful shutdown.
//!
//! Failure behaviour: after start nothing here ends a listener except shutdown. Accept
//! errors back off and retry; a failed handshake or broken connection ends only itself.
//!
//! CONTRACT used by every handler (admission, admin, ingress proxy): a `Handler` gets the
//! request and what is known about its connection, and returns a response. It never fails:
//! errors are turned into responses by the handler itself.
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as AutoBuilder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::body::Body;
use crate::metrics;

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
pub type Handler = Arc<dyn Fn(Request<Incoming>, Arc<ConnInfo>) -> ResponseFuture + Send + Sync>;

/// A shutdown signal shared by every listener and the readiness probe. Cloning is cheap;
/// all clones see the same state.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Starts draining. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether `trigger` was called.
    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
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

/// How one listener behaves.
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
    /// Longest a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Longest an HTTP/1 client may take to send request headers.
    pub header_read_timeout: Duration,
}

impl ServeOptions {
    /// Defaults for a listener called `name`: no drain delay, 20 s grace, 10 s for
    /// handshakes and for request headers.
    pub fn new(name: &'static str) -> Self {
        ServeOptions {
            name,
            drain_delay: Duration::ZERO,
            grace: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self::new("server")
    }
}

/// Serves `listener` until `shutdown` fires, then drains: keeps accepting for
/// `drain_delay`, stops accepting, asks every connection to finish (HTTP/1 closes after
/// the in-flight response, HTTP/2 sends GOAWAY), waits up to `grace`, and returns.
///
/// With `tls` the listener is HTTPS (ALPN decides nothing: HTTP/1.1 and h2 are both
/// served on any connection, told apart by the h2 preface). Upgrades (WebSocket) work.
///
/// Never fails after start: accept errors (EMFILE, ECONNABORTED, ...) are logged and
/// retried; connection and handshake errors only end that connection.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
    shutdown: Shutdown,
    opts: ServeOptions,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let metrics = ListenerMetrics::new(opts.name);
    let acceptor = tls.map(TlsAcceptor::from);
    let builder = Arc::new(http_builder(&opts));
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    // Flips when accepting stops; connections that have not yet sent a byte give up then.
    let (stopped_tx, stopped) = watch::channel(false);
    tracing::info!(listener = opts.name, addr = %local, tls = acceptor.is_some(), "listening");

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
                    // Usually out of file descriptors: back off instead of spinning, and
                    // keep serving the connections already open.
                    tracing::warn!(listener = opts.name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        metrics.accepted.inc();
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            stream,
            remote,
            local,
            acceptor: acceptor.clone(),
            handler: handler.clone(),
            builder: builder.clone(),
            metrics: metrics.clone(),
            name: opts.name,
            handshake_timeout: opts.handshake_timeout,
            stopped: stopped.clone(),
        };
        // The watcher is taken here, not in the task, so a connection still in its TLS
        // handshake when shutdown starts is drained like the others.
        let watcher = graceful.watcher();
        tasks.spawn(conn.run(watcher));
    }
    drop(listener);
    stopped_tx.send_replace(true);

    tracing::info!(
        listener = opts.name,
        connections = tasks.len(),
        "stopped accepting; waiting for in-flight requests"
    );
    if tokio::time::timeout(opts.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = opts.name,
            grace = ?opts.grace,
            connections = tasks.len(),
            "grace period over; closing remaining connections"
        );
    }
    // Whatever is left is cut off, so no connection outlives `serve`. (Upgraded
    // connections already left hyper; the ingress proxy drains them in `ingress::tunnels`.)
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    tracing::info!(listener = opts.name, "stopped");
    Ok(())
}

const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type HttpBuilder = AutoBuilder<TokioExecutor>;

fn http_builder(opts: &ServeOptions) -> HttpBuilder {
    let mut builder = AutoBuilder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// One accepted connection, moved into its own task.
struct Conn {
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    handler: Handler,
    builder: Arc<HttpBuilder>,
    metrics: ListenerMetrics,
    name: &'static str,
    handshake_timeout: Duration,
    /// True once the listener stopped accepting.
    stopped: watch::Receiver<bool>,
}

impl Conn {
    async fn run(self, watcher: Watcher) {
        let _open = self.metrics.open_guard();
        let Some(acceptor) = self.acceptor.clone() else {
            let info = ConnInfo {
                remote: self.remote,
                local: self.local,
                tls: false,
                sni: None,
            };
            let io = TokioIo::new(self.stream);
            serve_http(io, info, self.handler, &self.builder, watcher, self.name).await;
            return;
        };
        self.metrics.handshakes.inc();
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        // A client that has not started its handshake when accepting stops is idle, like a
        // keep-alive connection between requests: close it rather than hold the shutdown
        // until the handshake timeout. One that has started is drained like the others.
        let mut stopped = self.stopped.clone();
        let mut first = [0u8; 1];
        let started = tokio::select! {
            biased;
            peeked = tokio::time::timeout_at(deadline, self.stream.peek(&mut first)) => {
                matches!(peeked, Ok(Ok(n)) if n > 0)
            }
            _ = stopped.wait_for(|s| *s) => false,
        };
        if !started {
            self.metrics.handshake_failures.inc();
            tracing::debug!(listener = self.name, remote = %self.remote, "no TLS handshake started");
            return;
        }
        let stream = match tokio::time::timeout_at(deadline, acceptor.accept(self.stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                self.metrics.handshake_failures.inc();
                // Scanners and clients that distrust the certificate do this all day:
                // not worth a warning each.
                tracing::debug!(listener = self.name, remote = %self.remote, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                self.metrics.handshake_failures.inc();
                tracing::debug!(listener = self.name, remote = %self.remote, "TLS handshake timed out");
                return;
            }
        };
        let sni = stream
            .get_ref()
            .1
            .server_name()
            .map(str::to_ascii_lowercase);
        let info = ConnInfo {
            remote: self.remote,
            local: self.local,
            tls: true,
            sni,
        };
        let io = TokioIo::new(stream);
        serve_http(io, info, self.handler, &self.builder, watcher, self.name).await;
    }
}

async fn serve_http<I>(
    io: TokioIo<I>,
    info: ConnInfo,
    handler: Handler,
    builder: &HttpBuilder,
    watcher: Watcher,
    name: &'static str,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let remote = info.remote;
    let service = service_fn(move |req| {
        let response = handler(req, info.clone());
        async move { Ok::<_, Infallible>(response.await) }
    });
    let conn = builder.serve_connection_with_upgrades(io, service);
    if let Err(e) = watcher.watch(conn).await {
        // Resets, clients closing mid-request, header timeouts: the connection's own
        // business, nothing the operator can act on.
        tracing::debug!(listener = name, remote = %remote, error = %e, "connection ended with error");
    }
}

/// Per-listener metric children, resolved once per `serve` so the accept path does no
/// label lookups.
#[derive(Clone)]
struct ListenerMetrics {
    accepted: IntCounter,
    open: IntGauge,
    handshakes: IntCounter,
    handshake_failures: IntCounter,
}

impl ListenerMetrics {
    fn new(name: &str) -> Self {
        let f = families();
        ListenerMetrics {
            accepted: f.accepted.with_label_values(&[name]),
            open: f.open.with_label_values(&[name]),
            handshakes: f.handshakes.with_label_values(&[name]),
            handshake_failures: f.handshake_failures.with_label_values(&[name]),
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
