//! The ingress listeners' entry point: load the current snapshot, find the route for the
//! request's host and path, and hand it to the proxy; 404 when nothing matches. The
//! snapshot is loaded once per request and held until the response head is ready, so a
//! request never sees two configurations.
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use crate::body::RequestBody;
use arc_swap::ArcSwap;
use http::{Request, Response, StatusCode};

use crate::body::Body;
use crate::ingress::model::snapshot::{Lookup, Route, Snapshot};
use crate::ingress::request::balancer::Balancer;
use crate::ingress::request::map_lane;
use crate::ingress::request::normalize::normalize_path;
use crate::ingress::request::request_host::RequestHost;
use crate::ingress::request::respond::generated;
use crate::server::{ConnInfo, RawAnswer, RawRequest, Respond, ResponseFuture};

pub use crate::ingress::request::proxy::{Inbound, Proxy, ProxyConfig, Scheme};

/// The routing front of the data plane, shared by the HTTP and HTTPS listeners.
#[derive(Debug)]
pub struct Gateway {
    snapshot: Arc<ArcSwap<Snapshot>>,
    proxy: Proxy,
}

impl Gateway {
    /// `snapshot` is the same `ArcSwap` the compile step stores new snapshots into.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, config: ProxyConfig) -> Self {
        Self {
            snapshot,
            proxy: Proxy::new(config),
        }
    }

    pub fn snapshot(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.snapshot
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Endpoint state, kept across snapshot swaps.
    pub fn balancer(&self) -> &Balancer {
        self.proxy.balancer()
    }

    /// Routes and proxies one request.
    ///
    /// A plain `fn` returning an `async move` block rather than an `async fn`: an async
    /// fn keeps each by-value argument twice in its future (the argument and the body's
    /// binding of it), and this future is copied whole once per request.
    #[allow(clippy::manual_async_fn)]
    pub fn handle(
        self: Arc<Self>,
        mut req: Request<RequestBody>,
        conn: Arc<ConnInfo>,
        scheme: Scheme,
    ) -> impl Future<Output = Response<Body>> + Send + use<> {
        async move {
            // HTTP/2 requests (h2c, here): the plain lane where it applies.
            if let Some(lane) = map_lane::plan(&self, scheme, &req)
                && let Some(resp) = map_lane::serve(&self, scheme, &lane, &req, &conn).await
            {
                // The request's map serves the next answer's on this thread.
                crate::header_pool::give(std::mem::take(req.headers_mut()));
                return resp;
            }
            self.usual(req, &conn, scheme).await
        }
    }

    /// `handle` behind a pointer, for HTTP/2 over TLS, whose stream futures `server::h2`
    /// moves into a task each. A request the plain lane takes gets a future of the lane's size
    /// alone; the usual path's, several KiB, is allocated only for the requests that need
    /// it (a second, nested box where the lane gave a request back).
    pub(crate) fn handle_boxed(
        self: Arc<Self>,
        mut req: Request<RequestBody>,
        conn: Arc<ConnInfo>,
        scheme: Scheme,
    ) -> ResponseFuture {
        let Some(lane) = map_lane::plan(&self, scheme, &req) else {
            return Box::pin(async move { self.usual(req, &conn, scheme).await });
        };
        Box::pin(async move {
            if let Some(resp) = map_lane::serve(&self, scheme, &lane, &req, &conn).await {
                crate::header_pool::give(std::mem::take(req.headers_mut()));
                return resp;
            }
            let usual: ResponseFuture =
                Box::pin(async move { self.usual(req, &conn, scheme).await });
            usual.await
        })
    }

    /// The usual path: normalise, route, and run the phases (or answer 400 or 404).
    #[allow(clippy::manual_async_fn)]
    fn usual<'a>(
        &'a self,
        mut req: Request<RequestBody>,
        conn: &'a ConnInfo,
        scheme: Scheme,
    ) -> impl Future<Output = Response<Body>> + Send + 'a {
        async move {
            // Routes, policies and the upstream all see one spelling of the path, so no
            // `..`, `%2e` or `//` trick can reach a route by another name.
            match normalize_path(req.uri().path()) {
                Ok(Cow::Borrowed(_)) => {}
                Ok(Cow::Owned(path)) => {
                    if set_path(&mut req, &path).is_none() {
                        let answer = generated(StatusCode::BAD_REQUEST, "bad request path");
                        return self.proxy.begin(&req, conn).attach(answer);
                    }
                }
                Err(e) => {
                    let answer =
                        generated(StatusCode::BAD_REQUEST, format!("bad request path: {e}"));
                    return self.proxy.begin(&req, conn).attach(answer);
                }
            }
            let snapshot = self.snapshot.load_full();
            // Read once: routing, the access record and every phase after it share it.
            let host = RequestHost::of(&req);
            match snapshot.router.lookup(host.name(), req.uri().path()) {
                Lookup::Matched { route, captures } => {
                    let host_tls = host_has_tls(&snapshot, host.name());
                    let inbound = Inbound {
                        conn,
                        scheme,
                        host_tls,
                    };
                    let mut resp = self
                        .proxy
                        .forward_routed(route, &captures, req, &inbound, host)
                        .await;
                    if let Some(edge) = &self.proxy.config.edge_headers {
                        edge.apply(&mut resp, scheme, host_tls);
                    }
                    resp
                }
                Lookup::NotFound => {
                    let msg = format!("no route for {}{}", host.name(), req.uri().path());
                    let tail = self.proxy.begin(&req, conn);
                    let mut resp = tail.attach(generated(StatusCode::NOT_FOUND, msg));
                    if let Some(edge) = &self.proxy.config.edge_headers {
                        edge.apply(&mut resp, scheme, false);
                    }
                    resp
                }
            }
        }
    }

    /// Proxies a request for an already-chosen route (what `handle` does after lookup).
    pub async fn forward(
        &self,
        route: &Route,
        captures: &[String],
        req: Request<RequestBody>,
        inbound: &Inbound<'_>,
    ) -> Response<Body> {
        self.proxy.forward(route, captures, req, inbound).await
    }
}

/// Replaces the request's path, keeping its query (and authority, for absolute-form and
/// HTTP/2 requests). `None` when the result is not a valid URI.
fn set_path(req: &mut Request<RequestBody>, path: &str) -> Option<()> {
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    *req.uri_mut() = http::Uri::from_parts(parts).ok()?;
    Some(())
}

/// True when `host` (lower case, no port) is covered by a TLS section, exactly or by a
/// `*.parent` wildcard entry.
pub(crate) fn host_has_tls(snapshot: &Snapshot, host: &str) -> bool {
    if snapshot.tls_hosts.contains_key(host) {
        return true;
    }
    match host.split_once('.') {
        Some((_, parent)) if !parent.is_empty() => {
            // `*.parent` spelled on the stack: this runs on every request.
            let mut buf = [0u8; 256];
            let Some(wild) = buf.get_mut(..parent.len() + 2) else {
                return false;
            };
            wild[..2].copy_from_slice(b"*.");
            wild[2..].copy_from_slice(parent.as_bytes());
            std::str::from_utf8(wild).is_ok_and(|w| snapshot.tls_hosts.contains_key(w))
        }
        _ => false,
    }
}

/// The listener handler for the ingress HTTP (`Scheme::Http`) or HTTPS listener.
pub fn handler(gateway: Arc<Gateway>, scheme: Scheme) -> GatewayHandler {
    GatewayHandler { gateway, scheme }
}

/// Answers one ingress listener's requests. Its future is `handle`'s own, unboxed: the
/// connection holds it in place (HTTP/1.1) or in the stream's task (HTTP/2), where a
/// boxed one would cost an allocation of several kilobytes per request.
#[derive(Debug, Clone)]
pub struct GatewayHandler {
    gateway: Arc<Gateway>,
    scheme: Scheme,
}

impl Respond for GatewayHandler {
    fn respond(
        self,
        req: Request<RequestBody>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<Body>> + Send + use<> {
        self.gateway.handle(req, conn, self.scheme)
    }

    fn respond_boxed(self, req: Request<RequestBody>, conn: Arc<ConnInfo>) -> ResponseFuture {
        self.gateway.handle_boxed(req, conn, self.scheme)
    }

    const RAW: bool = true;

    fn respond_raw<'a>(
        &'a self,
        req: RawRequest<'a>,
        conn: &'a ConnInfo,
        keep_alive: bool,
        out: &'a mut Vec<u8>,
    ) -> impl Future<Output = RawAnswer> + Send + 'a {
        crate::ingress::request::plain_lane::serve(
            &self.gateway,
            self.scheme,
            req,
            conn,
            keep_alive,
            out,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_hosts_exact_and_wildcard() {
        let mut snap = Snapshot::default();
        snap.tls_hosts.insert("shop.example.com".into(), ());
        snap.tls_hosts.insert("*.apps.example.com".into(), ());
        assert!(host_has_tls(&snap, "shop.example.com"));
        assert!(host_has_tls(&snap, "a.apps.example.com"));
        assert!(!host_has_tls(&snap, "a.b.apps.example.com"));
        assert!(!host_has_tls(&snap, "apps.example.com"));
        assert!(!host_has_tls(&snap, "other.example.com"));
        assert!(!host_has_tls(&snap, "localhost"));
    }
}
