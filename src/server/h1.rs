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
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::Respond;
use super::activity::Tracked;
use super::h1_write::{Exchange, encode_head, write_body};
use super::http_conn::PerRequest;
use super::raw::{RawAnswer, RawRequest, Span};
use crate::body::RequestBody;
use crate::header_pool;
use crate::http_text::put_field;
use crate::span_list::SpanList;

/// hyper's default limit on a request's header fields; more goes to hyper, which says 431.
const MAX_HEADERS: usize = 100;
/// Room read into at a time.
const READ_ROOM: usize = 8 * 1024;

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
    let mut spans = Spans::default();
    loop {
        let scanned = loop {
            if !rbuf.is_empty() {
                match scan_head(&rbuf, &mut spans) {
                    Scan::Plain(scanned) => break scanned,
                    Scan::Partial if rbuf.len() < max_head => {}
                    Scan::Partial | Scan::NotPlain => return Ok(Next::ToHyper(rbuf.to_vec())),
                }
            }
            let read = poll_fn(|cx| {
                // Asked to close between requests. A request the client sent on the
                // strength of our last keep-alive answer may already sit in the socket;
                // closing over unread bytes resets the connection and loses it, so it is
                // served first (with `Connection: close`). Only an empty socket is left.
                if rbuf.is_empty() && closing.load(Ordering::Relaxed) {
                    return match poll_read(io, cx, &mut rbuf) {
                        Poll::Pending => Poll::Ready(Ok(0)),
                        ready => ready,
                    };
                }
                poll_read(io, cx, &mut rbuf)
            })
            .await?;
            if read == 0 {
                return Ok(Next::Closed);
            }
        };
        let raw = rbuf.split_to(scanned.len).freeze();
        let fields = spans.as_slice();
        // The raw lane: HTTP/1.1 only (an HTTP/1.0 answer needs framing of its own), and
        // never a head the usual way would refuse with 431.
        if H::RAW && scanned.minor == 1 && scanned.longest_line <= per.max_line() && !per.has_tag()
        {
            let keep_alive =
                scanned.keep_alive && !closing.load(Ordering::Relaxed) && !per.draining();
            let req = RawRequest {
                head: &raw,
                method: scanned.method_span,
                target: scanned.target,
                minor: scanned.minor,
                fields,
            };
            let guard = per.raw_guard();
            wbuf.clear();
            let answer = watch_client(
                io,
                &mut rbuf,
                max_head,
                handler.respond_raw(req, per.info(), keep_alive, &mut wbuf),
            )
            .await;
            let Some(answer) = answer else {
                return Ok(Next::Closed);
            };
            let exchange = Exchange {
                version: Version::HTTP_11,
                head_request: false,
                keep_alive,
            };
            let keep_alive = match answer {
                RawAnswer::Declined | RawAnswer::Again => None,
                RawAnswer::Answer(resp) => {
                    wbuf.clear();
                    let (parts, body) = resp.into_parts();
                    let mut body = Tracked::new(body, guard);
                    let (framing, keep_alive) = encode_head(&mut wbuf, parts, &body, exchange);
                    write_body(io, &mut wbuf, &mut body, framing).await?;
                    Some(keep_alive)
                }
                RawAnswer::Relay {
                    body,
                    framing,
                    keep_alive,
                } => {
                    let mut body = Tracked::new(body, guard);
                    write_body(io, &mut wbuf, &mut body, framing).await?;
                    Some(keep_alive)
                }
            };
            match keep_alive {
                Some(true) => continue,
                Some(false) => {
                    let _ = io.shutdown().await;
                    return Ok(Next::Closed);
                }
                None => {}
            }
        }
        let Some(head) = build_request(&raw, &scanned, fields) else {
            let mut rest = raw.to_vec();
            rest.extend_from_slice(&rbuf);
            return Ok(Next::ToHyper(rest));
        };
        let version = head.request.version();
        let mut answer = pin!(per.answer(handler, head.request, H::respond));
        let Some(resp) = watch_client(io, &mut rbuf, max_head, answer.as_mut()).await else {
            return Ok(Next::Closed);
        };
        let Ok(resp) = resp;
        let keep_alive = head.keep_alive && !closing.load(Ordering::Relaxed);
        let (parts, mut body) = resp.into_parts();
        wbuf.clear();
        let (framing, keep_alive) = encode_head(
            &mut wbuf,
            parts,
            &body,
            Exchange {
                version,
                head_request: head.head_request,
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

/// Awaits an answer while watching the socket the way hyper does: an EOF means the
/// client left and the exchange is cancelled (`None`, nginx's 499), and the bytes of a
/// pipelined request wait in the buffer.
async fn watch_client<I, F>(
    io: &mut I,
    rbuf: &mut BytesMut,
    max_head: usize,
    answer: F,
) -> Option<F::Output>
where
    I: AsyncRead + Unpin,
    F: Future,
{
    let mut answer = pin!(answer);
    poll_fn(|cx| {
        if let Poll::Ready(out) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        while rbuf.len() < max_head {
            match poll_read(io, cx, rbuf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
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
    head_request: bool,
}

/// What the front of the read buffer holds.
enum Scan {
    Plain(Scanned),
    Partial,
    /// Anything hyper should serve: a body, an upgrade, a malformed or oversized head.
    NotPlain,
}

/// A plain head found at the front of the buffer, its fields' places in `Spans`.
struct Scanned {
    len: usize,
    method: Method,
    method_span: (u32, u32),
    target: (u32, u32),
    minor: u8,
    keep_alive: bool,
    /// The longest field (name and value), for the per-line limit.
    longest_line: usize,
}

/// Fields a handler may add to a request (the proxy's forwarded family is seven).
const ADDED_FIELDS: usize = 8;
/// Heads with more fields than this list them on the heap.
const SMALL_HEAD: usize = 24;

/// The places of one head's fields, kept by the connection across requests.
type Spans = SpanList<Span, SMALL_HEAD>;

/// Finds a plain request's head at the front of `buf` and the places of its parts,
/// without taking it off the buffer.
fn scan_head(buf: &BytesMut, spans: &mut Spans) -> Scan {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Scan::Partial,
        Err(_) => return Scan::NotPlain,
    };
    let (Some(method_text), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Scan::NotPlain;
    };
    let Ok(method) = Method::from_bytes(method_text.as_bytes()) else {
        return Scan::NotPlain;
    };
    if method == Method::CONNECT {
        return Scan::NotPlain;
    }
    let base = buf.as_ptr() as usize;
    // Offsets fit: the head is bounded by the read limit.
    let at = |s: &[u8]| ((s.as_ptr() as usize - base) as u32, s.len() as u32);
    let mut close = false;
    let mut keep_alive_token = false;
    let mut longest_line = 0;
    for (span, h) in spans
        .reset(req.headers.len())
        .iter_mut()
        .zip(req.headers.iter())
    {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            if h.value.trim_ascii() != b"0" {
                return Scan::NotPlain;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return Scan::NotPlain;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        longest_line = longest_line.max(name.len() + h.value.len());
        *span = Span {
            name: at(name),
            value: at(h.value),
        };
    }
    let keep_alive = match minor {
        0 => keep_alive_token && !close,
        _ => !close,
    };
    Scan::Plain(Scanned {
        len,
        method,
        method_span: at(method_text.as_bytes()),
        target: at(path.as_bytes()),
        minor,
        keep_alive,
        longest_line,
    })
}

/// The `Request` of a scanned head. Its header values share the head's bytes (hyper's
/// way: no copy per value), and its map comes from the thread's pool, so a request costs
/// no map allocation. `None`: the head is one hyper should answer.
fn build_request(head: &Bytes, scanned: &Scanned, spans: &[Span]) -> Option<Head> {
    let range = |(at, len): (u32, u32)| at as usize..(at + len) as usize;
    let uri = Uri::from_maybe_shared(head.slice(range(scanned.target))).ok()?;
    // Room for what the proxy adds (the forwarded family) at once: growing a map later
    // reallocates and rehashes it.
    let mut headers = header_pool::take(spans.len() + ADDED_FIELDS);
    for span in spans.iter() {
        let name = HeaderName::from_bytes(&head[range(span.name)]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(range(span.value))).ok()?;
        headers.append(name, value);
    }
    let head_request = scanned.method == Method::HEAD;
    let mut request = Request::new(RequestBody::Empty);
    *request.method_mut() = scanned.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = match scanned.minor {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    *request.headers_mut() = headers;
    Some(Head {
        request,
        keep_alive: scanned.keep_alive,
        head_request,
    })
}

/// What `parse_head` found (the fuzz target's and the tests' view of one step).
// The head moves once per request either way; boxing it would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Plain(Head),
    Partial,
    NotPlain,
    /// Refused once already taken off the buffer.
    Taken(#[allow(dead_code)] Bytes),
}

/// Scans and takes the head at the front of `buf`, building its request.
fn parse_head(buf: &mut BytesMut) -> Parsed {
    let mut spans = Spans::default();
    match scan_head(buf, &mut spans) {
        Scan::Partial => Parsed::Partial,
        Scan::NotPlain => Parsed::NotPlain,
        Scan::Plain(scanned) => {
            let head = buf.split_to(scanned.len).freeze();
            match build_request(&head, &scanned, spans.as_slice()) {
                Some(built) => Parsed::Plain(built),
                None => Parsed::Taken(head),
            }
        }
    }
}

/// Each head `serve` would take off the front of `data`, written back out in the
/// canonical form (lower-case names, trimmed values): the fuzz target's view.
pub(crate) fn heads_of(data: &[u8]) -> Vec<Vec<u8>> {
    let mut buf = BytesMut::from(data);
    let mut heads = Vec::new();
    while let Parsed::Plain(head) = parse_head(&mut buf) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(raw);
        let parsed = parse_head(&mut buf);
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

    /// Serves what `client_sends` holds with `closing` set from the start, as when the
    /// connection is asked to close (stop, idle limit, pressure) right after an answer the
    /// client took as keep-alive. Returns what the client read until the connection ended.
    async fn serve_while_closing(client_sends: &[u8]) -> (Vec<u8>, Next) {
        use tokio::io::AsyncReadExt;
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client
            .write_all(client_sends)
            .await
            .expect("write to the duplex");
        let handler: super::super::Handler = std::sync::Arc::new(|req, _conn| {
            let path = req.uri().path().to_owned();
            Box::pin(async move { http::Response::new(crate::body::full(path)) })
        });
        let per = PerRequest::for_tests();
        let closing = AtomicBool::new(true);
        let next = serve(&mut server, &per, &handler, 64 * 1024, &closing)
            .await
            .expect("serving");
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        (got, next)
    }

    #[tokio::test]
    async fn a_request_already_in_the_socket_is_answered_before_an_asked_close() {
        let (got, next) = serve_while_closing(b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n").await;
        let got = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(got.starts_with("http/1.1 200"), "{got}");
        assert!(got.contains("\r\nconnection: close\r\n"), "{got}");
        assert!(got.ends_with("/late"), "{got}");
        assert!(matches!(next, Next::Closed));
    }

    #[tokio::test]
    async fn an_idle_connection_asked_to_close_goes_at_once() {
        let (got, next) = serve_while_closing(b"").await;
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        assert!(matches!(next, Next::Closed));
    }
}
