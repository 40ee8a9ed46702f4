//! The auth annotations → [`Auth`]. Every malformed value is an error (the Ingress is then
//! not served as written): an access-control setting is never guessed or dropped.
//!
//! - `auth-type`: `basic` (`digest` is refused: no digest support);
//! - `auth-secret`: `name` or `namespace/name`; `auth-secret-type`: `auth-file` (default)
//!   or `auth-map`; `auth-realm`: text without quotes or backslashes;
//! - `auth-url`: an `http://` or `https://` URL, nginx variables allowed (see `template`);
//!   `auth-method`; `auth-always-set-cookie` (`true`/`false`);
//!   `auth-signin` (URL or path, variables allowed); `auth-signin-redirect-param` (default
//!   `rd`); `auth-response-headers` (comma-separated names); `auth-request-redirect`;
//!   `auth-cache-key` (variables); `auth-cache-duration` (`[status ...] time`, comma
//!   separated; default `200 202 401 5m`);
//! - `auth-proxy-set-headers`: `name` or `namespace/name` of a ConfigMap whose entries are
//!   headers for the subrequest (read at compile time, see `proxy_headers`);
//!   `auth-keepalive*` are accepted with a warning (the auth pool always keeps alive);
//! - `satisfy`: `all` (default) or `any`.
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};

use super::Auth;
use super::basic::{Basic, SecretFormat};
use super::external::{CacheRule, External};
use super::proxy_headers::ProxyHeaders;
use super::template::Template;
use crate::ingress::build::annotations::Parser;
use crate::ingress::build::secret_refs::{parse_config_map_ref, parse_secret_ref};

const MAX_REALM: usize = 256;
const MAX_TEMPLATE: usize = 2048;
/// Basic-auth settings that mean nothing without `auth-type`.
const BASIC_ONLY: [&str; 3] = ["auth-secret", "auth-secret-type", "auth-realm"];
/// External-auth settings that mean nothing without `auth-url`.
const EXTERNAL_ONLY: [&str; 13] = [
    "auth-always-set-cookie",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-timeout",
    "auth-keepalive-share-vars",
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-proxy-set-headers",
];
/// Connection-reuse knobs of nginx's auth upstream: the auth client always keeps
/// connections alive in one shared pool, so they change nothing here.
const KEEPALIVE: [&str; 4] = [
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-timeout",
    "auth-keepalive-share-vars",
];
/// Headers the auth service may not set on the upstream request.
const FORBIDDEN: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
];

/// The auth of one Ingress, or `None` when it asks for none.
pub(crate) fn parse(p: &mut Parser<'_>) -> Option<Arc<Auth>> {
    let basic = basic(p);
    let external = external(p);
    let satisfy_any = p
        .value("satisfy", |v| match v.to_ascii_lowercase().as_str() {
            "any" => Ok(true),
            "all" => Ok(false),
            _ => Err("expected any or all".into()),
        })
        .unwrap_or(false);
    if basic.is_none() && external.is_none() {
        return None;
    }
    Some(Arc::new(Auth {
        satisfy_any,
        basic,
        external,
    }))
}

fn basic(p: &mut Parser<'_>) -> Option<Basic> {
    let Some((type_key, _)) = p.get("auth-type") else {
        for short in BASIC_ONLY {
            if let Some((key, _)) = p.get(short) {
                p.error(key, format!("{key}: needs auth-type: basic"));
            }
        }
        return None;
    };
    p.value("auth-type", |v| match v.to_ascii_lowercase().as_str() {
        "basic" => Ok(()),
        "digest" => Err("digest authentication is not supported; use basic".into()),
        _ => Err("expected basic".into()),
    })?;
    let Some(secret) = p.value("auth-secret", |v| {
        parse_secret_ref(v, "default")?;
        Ok(match v.split_once('/') {
            Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
            None => (None, v.to_string()),
        })
    }) else {
        if p.get("auth-secret").is_none() {
            p.error(type_key, format!("{type_key}: needs auth-secret"));
        }
        return None;
    };
    let format = p
        .value("auth-secret-type", |v| match v {
            "auth-file" => Ok(SecretFormat::AuthFile),
            "auth-map" => Ok(SecretFormat::AuthMap),
            _ => Err("expected auth-file or auth-map".into()),
        })
        .unwrap_or(SecretFormat::AuthFile);
    let realm = p
        .value("auth-realm", |v| {
            let bad =
                v.len() > MAX_REALM || v.chars().any(|c| c == '"' || c == '\\' || c.is_control());
            match bad {
                true => Err("a realm is text without quotes or backslashes".into()),
                false => Ok(v.to_string()),
            }
        })
        .unwrap_or_default();
    match Basic::new(secret.0, secret.1, format, realm) {
        Ok(b) => Some(b),
        Err(e) => {
            if let Some((key, _)) = p.get("auth-realm") {
                p.error(key, format!("{key}: {e}"));
            }
            None
        }
    }
}

fn external(p: &mut Parser<'_>) -> Option<External> {
    if p.get("auth-url").is_none() {
        for short in EXTERNAL_ONLY {
            if let Some((key, _)) = p.get(short) {
                p.warn(key, format!("{key}: ignored without auth-url"));
            }
        }
        return None;
    }
    let url = p.value("auth-url", parse_auth_url);
    let method = p.value("auth-method", |v| {
        let ok = !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphabetic());
        match ok {
            true => {
                Method::from_bytes(v.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string())
            }
            false => Err("expected an HTTP method".into()),
        }
    });
    let signin = p.value("auth-signin", parse_signin);
    let redirect_param = p.value("auth-signin-redirect-param", |v| {
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match ok {
            true => Ok(v.to_string()),
            false => Err("expected a query parameter name".into()),
        }
    });
    let response_headers = p.value("auth-response-headers", parse_header_list);
    let request_redirect = p.value("auth-request-redirect", parse_template);
    // The namespace only matters to compile; any valid one checks the form here.
    let proxy_headers = p.value("auth-proxy-set-headers", |v| {
        parse_config_map_ref(v, "default")?;
        Ok(v.trim().to_string())
    });
    for short in KEEPALIVE {
        if let Some((key, _)) = p.get(short) {
            p.warn(
                key,
                format!("{key}: ignored (auth connections are always pooled and kept alive)"),
            );
        }
    }
    let always_set_cookie = p.value("auth-always-set-cookie", |v| {
        match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("expected true or false".into()),
        }
    });
    let cache_key = p.value("auth-cache-key", parse_template);
    let cache_rules = p.value("auth-cache-duration", parse_cache_duration);
    let mut e = External::new(url?);
    if let Some(m) = method {
        e.method = m;
    }
    e.signin = signin;
    if let Some(r) = redirect_param {
        e.redirect_param = r;
    }
    e.response_headers = response_headers.unwrap_or_default();
    e.request_redirect = request_redirect;
    e.always_set_cookie = always_set_cookie.unwrap_or(false);
    if cache_key.is_some() {
        e.cache_rules = cache_rules.unwrap_or_else(|| {
            vec![CacheRule {
                statuses: vec![200, 202, 401],
                ttl: Duration::from_secs(300),
            }]
        });
    }
    e.cache_key = cache_key;
    if let Some(reference) = proxy_headers {
        e.proxy_headers_ref = Some(reference);
        // Compile fills them in, and shares the cache once the headers are known.
        e.proxy_headers = ProxyHeaders::Unresolved;
    } else {
        e.share_cache();
    }
    Some(e)
}

fn parse_template(v: &str) -> Result<Template, String> {
    if v.is_empty() || v.len() > MAX_TEMPLATE || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("expected printable text without spaces".into());
    }
    Template::parse(v)
}

fn parse_auth_url(v: &str) -> Result<Template, String> {
    let t = parse_template(v)?;
    let sample: http::Uri = t
        .sample()
        .parse()
        .map_err(|_| "not a valid URL".to_string())?;
    match sample.scheme_str() {
        Some("http" | "https") if sample.authority().is_some() => Ok(t),
        _ => Err("expected an http:// or https:// URL".into()),
    }
}

fn parse_signin(v: &str) -> Result<Template, String> {
    let t = parse_template(v)?;
    let sample = t.sample();
    let uri: http::Uri = sample.parse().map_err(|_| "not a valid URL".to_string())?;
    let absolute = matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some();
    let path = sample.starts_with('/') && !sample.starts_with("//");
    if !absolute && !path {
        return Err("expected an http(s) URL or an absolute path".into());
    }
    Ok(t)
}

fn parse_header_list(v: &str) -> Result<Vec<HeaderName>, String> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let name = HeaderName::from_bytes(item.as_bytes())
            .map_err(|_| format!("{item:?} is not a header name"))?;
        if FORBIDDEN.contains(&name.as_str()) {
            return Err(format!("{item} cannot be set from the auth response"));
        }
        out.push(name);
    }
    if out.is_empty() {
        return Err("no header names".into());
    }
    Ok(out)
}

/// nginx `proxy_cache_valid` lines: `[status ...] time`, comma separated.
fn parse_cache_duration(v: &str) -> Result<Vec<CacheRule>, String> {
    let mut rules = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let words: Vec<&str> = entry.split_whitespace().collect();
        let Some((time, statuses)) = words.split_last() else {
            continue;
        };
        let statuses = statuses
            .iter()
            .map(|s| match s.parse::<u16>() {
                Ok(n) if (100..600).contains(&n) => Ok(n),
                _ => Err(format!("{s:?} is not a status code")),
            })
            .collect::<Result<Vec<u16>, String>>()?;
        rules.push(CacheRule {
            statuses,
            ttl: parse_nginx_time(time)?,
        });
    }
    if rules.is_empty() {
        return Err("expected [status ...] time, such as 200 202 401 5m".into());
    }
    Ok(rules)
}

fn parse_nginx_time(v: &str) -> Result<Duration, String> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{v:?} is not a time such as 30s or 5m"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{v:?} is not a time such as 30s or 5m")),
    };
    if secs > 7 * 86400 {
        return Err(format!("{v:?} is longer than a week"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::ingress::build::annotations::parse_annotations;

    fn parse(pairs: &[(&str, &str)]) -> crate::ingress::build::annotations::ParsedAnnotations {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect();
        parse_annotations(&map)
    }

    fn errors(pairs: &[(&str, &str)]) -> Vec<String> {
        parse(pairs).errors.into_iter().map(|n| n.message).collect()
    }

    #[test]
    fn basic_auth_values() {
        let p = parse(&[
            ("auth-type", "basic"),
            ("auth-secret", "other/users"),
            ("auth-secret-type", "auth-map"),
            ("auth-realm", "Staff only"),
            ("satisfy", "any"),
        ]);
        assert!(p.is_ok(), "{:?}", p.errors);
        let auth = p.policy.auth.unwrap();
        assert!(auth.satisfy_any);
        let b = auth.basic.as_ref().unwrap();
        assert_eq!(b.secret_namespace.as_deref(), Some("other"));
        assert_eq!(b.secret_name, "users");
        assert_eq!(b.challenge, "Basic realm=\"Staff only\"");
        assert!(auth.external.is_none());

        assert!(parse(&[]).policy.auth.is_none());
        let e = errors(&[("auth-type", "digest"), ("auth-secret", "s")]);
        assert!(
            e[0].contains("digest authentication is not supported"),
            "{e:?}"
        );
        assert!(!errors(&[("auth-type", "basic")]).is_empty(), "no secret");
        assert!(!errors(&[("auth-secret", "s")]).is_empty(), "no type");
        assert!(!errors(&[("auth-type", "basic"), ("auth-secret", "Bad_Name")]).is_empty());
        let realm = [
            ("auth-type", "basic"),
            ("auth-secret", "s"),
            ("auth-realm", "a\"b"),
        ];
        assert!(!errors(&realm).is_empty());
        let kind = [
            ("auth-type", "basic"),
            ("auth-secret", "s"),
            ("auth-secret-type", "x"),
        ];
        assert!(!errors(&kind).is_empty());
        assert!(!errors(&[("satisfy", "some")]).is_empty());
        // Other auth-* annotations stay refused.
        let cookie = [("auth-url", "http://a/"), ("auth-always-set-cookie", "yes")];
        assert!(!errors(&cookie).is_empty());
        let pooled = parse(&[("auth-url", "http://a/"), ("auth-keepalive", "10")]);
        assert!(
            pooled.is_ok() && pooled.warnings.len() == 1,
            "{:?}",
            pooled.warnings
        );
    }

    #[test]
    fn external_auth_values() {
        let p = parse(&[
            ("auth-url", "http://auth.sso.svc/verify?host=$host"),
            ("auth-method", "post"),
            ("auth-signin", "https://$host/oauth2/start"),
            ("auth-signin-redirect-param", "next"),
            ("auth-response-headers", "X-User, X-Email"),
            ("auth-cache-key", "$http_authorization"),
        ]);
        assert!(p.is_ok(), "{:?}", p.errors);
        let auth = p.policy.auth.unwrap();
        let e = auth.external.as_ref().unwrap();
        assert_eq!(e.method, http::Method::POST);
        assert_eq!(e.redirect_param, "next");
        assert_eq!(e.response_headers.len(), 2);
        assert_eq!(e.cache_rules.len(), 1, "default duration");
        assert_eq!(e.cache_rules[0].statuses, [200, 202, 401]);

        let p = parse(&[
            ("auth-url", "http://a/"),
            ("auth-cache-key", "$host"),
            ("auth-cache-duration", "200 10m, 401 30s"),
        ]);
        let rules = &p
            .policy
            .auth
            .unwrap()
            .external
            .as_ref()
            .unwrap()
            .cache_rules
            .clone();
        assert_eq!(rules[1].ttl.as_secs(), 30);

        assert!(errors(&[("auth-url", "https://$host/oauth2/auth")]).is_empty());
        assert!(!errors(&[("auth-url", "ftp://auth/")]).is_empty());
        assert!(!errors(&[("auth-url", "http://auth/$upstream_addr")]).is_empty());
        assert!(!errors(&[("auth-url", "http://a/"), ("auth-method", "G T")]).is_empty());
        assert!(!errors(&[("auth-url", "http://a/"), ("auth-signin", "x y")]).is_empty());
        let hop = [("auth-url", "http://a/"), ("auth-response-headers", "Host")];
        assert!(!errors(&hop).is_empty());
        let cfg = parse(&[
            ("auth-url", "http://a/"),
            ("auth-proxy-set-headers", "ns/cm"),
        ]);
        assert!(cfg.is_ok(), "{:?}", cfg.errors);
        let auth = cfg.policy.auth.unwrap();
        let e = auth.external.as_ref().unwrap();
        assert_eq!(e.proxy_headers_ref.as_deref(), Some("ns/cm"));
        assert!(
            e.proxy_headers.refuses(),
            "unresolved until compile reads it"
        );
        let bad = [
            ("auth-url", "http://a/"),
            ("auth-proxy-set-headers", "a/b/c"),
        ];
        assert!(
            errors(&bad)[0].contains("not a valid ConfigMap name"),
            "{:?}",
            errors(&bad)
        );
        let dur = [("auth-url", "http://a/"), ("auth-cache-duration", "200 5x")];
        assert!(!errors(&dur).is_empty());
        let lone = parse(&[("auth-signin", "https://x/")]);
        assert!(lone.is_ok() && lone.policy.auth.is_none() && !lone.warnings.is_empty());
    }
}
