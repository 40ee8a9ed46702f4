//! The request path after routing: policy checks, canary, rewrite, forwarded headers,
//! endpoint choice, the upstream exchange (with one retry when nothing was sent),
//! protocol upgrades, and the streaming response that finishes the access log.
//!
//! Failure behaviour: every failure becomes a proxy-generated answer with `Server:
//! portcullis` and a one-line reason — 503 when no endpoint can take the request, 502
//! when the upstream refused, failed or broke, 504 when response headers did not arrive
//! in time, 413 for oversized bodies. Nothing here panics on request data.
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::sync::OwnedSemaphorePermit;

use crate::body::{self, Body, BoxError};
use crate::ingress::access_log::{self, Entry};
use crate::ingress::balancer::{Balancer, InFlight, Pick};
use crate::ingress::forwarded::{self, Downstream};
use crate::ingress::health::monotonic_us;
use crate::ingress::ingress_metrics as metrics;
use crate::ingress::respond::generated;
use crate::ingress::snapshot::{Backend, Route, UpstreamProtocol};
use crate::ingress::upstream::{
    self, BodySlot, UpstreamBody, UpstreamError, UpstreamSettings, Upstreams, Wire,
};
use crate::ingress::upstream_h2::H2Lease;
use crate::ingress::{canary, filters, rewrite};
use crate::server::ConnInfo;

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

    fn default_port(self) -> u16 {
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
    /// Requests allowed in flight to one endpoint address; more wait up to the connect
    /// timeout, then get 503.
    pub max_concurrency_per_endpoint: usize,
    pub upstream: UpstreamSettings,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            access_log: true,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_concurrency_per_endpoint: 1024,
            upstream: UpstreamSettings::default(),
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
    config: ProxyConfig,
    balancer: Balancer,
    upstreams: Upstreams,
}

/// Where one attempt goes.
enum Target {
    Endpoint(Pick),
    /// ExternalName service: a DNS name, no balancer state.
    External(String, u16),
}

impl Target {
    fn authority(&self) -> String {
        match self {
            Target::Endpoint(p) => p.addr.to_string(),
            Target::External(h, p) => format!("{h}:{p}"),
        }
    }

    fn addr(&self) -> Option<SocketAddr> {
        match self {
            Target::Endpoint(p) => Some(p.addr),
            Target::External(..) => None,
        }
    }
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Self {
        Self {
            balancer: Balancer::new(config.max_concurrency_per_endpoint),
            upstreams: Upstreams::new(config.upstream.clone()),
            config,
        }
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// Starts the bookkeeping of a request that will be answered somehow.
    pub(crate) fn begin(&self, req: &Request<Incoming>, conn: &ConnInfo) -> Tail {
        let peer = conn.remote.ip().to_canonical();
        let client = forwarded::real_client(peer, req.headers(), &self.config.trusted_proxies);
        Tail {
            entry: Entry {
                time: SystemTime::now(),
                client,
                method: req.method().clone(),
                host: forwarded::request_host(req.uri(), req.headers()).to_string(),
                path: req
                    .uri()
                    .path_and_query()
                    .map_or("/", |pq| pq.as_str())
                    .to_string(),
                status: 0,
                request_bytes: 0,
                response_bytes: 0,
                duration: Duration::ZERO,
                upstream_addr: None,
                upstream_duration: None,
                ingress: None,
                service: None,
                request_id: None,
                retries: 0,
            },
            start: Instant::now(),
            log: self.config.access_log,
            slot: None,
            done: false,
        }
    }

    /// Forwards a routed request. `captures` are the route regex's groups (`$1` first).
    pub async fn forward(
        &self,
        route: &Route,
        captures: &[String],
        req: Request<Incoming>,
        inbound: &Inbound<'_>,
    ) -> Response<Body> {
        let mut tail = self.begin(&req, inbound.conn);
        tail.entry.ingress = Some(route.ingress.clone());
        tail.entry.service = Some(route.backend.name.clone());
        match self
            .forward_inner(route, captures, req, inbound, &mut tail)
            .await
        {
            Outcome::Answer(resp) => tail.attach(resp),
            Outcome::Streamed(resp, guards) => {
                tail.entry.status = resp.status().as_u16();
                let (parts, incoming) = resp.into_parts();
                let body = ProxiedBody {
                    inner: incoming,
                    bytes: 0,
                    tail: Some(tail),
                    guards: Some(guards),
                };
                Response::from_parts(parts, body.boxed())
            }
        }
    }

    async fn forward_inner(
        &self,
        route: &Route,
        captures: &[String],
        mut req: Request<Incoming>,
        inbound: &Inbound<'_>,
        tail: &mut Tail,
    ) -> Outcome {
        let policy = &*route.policy;
        let peer = inbound.conn.remote.ip().to_canonical();
        let peer_trusted = forwarded::is_trusted(peer, &self.config.trusted_proxies);
        let host_raw = forwarded::request_host(req.uri(), req.headers()).to_string();
        let (hostname, explicit_port) = forwarded::split_host(&host_raw);
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        let content_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());

        let head = filters::Head {
            client: tail.entry.client,
            scheme: inbound.scheme.as_str(),
            host: &host_raw,
            hostname: &hostname,
            path: req.uri().path(),
            path_and_query: &path_and_query,
            host_tls: inbound.host_tls,
            content_length,
        };
        if let Some(answer) = filters::check(policy, &head) {
            return Outcome::Answer(answer);
        }

        let (backend, _is_canary) =
            canary::choose(&route.backend, policy.canary.as_ref(), req.headers());
        tail.entry.service = Some(backend.name.clone());
        let protocol = policy.backend_protocol.unwrap_or(backend.protocol);
        let wire = match protocol {
            UpstreamProtocol::Http1 => Wire::Http1,
            UpstreamProtocol::H2c => Wire::H2c,
            UpstreamProtocol::Https => Wire::Https,
            UpstreamProtocol::Grpcs => Wire::Grpcs,
        };

        let upgrade = !wire.is_h2() && forwarded::is_upgrade_request(req.version(), req.headers());
        let client_upgrade: Option<OnUpgrade> = upgrade.then(|| hyper::upgrade::on(&mut req));

        let upstream_pq = match &policy.rewrite_target {
            Some(target) => rewrite::rewrite_path_and_query(target, captures, req.uri().query()),
            None => path_and_query.clone(),
        };

        let (parts, body) = req.into_parts();
        let method = parts.method;
        let mut headers = parts.headers;
        forwarded::strip_hop_by_hop(&mut headers, upgrade);
        let down = Downstream {
            peer,
            client: tail.entry.client,
            peer_trusted,
            scheme: inbound.scheme.as_str(),
            host: &host_raw,
            port: explicit_port.unwrap_or(inbound.scheme.default_port()),
        };
        let request_id =
            forwarded::apply_forwarded(&mut headers, &down, policy.x_forwarded_prefix.as_deref());
        tail.entry.request_id = Some(request_id);
        let host_value = policy.upstream_vhost.as_deref().unwrap_or(&host_raw);
        // HTTP/2 carries the host as `:authority` (set from the URI); a Host header
        // alongside it would be redundant at best.
        let h2_authority = match wire.is_h2() {
            true => host_value.parse::<http::uri::Authority>().ok(),
            false => None,
        };
        if wire.is_h2() {
            headers.remove(header::HOST);
        } else if !host_value.is_empty() {
            match HeaderValue::from_str(host_value) {
                Ok(v) => {
                    headers.insert(header::HOST, v);
                }
                Err(_) => {
                    return Outcome::Answer(generated(StatusCode::BAD_REQUEST, "invalid host"));
                }
            }
        }
        for (name, value) in &policy.request_headers {
            headers.insert(name.clone(), value.clone());
        }

        let slot = if body.is_end_stream() {
            None
        } else {
            Some(BodySlot::new(body, policy.max_body_bytes))
        };
        tail.slot = slot.clone();

        let exchange = Exchange {
            method,
            headers,
            upstream_pq,
            version: if wire.is_h2() {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            slot,
            wire,
            h2_authority,
            connect_timeout: policy
                .connect_timeout
                .unwrap_or(self.config.connect_timeout),
            read_timeout: policy.read_timeout.unwrap_or(self.config.read_timeout),
            send_timeout: policy.send_timeout.unwrap_or(self.config.send_timeout),
            upgrade,
        };
        let (mut resp, guards) = match self.exchange(route, backend, &exchange, tail).await {
            Ok(ok) => ok,
            Err(answer) => return Outcome::Answer(answer),
        };

        *resp.version_mut() = parts.version;
        if let Some(client_upgrade) = client_upgrade
            && resp.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            forwarded::strip_hop_by_hop(resp.headers_mut(), true);
            tokio::spawn(tunnel(
                client_upgrade,
                upstream_upgrade,
                tail.entry.upstream_addr,
            ));
            // A tunnel is not a request in flight: releasing the count keeps long-lived
            // WebSockets from making their pod look permanently busy to the balancer.
            drop(guards);
            let (parts, _) = resp.into_parts();
            return Outcome::Answer(Response::from_parts(parts, body::empty()));
        }
        forwarded::strip_hop_by_hop(resp.headers_mut(), false);
        for (name, value) in &policy.response_headers {
            resp.headers_mut().insert(name.clone(), value.clone());
        }
        Outcome::Streamed(resp, guards)
    }

    /// Sends the request to an endpoint, retrying once on another endpoint when the
    /// first connection failed before anything was sent (or, for idempotent requests
    /// whose body was not started, when the connection broke before an answer).
    async fn exchange(
        &self,
        route: &Route,
        backend: &Backend,
        ex: &Exchange,
        tail: &mut Tail,
    ) -> Result<(Response<Incoming>, Guards), Response<Body>> {
        let mut exclude: Option<SocketAddr> = None;
        let mut last_failure: Option<Response<Body>> = None;
        for attempt in 0..2u8 {
            let target = match (&backend.external, backend.eligible.is_empty()) {
                (Some((host, port)), true) => Target::External(host.clone(), *port),
                _ => match self.balancer.pick(backend, route.policy.balance, exclude) {
                    Some(p) => Target::Endpoint(p),
                    None => {
                        return Err(last_failure.unwrap_or_else(|| {
                            generated(
                                StatusCode::SERVICE_UNAVAILABLE,
                                format!("no ready endpoints for {}", backend.name),
                            )
                        }));
                    }
                },
            };
            tail.entry.upstream_addr = target.addr();
            tail.entry.retries = attempt;
            let guards = match &target {
                Target::Endpoint(pick) => {
                    let permit = match pick.stats.permits.clone().try_acquire_owned() {
                        Ok(p) => p,
                        Err(_) => {
                            let wait = pick.stats.permits.clone().acquire_owned();
                            match tokio::time::timeout(ex.connect_timeout, wait).await {
                                Ok(Ok(p)) => p,
                                _ => {
                                    return Err(generated(
                                        StatusCode::SERVICE_UNAVAILABLE,
                                        format!("too many requests in flight to {}", pick.addr),
                                    ));
                                }
                            }
                        }
                    };
                    Guards {
                        _in_flight: Some(pick.stats.start()),
                        _permit: Some(permit),
                        _lease: None,
                    }
                }
                Target::External(..) => Guards {
                    _in_flight: None,
                    _permit: None,
                    _lease: None,
                },
            };
            let authority = target.authority();
            let uri_authority = match &ex.h2_authority {
                Some(a) => a.as_str(),
                None => authority.as_str(),
            };
            let uri = match Uri::try_from(format!(
                "{}://{uri_authority}{}",
                ex.wire.scheme(),
                ex.upstream_pq
            )) {
                Ok(u) => u,
                Err(_) => {
                    return Err(generated(
                        StatusCode::BAD_REQUEST,
                        "the rewritten request path is not a valid URI",
                    ));
                }
            };
            let mut up = Request::new(match &ex.slot {
                Some(slot) => slot.attempt(),
                None => UpstreamBody::Empty,
            });
            *up.method_mut() = ex.method.clone();
            *up.uri_mut() = uri;
            *up.version_mut() = ex.version;
            *up.headers_mut() = ex.headers.clone();

            let started = Instant::now();
            let sending = self
                .upstreams
                .send(ex.wire, ex.connect_timeout, &authority, up);
            let result = await_head(sending, ex, started).await;
            let elapsed = started.elapsed();
            tail.entry.upstream_duration = Some(elapsed);
            metrics::record_upstream(&route.ingress, &backend.name, elapsed);
            let stats = match &target {
                Target::Endpoint(p) => Some(&p.stats),
                Target::External(..) => None,
            };
            let err = match result {
                Ok(Ok((resp, lease))) => {
                    if let Some(s) = stats {
                        s.observe(elapsed);
                        s.health.record_success();
                    }
                    let mut guards = guards;
                    guards._lease = lease;
                    return Ok((resp, guards));
                }
                Err(HeadTimeout::Read) => {
                    if let Some(s) = stats {
                        // A timeout is the worst latency we know of: let the balancer see it.
                        s.observe(elapsed);
                    }
                    metrics::record_upstream_error(&backend.name, "read_timeout");
                    return Err(generated(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "upstream {authority} sent no response headers within {:?}",
                            ex.read_timeout
                        ),
                    ));
                }
                Err(HeadTimeout::BodyStalled) => {
                    metrics::record_upstream_error(&backend.name, "send_timeout");
                    return Err(generated(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "request body made no progress for {:?} while sending to {authority}",
                            ex.send_timeout
                        ),
                    ));
                }
                Ok(Err(err)) => err,
            };
            if ex.slot.as_ref().is_some_and(|s| s.over_limit())
                || matches!(err.body_error(), Some(upstream::BodyError::TooLarge(_)))
            {
                return Err(generated(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body is over the limit",
                ));
            }
            let body_started = ex.slot.as_ref().is_some_and(|s| s.claimed());
            let retryable = match err {
                UpstreamError::Connect { kind, message } => {
                    metrics::record_upstream_error(&backend.name, kind.metric());
                    if let Some(s) = stats.filter(|_| kind.ejects()) {
                        let backoff = s.health.record_connect_failure(monotonic_us());
                        tracing::debug!(endpoint = %authority, ?backoff, error = %message, "endpoint ejected");
                    }
                    exclude = target.addr();
                    last_failure = Some(generated(StatusCode::BAD_GATEWAY, message));
                    !body_started
                }
                UpstreamError::Failed(e) => {
                    metrics::record_upstream_error(&backend.name, "send");
                    let reason = error_chain(e.as_ref());
                    tracing::debug!(endpoint = %authority, error = %reason, "upstream request failed");
                    last_failure = Some(generated(
                        StatusCode::BAD_GATEWAY,
                        format!("upstream {authority} failed: {reason}"),
                    ));
                    is_idempotent(&ex.method) && !body_started && !ex.upgrade
                }
            };
            drop(guards);
            if !retryable || attempt == 1 {
                break;
            }
            metrics::record_retry(&route.ingress, &backend.name);
        }
        Err(last_failure.unwrap_or_else(|| generated(StatusCode::BAD_GATEWAY, "upstream failed")))
    }
}

/// How `forward_inner` ended: an answer of our own, or an upstream response to stream.
enum Outcome {
    Answer(Response<Body>),
    Streamed(Response<Incoming>, Guards),
}

/// Waits for the response head. The read timeout counts from the end of the request
/// body (a long upload is not a slow backend); while the body is still streaming,
/// only a stall longer than the send timeout ends the wait.
async fn await_head<F, T>(fut: F, ex: &Exchange, started: Instant) -> Result<T, HeadTimeout>
where
    F: std::future::Future<Output = T>,
{
    tokio::pin!(fut);
    let started_us = monotonic_us();
    let mut deadline = tokio::time::Instant::from_std(started) + ex.read_timeout;
    let mut last_bytes = 0;
    loop {
        match tokio::time::timeout_at(deadline, &mut fut).await {
            Ok(out) => return Ok(out),
            Err(_) => {
                let Some(slot) = ex.slot.as_ref().filter(|s| s.claimed()) else {
                    return Err(HeadTimeout::Read);
                };
                let now = tokio::time::Instant::now();
                if let Some(done_us) = slot.finished_at_us() {
                    let done = tokio::time::Instant::from_std(started)
                        + Duration::from_micros(done_us.saturating_sub(started_us));
                    if done + ex.read_timeout <= now {
                        return Err(HeadTimeout::Read);
                    }
                    deadline = done + ex.read_timeout;
                    continue;
                }
                // Still streaming the body: fine while it moves, a stall once it
                // has not moved for a whole window.
                let bytes = slot.bytes();
                if bytes == last_bytes {
                    return Err(HeadTimeout::BodyStalled);
                }
                last_bytes = bytes;
                deadline = now + ex.send_timeout;
            }
        }
    }
}

/// Why no response head arrived.
enum HeadTimeout {
    Read,
    BodyStalled,
}

/// Everything needed to (re)send one request upstream.
struct Exchange {
    method: Method,
    headers: HeaderMap,
    upstream_pq: String,
    version: Version,
    slot: Option<Arc<BodySlot>>,
    wire: Wire,
    /// For HTTP/2 wires: the host to send as `:authority`.
    h2_authority: Option<http::uri::Authority>,
    connect_timeout: Duration,
    read_timeout: Duration,
    send_timeout: Duration,
    upgrade: bool,
}

/// Held while a response streams: the endpoint's in-flight count and concurrency permit.
#[derive(Debug)]
struct Guards {
    _in_flight: Option<InFlight>,
    _permit: Option<OwnedSemaphorePermit>,
    _lease: Option<H2Lease>,
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// `err: cause: cause` in one line, for the short error body.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// Copies bytes both ways between the client and the pod after a 101.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, pod: Option<SocketAddr>) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, ?pod, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(?pod, up, down, "upgraded connection closed"),
        Err(e) => tracing::debug!(?pod, error = %e, "upgraded connection failed"),
    }
}

/// Per-request bookkeeping that ends in metrics and one access-log event, exactly once:
/// when the response body ends, or when it is dropped (client gone).
#[derive(Debug)]
pub(crate) struct Tail {
    pub(crate) entry: Entry,
    start: Instant,
    log: bool,
    slot: Option<Arc<BodySlot>>,
    done: bool,
}

impl Tail {
    /// Finishes the tail for an answer whose body is already complete (generated
    /// answers and upgrades).
    pub(crate) fn attach(mut self, resp: Response<Body>) -> Response<Body> {
        self.entry.status = resp.status().as_u16();
        let bytes = resp.body().size_hint().exact().unwrap_or(0);
        self.finish(bytes);
        resp
    }

    fn finish(&mut self, response_bytes: u64) {
        if self.done {
            return;
        }
        self.done = true;
        let e = &mut self.entry;
        if e.status == 0 {
            // No answer was produced: the client went away first (nginx's 499).
            e.status = 499;
        }
        e.duration = self.start.elapsed();
        e.response_bytes = response_bytes;
        e.request_bytes = self.slot.as_ref().map_or(0, |s| s.bytes());
        metrics::record_request(
            e.ingress.as_deref().unwrap_or(""),
            e.service.as_deref().unwrap_or(""),
            e.status,
            e.duration,
            e.request_bytes,
            e.response_bytes,
        );
        if self.log {
            access_log::emit(e);
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let bytes = self.entry.response_bytes;
        self.finish(bytes);
    }
}

/// The upstream response body streamed to the client, holding the endpoint guards until
/// the last byte.
struct ProxiedBody {
    inner: Incoming,
    bytes: u64,
    tail: Option<Tail>,
    guards: Option<Guards>,
}

impl HttpBody for ProxiedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.guards = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                this.guards = None;
                if let Some(mut t) = this.tail.take() {
                    t.finish(this.bytes);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ProxiedBody {
    fn drop(&mut self) {
        // The client went away mid-body: still one log line, with the bytes sent so far.
        if let Some(mut t) = self.tail.take() {
            t.finish(self.bytes);
        }
    }
}

/// The client's address after trusted-proxy processing, for callers outside `forward`.
pub fn client_ip(conn: &ConnInfo, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    forwarded::real_client(conn.remote.ip().to_canonical(), headers, trusted)
}
