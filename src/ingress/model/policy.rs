//! Per-Ingress behaviour parsed from annotations (`portcullis.io/*` or the
//! `nginx.ingress.kubernetes.io/*` spelling). CONTRACT: `compile` fills it, the proxy
//! reads it. Parsing is structural: no annotation value is ever handed to an interpreter.
use std::time::Duration;

use ipnet::IpNet;

/// Load-balancing algorithm chosen per Ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Power of two random choices by peak-EWMA latency × (in-flight + 1).
    #[default]
    Ewma,
    RoundRobin,
}

/// A canary: a second backend that takes a share of the traffic or the requests that
/// carry a header.
#[derive(Debug, Clone)]
pub struct Canary {
    pub backend: std::sync::Arc<crate::ingress::model::snapshot::Backend>,
    /// 0..=100 percent of requests.
    pub weight: u32,
    /// Requests with this header set to `always` (or to `header_value` when given) go to
    /// the canary; `never` keeps them on the main backend.
    pub header: Option<http::HeaderName>,
    pub header_value: Option<String>,
}

/// Everything the annotations of one Ingress ask of the data plane.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    /// `rewrite-target`, with `$1`…`$9` referring to the path regex's capture groups.
    pub rewrite_target: Option<String>,
    /// The path is a regex (`use-regex`, or implied by `rewrite-target` with captures).
    pub use_regex: bool,
    /// `app-root`: requests for `/` get a 302 to this path.
    pub app_root: Option<String>,
    /// HTTP requests for a TLS host are redirected to HTTPS (default true when TLS exists).
    pub ssl_redirect: bool,
    /// Redirect to HTTPS even when the host has no TLS section.
    pub force_ssl_redirect: bool,
    /// Overrides the protocol from the Service port's appProtocol.
    pub backend_protocol: Option<crate::ingress::model::snapshot::UpstreamProtocol>,
    /// Only these client networks may use the Ingress (403 otherwise); empty = all.
    pub allow_source: Vec<IpNet>,
    /// These client networks get 403.
    pub deny_source: Vec<IpNet>,
    /// Largest request body accepted (413 above it); None = unlimited.
    pub max_body_bytes: Option<u64>,
    /// `proxy-body-size` was given (`0` included), so the controller-wide default does not
    /// apply.
    pub body_size_annotated: bool,
    pub connect_timeout: Option<Duration>,
    /// Time to wait for response headers (`proxy-read-timeout`).
    pub read_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    pub balance: Balance,
    /// `upstream-vhost`: the Host header sent to the backend.
    pub upstream_vhost: Option<String>,
    /// `x-forwarded-prefix`: value of the X-Forwarded-Prefix header sent upstream.
    pub x_forwarded_prefix: Option<String>,
    /// `upgrade-protocols`: protocols besides WebSocket tunnelled after a 101 (lower case).
    pub upgrade_protocols: Vec<String>,
    /// Extra request headers set before proxying.
    pub request_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Extra response headers set on the way back.
    pub response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub canary: Option<Canary>,
    /// `service-upstream`: proxy to the Service's ClusterIP instead of its pods.
    pub service_upstream: bool,
    /// `mirror-target`: copies of requests go there too.
    pub mirror: Option<std::sync::Arc<crate::ingress::request::mirror::Mirror>>,
    /// CORS, fixed/www redirects, aliases and error pages (`ingress::request::edge`); `None` for an
    /// Ingress without those annotations.
    pub edge: Option<std::sync::Arc<crate::ingress::request::edge::EdgePolicy>>,
    /// Rate limits, session affinity, consistent hashing and upstream retries
    /// (`ingress::request::traffic`); `None` when the Ingress asks for none of them.
    pub traffic: Option<std::sync::Arc<crate::ingress::request::traffic::Traffic>>,
    /// Basic / external authentication and `satisfy` (see `ingress::request::auth`).
    pub auth: Option<std::sync::Arc<crate::ingress::request::auth::Auth>>,
    /// SSL passthrough, client certificates and TLS to the backend (`tls_edge`).
    pub tls_edge: Option<std::sync::Arc<crate::ingress::request::tls_edge::TlsEdge>>,
}

impl Policy {
    /// Nothing in this policy reads or changes a request or its answer beyond routing, the
    /// forwarded fields, the backend protocol and the read timeout: its routes may take the
    /// plain lane (`ingress::request::plain_lane`). A field added to `Policy` that does
    /// either must be added here too.
    pub fn is_plain(&self) -> bool {
        self.rewrite_target.is_none()
            && self.app_root.is_none()
            && !self.force_ssl_redirect
            && self.allow_source.is_empty()
            && self.deny_source.is_empty()
            && self.upstream_vhost.is_none()
            && self.x_forwarded_prefix.is_none()
            && self.request_headers.is_empty()
            && self.response_headers.is_empty()
            && self.canary.is_none()
            && self.mirror.is_none()
            && self.edge.is_none()
            && self.traffic.is_none()
            && self.auth.is_none()
            && self.tls_edge.is_none()
    }
}
