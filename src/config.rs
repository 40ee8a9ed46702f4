//! The settings file (`--config FILE`, YAML or JSON) and its defaults. Every field is
//! optional; an unknown field is an error so a typo is caught at start-up rather than
//! silently ignored.
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::admission::AdmissionSettings;

/// Why the settings file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

/// Everything `portcullis serve` and `portcullis check` can be configured with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Settings {
    pub admission: AdmissionSettings,
    pub ingress: IngressSettings,
    pub shutdown: ShutdownSettings,
    pub listeners: ListenerSettings,
    pub proxy: ProxySettings,
    pub dashboard: DashboardSettings,
    pub edge: EdgeSettings,
}

/// Data-plane settings that are not per-Ingress.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IngressSettings {
    /// IngressClass `spec.controller` value that marks our classes.
    pub controller: String,
    /// Serve Ingresses that name no class at all.
    pub watch_without_class: bool,
    /// Client networks whose X-Forwarded-For is kept (default none).
    pub trusted_cidrs: Vec<String>,
    /// One JSON access-log line per request.
    pub access_log: bool,
}

impl Default for IngressSettings {
    fn default() -> Self {
        IngressSettings {
            controller: "portcullis.io/ingress-controller".into(),
            watch_without_class: false,
            trusted_cidrs: Vec::new(),
            access_log: true,
        }
    }
}

/// Limits and timeouts of the listeners (webhook, ingress HTTP and HTTPS; the admin
/// listener keeps its own small budget). Defaults follow nginx where nginx has one; see
/// docs/SECURITY.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ListenerSettings {
    /// TLS handshake, from accept.
    pub handshake_timeout_seconds: u64,
    /// From accept (or the end of the TLS handshake) to a complete first request head.
    pub header_timeout_seconds: u64,
    /// Idle keep-alive connections (HTTP/1.1 and HTTP/2) are closed after this.
    pub keep_alive_timeout_seconds: u64,
    /// A response write blocked this long (a client that stopped reading) closes the
    /// connection.
    pub send_timeout_seconds: u64,
    /// Longest pause between two reads of a request body (nginx `client_body_timeout`);
    /// also bounds the webhook's whole body read.
    pub client_body_timeout_seconds: u64,
    /// HTTP/2 PING keep-alive interval and answer timeout.
    pub http2_ping_interval_seconds: u64,
    pub http2_ping_timeout_seconds: u64,
    /// Request head (HTTP/1.1) or header list (HTTP/2) size limit; 431 above it.
    pub max_header_bytes: usize,
    /// One header line's size limit; 431 above it.
    pub max_header_line_bytes: usize,
    /// Open connections over the webhook and ingress listeners together. 0: derived from
    /// the file-descriptor limit (half of it, less a reserve, since a proxied connection
    /// also holds an upstream socket).
    pub max_connections: usize,
    /// Open connections per client address on each listener group; 0: no cap (behind a
    /// cloud load balancer every client has the balancer's address).
    pub max_connections_per_client: usize,
    /// Connections the admin listener accepts (its own budget, inside the reserve, so
    /// probes answer while the others are full).
    pub admin_max_connections: usize,
    /// Worker threads serving the ingress listeners, each with its own runtime and
    /// `SO_REUSEPORT` socket (nginx `worker_processes`); 0: one per CPU available.
    pub workers: usize,
    /// TLS session tickets (stateless resumption, key rotated every 6 hours). nginx has
    /// them on by default; ingress-nginx turns them off (`ssl-session-tickets`).
    pub tls_session_tickets: bool,
    /// TLS sessions kept server-side for resumption without tickets; 0 turns the cache off.
    pub tls_session_cache_size: usize,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        ListenerSettings {
            handshake_timeout_seconds: 10,
            header_timeout_seconds: 20,
            keep_alive_timeout_seconds: 75,
            send_timeout_seconds: 60,
            client_body_timeout_seconds: 60,
            http2_ping_interval_seconds: 30,
            http2_ping_timeout_seconds: 20,
            max_header_bytes: 32 * 1024,
            max_header_line_bytes: 8 * 1024,
            max_connections: 0,
            max_connections_per_client: 0,
            admin_max_connections: 128,
            workers: 0,
            tls_session_tickets: true,
            tls_session_cache_size: 10_000,
        }
    }
}

impl ListenerSettings {
    /// Options for the listener `name` drawing from `limits`.
    pub fn serve_options(
        &self,
        name: &'static str,
        limits: std::sync::Arc<crate::server::ConnLimits>,
    ) -> crate::server::ServeOptions {
        let mut o = crate::server::ServeOptions::new(name);
        o.handshake_timeout = secs(self.handshake_timeout_seconds);
        o.header_read_timeout = secs(self.header_timeout_seconds);
        o.keep_alive_timeout = secs(self.keep_alive_timeout_seconds);
        o.send_timeout = secs(self.send_timeout_seconds);
        o.h2_keep_alive_interval = secs(self.http2_ping_interval_seconds);
        o.h2_keep_alive_timeout = secs(self.http2_ping_timeout_seconds);
        o.max_header_bytes = self.max_header_bytes.max(1024);
        o.max_header_line_bytes = self.max_header_line_bytes.max(256);
        o.limits = limits;
        o
    }

    pub fn tls_resumption(&self) -> crate::tls::Resumption {
        crate::tls::Resumption {
            tickets: self.tls_session_tickets,
            cache_size: self.tls_session_cache_size,
        }
    }

    pub fn client_body_timeout(&self) -> Duration {
        secs(self.client_body_timeout_seconds)
    }
}

/// A zero timeout would close every connection at once; it is read as one second.
fn secs(n: u64) -> Duration {
    Duration::from_secs(n.max(1))
}

/// Defaults of the request path towards pods. Per-Ingress annotations
/// (`proxy-connect-timeout`, `proxy-read-timeout`, `proxy-send-timeout`) override the
/// first three, as ingress-nginx's ConfigMap keys of the same names are overridden.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxySettings {
    /// TCP connect (and upstream TLS handshake) to a pod.
    pub connect_timeout_seconds: u64,
    /// Response head after the request was sent, and each pause in the response body.
    pub read_timeout_seconds: u64,
    /// Longest pause while streaming a request body to a pod.
    pub send_timeout_seconds: u64,
    /// Requests in flight to one pod address; more wait up to the connect timeout, then
    /// get 503.
    pub max_concurrency_per_endpoint: usize,
    /// Idle pooled HTTP/1.1 connections to pods close after this (ingress-nginx
    /// `upstream-keepalive-timeout`). Kept below common backend keep-alives (Node's 5 s)
    /// so a socket the pod is closing is never reused.
    pub upstream_keep_alive_timeout_seconds: u64,
    /// Idle HTTP/1.1 connections kept per pod and worker thread (ingress-nginx
    /// `upstream-keepalive-connections`); connections over it close when their request
    /// ends.
    pub upstream_keep_alive_connections: usize,
    /// HTTP/2 (h2c, gRPC) connections to pods: PING interval and answer timeout, and how
    /// long one without streams stays open.
    pub upstream_http2_ping_interval_seconds: u64,
    pub upstream_http2_ping_timeout_seconds: u64,
    pub upstream_http2_idle_timeout_seconds: u64,
    /// ingress-nginx's default backend, `namespace/service:port`: serves the error pages
    /// of `customHttpErrors` (and of Ingresses with `custom-http-errors` but no
    /// `default-backend`), and the requests of routes whose Service has no ready endpoint.
    pub default_backend: Option<String>,
    /// Upstream status codes answered by the default backend's page for every Ingress
    /// without its own `custom-http-errors` (ingress-nginx `custom-http-errors`).
    pub custom_http_errors: Vec<u16>,
    /// Largest request body of Ingresses without `proxy-body-size` (nginx sizes: `1m`,
    /// `512k`; `0` no limit). Unset: no limit, unlike ingress-nginx's 1m default.
    pub proxy_body_size: Option<String>,
    /// Status of requests over an Ingress's `limit-rps` / `limit-rpm` (ingress-nginx
    /// `limit-req-status-code`), and over its `limit-connections` (`limit-conn-status-code`);
    /// 400 to 599, default 503.
    pub limit_req_status_code: crate::ingress::request::rate_limit::RefusalCode,
    pub limit_conn_status_code: crate::ingress::request::rate_limit::RefusalCode,
    /// Client addresses remembered per Ingress with `limit-*` annotations (about 50 bytes
    /// each, allocated on the Ingress's first request).
    pub limit_table_size: usize,
    /// Serve plain GETs by the plain lane (`ingress::request::plain_lane` for HTTP/1.1
    /// heads, `map_lane` for HTTP/2); `false` sends every request the usual way.
    pub plain_lane: bool,
}

impl Default for ProxySettings {
    fn default() -> Self {
        let p = crate::ingress::request::gateway::ProxyConfig::default();
        let u = &p.upstream;
        ProxySettings {
            connect_timeout_seconds: p.connect_timeout.as_secs(),
            read_timeout_seconds: p.read_timeout.as_secs(),
            send_timeout_seconds: p.send_timeout.as_secs(),
            max_concurrency_per_endpoint: p.max_concurrency_per_endpoint,
            upstream_keep_alive_timeout_seconds: u.idle_timeout.as_secs(),
            upstream_keep_alive_connections: u.max_idle_per_endpoint,
            upstream_http2_ping_interval_seconds: u.h2_keep_alive_interval.as_secs(),
            upstream_http2_ping_timeout_seconds: u.h2_keep_alive_timeout.as_secs(),
            upstream_http2_idle_timeout_seconds: u.h2_idle_timeout.as_secs(),
            default_backend: None,
            custom_http_errors: Vec::new(),
            proxy_body_size: None,
            limit_req_status_code: Default::default(),
            limit_conn_status_code: Default::default(),
            limit_table_size: p.limits.table_size,
            plain_lane: p.plain_lane,
        }
    }
}

impl ProxySettings {
    /// The controller-wide error pages, checked.
    /// `proxyBodySize` in bytes; `None` when unset or `0` (no limit).
    pub fn body_size_limit(&self) -> Result<Option<u64>, String> {
        match self.proxy_body_size.as_deref().map(str::trim) {
            None => Ok(None),
            Some(v) => crate::ingress::build::annotations::parse_size(v)
                .map_err(|e| format!("proxy.proxyBodySize: {e} (value {v:?})")),
        }
    }

    pub fn error_defaults(&self) -> Result<crate::ingress::request::edge::ErrorDefaults, String> {
        crate::ingress::request::edge::ErrorDefaults::from_settings(
            self.default_backend.as_deref(),
            &self.custom_http_errors,
        )
        .map_err(|e| format!("proxy.{e}"))
    }

    /// Applies these settings to `config` (the rest of it comes from elsewhere).
    pub fn apply(&self, config: &mut crate::ingress::request::gateway::ProxyConfig) {
        config.connect_timeout = secs(self.connect_timeout_seconds);
        config.read_timeout = secs(self.read_timeout_seconds);
        config.send_timeout = secs(self.send_timeout_seconds);
        config.max_concurrency_per_endpoint = self.max_concurrency_per_endpoint.max(1);
        config.plain_lane = self.plain_lane;
        let u = &mut config.upstream;
        u.idle_timeout = secs(self.upstream_keep_alive_timeout_seconds);
        u.max_idle_per_endpoint = self.upstream_keep_alive_connections;
        u.h2_keep_alive_interval = secs(self.upstream_http2_ping_interval_seconds);
        u.h2_keep_alive_timeout = secs(self.upstream_http2_ping_timeout_seconds);
        u.h2_idle_timeout = secs(self.upstream_http2_idle_timeout_seconds);
        config.limits = crate::ingress::request::rate_limit::LimitSettings {
            request: self.limit_req_status_code.0,
            connection: self.limit_conn_status_code.0,
            table_size: self.limit_table_size,
        };
    }
}

/// The client-facing edge of the ingress listeners: PROXY protocol, TLS versions and
/// ciphers, HSTS, the Server header, SSL passthrough and which forwarded headers are
/// believed. Each is the ingress-nginx ConfigMap key (or flag) named in its comment, with
/// its default; see docs/INGRESS-NGINX.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EdgeSettings {
    /// `use-proxy-protocol`: every connection on the HTTP and HTTPS listeners starts with
    /// a PROXY header (v1 or v2) naming the client; connections without one are closed.
    pub use_proxy_protocol: bool,
    /// `proxy-protocol-header-timeout`: how long the header may take to arrive.
    pub proxy_protocol_header_timeout_seconds: u64,
    /// `hsts`: `Strict-Transport-Security` on HTTPS responses for hosts with TLS.
    pub hsts: bool,
    /// `hsts-max-age`, seconds.
    pub hsts_max_age: u64,
    /// `hsts-include-subdomains`.
    pub hsts_include_subdomains: bool,
    /// `hsts-preload`.
    pub hsts_preload: bool,
    /// `server-tokens`: put the version in the `Server` header of generated answers.
    pub server_tokens: bool,
    /// `ssl-protocols`: space-separated, of `TLSv1.2` and `TLSv1.3`.
    pub ssl_protocols: String,
    /// `ssl-ciphers`: an OpenSSL cipher list (`:`-separated names); empty keeps the
    /// built-in list. Names rustls cannot do are an error, naming them.
    pub ssl_ciphers: String,
    /// `--enable-ssl-passthrough`: honour the `ssl-passthrough` annotation (the HTTPS
    /// listener then reads each ClientHello's server name before TLS).
    pub enable_ssl_passthrough: bool,
    /// `use-forwarded-headers`: believe X-Forwarded-* from peers in `proxyRealIpCidr`
    /// (added to `ingress.trustedCidrs`).
    pub use_forwarded_headers: bool,
    /// `proxy-real-ip-cidr`: the peers meant by `useForwardedHeaders`.
    pub proxy_real_ip_cidr: Vec<String>,
    /// `compute-full-forwarded-for`: with `useForwardedHeaders`, send the whole
    /// X-Forwarded-For chain upstream (the peer appended) rather than the client alone.
    pub compute_full_forwarded_for: bool,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        EdgeSettings {
            use_proxy_protocol: false,
            proxy_protocol_header_timeout_seconds: 5,
            hsts: true,
            hsts_max_age: 31_536_000,
            hsts_include_subdomains: true,
            hsts_preload: false,
            server_tokens: false,
            ssl_protocols: "TLSv1.2 TLSv1.3".into(),
            ssl_ciphers: String::new(),
            enable_ssl_passthrough: false,
            use_forwarded_headers: false,
            proxy_real_ip_cidr: vec!["0.0.0.0/0".into(), "::/0".into()],
            compute_full_forwarded_for: false,
        }
    }
}

impl EdgeSettings {
    /// The PROXY header timeout, when the protocol is on.
    pub fn proxy_protocol(&self) -> Option<Duration> {
        self.use_proxy_protocol
            .then(|| secs(self.proxy_protocol_header_timeout_seconds))
    }

    /// The `Strict-Transport-Security` value, when HSTS is on.
    pub fn hsts_value(&self) -> Option<String> {
        if !self.hsts {
            return None;
        }
        let mut v = format!("max-age={}", self.hsts_max_age);
        if self.hsts_include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.hsts_preload {
            v.push_str("; preload");
        }
        Some(v)
    }
}

/// The admin dashboard's background audit (see `dashboard::audit`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DashboardSettings {
    /// Audit the served objects in the background and show the findings. Off: the
    /// dashboard's `audit` stays null and no audit ever runs.
    pub audit: bool,
    /// Audits are at least this far apart, however often the configuration changes: an
    /// audit of a large cluster is real CPU work, and a person reading the page gains
    /// nothing from more than one every few seconds. A change during the wait is picked
    /// up when it ends.
    pub audit_min_interval_seconds: u64,
    /// At most this many failing findings are listed (dangers first); the scores and
    /// counts still cover all of them. Keeps the document the page polls every second
    /// small on a cluster with thousands of findings.
    pub audit_max_findings: usize,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            audit: true,
            audit_min_interval_seconds: 30,
            audit_max_findings: 500,
        }
    }
}

impl DashboardSettings {
    pub fn audit_min_interval(&self) -> Duration {
        Duration::from_secs(self.audit_min_interval_seconds)
    }
}

/// How SIGTERM is handled.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// Keep accepting this long after /readyz turns 503, so load balancers notice: their
    /// health checks (and kube-proxy's, for `externalTrafficPolicy: Local`) need a few
    /// seconds to take the pod out, and connections they send meanwhile must not be refused.
    pub drain_delay_seconds: u64,
    /// Longest time in-flight requests get to finish after accepting stops.
    pub grace_period_seconds: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings {
            drain_delay_seconds: 5,
            grace_period_seconds: 25,
        }
    }
}

impl ShutdownSettings {
    pub fn drain_delay(&self) -> Duration {
        Duration::from_secs(self.drain_delay_seconds)
    }
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_period_seconds)
    }
}

impl Settings {
    /// Reads a settings file; YAML is a superset of JSON, so one parser serves both.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Reads a settings file laid over `base`, a partial settings document (from an
    /// ingress-nginx ConfigMap): whatever the file sets wins.
    pub fn parse_over(
        name: &str,
        text: &str,
        mut base: serde_json::Value,
    ) -> Result<Settings, ConfigError> {
        let error = |message: String| ConfigError::Parse {
            path: name.to_string(),
            message,
        };
        if !text.trim().is_empty() {
            let file: serde_json::Value =
                serde_saphyr::from_str(text).map_err(|e| error(e.to_string()))?;
            crate::ingress::build::nginx_configmap::merge(&mut base, file);
        }
        serde_json::from_value(base).map_err(|e| error(e.to_string()))
    }

    pub fn parse(name: &str, text: &str) -> Result<Settings, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Settings::default());
        }
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: name.to_string(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Action;

    #[test]
    fn parses_a_full_file() {
        let s = Settings::parse(
            "t",
            r#"
admission:
  skipNamespaces: [kube-system]
  rules:
    tagNotSpecified: danger
    memoryLimitsMissing: {action: deny, exemptions: [{namespaces: ["legacy-*"]}]}
  defaults: {memoryLimit: 1Gi}
ingress: {watchWithoutClass: true}
shutdown: {drainDelaySeconds: 7}
"#,
        )
        .unwrap();
        assert_eq!(
            s.admission.rules["tagNotSpecified"].action,
            Some(Action::Deny)
        );
        assert_eq!(s.admission.defaults.memory_limit, "1Gi");
        assert_eq!(s.admission.defaults.cpu_request, "100m");
        assert!(s.ingress.watch_without_class);
        assert_eq!(s.shutdown.drain_delay(), Duration::from_secs(7));
    }

    #[test]
    fn shutdown_defaults_leave_load_balancers_time() {
        let s = Settings::parse("t", "").unwrap();
        assert_eq!(s.shutdown.drain_delay(), Duration::from_secs(5));
        assert_eq!(s.shutdown.grace(), Duration::from_secs(25));
        // A partial section keeps the other default.
        let s = Settings::parse("t", "shutdown: {gracePeriodSeconds: 10}\n").unwrap();
        assert_eq!(s.shutdown.drain_delay(), Duration::from_secs(5));
        assert_eq!(s.shutdown.grace(), Duration::from_secs(10));
        let s = Settings::parse("t", "shutdown: {drainDelaySeconds: 0}\n").unwrap();
        assert_eq!(s.shutdown.drain_delay(), Duration::ZERO);
    }

    #[test]
    fn proxy_settings_reach_the_proxy_config_and_keep_other_defaults() {
        let s = Settings::parse(
            "t",
            "proxy: {connectTimeoutSeconds: 2, upstreamKeepAliveTimeoutSeconds: 9, maxConcurrencyPerEndpoint: 0}\n",
        )
        .unwrap();
        let mut config = crate::ingress::request::gateway::ProxyConfig::default();
        s.proxy.apply(&mut config);
        assert_eq!(config.connect_timeout, Duration::from_secs(2));
        assert_eq!(config.upstream.idle_timeout, Duration::from_secs(9));
        // 0 would refuse every request; it is read as 1.
        assert_eq!(config.max_concurrency_per_endpoint, 1);
        assert_eq!(config.read_timeout, Duration::from_secs(60));
        assert_eq!(config.upstream.h2_idle_timeout, Duration::from_secs(30));
        // Empty settings change nothing.
        let mut untouched = crate::ingress::request::gateway::ProxyConfig::default();
        Settings::default().proxy.apply(&mut untouched);
        assert_eq!(untouched.connect_timeout, Duration::from_secs(5));
        assert_eq!(untouched.max_concurrency_per_endpoint, 1024);
    }

    #[test]
    fn limit_status_codes() {
        let s = Settings::parse(
            "t",
            "proxy: {limitReqStatusCode: 429, limitConnStatusCode: 503, limitTableSize: 1000}\n",
        )
        .unwrap();
        let mut config = crate::ingress::request::gateway::ProxyConfig::default();
        s.proxy.apply(&mut config);
        assert_eq!(config.limits.request, 429);
        assert_eq!(config.limits.connection, 503);
        assert_eq!(config.limits.table_size, 1000);
        assert_eq!(
            crate::ingress::request::gateway::ProxyConfig::default()
                .limits
                .request,
            503
        );
        let e = Settings::parse("t", "proxy: {limitReqStatusCode: 200}\n").unwrap_err();
        assert!(e.to_string().contains("400 to 599"), "{e}");
    }

    #[test]
    fn dashboard_audit_defaults_and_off_switch() {
        let s = Settings::parse("t", "").unwrap();
        assert!(s.dashboard.audit);
        assert_eq!(s.dashboard.audit_min_interval(), Duration::from_secs(30));
        assert_eq!(s.dashboard.audit_max_findings, 500);
        let s = Settings::parse("t", "dashboard: {audit: false}\n").unwrap();
        assert!(!s.dashboard.audit);
        assert_eq!(s.dashboard.audit_max_findings, 500);
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = Settings::parse("t", "admision: {}\n").unwrap_err();
        assert!(e.to_string().contains("admision"), "{e}");
    }
}
