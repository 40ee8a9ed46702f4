//! Custom error pages (`custom-http-errors` with `default-backend`, or the controller-wide
//! `proxy.customHttpErrors` / `proxy.defaultBackend`): when the answer for a route has
//! one of the listed codes, a `GET /` goes to the error backend with ingress-nginx's
//! `X-Code`, `X-Format`, `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`,
//! `X-Service-Name`, `X-Service-Port` and `X-Request-ID` headers, and the client gets its
//! body under the original status code.
//!
//! Failure behaviour: if the error backend cannot be reached or fails, the caller sends
//! the original answer; an error page never replaces a response with a worse one.
use std::sync::LazyLock;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Response, StatusCode, Version};
use prometheus::{IntCounterVec, Opts};

use crate::ingress::model::snapshot::{Backend, Route, UpstreamProtocol};
use crate::ingress::request::exchange::Exchange;
use crate::ingress::request::forwarded;
use crate::ingress::request::proxy::Proxy;
use crate::ingress::request::tail::{Guards, Tail};
use crate::ingress::request::upstream::{ResponseBody, Wire};

static TEXT_HTML: HeaderValue = HeaderValue::from_static("text/html");

/// `ingress_error_pages_total{service, outcome}`: pages fetched from an error backend
/// (`served`) or not (`failed`, the original answer went out). Labels come from
/// configuration only.
fn record(service: &str, outcome: &str) {
    static PAGES: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
        IntCounterVec::new(
            Opts::new(
                "ingress_error_pages_total",
                "Custom error pages fetched from an error backend, by outcome.",
            ),
            &["service", "outcome"],
        )
        .map(crate::metrics::register)
        .ok()
    });
    if let Some(c) = PAGES.as_ref() {
        c.with_label_values(&[service, outcome]).inc();
    }
}

/// What the error page request needs from the original one.
struct Original<'a> {
    status: StatusCode,
    /// The backend the request was meant for (`namespace/service:port`).
    backend: &'a Backend,
    headers: &'a HeaderMap,
}

impl Proxy {
    /// The error page for an answer with `status` on `route`, when its Ingress intercepts
    /// that code and the error backend answered; `None` means: send the original answer.
    pub(crate) async fn error_page(
        &self,
        route: &Route,
        backend: &Backend,
        status: StatusCode,
        ex: &Exchange,
        tail: &mut Tail,
    ) -> Option<(Response<ResponseBody>, Guards, Duration)> {
        let error_backend = route.policy.edge.as_deref()?.intercepts(status)?;
        let original = Original {
            status,
            backend,
            headers: &ex.headers,
        };
        let headers = page_headers(route, &original, tail);
        let wire = match error_backend.protocol {
            UpstreamProtocol::Http1 => Wire::Http1,
            UpstreamProtocol::H2c => Wire::H2c,
            UpstreamProtocol::Https => Wire::Https,
            UpstreamProtocol::Grpcs => Wire::Grpcs,
        };
        let h2_authority = match wire.is_h2() {
            true => ex
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse().ok()),
            false => None,
        };
        let page = Exchange {
            method: Method::GET,
            headers,
            upstream_pq: PathAndQuery::from_static("/"),
            version: if wire.is_h2() {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            slot: None,
            wire,
            h2_authority,
            connect_timeout: ex.connect_timeout,
            read_timeout: ex.read_timeout,
            send_timeout: ex.send_timeout,
            upgrade: false,
            // The error backend is balanced on its own, not by the route's affinity.
            steer: None,
            backend_tls: None,
        };
        match self.exchange(route, error_backend, &page, tail).await {
            Ok((mut resp, guards)) => {
                record(&error_backend.name, "served");
                forwarded::strip_hop_by_hop(resp.headers_mut(), false);
                *resp.status_mut() = status;
                Some((resp, guards, page.read_timeout))
            }
            Err(failed) => {
                record(&error_backend.name, "failed");
                tracing::debug!(
                    backend = %error_backend.name,
                    status = %failed.status(),
                    "error backend failed; sending the original answer"
                );
                None
            }
        }
    }
}

/// The request headers of the error page request, named as ingress-nginx names them.
fn page_headers(route: &Route, original: &Original<'_>, tail: &Tail) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(12);
    h.insert("x-code", HeaderValue::from(original.status.as_u16()));
    let format = original
        .headers
        .get(header::ACCEPT)
        .filter(|v| !v.is_empty())
        .unwrap_or(&TEXT_HTML);
    h.insert("x-format", format.clone());
    if let Ok(v) = HeaderValue::from_str(tail.entry.path.as_str()) {
        h.insert("x-original-uri", v);
    }
    let (namespace, ingress) = route
        .ingress
        .split_once('/')
        .unwrap_or(("", &route.ingress));
    let (service, port) = service_and_port(&original.backend.name);
    for (name, value) in [
        ("x-namespace", namespace),
        ("x-ingress-name", ingress),
        ("x-service-name", service),
        ("x-service-port", port),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    if let Some(id) = &tail.entry.request_id {
        h.insert("x-request-id", id.to_value());
    }
    for name in [header::HOST, header::USER_AGENT] {
        if let Some(v) = original.headers.get(&name) {
            h.insert(name, v.clone());
        }
    }
    if let Some(v) = original.headers.get("x-forwarded-for") {
        h.insert("x-forwarded-for", v.clone());
    }
    h
}

/// `namespace/service:port` → (`service`, `port`).
fn service_and_port(name: &str) -> (&str, &str) {
    let rest = name.split_once('/').map_or(name, |(_, r)| r);
    rest.rsplit_once(':').unwrap_or((rest, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_name_parts() {
        assert_eq!(service_and_port("shop/web:http"), ("web", "http"));
        assert_eq!(service_and_port("shop/web:8080"), ("web", "8080"));
        assert_eq!(service_and_port("web"), ("web", ""));
    }
}
