//! HTTP/2 connections to pods (h2c and gRPC over TLS): one multiplexed connection per
//! endpoint, created on first use and shared by all requests to it.
//!
//! Why not hyper-util's pooled client, as for HTTP/1.1: its pool is keyed by the request
//! URI's authority, so the URI must name the pod, and HTTP/2 sends that authority as
//! `:authority`. A pod would then see its own IP instead of the host the client asked
//! for, and a `Host` header that disagrees with `:authority` (RFC 9113 §8.3.1 lets
//! servers reject that). Here the connection is chosen by endpoint and the request
//! keeps the client's host as `:authority`, as ingress-nginx's `grpc_pass` does.
//!
//! Failure behaviour: a closed connection is replaced on the next request; a request
//! the connection refused before sending is retried once on a fresh connection; idle
//! connections close after `idle_timeout` without streams.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Service;

use crate::ingress::request::cow_map::CowMap;
use crate::ingress::request::health::monotonic_us;
use crate::ingress::request::upstream::{
    ConnectKind, Connector, UpstreamBody, UpstreamError, UpstreamSettings, Wire,
};

/// One live HTTP/2 connection.
struct H2Conn {
    sender: SendRequest<UpstreamBody>,
    /// Streams whose response is still being read.
    active: AtomicUsize,
    last_used_us: AtomicU64,
    /// Set by the idle reaper just before it closes the connection.
    retired: AtomicBool,
}

impl H2Conn {
    fn usable(&self) -> bool {
        !self.retired.load(Ordering::Relaxed) && !self.sender.is_closed()
    }
}

/// Keeps a connection's stream count up while a response streams; the idle reaper does
/// not close connections with streams.
pub struct H2Lease(Arc<H2Conn>);

impl Drop for H2Lease {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.last_used_us.store(monotonic_us(), Ordering::Relaxed);
    }
}

impl std::fmt::Debug for H2Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H2Lease")
    }
}

/// What a connection setup ends with, in a form every waiter can have a copy of.
type Setup = Result<Arc<H2Conn>, SetupError>;

#[derive(Debug, Clone)]
enum SetupError {
    Connect(ConnectKind, String),
    Handshake(String),
}

impl From<SetupError> for UpstreamError {
    fn from(e: SetupError) -> Self {
        match e {
            SetupError::Connect(kind, message) => UpstreamError::Connect { kind, message },
            SetupError::Handshake(m) => UpstreamError::Failed(m.into()),
        }
    }
}

#[derive(Default)]
struct Entry {
    current: ArcSwapOption<H2Conn>,
    /// The setup in progress, if any. A burst opens one connection, not one per request,
    /// and the requests that arrive meanwhile await the same setup (and share its failure)
    /// instead of queueing behind a lock held across the connect.
    pending: std::sync::Mutex<Option<Shared<BoxFuture<'static, Setup>>>>,
}

/// HTTP/2 connections by (wire, endpoint authority).
pub struct H2Pool {
    settings: UpstreamSettings,
    entries: CowMap<(Wire, String), Entry>,
    last_sweep_us: AtomicU64,
}

/// Entries without a live connection are dropped this often, so endpoints that went away
/// (pods rescheduled, scaled down) do not stay in the map for ever.
const SWEEP_EVERY_US: u64 = 60_000_000;

impl std::fmt::Debug for H2Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Pool")
            .field("endpoints", &self.entries.len())
            .finish()
    }
}

impl H2Pool {
    pub fn new(settings: UpstreamSettings) -> Self {
        Self {
            settings,
            entries: CowMap::new(),
            last_sweep_us: AtomicU64::new(monotonic_us()),
        }
    }

    /// Sends `req` (whose URI carries the client's host) to the pod at `target`.
    pub async fn send(
        &self,
        connector: &Connector,
        wire: Wire,
        target: &str,
        req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, H2Lease), UpstreamError> {
        self.maybe_sweep();
        let entry = self
            .entries
            .get_or_insert_with(&(wire, target.to_string()), Entry::default);
        let mut req = req;
        // A connection that closes between our check and the send hands the request
        // back untouched: one more try on a fresh connection is always safe.
        for _ in 0..2 {
            let conn = self.connection(&entry, connector, wire, target).await?;
            conn.active.fetch_add(1, Ordering::Relaxed);
            conn.last_used_us.store(monotonic_us(), Ordering::Relaxed);
            let lease = H2Lease(conn.clone());
            let mut sender = conn.sender.clone();
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, lease)),
                Err(mut e) => match e.take_message() {
                    Some(back) => {
                        conn.retired.store(true, Ordering::Relaxed);
                        req = back;
                    }
                    None => return Err(UpstreamError::Failed(Box::new(e.into_error()))),
                },
            }
        }
        Err(UpstreamError::Failed(
            "HTTP/2 connection closed before the request was sent".into(),
        ))
    }

    /// Forgets endpoints with no usable connection and no setup in progress.
    fn maybe_sweep(&self) {
        let now = monotonic_us();
        let last = self.last_sweep_us.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY_US
            || self
                .last_sweep_us
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.entries.retain(|_, e| {
            let setting_up = e.pending.lock().map_or(true, |p| p.is_some());
            setting_up || e.current.load().as_ref().is_some_and(|c| c.usable())
        });
    }

    async fn connection(
        &self,
        entry: &Arc<Entry>,
        connector: &Connector,
        wire: Wire,
        target: &str,
    ) -> Result<Arc<H2Conn>, UpstreamError> {
        if let Some(c) = entry.current.load_full().filter(|c| c.usable()) {
            return Ok(c);
        }
        // The lock is held only to look at or replace the pending setup, never across it.
        let setup = {
            let mut pending = entry.pending.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = entry.current.load_full().filter(|c| c.usable()) {
                return Ok(c);
            }
            match pending.as_ref() {
                Some(p) => p.clone(),
                None => {
                    let p = setup(
                        entry.clone(),
                        connector.clone(),
                        wire,
                        target.to_string(),
                        self.settings.clone(),
                    )
                    .boxed()
                    .shared();
                    *pending = Some(p.clone());
                    p
                }
            }
        };
        let result = setup.clone().await;
        // Whoever sees it finish first clears it, so the next miss starts a fresh setup.
        let mut pending = entry.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.as_ref().is_some_and(|p| Shared::ptr_eq(p, &setup)) {
            *pending = None;
        }
        drop(pending);
        result.map_err(UpstreamError::from)
    }
}

/// Connects, handshakes, starts the connection's driver and publishes it in `entry`.
async fn setup(
    entry: Arc<Entry>,
    connector: Connector,
    wire: Wire,
    target: String,
    settings: UpstreamSettings,
) -> Setup {
    let uri: Uri = format!("{}://{target}/", wire.scheme())
        .parse()
        .map_err(|e: http::uri::InvalidUri| SetupError::Handshake(e.to_string()))?;
    let io = connector
        .clone()
        .call(uri)
        .await
        .map_err(|e| SetupError::Connect(e.kind(), e.to_string()))?;
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.h2_keep_alive_interval)
        .keep_alive_timeout(settings.h2_keep_alive_timeout);
    let (sender, conn) = builder
        .handshake(io)
        .await
        .map_err(|e| SetupError::Handshake(e.to_string()))?;
    let h2 = Arc::new(H2Conn {
        sender,
        active: AtomicUsize::new(0),
        last_used_us: AtomicU64::new(monotonic_us()),
        retired: AtomicBool::new(false),
    });
    tokio::spawn(drive(
        conn,
        Arc::downgrade(&h2),
        settings.h2_idle_timeout,
        target,
    ));
    entry.current.store(Some(h2.clone()));
    Ok(h2)
}

/// Runs the connection until it fails, is idle too long, or nobody can use it anymore.
async fn drive<C>(conn: C, handle: std::sync::Weak<H2Conn>, idle: Duration, target: String)
where
    C: std::future::Future<Output = hyper::Result<()>>,
{
    tokio::pin!(conn);
    let mut tick = tokio::time::interval((idle / 2).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let idle_us = u64::try_from(idle.as_micros()).unwrap_or(u64::MAX);
    loop {
        tokio::select! {
            res = &mut conn => {
                if let Err(e) = res {
                    tracing::debug!(%target, error = %e, "HTTP/2 upstream connection failed");
                }
                return;
            }
            _ = tick.tick() => {
                let Some(c) = handle.upgrade() else { return };
                let quiet = monotonic_us().saturating_sub(c.last_used_us.load(Ordering::Relaxed));
                if c.active.load(Ordering::Relaxed) == 0 && quiet > idle_us {
                    c.retired.store(true, Ordering::Relaxed);
                    tracing::debug!(%target, "closing idle HTTP/2 upstream connection");
                    // Dropping the connection future closes the socket.
                    return;
                }
            }
        }
    }
}
