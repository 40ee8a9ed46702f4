//! The request path after routing: policy checks, canary, rewrite, forwarded headers,
//! endpoint choice, the upstream exchange (with one retry when nothing was sent),
//! protocol upgrades, and the streaming response that finishes the access log.
//!
//! Failure behaviour: every failure becomes a proxy-generated answer with `Server:
//! portcullis` and a one-line reason — 503 when no endpoint can take the request, 502
//! when the upstream refused, failed or broke, 504 when response headers did not arrive
//! in time, 413 for oversized bodies. Nothing here panics on request data.
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;

use crate::body::{self, Body};
use crate::ingress::access_log::Entry;
use crate::ingress::balancer::Balancer;
use crate::ingress::cors::Cors;
use crate::ingress::exchange::Exchange;
use crate::ingress::forwarded::{self, Downstream};
use crate::ingress::respond::generated;
use crate::ingress::snapshot::{Route, UpstreamProtocol};
use crate::ingress::tail::{Guards, ProxiedBody, Tail};
use crate::ingress::tunnels::Tunnels;
use crate::ingress::upstream::{BodySlot, UpstreamSettings, Upstreams, Wire};
use crate::ingress::{auth, canary, filters, mirror, rewrite};
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
    pub limits: crate::ingress::rate_limit::LimitSettings,
    /// HSTS and server tokens (`edge` settings); `None`: nothing added.
    pub edge_headers: Option<crate::ingress::edge_headers::EdgeHeaders>,
    /// From a trusted peer, send the whole X-Forwarded-For chain upstream (the peer
    /// appended); false sends the client address alone (`computeFullForwardedFor`).
    pub full_forwarded_for: bool,
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
    pub(crate) limits: crate::ingress::rate_limit::Registry,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Self {
        Self {
            balancer: Balancer::new(config.max_concurrency_per_endpoint),
            upstreams: std::sync::Arc::new(Upstreams::new(config.upstream.clone())),
            tunnels: Tunnels::default(),
            limits: crate::ingress::rate_limit::Registry::new(config.limits.table_size),
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
    pub(crate) fn begin(&self, req: &Request<Incoming>, conn: &ConnInfo) -> Tail {
        let peer = conn.remote.ip().to_canonical();
        let client = forwarded::real_client(peer, req.headers(), &self.config.trusted_proxies);
        let entry = Entry {
            // Set when the line is written (now less the duration): no clock read per
            // request while the access log is off.
            time: SystemTime::UNIX_EPOCH,
            client,
            method: req.method().clone(),
            host: host_value(req),
            path: req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
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
        };
        Tail::new(entry, self.config.access_log)
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
        tail.route = Some(route.metrics.clone());
        let cors = match route.policy.edge.as_deref() {
            Some(edge) => edge.cors_for(req.headers()),
            None => None,
        };
        let mut resp = match self
            .forward_inner(route, captures, req, inbound, &mut tail, cors.is_some())
            .await
        {
            Outcome::Answer(resp) => tail.attach(resp),
            Outcome::Streamed(resp, guards, read_timeout) => {
                tail.entry.status = resp.status().as_u16();
                let (parts, incoming) = resp.into_parts();
                let body = ProxiedBody::new(incoming, tail, guards, read_timeout);
                Response::from_parts(parts, body.boxed())
            }
        };
        if let Some((c, allow)) = cors {
            c.decorate(resp.headers_mut(), allow);
        }
        resp
    }

    async fn forward_inner(
        &self,
        route: &Route,
        captures: &[String],
        mut req: Request<Incoming>,
        inbound: &Inbound<'_>,
        tail: &mut Tail,
        cors_allowed: bool,
    ) -> Outcome {
        let policy = &*route.policy;
        let peer = inbound.conn.remote.ip().to_canonical();
        let peer_trusted = forwarded::is_trusted(peer, &self.config.trusted_proxies);
        // Both were taken from the request in `begin`; the clones share its buffer.
        let host_header = tail.entry.host.clone();
        let host_raw = host_header.to_str().unwrap_or("");
        let (hostname, explicit_port) = forwarded::split_host(host_raw);
        let pq = tail.entry.path.clone();
        let path_and_query = pq.as_str();
        let content_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());

        if let Some(edge) = &policy.tls_edge
            && let Some(spec) = &edge.client_auth
        {
            let tag = req.extensions().get::<crate::server::ConnTag>().cloned();
            // A TLS connection opened for another name (HTTP/2 coalescing) was never asked
            // for this host's certificate.
            let other_name =
                inbound.conn.tls && inbound.conn.sni.as_deref() != Some(hostname.as_ref());
            if let Some(answer) = crate::ingress::client_auth::admit(
                spec,
                tag.as_ref(),
                other_name,
                req.headers_mut(),
            ) {
                return Outcome::Answer(answer);
            }
        }
        let head = filters::Head {
            client: tail.entry.client,
            scheme: inbound.scheme.as_str(),
            host: host_raw,
            hostname: &hostname,
            path: req.uri().path(),
            path_and_query,
            host_tls: inbound.host_tls,
            content_length,
            https_port: self.config.https_redirect_port,
        };
        // Redirect annotations answer before the access checks, as their nginx `return`
        // does; nothing reaches a backend either way.
        if let Some(edge) = policy.edge.as_deref()
            && let Some(answer) = edge.redirect_for(head.scheme, explicit_port, path_and_query)
        {
            return Outcome::Answer(answer);
        }
        if let Some(answer) = filters::check(policy, &head) {
            return Outcome::Answer(answer);
        }
        if cors_allowed && Cors::is_preflight(req.method(), req.headers()) {
            return Outcome::Answer(Cors::preflight());
        }
        let mut steer = None;
        if let Some(traffic) = &policy.traffic {
            if let Some(answer) = traffic.admit(self, route, head.client, tail) {
                return Outcome::Answer(answer);
            }
            let view = crate::ingress::hash_by::RequestView {
                client: head.client,
                scheme: head.scheme,
                method: req.method(),
                hostname: &hostname,
                path: head.path,
                path_and_query,
                headers: req.headers(),
            };
            steer = traffic.steer(&view);
        }
        let mut from_auth = None;
        if let Some(auth) = &policy.auth {
            // Boxed: the auth future's state stays out of every request's future.
            let check = auth::check(
                auth,
                &policy.allow_source,
                &head,
                req.method(),
                req.headers(),
            );
            match Box::pin(check).await {
                auth::Verdict::Pass(granted) => from_auth = granted,
                auth::Verdict::Answer(answer) => return Outcome::Answer(answer),
            }
        }

        let (backend, _is_canary) =
            canary::choose(&route.backend, policy.canary.as_ref(), req.headers());
        let backend = match policy.edge.as_deref() {
            Some(edge) => edge.fallback(backend),
            None => backend,
        };
        tail.entry.service = Some(backend.name.clone());
        let protocol = policy.backend_protocol.unwrap_or(backend.protocol);
        let wire = match protocol {
            UpstreamProtocol::Http1 => Wire::Http1,
            UpstreamProtocol::H2c => Wire::H2c,
            UpstreamProtocol::Https => Wire::Https,
            UpstreamProtocol::Grpcs => Wire::Grpcs,
        };

        let upgrade = !wire.is_h2()
            && forwarded::is_upgrade_request(
                req.version(),
                req.headers(),
                &policy.upgrade_protocols,
            );
        let client_upgrade: Option<OnUpgrade> = upgrade.then(|| hyper::upgrade::on(&mut req));

        let upstream_pq = match &policy.rewrite_target {
            Some(target) => {
                let rewritten =
                    rewrite::rewrite_path_and_query(target, captures, req.uri().query());
                match PathAndQuery::try_from(rewritten) {
                    Ok(pq) => pq,
                    Err(_) => {
                        return Outcome::Answer(generated(
                            StatusCode::BAD_REQUEST,
                            "the rewritten request path is not a valid URI",
                        ));
                    }
                }
            }
            None => pq.clone(),
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
            host: host_raw,
            port: explicit_port.unwrap_or(inbound.scheme.default_port()),
        };
        let request_id =
            forwarded::apply_forwarded(&mut headers, &down, policy.x_forwarded_prefix.as_deref());
        // X-Real-IP already holds the client alone, as a shared value.
        if peer_trusted
            && !self.config.full_forwarded_for
            && let Some(client) = headers.get(&forwarded::X_REAL_IP).cloned()
        {
            headers.insert(&forwarded::X_FORWARDED_FOR, client);
        }
        tail.entry.request_id = Some(request_id);
        let host_value = policy.upstream_vhost.as_deref().unwrap_or(host_raw);
        // HTTP/2 carries the host as `:authority` (set from the URI); a Host header
        // alongside it would be redundant at best.
        let h2_authority = match wire.is_h2() {
            true => host_value.parse::<http::uri::Authority>().ok(),
            false => None,
        };
        let host_unchanged = forwarded::single_value(&headers, &header::HOST)
            .is_some_and(|v| v.as_bytes() == host_value.as_bytes());
        if wire.is_h2() {
            headers.remove(header::HOST);
        } else if !host_value.is_empty() && !host_unchanged {
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
        if let Some(external) = policy.auth.as_ref().and_then(|a| a.external.as_ref()) {
            external.set_upstream_headers(&mut headers, from_auth.as_deref());
        }

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
                    method: &method,
                    headers: &headers,
                    path: &pq,
                },
                mirror_body,
                policy
                    .connect_timeout
                    .unwrap_or(self.config.connect_timeout),
                policy.read_timeout.unwrap_or(self.config.read_timeout),
            );
        }
        tail.slot = slot.clone();

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
            connect_timeout: policy
                .connect_timeout
                .unwrap_or(self.config.connect_timeout),
            read_timeout: policy.read_timeout.unwrap_or(self.config.read_timeout),
            send_timeout: policy.send_timeout.unwrap_or(self.config.send_timeout),
            upgrade,
            steer,
            backend_tls: None,
        };
        if let Some(edge) = &policy.tls_edge
            && let Some(spec) = edge.backend_tls.as_ref().filter(|_| wire.is_tls())
        {
            match spec.compiled() {
                Ok(b) => exchange.backend_tls = Some(b.clone()),
                Err(why) => {
                    return Outcome::Answer(generated(
                        StatusCode::BAD_GATEWAY,
                        format!("TLS to the backend is not configured: {why}"),
                    ));
                }
            }
        }
        let (mut resp, guards) = match self.exchange(route, backend, &exchange, tail).await {
            Ok(ok) => ok,
            Err(answer) => {
                // Our own 502/503/504 get the error page too, as nginx's do.
                if policy.edge.is_some()
                    && matches!(answer.status().as_u16(), 502..=504)
                    && let Some(page) = self
                        .error_page(route, backend, answer.status(), &exchange, tail)
                        .await
                {
                    return Outcome::Streamed(page.0, page.1, page.2);
                }
                return Outcome::Answer(answer);
            }
        };
        if policy.edge.is_some()
            && let Some(page) = self
                .error_page(route, backend, resp.status(), &exchange, tail)
                .await
        {
            return Outcome::Streamed(page.0, page.1, page.2);
        }

        *resp.version_mut() = parts.version;
        if let Some(steer) = &exchange.steer {
            steer.respond(resp.headers_mut(), route, inbound.scheme == Scheme::Https);
        }
        if let Some(client_upgrade) = client_upgrade
            && resp.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            forwarded::strip_hop_by_hop(resp.headers_mut(), true);
            self.tunnels.spawn(tunnel(
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
        if let Some(granted) = &from_auth {
            granted.set_cookies(resp.status(), resp.headers_mut());
        }
        Outcome::Streamed(resp, guards, exchange.read_timeout)
    }
}

/// The host as the client sent it (`:authority` or Host, port included), shared with the
/// request's own buffer where it came from a header.
fn host_value(req: &Request<Incoming>) -> HeaderValue {
    if let Some(a) = req.uri().authority() {
        return HeaderValue::from_str(a.as_str()).unwrap_or_else(|_| HeaderValue::from_static(""));
    }
    match req.headers().get(header::HOST) {
        Some(v) if v.to_str().is_ok() => v.clone(),
        _ => HeaderValue::from_static(""),
    }
}

/// How `forward_inner` ended: an answer of our own, or an upstream response to stream.
enum Outcome {
    Answer(Response<Body>),
    /// With the read timeout that applies between body reads.
    Streamed(Response<Incoming>, Guards, Duration),
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
