//! The forwarding engine and the entry to the request path after routing: it starts the
//! request's bookkeeping, derives the request context once, runs the phases
//! (`phases.rs`) and hands the response the tail that logs it.
//!
//! Failure behaviour: every failure is a `ProxyError` (`proxy_error.rs`) that becomes a
//! proxy-generated answer with `Server: portcullis` and a one-line reason — 503 when no
//! endpoint can take the request, 502 when the upstream refused, failed or broke, 504
//! when response headers did not arrive in time, 413 for oversized bodies — and names
//! its kind in the access log. Nothing here panics on request data.
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::body::RequestBody;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;

use crate::body::Body;
use crate::ingress::model::snapshot::Route;
use crate::ingress::request::access_log::Entry;
use crate::ingress::request::balancer::Balancer;
use crate::ingress::request::forwarded;
use crate::ingress::request::phases::{Outcome, RequestCtx};
use crate::ingress::request::request_host::RequestHost;
use crate::ingress::request::tail::{ProxiedBody, Tail};
use crate::ingress::request::tunnels::Tunnels;
use crate::ingress::request::upstream::{UpstreamSettings, Upstreams};
use crate::ingress::request::upstream_tls::UpstreamIo;
use crate::server::ConnInfo;
use crate::server::prefixed::Prefixed;

/// How the client reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub(crate) fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Settings of the request path that are not per-Ingress.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Peers whose `X-Forwarded-*` headers are believed. Default: none.
    pub trusted_proxies: Vec<IpNet>,
    /// Emit one `access_log` event per request.
    pub access_log: bool,
    /// Default TCP connect timeout (`proxy-connect-timeout` overrides per Ingress).
    pub connect_timeout: Duration,
    /// Default wait for response headers after the request body was sent
    /// (`proxy-read-timeout` overrides per Ingress).
    pub read_timeout: Duration,
    /// Longest pause while streaming a request body upstream (`proxy-send-timeout`).
    pub send_timeout: Duration,
    /// The port in HTTPS redirects when clients reach HTTPS on a port other than 443
    /// (a local run); `None` in a cluster, where the Service maps 443.
    pub https_redirect_port: Option<u16>,
    /// Longest pause between two reads of a client's request body (nginx
    /// `client_body_timeout`); then 408 if no answer was sent yet.
    pub client_body_timeout: Duration,
    /// Requests allowed in flight to one endpoint address; more wait up to the connect
    /// timeout, then get 503.
    pub max_concurrency_per_endpoint: usize,
    pub upstream: UpstreamSettings,
    /// Status codes of requests refused by an Ingress's rate or connection limit, and
    /// how many client addresses each limited Ingress remembers.
    pub limits: crate::ingress::request::rate_limit::LimitSettings,
    /// HSTS and server tokens (`edge` settings); `None`: nothing added.
    pub edge_headers: Option<crate::ingress::request::edge_headers::EdgeHeaders>,
    /// From a trusted peer, send the whole X-Forwarded-For chain upstream (the peer
    /// appended); false sends the client address alone (`computeFullForwardedFor`).
    pub full_forwarded_for: bool,
    /// Serve plain GETs by the plain lane (`plain_lane`, `map_lane`); off sends every
    /// request the usual way (a switch for comparing the two, and a way back).
    pub plain_lane: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            access_log: true,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            https_redirect_port: None,
            max_concurrency_per_endpoint: 1024,
            upstream: UpstreamSettings::default(),
            limits: Default::default(),
            edge_headers: None,
            full_forwarded_for: true,
            plain_lane: true,
        }
    }
}

/// What the listener and the snapshot know about a request besides the request itself.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub conn: &'a ConnInfo,
    pub scheme: Scheme,
    /// The request's host has a TLS section (`snapshot.tls_hosts`), for the redirect.
    pub host_tls: bool,
}

/// The forwarding engine: balancer state and upstream pools, shared by all snapshots.
#[derive(Debug)]
pub struct Proxy {
    pub(crate) config: ProxyConfig,
    pub(crate) balancer: Balancer,
    /// Shared with background mirror requests.
    pub(crate) upstreams: std::sync::Arc<Upstreams>,
    pub(crate) tunnels: Tunnels,
    /// Rate-limit state per Ingress, kept across snapshot swaps.
    pub(crate) limits: crate::ingress::request::rate_limit::Registry,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Self {
        Self {
            balancer: Balancer::new(config.max_concurrency_per_endpoint),
            upstreams: std::sync::Arc::new(Upstreams::new(config.upstream.clone())),
            tunnels: Tunnels::default(),
            limits: crate::ingress::request::rate_limit::Registry::new(config.limits.table_size),
            config,
        }
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Upgraded connections, which shutdown waits for.
    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// Starts the bookkeeping of a request that will be answered somehow.
    pub(crate) fn begin(&self, req: &Request<RequestBody>, conn: &ConnInfo) -> Tail {
        self.begin_with(req, conn, RequestHost::raw_value(req))
    }

    /// `begin` with the host already read (routing read it).
    fn begin_with(&self, req: &Request<RequestBody>, conn: &ConnInfo, host: HeaderValue) -> Tail {
        let peer = conn.remote.ip().to_canonical();
        let client = forwarded::real_client(peer, req.headers(), &self.config.trusted_proxies);
        let entry = Entry {
            // Set when the line is written (now less the duration): no clock read per
            // request while the access log is off.
            time: SystemTime::UNIX_EPOCH,
            client,
            method: req.method().clone(),
            host,
            path: req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            ..Entry::default()
        };
        Tail::new(entry, self.config.access_log)
    }

    /// Forwards a routed request. `captures` are the route regex's groups (`$1` first).
    pub async fn forward(
        &self,
        route: &Route,
        captures: &[String],
        req: Request<RequestBody>,
        inbound: &Inbound<'_>,
    ) -> Response<Body> {
        let host = RequestHost::of(&req);
        self.forward_routed(route, captures, req, inbound, host)
            .await
    }

    /// `forward` with the host routing already read.
    /// Not an `async fn`, so the request and host are held once (see `Gateway::handle`).
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn forward_routed(
        &self,
        route: &Route,
        captures: &[String],
        req: Request<RequestBody>,
        inbound: &Inbound<'_>,
        host: RequestHost,
    ) -> impl Future<Output = Response<Body>> + Send {
        async move {
            let mut tail = self.begin_with(&req, inbound.conn, host.header().clone());
            tail.entry.ingress = Some(route.ingress.clone());
            tail.entry.service = Some(route.backend.name.clone());
            tail.route = Some(route.metrics.clone());
            let cors = match route.policy.edge.as_deref() {
                Some(edge) => edge.cors_for(req.headers()),
                None => None,
            };
            let ctx = RequestCtx::new(self, route, *inbound, host, &req, &tail, cors.is_some());
            let outcome = self.run_phases(&ctx, captures, req, &mut tail).await;
            let mut resp = log_when_done(outcome, tail);
            if let Some((c, allow)) = cors {
                c.decorate(resp.headers_mut(), allow);
            }
            resp
        }
    }
}

/// The logging phase: the response carries its `Tail`, which records the access entry
/// and metrics when the body ends (at once for a complete answer of ours).
fn log_when_done(outcome: Outcome, mut tail: Tail) -> Response<Body> {
    match outcome {
        Outcome::Answer(resp) => tail.attach(resp),
        Outcome::Failed(err) => {
            tail.entry.error = Some(err.kind);
            tail.attach(err.into_response())
        }
        Outcome::Streamed(resp, guards, read_timeout) => {
            tail.entry.status = resp.status().as_u16();
            let (parts, incoming) = resp.into_parts();
            let body = ProxiedBody::new(incoming, tail, guards, read_timeout);
            Response::from_parts(parts, body.boxed())
        }
    }
}

/// Copies bytes both ways between the client and the pod after a 101.
pub(crate) async fn tunnel(
    client: OnUpgrade,
    mut upstream: Prefixed<UpstreamIo>,
    pod: Option<SocketAddr>,
) {
    let client = match client.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, ?pod, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(?pod, up, down, "upgraded connection closed"),
        Err(e) => tracing::debug!(?pod, error = %e, "upgraded connection failed"),
    }
}
