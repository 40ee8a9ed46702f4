//! The `echo` backend: a stand-in pod for tests and the README demo. It answers every
//! request (HTTP/1.1, and HTTP/2 with prior knowledge, on the same port) with a JSON
//! description of what it received — its own name, method, path and query, headers, body
//! length, remote address — the way ingress test suites' echo servers do. The request
//! body is counted while streaming, never buffered whole.
//!
//! Extras: `Upgrade: websocket` requests (or any upgrade to `/ws`) become a WebSocket
//! that echoes each message; other `Upgrade` protocols echo raw bytes; `application/grpc`
//! requests get their message stream echoed back with `grpc-status: 0` in the trailers.
//! Failures on one connection are logged at debug level and end only that connection.
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::body::{self, Body, BoxError};

/// How an echo server behaves.
#[derive(Debug, Clone)]
pub struct EchoOptions {
    /// Reported in every answer, so tests can tell pods apart.
    pub name: String,
    /// Wait this long before answering (a slow pod).
    pub delay: Duration,
}

/// Serves echo on `addr` until the task is dropped or the listener fails.
pub async fn run_echo(addr: SocketAddr, name: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve(
        listener,
        EchoOptions {
            name,
            delay: Duration::ZERO,
        },
    )
    .await
}

/// Binds `addr` (port 0 for any) and serves echo in a task named after the bound address.
pub async fn spawn_echo(addr: SocketAddr) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    spawn_echo_with(
        addr,
        EchoOptions {
            name: String::new(),
            delay: Duration::ZERO,
        },
    )
    .await
}

/// Like [`spawn_echo`] with options; an empty name becomes `echo-<bound address>`.
pub async fn spawn_echo_with(
    addr: SocketAddr,
    mut options: EchoOptions,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if options.name.is_empty() {
        options.name = format!("echo-{bound}");
    }
    let handle = tokio::spawn(async move {
        if let Err(e) = serve(listener, options).await {
            tracing::warn!(error = %e, "echo server stopped");
        }
    });
    Ok((bound, handle))
}

/// Accepts connections on `listener` forever.
pub async fn serve(listener: TcpListener, options: EchoOptions) -> std::io::Result<()> {
    accept_loop(listener, options, None).await
}

/// Like [`spawn_echo_with`] but over TLS (a stand-in for an HTTPS or GRPCS pod). The
/// configuration's ALPN list decides whether HTTP/2 is offered.
pub async fn spawn_echo_tls(
    addr: SocketAddr,
    mut options: EchoOptions,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if options.name.is_empty() {
        options.name = format!("echo-{bound}");
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handle = tokio::spawn(async move {
        if let Err(e) = accept_loop(listener, options, Some(acceptor)).await {
            tracing::warn!(error = %e, "echo TLS server stopped");
        }
    });
    Ok((bound, handle))
}

async fn accept_loop(
    listener: TcpListener,
    options: EchoOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let options = Arc::new(options);
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(pair) => pair,
            // Per-connection accept errors (e.g. the peer reset before accept) are not
            // fatal to the listener.
            Err(e) if is_transient(&e) => continue,
            Err(e) => return Err(e),
        };
        let _ = stream.set_nodelay(true);
        let options = options.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_conn(stream, remote, options, false).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(Duration::from_secs(10), handshake).await {
                        Ok(Ok(s)) => serve_conn(s, remote, options, true).await,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %remote, "echo TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%remote, "echo TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_conn<IO>(io: IO, remote: SocketAddr, options: Arc<EchoOptions>, tls: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let options = options.clone();
        async move { Ok::<_, Infallible>(answer(req, remote, &options, tls).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
    {
        tracing::debug!(error = %e, %remote, "echo connection ended");
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
    )
}

async fn answer(
    mut req: Request<Incoming>,
    remote: SocketAddr,
    options: &EchoOptions,
    tls: bool,
) -> Response<Body> {
    if !options.delay.is_zero() {
        tokio::time::sleep(options.delay).await;
    }
    if let Some(resp) = try_upgrade(&mut req) {
        return resp;
    }
    let is_grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if is_grpc {
        return grpc_echo(req);
    }

    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let version = format!("{:?}", req.version());
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        })
        .unwrap_or_default();
    let headers = header_map(req.headers());
    // Count the body frame by frame: a 100 MiB upload costs one frame of memory.
    let mut body = req.into_body();
    let mut length: u64 = 0;
    let mut body_error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    length += d.len() as u64;
                }
            }
            Err(e) => {
                body_error = Some(e.to_string());
                break;
            }
        }
    }
    let json = serde_json::json!({
        "name": options.name,
        "method": method,
        "path": path,
        "version": version,
        "host": host,
        "headers": headers,
        "body_length": length,
        "body_error": body_error,
        "remote": remote.to_string(),
        "tls": tls,
    });
    let mut resp = body::json(StatusCode::OK, json.to_string().into_bytes());
    resp.headers_mut().insert(
        header::HeaderName::from_static("x-echo-name"),
        HeaderValue::from_str(&options.name).unwrap_or(HeaderValue::from_static("echo")),
    );
    resp
}

/// Header name → value; repeated headers joined with `, `.
fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_string())
            .and_modify(|prev| {
                prev.push_str(", ");
                prev.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

/// Answers 101 and starts the echo on the upgraded connection, if `req` asks to upgrade.
fn try_upgrade(req: &mut Request<Incoming>) -> Option<Response<Body>> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)?
        .to_str()
        .ok()?
        .to_string();
    let websocket = upgrade.eq_ignore_ascii_case("websocket");
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if websocket {
        let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?;
        let accept = websocket_accept(key.as_bytes());
        resp.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        resp.headers_mut().insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).ok()?,
        );
    } else {
        resp.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_str(&upgrade).ok()?);
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(e) => {
                tracing::debug!(error = %e, "echo upgrade failed");
                return;
            }
        };
        let result = if websocket {
            websocket_echo(io).await
        } else {
            raw_echo(io).await
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "echo upgraded connection ended");
        }
    });
    Some(resp)
}

async fn raw_echo<T: AsyncRead + AsyncWrite + Unpin>(io: T) -> std::io::Result<()> {
    let (mut r, mut w) = tokio::io::split(io);
    tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await
}

/// Largest WebSocket frame the echo accepts.
const MAX_WS_FRAME: u64 = 16 * 1024 * 1024;

/// Echoes WebSocket frames (RFC 6455): data frames come back unmasked with the same
/// opcode, pings get pongs, a close is answered with a close.
async fn websocket_echo<T: AsyncRead + AsyncWrite + Unpin>(mut io: T) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        if let Err(e) = io.read_exact(&mut head).await {
            return match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Ok(()),
                _ => Err(e),
            };
        }
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => u64::from(io.read_u16().await?),
            127 => io.read_u64().await?,
            n => u64::from(n),
        };
        if len > MAX_WS_FRAME {
            return Err(std::io::Error::other("websocket frame too large"));
        }
        let mut mask = [0u8; 4];
        if masked {
            io.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        io.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match opcode {
            0x8 => {
                write_ws_frame(&mut io, 0x80 | 0x8, &payload).await?;
                return io.shutdown().await;
            }
            0x9 => write_ws_frame(&mut io, 0x80 | 0xA, &payload).await?,
            0xA => {}
            _ => write_ws_frame(&mut io, head[0] & 0x8f, &payload).await?,
        }
    }
}

async fn write_ws_frame<T: AsyncWrite + Unpin>(
    io: &mut T,
    b0: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(b0);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    io.write_all(&frame).await?;
    io.flush().await
}

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2).
pub fn websocket_accept(key: &[u8]) -> String {
    let mut input = key.to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1(&input))
}

/// SHA-1, only for the WebSocket handshake (not a security use).
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// gRPC echo: the request's message stream streamed straight back, then `grpc-status: 0`
/// in the trailers. Messages are length-prefixed, so echoing the bytes is a valid answer
/// for any method whose response type equals its request type.
fn grpc_echo(req: Request<Incoming>) -> Response<Body> {
    let body = GrpcEcho {
        inner: req.into_body(),
        done: false,
    };
    let mut resp = Response::new(body.boxed());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

struct GrpcEcho {
    inner: Incoming,
    done: bool,
}

impl HttpBody for GrpcEcho {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            return match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                    // Request trailers are not echoed.
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(None) => {
                    self.done = true;
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_and_websocket_accept() {
        let hex = |b: [u8; 20]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let long = vec![b'a'; 1000];
        assert_eq!(hex(sha1(&long)), "291e9a6c66994949b57ba5e650361e98fc36b1ba");
        // RFC 6455 §1.3 example.
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
