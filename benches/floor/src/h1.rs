//! HTTP/1.1 keep-alive from the client: one read buffer, one upstream head and one answer
//! buffer per connection, reused for every request.
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::switch;
use crate::upstream::{Buf, SharedPool, exchange, is_hop, put_field, routed, write_head};

static MAPS: OnceLock<bool> = OnceLock::new();
static TIMER: OnceLock<bool> = OnceLock::new();

/// Replaces `map`'s contents with the parsed fields (any the `http` crate refuses are left
/// out: the harness sends none).
fn fill_map(map: &mut HeaderMap, fields: &[httparse::Header<'_>]) {
    map.clear();
    for f in fields {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(f.name.as_bytes()),
            HeaderValue::from_bytes(f.value),
        ) {
            map.append(n, v);
        }
    }
}

/// The request's fields, with what portcullis adds beside the two forwarded fields the
/// floor writes itself (`FLOOR_MAPS`).
fn request_map(map: &mut HeaderMap, fields: &[httparse::Header<'_>], client: &[u8], host: &[u8]) {
    fill_map(map, fields);
    let added: [(&'static str, &[u8]); 4] = [
        ("x-real-ip", client),
        ("x-request-id", b"0123456789abcdef0123456789abcdef"),
        ("x-forwarded-host", host),
        ("x-forwarded-port", b"80"),
    ];
    for (name, value) in added {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            map.insert(HeaderName::from_static(name), v);
        }
    }
}

pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    pool: SharedPool,
    peer: SocketAddr,
    proto: &'static [u8],
) {
    let maps = switch(&MAPS, "FLOOR_MAPS");
    let timer = switch(&TIMER, "FLOOR_TIMER");
    let mut input = Buf::new(16384);
    let mut answer = Buf::new(16384);
    let mut head: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut req_map = HeaderMap::with_capacity(16);
    let mut resp_map = HeaderMap::with_capacity(16);
    let ip = peer.ip().to_string();
    loop {
        let (head_len, found) = loop {
            if input.start != input.end {
                let mut fields = [httparse::EMPTY_HEADER; 64];
                let mut req = httparse::Request::new(&mut fields);
                match req.parse(input.filled()) {
                    Ok(httparse::Status::Complete(n)) => {
                        head.clear();
                        let host = req
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("host"));
                        let host = host.map_or(&b""[..], |h| h.value);
                        let path = req.path.unwrap_or("/");
                        let method = req.method.unwrap_or("GET");
                        let found = routed(host, path);
                        if found && maps {
                            request_map(&mut req_map, req.headers, ip.as_bytes(), host);
                            let Ok(pq) = path.parse::<http::uri::PathAndQuery>() else {
                                return;
                            };
                            let fields = req_map.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
                            write_head(
                                &mut head,
                                method,
                                pq.as_str(),
                                host,
                                ip.as_bytes(),
                                proto,
                                fields,
                            );
                        } else if found {
                            let fields = req.headers.iter().map(|h| (h.name, h.value));
                            write_head(&mut head, method, path, host, ip.as_bytes(), proto, fields);
                        }
                        break (n, found);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(_) => return,
                }
            }
            if !matches!(input.fill(&mut client).await, Ok(1..)) {
                return;
            }
        };
        input.start += head_len;
        out.clear();
        if !found {
            out.extend_from_slice(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        } else {
            let on_head =
                |out: &mut Vec<u8>, code: u16, reason: &str, fields: &[httparse::Header<'_>]| {
                    let digits = [
                        b'0' + (code / 100 % 10) as u8,
                        b'0' + (code / 10 % 10) as u8,
                        b'0' + (code % 10) as u8,
                    ];
                    for part in [
                        b"HTTP/1.1 ".as_slice(),
                        &digits,
                        b" ",
                        reason.as_bytes(),
                        b"\r\n",
                    ] {
                        out.extend_from_slice(part);
                    }
                    if maps {
                        fill_map(&mut resp_map, fields);
                        for (n, v) in resp_map.iter().filter(|(n, _)| !is_hop(n.as_str())) {
                            put_field(out, n.as_str().as_bytes(), v.as_bytes());
                        }
                    } else {
                        for f in fields.iter().filter(|f| !is_hop(f.name)) {
                            put_field(out, f.name.as_bytes(), f.value);
                        }
                    }
                    out.extend_from_slice(b"\r\n");
                };
            let ex = exchange(&pool, &head, &mut answer, on_head, &mut out);
            let ok = match timer {
                true => tokio::time::timeout(Duration::from_secs(60), ex)
                    .await
                    .unwrap_or(false),
                false => ex.await,
            };
            if !ok {
                return;
            }
        }
        if client.write_all(&out).await.is_err() {
            return;
        }
    }
}
