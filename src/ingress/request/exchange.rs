//! One upstream exchange for a routed request: pick an endpoint, hold its concurrency
//! permit, send, and wait for the response head under the read and send timeouts; retry
//! once on another endpoint when the connection failed before anything was sent (or,
//! for an idempotent request whose body was not started, when the exchange broke before
//! an answer). Failures come back as a `ProxyError` whose kind says whether another
//! attempt is safe; `proxy-next-upstream` says whether one is wanted.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderMap;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Response, Uri, Version};
use tokio::sync::OwnedSemaphorePermit;

use crate::ingress::model::ingress_metrics as metrics;
use crate::ingress::model::snapshot::{Backend, Route};
use crate::ingress::request::balancer::Pick;
use crate::ingress::request::health::{micros_at, monotonic_us};
use crate::ingress::request::proxy::Proxy;
use crate::ingress::request::proxy_error::{ErrorKind, ProxyError, Sent};
use crate::ingress::request::tail::{Guards, Tail};
use crate::ingress::request::upstream::{
    self, BodySlot, Outgoing, ResponseBody, UpstreamBody, UpstreamError, Wire,
};

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
    pub(crate) steer: Option<Box<crate::ingress::request::traffic::Steer>>,
    /// `proxy-ssl-*`: pools with the Ingress's own TLS settings, for TLS wires.
    pub(crate) backend_tls: Option<Arc<crate::ingress::request::backend_tls::BackendTls>>,
}

impl Drop for Exchange {
    /// The request's header map serves the next head parsed on this thread.
    fn drop(&mut self) {
        crate::header_pool::give(std::mem::take(&mut self.headers));
    }
}

/// Waits for the response head. The read timeout counts from the end of the request
/// body (a long upload is not a slow backend); while the body is still streaming,
/// only a stall longer than the send timeout ends the wait.
///
/// Takes the send pinned where the caller holds it: moved in here, its state (over a
/// kilobyte) would sit in both futures and be copied on every request.
async fn await_head<F, T>(
    mut fut: std::pin::Pin<&mut F>,
    ex: &Exchange,
    started: Instant,
) -> Result<T, HeadTimeout>
where
    F: std::future::Future<Output = T>,
{
    let mut deadline = tokio::time::Instant::from_std(started) + ex.read_timeout;
    let mut last_bytes = 0;
    loop {
        match tokio::time::timeout_at(deadline, fut.as_mut()).await {
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
    ) -> Result<(Response<ResponseBody>, Guards), ProxyError> {
        let mut exclude: Option<SocketAddr> = None;
        let mut last_failure: Option<ProxyError> = None;
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
            // One clock reading serves the pick and the latency measure (re-read only
            // after waiting for a permit).
            let mut started = Instant::now();
            // An ExternalName backend never has endpoints (backends::resolve), so this
            // costs the endpoint load only where it is needed.
            let target = match &backend.external {
                Some((host, port)) => Target::External(host.clone(), *port),
                _ => match self.pick_endpoint(
                    backend,
                    route.policy.balance,
                    ex.steer.as_deref(),
                    exclude,
                    micros_at(started),
                ) {
                    Some(p) => Target::Endpoint(p),
                    None => {
                        return Err(last_failure.unwrap_or_else(|| {
                            ProxyError::new(
                                ErrorKind::NoEndpoints,
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
                    let permit = endpoint_permit(pick, ex.connect_timeout, &mut started).await?;
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
                return Err(ProxyError::new(
                    ErrorKind::BadExternalName,
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
                return Err(ProxyError::new(
                    ErrorKind::BadRewrite,
                    "the rewritten request path is not a valid URI",
                ));
            };
            let up = Outgoing {
                method: &ex.method,
                uri,
                version: ex.version,
                headers: &ex.headers,
                // An HTTP/1.0 client may send no Host; HTTP/1.1 to the pod needs one.
                host: match ex.wire.is_h2() || ex.headers.contains_key(http::header::HOST) {
                    true => None,
                    false => http::HeaderValue::from_str(authority.as_str()).ok(),
                },
                body: match &ex.slot {
                    Some(slot) => slot.attempt(),
                    None => UpstreamBody::Empty,
                },
            };

            let upstreams = match &ex.backend_tls {
                Some(b) => b.upstreams(&self.config.upstream),
                None => &self.upstreams,
            };
            let sending = std::pin::pin!(upstreams.send_outgoing(
                ex.wire,
                ex.connect_timeout,
                &authority,
                up
            ));
            let result = await_head(sending, ex, started).await;
            let ended = Instant::now();
            let elapsed = ended.saturating_duration_since(started);
            tail.entry.upstream_duration = Some(elapsed);
            route.metrics.upstream(&backend.name, elapsed);
            let stats = match &target {
                Target::Endpoint(p) => Some(&p.stats),
                Target::External(..) => None,
            };
            let sent = Sent {
                idempotent: is_idempotent(&ex.method) || next.is_some_and(|n| n.non_idempotent),
                body_started: ex.slot.as_ref().is_some_and(|s| s.claimed()),
                upgrade: ex.upgrade,
            };
            let failure = match result {
                Ok(Ok((resp, lease))) => {
                    if let Some(s) = stats {
                        s.observe_at(elapsed, micros_at(ended));
                        s.health.record_success();
                    }
                    let kind = ErrorKind::UpstreamStatus(resp.status());
                    // With one endpoint there is nobody to pass to: its own answer beats
                    // a generated copy.
                    if let Some(n) = next
                        && more(attempt)
                        && n.on_status(resp.status())
                        && kind.retry_safe(&sent)
                        && backend.endpoints.load().eligible.len() > 1
                    {
                        drop((resp, lease, guards));
                        last_failure = Some(ProxyError::new(
                            kind,
                            format!("upstream {authority} answered {}", kind.status()),
                        ));
                        record_failure(backend, kind);
                        exclude = target.addr();
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
                        s.observe_at(elapsed, micros_at(ended));
                    }
                    ProxyError::new(
                        ErrorKind::ReadTimeout,
                        format!(
                            "upstream {authority} sent no response headers within {:?}",
                            ex.read_timeout
                        ),
                    )
                }
                Err(HeadTimeout::BodyStalled) => ProxyError::new(
                    ErrorKind::BodyStalled,
                    format!(
                        "request body made no progress for {:?} while sending to {authority}",
                        ex.send_timeout
                    ),
                ),
                Ok(Err(err)) => {
                    // The client's side failed, not the pod's: answer as nginx does, and
                    // do not hold it against the endpoint.
                    if ex.slot.as_ref().is_some_and(|s| s.over_limit())
                        || matches!(err.body_error(), Some(upstream::BodyError::TooLarge(_)))
                    {
                        return Err(ProxyError::new(
                            ErrorKind::BodyTooLarge,
                            "request body is over the limit",
                        ));
                    }
                    match err.body_error() {
                        Some(e @ upstream::BodyError::Client(_)) => {
                            return Err(ProxyError::new(ErrorKind::ClientBody, e.to_string()));
                        }
                        Some(e @ upstream::BodyError::ClientTimeout(_)) => {
                            return Err(ProxyError::new(
                                ErrorKind::ClientBodyTimeout,
                                e.to_string(),
                            ));
                        }
                        _ => {}
                    }
                    match err {
                        UpstreamError::Connect { kind, message } => {
                            if let Some(s) = stats.filter(|_| kind.ejects()) {
                                let backoff = s.health.record_connect_failure(monotonic_us());
                                tracing::debug!(endpoint = %authority, ?backoff, error = %message, "endpoint ejected");
                            }
                            ProxyError::new(ErrorKind::Connect(kind), message)
                        }
                        UpstreamError::Failed(e) => {
                            let reason = error_chain(e.as_ref());
                            tracing::debug!(endpoint = %authority, error = %reason, "upstream request failed");
                            ProxyError::new(
                                ErrorKind::UpstreamFailed,
                                format!("upstream {authority} failed: {reason}"),
                            )
                        }
                    }
                }
            };
            record_failure(backend, failure.kind);
            drop(guards);
            // Safe by what happened to the request; wanted by `proxy-next-upstream` (or,
            // without it, for anything but a timeout).
            let wanted = match (failure.kind, next) {
                (ErrorKind::Connect(upstream::ConnectKind::Timeout), Some(n)) => n.timeout,
                (ErrorKind::Connect(_) | ErrorKind::UpstreamFailed, Some(n)) => n.error,
                (ErrorKind::ReadTimeout, Some(n)) => n.timeout,
                (ErrorKind::Connect(_) | ErrorKind::UpstreamFailed, None) => true,
                _ => false,
            };
            let retry = wanted && failure.kind.retry_safe(&sent) && more(attempt);
            // A broken exchange may have been a stale connection: the same pod may take
            // the next attempt. Anything else goes elsewhere.
            if failure.kind != ErrorKind::UpstreamFailed {
                exclude = target.addr();
            }
            last_failure = Some(failure);
            if !retry {
                break;
            }
            route.metrics.retry(&backend.name);
        }
        Err(last_failure
            .unwrap_or_else(|| ProxyError::new(ErrorKind::UpstreamFailed, "upstream failed")))
    }
}

/// The endpoint's concurrency permit. When the pod already has as many requests in
/// flight as it may take, waits up to `wait` (then `EndpointBusy`) and restarts the
/// latency clock `started`, so the wait is not counted against the pod.
pub(crate) async fn endpoint_permit(
    pick: &Pick,
    wait: Duration,
    started: &mut Instant,
) -> Result<OwnedSemaphorePermit, ProxyError> {
    match pick.stats.permits.clone().try_acquire_owned() {
        Ok(permit) => Ok(permit),
        // Boxed: waiting is rare, and its state would sit in every request's future.
        Err(_) => Box::pin(wait_for_permit(pick, wait, started)).await,
    }
}

/// `endpoint_permit` when the endpoint is at its limit.
async fn wait_for_permit(
    pick: &Pick,
    wait: Duration,
    started: &mut Instant,
) -> Result<OwnedSemaphorePermit, ProxyError> {
    let queued = pick.stats.permits.clone().acquire_owned();
    match tokio::time::timeout(wait, queued).await {
        Ok(Ok(permit)) => {
            *started = Instant::now();
            Ok(permit)
        }
        _ => Err(ProxyError::new(
            ErrorKind::EndpointBusy,
            format!("too many requests in flight to {}", pick.addr),
        )),
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Counts a failure in `ingress_upstream_errors_total`, for the kinds counted there.
pub(crate) fn record_failure(backend: &Backend, kind: ErrorKind) {
    if let Some(label) = kind.metric() {
        metrics::record_upstream_error(&backend.name, label);
    }
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
