//! The request path after routing, as named phases run in one place and in order:
//!
//! 1. **request filters** — answers given before anything goes upstream: client
//!    certificates, redirects, allow-lists and body limits, CORS preflights, rate and
//!    connection limits, external or basic auth;
//! 2. **upstream choice** — canary, the default backend for an empty Service, the wire
//!    protocol, affinity or hashing;
//! 3. **upstream request** — rewrite, hop-by-hop and forwarded headers, the Host to send,
//!    the request body (and its mirror);
//! 4. **exchange** — endpoint, permit, send, retries (`exchange.rs`);
//! 5. **response filters** — error pages, affinity cookies, upgrades, configured headers;
//! 6. **logging** — the access record and metrics, when the body ends (`Proxy::forward`
//!    hands the response its `Tail`).
//!
//! Everything the phases need from the request, the route and the listener is worked out
//! once, in [`RequestCtx`]. A failure on the way is a [`ProxyError`]; an answer a policy
//! gives (403, 429, a redirect) is a plain response.
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::body::RequestBody;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;

use crate::body::{self, Body};
use crate::ingress::model::policy::Policy;
use crate::ingress::model::snapshot::{Backend, Route, UpstreamProtocol};
use crate::ingress::request::auth::{self, Granted};
use crate::ingress::request::cors::Cors;
use crate::ingress::request::exchange::Exchange;
use crate::ingress::request::forwarded::{self, Downstream};
use crate::ingress::request::proxy::{Inbound, Proxy, Scheme};
use crate::ingress::request::proxy_error::{ErrorKind, ProxyError};
use crate::ingress::request::request_host::RequestHost;
use crate::ingress::request::request_id::RequestId;
use crate::ingress::request::tail::{Guards, Tail};
use crate::ingress::request::traffic::Steer;
use crate::ingress::request::upstream::{BodySlot, ResponseBody, Wire};
use crate::ingress::request::{canary, client_auth, filters, mirror, rewrite};

/// One routed request as every phase sees it, derived once.
pub(crate) struct RequestCtx<'r> {
    pub(crate) route: &'r Route,
    pub(crate) policy: &'r Policy,
    pub(crate) inbound: Inbound<'r>,
    pub(crate) host: RequestHost,
    /// Path and query as routed (normalised); shares the access record's buffer.
    pub(crate) pq: PathAndQuery,
    pub(crate) peer: IpAddr,
    pub(crate) peer_trusted: bool,
    /// The client after trusted-proxy processing.
    pub(crate) client: IpAddr,
    pub(crate) content_length: Option<u64>,
    /// The route answers CORS for this request's Origin.
    pub(crate) cors_allowed: bool,
}

impl<'r> RequestCtx<'r> {
    pub(crate) fn new(
        proxy: &Proxy,
        route: &'r Route,
        inbound: Inbound<'r>,
        host: RequestHost,
        req: &Request<RequestBody>,
        tail: &Tail,
        cors_allowed: bool,
    ) -> Self {
        let peer = inbound.conn.remote.ip().to_canonical();
        Self {
            route,
            policy: &route.policy,
            inbound,
            host,
            pq: tail.entry.path.clone(),
            peer,
            peer_trusted: forwarded::is_trusted(peer, &proxy.config.trusted_proxies),
            client: tail.entry.client,
            content_length: req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok()),
            cors_allowed,
        }
    }

    /// What the access filters and auth look at.
    fn head(&self, https_port: Option<u16>) -> filters::Head<'_> {
        filters::Head {
            client: self.client,
            scheme: self.inbound.scheme.as_str(),
            host: self.host.raw(),
            hostname: self.host.name(),
            path: self.pq.path(),
            path_and_query: self.pq.as_str(),
            host_tls: self.inbound.host_tls,
            content_length: self.content_length,
            https_port,
        }
    }
}

/// How the phases ended: an answer of ours, a failure, or the pod's response to stream.
pub(crate) enum Outcome {
    Answer(Response<Body>),
    Failed(ProxyError),
    /// With the read timeout that applies between body reads.
    Streamed(Response<ResponseBody>, Guards, Duration),
}

/// Where the request goes (phase 2).
struct Choice<'r> {
    backend: &'r Arc<Backend>,
    wire: Wire,
    steer: Option<Box<Steer>>,
}

/// The request as it goes upstream (phase 3), and what the response phase needs of the
/// client's side.
struct Prepared {
    exchange: Exchange,
    client_upgrade: Option<OnUpgrade>,
    client_version: Version,
}

impl Proxy {
    /// Runs phases 1–5 for a routed request.
    /// Not an `async fn`, so the request is held once (see `Gateway::handle`).
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn run_phases(
        &self,
        ctx: &RequestCtx<'_>,
        captures: &[String],
        mut req: Request<RequestBody>,
        tail: &mut Tail,
    ) -> impl Future<Output = Outcome> + Send {
        async move {
            let granted = match self.request_filters(ctx, &mut req, tail).await {
                Ok(granted) => granted,
                Err(answer) => return Outcome::Answer(answer),
            };
            let Choice {
                backend,
                wire,
                steer,
            } = self.choose_upstream(ctx, &req);
            tail.entry.service = Some(backend.name.clone());
            let prepared =
                match self.upstream_request(ctx, wire, steer, captures, req, &granted, tail) {
                    Ok(p) => p,
                    Err(e) => return Outcome::Failed(e),
                };
            let (resp, guards) = match self
                .exchange(ctx.route, backend, &prepared.exchange, tail)
                .await
            {
                Ok(ok) => ok,
                Err(err) => {
                    // Our own 502/503/504 get the error page too, as nginx's do.
                    if ctx.policy.edge.is_some()
                        && matches!(err.status().as_u16(), 502..=504)
                        && let Some((page, guards, timeout)) = Box::pin(self.error_page(
                            ctx.route,
                            backend,
                            err.status(),
                            &prepared.exchange,
                            tail,
                        ))
                        .await
                    {
                        tail.entry.error = Some(err.kind);
                        return Outcome::Streamed(page, guards, timeout);
                    }
                    return Outcome::Failed(err);
                }
            };
            // Boxed, as the error-page exchange is rare and its state large.
            if ctx.policy.edge.is_some()
                && let Some((page, guards, timeout)) = Box::pin(self.error_page(
                    ctx.route,
                    backend,
                    resp.status(),
                    &prepared.exchange,
                    tail,
                ))
                .await
            {
                return Outcome::Streamed(page, guards, timeout);
            }
            self.response_filters(ctx, resp, guards, prepared, &granted, tail)
        }
    }

    /// Phase 1. `Ok` carries what an auth service handed on, for the upstream request
    /// and the response.
    async fn request_filters(
        &self,
        ctx: &RequestCtx<'_>,
        req: &mut Request<RequestBody>,
        tail: &mut Tail,
    ) -> Result<Option<Arc<Granted>>, Response<Body>> {
        let policy = ctx.policy;
        if let Some(edge) = &policy.tls_edge
            && let Some(spec) = &edge.client_auth
        {
            let tag = req.extensions().get::<crate::server::ConnTag>().cloned();
            // A TLS connection opened for another name (HTTP/2 coalescing) was never asked
            // for this host's certificate.
            let conn = ctx.inbound.conn;
            let other_name = conn.tls && conn.sni.as_deref() != Some(ctx.host.name());
            if let Some(answer) =
                client_auth::admit(spec, tag.as_ref(), other_name, req.headers_mut())
            {
                return Err(answer);
            }
        }
        let head = ctx.head(self.config.https_redirect_port);
        // Redirect annotations answer before the access checks, as their nginx `return`
        // does; nothing reaches a backend either way.
        if let Some(edge) = policy.edge.as_deref()
            && let Some(answer) =
                edge.redirect_for(head.scheme, ctx.host.port(), head.path_and_query)
        {
            return Err(answer);
        }
        if let Some(answer) = filters::check(policy, &head) {
            return Err(answer);
        }
        if ctx.cors_allowed && Cors::is_preflight(req.method(), req.headers()) {
            return Err(Cors::preflight());
        }
        if let Some(traffic) = &policy.traffic
            && let Some(answer) = traffic.admit(self, ctx.route, ctx.client, tail)
        {
            return Err(answer);
        }
        let Some(auth) = &policy.auth else {
            return Ok(None);
        };
        // Boxed: the auth future's state stays out of every request's future.
        let check = auth::check(
            auth,
            &policy.allow_source,
            &head,
            req.method(),
            req.headers(),
        );
        match Box::pin(check).await {
            auth::Verdict::Pass(granted) => Ok(granted),
            auth::Verdict::Answer(answer) => Err(answer),
        }
    }

    /// Phase 2.
    fn choose_upstream<'r>(&self, ctx: &RequestCtx<'r>, req: &Request<RequestBody>) -> Choice<'r> {
        let policy = ctx.policy;
        let (backend, _is_canary) =
            canary::choose(&ctx.route.backend, policy.canary.as_ref(), req.headers());
        let backend = match policy.edge.as_deref() {
            Some(edge) => edge.fallback(backend),
            None => backend,
        };
        let wire = match policy.backend_protocol.unwrap_or(backend.protocol) {
            UpstreamProtocol::Http1 => Wire::Http1,
            UpstreamProtocol::H2c => Wire::H2c,
            UpstreamProtocol::Https => Wire::Https,
            UpstreamProtocol::Grpcs => Wire::Grpcs,
        };
        let steer = policy.traffic.as_ref().and_then(|traffic| {
            traffic.steer(&crate::ingress::request::hash_by::RequestView {
                client: ctx.client,
                scheme: ctx.inbound.scheme.as_str(),
                method: req.method(),
                hostname: ctx.host.name(),
                path: ctx.pq.path(),
                path_and_query: ctx.pq.as_str(),
                headers: req.headers(),
            })
        });
        Choice {
            backend,
            wire,
            steer,
        }
    }

    /// Phase 3: the request as the pod gets it. Takes the client's request apart; its
    /// headers are edited in place.
    #[allow(clippy::too_many_arguments)]
    fn upstream_request(
        &self,
        ctx: &RequestCtx<'_>,
        wire: Wire,
        steer: Option<Box<Steer>>,
        captures: &[String],
        mut req: Request<RequestBody>,
        granted: &Option<Arc<Granted>>,
        tail: &mut Tail,
    ) -> Result<Prepared, ProxyError> {
        let policy = ctx.policy;
        let upgrade = !wire.is_h2()
            && forwarded::is_upgrade_request(
                req.version(),
                req.headers(),
                &policy.upgrade_protocols,
            );
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let upstream_pq = match &policy.rewrite_target {
            Some(target) => {
                let rewritten =
                    rewrite::rewrite_path_and_query(target, captures, req.uri().query());
                PathAndQuery::try_from(rewritten).map_err(|_| {
                    ProxyError::new(
                        ErrorKind::BadRewrite,
                        "the rewritten request path is not a valid URI",
                    )
                })?
            }
            None => ctx.pq.clone(),
        };

        let (parts, body) = req.into_parts();
        let method = parts.method;
        let mut headers = parts.headers;
        forwarded::strip_hop_by_hop(&mut headers, upgrade);
        let host_raw = ctx.host.raw();
        let down = Downstream {
            peer: ctx.peer,
            client: ctx.client,
            peer_trusted: ctx.peer_trusted,
            scheme: ctx.inbound.scheme.as_str(),
            host: host_raw,
            port: ctx.host.port().unwrap_or(ctx.inbound.scheme.default_port()),
        };
        let request_id =
            forwarded::apply_forwarded(&mut headers, &down, policy.x_forwarded_prefix.as_deref());
        // X-Real-IP already holds the client alone, as a shared value.
        if ctx.peer_trusted
            && !self.config.full_forwarded_for
            && let Some(client) = headers.get(&forwarded::X_REAL_IP).cloned()
        {
            headers.insert(&forwarded::X_FORWARDED_FOR, client);
        }
        tail.entry.request_id = Some(RequestId::Value(request_id));
        let host_value = policy.upstream_vhost.as_deref().unwrap_or(host_raw);
        // HTTP/2 carries the host as `:authority` (set from the URI); a Host header
        // alongside it would be redundant at best.
        let h2_authority = match wire.is_h2() {
            true => host_value.parse::<http::uri::Authority>().ok(),
            false => None,
        };
        if wire.is_h2() {
            headers.remove(header::HOST);
        } else if !host_value.is_empty()
            && forwarded::single_value(&headers, &header::HOST)
                .is_none_or(|v| v.as_bytes() != host_value.as_bytes())
        {
            let v = HeaderValue::from_str(host_value)
                .map_err(|_| ProxyError::new(ErrorKind::BadHost, "invalid host"))?;
            headers.insert(header::HOST, v);
        }
        for (name, value) in &policy.request_headers {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(external) = policy.auth.as_ref().and_then(|a| a.external.as_ref()) {
            external.set_upstream_headers(&mut headers, granted.as_deref());
        }

        let slot = self.request_body(ctx, body, &method, &headers);
        tail.slot = slot.clone();
        let connect_timeout = policy
            .connect_timeout
            .unwrap_or(self.config.connect_timeout);
        let mut exchange = Exchange {
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
            connect_timeout,
            read_timeout: policy.read_timeout.unwrap_or(self.config.read_timeout),
            send_timeout: policy.send_timeout.unwrap_or(self.config.send_timeout),
            upgrade,
            steer,
            backend_tls: None,
        };
        if let Some(edge) = &policy.tls_edge
            && let Some(spec) = edge.backend_tls.as_ref().filter(|_| wire.is_tls())
        {
            let b = spec.compiled().map_err(|why| {
                ProxyError::new(
                    ErrorKind::BackendTls,
                    format!("TLS to the backend is not configured: {why}"),
                )
            })?;
            exchange.backend_tls = Some(b.clone());
        }
        Ok(Prepared {
            exchange,
            client_upgrade,
            client_version: parts.version,
        })
    }

    /// The request body as attempts read it (none for an empty body), teed to the mirror
    /// when the Ingress mirrors bodies; starts the mirror request.
    fn request_body(
        &self,
        ctx: &RequestCtx<'_>,
        body: RequestBody,
        method: &http::Method,
        headers: &http::HeaderMap,
    ) -> Option<Arc<BodySlot>> {
        use http_body::Body as _;
        let policy = ctx.policy;
        let mut mirror_body = None;
        let slot = if body.is_end_stream() {
            None
        } else if policy.mirror.as_ref().is_some_and(|m| m.body) {
            let (tx, rx) = mirror::tee();
            mirror_body = Some(rx);
            Some(BodySlot::with_tee(
                body,
                policy.max_body_bytes,
                self.config.client_body_timeout,
                tx,
            ))
        } else {
            Some(BodySlot::new(
                body,
                policy.max_body_bytes,
                self.config.client_body_timeout,
            ))
        };
        if let Some(m) = &policy.mirror {
            m.send(
                &self.upstreams,
                mirror::Original {
                    method,
                    headers,
                    path: &ctx.pq,
                },
                mirror_body,
                policy
                    .connect_timeout
                    .unwrap_or(self.config.connect_timeout),
                policy.read_timeout.unwrap_or(self.config.read_timeout),
            );
        }
        slot
    }

    /// Phase 5, after the error page (which `run_phases` awaits). Not async, so the
    /// request's future does not carry a second copy of `prepared`.
    fn response_filters(
        &self,
        ctx: &RequestCtx<'_>,
        mut resp: Response<ResponseBody>,
        guards: Guards,
        prepared: Prepared,
        granted: &Option<Arc<Granted>>,
        tail: &mut Tail,
    ) -> Outcome {
        let ex = &prepared.exchange;
        *resp.version_mut() = prepared.client_version;
        if let Some(steer) = &ex.steer {
            steer.respond(
                resp.headers_mut(),
                ctx.route,
                ctx.inbound.scheme == Scheme::Https,
            );
        }
        if let Some(client_upgrade) = prepared.client_upgrade
            && resp.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            forwarded::strip_hop_by_hop(resp.headers_mut(), true);
            let (parts, upstream) = resp.into_parts();
            let Some(upstream) = upstream.into_upgraded() else {
                // Only HTTP/1.1 upgrades, and an upgrade request never goes over HTTP/2.
                return Outcome::Failed(ProxyError::new(
                    ErrorKind::UpstreamFailed,
                    "upstream answered 101 on a connection that cannot be upgraded",
                ));
            };
            self.tunnels.spawn(crate::ingress::request::proxy::tunnel(
                client_upgrade,
                upstream,
                tail.entry.upstream_addr,
            ));
            // A tunnel is not a request in flight: releasing the count keeps long-lived
            // WebSockets from making their pod look permanently busy to the balancer.
            drop(guards);
            return Outcome::Answer(Response::from_parts(parts, body::empty()));
        }
        forwarded::strip_hop_by_hop(resp.headers_mut(), false);
        for (name, value) in &ctx.policy.response_headers {
            resp.headers_mut().insert(name.clone(), value.clone());
        }
        if let Some(granted) = granted {
            granted.set_cookies(resp.status(), resp.headers_mut());
        }
        Outcome::Streamed(resp, guards, ex.read_timeout)
    }
}
