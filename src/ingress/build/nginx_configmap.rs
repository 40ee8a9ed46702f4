//! Reads the `data` of an ingress-nginx controller ConfigMap and turns the keys portcullis
//! has an equivalent for into settings (a partial settings document that the settings file
//! overrides), and says for every other key whether it is safe to drop.
//!
//! Pure: `serve --nginx-configmap` applies the result, `migrate` reports it.
use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// What became of one ConfigMap key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    /// Applied as the setting at this dotted path, with this value.
    Setting { path: String, value: Value },
    /// Accepted; it tunes something portcullis does not have.
    NoOp(&'static str),
    /// Dropped, and the behaviour it asked for is missing; the text says what to use.
    Unsupported(&'static str),
    /// The value could not be read.
    Invalid(String),
    /// Not an ingress-nginx key portcullis knows.
    Unknown,
}

impl KeyStatus {
    pub fn label(&self) -> &'static str {
        match self {
            KeyStatus::Setting { .. } => "setting",
            KeyStatus::NoOp(_) => "accepted, no effect",
            KeyStatus::Unsupported(_) => "not supported",
            KeyStatus::Invalid(_) => "invalid",
            KeyStatus::Unknown => "unknown",
        }
    }

    /// Whether dropping or misreading the key changes what users see.
    pub fn changes_behaviour(&self) -> bool {
        matches!(
            self,
            KeyStatus::Unsupported(_) | KeyStatus::Invalid(_) | KeyStatus::Unknown
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    pub key: String,
    pub value: String,
    pub status: KeyStatus,
}

/// The settings a ConfigMap amounts to, and a report line per key.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// A partial settings document (camelCase, as the settings file).
    pub settings: Value,
    pub keys: Vec<KeyReport>,
}

/// How a value is read.
#[derive(Debug, Clone, Copy)]
enum Conv {
    /// nginx time (`60`, `60s`, `5m`, `1h`) as whole seconds.
    Seconds,
    Bool,
    /// A boolean whose setting means the opposite (`disable-access-log` → `accessLog`).
    NotBool,
    /// A positive count.
    Count,
    /// A whole number, zero included.
    Number,
    /// Text kept as it is.
    Text,
    /// A comma-separated list of whole numbers (status codes).
    Numbers,
    /// A comma-separated list of strings.
    List,
    /// `worker-processes`: a count or `auto` (0: one per CPU).
    Workers,
    /// `large-client-header-buffers`: `number size`, whose product bounds a request head.
    HeaderBuffers,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    Set(&'static str, Conv),
    NoOp(&'static str),
    Unsupported(&'static str),
}

const BUFFERS: &str = "bodies are streamed, never buffered to disk";
const HASH_SIZES: &str = "nginx's hash table sizing has no counterpart";
const TRACING: &str = "no tracing exporter is built in; use the request id and the metrics";
const SNIPPET: &str = "raw nginx configuration has no counterpart; use settings or annotations";
const LOG_FORMAT: &str = "the access log is one JSON object per request with fixed fields";
const GZIP: &str = "responses are passed through as the backend encoded them";

fn rule(key: &str) -> Option<Rule> {
    use Conv::*;
    use Rule::*;
    Some(match key {
        "proxy-connect-timeout" => Set("proxy.connectTimeoutSeconds", Seconds),
        "proxy-read-timeout" => Set("proxy.readTimeoutSeconds", Seconds),
        "proxy-send-timeout" => Set("proxy.sendTimeoutSeconds", Seconds),
        "upstream-keepalive-timeout" => Set("proxy.upstreamKeepAliveTimeoutSeconds", Seconds),
        "upstream-keepalive-connections" => Set("proxy.upstreamKeepAliveConnections", Count),
        "keep-alive" => Set("listeners.keepAliveTimeoutSeconds", Seconds),
        "client-header-timeout" => Set("listeners.headerTimeoutSeconds", Seconds),
        "client-body-timeout" => Set("listeners.clientBodyTimeoutSeconds", Seconds),
        "worker-processes" => Set("listeners.workers", Workers),
        "large-client-header-buffers" => Set("listeners.maxHeaderBytes", HeaderBuffers),
        "ssl-session-tickets" => Set("listeners.tlsSessionTickets", Bool),
        "disable-access-log" => Set("ingress.accessLog", NotBool),
        "worker-shutdown-timeout" => Set("shutdown.gracePeriodSeconds", Seconds),
        "max-worker-connections" => Set("listeners.maxConnections", Count),
        "use-forwarded-headers" => Set("edge.useForwardedHeaders", Bool),
        "proxy-real-ip-cidr" => Set("edge.proxyRealIpCidr", List),
        "compute-full-forwarded-for" => Set("edge.computeFullForwardedFor", Bool),
        "use-proxy-protocol" => Set("edge.useProxyProtocol", Bool),
        "proxy-protocol-header-timeout" => Set("edge.proxyProtocolHeaderTimeoutSeconds", Seconds),
        "hsts" => Set("edge.hsts", Bool),
        "hsts-max-age" => Set("edge.hstsMaxAge", Number),
        "hsts-include-subdomains" => Set("edge.hstsIncludeSubdomains", Bool),
        "hsts-preload" => Set("edge.hstsPreload", Bool),
        "server-tokens" => Set("edge.serverTokens", Bool),
        "ssl-protocols" => Set("edge.sslProtocols", Text),
        "ssl-ciphers" => Set("edge.sslCiphers", Text),
        "limit-req-status-code" => Set("proxy.limitReqStatusCode", Number),
        "limit-conn-status-code" => Set("proxy.limitConnStatusCode", Number),
        "custom-http-errors" => Set("proxy.customHttpErrors", Numbers),
        "proxy-body-size" => Set("proxy.proxyBodySize", Text),
        // Kept as they are.
        "client-body-buffer-size"
        | "client-header-buffer-size"
        | "proxy-buffer-size"
        | "proxy-buffers-number"
        | "proxy-buffering"
        | "proxy-request-buffering"
        | "proxy-max-temp-file-size" => NoOp(BUFFERS),
        "map-hash-bucket-size"
        | "server-name-hash-max-size"
        | "server-name-hash-bucket-size"
        | "proxy-headers-hash-max-size"
        | "proxy-headers-hash-bucket-size"
        | "variables-hash-bucket-size"
        | "variables-hash-max-size" => NoOp(HASH_SIZES),
        "enable-multi-accept" | "reuse-port" | "worker-cpu-affinity" | "max-worker-open-files" => {
            NoOp("workers and file limits are sized by portcullis itself (listeners.workers)")
        }
        "use-http2" => NoOp("HTTP/2 is always offered over TLS by ALPN"),
        "ssl-prefer-server-ciphers" => NoOp("rustls always prefers the server's order"),
        "ssl-session-cache" | "ssl-session-cache-size" | "ssl-session-timeout" => {
            NoOp("TLS session resumption is sized by listeners.tlsSessionCacheSize")
        }
        "ssl-buffer-size" => NoOp("rustls sizes TLS records itself"),
        "ssl-ecdh-curve" => NoOp("rustls offers X25519 and the NIST curves"),
        "ssl-dh-param" => NoOp("finite-field Diffie-Hellman is not offered at all"),
        "generate-request-id" => NoOp("an X-Request-ID is always generated when missing"),
        "allow-snippet-annotations" => NoOp("snippet annotations are always refused"),
        "annotation-value-word-blocklist" => {
            NoOp("annotation values are parsed structurally, never pasted into configuration")
        }
        "error-log-path"
        | "error-log-level"
        | "access-log-path"
        | "http-access-log-path"
        | "stream-access-log-path"
        | "access-log-params" => {
            NoOp("logs go to standard output and error, with RUST_LOG choosing the level")
        }
        "disable-ipv6" | "disable-ipv6-dns" | "bind-address" => {
            NoOp("listen addresses are command-line flags of serve")
        }
        "use-geoip" | "use-geoip2" => NoOp("GeoIP lookups are not built in; nothing reads them"),
        "http2-max-field-size" | "http2-max-header-size" => {
            NoOp("request heads are bounded by listeners.maxHeaderBytes for HTTP/1.1 and HTTP/2")
        }
        "keep-alive-requests" | "upstream-keepalive-requests" | "upstream-keepalive-time" => {
            NoOp("connections are kept while they are healthy and within their idle timeout")
        }
        "enable-underscores-in-headers" | "ignore-invalid-headers" => {
            NoOp("header names are checked by the HTTP parser, underscores included")
        }
        "log-format-escape-json" | "log-format-escape-none" => NoOp(LOG_FORMAT),
        "log-format-upstream" | "log-format-stream" | "skip-access-log-urls" => {
            Unsupported(LOG_FORMAT)
        }
        "use-gzip" | "gzip-level" | "gzip-types" | "enable-brotli" | "brotli-level"
        | "brotli-min-length" | "brotli-types" => Unsupported(GZIP),
        "enable-opentracing"
        | "enable-opentelemetry"
        | "opentracing-operation-name"
        | "opentracing-location-operation-name" => Unsupported(TRACING),
        k if k.starts_with("zipkin-")
            || k.starts_with("jaeger-")
            || k.starts_with("datadog-")
            || k.starts_with("otel")
            || k.starts_with("opentelemetry-") =>
        {
            Unsupported(TRACING)
        }
        k if k.ends_with("-snippet") => Unsupported(SNIPPET),
        "enable-modsecurity" | "enable-owasp-modsecurity-crs" => {
            Unsupported("a web application firewall in front of or behind portcullis")
        }
        "add-headers" => Unsupported("portcullis.io/response-headers on each Ingress"),
        "proxy-set-headers" => Unsupported("portcullis.io/request-headers on each Ingress"),
        "hide-headers" => Unsupported("have the backend stop sending the header"),
        "allow-backend-server-header" => {
            Unsupported("the backend's Server header is passed through as it is")
        }
        "block-cidrs" => Unsupported("denylist-source-range on each Ingress"),
        "block-user-agents" | "block-referers" => {
            Unsupported("a web application firewall in front of or behind portcullis")
        }
        "whitelist-source-range" => Unsupported("whitelist-source-range on each Ingress"),
        "ssl-redirect" | "force-ssl-redirect" => Unsupported(
            "the annotation of the same name on each Ingress (ssl-redirect is on by default)",
        ),
        "http-redirect-code" => Unsupported("HTTPS redirects are always 308"),
        "no-tls-redirect-locations" => {
            Unsupported("only /.well-known/acme-challenge/ is exempt from the HTTPS redirect")
        }
        "limit-rate" | "limit-rate-after" => Unsupported("bandwidth limits are not built in"),
        k if k.starts_with("global-rate-limit") => {
            Unsupported("limit-rps / limit-rpm per Ingress, counted per replica")
        }
        k if k.starts_with("global-auth-") || k == "no-auth-locations" => {
            Unsupported("auth-url on each Ingress")
        }
        "enable-ocsp" => Unsupported("OCSP stapling is not built in"),
        "ssl-reject-handshake" => {
            Unsupported("unknown names get the default certificate; use the allowlist to refuse")
        }
        "enable-real-ip" | "forwarded-for-header" => Unsupported(
            "use-forwarded-headers with proxy-real-ip-cidr: X-Forwarded-For from those peers is believed",
        ),
        "enable-access-log-for-default-backend" => {
            Unsupported("every request is logged, the default backend's too")
        }
        "default-type" => Unsupported("the backend sets Content-Type"),
        "lua-shared-dicts" | "plugins" => Unsupported("Lua plugins have no counterpart"),
        "service-upstream" => Unsupported("the service-upstream annotation on each Ingress"),
        "proxy-stream-timeout"
        | "proxy-stream-next-upstream"
        | "proxy-stream-next-upstream-timeout"
        | "proxy-stream-next-upstream-tries"
        | "proxy-stream-responses" => Unsupported("TCP and UDP services are not proxied"),
        "enable-syslog" | "syslog-host" | "syslog-port" => {
            Unsupported("logs go to standard output; the node's log collector ships them")
        }
        "nginx-status-ipv4-whitelist" | "nginx-status-ipv6-whitelist" | "debug-connections" => {
            Unsupported("status and metrics are on the admin listener")
        }
        "proxy-cookie-path" | "proxy-cookie-domain" | "proxy-redirect-from" => {
            Unsupported("have the application produce the paths and domains it is served under")
        }
        "retry-non-idempotent" => {
            Unsupported("one retry, only when the request never reached the backend")
        }
        "load-balance" => Unsupported("the load-balance annotation on each Ingress (default ewma)"),
        "http2-max-concurrent-streams" | "http2-max-requests" => {
            NoOp("HTTP/2 stream limits are portcullis's own")
        }
        _ => return None,
    })
}

/// The keys that become settings (kept in step with `rule` by a test).
pub const KEYS_WITH_SETTINGS: &[&str] = &[
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "upstream-keepalive-timeout",
    "upstream-keepalive-connections",
    "keep-alive",
    "client-header-timeout",
    "client-body-timeout",
    "worker-processes",
    "large-client-header-buffers",
    "ssl-session-tickets",
    "disable-access-log",
    "worker-shutdown-timeout",
    "max-worker-connections",
    "use-forwarded-headers",
    "proxy-real-ip-cidr",
    "compute-full-forwarded-for",
    "use-proxy-protocol",
    "proxy-protocol-header-timeout",
    "hsts",
    "hsts-max-age",
    "hsts-include-subdomains",
    "hsts-preload",
    "server-tokens",
    "ssl-protocols",
    "ssl-ciphers",
    "limit-req-status-code",
    "limit-conn-status-code",
    "custom-http-errors",
    "proxy-body-size",
];

/// Translates the `data` of an ingress-nginx ConfigMap.
pub fn translate(data: &BTreeMap<String, String>) -> Translation {
    let mut settings = Value::Object(Map::new());
    let mut keys = Vec::with_capacity(data.len());
    for (key, value) in data {
        let status = match rule(key) {
            Some(Rule::Set(path, conv)) => match convert(conv, value.trim()) {
                Ok(v) => {
                    set(&mut settings, path, v.clone());
                    KeyStatus::Setting {
                        path: path.to_string(),
                        value: v,
                    }
                }
                Err(e) => KeyStatus::Invalid(e),
            },
            Some(Rule::NoOp(why)) => KeyStatus::NoOp(why),
            Some(Rule::Unsupported(instead)) => KeyStatus::Unsupported(instead),
            None => KeyStatus::Unknown,
        };
        keys.push(KeyReport {
            key: key.clone(),
            value: value.clone(),
            status,
        });
    }
    Translation { settings, keys }
}

fn convert(conv: Conv, v: &str) -> Result<Value, String> {
    match conv {
        Conv::Seconds => seconds(v).map(Value::from),
        Conv::Bool => boolean(v).map(Value::Bool),
        Conv::NotBool => boolean(v).map(|b| Value::Bool(!b)),
        Conv::Count => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Value::from(n)),
            _ => Err("expected a positive whole number".into()),
        },
        Conv::Number => v
            .parse::<u64>()
            .map(Value::from)
            .map_err(|_| "expected a whole number".into()),
        Conv::Text => Ok(Value::String(v.to_string())),
        Conv::Numbers => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u64>()
                    .map(Value::from)
                    .map_err(|_| format!("{s:?} is not a whole number"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Conv::List => {
            let items: Vec<Value> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect();
            Ok(Value::Array(items))
        }
        Conv::Workers => match v {
            "auto" => Ok(Value::from(0u64)),
            n => n
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| "expected a number or auto".into()),
        },
        Conv::HeaderBuffers => {
            let mut parts = v.split_whitespace();
            let (Some(n), Some(size), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err("expected `number size`, such as `4 8k`".into());
            };
            let n: u64 = n.parse().map_err(|_| "expected a number of buffers")?;
            let size = bytes(size)?;
            n.checked_mul(size)
                .filter(|b| *b > 0)
                .map(Value::from)
                .ok_or_else(|| "header buffers out of range".into())
        }
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" => Ok(true),
        "false" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// nginx time: a number with an optional unit (ms rounds up to a second).
fn seconds(v: &str) -> Result<u64, String> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{v:?} is not a time such as 60, 60s or 5m"))?;
    let secs = match unit {
        "" | "s" => Some(n),
        "ms" => Some(n.div_ceil(1000)),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    };
    secs.ok_or_else(|| format!("{v:?} is not a time such as 60, 60s or 5m"))
}

/// nginx size: bytes with an optional k or m.
fn bytes(v: &str) -> Result<u64, String> {
    let (digits, mult) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1 << 20),
        _ => (v, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{v:?} is not a size such as 8k"))
}

/// Sets a dotted path in a JSON object, creating the objects on the way.
fn set(root: &mut Value, path: &str, value: Value) {
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Value::Object(map) = node else { return };
        if parts.peek().is_none() {
            map.insert(part.to_string(), value);
            return;
        }
        node = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Lays `over` onto `base`: objects merge key by key, anything else in `over` wins.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn status<'a>(t: &'a Translation, key: &str) -> &'a KeyStatus {
        &t.keys.iter().find(|k| k.key == key).expect(key).status
    }

    #[test]
    fn settings_come_out_in_the_settings_shape() {
        let t = translate(&data(&[
            ("proxy-read-timeout", "120"),
            ("keep-alive", "1m"),
            ("worker-shutdown-timeout", "240s"),
            ("large-client-header-buffers", "4 8k"),
            ("disable-access-log", "true"),
            ("worker-processes", "auto"),
        ]));
        assert_eq!(
            t.settings,
            json!({
                "proxy": {"readTimeoutSeconds": 120},
                "listeners": {"keepAliveTimeoutSeconds": 60, "maxHeaderBytes": 32768, "workers": 0},
                "shutdown": {"gracePeriodSeconds": 240},
                "ingress": {"accessLog": false},
            })
        );
        assert!(t.keys.iter().all(|k| !k.status.changes_behaviour()));
    }

    #[test]
    fn edge_keys_keep_their_ingress_nginx_meaning() {
        let t = translate(&data(&[
            ("use-forwarded-headers", "true"),
            ("proxy-real-ip-cidr", "10.0.0.0/8, 192.168.0.0/16"),
            ("use-proxy-protocol", "true"),
            ("hsts-max-age", "0"),
            ("custom-http-errors", "404,503"),
        ]));
        assert_eq!(
            t.settings,
            json!({
                "edge": {
                    "useForwardedHeaders": true,
                    "proxyRealIpCidr": ["10.0.0.0/8", "192.168.0.0/16"],
                    "useProxyProtocol": true,
                    "hstsMaxAge": 0,
                },
                "proxy": {"customHttpErrors": [404, 503]},
            })
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_are_reported() {
        let t = translate(&data(&[
            ("proxy-read-timeout", "soon"),
            ("use-gzip", "true"),
            ("proxy-buffering", "on"),
            ("made-up-key", "1"),
            ("http-snippet", "x"),
        ]));
        assert_eq!(t.settings, json!({}));
        assert!(matches!(
            status(&t, "proxy-read-timeout"),
            KeyStatus::Invalid(_)
        ));
        assert!(status(&t, "use-gzip").changes_behaviour());
        assert!(!status(&t, "proxy-buffering").changes_behaviour());
        assert_eq!(status(&t, "made-up-key"), &KeyStatus::Unknown);
        assert!(matches!(
            status(&t, "http-snippet"),
            KeyStatus::Unsupported(_)
        ));
    }

    #[test]
    fn merge_lets_the_later_document_win() {
        let mut base = json!({"proxy": {"readTimeoutSeconds": 120, "connectTimeoutSeconds": 5}});
        merge(
            &mut base,
            json!({"proxy": {"readTimeoutSeconds": 30}, "ingress": {"accessLog": true}}),
        );
        assert_eq!(
            base,
            json!({"proxy": {"readTimeoutSeconds": 30, "connectTimeoutSeconds": 5}, "ingress": {"accessLog": true}})
        );
    }

    /// A typo in a setting path would make `serve --nginx-configmap` fail at start-up.
    #[test]
    fn every_setting_path_is_a_real_setting() {
        let mut pairs = Vec::new();
        for key in KEYS_WITH_SETTINGS {
            let Some(Rule::Set(_, conv)) = rule(key) else {
                panic!("{key} has no setting");
            };
            let value = match (*key, conv) {
                ("ssl-protocols", _) => "TLSv1.2 TLSv1.3",
                ("ssl-ciphers", _) => "ECDHE-ECDSA-AES128-GCM-SHA256",
                ("proxy-body-size", _) => "8m",
                (_, Conv::Number) => "429",
                (_, Conv::Numbers) => "404,503",
                (_, Conv::Text) => "x",
                (_, Conv::Seconds) => "30s",
                (_, Conv::Bool | Conv::NotBool) => "true",
                (_, Conv::Count) => "7",
                (_, Conv::List) => "10.0.0.0/8",
                (_, Conv::Workers) => "2",
                (_, Conv::HeaderBuffers) => "4 8k",
            };
            pairs.push((*key, value));
        }
        let t = translate(&data(&pairs));
        assert!(
            t.keys
                .iter()
                .all(|k| matches!(k.status, KeyStatus::Setting { .. }))
        );
        let settings: crate::config::Settings =
            serde_json::from_value(t.settings).expect("settings document");
        assert_eq!(settings.proxy.read_timeout_seconds, 30);
        assert_eq!(settings.listeners.workers, 2);
        assert!(!settings.ingress.access_log);
    }

    #[test]
    fn a_settings_file_overrides_the_configmap() {
        let t = translate(&data(&[
            ("proxy-read-timeout", "120"),
            ("keep-alive", "10"),
        ]));
        let s = crate::config::Settings::parse_over(
            "f",
            "proxy:\n  readTimeoutSeconds: 5\n",
            t.settings,
        )
        .expect("settings");
        assert_eq!(s.proxy.read_timeout_seconds, 5);
        assert_eq!(s.listeners.keep_alive_timeout_seconds, 10);
    }

    #[test]
    fn times_and_sizes() {
        assert_eq!(seconds("90"), Ok(90));
        assert_eq!(seconds("1500ms"), Ok(2));
        assert_eq!(seconds("2h"), Ok(7200));
        assert!(seconds("5x").is_err());
        assert!(seconds("").is_err());
        assert_eq!(bytes("8k"), Ok(8192));
        assert!(bytes("k").is_err());
    }
}
