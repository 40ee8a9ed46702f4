//! The upstream side: one pool of kept-alive connections per endpoint, chosen round robin,
//! and one exchange (write the head, read the answer's head and its `Content-Length` body).
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Pool {
    backends: Vec<SocketAddr>,
    idle: Vec<Vec<TcpStream>>,
    next: usize,
}

pub type SharedPool = Rc<RefCell<Pool>>;

impl Pool {
    pub fn new(backends: Vec<SocketAddr>) -> Self {
        let idle = backends.iter().map(|_| Vec::new()).collect();
        Pool {
            backends,
            idle,
            next: 0,
        }
    }
}

/// A read buffer that hands out its filled part and refills from the front once empty.
pub struct Buf {
    data: Box<[u8]>,
    pub start: usize,
    pub end: usize,
}

impl Buf {
    pub fn new(size: usize) -> Self {
        Buf {
            data: vec![0; size].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Reads more; `Ok(0)` at end of stream. A head that fills the whole buffer is an
    /// error (`Ok(0)` too): the floor does not grow buffers.
    pub async fn fill<S: AsyncRead + Unpin>(&mut self, io: &mut S) -> std::io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.data.len() {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = io.read(&mut self.data[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// Fields a proxy never forwards as they came, plus `Host`, which it writes itself.
pub fn is_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "host",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-connection",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// The harness' one route.
pub fn routed(host: &[u8], path: &str) -> bool {
    host == b"bench.local" && (path == "/api" || path.starts_with("/api/"))
}

/// Appends one `name: value` line.
pub fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for part in [name, b": ", value, b"\r\n"] {
        out.extend_from_slice(part);
    }
}

/// Appends the upstream request head.
pub fn write_head<'h>(
    out: &mut Vec<u8>,
    method: &str,
    path: &str,
    host: &[u8],
    client: &[u8],
    proto: &[u8],
    fields: impl Iterator<Item = (&'h str, &'h [u8])>,
) {
    for part in [
        method.as_bytes(),
        b" ",
        path.as_bytes(),
        b" HTTP/1.1\r\nhost: ",
        host,
    ] {
        out.extend_from_slice(part);
    }
    for part in [
        b"\r\nx-forwarded-for: ".as_slice(),
        client,
        b"\r\nx-forwarded-proto: ",
        proto,
    ] {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in fields.filter(|(name, _)| !is_hop(name)) {
        put_field(out, name.as_bytes(), value);
    }
    out.extend_from_slice(b"\r\n");
}

/// Sends `head` to the next endpoint and reads the answer into `buf`: `on_head` gets
/// `out`, the status, reason and fields, then the body is appended to `out`. `false` on any failure
/// (the connection is dropped, not pooled).
pub async fn exchange(
    pool: &SharedPool,
    head: &[u8],
    buf: &mut Buf,
    mut on_head: impl FnMut(&mut Vec<u8>, u16, &str, &[httparse::Header<'_>]),
    out: &mut Vec<u8>,
) -> bool {
    let (index, idle, addr) = {
        let mut p = pool.borrow_mut();
        let i = p.next;
        p.next = (i + 1) % p.backends.len();
        (i, p.idle[i].pop(), p.backends[i])
    };
    let mut up = match idle {
        Some(conn) => conn,
        None => match TcpStream::connect(addr).await {
            Ok(conn) => {
                let _ = conn.set_nodelay(true);
                conn
            }
            Err(_) => return false,
        },
    };
    if up.write_all(head).await.is_err() {
        return false;
    }
    buf.start = 0;
    buf.end = 0;
    let (head_len, length) = loop {
        if buf.start != buf.end {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut fields);
            match resp.parse(buf.filled()) {
                Ok(httparse::Status::Complete(n)) => {
                    let length = resp
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok());
                    let Some(length) = length else {
                        return false;
                    };
                    on_head(
                        out,
                        resp.code.unwrap_or(502),
                        resp.reason.unwrap_or(""),
                        resp.headers,
                    );
                    break (n, length);
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return false,
            }
        }
        if !matches!(buf.fill(&mut up).await, Ok(1..)) {
            return false;
        }
    };
    buf.start += head_len;
    let mut left: usize = length;
    loop {
        let have = (buf.end - buf.start).min(left);
        out.extend_from_slice(&buf.data[buf.start..buf.start + have]);
        buf.start += have;
        left -= have;
        if left == 0 {
            break;
        }
        if !matches!(buf.fill(&mut up).await, Ok(1..)) {
            return false;
        }
    }
    pool.borrow_mut().idle[index].push(up);
    true
}
