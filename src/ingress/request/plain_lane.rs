//! The plain lane: most ingress traffic is a GET with no body, on a route whose policy
//! neither reads nor changes a header, to a plain HTTP/1.1 pod. Such a request is served
//! from the bytes of its head: the upstream head is the client's field lines plus the
//! forwarded family, and the answer's head goes back as the pod's field lines less the
//! hop-by-hop ones. No header map is built, filled or encoded on either side, which is
//! where the usual path spent most of its time per request (docs/PERFORMANCE.md).
//!
//! The exchange itself (pick, permit, pooled connection, forwarded fields, the answer's
//! head) is `lane_exchange.rs`, shared with the lane's HTTP/2 front end (`map_lane.rs`).
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

use http::StatusCode;
use http::header::HeaderValue;
use http::uri::PathAndQuery;

use crate::http_text::put_field;
use crate::ingress::request::forwarded;
use crate::ingress::request::gateway::Gateway;
use crate::ingress::request::lane_exchange::{self, Lane, Received, Sent};
use crate::ingress::request::normalize::normalize_path;
use crate::ingress::request::proxy::Scheme;
use crate::ingress::request::upstream_h1_wire::BodyFraming;
use crate::server::raw::Framing;
use crate::server::{ConnInfo, RawAnswer, RawRequest};

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
    let Some(lane) = plan(gw, scheme, req) else {
        return RawAnswer::Declined;
    };
    let put_request = |head: &mut Vec<u8>| {
        head.extend_from_slice(b"GET ");
        head.extend_from_slice(req.target());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in req.fields() {
            if !name.eq_ignore_ascii_case(b"connection") {
                put_field(head, name, value);
            }
        }
    };
    match lane_exchange::send(gw, scheme, &lane, conn, put_request).await {
        Sent::Declined => RawAnswer::Declined,
        Sent::Again => RawAnswer::Again,
        Sent::Answer(resp) => RawAnswer::Answer(resp),
        Sent::Received(received) => {
            let framing = put_answer_head(out, &received, keep_alive, lane.hsts(gw, scheme), {
                let edge = gw.proxy().config.edge_headers.as_ref();
                edge.and_then(|e| e.server_token())
            });
            RawAnswer::Relay {
                body: received.body(),
                framing,
                keep_alive,
            }
        }
    }
}

/// Whether the lane takes `req`, and where it goes.
fn plan(gw: &Gateway, scheme: Scheme, req: RawRequest<'_>) -> Option<Lane> {
    if !gw.proxy().config.plain_lane || req.method() != b"GET" || req.minor_version() != 1 {
        return None;
    }
    let target = std::str::from_utf8(req.target()).ok()?;
    if !target.starts_with('/') {
        return None;
    }
    // A byte search: `split_once`'s char searcher cost about 100 instructions here.
    let path = match target.bytes().position(|b| b == b'?') {
        Some(q) => &target[..q],
        None => target,
    };
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
    let host = lane_exchange::host_value(host?)?;
    // Parsed whether or not a record keeps it: a target the URI rules refuse (say, a
    // query holding `<`) goes the usual way, which answers 400, log or no log.
    let path_and_query = PathAndQuery::from_maybe_shared(req.target_shared()).ok()?;
    let record = gw.proxy().config.access_log.then_some(path_and_query);
    lane_exchange::route(gw, scheme, host, path, record)
}

/// Writes the client's answer head from the pod's the way the usual path's maps come out
/// of `server::h1_write::encode_head`: the status line with the canonical reason, the
/// pod's fields less the hop-by-hop ones (`lane_exchange::Received::fields`), HSTS and the
/// server token, `Connection: close`, `Date`, and the framing. Returns how the body
/// follows.
fn put_answer_head(
    out: &mut Vec<u8>,
    received: &Received,
    keep_alive: bool,
    hsts: Option<&HeaderValue>,
    server: Option<&HeaderValue>,
) -> Framing {
    let head = &received.head;
    let status = head.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut has_date = false;
    let mut has_hsts = false;
    for (name, value) in received.fields() {
        if bodiless && name.eq_ignore_ascii_case(b"content-length") {
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
    if received.te_trailers() {
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
