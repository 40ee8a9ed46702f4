//! HTTP/2 for connections that chose it through ALPN, served with the h2 crate directly
//! rather than through hyper's server. hyper's layer over the same crate converted every
//! request and answer, recorded the time of every frame read for its keep-alive pings
//! (a clock read and a lock each) and swept every answer for the fields HTTP/2 forbids
//! with a hashed lookup per name; this module does what our handlers need of it, with the
//! same settings (docs/PERFORMANCE.md, "The plain lane for HTTP/2").
//!
//! Per stream: one future, the handler's future raced against the client's RST_STREAM (a
//! client that gives up cancels its upstream request, as on HTTP/1.1), then the answer's
//! head and its body under the stream's flow control. The streams run inside the
//! connection's task, not as tasks of their own: a spawned task cost an aligned
//! allocation, two moves of the stream's kilobyte-sized future and a second task's poll per
//! answer (about 2 % of an HTTP/2 request's instructions under callgrind), and the
//! connection's worker thread runs both either way. A stream that panics is caught on its
//! own, as a task's panic would be, and only its stream is reset. Per connection: PING every
//! `keep_alive_interval`, and the connection closed when no PONG comes within
//! `keep_alive_timeout`; GOAWAY when the connection's lifetime rules ask it to close.
//! Cleartext HTTP/2 (h2c) still reaches hyper through the HTTP/1.1 reader.
use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use h2::server::SendResponse;
use h2::{Ping, PingPong, Reason, SendStream};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Respond;
use super::activity::Tracked;
use super::http_conn::PerRequest;
use crate::body::{BoxError, H2Body, RequestBody};

/// The connection settings hyper's server used, ours now.
#[derive(Debug, Clone, Copy)]
pub(super) struct H2Settings {
    /// Zero: no pings.
    pub(super) keep_alive_interval: Duration,
    pub(super) keep_alive_timeout: Duration,
    pub(super) max_header_list_size: u32,
}

/// Flow-control windows, frame size, streams and send buffer as hyper set them.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_STREAMS: u32 = 200;
const MAX_SEND_BUFFER: usize = 400 * 1024;
/// Streams a client may make us reset for its errors before the connection goes (the
/// rapid-reset defence hyper configures).
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// Serves one HTTP/2 connection until it ends. `closing` is set by the connection's
/// lifetime rules: the connection then announces GOAWAY and finishes the streams it has.
pub(super) async fn serve<I, H: Respond>(
    io: I,
    per: &PerRequest,
    handler: &H,
    settings: H2Settings,
    closing: &AtomicBool,
) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(settings.max_header_list_size)
        .max_concurrent_streams(MAX_STREAMS)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS));
    let mut conn = builder.handshake::<_, Bytes>(io).await?;
    let mut pings = conn.ping_pong().and_then(|pp| KeepAlive::new(pp, settings));
    let mut told = false;
    let mut streams = FuturesUnordered::new();
    poll_fn(|cx| {
        loop {
            if !told && closing.load(Ordering::Relaxed) {
                told = true;
                conn.graceful_shutdown();
            }
            // Streams before the connection: what they write is flushed by its poll below.
            while let Poll::Ready(Some(outcome)) = streams.poll_next_unpin(cx) {
                let outcome: Result<(), _> = outcome;
                if outcome.is_err() {
                    // The panic hook has printed it. The stream's handles were dropped
                    // with its future, which resets the stream.
                    tracing::error!("an HTTP/2 stream's handler panicked; its stream was reset");
                }
            }
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    let stream = stream(per, handler, req, respond);
                    streams.push(AssertUnwindSafe(stream).catch_unwind());
                    continue;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(BoxError::from(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => {}
            }
            if let Some(pings) = pings.as_mut()
                && let Poll::Ready(dead) = pings.poll(cx)
            {
                return Poll::Ready(Err(dead));
            }
            return Poll::Pending;
        }
    })
    .await
}

/// One stream: the handler's answer, unless the client resets the stream first.
fn stream<H: Respond>(
    per: &PerRequest,
    handler: &H,
    req: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> impl Future<Output = ()> + Send + use<H> {
    let length = content_length(req.headers());
    let req = req.map(|recv| RequestBody::H2(H2Body::new(recv, length)));
    let answer = per.answer(handler, req, H::respond_boxed);
    // The stream's future is one allocation: the handler's future and the body's pipe are
    // scoped so they share its room instead of sitting side by side.
    async move {
        let resp = {
            let mut answer = pin!(answer);
            poll_fn(|cx| {
                if let Poll::Ready(Ok(resp)) = answer.as_mut().poll(cx) {
                    return Poll::Ready(Some(resp));
                }
                // Dropping the handler's future cancels what it started upstream.
                match respond.poll_reset(cx) {
                    Poll::Ready(_) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        };
        if let Some((body, stream)) = resp.and_then(|resp| send_head(&mut respond, resp)) {
            pipe(body, stream).await;
        }
    }
}

/// The request's `Content-Length`, when it has one valid value.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()?.trim().parse().ok()
}

/// Sends the answer's head; the body and its stream when a body follows.
fn send_head(
    respond: &mut SendResponse<Bytes>,
    resp: Response<Tracked>,
) -> Option<(Tracked, SendStream<Bytes>)> {
    let (mut parts, body) = resp.into_parts();
    strip_connection_fields(&mut parts.headers);
    // One lookup each where `contains_key` and `insert` were two; a pod's answer
    // usually has both fields, so the lookup is all it costs.
    if let header::Entry::Vacant(slot) = parts.headers.entry(header::DATE)
        && let Some(date) = super::date::header_value()
    {
        slot.insert(date);
    }
    let end = body.is_end_stream();
    if !end
        && let Some(n) = body.size_hint().exact()
        && let header::Entry::Vacant(slot) = parts.headers.entry(header::CONTENT_LENGTH)
    {
        slot.insert(HeaderValue::from(n));
    }
    match respond.send_response(Response::from_parts(parts, ()), end) {
        Ok(stream) => (!end).then_some((body, stream)),
        Err(e) => {
            tracing::debug!(error = %e, "answer head not sent");
            None
        }
    }
}

/// Fields HTTP/2 forbids in a message (RFC 9113 §8.2.2), which the h2 crate refuses to
/// send. Our handlers' answers rarely carry one, so one pass over the names decides.
fn strip_connection_fields(headers: &mut HeaderMap) {
    const FORBIDDEN: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
    ];
    // Compared by length first: six string compares per field were most of this.
    let forbidden = |name: &str| match name.len() {
        2 | 7 | 10 | 16 | 17 => FORBIDDEN.contains(&name),
        _ => false,
    };
    if !headers.keys().any(|n| forbidden(n.as_str())) {
        return;
    }
    // The fields a `Connection` field names go with it.
    let named: Vec<_> = crate::http_text::connection_named(headers).collect();
    for name in named {
        headers.remove(name);
    }
    for name in FORBIDDEN {
        headers.remove(name);
    }
}

/// Streams the answer's body under the stream's flow control; trailers end it when there
/// are some. A body that fails resets the stream, so the client does not take a cut body
/// for a whole one.
///
/// A plain `fn` returning an `async move` block: an async fn would hold its by-value
/// arguments twice in its future.
#[allow(clippy::manual_async_fn)]
fn pipe(body: Tracked, mut stream: SendStream<Bytes>) -> impl Future<Output = ()> + Send {
    async move {
        let mut body = pin!(body);
        loop {
            let frame = poll_fn(|cx| {
                if let Poll::Ready(reset) = stream.poll_reset(cx) {
                    return Poll::Ready(Err(reset.ok()));
                }
                body.as_mut().poll_frame(cx).map(Ok)
            })
            .await;
            let frame = match frame {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => {
                    let _ = stream.send_data(Bytes::new(), true);
                    return;
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "answer body failed");
                    stream.send_reset(Reason::INTERNAL_ERROR);
                    return;
                }
                // The client reset the stream: the body (and what it reads) is dropped.
                Err(_) => return,
            };
            match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    if send_data(&mut stream, data, end).await.is_err() || end {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = stream.send_trailers(trailers);
                        return;
                    }
                }
            }
        }
    }
}

/// Sends `data` as the client's window allows, `end` on its last piece.
///
/// The body's last piece is handed over whole: the h2 crate queues what the window does
/// not yet allow and sends it as the window opens. Its bytes are held either way (here
/// while waiting for capacity, or in the crate's queue), so this costs no memory, and it
/// spares a capacity request and its poll on every small answer. Earlier pieces still
/// wait for capacity, so a slow client holds back the pod rather than filling memory.
async fn send_data(stream: &mut SendStream<Bytes>, mut data: Bytes, end: bool) -> Result<(), ()> {
    if end {
        return stream.send_data(data, true).map_err(drop);
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let room = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(room)) if room > 0 => room,
            Some(Ok(_)) => continue,
            _ => return Err(()),
        };
        let piece = data.split_to(room.min(data.len()));
        stream.send_data(piece, false).map_err(drop)?;
    }
    Ok(())
}

/// PING every interval; no PONG within the timeout ends the connection.
struct KeepAlive {
    pings: PingPong,
    interval: Duration,
    timeout: Duration,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    waiting: bool,
}

impl KeepAlive {
    fn new(pings: PingPong, settings: H2Settings) -> Option<Self> {
        if settings.keep_alive_interval.is_zero() {
            return None;
        }
        Some(Self {
            pings,
            interval: settings.keep_alive_interval,
            timeout: settings.keep_alive_timeout,
            timer: Box::pin(tokio::time::sleep(settings.keep_alive_interval)),
            waiting: false,
        })
    }

    /// Ready with the reason when the peer is to be given up on.
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<BoxError> {
        loop {
            if self.waiting {
                match self.pings.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.waiting = false;
                        let next = tokio::time::Instant::now() + self.interval;
                        self.timer.as_mut().reset(next);
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(e.into()),
                    Poll::Pending => {}
                }
                if self.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready("no answer to a keep-alive PING in time".into());
                }
                return Poll::Pending;
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if let Err(e) = self.pings.send_ping(Ping::opaque()) {
                return Poll::Ready(e.into());
            }
            self.waiting = true;
            let deadline = tokio::time::Instant::now() + self.timeout;
            self.timer.as_mut().reset(deadline);
        }
    }
}
