//! Connections to pods: for HTTP/1.1, the per-thread keep-alive pool of `upstream_h1`;
//! for HTTP/2, the per-endpoint connections of `upstream_h2`; a TCP connector
//! with its own connect timeout that reports *why* a connect failed, and the request body
//! wrapper that lets a request be retried when its connection failed before any byte of
//! the body was sent.
//!
//! Failure behaviour: connect errors are typed (`ConnectError`) so the proxy can eject
//! the endpoint and retry elsewhere; everything else surfaces as hyper's error.
//! TLS upstreams (HTTPS, GRPCS) go through the same connector; see `upstream_tls`.
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::body::RequestBody;
use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::BoxError;
use crate::ingress::request::health::monotonic_us;
use crate::ingress::request::mirror::{MirrorBody, Tee, TeeSender};
use crate::ingress::request::resolve::{self, ResolveError};
use crate::ingress::request::upstream_h1::{H1Body, H1Pool, RawConn};
use crate::ingress::request::upstream_h2::{H2Lease, H2Pool};
use crate::ingress::request::upstream_tls::{self, UpstreamIo};
use crate::sock::Sock;
use rustls::pki_types::ServerName;

/// Why a TCP connect to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connection refused by {0}")]
    Refused(String),
    #[error("connect to {0} timed out after {1:?}")]
    Timeout(String, Duration),
    #[error("connect to {0} failed: {1}")]
    Io(String, #[source] io::Error),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(String, #[source] io::Error),
    #[error("no TLS client configuration for {0}")]
    NoTlsConfig(String),
    #[error("upstream URI has no host: {0}")]
    NoHost(String),
    /// An ExternalName that resolves to nothing usable (no address, or loopback only).
    #[error("{0}")]
    Resolve(#[source] ResolveError),
}

/// The class of a connect failure, for ejection and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectKind {
    Refused,
    Timeout,
    Unreachable,
    Tls,
    Other,
}

impl ConnectKind {
    /// The address itself looks unusable (refused, silent, unreachable): skip it for a
    /// while. A failed TLS handshake is a configuration problem, not a dead pod.
    pub(crate) fn ejects(self) -> bool {
        matches!(
            self,
            ConnectKind::Refused | ConnectKind::Timeout | ConnectKind::Unreachable
        )
    }

    /// Label value for `ingress_upstream_errors_total`.
    pub fn metric(self) -> &'static str {
        match self {
            ConnectKind::Refused => "refused",
            ConnectKind::Timeout => "connect_timeout",
            ConnectKind::Unreachable => "connect",
            ConnectKind::Tls => "tls",
            ConnectKind::Other => "connect",
        }
    }
}

impl ConnectError {
    pub fn kind(&self) -> ConnectKind {
        match self {
            ConnectError::Refused(_) => ConnectKind::Refused,
            ConnectError::Timeout(..) => ConnectKind::Timeout,
            ConnectError::Io(..) => ConnectKind::Unreachable,
            ConnectError::Tls(..) | ConnectError::NoTlsConfig(_) => ConnectKind::Tls,
            ConnectError::NoHost(_) | ConnectError::Resolve(_) => ConnectKind::Other,
        }
    }
}

/// Why an upstream exchange produced no response.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be made: nothing of the request was sent.
    Connect { kind: ConnectKind, message: String },
    /// The exchange failed on an established connection (the request may have been
    /// partly or wholly sent).
    Failed(BoxError),
}

impl UpstreamError {
    pub(crate) fn from_connect(e: ConnectError) -> Self {
        UpstreamError::Connect {
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    /// Our own body error behind a failure (e.g. the streaming size limit), if any.
    pub(crate) fn body_error(&self) -> Option<&BodyError> {
        let UpstreamError::Failed(e) = self else {
            return None;
        };
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
        while let Some(err) = cur {
            if let Some(be) = err.downcast_ref::<BodyError>() {
                return Some(be);
            }
            cur = err.source();
        }
        None
    }
}

/// Why a request body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("request body is over the limit of {0} bytes")]
    TooLarge(u64),
    #[error("request body was already handed to an earlier attempt")]
    AlreadyClaimed,
    /// The client's body did not decode (e.g. malformed chunked encoding): a 400.
    #[error("malformed request body: {0}")]
    Client(#[source] crate::body::RequestBodyError),
    /// The client paused longer than the body timeout between two reads: a 408.
    #[error("client sent no request body data for {0:?}")]
    ClientTimeout(Duration),
}

/// A TCP (and optionally TLS) connector whose timeout and error kinds the proxy controls.
#[derive(Debug, Clone)]
pub struct Connector {
    timeout: Duration,
    /// TLS wires only; `None` there means the configuration could not be built.
    tls: Option<Arc<rustls::ClientConfig>>,
    wants_tls: bool,
    /// The name to verify the pod's certificate against (and send as SNI when the
    /// configuration enables it) instead of its address (`proxy-ssl-name`).
    name: Option<ServerName<'static>>,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<UpstreamIo>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        let tls = self.tls.clone();
        let wants_tls = self.wants_tls;
        let fixed_name = self.name.clone();
        Box::pin(async move {
            let target = uri
                .authority()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
                .ok_or_else(|| ConnectError::NoHost(uri.to_string()))?;
            let port = uri.port_u16().unwrap_or(if wants_tls { 443 } else { 80 });
            let ip = host.parse::<IpAddr>().ok();
            let connect = async {
                let result = match ip {
                    Some(ip) => TcpStream::connect(SocketAddr::new(ip, port)).await,
                    // ExternalName backends: the only names that reach the connector.
                    None => match resolve::connect(&host, port).await {
                        Ok(s) => Ok(s),
                        Err(ResolveError::Connect(_, e)) => Err(e),
                        Err(e) => return Err(ConnectError::Resolve(e)),
                    },
                };
                result.map_err(|e| match e.kind() {
                    io::ErrorKind::ConnectionRefused => ConnectError::Refused(target.clone()),
                    io::ErrorKind::TimedOut => ConnectError::Timeout(target.clone(), timeout),
                    _ => ConnectError::Io(target.clone(), e),
                })
            };
            let handshake = async {
                let stream = Sock::new(connect.await?);
                // Proxied traffic is latency-bound; Nagle only adds delay to small writes.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "set_nodelay failed");
                }
                if !wants_tls {
                    return Ok(UpstreamIo::Plain(stream));
                }
                let Some(tls) = tls else {
                    return Err(ConnectError::NoTlsConfig(target.clone()));
                };
                let name = match (fixed_name, ip) {
                    (Some(name), _) => name,
                    (None, Some(ip)) => ServerName::IpAddress(ip.into()),
                    (None, None) => ServerName::try_from(host.clone())
                        .map_err(|e| ConnectError::Tls(target.clone(), io::Error::other(e)))?,
                };
                tokio_rustls::TlsConnector::from(tls)
                    .connect(name, stream)
                    .await
                    .map(|s| UpstreamIo::Tls(Box::new(s)))
                    .map_err(|e| ConnectError::Tls(target.clone(), e))
            };
            // The timeout covers the TLS handshake too: a pod that accepts and then says
            // nothing is as unusable as one that never accepts.
            match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok(io)) => Ok(TokioIo::new(io)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ConnectError::Timeout(target, timeout)),
            }
        })
    }
}

/// Wire protocol of a client (its pool is separate per protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    Http1,
    /// HTTP/2 with prior knowledge (h2c, gRPC).
    H2c,
    /// HTTP/1.1 over TLS.
    Https,
    /// HTTP/2 over TLS (ALPN h2), for gRPC.
    Grpcs,
}

impl Wire {
    pub(crate) fn is_tls(self) -> bool {
        matches!(self, Wire::Https | Wire::Grpcs)
    }

    pub(crate) fn is_h2(self) -> bool {
        matches!(self, Wire::H2c | Wire::Grpcs)
    }

    /// URI scheme of requests on this wire (HTTP/2 sends it as `:scheme`).
    pub fn scheme(self) -> &'static str {
        if self.is_tls() { "https" } else { "http" }
    }
}

/// Pool and timing settings for upstream clients.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Idle pooled connections are closed after this; kept below common backend
    /// keep-alives (Node 5 s) so we never reuse a socket the pod is closing.
    pub idle_timeout: Duration,
    /// HTTP/2 PING interval, so a dead pod's connection is noticed.
    pub h2_keep_alive_interval: Duration,
    pub h2_keep_alive_timeout: Duration,
    /// HTTP/2 connections without streams close after this. Longer than for HTTP/1.1:
    /// HTTP/2 announces a server-side close with GOAWAY, so reuse races are not an issue.
    pub h2_idle_timeout: Duration,
    /// Idle HTTP/1.1 connections kept per endpoint and worker thread (ingress-nginx
    /// `upstream-keepalive-connections`); more are closed when their request ends.
    pub max_idle_per_endpoint: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(4),
            h2_keep_alive_interval: Duration::from_secs(20),
            h2_keep_alive_timeout: Duration::from_secs(10),
            h2_idle_timeout: Duration::from_secs(30),
            max_idle_per_endpoint: 320,
        }
    }
}

/// The connection pools towards pods, by wire protocol.
#[derive(Debug)]
pub struct Upstreams {
    /// HTTP/1.1 wires: keep-alive connections per worker thread and endpoint.
    h1: Arc<H1Pool>,
    /// HTTP/2 wires: one multiplexed connection per endpoint.
    h2: H2Pool,
    tls_http1: Option<Arc<rustls::ClientConfig>>,
    tls_h2: Option<Arc<rustls::ClientConfig>>,
    /// See `Connector::name`.
    tls_name: Option<ServerName<'static>>,
}

impl Upstreams {
    pub fn new(settings: UpstreamSettings) -> Self {
        let tls = |alpn: &[&[u8]]| match upstream_tls::client_config(alpn) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "TLS to backends unavailable");
                None
            }
        };
        Self {
            h1: Arc::new(H1Pool::new(
                settings.idle_timeout,
                settings.max_idle_per_endpoint,
            )),
            h2: H2Pool::new(settings),
            tls_http1: tls(&[b"http/1.1"]),
            tls_h2: tls(&[b"h2"]),
            tls_name: None,
        }
    }

    /// Pools of their own whose TLS wires use these configurations (`proxy-ssl-*`), so
    /// their connections are never shared with other routes'.
    pub(crate) fn with_tls(
        settings: UpstreamSettings,
        http1: Arc<rustls::ClientConfig>,
        h2: Arc<rustls::ClientConfig>,
        name: Option<ServerName<'static>>,
    ) -> Self {
        let mut u = Self::new(settings);
        u.tls_http1 = Some(http1);
        u.tls_h2 = Some(h2);
        u.tls_name = name;
        u
    }

    /// Sends `req` to the pod at `target` (`ip:port`, or `name:port` for ExternalName).
    /// For HTTP/1.1 wires the request URI is in origin form (path and query) and the
    /// request carries its Host header; for HTTP/2 wires the URI names the host the
    /// client asked for, which becomes `:authority`.
    pub async fn send(
        &self,
        wire: Wire,
        connect_timeout: Duration,
        target: &Authority,
        req: Request<UpstreamBody>,
    ) -> Result<(Response<ResponseBody>, Lease), UpstreamError> {
        let (parts, body) = req.into_parts();
        let out = Outgoing {
            method: &parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: &parts.headers,
            host: None,
            body,
        };
        self.send_outgoing(wire, connect_timeout, target, out).await
    }

    /// `send` for a request whose head the caller keeps: HTTP/1.1 writes it from the
    /// borrowed headers, so the proxy does not copy its header map per attempt.
    pub async fn send_outgoing(
        &self,
        wire: Wire,
        connect_timeout: Duration,
        target: &Authority,
        out: Outgoing<'_>,
    ) -> Result<(Response<ResponseBody>, Lease), UpstreamError> {
        if wire.is_h2() {
            let req = out.into_request();
            let connector = self.connector(wire, connect_timeout);
            // Boxed: every request's future would otherwise carry the HTTP/2 path's state
            // (kilobytes, copied on each move) whatever its wire.
            let sending = Box::pin(self.h2.send(&connector, wire, target.as_str(), req));
            let (resp, lease) = sending.await?;
            return Ok((resp.map(ResponseBody::H2), Lease::H2(lease)));
        }
        let connector = || self.connector(wire, connect_timeout);
        let resp = self.h1.send(connector, wire, target, out).await?;
        Ok((resp.map(ResponseBody::H1), Lease::InBody))
    }

    /// The plain-HTTP/1.1 pool, for the plain lane.
    pub(crate) fn h1_shared(&self) -> &Arc<H1Pool> {
        &self.h1
    }

    /// A plain-HTTP/1.1 connection to `target` for the plain lane: an idle pooled one,
    /// else a new one within `connect_timeout`.
    pub(crate) async fn plain_conn(
        &self,
        target: &http::uri::Authority,
        connect_timeout: Duration,
    ) -> Result<RawConn, UpstreamError> {
        match self.h1.take_idle(target) {
            Some(conn) => Ok(conn),
            // Boxed: connecting is the rare path, and its state would otherwise sit in
            // every request's future.
            None => {
                Box::pin(
                    self.h1
                        .connect_raw(self.connector(Wire::Http1, connect_timeout), target),
                )
                .await
            }
        }
    }

    /// The HTTP/1.1 pool, for tests that look at connection reuse.
    pub fn h1_pool(&self) -> &H1Pool {
        &self.h1
    }

    fn connector(&self, wire: Wire, connect_timeout: Duration) -> Connector {
        Connector {
            timeout: connect_timeout,
            tls: match wire {
                Wire::Https => self.tls_http1.clone(),
                Wire::Grpcs => self.tls_h2.clone(),
                Wire::Http1 | Wire::H2c => None,
            },
            wants_tls: wire.is_tls(),
            name: self.tls_name.clone(),
        }
    }
}

/// A request to a pod whose method and headers stay with the caller.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub method: &'a http::Method,
    /// Origin form for HTTP/1.1; absolute (naming `:authority`) for HTTP/2.
    pub uri: Uri,
    pub version: http::Version,
    pub headers: &'a http::HeaderMap,
    /// A Host to send when `headers` has none (an HTTP/1.0 client may send none).
    pub host: Option<http::HeaderValue>,
    pub body: UpstreamBody,
}

impl Outgoing<'_> {
    fn into_request(self) -> Request<UpstreamBody> {
        let mut req = Request::new(self.body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        if let Some(host) = self.host {
            req.headers_mut().insert(http::header::HOST, host);
        }
        req
    }
}

/// What keeps an upstream connection busy while its response streams: for HTTP/1.1 the
/// response body holds the connection itself; for HTTP/2 a stream count.
#[derive(Debug)]
pub enum Lease {
    InBody,
    H2(H2Lease),
}

/// A pod's response body: read from our own HTTP/1.1 connection, or from hyper's HTTP/2
/// stream.
#[derive(Debug)]
pub enum ResponseBody {
    H1(H1Body),
    H2(hyper::body::Incoming),
}

impl ResponseBody {
    /// After a 101 on HTTP/1.1: the pod's connection, for the tunnel.
    pub fn into_upgraded(self) -> Option<crate::server::prefixed::Prefixed<UpstreamIo>> {
        match self {
            ResponseBody::H1(b) => b.into_upgraded(),
            ResponseBody::H2(_) => None,
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::H1(b) => Pin::new(b).poll_frame(cx),
            ResponseBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::H1(b) => b.is_end_stream(),
            ResponseBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::H1(b) => b.size_hint(),
            ResponseBody::H2(b) => b.size_hint(),
        }
    }
}

/// The client's request body, shared between attempts. The body stays in the slot until
/// the first attempt's connection polls it, so a connect failure leaves it in place for
/// a retry; once polled, `claimed()` is true and the request must not be retried.
#[derive(Debug)]
pub struct BodySlot {
    body: Mutex<Option<RequestBody>>,
    claimed: AtomicBool,
    bytes: AtomicU64,
    limit: Option<u64>,
    over_limit: AtomicBool,
    /// `monotonic_us()` when the last byte was read from the client; 0 = not yet.
    finished_us: AtomicU64,
    hint: SizeHint,
    /// Longest pause between two reads of the client's body.
    read_timeout: Duration,
    /// `mirror-target` with a body: each frame is offered to the mirror's queue too.
    /// `None` (the usual case) costs one check per frame.
    tee: Option<Mutex<Option<TeeSender>>>,
}

impl BodySlot {
    pub fn new(body: RequestBody, limit: Option<u64>, read_timeout: Duration) -> Arc<Self> {
        Self::build(body, limit, read_timeout, None)
    }

    /// A slot whose frames are also offered to a mirror's queue.
    pub(crate) fn with_tee(
        body: RequestBody,
        limit: Option<u64>,
        read_timeout: Duration,
        tee: TeeSender,
    ) -> Arc<Self> {
        Self::build(body, limit, read_timeout, Some(Mutex::new(Some(tee))))
    }

    fn build(
        body: RequestBody,
        limit: Option<u64>,
        read_timeout: Duration,
        tee: Option<Mutex<Option<TeeSender>>>,
    ) -> Arc<Self> {
        let hint = body.size_hint();
        Arc::new(Self {
            body: Mutex::new(Some(body)),
            claimed: AtomicBool::new(false),
            bytes: AtomicU64::new(0),
            limit,
            over_limit: AtomicBool::new(false),
            finished_us: AtomicU64::new(0),
            hint,
            read_timeout,
            tee,
        })
    }

    /// Offers a frame (or the end, `None`) to the mirror; a full or closed queue loses
    /// the mirror its copy rather than holding up the real request.
    fn offer(&self, data: Option<&Bytes>) {
        let Some(tee) = &self.tee else { return };
        let Ok(mut guard) = tee.lock() else { return };
        let Some(tx) = guard.as_ref() else { return };
        let item = match data {
            Some(b) => Tee::Data(b.clone()),
            None => Tee::End,
        };
        if tx.try_send(item).is_err() || data.is_none() {
            *guard = None;
        }
    }

    /// The client's body failed: the mirror must not take what it got as whole.
    fn cut_tee(&self) {
        if let Some(tee) = &self.tee
            && let Ok(mut guard) = tee.lock()
        {
            *guard = None;
        }
    }

    /// Some attempt started sending the body: no retry past this point.
    pub fn claimed(&self) -> bool {
        self.claimed.load(Ordering::Relaxed)
    }

    /// Body bytes read from the client so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The body ran over `limit` while streaming.
    pub(crate) fn over_limit(&self) -> bool {
        self.over_limit.load(Ordering::Relaxed)
    }

    /// When the whole body had been read from the client (`monotonic_us()`), if it has.
    pub(crate) fn finished_at_us(&self) -> Option<u64> {
        match self.finished_us.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// A body for one attempt.
    pub fn attempt(self: &Arc<Self>) -> UpstreamBody {
        UpstreamBody::Stream {
            slot: self.clone(),
            inner: None,
            stall: None,
        }
    }
}

/// What an upstream request carries: nothing, or the client's body streamed through.
#[derive(Debug)]
pub enum UpstreamBody {
    Empty,
    /// A mirror's copy of the client's body.
    Mirror(MirrorBody),
    Stream {
        slot: Arc<BodySlot>,
        inner: Option<RequestBody>,
        /// The between-reads clock, made the first time the client keeps us waiting.
        stall: Option<Stall>,
    },
}

/// A reusable timer for "nothing arrived since": armed on the first wait after a frame.
#[derive(Debug)]
pub struct Stall {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
}

impl Stall {
    /// Polls the clock for one more wait of at most `limit`; true when it ran out.
    pub fn expired(slot: &mut Option<Stall>, limit: Duration, cx: &mut Context<'_>) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let stall = slot.get_or_insert_with(|| Stall {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            armed: true,
        });
        if !stall.armed {
            stall.armed = true;
            stall.sleep.as_mut().reset(deadline);
        }
        stall.sleep.as_mut().poll(cx).is_ready()
    }

    /// Progress was made: the next wait starts a fresh clock.
    pub fn progress(slot: &mut Option<Stall>) {
        if let Some(s) = slot {
            s.armed = false;
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (slot, inner, stall) = match self.get_mut() {
            UpstreamBody::Empty => return Poll::Ready(None),
            UpstreamBody::Mirror(m) => return Pin::new(m).poll_frame(cx),
            UpstreamBody::Stream { slot, inner, stall } => (slot, inner, stall),
        };
        if inner.is_none() {
            let taken = slot.body.lock().ok().and_then(|mut g| g.take());
            match taken {
                Some(b) => {
                    slot.claimed.store(true, Ordering::Relaxed);
                    *inner = Some(b);
                }
                None => return Poll::Ready(Some(Err(Box::new(BodyError::AlreadyClaimed)))),
            }
        }
        let Some(body) = inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                Stall::progress(stall);
                if let Some(data) = frame.data_ref() {
                    let total = slot.bytes.fetch_add(data.len() as u64, Ordering::Relaxed)
                        + data.len() as u64;
                    if let Some(limit) = slot.limit
                        && total > limit
                    {
                        slot.over_limit.store(true, Ordering::Relaxed);
                        slot.cut_tee();
                        return Poll::Ready(Some(Err(Box::new(BodyError::TooLarge(limit)))));
                    }
                    slot.offer(Some(data));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                slot.cut_tee();
                Poll::Ready(Some(Err(Box::new(BodyError::Client(e)))))
            }
            Poll::Ready(None) => {
                slot.offer(None);
                slot.finished_us
                    .store(monotonic_us().max(1), Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if Stall::expired(stall, slot.read_timeout, cx) {
                    slot.cut_tee();
                    return Poll::Ready(Some(Err(Box::new(BodyError::ClientTimeout(
                        slot.read_timeout,
                    )))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Mirror(m) => m.is_end_stream(),
            UpstreamBody::Stream { inner: Some(b), .. } => b.is_end_stream(),
            UpstreamBody::Stream { slot, .. } => slot.hint.upper() == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Mirror(m) => m.size_hint(),
            UpstreamBody::Stream { inner: Some(b), .. } => b.size_hint(),
            UpstreamBody::Stream { slot, .. } => slot.hint,
        }
    }
}
