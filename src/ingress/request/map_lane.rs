//! The plain lane for HTTP/2 requests. The server hands them over as a `Request` whose
//! fields are already in a map (the h2 crate's, through `server::h2` or hyper for h2c); what the lane saves here is the usual path's work after that:
//! the phases, copying and editing the map for the pod (the forwarded family, Host, the
//! hop-by-hop sweep), encoding it, and editing the answer's map. The upstream head is
//! written straight from the client's map (`lane_exchange::send` adds the forwarded
//! family), and the answer's map is filled once, from the pod's fields the usual path
//! would keep (`lane_exchange::Received::fields`).
//!
//! It takes what the HTTP/1.1 lane takes (`plain_lane.rs`): a GET without a body, no
//! forwarded or hop-by-hop field, no `Host` beside `:authority`, a path that normalises to
//! itself, and a route that `lane_exchange::route` allows. Anything else, and a request
//! whose exchange broke before the answer's head, is served the usual way.
//! `tests/plain_lane.rs` holds both lanes to the usual path's output.
use std::borrow::Cow;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, Version};
use http_body::Body as _;

use crate::body::{Body, RequestBody};
use crate::http_text::put_field;
use crate::ingress::request::gateway::Gateway;
use crate::ingress::request::lane_exchange::{self, Lane, Received, Sent};
use crate::ingress::request::normalize::normalize_path;
use crate::ingress::request::proxy::Scheme;
use crate::ingress::request::{field_names, forwarded};
use crate::server::ConnInfo;

/// Whether the lane takes `req`, and where it goes.
pub(crate) fn plan(gw: &Gateway, scheme: Scheme, req: &Request<RequestBody>) -> Option<Lane> {
    if !gw.proxy().config.plain_lane
        || req.version() != Version::HTTP_2
        || req.method() != Method::GET
        || !req.body().is_end_stream()
    {
        return None;
    }
    let path_and_query = req.uri().path_and_query()?;
    let path = path_and_query.path();
    if !matches!(normalize_path(path), Ok(Cow::Borrowed(_))) {
        return None;
    }
    let authority = req.uri().authority()?;
    let declined = req.headers().keys().any(|name| {
        name == header::HOST
            || name == header::CONTENT_LENGTH
            || forwarded::is_hop_by_hop(name)
            || forwarded::is_forwarding_name(name)
    });
    if declined {
        return None;
    }
    let host = lane_exchange::host_value(authority.as_str().as_bytes())?;
    // Kept for the access record only: without it, the lane has the request's own.
    let record = gw.proxy().config.access_log.then(|| path_and_query.clone());
    lane_exchange::route(gw, scheme, host, path, record)
}

/// Serves a planned request; `None` when the usual path is to serve it after all (no
/// endpoint was ready, or the exchange broke before the answer's head).
pub(crate) async fn serve(
    gw: &Gateway,
    scheme: Scheme,
    lane: &Lane,
    req: &Request<RequestBody>,
    conn: &ConnInfo,
) -> Option<Response<Body>> {
    let put_request = |head: &mut Vec<u8>| {
        head.extend_from_slice(b"GET ");
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        put_field(head, b"host", lane.host.as_bytes());
        for (name, value) in req.headers() {
            put_field(head, name.as_str().as_bytes(), value.as_bytes());
        }
    };
    match lane_exchange::send(gw, scheme, lane, conn, put_request).await {
        Sent::Declined | Sent::Again => None,
        Sent::Answer(resp) => Some(resp),
        Sent::Received(received) => Some(answer(gw, scheme, lane, received)),
    }
}

/// The client's answer: the pod's status and the fields the usual path keeps, then what
/// the gateway adds to every answer (HSTS, the server token). The server adds `Date` and
/// drops what HTTP/2 forbids, as it does for the usual path's answers.
fn answer(gw: &Gateway, scheme: Scheme, lane: &Lane, received: Received) -> Response<Body> {
    let mut headers = crate::header_pool::take(received.field_count() + 2);
    field_names::with(|names| {
        for (i, (name, value)) in received.fields().enumerate() {
            // The scan checked names and values as `HeaderName` and `HeaderValue` do.
            let (Some(name), Ok(value)) = (
                names.get(i, name),
                HeaderValue::from_maybe_shared(received.raw.slice_ref(value)),
            ) else {
                continue;
            };
            headers.append(name, value);
        }
    });
    // No `TE: trailers` here although the usual path keeps it: HTTP/2 forbids TE in an
    // answer, and the server would only strip it again.
    let status = received.head.status;
    let mut resp = Response::new(received.body());
    *resp.status_mut() = status;
    *resp.version_mut() = Version::HTTP_2;
    *resp.headers_mut() = headers;
    if let Some(edge) = &gw.proxy().config.edge_headers {
        edge.apply(&mut resp, scheme, lane.host_tls());
    }
    resp
}
