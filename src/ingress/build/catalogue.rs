//! What portcullis does with each ingress-nginx annotation: the one table behind the
//! parser's warnings, `portcullis migrate` and docs/MIGRATING.md, so the three never
//! disagree. Names are without the `nginx.ingress.kubernetes.io/` prefix.
//!
//! The table covers the annotations ingress-nginx documents (read at v1.15); a name not in
//! it is reported as unknown. A test checks the table against the parser's own list.

/// How an annotation is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Read and enforced with ingress-nginx's meaning, defaults and status codes.
    Honoured,
    /// Read and enforced; the text says what a user may notice being different.
    Differs(&'static str),
    /// Accepted and ignored, because the behaviour it tunes does not exist here; the text
    /// says why that is safe.
    NoOp(&'static str),
    /// Ignored with a warning: the Ingress serves without it. The text says what to use
    /// instead.
    Unsupported(&'static str),
    /// The Ingress is refused: serving it without the annotation would be unsafe.
    Refused(&'static str),
}

impl Support {
    /// The short label reports use.
    pub fn label(&self) -> &'static str {
        match self {
            Support::Honoured => "honoured",
            Support::Differs(_) => "honoured, with a difference",
            Support::NoOp(_) => "accepted, no effect",
            Support::Unsupported(_) => "not supported",
            Support::Refused(_) => "refused",
        }
    }

    /// The explanation, empty for `Honoured`.
    pub fn detail(&self) -> &'static str {
        match self {
            Support::Honoured => "",
            Support::Differs(s)
            | Support::NoOp(s)
            | Support::Unsupported(s)
            | Support::Refused(s) => s,
        }
    }

    /// Whether moving an Ingress with this annotation over changes what it does.
    pub fn changes_behaviour(&self) -> bool {
        matches!(self, Support::Unsupported(_) | Support::Refused(_))
    }
}

use Support::*;

const BUFFERING: &str = "portcullis streams bodies in both directions and never spools them to disk, so nginx's buffer tuning has nothing to act on";
const SNIPPET: &str = "raw nginx configuration is never honoured; express the intent with annotations or portcullis.io/request-headers and response-headers";
const NEXT_UPSTREAM: &str =
    "portcullis retries once on another endpoint when the request never reached the first";
const AUTH_POOL: &str =
    "accepted with a warning: connections to the auth service are always pooled and kept alive";
const NO_TRACING: &str = "no tracing exporter is built in; use the access log's request id (X-Request-ID) and the per-route metrics";

/// Every documented ingress-nginx annotation, in name order.
pub const ANNOTATIONS: &[(&str, Support)] = &[
    ("affinity", Honoured),
    (
        "affinity-canary-behavior",
        NoOp(
            "a client kept by affinity stays on the endpoint it has, canary or not (the `sticky` default)",
        ),
    ),
    ("affinity-mode", Honoured),
    ("allowlist-source-range", Honoured),
    ("app-root", Honoured),
    ("auth-always-set-cookie", Honoured),
    ("auth-cache-duration", Honoured),
    ("auth-cache-key", Honoured),
    ("auth-keepalive", Differs(AUTH_POOL)),
    ("auth-keepalive-requests", Differs(AUTH_POOL)),
    ("auth-keepalive-share-vars", Differs(AUTH_POOL)),
    ("auth-keepalive-timeout", Differs(AUTH_POOL)),
    ("auth-method", Honoured),
    (
        "auth-proxy-set-headers",
        Differs(
            "a missing or invalid ConfigMap (hop-by-hop or framing headers, unknown nginx variables) answers 500 instead of serving; portcullis's own X-Original-URL, X-Forwarded-* and Host win over the ConfigMap's",
        ),
    ),
    ("auth-realm", Honoured),
    ("auth-request-redirect", Honoured),
    ("auth-response-headers", Honoured),
    ("auth-secret", Honoured),
    ("auth-secret-type", Honoured),
    ("auth-signin", Honoured),
    ("auth-signin-redirect-param", Honoured),
    ("auth-snippet", Refused(SNIPPET)),
    ("auth-tls-error-page", Honoured),
    ("auth-tls-match-cn", Honoured),
    ("auth-tls-pass-certificate-to-upstream", Honoured),
    ("auth-tls-secret", Honoured),
    ("auth-tls-verify-client", Honoured),
    ("auth-tls-verify-depth", Honoured),
    (
        "auth-type",
        Differs(
            "`basic` only; `digest` refuses the Ingress, since serving it without authentication would open it",
        ),
    ),
    (
        "auth-url",
        Differs(
            "a fixed list of nginx variables (others refuse the Ingress); https:// auth services are verified against the system CAs, which nginx does not do by default",
        ),
    ),
    (
        "backend-protocol",
        Differs("HTTP, HTTPS, GRPC, GRPCS and H2C; AJP and FCGI refuse the Ingress"),
    ),
    ("canary", Honoured),
    (
        "canary-by-cookie",
        Unsupported("canary-by-header, or canary-weight"),
    ),
    ("canary-by-header", Honoured),
    (
        "canary-by-header-pattern",
        Unsupported("canary-by-header with canary-by-header-value"),
    ),
    ("canary-by-header-value", Honoured),
    ("canary-weight", Honoured),
    (
        "canary-weight-total",
        Unsupported("canary-weight as a percentage of 100"),
    ),
    ("client-body-buffer-size", NoOp(BUFFERING)),
    ("configuration-snippet", Refused(SNIPPET)),
    (
        "connection-proxy-header",
        NoOp(
            "portcullis manages the upstream Connection header itself (keep-alive pools, upgrades)",
        ),
    ),
    ("cors-allow-credentials", Honoured),
    ("cors-allow-headers", Honoured),
    ("cors-allow-methods", Honoured),
    ("cors-allow-origin", Honoured),
    ("cors-expose-headers", Honoured),
    ("cors-max-age", Honoured),
    (
        "custom-headers",
        Unsupported(
            "portcullis.io/response-headers (one `Name: value` per line) instead of a ConfigMap",
        ),
    ),
    ("custom-http-errors", Honoured),
    ("default-backend", Honoured),
    ("denylist-source-range", Honoured),
    (
        "enable-access-log",
        Unsupported("the access log is one switch for the whole proxy (ingress.accessLog)"),
    ),
    ("enable-cors", Honoured),
    (
        "enable-global-auth",
        NoOp("portcullis has no controller-wide external auth, so there is nothing to opt out of"),
    ),
    (
        "enable-influxdb",
        Unsupported("the Prometheus metrics on the admin listener, per route"),
    ),
    (
        "enable-modsecurity",
        Unsupported("a web application firewall in front of or behind portcullis"),
    ),
    ("enable-opentelemetry", Unsupported(NO_TRACING)),
    ("enable-opentracing", Unsupported(NO_TRACING)),
    (
        "enable-owasp-core-rules",
        Unsupported("a web application firewall in front of or behind portcullis"),
    ),
    (
        "enable-rewrite-log",
        NoOp("rewrites are pure functions of the path; `portcullis routes` shows them"),
    ),
    ("force-ssl-redirect", Honoured),
    ("from-to-www-redirect", Honoured),
    (
        "global-rate-limit",
        Unsupported("limit-rps / limit-rpm, which count per portcullis replica (no memcached)"),
    ),
    (
        "global-rate-limit-ignored-cidrs",
        Unsupported("limit-allowlist with limit-rps / limit-rpm"),
    ),
    (
        "global-rate-limit-key",
        Unsupported("limit-rps / limit-rpm, keyed by client address"),
    ),
    (
        "global-rate-limit-window",
        Unsupported("limit-rpm (a one-minute window)"),
    ),
    (
        "http2-push-preload",
        NoOp("browsers have removed HTTP/2 server push"),
    ),
    (
        "influxdb-host",
        Unsupported("the Prometheus metrics on the admin listener"),
    ),
    (
        "influxdb-measurement",
        Unsupported("the Prometheus metrics on the admin listener"),
    ),
    (
        "influxdb-port",
        Unsupported("the Prometheus metrics on the admin listener"),
    ),
    (
        "influxdb-server-name",
        Unsupported("the Prometheus metrics on the admin listener"),
    ),
    ("limit-allowlist", Honoured),
    ("limit-burst-multiplier", Honoured),
    ("limit-connections", Honoured),
    (
        "limit-rate",
        Unsupported("bandwidth limits are not built in"),
    ),
    (
        "limit-rate-after",
        Unsupported("bandwidth limits are not built in"),
    ),
    ("limit-rpm", Honoured),
    ("limit-rps", Honoured),
    ("limit-whitelist", Honoured),
    (
        "load-balance",
        Differs(
            "`ewma` (the default: peak-EWMA with two random choices) and `round_robin`; other values refuse the Ingress",
        ),
    ),
    ("mirror-host", Honoured),
    ("mirror-request-body", Honoured),
    ("mirror-target", Honoured),
    ("modsecurity-snippet", Refused(SNIPPET)),
    (
        "modsecurity-transaction-id",
        Unsupported("a web application firewall in front of or behind portcullis"),
    ),
    ("opentelemetry-operation-name", Unsupported(NO_TRACING)),
    ("opentelemetry-trust-incoming-span", Unsupported(NO_TRACING)),
    ("opentracing-trust-incoming-span", Unsupported(NO_TRACING)),
    ("permanent-redirect", Honoured),
    ("permanent-redirect-code", Honoured),
    (
        "preserve-trailing-slash",
        Unsupported("HTTPS redirects keep the path exactly as requested"),
    ),
    ("proxy-body-size", Honoured),
    ("proxy-buffer-size", NoOp(BUFFERING)),
    ("proxy-buffering", NoOp(BUFFERING)),
    ("proxy-buffers-number", NoOp(BUFFERING)),
    ("proxy-connect-timeout", Honoured),
    (
        "proxy-cookie-domain",
        Unsupported("have the application set the cookie domain it is served under"),
    ),
    (
        "proxy-cookie-path",
        Unsupported("have the application set the cookie path it is served under"),
    ),
    (
        "proxy-http-version",
        NoOp(
            "upstream HTTP/1.1 with keep-alive is always used (HTTP/2 with backend-protocol GRPC/H2C)",
        ),
    ),
    ("proxy-max-temp-file-size", NoOp(BUFFERING)),
    ("proxy-next-upstream", Differs(NEXT_UPSTREAM)),
    ("proxy-next-upstream-timeout", Honoured),
    (
        "proxy-next-upstream-tries",
        Differs("0 means 16 tries rather than no limit"),
    ),
    ("proxy-read-timeout", Honoured),
    (
        "proxy-redirect-from",
        Unsupported("have the application send the Location it is served under"),
    ),
    (
        "proxy-redirect-to",
        Unsupported("have the application send the Location it is served under"),
    ),
    ("proxy-request-buffering", NoOp(BUFFERING)),
    ("proxy-send-timeout", Honoured),
    (
        "proxy-ssl-ciphers",
        Unsupported("proxy-ssl-protocols; rustls offers only modern AEAD suites to backends"),
    ),
    ("proxy-ssl-name", Honoured),
    ("proxy-ssl-protocols", Honoured),
    ("proxy-ssl-secret", Honoured),
    ("proxy-ssl-server-name", Honoured),
    ("proxy-ssl-verify", Honoured),
    ("proxy-ssl-verify-depth", Honoured),
    ("rewrite-target", Honoured),
    ("satisfy", Honoured),
    ("server-alias", Honoured),
    ("server-snippet", Refused(SNIPPET)),
    (
        "service-upstream",
        Differs(
            "one endpoint, the ClusterIP: no retry on another pod, and the mesh or kube-proxy balances",
        ),
    ),
    ("session-cookie-change-on-failure", Honoured),
    ("session-cookie-conditional-samesite-none", Honoured),
    ("session-cookie-domain", Honoured),
    ("session-cookie-expires", Honoured),
    ("session-cookie-max-age", Honoured),
    ("session-cookie-name", Honoured),
    ("session-cookie-path", Honoured),
    ("session-cookie-samesite", Honoured),
    ("session-cookie-secure", Honoured),
    (
        "ssl-ciphers",
        Unsupported(
            "the controller-wide sslCiphers setting; rustls suites are not chosen per Ingress",
        ),
    ),
    ("ssl-passthrough", Honoured),
    (
        "ssl-prefer-server-ciphers",
        NoOp("rustls always prefers the server's order of suites"),
    ),
    ("ssl-redirect", Honoured),
    ("stream-snippet", Refused(SNIPPET)),
    ("temporal-redirect", Honoured),
    ("temporal-redirect-code", Honoured),
    ("upstream-hash-by", Honoured),
    (
        "upstream-hash-by-subset",
        Unsupported("upstream-hash-by over all endpoints"),
    ),
    (
        "upstream-hash-by-subset-size",
        Unsupported("upstream-hash-by over all endpoints"),
    ),
    ("upstream-vhost", Honoured),
    ("use-regex", Honoured),
    ("whitelist-source-range", Honoured),
    ("x-forwarded-prefix", Honoured),
];

/// How portcullis treats the ingress-nginx annotation `short`; `None` when ingress-nginx
/// does not document it either.
pub fn support(short: &str) -> Option<Support> {
    ANNOTATIONS
        .binary_search_by(|(name, _)| name.cmp(&short))
        .ok()
        .map(|i| ANNOTATIONS[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_unique_so_lookup_finds_every_entry() {
        for pair in ANNOTATIONS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (name, s) in ANNOTATIONS {
            assert_eq!(support(name), Some(*s));
        }
        assert_eq!(support("no-such-annotation"), None);
    }

    /// The catalogue promises what the parser does: an honoured annotation is read, and
    /// one that is ignored or a no-op is not.
    #[test]
    fn catalogue_agrees_with_the_parser() {
        use crate::ingress::build::annotations::SHARED;
        for (name, s) in ANNOTATIONS {
            match s {
                Honoured | Differs(_) => assert!(SHARED.contains(name), "{name} is not parsed"),
                NoOp(_) | Unsupported(_) => assert!(!SHARED.contains(name), "{name} is parsed"),
                Refused(_) => {}
            }
        }
        for name in SHARED {
            assert!(
                support(name).is_some(),
                "{name} is parsed but not in the catalogue"
            );
        }
    }

    #[test]
    fn every_snippet_is_refused() {
        for (name, s) in ANNOTATIONS {
            if name.ends_with("-snippet") {
                assert!(matches!(s, Refused(_)), "{name}");
            }
        }
    }
}
