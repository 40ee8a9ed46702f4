//! HTTP/1.x served without hyper for the requests most ingress traffic is made of: a head
//! and no body, no upgrade. hyper's server showed as a fifth of the proxy's userland time
//! per request (its dispatcher, a fresh 8 KiB read buffer per request, the header map
//! built twice over); here a connection keeps one read and one write buffer for its life.
//!
//! The first request that is anything else (a body, an upgrade, `Expect`, a head hyper
//! would refuse or one over the limits) hands the connection, with every byte already
//! read, to hyper for the rest of its life. So each unusual case keeps hyper's answer,
//! and this reader only has to be right about the plain ones.
use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body::{Body as _, Frame};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::Respond;
use super::activity::Tracked;
use super::http_conn::PerRequest;
use crate::body::RequestBody;

/// hyper's default limit on a request's header fields; more goes to hyper, which says 431.
const MAX_HEADERS: usize = 100;
/// Room read into at a time.
const READ_ROOM: usize = 8 * 1024;
/// Body pieces at least this large are written as they are rather than copied behind
/// the head.
const WRITE_DIRECT: usize = 16 * 1024;
/// Buffered response bytes past this are written before more are gathered.
const WRITE_HIGH: usize = 64 * 1024;

/// How the connection continues after this reader is done with it.
pub(super) enum Next {
    /// Closed, or to be closed: nothing more to serve.
    Closed,
    /// The bytes read but not served, for hyper to serve from.
    ToHyper(Vec<u8>),
}

/// Serves requests on `io` until the connection ends, `closing` is set while it is idle,
/// or a request needs hyper.
pub(super) async fn serve<I, H>(
    io: &mut I,
    per: &PerRequest,
    handler: &H,
    max_head: usize,
    closing: &AtomicBool,
) -> io::Result<Next>
where
    I: AsyncRead + AsyncWrite + Unpin,
    H: Respond,
{
    let mut rbuf = BytesMut::with_capacity(READ_ROOM);
    let mut wbuf: Vec<u8> = Vec::with_capacity(1024);
    // The last response's header map, cleared, becomes the next request's.
    let mut spare = HeaderMap::new();
    loop {
        let head = loop {
            if !rbuf.is_empty() {
                match parse_head(&mut rbuf, &mut spare) {
                    Parsed::Plain(head) => break head,
                    Parsed::Partial if rbuf.len() < max_head => {}
                    Parsed::Partial | Parsed::NotPlain => return Ok(Next::ToHyper(rbuf.to_vec())),
                    Parsed::Taken(head) => {
                        let mut rest = head.to_vec();
                        rest.extend_from_slice(&rbuf);
                        return Ok(Next::ToHyper(rest));
                    }
                }
            }
            let read = poll_fn(|cx| {
                // Asked to close between requests: nothing is lost by going now.
                if rbuf.is_empty() && closing.load(Ordering::Relaxed) {
                    return Poll::Ready(Ok(0));
                }
                poll_read(io, cx, &mut rbuf)
            })
            .await?;
            if read == 0 {
                return Ok(Next::Closed);
            }
        };
        let head_request = head.request.method() == Method::HEAD;
        let version = head.request.version();
        let mut req = head.request;
        let admitted = per.admit(&mut req);
        let (handler, info) = (handler.clone(), per.info.clone());
        let mut answer = pin!(async move {
            let resp = match &admitted.oversized {
                None => handler.respond(req, info).await,
                Some(name) => admitted.too_large(name),
            };
            admitted.finish(resp).unwrap_or_else(|never| match never {})
        });
        // While the answer is made, the socket is watched the way hyper does: an EOF means
        // the client left and the exchange is cancelled (nginx's 499), and the bytes of a
        // pipelined request wait in the buffer.
        let resp = poll_fn(|cx| {
            if let Poll::Ready(resp) = answer.as_mut().poll(cx) {
                return Poll::Ready(Some(resp));
            }
            while rbuf.len() < max_head {
                match poll_read(io, cx, &mut rbuf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
            Poll::Pending
        })
        .await;
        let Some(resp) = resp else {
            return Ok(Next::Closed);
        };
        let keep_alive = head.keep_alive && !closing.load(Ordering::Relaxed);
        let (parts, mut body) = resp.into_parts();
        wbuf.clear();
        let (framing, keep_alive) = encode_head(
            &mut wbuf,
            parts,
            &mut spare,
            &body,
            Exchange {
                version,
                head_request,
                keep_alive,
            },
        );
        write_body(io, &mut wbuf, &mut body, framing).await?;
        // The request stops counting as in flight here even when the body was not read
        // (HEAD, 204, 304).
        drop(body);
        if !keep_alive {
            let _ = io.shutdown().await;
            return Ok(Next::Closed);
        }
    }
}

/// Reads what the socket has into the spare room of `buf`.
fn poll_read<I: AsyncRead + Unpin>(
    io: &mut I,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    // An empty buffer that is ours alone starts over at its front rather than allocating.
    if buf.capacity() - buf.len() < READ_ROOM / 4 {
        buf.reserve(READ_ROOM);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// A request head this reader serves itself.
struct Head {
    request: Request<RequestBody>,
    /// What the client asked for (its version's default and its `Connection` tokens).
    keep_alive: bool,
}

// The head moves once per request either way; boxing it would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Plain(Head),
    Partial,
    /// Anything hyper should serve: a body, an upgrade, a malformed or oversized head.
    NotPlain,
    /// The same, found once the head was already taken off the buffer.
    Taken(Bytes),
}

/// Where one field sits in the head.
#[derive(Clone, Copy, Default)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

/// Fields a handler may add to a request (the proxy's forwarded family is seven).
const ADDED_FIELDS: usize = 8;
/// Heads with more fields than this list them on the heap.
const SMALL_HEAD: usize = 24;

/// Takes a plain request's head off the front of `buf`. Its header values share the
/// buffer's bytes (hyper's way: no copy per value), and `map` is the connection's spare
/// header map, reused so a request costs no map allocation.
fn parse_head(buf: &mut BytesMut, map: &mut HeaderMap) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::NotPlain,
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::NotPlain;
    };
    let version = match minor {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::NotPlain;
    };
    if method == Method::CONNECT {
        return Parsed::NotPlain;
    }
    let base = buf.as_ptr() as usize;
    // Offsets fit: the head is bounded by the read limit.
    let at = |s: &[u8]| ((s.as_ptr() as usize - base) as u32, s.len() as u32);
    let count = req.headers.len();
    let mut small = [Span::default(); SMALL_HEAD];
    let mut large = Vec::new();
    let spans: &mut [Span] = match count <= SMALL_HEAD {
        true => &mut small[..count],
        false => {
            large.resize(count, Span::default());
            &mut large
        }
    };
    let mut close = false;
    let mut keep_alive_token = false;
    for (span, h) in spans.iter_mut().zip(req.headers.iter()) {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            if h.value.trim_ascii() != b"0" {
                return Parsed::NotPlain;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return Parsed::NotPlain;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        *span = Span {
            name: at(name),
            value: at(h.value),
        };
    }
    let path = at(path.as_bytes());
    let range = |(at, len): (u32, u32)| at as usize..(at + len) as usize;
    let head = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(range(path))) else {
        return Parsed::Taken(head);
    };
    // Room for what the proxy adds (the forwarded family) at once: growing a map later
    // reallocates and rehashes it.
    let room = count + ADDED_FIELDS;
    let mut headers = match map.capacity() >= room {
        true => std::mem::take(map),
        false => HeaderMap::with_capacity(room),
    };
    headers.clear();
    for span in spans.iter() {
        let Ok(name) = HeaderName::from_bytes(&head[range(span.name)]) else {
            return Parsed::Taken(head);
        };
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice(range(span.value))) else {
            return Parsed::Taken(head);
        };
        headers.append(name, value);
    }
    let mut request = Request::new(RequestBody::Empty);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    let keep_alive = match version {
        Version::HTTP_10 => keep_alive_token && !close,
        _ => !close,
    };
    Parsed::Plain(Head {
        request,
        keep_alive,
    })
}

/// Each head `serve` would take off the front of `data`, written back out in the
/// canonical form (lower-case names, trimmed values): the fuzz target's view.
pub(crate) fn heads_of(data: &[u8]) -> Vec<Vec<u8>> {
    let mut buf = BytesMut::from(data);
    let mut spare = HeaderMap::new();
    let mut heads = Vec::new();
    while let Parsed::Plain(head) = parse_head(&mut buf, &mut spare) {
        let req = head.request;
        let mut text = Vec::new();
        text.extend_from_slice(req.method().as_str().as_bytes());
        text.push(b' ');
        text.extend_from_slice(req.uri().to_string().as_bytes());
        text.extend_from_slice(match req.version() {
            Version::HTTP_10 => b" HTTP/1.0\r\n",
            _ => b" HTTP/1.1\r\n",
        });
        for (name, value) in req.headers() {
            put_field(&mut text, name.as_str().as_bytes(), value.as_bytes());
        }
        text.extend_from_slice(b"\r\n");
        heads.push(text);
    }
    heads
}

/// What the response head depends on from its request.
#[derive(Clone, Copy)]
struct Exchange {
    version: Version,
    head_request: bool,
    /// Whether the client and the connection's state allow another request.
    keep_alive: bool,
}

/// How the body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// Nothing after the head (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, a length nobody knows).
    Close,
}

/// Writes the status line and header fields into `out` the way hyper would for the same
/// response, and says how the body is framed and whether the connection stays open.
fn encode_head(
    out: &mut Vec<u8>,
    parts: http::response::Parts,
    spare: &mut HeaderMap,
    body: &Tracked,
    ex: Exchange,
) -> (Framing, bool) {
    let status = parts.status;
    let mut headers = parts.headers;
    let mut keep_alive = ex.keep_alive && !has_token(&headers, b"close");
    let http10 = ex.version == Version::HTTP_10;
    match (http10, keep_alive) {
        (true, true) if !has_token(&headers, b"keep-alive") => {
            headers.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        }
        (false, false) if !has_token(&headers, b"close") => {
            headers.append(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let chunkable = !http10 && !ex.head_request && !bodiless_status;
    out.extend_from_slice(match http10 {
        true => b"HTTP/1.0 ",
        false => b"HTTP/1.1 ",
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut has_date = false;
    for (name, value) in &headers {
        if *name == header::CONTENT_LENGTH {
            if bodiless_status {
                continue;
            }
            length = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if *name == header::TRANSFER_ENCODING {
            if !chunkable {
                continue;
            }
            chunked = true;
        } else if *name == header::DATE {
            has_date = true;
        }
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_date {
        super::date::with_now(|date| put_field(out, b"date", date));
    }
    let hint = body.size_hint().exact();
    let framing = if ex.head_request || bodiless_status {
        if ex.head_request
            && length.is_none()
            && !bodiless_status
            && let Some(n) = hint.filter(|n| *n > 0)
        {
            put_length(out, n);
        }
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if let Some(n) = hint {
        put_length(out, n);
        Framing::Length(n)
    } else if chunkable {
        put_field(out, b"transfer-encoding", b"chunked");
        Framing::Chunked
    } else {
        keep_alive = false;
        Framing::Close
    };
    out.extend_from_slice(b"\r\n");
    headers.clear();
    *spare = headers;
    (framing, keep_alive)
}

/// Whether any `Connection` field of `headers` carries `token`.
fn has_token(headers: &HeaderMap, token: &[u8]) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}

fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn put_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa_u64(n, &mut [0; 20]));
    out.extend_from_slice(b"\r\n");
}

fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Sends the head in `out` and the body after it. Pieces that are ready are gathered
/// behind the head, so a small answer leaves in one write.
async fn write_body<I: AsyncWrite + Unpin>(
    io: &mut I,
    out: &mut Vec<u8>,
    body: &mut Tracked,
    framing: Framing,
) -> io::Result<()> {
    let ended = match framing {
        Framing::None | Framing::Length(0) => Ok(()),
        _ => gather_body(io, out, body, framing).await,
    };
    // What was gathered goes out even when the body failed: the client gets what there
    // was, then the connection ends (hyper's way), rather than nothing at all.
    flush_out(io, out).await?;
    ended?;
    io.flush().await
}

/// Puts the body's frames into `out` (writing as it goes), framed for the wire.
async fn gather_body<I: AsyncWrite + Unpin>(
    io: &mut I,
    out: &mut Vec<u8>,
    body: &mut Tracked,
    framing: Framing,
) -> io::Result<()> {
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    loop {
        let ready = poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
        let frame = match ready {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                flush_out(io, out).await?;
                poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(io::Error::other(e)),
            // Trailers are dropped, as hyper does for clients that did not ask for them.
            Some(Ok(frame)) => match Frame::into_data(frame) {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        let len = data.len() as u64;
        if len > left {
            return Err(io::Error::other(
                "response body longer than its content-length",
            ));
        }
        left -= len;
        if framing == Framing::Chunked {
            out.extend_from_slice(format_chunk_size(data.len(), &mut [0; 18]));
        }
        put_data(io, out, data).await?;
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= WRITE_HIGH {
            flush_out(io, out).await?;
        }
        if left == 0 {
            return Ok(());
        }
    }
    match framing {
        Framing::Chunked => {
            out.extend_from_slice(b"0\r\n\r\n");
            Ok(())
        }
        Framing::Length(_) => Err(io::Error::other(
            "response body shorter than its content-length",
        )),
        _ => Ok(()),
    }
}

/// Appends `data` to `out`, or writes both when `data` is large enough not to copy.
async fn put_data<I: AsyncWrite + Unpin>(
    io: &mut I,
    out: &mut Vec<u8>,
    data: Bytes,
) -> io::Result<()> {
    if data.len() < WRITE_DIRECT {
        out.extend_from_slice(&data);
        return Ok(());
    }
    flush_out(io, out).await?;
    io.write_all(&data).await
}

async fn flush_out<I: AsyncWrite + Unpin>(io: &mut I, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// `{len:x}\r\n` without formatting machinery.
fn format_chunk_size(mut len: usize, buf: &mut [u8; 18]) -> &[u8] {
    let mut i = buf.len() - 2;
    buf[i] = b'\r';
    buf[i + 1] = b'\n';
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[len & 0xf];
        len >>= 4;
        if len == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Response;

    fn parse(raw: &[u8]) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(raw);
        let parsed = parse_head(&mut buf, &mut HeaderMap::new());
        (parsed, buf)
    }

    fn plain(raw: &[u8]) -> Head {
        match parse(raw).0 {
            Parsed::Plain(head) => head,
            _ => panic!("not taken as plain: {:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn a_plain_head_becomes_a_request_with_every_field() {
        let raw = b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Two: 1\r\nx-two: 2\r\nContent-Length: 0\r\n\r\nGET /next";
        let (parsed, rest) = parse(raw);
        let Parsed::Plain(head) = parsed else {
            panic!("not plain")
        };
        assert_eq!(&rest[..], b"GET /next");
        let req = &head.request;
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/a/b");
        assert_eq!(req.uri().query(), Some("c=d"));
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "example.com");
        let twos: Vec<_> = req.headers().get_all("x-two").iter().collect();
        assert_eq!(twos, ["1", "2"]);
        assert!(head.keep_alive);
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_tokens() {
        assert!(!plain(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!plain(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(plain(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!plain(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    }

    #[test]
    fn bodies_upgrades_and_bad_heads_go_to_hyper() {
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw).0, Parsed::NotPlain | Parsed::Taken(_)),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a").0,
            Parsed::Partial
        ));
        // Refused once taken off the buffer: the whole head comes back for hyper.
        let raw = b"GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n";
        match parse(raw) {
            (Parsed::Taken(head), rest) => {
                assert_eq!(&head[..], &raw[..]);
                assert!(rest.is_empty());
            }
            _ => panic!("a head with an unparsable target was served"),
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(parse(raw.as_bytes()).0, Parsed::NotPlain));
    }

    fn encoded(resp: Response<crate::body::Body>, ex: Exchange) -> (String, Framing, bool) {
        let activity = super::super::activity::Activity::new();
        let (parts, body) = resp.into_parts();
        let body = Tracked::new(body, activity.start(false));
        let mut out = Vec::new();
        let (framing, keep) = encode_head(&mut out, parts, &mut HeaderMap::new(), &body, ex);
        (String::from_utf8(out).unwrap(), framing, keep)
    }

    const GET11: Exchange = Exchange {
        version: Version::HTTP_11,
        head_request: false,
        keep_alive: true,
    };

    #[test]
    fn a_known_length_is_announced_and_a_date_added() {
        let (head, framing, keep) = encoded(Response::new(crate::body::full("hello")), GET11);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\ncontent-length: 5\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(head.ends_with("\r\n\r\n"));
        assert_eq!((framing, keep), (Framing::Length(5), true));
    }

    #[test]
    fn an_unknown_length_is_chunked_for_http11_and_closes_for_http10() {
        let stream = || {
            let chunks =
                futures_util::stream::empty::<Result<Frame<Bytes>, crate::body::BoxError>>();
            Response::new(http_body_util::BodyExt::boxed(
                http_body_util::StreamBody::new(chunks),
            ))
        };
        let (head, framing, keep) = encoded(stream(), GET11);
        assert!(
            head.contains("\r\ntransfer-encoding: chunked\r\n"),
            "{head}"
        );
        assert_eq!((framing, keep), (Framing::Chunked, true));
        let http10 = Exchange {
            version: Version::HTTP_10,
            ..GET11
        };
        let (head, framing, keep) = encoded(stream(), http10);
        assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert_eq!((framing, keep), (Framing::Close, false));
    }

    #[test]
    fn closing_is_said_and_http10_keep_alive_is_confirmed() {
        let closing = Exchange {
            keep_alive: false,
            ..GET11
        };
        let (head, _, keep) = encoded(Response::new(crate::body::empty()), closing);
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(head.contains("\r\ncontent-length: 0\r\n"), "{head}");
        assert!(!keep);
        let http10 = Exchange {
            version: Version::HTTP_10,
            ..GET11
        };
        let (head, _, keep) = encoded(Response::new(crate::body::empty()), http10);
        assert!(head.contains("\r\nconnection: keep-alive\r\n"), "{head}");
        assert!(keep);
        let mut said_close = Response::new(crate::body::empty());
        said_close
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        let (head, _, keep) = encoded(said_close, GET11);
        assert_eq!(head.matches("connection").count(), 1, "{head}");
        assert!(!keep);
    }

    #[test]
    fn head_and_bodiless_statuses_frame_nothing() {
        let head_req = Exchange {
            head_request: true,
            ..GET11
        };
        let (head, framing, _) = encoded(Response::new(crate::body::full("hello")), head_req);
        assert!(head.contains("\r\ncontent-length: 5\r\n"), "{head}");
        assert_eq!(framing, Framing::None);
        let mut not_modified = Response::new(crate::body::empty());
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        let (head, framing, _) = encoded(not_modified, GET11);
        assert!(head.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert_eq!(framing, Framing::None);
    }

    #[test]
    fn chunk_sizes_are_lower_case_hex() {
        assert_eq!(format_chunk_size(0, &mut [0; 18]), b"0\r\n");
        assert_eq!(format_chunk_size(255, &mut [0; 18]), b"ff\r\n");
        assert_eq!(
            format_chunk_size(usize::MAX, &mut [0; 18]),
            b"ffffffffffffffff\r\n"
        );
        assert_eq!(itoa_u64(0, &mut [0; 20]), b"0");
        assert_eq!(itoa_u64(u64::MAX, &mut [0; 20]), b"18446744073709551615");
    }
}
