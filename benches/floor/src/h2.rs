//! HTTP/2 from the client: a task per stream, through the h2 crate directly, or through
//! hyper's server with `FLOOR_HYPER` (what portcullis uses).
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::switch;
use crate::upstream::{Buf, SharedPool, exchange, is_hop, routed, write_head};

static HYPER: OnceLock<bool> = OnceLock::new();

pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    io: S,
    pool: SharedPool,
    peer: SocketAddr,
) {
    let client: Rc<[u8]> = peer.ip().to_string().into_bytes().into();
    if switch(&HYPER, "FLOOR_HYPER") {
        return serve_hyper(io, pool, client).await;
    }
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        let pool = pool.clone();
        let client = client.clone();
        tokio::task::spawn_local(async move {
            let (status, fields, body) = proxy(&req, &pool, &client).await;
            let mut resp = Response::new(());
            *resp.status_mut() = status;
            *resp.headers_mut() = fields;
            if let Ok(mut stream) = respond.send_response(resp, body.is_empty())
                && !body.is_empty()
            {
                let _ = stream.send_data(Bytes::from(body), true);
            }
        });
    }
}

/// One stream's exchange: status, the answer's fields and its body (404 or 502 empty).
async fn proxy<B>(
    req: &Request<B>,
    pool: &SharedPool,
    client: &[u8],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let host = req
        .uri()
        .authority()
        .map_or(&b""[..], |a| a.as_str().as_bytes());
    let mut fields = HeaderMap::new();
    if !routed(host, req.uri().path()) {
        return (StatusCode::NOT_FOUND, fields, Vec::new());
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(512);
    let incoming = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()));
    write_head(
        &mut head,
        req.method().as_str(),
        path,
        host,
        client,
        b"https",
        incoming,
    );
    let mut buf = Buf::new(4096);
    let mut body = Vec::new();
    let mut status = StatusCode::BAD_GATEWAY;
    let on_head = |_: &mut Vec<u8>, code: u16, _: &str, answer: &[httparse::Header<'_>]| {
        status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
        for f in answer.iter().filter(|f| !is_hop(f.name)) {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(f.name.as_bytes()),
                HeaderValue::from_bytes(f.value),
            ) {
                fields.append(n, v);
            }
        }
    };
    if !exchange(pool, &head, &mut buf, on_head, &mut body).await {
        return (StatusCode::BAD_GATEWAY, HeaderMap::new(), Vec::new());
    }
    (status, fields, body)
}

/// Spawns hyper's stream futures on the local set (the pool is not `Send`).
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

async fn serve_hyper<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    io: S,
    pool: SharedPool,
    client: Rc<[u8]>,
) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let pool = pool.clone();
        let client = client.clone();
        async move {
            let (status, fields, body) = proxy(&req, &pool, &client).await;
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = status;
            *resp.headers_mut() = fields;
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http2::Builder::new(LocalExec)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}
