//! The plain lane's core, shared by its two front ends: HTTP/1.1 requests are served from
//! the bytes of their head (`plain_lane.rs`), HTTP/2 requests from the map the h2 crate
//! built for them (`map_lane.rs`). Both ask the same question of the route (`route`), and send
//! and receive the same way (`send`): the balancer's pick and permit, a pooled
//! connection, the upstream head (the front end writes the request line and the client's
//! fields, the forwarded family is added here), and the answer's head scanned in place.
//! How the answer reaches the client is each front end's own business; which of the
//! pod's fields it passes on is decided here (`passed_fields`), as the usual path's
//! response filters decide it.
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Method, Response};
use http_body_util::BodyExt;

use crate::body::Body;
use crate::ingress::model::policy::Balance;
use crate::ingress::model::route_metrics::RouteMetrics;
use crate::ingress::model::snapshot::{Backend, Lookup, UpstreamProtocol};
use crate::ingress::request::access_log::Entry;
use crate::ingress::request::exchange::{endpoint_permit, record_failure};
use crate::ingress::request::forwarded::{self, Downstream};
use crate::ingress::request::gateway::{Gateway, host_has_tls};
use crate::ingress::request::health::{micros_at, monotonic_us};
use crate::ingress::request::proxy::Scheme;
use crate::ingress::request::proxy_error::{ErrorKind, ProxyError};
use crate::ingress::request::request_id::RequestId;
use crate::ingress::request::tail::{Guards, ProxiedBody, Tail};
use crate::ingress::request::upstream::{ResponseBody, UpstreamError};
use crate::ingress::request::upstream_h1::{H1Pool, RawConn};
use crate::ingress::request::upstream_h1_wire::{BodyFraming, ResponseSpans, ScannedHead};
use crate::server::ConnInfo;

/// What routing decided for a request the lane takes.
pub(crate) struct Lane {
    /// As the client sent it (Host or `:authority`), port included.
    pub(crate) host: HeaderValue,
    /// Path and query as sent, which is as routed (the lane takes only paths that
    /// normalise to themselves), for the access record: `None` when there is none.
    path: Option<PathAndQuery>,
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

/// The lane for a request to `host` (as sent) and `path` (normalised, without query),
/// when its route may take it: a route whose policy neither reads nor changes a header,
/// no HTTPS redirect, and a plain HTTP/1.1 backend that is not an ExternalName.
/// `path_and_query` is the target for the access record, if it is kept.
pub(crate) fn route(
    gw: &Gateway,
    scheme: Scheme,
    host: HeaderValue,
    path: &str,
    path_and_query: Option<PathAndQuery>,
) -> Option<Lane> {
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
    let config = &gw.proxy().config;
    Some(Lane {
        path: path_and_query,
        backend: route.backend.clone(),
        metrics: route.metrics.clone(),
        ingress: route.ingress.clone(),
        balance: policy.balance,
        connect_timeout: policy.connect_timeout.unwrap_or(config.connect_timeout),
        read_timeout: policy.read_timeout.unwrap_or(config.read_timeout),
        host_tls,
        port: port.unwrap_or(scheme.default_port()),
        host,
    })
}

/// Hosts remembered per thread, replaced in turn.
const HOSTS_KEPT: usize = 4;

thread_local! {
    /// The hosts this thread last made field values of. A client names the same host on
    /// every request of its connection, and a cached value is shared by a reference count,
    /// where a fresh one costs a check of every byte and (HTTP/2) a copy, and on its first
    /// clone (the access record's) a second allocation to become shareable. A few are
    /// kept so that clients of a handful of hosts taking turns still find theirs.
    static HOSTS: std::cell::RefCell<([Option<HeaderValue>; HOSTS_KEPT], usize)> =
        const { std::cell::RefCell::new(([const { None }; HOSTS_KEPT], 0)) };
}

/// A client's Host or `:authority` as a field value, from the thread's cache when it
/// names a host seen lately; `None` when it is not a valid value.
pub(crate) fn host_value(host: &[u8]) -> Option<HeaderValue> {
    HOSTS.with(|hosts| {
        let (kept, next) = &mut *hosts.borrow_mut();
        if let Some(value) = kept.iter().flatten().find(|v| v.as_bytes() == host) {
            return Some(value.clone());
        }
        let value = HeaderValue::from_bytes(host).ok()?;
        // Cloned once here, so the cached copy is the shared kind from now on.
        let shared = value.clone();
        kept[*next % HOSTS_KEPT] = Some(value);
        *next = next.wrapping_add(1);
        Some(shared)
    })
}

/// How `send` ended. `Received` is the usual outcome, moved once; boxing it would cost an
/// allocation per request to spare a copy of a few hundred bytes.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Sent {
    /// Nothing was sent (no endpoint to send to): serve it the usual way.
    Declined,
    /// Sent, but the connection broke before an answer's head; a GET without a body is
    /// safe to send again, the usual way.
    Again,
    /// Our own answer (503, 504, 502), as the usual path gives it.
    Answer(Response<Body>),
    /// The pod's answer's head arrived.
    Received(Received),
}

/// A pod's answer whose head has arrived; its body is still on the connection.
pub(crate) struct Received {
    up: RawConn,
    /// The answer's head, as the pod sent it.
    pub(crate) raw: Bytes,
    pub(crate) head: ScannedHead,
    tail: Tail,
    guards: Guards,
    read_timeout: Duration,
    pool: Arc<H1Pool>,
}

impl Received {
    /// The answer's body, which records the request (tail) when it ends.
    pub(crate) fn body(self) -> Body {
        let body = self.up.into_body(&self.pool, &self.head);
        ProxiedBody::new(
            ResponseBody::H1(body),
            self.tail,
            self.guards,
            self.read_timeout,
        )
        .boxed()
    }

    /// The pod's fields the client gets (see `passed_fields`).
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        passed_fields(&self.raw, self.up.spans(), &self.head)
    }

    /// How many fields the pod sent.
    pub(crate) fn field_count(&self) -> usize {
        self.up.spans().len()
    }

    /// Whether the pod's answer says `TE: trailers`, which the usual path keeps.
    pub(crate) fn te_trailers(&self) -> bool {
        self.head.te_trailers
    }
}

/// Sends a GET for `lane` on a pooled (or new) connection and waits for the answer's
/// head. `put_request` writes the request line and the client's fields; the forwarded
/// family and the blank line follow.
pub(crate) async fn send(
    gw: &Gateway,
    scheme: Scheme,
    lane: &Lane,
    conn: &ConnInfo,
    put_request: impl FnOnce(&mut Vec<u8>),
) -> Sent {
    let proxy = gw.proxy();
    // One clock reading serves the pick, the access record and the latency measure.
    let mut started = Instant::now();
    let Some(pick) = proxy
        .balancer
        .pick_at(&lane.backend, lane.balance, None, micros_at(started))
    else {
        // Nobody to send to: the usual path has the answer for that.
        return Sent::Declined;
    };
    let peer = conn.remote.ip().to_canonical();
    let request_id = RequestId::fresh();
    let entry = Entry {
        client: peer,
        method: Method::GET,
        host: lane.host.clone(),
        path: lane
            .path
            .clone()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        upstream_addr: Some(pick.addr),
        ingress: Some(lane.ingress.clone()),
        service: Some(lane.backend.name.clone()),
        request_id: Some(request_id.clone()),
        // The time is set when the line is written (see `Proxy::begin_with`).
        ..Entry::default()
    };

    // From here a client that leaves is recorded (499), as on the usual path.
    let mut tail = Tail::started_at(entry, proxy.config.access_log, started);
    tail.route = Some(lane.metrics.clone());
    let permit = match endpoint_permit(&pick, lane.connect_timeout, &mut started).await {
        Ok(permit) => permit,
        Err(err) => return failed(gw, scheme, lane, tail, err),
    };
    let Some(authority) = pick.stats.authority.as_ref() else {
        tail.discard();
        return Sent::Declined;
    };
    let mut up = match proxy
        .upstreams
        .plain_conn(authority, lane.connect_timeout)
        .await
    {
        Ok(up) => up,
        Err(err) => {
            // The usual path retries elsewhere; the endpoint's health hears of it first.
            if let UpstreamError::Connect { kind, message } = &err {
                if kind.ejects() {
                    pick.stats.health.record_connect_failure(monotonic_us());
                }
                record_failure(&lane.backend, ErrorKind::Connect(*kind));
                tracing::debug!(endpoint = %authority, error = %message, "connect failed; sending the usual way");
            }
            lane.metrics.retry(&lane.backend.name);
            tail.discard();
            return Sent::Again;
        }
    };
    let head = up.head_buf();
    put_request(head);
    let down = Downstream {
        peer,
        // No forwarded field came with the request, so the peer is the client.
        client: peer,
        peer_trusted: false,
        scheme: scheme.as_str(),
        host: lane.host.to_str().unwrap_or(""),
        port: lane.port,
    };
    forwarded::put_forwarded(head, &down, request_id.as_bytes());
    head.extend_from_slice(b"\r\n");
    let in_flight = pick.stats.start();
    if up.send().await.is_err() {
        tail.discard();
        return Sent::Again;
    }
    let deadline = tokio::time::Instant::from_std(started) + lane.read_timeout;
    let read = up.read_head_until(deadline).await;
    let ended = Instant::now();
    let elapsed = ended.saturating_duration_since(started);
    let head = match read {
        Some(Ok(head)) => head,
        Some(Err(why)) => {
            tracing::debug!(endpoint = %authority, error = %why, "pooled connection failed; sending the usual way");
            // The usual path counts an exchange that broke after sending as a retry.
            lane.metrics.retry(&lane.backend.name);
            tail.discard();
            return Sent::Again;
        }
        None => {
            tail.entry.upstream_duration = Some(elapsed);
            lane.metrics.upstream(&lane.backend.name, elapsed);
            // A timeout is the worst latency we know of: let the balancer see it.
            pick.stats.observe_at(elapsed, micros_at(ended));
            let err = ProxyError::new(
                ErrorKind::ReadTimeout,
                format!(
                    "upstream {authority} sent no response headers within {:?}",
                    lane.read_timeout
                ),
            );
            return failed(gw, scheme, lane, tail, err);
        }
    };
    tail.entry.upstream_duration = Some(elapsed);
    lane.metrics.upstream(&lane.backend.name, elapsed);
    pick.stats.observe_at(elapsed, micros_at(ended));
    pick.stats.health.record_success();
    if head.framing == BodyFraming::Upgrade {
        let err = ProxyError::new(
            ErrorKind::UpstreamFailed,
            format!("upstream {authority} switched protocols unasked"),
        );
        return failed(gw, scheme, lane, tail, err);
    }
    tail.entry.status = head.status.as_u16();
    Sent::Received(Received {
        raw: up.take_head(head.len),
        head,
        tail,
        guards: Guards {
            _in_flight: Some(in_flight),
            _permit: Some(permit),
            _lease: None,
        },
        read_timeout: lane.read_timeout,
        pool: proxy.upstreams.h1_shared().clone(),
        up,
    })
}

/// Our own answer to a failed exchange, as the usual path gives it.
fn failed(gw: &Gateway, scheme: Scheme, lane: &Lane, mut tail: Tail, err: ProxyError) -> Sent {
    record_failure(&lane.backend, err.kind);
    tail.entry.error = Some(err.kind);
    let mut resp = tail.attach(err.into_response());
    if let Some(edge) = &gw.proxy().config.edge_headers {
        edge.apply(&mut resp, scheme, lane.host_tls);
    }
    Sent::Answer(resp)
}

impl Lane {
    /// HSTS for this request's answer, when the settings add it.
    pub(crate) fn hsts<'g>(&self, gw: &'g Gateway, scheme: Scheme) -> Option<&'g HeaderValue> {
        let edge = gw.proxy().config.edge_headers.as_ref()?;
        edge.hsts_for(scheme, self.host_tls)
    }

    pub(crate) fn host_tls(&self) -> bool {
        self.host_tls
    }
}

/// The pod's fields that go on to the client, as the usual path's response filters leave
/// them: without the hop-by-hop ones (`TE` included), those its `Connection` names, and a
/// `Content-Length` sent beside `Transfer-Encoding`.
fn passed_fields<'h>(
    raw: &'h [u8],
    spans: &'h ResponseSpans,
    head: &ScannedHead,
) -> impl Iterator<Item = (&'h [u8], &'h [u8])> + 'h {
    // Most pods' `Connection` says `keep-alive` or `close`, which name no field; only
    // another token (seen by the head's scan) makes the per-field check below worth its
    // cost.
    let names_fields = head.connection_names_fields;
    let stale_length = head.stale_length;
    spans.fields(raw).filter(move |&(name, _)| {
        !(forwarded::is_hop_by_hop_bytes(name)
            || (stale_length && name.eq_ignore_ascii_case(b"content-length"))
            || (names_fields
                && spans
                    .fields(raw)
                    .flat_map(connection_tokens)
                    .any(|t| t.eq_ignore_ascii_case(name))))
    })
}

/// The tokens of a `Connection` field; nothing for any other field.
fn connection_tokens<'h>((name, value): (&'h [u8], &'h [u8])) -> impl Iterator<Item = &'h [u8]> {
    name.eq_ignore_ascii_case(b"connection")
        .then(|| value.split(|b| *b == b',').map(|t| t.trim_ascii()))
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_are_the_host_asked_for_whatever_came_before() {
        let hosts: Vec<String> = (0..HOSTS_KEPT + 2)
            .map(|i| format!("h{i}.example:8443"))
            .collect();
        // Twice round more hosts than are kept, then a few taking turns: each value is
        // the host asked for, from the cache or made anew.
        for round in 0..2 {
            for h in &hosts {
                assert_eq!(
                    host_value(h.as_bytes()).unwrap(),
                    h.as_str(),
                    "round {round}"
                );
            }
        }
        for h in hosts.iter().take(2).cycle().take(6) {
            assert_eq!(host_value(h.as_bytes()).unwrap(), h.as_str());
        }
        assert_eq!(host_value(b"h0.example").unwrap(), "h0.example");
        // An invalid one is refused and displaces nothing.
        assert!(host_value(b"bad\nhost").is_none());
        assert_eq!(host_value(hosts[1].as_bytes()).unwrap(), hosts[1].as_str());
    }
}
