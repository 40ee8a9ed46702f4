//! Ingress annotations → `Policy`: the `portcullis.io/X` keys and their ingress-nginx
//! spellings `nginx.ingress.kubernetes.io/X` (when both are set, `portcullis.io/` wins).
//!
//! Failure behaviour: nothing is guessed. A malformed value, an unknown `portcullis.io/`
//! key, a snippet annotation, or an nginx access-control annotation we cannot enforce is an
//! *error*: compile then refuses the whole Ingress (its last good version stays in force, or
//! it is not served at all), because ignoring, say, a mistyped allowlist would open the
//! backend to everyone. Other nginx annotations we do not implement are *warnings*: the
//! Ingress serves without them. Snippets are listed in `snippets`, apart from `errors`, so
//! admission can give them their own rule; both refuse the Ingress. Pure: the admission
//! webhook reaches `parse_annotations` through `ingress::build::inspect`.
//!
//! Formats:
//! - booleans: `true` / `false` (any case);
//! - source ranges: comma-separated CIDRs or single IPs;
//! - `proxy-body-size`: nginx sizes, `512`, `512k`, `10m`, `1g`; `0` means unlimited;
//! - timeouts: seconds (`60`), or with a unit: `60s`, `500ms`, `2m`;
//! - `portcullis.io/request-headers` / `portcullis.io/response-headers`: one `Name: value`
//!   per line (blank lines ignored); framing and hop-by-hop headers cannot be set.
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use ipnet::IpNet;

use super::catalogue::{self, Support};
use crate::ingress::model::policy::{Balance, Policy};
use crate::ingress::model::snapshot::UpstreamProtocol;

pub const PORTCULLIS_PREFIX: &str = "portcullis.io/";
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Annotations understood under both prefixes.
pub(crate) const SHARED: &[&str] = &[
    "rewrite-target",
    "use-regex",
    "app-root",
    "ssl-redirect",
    "force-ssl-redirect",
    "backend-protocol",
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "load-balance",
    "upstream-vhost",
    "x-forwarded-prefix",
    "canary",
    "canary-weight",
    "canary-by-header",
    "canary-by-header-value",
    "service-upstream",
    "mirror-target",
    "mirror-host",
    "mirror-request-body",
    // ingress::request::edge
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "from-to-www-redirect",
    "server-alias",
    "custom-http-errors",
    "default-backend",
    // Rate limits, session affinity, consistent hashing: see `ingress::request::traffic`.
    "limit-rps",
    "limit-rpm",
    "limit-burst-multiplier",
    "limit-connections",
    "limit-whitelist",
    "limit-allowlist",
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-domain",
    "session-cookie-expires",
    "session-cookie-max-age",
    "session-cookie-samesite",
    "session-cookie-conditional-samesite-none",
    "session-cookie-secure",
    "session-cookie-change-on-failure",
    "upstream-hash-by",
    "auth-type",
    "auth-secret",
    "auth-secret-type",
    "auth-realm",
    "auth-url",
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "auth-proxy-set-headers",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-timeout",
    "auth-keepalive-share-vars",
    "auth-always-set-cookie",
    "satisfy",
    // TLS edge (see `tls_edge`).
    "ssl-passthrough",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-error-page",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-match-cn",
    "proxy-ssl-secret",
    "proxy-ssl-verify",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
    "proxy-ssl-verify-depth",
    "proxy-ssl-protocols",
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "proxy-next-upstream-timeout",
];
/// Annotations that exist only under `portcullis.io/`.
const OWN: &[&str] = &["request-headers", "response-headers", "upgrade-protocols"];

/// Headers an annotation may not set: they frame the message or belong to one hop.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
];

const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
const MAX_HEADER_LINES: usize = 64;
const MAX_PATH_LEN: usize = 2048;

/// The canary annotations of an Ingress marked `canary: "true"`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CanarySpec {
    /// 0..=100 percent.
    pub weight: u32,
    pub header: Option<HeaderName>,
    pub header_value: Option<String>,
}

/// One finding about the annotations: the annotation it is about, when it is about one,
/// so admission can point at that key, and the message (which starts with the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub key: Option<String>,
    pub message: String,
}

impl Note {
    fn on(key: &str, message: String) -> Self {
        Note {
            key: Some(key.to_string()),
            message,
        }
    }
}

/// What the annotations of one Ingress say, and what is wrong with them.
#[derive(Debug, Default)]
pub struct ParsedAnnotations {
    /// `canary` is always `None` here; compile attaches canaries to routes.
    pub policy: Policy,
    /// `Some` when the Ingress is a canary (`canary: "true"`).
    pub canary: Option<CanarySpec>,
    /// The Ingress must not be served as written.
    pub errors: Vec<Note>,
    /// Snippet annotations found, one message each. Each refuses the Ingress exactly like
    /// an entry of `errors`; kept apart so admission can report them under their own rule.
    pub snippets: Vec<Note>,
    /// Annotations ignored; the Ingress serves without them.
    pub warnings: Vec<Note>,
}

impl ParsedAnnotations {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty() && self.snippets.is_empty()
    }
}

/// Parses the annotations of one Ingress.
pub fn parse_annotations(annotations: &BTreeMap<String, String>) -> ParsedAnnotations {
    let mut p = Parser {
        map: annotations,
        own: HashMap::new(),
        nginx: HashMap::new(),
        out: ParsedAnnotations::default(),
    };
    for (key, value) in annotations {
        if let Some(short) = key.strip_prefix(PORTCULLIS_PREFIX) {
            p.own.insert(short, (key.as_str(), value.as_str()));
        } else if let Some(short) = key.strip_prefix(NGINX_PREFIX) {
            p.nginx.insert(short, (key.as_str(), value.as_str()));
        }
    }
    p.check_keys();
    p.parse_values();
    p.out
}

/// Whether an annotation name (without its prefix) is a snippet: raw proxy configuration,
/// which portcullis never honours.
fn is_snippet(short: &str) -> bool {
    short.ends_with("-snippet")
}

pub(crate) struct Parser<'a> {
    map: &'a BTreeMap<String, String>,
    /// Short name → (full key, value), per prefix; built in one pass so lookups allocate
    /// nothing (compile parses every Ingress on every rebuild).
    own: HashMap<&'a str, (&'a str, &'a str)>,
    nginx: HashMap<&'a str, (&'a str, &'a str)>,
    pub(crate) out: ParsedAnnotations,
}

impl<'a> Parser<'a> {
    fn check_keys(&mut self) {
        for (key, value) in self.map {
            if let Some(short) = key.strip_prefix(PORTCULLIS_PREFIX) {
                if is_snippet(short) {
                    self.snippet(key);
                } else if !SHARED.contains(&short)
                    && !OWN.contains(&short)
                    && !matches!(catalogue::support(short), Some(Support::NoOp(_)))
                {
                    self.out.errors.push(Note::on(
                        key,
                        format!("{key}: unknown portcullis.io annotation"),
                    ));
                }
            } else if let Some(short) = key.strip_prefix(NGINX_PREFIX) {
                if is_snippet(short) {
                    self.snippet(key);
                } else if SHARED.contains(&short) {
                    if let Some((_, own)) = self.own.get(short)
                        && *own != value.as_str()
                    {
                        self.out.warnings.push(Note::on(
                            key,
                            format!("{key}: overridden by {PORTCULLIS_PREFIX}{short}"),
                        ));
                    }
                } else {
                    self.not_shared(key, short);
                }
            }
        }
    }

    /// An nginx annotation the parser does not read: accepted, warned about or refused,
    /// as the catalogue says.
    fn not_shared(&mut self, key: &str, short: &str) {
        match catalogue::support(short) {
            Some(Support::NoOp(_)) => {}
            Some(Support::Refused(why)) => {
                self.out.errors.push(Note::on(key, format!("{key}: {why}")));
            }
            _ if short.starts_with("auth-") || short == "satisfy" => {
                self.out.errors.push(Note::on(
                    key,
                    format!(
                        "{key}: not supported, and serving without it would bypass access control"
                    ),
                ));
            }
            Some(Support::Unsupported(instead)) => {
                self.out.warnings.push(Note::on(
                    key,
                    format!("{key}: not supported by portcullis; ignored (instead: {instead})"),
                ));
            }
            Some(_) => {
                self.out.warnings.push(Note::on(
                    key,
                    format!("{key}: not supported by portcullis; ignored"),
                ));
            }
            None => {
                self.out.warnings.push(Note::on(
                    key,
                    format!("{key}: not an ingress-nginx annotation portcullis knows; ignored"),
                ));
            }
        }
    }

    fn snippet(&mut self, key: &str) {
        self.out.snippets.push(Note::on(
            key,
            format!("{key}: snippet annotations are never honoured (raw proxy configuration)"),
        ));
    }

    /// Records an error about annotation `key` (a rule between several annotations).
    pub(crate) fn error(&mut self, key: &str, message: String) {
        self.out.errors.push(Note::on(key, message));
    }

    pub(crate) fn warn(&mut self, key: &str, message: String) {
        self.out.warnings.push(Note::on(key, message));
    }

    /// The value of `short` under the preferred prefix, with the full key for messages.
    pub(crate) fn get(&self, short: &str) -> Option<(&'a str, &'a str)> {
        if let Some(found) = self.own.get(short) {
            return Some(*found);
        }
        if OWN.contains(&short) {
            return None;
        }
        self.nginx.get(short).copied()
    }

    /// Parses `short` with `f`; a parse error is recorded and yields `None`.
    pub(crate) fn value<T>(
        &mut self,
        short: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (key, raw) = self.get(short)?;
        match f(raw.trim()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.out
                    .errors
                    .push(Note::on(key, format!("{key}: {e} (value {raw:?})")));
                None
            }
        }
    }

    fn parse_values(&mut self) {
        let mut policy = Policy {
            ssl_redirect: true,
            ..Policy::default()
        };
        policy.rewrite_target = self.value("rewrite-target", parse_rewrite_target);
        let use_regex = self.value("use-regex", parse_bool).unwrap_or(false);
        let rewrite_captures = policy
            .rewrite_target
            .as_deref()
            .is_some_and(has_capture_reference);
        policy.use_regex = use_regex || rewrite_captures;
        policy.app_root = self.value("app-root", parse_app_root);
        if let Some(v) = self.value("ssl-redirect", parse_bool) {
            policy.ssl_redirect = v;
        }
        policy.force_ssl_redirect = self
            .value("force-ssl-redirect", parse_bool)
            .unwrap_or(false);
        policy.backend_protocol = self.value("backend-protocol", parse_protocol);
        // `allowlist-` is the current nginx name, `whitelist-` the historic one.
        let allow = if self.get("allowlist-source-range").is_some() {
            self.value("allowlist-source-range", parse_ranges)
        } else {
            self.value("whitelist-source-range", parse_ranges)
        };
        policy.allow_source = allow.unwrap_or_default();
        policy.deny_source = self
            .value("denylist-source-range", parse_ranges)
            .unwrap_or_default();
        policy.max_body_bytes = self.value("proxy-body-size", parse_size).flatten();
        policy.body_size_annotated = self.get("proxy-body-size").is_some();
        policy.connect_timeout = self.value("proxy-connect-timeout", parse_timeout);
        policy.read_timeout = self.value("proxy-read-timeout", parse_timeout);
        policy.send_timeout = self.value("proxy-send-timeout", parse_timeout);
        policy.balance = self
            .value("load-balance", parse_balance)
            .unwrap_or_default();
        policy.upstream_vhost = self.value("upstream-vhost", parse_vhost);
        policy.x_forwarded_prefix = self.value("x-forwarded-prefix", parse_prefix_header);
        policy.request_headers = self
            .value("request-headers", parse_headers)
            .unwrap_or_default();
        policy.response_headers = self
            .value("response-headers", parse_headers)
            .unwrap_or_default();
        policy.upgrade_protocols = self
            .value("upgrade-protocols", parse_upgrade_protocols)
            .unwrap_or_default();
        policy.service_upstream = self.value("service-upstream", parse_bool).unwrap_or(false);
        policy.mirror = self.parse_mirror();
        let (edge, edge_errors) = crate::ingress::request::edge::parse(|short| self.get(short));
        policy.edge = edge;
        self.out.errors.extend(edge_errors);
        policy.traffic = crate::ingress::request::traffic::parse(self);
        policy.auth = crate::ingress::request::auth::parse(self);
        policy.tls_edge = crate::ingress::request::tls_edge::parse(self);
        self.out.policy = policy;
        self.parse_canary();
    }

    fn parse_mirror(&mut self) -> Option<std::sync::Arc<crate::ingress::request::mirror::Mirror>> {
        // nginx reads "on"/"off" here, and ingress-nginx mirrors the body by default.
        let body = self
            .value("mirror-request-body", |v| {
                match v.to_ascii_lowercase().as_str() {
                    "on" | "true" => Ok(true),
                    "off" | "false" => Ok(false),
                    _ => Err("expected on or off".into()),
                }
            })
            .unwrap_or(true);
        let host = self.get("mirror-host").map(|(_, v)| v.trim());
        self.value("mirror-target", |v| {
            crate::ingress::request::mirror::parse(v, host, body)
        })
        .map(std::sync::Arc::new)
    }

    fn parse_canary(&mut self) {
        let is_canary = self.value("canary", parse_bool).unwrap_or(false);
        let weight = self.value("canary-weight", parse_weight);
        let header = self.value("canary-by-header", |v| {
            HeaderName::from_str(v).map_err(|_| "not a valid header name".to_string())
        });
        let header_value = self.value("canary-by-header-value", |v| {
            if v.is_empty() || HeaderValue::from_str(v).is_err() {
                Err("not a valid header value".to_string())
            } else {
                Ok(v.to_string())
            }
        });
        if !is_canary {
            let first = [
                "canary-weight",
                "canary-by-header",
                "canary-by-header-value",
            ]
            .into_iter()
            .find_map(|short| self.get(short));
            let any = weight.is_some() || header.is_some() || header_value.is_some();
            if let Some((key, _)) = first.filter(|_| any) {
                self.out.warnings.push(Note::on(
                    key,
                    format!("{key}: canary-* annotations ignored: the Ingress is not a canary"),
                ));
            }
            return;
        }
        if let Some((key, _)) = self.get("canary-by-header-value")
            && header_value.is_some()
            && header.is_none()
        {
            self.out
                .errors
                .push(Note::on(key, format!("{key}: needs canary-by-header")));
        }
        self.out.canary = Some(CanarySpec {
            weight: weight.unwrap_or(0),
            header,
            header_value,
        });
    }
}

pub(crate) fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// Printable ASCII without spaces: what may go into a path or a Location header.
fn is_path_chars(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_graphic())
}

fn has_capture_reference(v: &str) -> bool {
    v.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
}

fn parse_rewrite_target(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > MAX_PATH_LEN || !is_path_chars(v) {
        return Err("expected a path of printable characters without spaces".into());
    }
    if !v.starts_with('/') && !v.starts_with('$') {
        return Err("must start with / or a $N capture reference".into());
    }
    let bytes = v.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'$' && !matches!(bytes.get(i + 1), Some(b'1'..=b'9')) {
            return Err("only $1 to $9 may follow a $ (no nginx variables)".into());
        }
    }
    Ok(v.to_string())
}

fn parse_app_root(v: &str) -> Result<String, String> {
    if !v.starts_with('/') || v.starts_with("//") {
        return Err("must be an absolute path".into());
    }
    if v.len() > MAX_PATH_LEN || !is_path_chars(v) {
        return Err("expected a path of printable characters without spaces".into());
    }
    Ok(v.to_string())
}

fn parse_protocol(v: &str) -> Result<UpstreamProtocol, String> {
    match v.to_ascii_uppercase().as_str() {
        "HTTP" => Ok(UpstreamProtocol::Http1),
        "HTTPS" => Ok(UpstreamProtocol::Https),
        // gRPC in cleartext is HTTP/2 with prior knowledge.
        "GRPC" | "H2C" => Ok(UpstreamProtocol::H2c),
        "GRPCS" => Ok(UpstreamProtocol::Grpcs),
        _ => Err("expected HTTP, HTTPS, GRPC, GRPCS or H2C".into()),
    }
}

/// Comma-separated CIDRs or addresses.
pub fn parse_ranges(v: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let net = IpNet::from_str(item)
            .or_else(|_| std::net::IpAddr::from_str(item).map(IpNet::from))
            .map_err(|_| format!("{item:?} is not a CIDR or IP address"))?;
        out.push(net.trunc());
    }
    if out.is_empty() {
        return Err("no CIDR given".into());
    }
    Ok(out)
}

/// nginx size syntax; `Ok(None)` for `0` (unlimited).
pub(crate) fn parse_size(v: &str) -> Result<Option<u64>, String> {
    let (digits, mult) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a size such as 512k, 10m or 1g".into());
    }
    let n: u64 = digits.parse().map_err(|_| "size too large".to_string())?;
    let bytes = n.checked_mul(mult).ok_or("size too large")?;
    Ok((bytes != 0).then_some(bytes))
}

fn parse_timeout(v: &str) -> Result<Duration, String> {
    let (digits, unit) = if let Some(d) = v.strip_suffix("ms") {
        (d, Duration::from_millis(1))
    } else if let Some(d) = v.strip_suffix('s') {
        (d, Duration::from_secs(1))
    } else if let Some(d) = v.strip_suffix('m') {
        (d, Duration::from_secs(60))
    } else {
        (v, Duration::from_secs(1))
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected seconds, or a number with unit ms, s or m".into());
    }
    let n: u32 = digits
        .parse()
        .map_err(|_| "timeout too large".to_string())?;
    let d = unit.checked_mul(n).ok_or("timeout too large")?;
    if d.is_zero() {
        return Err("timeout must be positive".into());
    }
    if d > MAX_TIMEOUT {
        return Err("timeout longer than a day".into());
    }
    Ok(d)
}

fn parse_balance(v: &str) -> Result<Balance, String> {
    match v {
        "ewma" => Ok(Balance::Ewma),
        "round_robin" => Ok(Balance::RoundRobin),
        _ => Err("expected ewma or round_robin".into()),
    }
}

fn parse_vhost(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(v.to_string())
    } else {
        Err("expected a host name with an optional :port".into())
    }
}

/// `portcullis.io/upgrade-protocols: "mqtt, echo"`: protocols besides WebSocket that
/// may be tunnelled after a 101. `h2c` is refused: inside its tunnel requests would pass
/// every route and policy.
fn parse_upgrade_protocols(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let name = p.split('/').next().unwrap_or("");
        if name.eq_ignore_ascii_case("h2c") {
            return Err(
                "h2c can not be tunnelled (requests inside it would bypass routing)".into(),
            );
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(format!("{p:?} is not a protocol token"));
        }
        out.push(name.to_ascii_lowercase());
    }
    if out.is_empty() {
        return Err("expected a comma-separated list of protocol names".into());
    }
    Ok(out)
}

fn parse_prefix_header(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > MAX_PATH_LEN || !is_path_chars(v) {
        return Err("expected printable characters without spaces".into());
    }
    Ok(v.to_string())
}

fn parse_weight(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(w) if w <= 100 => Ok(w),
        _ => Err("expected an integer from 0 to 100".into()),
    }
}

/// `Name: value` lines.
pub fn parse_headers(v: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut out = Vec::new();
    for line in v.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("line {line:?} is not `Name: value`"));
        };
        let name = HeaderName::from_str(name.trim())
            .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
        if FORBIDDEN_HEADERS.contains(&name.as_str()) {
            return Err(format!("header {name} cannot be set by an annotation"));
        }
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("header {name} has an empty value"));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("header {name} has an invalid value"))?;
        out.push((name, value));
    }
    if out.len() > MAX_HEADER_LINES {
        return Err(format!("more than {MAX_HEADER_LINES} headers"));
    }
    Ok(out)
}

/// `parse_annotations` over `(key, value)` pairs written inline: the tests of every
/// annotation group build their input this way.
#[cfg(test)]
pub(crate) fn parse_pairs(pairs: &[(&str, &str)]) -> ParsedAnnotations {
    let map = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_annotations(&map)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::parse_pairs as parse;

    #[test]
    fn empty_means_defaults() {
        let p = parse(&[]);
        assert!(p.is_ok() && p.warnings.is_empty());
        assert!(p.policy.ssl_redirect, "redirect is on by default");
        assert!(!p.policy.use_regex);
        assert_eq!(p.policy.balance, Balance::Ewma);
        assert!(p.canary.is_none());
    }

    #[test]
    fn every_supported_annotation() {
        let p = parse(&[
            ("nginx.ingress.kubernetes.io/rewrite-target", "/$2"),
            ("nginx.ingress.kubernetes.io/app-root", "/app"),
            ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
            ("portcullis.io/force-ssl-redirect", "TRUE"),
            ("nginx.ingress.kubernetes.io/backend-protocol", "grpc"),
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/8, 192.168.1.7",
            ),
            ("portcullis.io/denylist-source-range", "10.1.2.3/8"),
            ("nginx.ingress.kubernetes.io/proxy-body-size", "10m"),
            ("nginx.ingress.kubernetes.io/proxy-connect-timeout", "5"),
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "5s"),
            ("portcullis.io/proxy-send-timeout", "250ms"),
            ("nginx.ingress.kubernetes.io/load-balance", "round_robin"),
            (
                "nginx.ingress.kubernetes.io/upstream-vhost",
                "internal.svc:8080",
            ),
            ("nginx.ingress.kubernetes.io/x-forwarded-prefix", "/api"),
            (
                "portcullis.io/request-headers",
                "X-Env: prod\n\nX-Team:  web \n",
            ),
            (
                "portcullis.io/response-headers",
                "Strict-Transport-Security: max-age=60",
            ),
        ]);
        assert!(p.is_ok(), "{:?}", p.errors);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let pol = &p.policy;
        assert_eq!(pol.rewrite_target.as_deref(), Some("/$2"));
        assert!(pol.use_regex, "a capture reference implies regex paths");
        assert_eq!(pol.app_root.as_deref(), Some("/app"));
        assert!(!pol.ssl_redirect && pol.force_ssl_redirect);
        assert_eq!(pol.backend_protocol, Some(UpstreamProtocol::H2c));
        let allow: Vec<String> = pol.allow_source.iter().map(|n| n.to_string()).collect();
        assert_eq!(allow, ["10.0.0.0/8", "192.168.1.7/32"]);
        assert_eq!(pol.deny_source[0].to_string(), "10.0.0.0/8");
        assert_eq!(pol.max_body_bytes, Some(10 << 20));
        assert_eq!(pol.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(pol.read_timeout, Some(Duration::from_secs(5)));
        assert_eq!(pol.send_timeout, Some(Duration::from_millis(250)));
        assert_eq!(pol.balance, Balance::RoundRobin);
        assert_eq!(pol.upstream_vhost.as_deref(), Some("internal.svc:8080"));
        assert_eq!(pol.x_forwarded_prefix.as_deref(), Some("/api"));
        assert_eq!(pol.request_headers.len(), 2);
        assert_eq!(pol.request_headers[1].0.as_str(), "x-team");
        assert_eq!(pol.request_headers[1].1, "web");
        assert_eq!(
            pol.response_headers[0].0.as_str(),
            "strict-transport-security"
        );
    }

    #[test]
    fn portcullis_prefix_wins() {
        let p = parse(&[
            ("nginx.ingress.kubernetes.io/proxy-body-size", "1m"),
            ("portcullis.io/proxy-body-size", "0"),
            ("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS"),
            ("portcullis.io/backend-protocol", "HTTPS"),
        ]);
        assert!(p.is_ok());
        assert_eq!(p.policy.max_body_bytes, None, "0 = unlimited");
        assert_eq!(p.policy.backend_protocol, Some(UpstreamProtocol::Https));
        assert_eq!(
            p.warnings.len(),
            1,
            "only differing values warn: {:?}",
            p.warnings
        );
    }

    #[test]
    fn allowlist_spelling_beats_whitelist() {
        let p = parse(&[
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "1.1.1.1",
            ),
            (
                "nginx.ingress.kubernetes.io/allowlist-source-range",
                "2.2.2.2",
            ),
        ]);
        assert_eq!(p.policy.allow_source[0].to_string(), "2.2.2.2/32");
    }

    #[test]
    fn malformed_values_are_errors_naming_the_key() {
        let cases: &[(&str, &str)] = &[
            ("nginx.ingress.kubernetes.io/use-regex", "yes"),
            ("nginx.ingress.kubernetes.io/rewrite-target", "/$host"),
            ("nginx.ingress.kubernetes.io/rewrite-target", "http://evil/"),
            ("nginx.ingress.kubernetes.io/app-root", "//evil.example"),
            ("nginx.ingress.kubernetes.io/backend-protocol", "FCGI"),
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/33",
            ),
            ("nginx.ingress.kubernetes.io/whitelist-source-range", " , "),
            (
                "nginx.ingress.kubernetes.io/denylist-source-range",
                "example.com",
            ),
            ("nginx.ingress.kubernetes.io/proxy-body-size", "10mb"),
            (
                "nginx.ingress.kubernetes.io/proxy-body-size",
                "99999999999999999999g",
            ),
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "0"),
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "-1"),
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "5h"),
            ("nginx.ingress.kubernetes.io/load-balance", "chash"),
            ("nginx.ingress.kubernetes.io/upstream-vhost", "$host"),
            ("portcullis.io/request-headers", "no colon here"),
            ("portcullis.io/request-headers", "Bad Name: x"),
            ("portcullis.io/request-headers", "Content-Length: 5"),
            ("portcullis.io/response-headers", "X-A: line\u{7f}"),
            ("portcullis.io/canary-weight", "101"),
            ("portcullis.io/whitelist-source-rnage", "10.0.0.0/8"),
            (
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "deny all;",
            ),
            ("portcullis.io/server-snippet", "x"),
            ("nginx.ingress.kubernetes.io/auth-url", "ftp://auth"),
            ("nginx.ingress.kubernetes.io/auth-digest-file", "x"),
        ];
        for (k, v) in cases {
            let p = parse(&[(k, v)]);
            let all: Vec<&Note> = p.errors.iter().chain(&p.snippets).collect();
            assert_eq!(all.len(), 1, "{k}={v:?}: {all:?}");
            assert!(all[0].message.starts_with(k), "{all:?}");
            assert_eq!(all[0].key.as_deref(), Some(*k));
            assert!(!p.is_ok());
            assert_eq!(
                p.snippets.len(),
                usize::from(k.ends_with("-snippet")),
                "{k}"
            );
        }
    }

    #[test]
    fn unsupported_nginx_annotations_are_warnings() {
        let p = parse(&[
            ("nginx.ingress.kubernetes.io/enable-modsecurity", "true"),
            ("kubernetes.io/ingress.class", "portcullis"),
            ("example.com/anything", "x"),
        ]);
        assert!(p.is_ok());
        assert_eq!(p.warnings.len(), 1);
        assert!(
            p.warnings[0].message.contains("instead: "),
            "{:?}",
            p.warnings
        );
        // Buffering tunables are accepted silently, under either prefix: bodies stream.
        let p = parse(&[
            ("nginx.ingress.kubernetes.io/proxy-buffering", "on"),
            ("portcullis.io/proxy-request-buffering", "off"),
        ]);
        assert!(p.is_ok() && p.warnings.is_empty(), "{:?}", p.warnings);
        // request-headers exists only under portcullis.io.
        let p = parse(&[("nginx.ingress.kubernetes.io/request-headers", "X-A: b")]);
        assert!(p.policy.request_headers.is_empty());
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn canary_annotations() {
        let p = parse(&[
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/canary-weight", "20"),
            ("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary"),
            ("nginx.ingress.kubernetes.io/canary-by-header-value", "yes"),
        ]);
        assert!(p.is_ok(), "{:?}", p.errors);
        let c = p.canary.unwrap();
        assert_eq!(c.weight, 20);
        assert_eq!(c.header.unwrap().as_str(), "x-canary");
        assert_eq!(c.header_value.as_deref(), Some("yes"));

        let p = parse(&[("portcullis.io/canary-weight", "20")]);
        assert!(p.canary.is_none() && p.is_ok());
        assert_eq!(p.warnings.len(), 1, "canary-* without canary is ignored");
        assert_eq!(
            p.warnings[0].key.as_deref(),
            Some("portcullis.io/canary-weight")
        );

        let p = parse(&[
            ("portcullis.io/canary", "true"),
            ("portcullis.io/canary-by-header-value", "yes"),
        ]);
        assert_eq!(p.errors.len(), 1);
        assert_eq!(
            p.errors[0].key.as_deref(),
            Some("portcullis.io/canary-by-header-value")
        );
    }

    #[test]
    fn use_regex_without_rewrite_and_rewrite_without_captures() {
        let p = parse(&[("nginx.ingress.kubernetes.io/use-regex", "true")]);
        assert!(p.policy.use_regex);
        let p = parse(&[("nginx.ingress.kubernetes.io/rewrite-target", "/")]);
        assert!(!p.policy.use_regex);
        assert_eq!(p.policy.rewrite_target.as_deref(), Some("/"));
    }
}
