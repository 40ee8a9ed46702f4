//! The answer side of the server's own HTTP/1.x (`h1.rs`): the response head written the
//! way hyper writes it for the same response (framing, `Connection`, `Date`), and the
//! body after it, gathered behind the head while its pieces are ready so a small answer
//! leaves in one write.
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Version};
use http_body::{Body as _, Frame};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::activity::Tracked;
use crate::http_text::{format_u64, put_field};

/// Body pieces at least this large are written as they are rather than copied behind
/// the head.
const WRITE_DIRECT: usize = 16 * 1024;
/// Buffered response bytes past this are written before more are gathered.
const WRITE_HIGH: usize = 64 * 1024;

/// What the response head depends on from its request.
#[derive(Clone, Copy)]
pub(super) struct Exchange {
    pub(super) version: Version,
    pub(super) head_request: bool,
    /// Whether the client and the connection's state allow another request.
    pub(super) keep_alive: bool,
}

/// How the body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
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
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    parts: http::response::Parts,
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
    crate::header_pool::give(headers);
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

fn put_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(format_u64(n, &mut [0; 20]));
    out.extend_from_slice(b"\r\n");
}

/// Sends the head in `out` and the body after it. Pieces that are ready are gathered
/// behind the head, so a small answer leaves in one write.
pub(super) async fn write_body<I: AsyncWrite + Unpin>(
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

    fn encoded(resp: Response<crate::body::Body>, ex: Exchange) -> (String, Framing, bool) {
        let activity = super::super::activity::Activity::new();
        let (parts, body) = resp.into_parts();
        let body = Tracked::new(body, activity.start(false));
        let mut out = Vec::new();
        let (framing, keep) = encode_head(&mut out, parts, &body, ex);
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
    }
}
