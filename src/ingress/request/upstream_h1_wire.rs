//! HTTP/1.1 as bytes on a pod connection: the request head we write, the response head we
//! parse, and how the response body is framed (RFC 9112 §6).
//!
//! Why our own: hyper's client connection runs in a task of its own and hands each
//! request, response head and body chunk across channels, so a proxied request woke two
//! tasks and crossed four channels. Written and read in the request's own task, the
//! exchange is a write, a read and a parse.
//!
//! Failure behaviour: anything malformed from the pod is a `WireError` (the request gets
//! a 502 and the connection is closed); nothing here panics on what a pod sends.
use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::http_text::{format_u64, put_field};
use crate::span_list::SpanList;

/// Largest response head (or trailer section) we wait for.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one response head.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;

/// What a pod sent that is not HTTP/1.1 we can pass on.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed response head from upstream: {0}")]
    BadHead(httparse::Error),
    #[error("upstream response head is over {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("upstream sent a header that is not valid HTTP")]
    BadHeader,
    #[error("upstream sent an invalid or conflicting Content-Length")]
    BadLength,
    #[error("malformed chunked body from upstream")]
    BadChunk,
    #[error("upstream closed the connection before the response head was complete")]
    ClosedBeforeHead,
    #[error("upstream closed the connection before the response body was complete")]
    ClosedInBody,
}

/// How the request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// No body and no length header (GET, HEAD, … without one).
    None,
    Length(u64),
    Chunked,
}

impl RequestFraming {
    /// From the body's size hint: an exact size is a `Content-Length`, anything else
    /// chunked; an empty body states its zero length where the method expects a body.
    pub(crate) fn of(method: &Method, exact: Option<u64>, had_length: bool) -> Self {
        match exact {
            Some(0) if had_length || !matches!(*method, Method::GET | Method::HEAD) => {
                RequestFraming::Length(0)
            }
            Some(0) => RequestFraming::None,
            Some(n) => RequestFraming::Length(n),
            None => RequestFraming::Chunked,
        }
    }
}

/// Writes `METHOD path HTTP/1.1`, the headers, and the framing header of our choosing.
/// The caller's own `Content-Length`/`Transfer-Encoding` are left out: the framing
/// follows the body we actually send.
pub(crate) fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    host: Option<&HeaderValue>,
    framing: RequestFraming,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if path_and_query.is_empty() {
        b"/"
    } else {
        path_and_query.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = host {
        put_field(out, header::HOST.as_str().as_bytes(), host.as_bytes());
    }
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            let mut digits = [0u8; 20];
            out.extend_from_slice(format_u64(n, &mut digits));
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// The line that opens one chunk of a chunked request body.
pub(crate) fn chunk_size_line(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Until the pod closes the connection.
    UntilClose,
    /// 101: the connection now belongs to another protocol.
    Upgrade,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: BodyFraming,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
}

/// A final response head found at the front of a buffer, before anything is copied out
/// of it: where its fields are (in the `ResponseSpans` it was scanned into), and what they
/// say about the status, the body and the connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScannedHead {
    /// Bytes of the head, blank line included.
    pub(crate) len: usize,
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) framing: BodyFraming,
    pub(crate) keep_alive: bool,
    /// A `Transfer-Encoding` came with a `Content-Length`: the length does not describe
    /// the body and must not be passed on (RFC 9112 §6.3).
    pub(crate) stale_length: bool,
    /// A `Connection` token other than `close` and `keep-alive`: it names fields that are
    /// hop-by-hop for this response, so each field has to be checked against the tokens.
    pub(crate) connection_names_fields: bool,
    /// A `TE` field lists `trailers` (the usual path passes `TE: trailers` on).
    pub(crate) te_trailers: bool,
}

/// The places of one response head's fields.
#[derive(Default)]
pub(crate) struct ResponseSpans(SpanList<Span, SMALL_HEAD>);

impl std::fmt::Debug for ResponseSpans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSpans")
            .field("fields", &self.len())
            .finish()
    }
}

impl ResponseSpans {
    /// How many fields the head has.
    pub(crate) fn len(&self) -> usize {
        self.0.as_slice().len()
    }

    /// Each field of the head `head` (the scanned bytes), as sent.
    pub(crate) fn fields<'h>(
        &'h self,
        head: &'h [u8],
    ) -> impl Iterator<Item = (&'h [u8], &'h [u8])> + 'h {
        self.0.as_slice().iter().map(move |s| {
            (
                &head[s.n_at..s.n_at + s.n_len],
                &head[s.v_at..s.v_at + s.v_len],
            )
        })
    }
}

/// Finds the next final response head at the front of `buf`, dropping interim (1xx other
/// than 101) responses before it, and works out its framing (RFC 9112 §6.3) from the raw
/// fields. `Ok(None)`: not all of it has arrived yet. Both the map-building parse below
/// and the plain lane, which copies fields straight to the client, frame by this.
pub(crate) fn scan_response_head(
    buf: &mut BytesMut,
    head_request: bool,
    spans: &mut ResponseSpans,
) -> Result<Option<ScannedHead>, WireError> {
    loop {
        // Slots left uninitialised: the parser writes those it fills, and zeroing all of
        // them (4 KiB) on every response showed in the profile as `memset`.
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
        {
            // However it arrived: one read or many must mean the same.
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
                return Err(WireError::HeadTooLarge);
            }
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                return match buf.len() > MAX_HEAD {
                    true => Err(WireError::HeadTooLarge),
                    false => Ok(None),
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err(WireError::HeadTooLarge),
            Err(e) => return Err(WireError::BadHead(e)),
        };
        let code = resp.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| WireError::BadHeader)?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            // 100 Continue, 103 Early Hints: the final answer follows on the same bytes.
            let _ = buf.split_to(len);
            continue;
        }
        let version = match resp.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let base = buf.as_ptr() as usize;
        let mut lengths: Option<u64> = None;
        let mut bad_length = false;
        let mut chunked = false;
        let mut has_te = false;
        let mut close = false;
        let mut keep_alive_token = false;
        let mut connection_names_fields = false;
        let mut te_trailers = false;
        // Everything the lanes need to know of the fields is learnt in this one pass.
        let fields = spans.0.reset(resp.headers.len());
        for (span, h) in fields.iter_mut().zip(resp.headers.iter()) {
            let name = h.name.as_bytes();
            *span = Span::of(base, name, h.value);
            if name.eq_ignore_ascii_case(b"content-length") {
                match parse_length(h.value) {
                    Some(n) if lengths.is_none_or(|l| l == n) => lengths = Some(n),
                    _ => bad_length = true,
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                has_te = true;
                // Only the last coding decides whether the body is chunked.
                chunked = last_token(h.value).eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    let is_close = token.eq_ignore_ascii_case(b"close");
                    let is_keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
                    close |= is_close;
                    keep_alive_token |= is_keep_alive;
                    connection_names_fields |= !token.is_empty() && !is_close && !is_keep_alive;
                }
            } else if name.eq_ignore_ascii_case(b"te") {
                te_trailers |= crate::http_text::lists_trailers(h.value);
            }
        }
        let no_body =
            head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let framing = if status == StatusCode::SWITCHING_PROTOCOLS {
            BodyFraming::Upgrade
        } else if no_body {
            BodyFraming::Empty
        } else if has_te {
            match chunked {
                true => BodyFraming::Chunked,
                false => BodyFraming::UntilClose,
            }
        } else if bad_length {
            return Err(WireError::BadLength);
        } else {
            match lengths {
                Some(0) => BodyFraming::Empty,
                Some(n) => BodyFraming::Length(n),
                None => BodyFraming::UntilClose,
            }
        };
        let keep_alive = match version {
            Version::HTTP_10 => keep_alive_token && !close,
            _ => !close,
        } && framing != BodyFraming::UntilClose
            // Both framings at once is a smuggling shape: use the body, then drop the
            // connection.
            && !(has_te && lengths.is_some());
        return Ok(Some(ScannedHead {
            len,
            status,
            version,
            framing,
            keep_alive,
            stale_length: has_te && lengths.is_some(),
            connection_names_fields,
            te_trailers,
        }));
    }
}

/// Parses the next final response head at the front of `buf` into a header map, skipping
/// interim responses. `Ok(None)`: not all of it has arrived yet.
pub(crate) fn parse_response_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<ResponseHead>, WireError> {
    let mut spans = ResponseSpans::default();
    let Some(scanned) = scan_response_head(buf, head_request, &mut spans)? else {
        return Ok(None);
    };
    let head = buf.split_to(scanned.len).freeze();
    // Room for what the response filters may add; the map goes back to the pool once
    // the answer is written. Values borrow the head's bytes (no copy per value).
    let mut headers = crate::header_pool::take(spans.0.len() + 4);
    for &Span {
        n_at,
        n_len,
        v_at,
        v_len,
    } in spans.0.as_slice()
    {
        let name =
            HeaderName::from_bytes(&head[n_at..n_at + n_len]).map_err(|_| WireError::BadHeader)?;
        if scanned.stale_length && name == header::CONTENT_LENGTH {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(v_at..v_at + v_len))
            .map_err(|_| WireError::BadHeader)?;
        headers.append(name, value);
    }
    Ok(Some(ResponseHead {
        status: scanned.status,
        version: scanned.version,
        headers,
        framing: scanned.framing,
        keep_alive: scanned.keep_alive,
    }))
}

/// Response heads with at most this many fields keep their field positions on the stack.
const SMALL_HEAD: usize = 24;

/// Where one field's name and value sit in the response head.
#[derive(Clone, Copy, Default)]
struct Span {
    n_at: usize,
    n_len: usize,
    v_at: usize,
    v_len: usize,
}

impl Span {
    fn of(base: usize, name: &[u8], value: &[u8]) -> Span {
        Span {
            n_at: name.as_ptr() as usize - base,
            n_len: name.len(),
            v_at: value.as_ptr() as usize - base,
            v_len: value.len(),
        }
    }
}

fn parse_length(value: &[u8]) -> Option<u64> {
    // A list of equal values ("42, 42") is one length (RFC 9110 §8.6).
    let mut found: Option<u64> = None;
    for part in value.split(|b| *b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|b| *b == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// One step of decoding a chunked body.
#[derive(Debug)]
pub(crate) enum Chunk {
    Data(Bytes),
    /// The end, with the trailer fields (often none).
    End(Option<HeaderMap>),
    /// More bytes are needed.
    More,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// Decodes a chunked body from the connection's read buffer, handing data on without
/// copying it.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self {
            state: ChunkState::Size,
        }
    }
}

impl ChunkedDecoder {
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Chunk, WireError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(eol) = buf.iter().position(|b| *b == b'\n') else {
                        return match buf.len() > MAX_CHUNK_LINE {
                            true => Err(WireError::BadChunk),
                            false => Ok(Chunk::More),
                        };
                    };
                    if eol > MAX_CHUNK_LINE {
                        return Err(WireError::BadChunk);
                    }
                    let size = parse_chunk_size(&buf[..eol])?;
                    let _ = buf.split_to(eol + 1);
                    self.state = match size {
                        0 => ChunkState::Trailers,
                        n => ChunkState::Data(n),
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Chunk::More);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = match left {
                        0 => ChunkState::DataEnd,
                        n => ChunkState::Data(n),
                    };
                    return Ok(Chunk::Data(data));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|b| *b != b'\r' && *b != b'\n') {
                            return Err(WireError::BadChunk);
                        }
                        if buf.first() == Some(&b'\n') {
                            let _ = buf.split_to(1);
                            self.state = ChunkState::Size;
                            continue;
                        }
                        return Ok(Chunk::More);
                    }
                    match (buf[0], buf[1]) {
                        (b'\r', b'\n') => {
                            let _ = buf.split_to(2);
                        }
                        (b'\n', _) => {
                            let _ = buf.split_to(1);
                        }
                        _ => return Err(WireError::BadChunk),
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (len, fields) = match httparse::parse_headers(buf, &mut slots) {
                        Ok(httparse::Status::Complete((len, _))) if len > MAX_HEAD => {
                            return Err(WireError::HeadTooLarge);
                        }
                        Ok(httparse::Status::Complete((len, fields))) => (len, fields),
                        Ok(httparse::Status::Partial) => {
                            return match buf.len() > MAX_HEAD {
                                true => Err(WireError::HeadTooLarge),
                                false => Ok(Chunk::More),
                            };
                        }
                        Err(_) => return Err(WireError::BadChunk),
                    };
                    let trailers = match fields.is_empty() {
                        true => None,
                        false => {
                            let mut map = HeaderMap::with_capacity(fields.len());
                            for f in fields.iter() {
                                let name = HeaderName::from_bytes(f.name.as_bytes())
                                    .map_err(|_| WireError::BadHeader)?;
                                let value = HeaderValue::from_bytes(f.value)
                                    .map_err(|_| WireError::BadHeader)?;
                                map.append(name, value);
                            }
                            Some(map)
                        }
                    };
                    let _ = buf.split_to(len);
                    self.state = ChunkState::Done;
                    return Ok(Chunk::End(trailers));
                }
                ChunkState::Done => return Ok(Chunk::End(None)),
            }
        }
    }
}

/// The hex size before any `;extension`, with the line's CR.
fn parse_chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(WireError::BadChunk);
    }
    let mut n: u64 = 0;
    for d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(WireError::BadChunk),
        };
        n = n * 16 + u64::from(v);
    }
    Ok(n)
}

/// A pod's whole answer fed to the parser `step` bytes at a time, as a socket delivers
/// it: the head, then the body when it is chunked. For the fuzz target and the tests.
pub(crate) fn read_fed(
    data: &[u8],
    step: usize,
    head_request: bool,
) -> Result<(ResponseHead, Vec<u8>, Option<HeaderMap>), WireError> {
    let step = step.max(1);
    let mut buf = BytesMut::new();
    let mut rest = data;
    let mut feed = |buf: &mut BytesMut| {
        let (now, later) = rest.split_at(step.min(rest.len()));
        buf.extend_from_slice(now);
        rest = later;
        !now.is_empty()
    };
    let head = loop {
        if let Some(head) = parse_response_head(&mut buf, head_request)? {
            break head;
        }
        if !feed(&mut buf) {
            return Err(WireError::ClosedBeforeHead);
        }
    };
    let mut body = Vec::new();
    if head.framing != BodyFraming::Chunked {
        return Ok((head, body, None));
    }
    let mut decoder = ChunkedDecoder::default();
    loop {
        match decoder.decode(&mut buf)? {
            Chunk::Data(d) => body.extend_from_slice(&d),
            Chunk::End(trailers) => return Ok((head, body, trailers)),
            Chunk::More if feed(&mut buf) => {}
            Chunk::More => return Err(WireError::ClosedInBody),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, head_request: bool) -> Result<Option<ResponseHead>, WireError> {
        parse_response_head(&mut BytesMut::from(raw), head_request)
    }

    #[test]
    fn request_head_uses_our_framing_and_puts_host_first() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::POST,
            "/a?b=c",
            &headers,
            Some(&HeaderValue::from_static("shop.test")),
            RequestFraming::Length(12),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a?b=c HTTP/1.1\r\nhost: shop.test\r\nx-a: 1\r\ncontent-length: 12\r\n\r\n"
        );
    }

    #[test]
    fn request_framing_follows_the_body_and_the_method() {
        assert_eq!(
            RequestFraming::of(&Method::GET, Some(0), false),
            RequestFraming::None
        );
        assert_eq!(
            RequestFraming::of(&Method::GET, Some(0), true),
            RequestFraming::Length(0)
        );
        assert_eq!(
            RequestFraming::of(&Method::POST, Some(0), false),
            RequestFraming::Length(0)
        );
        assert_eq!(
            RequestFraming::of(&Method::PUT, Some(7), false),
            RequestFraming::Length(7)
        );
        assert_eq!(
            RequestFraming::of(&Method::POST, None, false),
            RequestFraming::Chunked
        );
    }

    #[test]
    fn response_heads_are_framed_as_rfc_9112_says() {
        let h = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-u: a\r\n\r\nhello",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.framing, BodyFraming::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.headers["x-u"], "a");

        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, BodyFraming::Empty, "HEAD has no body");
        let h = head(
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, BodyFraming::Empty);
        let h = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, BodyFraming::Chunked);
        let h = head("HTTP/1.1 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert_eq!(h.framing, BodyFraming::UntilClose);
        assert!(!h.keep_alive);
        let h = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive, "HTTP/1.0 closes unless it says keep-alive");
        let h = head(
            "HTTP/1.0 200 OK\r\ncontent-length: 1\r\nconnection: keep-alive\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(h.keep_alive);
        let h = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, BodyFraming::Chunked);
        assert!(
            !h.keep_alive,
            "both framings: the connection is not trusted again"
        );
        assert!(
            !h.headers.contains_key("content-length"),
            "both framings: the length is not passed on"
        );
        let h = head(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, BodyFraming::Upgrade);
    }

    #[test]
    fn interim_responses_are_skipped_and_partial_heads_wait() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
        );
        let h = parse_response_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::CREATED);
        assert!(buf.is_empty());
        assert!(
            head("HTTP/1.1 200 OK\r\ncontent-len", false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn every_field_keeps_its_value_on_either_side_of_the_small_head_size() {
        // At, just over and far over the stack array's size, values must still line up
        // with their names; over MAX_HEADERS the head is refused.
        for count in [SMALL_HEAD, SMALL_HEAD + 1, MAX_HEADERS] {
            let mut raw = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..count {
                raw.push_str(&format!("x-f{i}: value-{i}\r\n"));
            }
            raw.push_str("content-length: 3\r\n\r\nabc");
            let mut buf = BytesMut::from(raw.as_str());
            let h = match count < MAX_HEADERS {
                true => parse_response_head(&mut buf, false).unwrap().unwrap(),
                false => {
                    let refused = parse_response_head(&mut buf, false);
                    assert!(matches!(refused, Err(WireError::HeadTooLarge)), "{count}");
                    continue;
                }
            };
            assert_eq!(h.headers.len(), count + 1);
            for i in 0..count {
                assert_eq!(h.headers[format!("x-f{i}").as_str()], format!("value-{i}"));
            }
            assert_eq!(h.framing, BodyFraming::Length(3));
            assert_eq!(&buf[..], b"abc");
        }
    }

    #[test]
    fn bad_heads_are_errors() {
        assert!(matches!(
            head(
                "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                false
            ),
            Err(WireError::BadLength)
        ));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", false),
            Err(WireError::BadLength)
        ));
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 4, 4\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, BodyFraming::Length(4));
        assert!(matches!(
            head("HTTX 200\r\n\r\n", false),
            Err(WireError::BadHead(_))
        ));
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD + 1));
        assert!(matches!(head(&huge, false), Err(WireError::HeadTooLarge)));
    }

    fn decode_all(raw: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>), WireError> {
        let mut data = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        data.extend_from_slice(raw);
        read_fed(&data, step, false).map(|(_, body, trailers)| (body, trailers))
    }

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let raw = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-sum: 9\r\n\r\n";
        for step in 1..raw.len() {
            let (body, trailers) = decode_all(raw, step).unwrap();
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
            assert_eq!(trailers.unwrap()["x-sum"], "9");
        }
        let (body, trailers) = decode_all(b"3\r\nabc\r\n0\r\n\r\n", 64).unwrap();
        assert_eq!(body, b"abc");
        assert!(trailers.is_none());
    }

    #[test]
    fn bad_chunks_are_errors() {
        assert!(matches!(
            decode_all(b"zz\r\n", 64),
            Err(WireError::BadChunk)
        ));
        assert!(matches!(
            decode_all(b"3\r\nabcX\r\n0\r\n\r\n", 64),
            Err(WireError::BadChunk)
        ));
        assert!(matches!(
            decode_all(b"ffffffffffffffffff\r\n", 64),
            Err(WireError::BadChunk)
        ));
        let long = [b'1'; MAX_CHUNK_LINE + 2];
        assert!(matches!(decode_all(&long, 8192), Err(WireError::BadChunk)));
    }
}
