//! One connection's HTTP: `h1` serves plain HTTP/1.x requests and hyper everything else
//! (HTTP/2, bodies, upgrades, from the first such request on); this module wraps each
//! request (tags, in-flight tracking, the per-line header limit, `Connection: close` while
//! draining) and enforces the connection's lifetime rules around both.
//!
//! Connections that negotiated HTTP/2 through ALPN are served by `h2` (the h2 crate
//! directly), with the handler's boxed future: each stream's future is moved into an
//! allocation of its own, and the gateway's future is several KiB, so a pointer moves for
//! free where copies would cost more than the allocation. HTTP/1.1 keeps the future in one slot per connection, so
//! there the allocation is the dearer part. Cleartext HTTP/2 (h2c) arrives through the
//! HTTP/1.1 reader and is hyper's.
use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::activity::{Activity, RequestGuard, Tracked, monotonic_ms};
use super::gate::Gate;
use super::h1;
use super::prefixed::Prefixed;
use super::timed_io::TimedIo;
use super::{ConnInfo, ConnSettings, ConnTag, HttpBuilder, Respond, Shutdown, Signals};
use crate::body::{self, Body, BoxError, RequestBody};

/// How long a connection asked to close (idle, pressure) may take to do so before it is
/// dropped: an HTTP/2 client that never answers the GOAWAY must not hold it open.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// When accepting stops, a connection that has not sent a request yet gets this long to
/// deliver one that may already be on its way.
const FRESH_AT_STOP: Duration = Duration::from_millis(500);
/// Under pressure, connections idle at least this long are closed.
const PRESSURE_MIN_IDLE_MS: u64 = 1000;

/// What every request of one connection shares.
#[derive(Clone)]
pub(super) struct PerRequest {
    tag: Option<ConnTag>,
    info: Arc<ConnInfo>,
    activity: Arc<Activity>,
    shutdown: Shutdown,
    max_line: usize,
}

/// A request admitted on a connection: in flight until its response body is done.
struct Admitted {
    guard: RequestGuard,
    h2: bool,
    /// The header line over the limit, if any: answered 431 without the handler.
    oversized: Option<String>,
    shutdown: Shutdown,
    max_line: usize,
}

impl PerRequest {
    /// A plain connection's facts with no tag, for the reader's unit tests.
    #[cfg(test)]
    pub(super) fn for_tests() -> PerRequest {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], 1).into();
        PerRequest {
            tag: None,
            info: Arc::new(ConnInfo {
                remote: addr,
                local: addr,
                tls: false,
                sni: None,
            }),
            activity: Activity::new(),
            shutdown: super::Shutdown::new(),
            max_line: 8 * 1024,
        }
    }

    /// The connection's facts, for handlers' raw lanes.
    pub(super) fn info(&self) -> &ConnInfo {
        &self.info
    }

    pub(super) fn max_line(&self) -> usize {
        self.max_line
    }

    /// The connection carries a tag (a client certificate) that only `Request`
    /// extensions can hand on.
    pub(super) fn has_tag(&self) -> bool {
        self.tag.is_some()
    }

    /// Draining: HTTP/1.1 answers say `Connection: close`.
    pub(super) fn draining(&self) -> bool {
        self.shutdown.is_draining()
    }

    /// A request served by a raw lane, in flight until its answer is written.
    pub(super) fn raw_guard(&self) -> RequestGuard {
        self.activity.start(false)
    }

    fn admit(&self, req: &mut Request<RequestBody>) -> Admitted {
        if let Some(tag) = &self.tag {
            req.extensions_mut().insert(tag.clone());
        }
        let h2 = req.version() == Version::HTTP_2;
        Admitted {
            guard: self.activity.start(h2),
            h2,
            oversized: oversized_header(req, self.max_line),
            shutdown: self.shutdown.clone(),
            max_line: self.max_line,
        }
    }

    /// One request's answer: the handler's (through `respond`, which is `H::respond`, or
    /// `H::respond_boxed` where the future is moved whole), or 431 for a header line over
    /// the limit, tied to the request's time in flight. The handler's future is made inside
    /// the returned block, so the block holds it once: made outside and moved in, it would
    /// take its room twice (an async block keeps what it captured and what it awaits in
    /// separate slots), and the connection copies the whole block once per request.
    pub(super) fn answer<H: Respond, F>(
        &self,
        handler: &H,
        mut req: Request<RequestBody>,
        respond: fn(H, Request<RequestBody>, Arc<ConnInfo>) -> F,
    ) -> impl Future<Output = Result<Response<Tracked>, Infallible>> + Send + use<H, F>
    where
        F: Future<Output = Response<Body>> + Send,
    {
        let admitted = self.admit(&mut req);
        let (handler, info) = (handler.clone(), self.info.clone());
        async move {
            let resp = match &admitted.oversized {
                None => respond(handler, req, info).await,
                Some(name) => admitted.too_large(name),
            };
            admitted.finish(resp)
        }
    }
}

impl Admitted {
    /// Ties the response to the request's time in flight.
    fn finish(self, mut resp: Response<Body>) -> Result<Response<Tracked>, Infallible> {
        // While draining, HTTP/1.1 clients are told to open a new connection for their
        // next request, so none is sent on a connection about to close.
        if !self.h2
            && self.shutdown.is_draining()
            && resp.status() != StatusCode::SWITCHING_PROTOCOLS
        {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Ok(resp.map(|b| Tracked::new(b, self.guard)))
    }

    /// The answer to a request with a header line over the limit.
    fn too_large(&self, name: &str) -> Response<Body> {
        body::text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("header {name} is over {} bytes", self.max_line),
        )
    }
}

/// Serves HTTP on one connection and enforces its lifetime rules: the first request head
/// within `header_read_timeout`, idle keep-alive within `keep_alive_timeout`, idle
/// connections closed under pressure, and the drain (GOAWAY for HTTP/2 at once; idle
/// HTTP/1.1 connections closed when accepting stops, busy ones after their response).
/// `alpn_h2` says the client chose HTTP/2 during the TLS handshake.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_http<I, H: Respond>(
    io: TimedIo<I>,
    info: ConnInfo,
    tag: Option<ConnTag>,
    alpn_h2: bool,
    handler: H,
    builder: &HttpBuilder,
    signals: Signals,
    settings: &ConnSettings,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote = info.remote;
    let activity = Activity::new();
    let shared = PerRequest {
        tag,
        info: Arc::new(info),
        activity: activity.clone(),
        shutdown: signals.shutdown.clone(),
        max_line: settings.max_header_line_bytes,
    };
    let max_head = settings.max_head_bytes;
    let life = Lifetime {
        activity: &activity,
        signals,
        settings,
        remote,
    };
    if alpn_h2 {
        let closing = AtomicBool::new(false);
        let conn = pin!(super::h2::serve(
            io.yield_before_writes(),
            &shared,
            &handler,
            settings.h2,
            &closing
        ));
        life.drive(conn, |_| closing.store(true, Ordering::Relaxed))
            .await;
    } else {
        // Plain requests are served by `h1`; the first one that is not hands the
        // connection, with the bytes already read, to hyper.
        let closing = AtomicBool::new(false);
        let conn = pin!(async {
            let mut io = io;
            let rest = match h1::serve(&mut io, &shared, &handler, max_head, &closing).await {
                Ok(h1::Next::Closed) => return Ok(()),
                Ok(h1::Next::ToHyper(rest)) => rest,
                Err(e) => return Err(BoxError::from(e)),
            };
            let io = TokioIo::new(Prefixed::new(rest, io));
            let service = service_fn(move |req: Request<Incoming>| {
                shared.answer(&handler, req.map(RequestBody::Hyper), H::respond)
            });
            let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
            let mut told = false;
            std::future::poll_fn(|cx| {
                if !told && closing.load(Ordering::Relaxed) {
                    told = true;
                    conn.as_mut().graceful_shutdown();
                }
                conn.as_mut().poll(cx)
            })
            .await
        });
        life.drive(conn, |_| closing.store(true, Ordering::Relaxed))
            .await;
    }
}

/// The connection-level rules, apart from the protocol that serves it.
struct Lifetime<'a> {
    activity: &'a Arc<Activity>,
    signals: Signals,
    settings: &'a ConnSettings,
    remote: std::net::SocketAddr,
}

impl Lifetime<'_> {
    async fn drive<C, E>(mut self, mut conn: Pin<&mut C>, graceful: impl Fn(Pin<&mut C>))
    where
        C: Future<Output = Result<(), E>>,
        E: Display,
    {
        let (activity, settings, remote) = (self.activity, self.settings, self.remote);
        let timer = tokio::time::sleep(settings.header_read_timeout);
        let mut timer = pin!(timer);
        let mut closing = false;
        let mut drain_seen = false;
        let mut stop_seen = false;
        let mut pressure_gone = false;
        let draining = self.signals.shutdown.clone();
        let mut drain = pin!(draining.draining());
        let mut stopped = pin!(self.signals.stopped.changed());
        let mut pressure = pin!(next_change(self.signals.pressure.clone()));
        let gate = Gate::new();
        let result = loop {
            let event = std::future::poll_fn(|cx| {
                if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Control::Done(result));
                }
                if !gate.passed(cx) {
                    return Poll::Pending;
                }
                let mut gcx = gate.context();
                if !drain_seen && drain.as_mut().poll(&mut gcx).is_ready() {
                    return Poll::Ready(Control::Drain);
                }
                if !stop_seen && stopped.as_mut().poll(&mut gcx).is_ready() {
                    return Poll::Ready(Control::Stopped);
                }
                if !closing
                    && !pressure_gone
                    && let Poll::Ready((rx, open)) = pressure.as_mut().poll(&mut gcx)
                {
                    pressure.set(next_change(rx));
                    return Poll::Ready(Control::Pressure { open });
                }
                if timer.as_mut().poll(&mut gcx).is_ready() {
                    return Poll::Ready(Control::Timer);
                }
                Poll::Pending
            })
            .await;
            // What the control futures wait for may change below: look at all of them on
            // the next poll.
            gate.reopen();
            match event {
                Control::Done(result) => break result,
                Control::Drain => {
                    drain_seen = true;
                    // HTTP/2 announces the end with GOAWAY and finishes the streams it has;
                    // HTTP/1.1 is handled per response (`Connection: close`).
                    if activity.is_h2() && !closing {
                        closing = true;
                        graceful(conn.as_mut());
                    }
                }
                Control::Stopped => {
                    stop_seen = true;
                    // Busy connections finish their response and close; idle ones that have
                    // served requests close now. A connection that has sent nothing yet may be
                    // carrying a request this very moment: it gets a moment to deliver it.
                    if !closing && (!activity.is_idle() || activity.served_any()) {
                        closing = true;
                        graceful(conn.as_mut());
                    } else if !closing {
                        timer
                            .as_mut()
                            .reset(tokio::time::Instant::now() + FRESH_AT_STOP);
                    }
                }
                Control::Pressure { open } => {
                    if !open {
                        pressure_gone = true;
                        continue;
                    }
                    // Connections idle for a moment go first; one just opened (or between two
                    // quick requests) gets to send its request.
                    let idle_for = monotonic_ms().saturating_sub(activity.idle_since_ms());
                    if activity.is_idle() && idle_for >= PRESSURE_MIN_IDLE_MS {
                        closing = true;
                        graceful(conn.as_mut());
                        timer
                            .as_mut()
                            .reset(tokio::time::Instant::now() + CLOSE_LINGER);
                    }
                }
                Control::Timer => {
                    if closing {
                        if activity.is_idle() {
                            // Asked to close and still here: the peer is not cooperating.
                            tracing::debug!(listener = settings.name, remote = %remote, "closing connection that ignored a graceful close");
                            return;
                        }
                        timer
                            .as_mut()
                            .reset(tokio::time::Instant::now() + CLOSE_LINGER);
                        continue;
                    }
                    let now = monotonic_ms();
                    let mut limit = match activity.served_any() {
                        true => settings.keep_alive_timeout,
                        false => settings.header_read_timeout,
                    };
                    if stop_seen {
                        limit = limit.min(FRESH_AT_STOP);
                    }
                    if !activity.is_idle() {
                        timer.as_mut().reset(tokio::time::Instant::now() + limit);
                        continue;
                    }
                    let idle_for =
                        Duration::from_millis(now.saturating_sub(activity.idle_since_ms()));
                    if idle_for >= limit {
                        tracing::debug!(listener = settings.name, remote = %remote, ?idle_for, "closing idle connection");
                        closing = true;
                        graceful(conn.as_mut());
                        timer
                            .as_mut()
                            .reset(tokio::time::Instant::now() + CLOSE_LINGER);
                    } else {
                        timer
                            .as_mut()
                            .reset(tokio::time::Instant::now() + (limit - idle_for));
                    }
                }
            }
        };
        if let Err(e) = result {
            // Resets, clients closing mid-request, header timeouts: the connection's own
            // business, nothing the operator can act on.
            tracing::debug!(listener = settings.name, remote = %remote, error = %e, "connection ended with error");
        }
    }
}

/// What woke the connection task.
enum Control<E> {
    Done(Result<(), E>),
    Drain,
    Stopped,
    /// The pressure channel changed; `open` is false once its sender is gone.
    Pressure {
        open: bool,
    },
    Timer,
}

/// The next change of a watch channel, with the receiver handed back for the one after.
async fn next_change<T>(mut rx: watch::Receiver<T>) -> (watch::Receiver<T>, bool) {
    let open = rx.changed().await.is_ok();
    (rx, open)
}

/// The name of the first header whose name and value together exceed `max` bytes.
fn oversized_header(req: &Request<RequestBody>, max: usize) -> Option<String> {
    req.headers()
        .iter()
        .find(|(n, v)| n.as_str().len() + v.len() > max)
        .map(|(n, _)| n.as_str().to_string())
}
