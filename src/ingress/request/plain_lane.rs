//! The plain lane: most ingress traffic is a GET with no body, on a route whose policy
//! neither reads nor changes a header, to a plain HTTP/1.1 pod. Such a request is served
//! from the bytes of its head: the upstream head is the client's field lines plus the
//! forwarded family, and the answer's head goes back as the pod's field lines less the
//! hop-by-hop ones. No header map is built, filled or encoded on either side, which is
//! where the usual path spent most of its time per request (docs/PERFORMANCE.md).
//!
//! It shares everything else with the usual path: the route and snapshot, the balancer
//! and its permits, the connection pool, the response body, the tail that records
//! metrics and the access log, and `ProxyError` answers. What it is not sure of is
//! declined before anything is sent, and served the usual way from the same bytes:
//! other methods and versions, forwarded or hop-by-hop fields from the client, a path
//! that normalises to another, a route with any policy, a backend that is not plain
//! HTTP/1.1, no ready endpoint. `tests/plain_lane.rs` holds the two lanes to the same
//! output.
//!
//! Failure behaviour: a connection that fails before the answer's head (refused, the pod
//! closed a pooled one, sent garbage) sends the request the usual way, which retries as
//! it always does; a GET without a body is safe to send again, and the failure counts as
//! the usual path counts it (ejection, error and retry metrics). No head within the read
//! timeout is our 504, and an endpoint at its concurrency limit for the connect timeout
//! our 503, as on the usual path.
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use crate::http_text::put_field;
use crate::ingress::model::policy::Balance;
use crate::ingress::model::route_metrics::RouteMetrics;
use crate::ingress::model::snapshot::{Backend, Lookup, UpstreamProtocol};
use crate::ingress::request::access_log::Entry;
use crate::ingress::request::exchange::{endpoint_permit, record_failure};
use crate::ingress::request::forwarded::{self, Downstream};
use crate::ingress::request::gateway::{Gateway, host_has_tls};
use crate::ingress::request::health::{micros_at, monotonic_us};
use crate::ingress::request::normalize::normalize_path;
use crate::ingress::request::proxy::Scheme;
use crate::ingress::request::proxy_error::{ErrorKind, ProxyError};
use crate::ingress::request::tail::{Guards, ProxiedBody, Tail};
use crate::ingress::request::upstream::{ResponseBody, UpstreamError};
use crate::ingress::request::upstream_h1_wire::{BodyFraming, ResponseSpans, ScannedHead};
use crate::server::raw::Framing;
use crate::server::{ConnInfo, RawAnswer, RawRequest};

/// What routing decided for a request the lane takes.
struct Plan<'r> {
    req: RawRequest<'r>,
    host: HeaderValue,
    path: PathAndQuery,
    backend: Arc<Backend>,
    metrics: Arc<RouteMetrics>,
    ingress: Arc<str>,
    balance: Balance,
    connect_timeout: Duration,
    read_timeout: Duration,
    host_tls: bool,
    /// The port the client named, else the scheme's.
    port: u16,
}

/// Serves `req` if the lane can (see the module's comment); the answer's head goes into
/// `out`. `keep_alive`: the client and the connection allow another request.
pub(crate) async fn serve(
    gw: &Gateway,
    scheme: Scheme,
    req: RawRequest<'_>,
    conn: &ConnInfo,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> RawAnswer {
    let Some(plan) = plan(gw, scheme, req) else {
        return RawAnswer::Declined;
    };
    exchange(gw, scheme, plan, conn, keep_alive, out).await
}

/// Whether the lane takes `req`, and where it goes.
fn plan<'r>(gw: &Gateway, scheme: Scheme, req: RawRequest<'r>) -> Option<Plan<'r>> {
    if !gw.proxy().config.plain_lane || req.method() != b"GET" || req.minor_version() != 1 {
        return None;
    }
    let target = std::str::from_utf8(req.target()).ok()?;
    if !target.starts_with('/') {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if !matches!(normalize_path(path), Ok(Cow::Borrowed(_))) {
        return None;
    }
    let mut host = None;
    for (name, value) in req.fields() {
        if name.eq_ignore_ascii_case(b"host") {
            if host.replace(value).is_some() {
                return None;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            // Tokens that mean nothing past this hop; any other names a field to drop.
            let only_ours = value.split(|b| *b == b',').all(|t| {
                let t = t.trim_ascii();
                t.eq_ignore_ascii_case(b"keep-alive") || t.eq_ignore_ascii_case(b"close")
            });
            if !only_ours {
                return None;
            }
        } else if name.eq_ignore_ascii_case(b"content-length")
            || forwarded::is_hop_by_hop_bytes(name)
            || forwarded::is_forwarding_bytes(name)
        {
            return None;
        }
    }
    let host = HeaderValue::from_maybe_shared(req.share(host?)).ok()?;
    let (name, port) = forwarded::split_host(host.to_str().ok()?);
    let snapshot = gw.snapshot().load();
    let Lookup::Matched { route, .. } = snapshot.router.lookup(&name, path) else {
        return None;
    };
    let policy = &route.policy;
    let host_tls = host_has_tls(&snapshot, &name);
    let redirect = scheme == Scheme::Http && policy.ssl_redirect && host_tls;
    let protocol = policy.backend_protocol.unwrap_or(route.backend.protocol);
    if !policy.is_plain()
        || redirect
        || route.backend.external.is_some()
        || protocol != UpstreamProtocol::Http1
    {
        return None;
    }
    Some(Plan {
        req,
        path: PathAndQuery::from_maybe_shared(req.target_shared()).ok()?,
        host,
        backend: route.backend.clone(),
        metrics: route.metrics.clone(),
        ingress: route.ingress.clone(),
        balance: policy.balance,
        connect_timeout: policy
            .connect_timeout
            .unwrap_or(gw.proxy().config.connect_timeout),
        read_timeout: policy
            .read_timeout
            .unwrap_or(gw.proxy().config.read_timeout),
        host_tls,
        port: port.unwrap_or(scheme.default_port()),
    })
}

/// Sends the planned request on a pooled (or new) connection and turns the answer's head
/// into the client's.
async fn exchange(
    gw: &Gateway,
    scheme: Scheme,
    plan: Plan<'_>,
    conn: &ConnInfo,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> RawAnswer {
    let proxy = gw.proxy();
    // One clock reading serves the pick, the access record and the latency measure.
    let mut started = Instant::now();
    let Some(pick) = proxy
        .balancer
        .pick_at(&plan.backend, plan.balance, None, micros_at(started))
    else {
        // Nobody to send to: the usual path has the answer for that.
        return RawAnswer::Declined;
    };
    let peer = conn.remote.ip().to_canonical();
    let request_id = forwarded::new_request_id();
    let entry = Entry {
        client: peer,
        method: Method::GET,
        host: plan.host.clone(),
        path: plan.path,
        upstream_addr: Some(pick.addr),
        ingress: Some(plan.ingress),
        service: Some(plan.backend.name.clone()),
        request_id: Some(request_id.clone()),
        // The time is set when the line is written (see `Proxy::begin_with`).
        ..Entry::default()
    };

    // From here a client that leaves is recorded (499), as on the usual path.
    let mut tail = Tail::started_at(entry, proxy.config.access_log, started);
    tail.route = Some(plan.metrics.clone());
    let permit = match endpoint_permit(&pick, plan.connect_timeout, &mut started).await {
        Ok(permit) => permit,
        Err(err) => return answer(gw, scheme, plan.host_tls, &plan.backend, tail, err),
    };
    let Some(authority) = pick.stats.authority.as_ref() else {
        tail.discard();
        return RawAnswer::Declined;
    };
    let mut up = match proxy
        .upstreams
        .plain_conn(authority, plan.connect_timeout)
        .await
    {
        Ok(up) => up,
        Err(err) => {
            // The usual path retries elsewhere; the endpoint's health hears of it first.
            if let UpstreamError::Connect { kind, message } = &err {
                if kind.ejects() {
                    pick.stats.health.record_connect_failure(monotonic_us());
                }
                record_failure(&plan.backend, ErrorKind::Connect(*kind));
                tracing::debug!(endpoint = %authority, error = %message, "connect failed; sending the usual way");
            }
            plan.metrics.retry(&plan.backend.name);
            tail.discard();
            return RawAnswer::Again;
        }
    };
    let pool = proxy.upstreams.h1_shared();
    let head = up.head_buf();
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(plan.req.target());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in plan.req.fields() {
        if !name.eq_ignore_ascii_case(b"connection") {
            put_field(head, name, value);
        }
    }
    let host_raw = plan.host.to_str().unwrap_or("");
    let down = Downstream {
        peer,
        // No forwarded field came with the request, so the peer is the client.
        client: peer,
        peer_trusted: false,
        scheme: scheme.as_str(),
        host: host_raw,
        port: plan.port,
    };
    forwarded::put_forwarded(head, &down, &request_id);
    head.extend_from_slice(b"\r\n");
    let in_flight = pick.stats.start();
    if up.send().await.is_err() {
        tail.discard();
        return RawAnswer::Again;
    }
    let deadline = tokio::time::Instant::from_std(started) + plan.read_timeout;
    let mut spans = ResponseSpans::default();
    let read = tokio::time::timeout_at(deadline, up.read_head(&mut spans)).await;
    let ended = Instant::now();
    let elapsed = ended.saturating_duration_since(started);
    let head = match read {
        Ok(Ok(head)) => head,
        Ok(Err(why)) => {
            tracing::debug!(endpoint = %authority, error = %why, "pooled connection failed; sending the usual way");
            // The usual path counts an exchange that broke after sending as a retry.
            plan.metrics.retry(&plan.backend.name);
            tail.discard();
            return RawAnswer::Again;
        }
        Err(_) => {
            tail.entry.upstream_duration = Some(elapsed);
            plan.metrics.upstream(&plan.backend.name, elapsed);
            // A timeout is the worst latency we know of: let the balancer see it.
            pick.stats.observe_at(elapsed, micros_at(ended));
            let err = ProxyError::new(
                ErrorKind::ReadTimeout,
                format!(
                    "upstream {authority} sent no response headers within {:?}",
                    plan.read_timeout
                ),
            );
            return answer(gw, scheme, plan.host_tls, &plan.backend, tail, err);
        }
    };
    tail.entry.upstream_duration = Some(elapsed);
    plan.metrics.upstream(&plan.backend.name, elapsed);
    pick.stats.observe_at(elapsed, micros_at(ended));
    pick.stats.health.record_success();
    if head.framing == BodyFraming::Upgrade {
        let err = ProxyError::new(
            ErrorKind::UpstreamFailed,
            format!("upstream {authority} switched protocols unasked"),
        );
        return answer(gw, scheme, plan.host_tls, &plan.backend, tail, err);
    }
    tail.entry.status = head.status.as_u16();
    let hsts = proxy
        .config
        .edge_headers
        .as_ref()
        .and_then(|e| e.hsts_for(scheme, plan.host_tls));
    let server = proxy
        .config
        .edge_headers
        .as_ref()
        .and_then(|e| e.server_token());
    let framing = put_answer_head(
        out,
        &up.received()[..head.len],
        &spans,
        &head,
        keep_alive,
        hsts,
        server,
    );
    let body = up.into_body(pool, &head);
    let guards = Guards {
        _in_flight: Some(in_flight),
        _permit: Some(permit),
        _lease: None,
    };
    let body = ProxiedBody::new(ResponseBody::H1(body), tail, guards, plan.read_timeout);
    RawAnswer::Relay {
        body: body.boxed(),
        framing,
        keep_alive,
    }
}

/// Our own answer to a failed exchange, as the usual path gives it.
fn answer(
    gw: &Gateway,
    scheme: Scheme,
    host_tls: bool,
    backend: &Backend,
    mut tail: Tail,
    err: ProxyError,
) -> RawAnswer {
    record_failure(backend, err.kind);
    tail.entry.error = Some(err.kind);
    let mut resp = tail.attach(err.into_response());
    if let Some(edge) = &gw.proxy().config.edge_headers {
        edge.apply(&mut resp, scheme, host_tls);
    }
    RawAnswer::Answer(resp)
}

/// Writes the client's answer head from the pod's (`raw`, fields at `spans`) the way the
/// usual path's maps come out of `server::h1_write::encode_head`: the status line with
/// the canonical reason, the pod's fields less the hop-by-hop ones (and those its
/// `Connection` names), HSTS and the server token, `Connection: close`, `Date`, and the
/// framing. Returns how the body follows.
fn put_answer_head(
    out: &mut Vec<u8>,
    raw: &[u8],
    spans: &ResponseSpans,
    head: &ScannedHead,
    keep_alive: bool,
    hsts: Option<&HeaderValue>,
    server: Option<&HeaderValue>,
) -> Framing {
    let status = head.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // Most pods' `Connection` says `keep-alive` or `close`, which name no field; only
    // another token makes the per-field check below worth its cost.
    let names_fields = spans
        .fields(raw)
        .flat_map(connection_tokens)
        .any(|t| !t.eq_ignore_ascii_case(b"keep-alive") && !t.eq_ignore_ascii_case(b"close"));
    let named_by_connection = |name: &[u8]| {
        names_fields
            && spans
                .fields(raw)
                .flat_map(connection_tokens)
                .any(|t| t.eq_ignore_ascii_case(name))
    };
    let mut has_date = false;
    let mut has_hsts = false;
    let mut te_trailers = false;
    for (name, value) in spans.fields(raw) {
        if forwarded::is_hop_by_hop_bytes(name) {
            te_trailers |= name.eq_ignore_ascii_case(b"te")
                && value.split(|b| *b == b',').any(|t| {
                    let coding = t.split(|b| *b == b';').next().unwrap_or_default();
                    coding.trim_ascii().eq_ignore_ascii_case(b"trailers")
                });
            continue;
        }
        if (bodiless || head.stale_length) && name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        if named_by_connection(name) {
            continue;
        }
        has_date |= name.eq_ignore_ascii_case(b"date");
        has_hsts |= name.eq_ignore_ascii_case(b"strict-transport-security");
        let value = match server {
            Some(token) if name.eq_ignore_ascii_case(b"server") && value == b"portcullis" => {
                token.as_bytes()
            }
            _ => value,
        };
        put_field(out, name, value);
    }
    if te_trailers {
        put_field(out, b"te", b"trailers");
    }
    if let Some(hsts) = hsts.filter(|_| !has_hsts) {
        put_field(out, b"strict-transport-security", hsts.as_bytes());
    }
    if !keep_alive {
        put_field(out, b"connection", b"close");
    }
    if !has_date {
        crate::server::date::with_now(|date| put_field(out, b"date", date));
    }
    let framing = match head.framing {
        _ if bodiless => Framing::None,
        // The pod's own Content-Length went out with its fields.
        BodyFraming::Empty => Framing::Length(0),
        BodyFraming::Length(n) => Framing::Length(n),
        BodyFraming::Chunked | BodyFraming::UntilClose | BodyFraming::Upgrade => {
            put_field(out, b"transfer-encoding", b"chunked");
            Framing::Chunked
        }
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// The tokens of a `Connection` field; nothing for any other field.
fn connection_tokens<'h>((name, value): (&'h [u8], &'h [u8])) -> impl Iterator<Item = &'h [u8]> {
    name.eq_ignore_ascii_case(b"connection")
        .then(|| value.split(|b| *b == b',').map(|t| t.trim_ascii()))
        .into_iter()
        .flatten()
}
