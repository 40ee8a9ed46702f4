//! One upstream exchange for a routed request: pick an endpoint, hold its concurrency
//! permit, send, and wait for the response head under the read and send timeouts; retry
//! once on another endpoint when the connection failed before anything was sent (or,
//! for an idempotent request whose body was not started, when the exchange broke before
//! an answer). Failures come back as the proxy-generated answer to send
//! (502/503/504/413).
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderMap;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::body::Body;
use crate::ingress::balancer::Pick;
use crate::ingress::health::monotonic_us;
use crate::ingress::ingress_metrics as metrics;
use crate::ingress::proxy::Proxy;
use crate::ingress::respond::generated;
use crate::ingress::snapshot::{Backend, Route};
use crate::ingress::tail::{Guards, Tail};
use crate::ingress::upstream::{self, BodySlot, UpstreamBody, UpstreamError, Wire};

/// Everything needed to (re)send one request upstream.
pub(crate) struct Exchange {
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
    pub(crate) upstream_pq: PathAndQuery,
    pub(crate) version: Version,
    pub(crate) slot: Option<Arc<BodySlot>>,
    pub(crate) wire: Wire,
    /// For HTTP/2 wires: the host to send as `:authority`.
    pub(crate) h2_authority: Option<http::uri::Authority>,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) upgrade: bool,
    /// Affinity or hashing, when the Ingress asks for either (boxed: most requests have
    /// none, and the exchange lives in every request's future).
    pub(crate) steer: Option<Box<crate::ingress::traffic::Steer>>,
    /// `proxy-ssl-*`: pools with the Ingress's own TLS settings, for TLS wires.
    pub(crate) backend_tls: Option<Arc<crate::ingress::backend_tls::BackendTls>>,
}

/// Waits for the response head. The read timeout counts from the end of the request
/// body (a long upload is not a slow backend); while the body is still streaming,
/// only a stall longer than the send timeout ends the wait.
async fn await_head<F, T>(fut: F, ex: &Exchange, started: Instant) -> Result<T, HeadTimeout>
where
    F: std::future::Future<Output = T>,
{
    tokio::pin!(fut);
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
                // `started` on the monotonic_us clock, worked out only on this slow path.
                let started_us = monotonic_us().saturating_sub(
                    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                );
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

/// Where one attempt goes.
enum Target {
    Endpoint(Pick),
    /// ExternalName service: a DNS name, no balancer state.
    External(String, u16),
}

impl Target {
    /// The address to dial as an authority; `None` for an ExternalName that is no valid
    /// host name.
    fn authority(&self) -> Option<Authority> {
        match self {
            Target::Endpoint(p) => p
                .stats
                .authority
                .clone()
                .or_else(|| Authority::try_from(p.addr.to_string()).ok()),
            Target::External(h, p) => Authority::try_from(format!("{h}:{p}")).ok(),
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
    /// Sends the request to an endpoint, retrying once on another endpoint when the
    /// first connection failed before anything was sent (or, for idempotent requests
    /// whose body was not started, when the connection broke before an answer).
    pub(crate) async fn exchange(
        &self,
        route: &Route,
        backend: &Backend,
        ex: &Exchange,
        tail: &mut Tail,
    ) -> Result<(Response<Incoming>, Guards), Response<Body>> {
        let mut exclude: Option<SocketAddr> = None;
        let mut last_failure: Option<Response<Body>> = None;
        // `proxy-next-upstream*` when the Ingress sets them, else the built-in rule.
        let next = route
            .policy
            .traffic
            .as_ref()
            .and_then(|t| t.next_upstream.as_ref());
        let attempts = next.map_or(2, |n| n.tries);
        let began = next.map(|_| Instant::now());
        // Another attempt may follow this one (checked when it has failed, so the time
        // limit counts the failure too).
        let more = |attempt: u8| {
            attempt + 1 < attempts
                && began.is_none_or(|b| next.is_none_or(|n| n.in_time(b.elapsed())))
        };
        for attempt in 0..attempts {
            // An ExternalName backend never has endpoints (backends::resolve), so this
            // costs the endpoint load only where it is needed.
            let target = match &backend.external {
                Some((host, port)) => Target::External(host.clone(), *port),
                _ => match self.pick_endpoint(
                    backend,
                    route.policy.balance,
                    ex.steer.as_deref(),
                    exclude,
                ) {
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
            let Some(authority) = target.authority() else {
                return Err(generated(
                    StatusCode::BAD_GATEWAY,
                    "the ExternalName service's host is not a valid host name",
                ));
            };
            // HTTP/1.1 goes in origin form on a connection the pool picked by endpoint;
            // HTTP/2 names the client's host as `:authority` in an absolute URI.
            let uri = if ex.wire.is_h2() {
                let scheme = match ex.wire.is_tls() {
                    true => Scheme::HTTPS,
                    false => Scheme::HTTP,
                };
                Uri::builder()
                    .scheme(scheme)
                    .authority(ex.h2_authority.clone().unwrap_or_else(|| authority.clone()))
                    .path_and_query(ex.upstream_pq.clone())
                    .build()
                    .ok()
            } else {
                Some(Uri::from(ex.upstream_pq.clone()))
            };
            let Some(uri) = uri else {
                return Err(generated(
                    StatusCode::BAD_REQUEST,
                    "the rewritten request path is not a valid URI",
                ));
            };
            let mut up = Request::new(match &ex.slot {
                Some(slot) => slot.attempt(),
                None => UpstreamBody::Empty,
            });
            *up.method_mut() = ex.method.clone();
            *up.uri_mut() = uri;
            *up.version_mut() = ex.version;
            *up.headers_mut() = ex.headers.clone();
            // An HTTP/1.0 client may send no Host; HTTP/1.1 to the pod needs one.
            if !ex.wire.is_h2()
                && !up.headers().contains_key(http::header::HOST)
                && let Ok(v) = http::HeaderValue::from_str(authority.as_str())
            {
                up.headers_mut().insert(http::header::HOST, v);
            }

            let started = Instant::now();
            let upstreams = match &ex.backend_tls {
                Some(b) => b.upstreams(&self.config.upstream),
                None => &self.upstreams,
            };
            let sending = upstreams.send(ex.wire, ex.connect_timeout, &authority, up);
            let result = await_head(sending, ex, started).await;
            let elapsed = started.elapsed();
            tail.entry.upstream_duration = Some(elapsed);
            route.metrics.upstream(&backend.name, elapsed);
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
                    // With one endpoint there is nobody to pass to: its own answer beats
                    // a generated copy.
                    if let Some(n) = next
                        && more(attempt)
                        && n.on_status(resp.status())
                        && resendable(ex, n)
                        && backend.endpoints.load().eligible.len() > 1
                    {
                        metrics::record_upstream_error(&backend.name, "status");
                        last_failure = Some(generated(
                            resp.status(),
                            format!("upstream {authority} answered {}", resp.status()),
                        ));
                        exclude = target.addr();
                        drop((resp, lease, guards));
                        route.metrics.retry(&backend.name);
                        continue;
                    }
                    let mut guards = guards;
                    guards._lease = Some(lease);
                    return Ok((resp, guards));
                }
                Err(HeadTimeout::Read) => {
                    if let Some(s) = stats {
                        // A timeout is the worst latency we know of: let the balancer see it.
                        s.observe(elapsed);
                    }
                    metrics::record_upstream_error(&backend.name, "read_timeout");
                    let answer = generated(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "upstream {authority} sent no response headers within {:?}",
                            ex.read_timeout
                        ),
                    );
                    match next {
                        Some(n) if more(attempt) && n.timeout && resendable(ex, n) => {
                            last_failure = Some(answer);
                            exclude = target.addr();
                            drop(guards);
                            route.metrics.retry(&backend.name);
                            continue;
                        }
                        _ => return Err(answer),
                    }
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
            // The client's side failed, not the pod's: answer as nginx does, and do not
            // hold it against the endpoint.
            match err.body_error() {
                Some(e @ upstream::BodyError::Client(_)) => {
                    return Err(generated(StatusCode::BAD_REQUEST, e.to_string()));
                }
                Some(e @ upstream::BodyError::ClientTimeout(_)) => {
                    return Err(generated(StatusCode::REQUEST_TIMEOUT, e.to_string()));
                }
                _ => {}
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
                    let wanted = next.is_none_or(|n| match kind {
                        upstream::ConnectKind::Timeout => n.timeout,
                        _ => n.error,
                    });
                    !body_started && wanted
                }
                UpstreamError::Failed(e) => {
                    metrics::record_upstream_error(&backend.name, "send");
                    let reason = error_chain(e.as_ref());
                    tracing::debug!(endpoint = %authority, error = %reason, "upstream request failed");
                    last_failure = Some(generated(
                        StatusCode::BAD_GATEWAY,
                        format!("upstream {authority} failed: {reason}"),
                    ));
                    match next {
                        None => is_idempotent(&ex.method) && !body_started && !ex.upgrade,
                        Some(n) => n.error && resendable(ex, n),
                    }
                }
            };
            drop(guards);
            if !retryable || !more(attempt) {
                break;
            }
            route.metrics.retry(&backend.name);
        }
        Err(last_failure.unwrap_or_else(|| generated(StatusCode::BAD_GATEWAY, "upstream failed")))
    }
}

/// Whether a request may be sent again under `proxy-next-upstream`: its body (if any)
/// has not started streaming, it is no upgrade, and its method is idempotent unless
/// `non_idempotent` allows any.
fn resendable(ex: &Exchange, n: &crate::ingress::next_upstream::NextUpstream) -> bool {
    (is_idempotent(&ex.method) || n.non_idempotent)
        && !ex.slot.as_ref().is_some_and(|s| s.claimed())
        && !ex.upgrade
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
