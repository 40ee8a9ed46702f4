//! `mirror-target`: a copy of each request goes to another server and its answer is thrown
//! away (ingress-nginx's `mirror` module). The client never waits for the mirror and never
//! sees it fail.
//!
//! The copy's body is fed from the client's body as it streams to the pod (the same
//! `Bytes`, no copy of the data): frames go through a bounded queue, and a mirror that
//! falls behind loses its copy (the queue is dropped and its request fails) rather than
//! slowing the real request. Mirrors in flight per route are bounded too.
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::body::BoxError;
use crate::ingress::request::upstream::{UpstreamBody, UpstreamError, Upstreams, Wire};

/// Body frames queued for one mirror before it is given up on.
const QUEUE_FRAMES: usize = 64;
/// Mirror requests in flight per route; more are not sent.
const MAX_IN_FLIGHT: usize = 256;

/// Where copies go, parsed once from the annotations.
#[derive(Debug)]
pub struct Mirror {
    pub wire: Wire,
    pub authority: Authority,
    /// The path and query, with `$request_uri`, `$uri` and `$args` filled per request.
    template: Vec<Piece>,
    /// `mirror-host`, else the target's host.
    pub host: HeaderValue,
    /// `mirror-request-body` (default on).
    pub body: bool,
    in_flight: AtomicUsize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    RequestUri,
    Uri,
    Args,
}

/// Parses `mirror-target`, `mirror-host` and `mirror-request-body`.
pub fn parse(target: &str, host: Option<&str>, body: bool) -> Result<Mirror, String> {
    let (wire, rest) = if let Some(r) = target.strip_prefix("http://") {
        (Wire::Http1, r)
    } else if let Some(r) = target.strip_prefix("https://") {
        (Wire::Https, r)
    } else {
        return Err("expected an http:// or https:// URL".into());
    };
    let split = rest.find(['/', '$']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let authority: Authority = authority
        .parse()
        .map_err(|_| format!("{authority:?} is not a host with an optional port"))?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not supported".into());
    }
    let authority = match authority.port_u16() {
        Some(_) => authority,
        None => {
            let port = if wire == Wire::Https { 443 } else { 80 };
            format!("{}:{port}", authority.host())
                .parse()
                .map_err(|_| "invalid host".to_string())?
        }
    };
    let template = parse_template(path)?;
    let host_text = host.unwrap_or_else(|| authority.host());
    let host = HeaderValue::from_str(host_text)
        .ok()
        .filter(|_| !host_text.is_empty() && !host_text.contains(char::is_whitespace))
        .ok_or("mirror-host is not a valid host")?;
    Ok(Mirror {
        wire,
        authority,
        template,
        host,
        body,
        in_flight: AtomicUsize::new(0),
    })
}

fn parse_template(path: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let Some(at) = rest.find('$') else {
            out.push(Piece::Text(rest.to_string()));
            break;
        };
        if at > 0 {
            out.push(Piece::Text(rest[..at].to_string()));
        }
        let var = &rest[at + 1..];
        let name_len = var
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(var.len());
        out.push(match &var[..name_len] {
            "request_uri" => Piece::RequestUri,
            "uri" => Piece::Uri,
            "args" | "query_string" => Piece::Args,
            other => {
                return Err(format!(
                    "${other} is not supported (use $request_uri, $uri or $args)"
                ));
            }
        });
        rest = &var[name_len..];
    }
    if !out.iter().all(|p| match p {
        Piece::Text(t) => t.bytes().all(|b| b.is_ascii_graphic()),
        _ => true,
    }) {
        return Err("the URL path must be printable characters without spaces".into());
    }
    Ok(out)
}

impl Mirror {
    /// The mirror's path and query for a request with this original path and query.
    fn path_and_query(&self, original: &PathAndQuery) -> Option<PathAndQuery> {
        let mut s = String::new();
        for p in &self.template {
            match p {
                Piece::Text(t) => s.push_str(t),
                Piece::RequestUri => s.push_str(original.as_str()),
                Piece::Uri => s.push_str(original.path()),
                Piece::Args => s.push_str(original.query().unwrap_or("")),
            }
        }
        if !s.starts_with('/') {
            s.insert(0, '/');
        }
        PathAndQuery::try_from(s).ok()
    }

    /// Sends a copy of the request in the background. `body` is the queue the client's
    /// body is teed into (None: no body is mirrored).
    pub fn send(
        self: &Arc<Self>,
        upstreams: &Arc<Upstreams>,
        original: Original<'_>,
        body: Option<MirrorBody>,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) {
        let Original {
            method,
            headers,
            path: original,
        } = original;
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(target = %self.authority, "mirror skipped: too many in flight");
            return;
        }
        let Some(pq) = self.path_and_query(original) else {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        let mut headers = headers.clone();
        headers.insert(header::HOST, self.host.clone());
        let has_body = body.is_some();
        if !has_body {
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::TRANSFER_ENCODING);
        }
        let mut req = Request::new(match body {
            Some(b) => UpstreamBody::Mirror(b),
            None => UpstreamBody::Empty,
        });
        *req.method_mut() = method.clone();
        *req.uri_mut() = Uri::from(pq);
        *req.headers_mut() = headers;
        let mirror = self.clone();
        let upstreams = upstreams.clone();
        tokio::spawn(async move {
            let run = async {
                let (resp, _lease) = upstreams
                    .send(mirror.wire, connect_timeout, &mirror.authority, req)
                    .await
                    .map_err(|e| match e {
                        UpstreamError::Connect { message, .. } => message,
                        UpstreamError::Failed(e) => e.to_string(),
                    })?;
                // Read the answer to the end so the connection can be reused.
                let status = resp.status();
                resp.into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(status)
            };
            match tokio::time::timeout(connect_timeout + read_timeout, run).await {
                Ok(Ok(status)) => {
                    tracing::debug!(target = %mirror.authority, %status, "mirror answered");
                }
                Ok(Err(e)) => {
                    tracing::debug!(target = %mirror.authority, error = %e, "mirror failed")
                }
                Err(_) => tracing::debug!(target = %mirror.authority, "mirror timed out"),
            }
            mirror.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The request being copied, as it goes to the pod.
#[derive(Debug, Clone, Copy)]
pub struct Original<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The client's path and query (before any rewrite).
    pub path: &'a PathAndQuery,
}

/// One item of a teed body.
#[derive(Debug)]
pub enum Tee {
    Data(Bytes),
    /// The client's body ended normally.
    End,
}

/// The sending side, kept by the client's body while it streams.
pub type TeeSender = mpsc::Sender<Tee>;

/// A queue for one mirror's copy of the body.
pub fn tee() -> (TeeSender, MirrorBody) {
    let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
    (tx, MirrorBody { rx, done: false })
}

/// The mirror's request body: the client's frames as they arrive. A queue closed without
/// `End` (the client failed, or the mirror fell behind) is an error, so the mirror never
/// receives a cut body as if it were whole.
#[derive(Debug)]
pub struct MirrorBody {
    rx: mpsc::Receiver<Tee>,
    done: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("the mirrored body was cut off (client error, or the mirror fell behind)")]
pub struct CutOff;

impl HttpBody for MirrorBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Tee::Data(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Tee::End)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(Some(Err(Box::new(CutOff))))
            }
            Poll::Pending => Poll::Pending,
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
    fn targets_and_templates() {
        let m = parse("https://mirror.example:8443$request_uri", None, true).unwrap();
        assert_eq!(m.wire, Wire::Https);
        assert_eq!(m.authority.as_str(), "mirror.example:8443");
        assert_eq!(m.host, "mirror.example");
        let pq = PathAndQuery::from_static("/a/b?x=1");
        assert_eq!(m.path_and_query(&pq).unwrap(), "/a/b?x=1");

        let m = parse("http://10.0.0.9/copy$uri?from=$args", Some("shadow"), false).unwrap();
        assert_eq!(m.authority.as_str(), "10.0.0.9:80");
        assert_eq!(m.host, "shadow");
        assert_eq!(m.path_and_query(&pq).unwrap(), "/copy/a/b?from=x=1");

        let m = parse("http://10.0.0.9", None, true).unwrap();
        assert_eq!(m.path_and_query(&pq).unwrap(), "/");
    }

    #[test]
    fn refusals() {
        for bad in [
            "ftp://x/",
            "mirror.example/",
            "http:///x",
            "http://a b/",
            "http://user@host/",
            "http://h/$host",
            "http://h/a b",
        ] {
            assert!(parse(bad, None, true).is_err(), "{bad}");
        }
        assert!(parse("http://h/", Some("bad host"), true).is_err());
    }
}
