//! HTTP/1.1 connections to pods (plain and TLS), kept alive in a pool of our own: one
//! list per worker thread and endpoint, and the exchange runs in the request's own task.
//!
//! Why: hyper's client connection needs a task of its own, so each proxied request woke
//! it, handed it the request and got the head and every body chunk back over channels.
//! Here the request task writes the head (`upstream_h1_wire`), reads and parses the
//! answer, and the response body reads the socket itself; its end puts the connection
//! back on the list of the thread it ends on. With the ingress workers on current-thread
//! runtimes a connection never leaves its thread; the lists are behind uncontended
//! mutexes only so one reaper can sweep them all.
//!
//! Idle connections close after `idle_timeout` (a reaper task per pool, ticking at half
//! the timeout, so an idle connection lives between one and one and a half timeouts).
//! A connection the pod closed while idle is noticed when it is taken (its socket is
//! readable: end of stream or stray bytes) and dropped without a request being lost.
//!
//! Failure behaviour: a connect failure is a typed `ConnectError` (the proxy ejects and
//! retries elsewhere); a pooled connection whose head write fails gets the request again
//! on a fresh connection to the same pod (nothing reached the pod); anything the pod
//! sends that is not HTTP is a `WireError` and the connection is closed.
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::uri::Authority;
use http::{HeaderMap, Method, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::io::poll_read_buf;
use tower::Service;

use crate::body::BoxError;
use crate::ingress::model::fast_map::FastMap;
use crate::ingress::request::upstream::{Connector, Outgoing, UpstreamBody, UpstreamError, Wire};
use crate::ingress::request::upstream_h1_wire::{
    self as wire, BodyFraming, Chunk, ChunkedDecoder, RequestFraming, ResponseHead, ResponseSpans,
    ScannedHead, WireError,
};
use crate::ingress::request::upstream_tls::UpstreamIo;
use crate::server::prefixed::Prefixed;

/// Read buffer of a connection; a response head and a small body fit in one read.
const READ_BUF: usize = 8 * 1024;
/// Checkouts between two sweeps of a thread's lists for endpoints that went away.
const SWEEP_EVERY: u32 = 4096;

/// Where a pooled connection goes. The authorities are the endpoints' own, written by
/// us, so bytes compare exactly and hash in one write: `Authority`'s own `Hash` and `Eq`
/// fold the case of every byte, one hasher call each, on every checkout and return.
#[derive(Debug, Clone)]
struct Key {
    wire: Wire,
    authority: Authority,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.wire == other.wire && self.authority.as_str() == other.authority.as_str()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.wire.hash(state);
        state.write(self.authority.as_str().as_bytes());
    }
}

/// One HTTP/1.1 connection to a pod and its buffers, reused for every request it carries.
#[derive(Debug)]
pub(crate) struct H1Conn {
    io: UpstreamIo,
    read: BytesMut,
    write: Vec<u8>,
    /// Came from the pool (a stale connection is possible), not freshly connected.
    reused: bool,
    /// Where the plain lane's answer heads have their fields: kept with the connection
    /// (boxed, reused) rather than in each request's future.
    spans: ResponseSpans,
    /// The plain lane's wait for an answer head, reused by each request (`read_head_until`).
    read_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl H1Conn {
    fn new(io: UpstreamIo) -> Box<Self> {
        Box::new(Self {
            io,
            read: BytesMut::with_capacity(READ_BUF),
            write: Vec::with_capacity(1024),
            reused: false,
            spans: ResponseSpans::default(),
            read_timer: None,
        })
    }

    fn tcp(&self) -> &tokio::net::TcpStream {
        match &self.io {
            UpstreamIo::Plain(s) => s,
            UpstreamIo::Tls(t) => t.get_ref().0,
        }
    }

    /// Whether an idle connection can take a request: its socket has nothing to read
    /// (a pod that closed, or sent bytes nobody asked for, makes it readable). Costs a
    /// system call only when the socket is readable.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.tcp().poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                // Readable: end of stream, stray bytes, or (TLS) a session ticket that
                // rustls takes for itself. Reading tells which.
                reserve(&mut self.read);
                match poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.read) {
                    Poll::Pending => self.read.is_empty(),
                    Poll::Ready(_) => false,
                }
            }
        }
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        reserve(&mut self.read);
        std::future::poll_fn(|cx| poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)).await
    }

    async fn read_head(&mut self, head_request: bool) -> Result<ResponseHead, UpstreamError> {
        loop {
            if !self.read.is_empty()
                && let Some(head) =
                    wire::parse_response_head(&mut self.read, head_request).map_err(failed)?
            {
                return Ok(head);
            }
            if self.read_more().await.map_err(failed)? == 0 {
                return Err(failed(WireError::ClosedBeforeHead));
            }
        }
    }
}

/// Room for a full read, reclaiming the buffer when the bodies handed out are gone.
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_BUF / 2 {
        buf.reserve(READ_BUF);
    }
}

fn failed(e: impl Into<BoxError>) -> UpstreamError {
    UpstreamError::Failed(e.into())
}

/// An idle connection and the reaper tick it went idle at.
#[derive(Debug)]
struct Idle {
    conn: Box<H1Conn>,
    tick: u64,
}

/// One thread's idle connections.
#[derive(Debug, Default)]
struct Lists {
    by_endpoint: FastMap<Key, Vec<Idle>>,
    checkouts: u32,
}

/// Pooled HTTP/1.1 connections, per worker thread and per endpoint.
pub struct H1Pool {
    idle_timeout: Duration,
    /// Idle connections kept per endpoint and thread; more are closed when released.
    max_idle: usize,
    lists: thread_local::ThreadLocal<Mutex<Lists>>,
    /// Counts the reaper's ticks; idle connections are stamped with it.
    tick: AtomicU64,
    reaper: AtomicBool,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool")
            .field("idle_timeout", &self.idle_timeout)
            .field("max_idle", &self.max_idle)
            .finish()
    }
}

/// Why writing the request stopped.
enum WriteFailed {
    /// The client's body failed (too large, malformed, too slow): not the pod's fault.
    Body(BoxError),
    Io(io::Error),
}

impl H1Pool {
    pub fn new(idle_timeout: Duration, max_idle: usize) -> Self {
        Self {
            idle_timeout,
            max_idle,
            lists: thread_local::ThreadLocal::new(),
            tick: AtomicU64::new(0),
            reaper: AtomicBool::new(false),
        }
    }

    /// Sends `req` (origin-form URI, Host header set) to the pod at `target`. The
    /// response body holds the connection and returns it to the pool at its end.
    pub async fn send(
        self: &Arc<Self>,
        connector: impl Fn() -> Connector,
        wire_kind: Wire,
        target: &Authority,
        out: Outgoing<'_>,
    ) -> Result<Response<H1Body>, UpstreamError> {
        let Outgoing {
            method,
            uri,
            headers,
            host,
            mut body,
            ..
        } = out;
        let key = Key {
            wire: wire_kind,
            authority: target.clone(),
        };
        let head_request = *method == Method::HEAD;
        let framing = RequestFraming::of(
            method,
            body.size_hint().exact(),
            headers.contains_key(http::header::CONTENT_LENGTH),
        );
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut conn = match self.checkout(&key) {
            Some(c) => c,
            // Boxed: connecting (TCP, maybe TLS) is the rare path, and its state would
            // otherwise sit in every request's future.
            None => Box::pin(self.connect(connector(), &key)).await?,
        };
        conn.write.clear();
        wire::encode_request_head(&mut conn.write, method, pq, headers, host.as_ref(), framing);
        if let Err(e) = conn.io.write_all(&conn.write).await {
            if !conn.reused {
                return Err(failed(e));
            }
            // Closed under us while idle: nothing reached the pod, so a fresh
            // connection takes the request (this is not a retry).
            let head = std::mem::take(&mut conn.write);
            conn = Box::pin(self.connect(connector(), &key)).await?;
            conn.write = head;
            conn.io.write_all(&conn.write).await.map_err(failed)?;
        }
        let mut keep = true;
        let written = match framing {
            RequestFraming::None => conn.io.flush().await.map_err(WriteFailed::Io),
            // Boxed: only requests with a body need the body writer's state, and every
            // request's future (copied into its box per request) would carry it.
            _ => Box::pin(write_body(&mut conn.io, &mut body, framing)).await,
        };
        match written {
            Ok(()) => {}
            Err(WriteFailed::Body(e)) => return Err(UpstreamError::Failed(e)),
            // The pod may have answered early (a 413, a redirect) and stopped reading:
            // its answer beats the write error.
            Err(WriteFailed::Io(e)) => {
                keep = false;
                if conn.read.is_empty() && conn.read_more().await.unwrap_or(0) == 0 {
                    return Err(failed(e));
                }
            }
        }
        drop(body);
        let mut head = conn.read_head(head_request).await?;
        head.keep_alive &= keep;
        Ok(self.response(conn, head, key))
    }

    fn response(
        self: &Arc<Self>,
        conn: Box<H1Conn>,
        head: ResponseHead,
        key: Key,
    ) -> Response<H1Body> {
        let body = self.body(conn, head.framing, head.keep_alive, key);
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        resp
    }

    /// The body after a head framed as `framing`, reading from `conn`, which goes home to
    /// this pool at its end when `keep_alive` allows.
    fn body(
        self: &Arc<Self>,
        conn: Box<H1Conn>,
        framing: BodyFraming,
        keep_alive: bool,
        key: Key,
    ) -> H1Body {
        let decode = match framing {
            BodyFraming::Empty => Decode::Done,
            BodyFraming::Length(n) => Decode::Length(n),
            BodyFraming::Chunked => Decode::Chunked(ChunkedDecoder::default()),
            BodyFraming::UntilClose => Decode::UntilClose,
            BodyFraming::Upgrade => Decode::Upgrade,
        };
        let reusable = keep_alive && !matches!(decode, Decode::Upgrade | Decode::UntilClose);
        let mut body = H1Body {
            conn: Some(conn),
            decode,
            home: reusable.then(|| (self.clone(), key)),
        };
        if matches!(body.decode, Decode::Done) {
            body.finish();
        }
        body
    }

    /// An idle plain-HTTP connection to `target` for the plain lane, which writes the
    /// request head itself; `None` when this thread holds none.
    pub(crate) fn take_idle(&self, target: &Authority) -> Option<RawConn> {
        let key = Key {
            wire: Wire::Http1,
            authority: target.clone(),
        };
        let conn = self.checkout(&key)?;
        Some(RawConn { conn, key })
    }

    /// A new plain-HTTP connection to `target` for the plain lane.
    pub(crate) async fn connect_raw(
        &self,
        connector: Connector,
        target: &Authority,
    ) -> Result<RawConn, UpstreamError> {
        let key = Key {
            wire: Wire::Http1,
            authority: target.clone(),
        };
        let conn = self.connect(connector, &key).await?;
        Ok(RawConn { conn, key })
    }

    /// The most recently used idle connection to `key` that can take a request.
    fn checkout(&self, key: &Key) -> Option<Box<H1Conn>> {
        let mut lists = self.lists.get_or_default().lock().ok()?;
        lists.checkouts = lists.checkouts.wrapping_add(1);
        if lists.checkouts.is_multiple_of(SWEEP_EVERY) {
            lists.by_endpoint.retain(|_, list| !list.is_empty());
        }
        let list = lists.by_endpoint.get_mut(key)?;
        while let Some(mut idle) = list.pop() {
            if idle.conn.usable() {
                return Some(idle.conn);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, key: Key, mut conn: Box<H1Conn>) {
        let Ok(mut lists) = self.lists.get_or_default().lock() else {
            return;
        };
        let list = lists.by_endpoint.entry(key).or_default();
        if list.len() >= self.max_idle {
            return;
        }
        conn.reused = true;
        list.push(Idle {
            conn,
            tick: self.tick.load(Ordering::Relaxed),
        });
        drop(lists);
        self.start_reaper();
    }

    /// One task per pool closes what stayed idle too long, on every thread's lists.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.reaper.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool: Weak<Self> = Arc::downgrade(self);
        let period =
            (self.idle_timeout / 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        // Ticks an idle connection may see: at least a full timeout, less than 1.5.
        let ttl = (self.idle_timeout.as_micros() / period.as_micros().max(1)) as u64 + 1;
        runtime.spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                let now = pool.tick.fetch_add(1, Ordering::Relaxed) + 1;
                for lists in pool.lists.iter() {
                    let Ok(mut lists) = lists.lock() else {
                        continue;
                    };
                    lists.by_endpoint.retain(|_, list| {
                        list.retain_mut(|idle| {
                            now.saturating_sub(idle.tick) < ttl && idle.conn.usable()
                        });
                        !list.is_empty()
                    });
                }
            }
        });
    }

    async fn connect(
        &self,
        mut connector: Connector,
        key: &Key,
    ) -> Result<Box<H1Conn>, UpstreamError> {
        let uri = Uri::builder()
            .scheme(key.wire.scheme())
            .authority(key.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(failed)?;
        let io = connector
            .call(uri)
            .await
            .map_err(UpstreamError::from_connect)?;
        Ok(H1Conn::new(io.into_inner()))
    }

    /// Idle connections this thread holds, for tests.
    pub fn idle_here(&self) -> usize {
        self.lists.get().map_or(0, |l| {
            l.lock()
                .map_or(0, |l| l.by_endpoint.values().map(Vec::len).sum())
        })
    }
}

/// A pooled connection in the plain lane's hands (`lane_exchange.rs`): the lane writes the
/// request head into it and reads the answer's head as bytes; the body then reads the
/// connection as any response body does and takes it home at its end.
#[derive(Debug)]
pub(crate) struct RawConn {
    conn: Box<H1Conn>,
    key: Key,
}

impl RawConn {
    /// The connection's write buffer, emptied, to put the request head in.
    pub(crate) fn head_buf(&mut self) -> &mut Vec<u8> {
        self.conn.write.clear();
        &mut self.conn.write
    }

    /// Sends what `head_buf` holds.
    pub(crate) async fn send(&mut self) -> io::Result<()> {
        let conn = &mut *self.conn;
        conn.io.write_all(&conn.write).await?;
        conn.io.flush().await
    }

    /// `read_head`, given up at `deadline` (`None`).
    ///
    /// The connection keeps one timer and moves it later for each request. Pushing a
    /// registered timer's deadline later is one atomic update (the runtime's wheel finds
    /// the new deadline when the old one comes); a timer per request cost a registration
    /// and a removal in the wheel (keeping it saved about 270 of an HTTP/1.1 request's
    /// 16,000 instructions). A timer left behind fires at most once per read timeout of
    /// idleness and wakes the last task that waited on it, which then finds nothing to do.
    pub(crate) async fn read_head_until(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Option<Result<ScannedHead, RawHeadError>> {
        let mut timer = match self.conn.read_timer.take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let read = {
            let mut head = std::pin::pin!(self.read_head());
            std::future::poll_fn(|cx| {
                if let Poll::Ready(read) = head.as_mut().poll(cx) {
                    return Poll::Ready(Some(read));
                }
                timer.as_mut().poll(cx).map(|()| None)
            })
            .await
        };
        self.conn.read_timer = Some(timer);
        read
    }

    /// Reads until the answer's head is complete (then `take_head` takes it; `spans`
    /// says where its fields are).
    pub(crate) async fn read_head(&mut self) -> Result<ScannedHead, RawHeadError> {
        let conn = &mut *self.conn;
        loop {
            if !conn.read.is_empty()
                && let Some(head) = wire::scan_response_head(&mut conn.read, false, &mut conn.spans)
                    .map_err(RawHeadError::Wire)?
            {
                return Ok(head);
            }
            match conn.read_more().await {
                Ok(0) => return Err(RawHeadError::Closed),
                Ok(_) => {}
                Err(e) => return Err(RawHeadError::Io(e)),
            }
        }
    }

    /// Where the fields of the head `read_head` read are.
    pub(crate) fn spans(&self) -> &ResponseSpans {
        &self.conn.spans
    }

    /// Takes the answer's head (its first `len` bytes) out of what was received.
    pub(crate) fn take_head(&mut self, len: usize) -> Bytes {
        self.conn.read.split_to(len).freeze()
    }

    /// The answer's body, once `take_head` has taken the head.
    pub(crate) fn into_body(self, pool: &Arc<H1Pool>, head: &ScannedHead) -> H1Body {
        pool.body(self.conn, head.framing, head.keep_alive, self.key)
    }
}

/// Why no answer head came on a raw connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RawHeadError {
    #[error(transparent)]
    Wire(WireError),
    #[error("upstream closed the connection before a response head")]
    Closed,
    #[error(transparent)]
    Io(io::Error),
}

/// Streams the client's body to the pod, framed as the head said.
async fn write_body(
    io: &mut UpstreamIo,
    body: &mut UpstreamBody,
    framing: RequestFraming,
) -> Result<(), WriteFailed> {
    let chunked = framing == RequestFraming::Chunked;
    let mut trailers: Option<HeaderMap> = None;
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        let frame = match frame {
            None => break,
            Some(Ok(f)) => f,
            Some(Err(e)) => return Err(WriteFailed::Body(e)),
        };
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) if chunked => {
                let line = wire::chunk_size_line(data.len());
                write_parts(io, &[&line, &data, b"\r\n"])
                    .await
                    .map_err(WriteFailed::Io)?;
            }
            Ok(data) => io.write_all(&data).await.map_err(WriteFailed::Io)?,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    if chunked {
        let mut end = b"0\r\n".to_vec();
        for (name, value) in trailers.iter().flatten() {
            end.extend_from_slice(name.as_str().as_bytes());
            end.extend_from_slice(b": ");
            end.extend_from_slice(value.as_bytes());
            end.extend_from_slice(b"\r\n");
        }
        end.extend_from_slice(b"\r\n");
        io.write_all(&end).await.map_err(WriteFailed::Io)?;
    }
    io.flush().await.map_err(WriteFailed::Io)
}

/// Writes all of `parts` with as few system calls as the socket allows.
async fn write_parts(io: &mut UpstreamIo, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = std::future::poll_fn(|cx| Pin::new(&mut *io).poll_write_vectored(cx, rest)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Where a response body is.
#[derive(Debug)]
enum Decode {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    /// 101: the connection is handed over whole (`H1Body::into_upgraded`).
    Upgrade,
    Done,
}

/// A pod's response body, read from the connection by whoever polls it; at its end the
/// connection goes back to the pool (when the pod allows it and nothing stray follows).
#[derive(Debug)]
pub struct H1Body {
    /// Boxed: the pool moves connections in and out, and the body sits in every
    /// response's future.
    conn: Option<Box<H1Conn>>,
    decode: Decode,
    /// The pool and key to return to; `None` when the connection cannot be reused.
    home: Option<(Arc<H1Pool>, Key)>,
}

impl H1Body {
    fn finish(&mut self) {
        self.decode = Decode::Done;
        if let (Some(conn), Some((pool, key))) = (self.conn.take(), self.home.take())
            && conn.read.is_empty()
        {
            pool.put(key, conn);
        }
    }

    fn fail(&mut self, e: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.decode = Decode::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e.into())))
    }

    /// After a 101: the connection to the pod, with whatever it already sent of the new
    /// protocol replayed first.
    pub fn into_upgraded(mut self) -> Option<Prefixed<UpstreamIo>> {
        if !matches!(self.decode, Decode::Upgrade) {
            return None;
        }
        let conn = *self.conn.take()?;
        Some(Prefixed::new(conn.read.to_vec(), conn.io))
    }
}

impl HttpBody for H1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if !conn.read.is_empty() {
                match &mut this.decode {
                    Decode::Length(left) => {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.read.len());
                        let data = conn.read.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Decode::Chunked(dec) => match dec.decode(&mut conn.read) {
                        Ok(Chunk::Data(d)) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                        Ok(Chunk::End(trailers)) => {
                            this.finish();
                            return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                        }
                        Ok(Chunk::More) => {}
                        Err(e) => return this.fail(e),
                    },
                    Decode::UntilClose => {
                        let data = conn.read.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Decode::Upgrade | Decode::Done => return Poll::Ready(None),
                }
            } else if matches!(this.decode, Decode::Upgrade | Decode::Done) {
                return Poll::Ready(None);
            }
            reserve(&mut conn.read);
            match poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return this.fail(e),
                Poll::Ready(Ok(0)) => {
                    if matches!(this.decode, Decode::UntilClose) {
                        this.decode = Decode::Done;
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    // A chunked body may end with the trailer section's last bytes
                    // still in the decoder; anything else short is a cut body.
                    return this.fail(WireError::ClosedInBody);
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.decode, Decode::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.decode {
            Decode::Length(n) => SizeHint::with_exact(n),
            Decode::Done | Decode::Upgrade => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
