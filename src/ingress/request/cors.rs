//! CORS for an Ingress with `enable-cors`, with ingress-nginx's defaults: origins `*`,
//! methods `GET, PUT, POST, DELETE, PATCH, OPTIONS`, its fixed header list, credentials
//! on, max-age 1728000 seconds.
//!
//! Behaviour: with `*` in the origin list every response carries the CORS headers with
//! `Access-Control-Allow-Origin: *` (also when credentials are on, as ingress-nginx
//! sends it). With a list, only requests whose `Origin` matches an entry get the headers,
//! with that origin echoed back and `Vary: Origin` added; others pass unchanged. A
//! preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an
//! allowed origin is answered here with 204 and no body; the backend never sees it.
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::{self, Body};

const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
const DEFAULT_MAX_AGE: u32 = 1_728_000;

/// Which origins may read responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    Any,
    List(Vec<OriginPattern>),
}

/// One `scheme://host[:port]` entry; `*.parent` stands for exactly one more label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    wildcard: bool,
    host: String,
    port: Option<u16>,
}

impl OriginPattern {
    fn matches(&self, origin: &str) -> bool {
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(&self.scheme) {
            return false;
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => match parse_port(p) {
                Some(n) => (h, Some(n)),
                None => return false,
            },
            None => (rest, None),
        };
        if port != self.port {
            return false;
        }
        if !self.wildcard {
            return host.eq_ignore_ascii_case(&self.host);
        }
        match host.split_once('.') {
            Some((label, parent)) => {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && parent.eq_ignore_ascii_case(&self.host)
            }
            None => false,
        }
    }
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|n| *n != 0)
}

/// The CORS settings of one Ingress, with every header value built at compile time.
#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: Origins,
    pub credentials: bool,
    methods: HeaderValue,
    headers: HeaderValue,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
}

static ANY: HeaderValue = HeaderValue::from_static("*");
static TRUE: HeaderValue = HeaderValue::from_static("true");

impl Cors {
    /// Fills what is not given with ingress-nginx's defaults.
    pub fn new(
        origins: Option<Origins>,
        methods: Option<HeaderValue>,
        headers: Option<HeaderValue>,
        expose: Option<HeaderValue>,
        credentials: bool,
        max_age: Option<u32>,
    ) -> Self {
        Cors {
            origins: origins.unwrap_or(Origins::Any),
            credentials,
            methods: methods.unwrap_or(HeaderValue::from_static(DEFAULT_METHODS)),
            headers: headers.unwrap_or(HeaderValue::from_static(DEFAULT_HEADERS)),
            expose,
            max_age: HeaderValue::from(max_age.unwrap_or(DEFAULT_MAX_AGE)),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request, `None` when its origin is
    /// not allowed (or it sent none while only listed origins are).
    pub fn allow_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        match &self.origins {
            Origins::Any => Some(ANY.clone()),
            Origins::List(list) => {
                let origin = headers.get(header::ORIGIN)?;
                let text = origin.to_str().ok()?;
                list.iter().any(|p| p.matches(text)).then(|| origin.clone())
            }
        }
    }

    /// Whether the request is a CORS preflight.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The answer to an allowed preflight, before `decorate` adds the CORS headers.
    pub fn preflight() -> Response<Body> {
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            header::SERVER,
            crate::ingress::request::respond::SERVER_NAME.clone(),
        );
        resp
    }

    /// Sets the CORS headers on a response; `allow` is what `allow_origin` returned.
    pub fn decorate(&self, h: &mut HeaderMap, allow: HeaderValue) {
        let echoed = allow != ANY;
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        if self.credentials {
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        if let Some(expose) = &self.expose {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        // The answer depends on the Origin: shared caches must not hand it to another.
        if echoed {
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

/// `cors-allow-origin`: `*`, or comma-separated `scheme://host[:port]` entries where the
/// host may start with `*.`. `*` anywhere, or nothing at all, allows every origin (as in
/// ingress-nginx).
pub fn parse_origins(v: &str) -> Result<Origins, String> {
    let mut list = Vec::new();
    let mut any = false;
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "*" {
            any = true;
            continue;
        }
        list.push(parse_origin(item).ok_or_else(|| {
            format!("{item:?} is not an origin (scheme://host or scheme://host:port, host may start with *.)")
        })?);
    }
    if any || list.is_empty() {
        return Ok(Origins::Any);
    }
    Ok(Origins::List(list))
}

fn parse_origin(item: &str) -> Option<OriginPattern> {
    let (scheme, rest) = item.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (rest, None),
    };
    let (wildcard, host) = match host.strip_prefix("*.") {
        Some(parent) => (true, parent),
        None => (false, host),
    };
    if !super::edge::is_dns_name(host) {
        return None;
    }
    Some(OriginPattern {
        scheme: scheme.to_ascii_lowercase(),
        wildcard,
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// A comma-separated list whose items consist of the allowed bytes; kept as written.
fn token_list(v: &str, what: &str, ok: impl Fn(u8) -> bool) -> Result<HeaderValue, String> {
    let items: Vec<&str> = v.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty() || !i.bytes().all(&ok)) {
        return Err(format!("expected a comma-separated list of {what}"));
    }
    HeaderValue::from_str(v).map_err(|_| format!("expected a comma-separated list of {what}"))
}

/// `cors-allow-methods`: letters only.
pub fn parse_methods(v: &str) -> Result<HeaderValue, String> {
    token_list(v, "method names (letters)", |b| b.is_ascii_alphabetic())
}

/// `cors-allow-headers`: letters, digits, `_` and `-`.
pub fn parse_allow_headers(v: &str) -> Result<HeaderValue, String> {
    token_list(v, "header names", |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
    })
}

/// `cors-expose-headers`: as headers, plus `*`.
pub fn parse_expose_headers(v: &str) -> Result<HeaderValue, String> {
    token_list(v, "header names or *", |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'*')
    })
}

/// `cors-max-age`: seconds.
pub fn parse_max_age(v: &str) -> Result<u32, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a number of seconds".into());
    }
    v.parse::<u32>()
        .map_err(|_| "expected a number of seconds".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(v).unwrap());
        h
    }

    fn list(v: &str) -> Cors {
        Cors::new(
            Some(parse_origins(v).unwrap()),
            None,
            None,
            None,
            true,
            None,
        )
    }

    #[test]
    fn star_and_blank_allow_everyone() {
        for v in ["*", "  ", "*, https://foo.bar.com"] {
            let c = Cors::new(
                Some(parse_origins(v).unwrap()),
                None,
                None,
                None,
                true,
                None,
            );
            assert_eq!(c.origins, Origins::Any, "{v:?}");
            assert_eq!(c.allow_origin(&HeaderMap::new()).unwrap(), "*");
            assert_eq!(c.allow_origin(&origin("http://x.example")).unwrap(), "*");
        }
    }

    #[test]
    fn listed_origins_are_echoed() {
        let c = list("https://origin.cors.com:8080, http://*.origin.com:8080, http://plain.com");
        let allowed = [
            "https://origin.cors.com:8080",
            "HTTPS://Origin.Cors.com:8080",
            "http://abc.origin.com:8080",
            "http://bar-foo.origin.com:8080",
            "http://plain.com",
        ];
        for o in allowed {
            assert_eq!(c.allow_origin(&origin(o)).unwrap(), o, "{o}");
        }
        let refused = [
            "http://origin.cors.com:8080",
            "https://origin.cors.com",
            "http://abc.origin.com",
            "http://origin.com:8080",
            "http://a.b.origin.com:8080",
            "http://plain.com:80",
            "http://plain.com.evil.com",
            "null",
        ];
        for o in refused {
            assert!(c.allow_origin(&origin(o)).is_none(), "{o}");
        }
        assert!(c.allow_origin(&HeaderMap::new()).is_none());
    }

    #[test]
    fn headers_and_defaults() {
        let c = Cors::new(
            None,
            Some(parse_methods("POST, GET").unwrap()),
            None,
            Some(parse_expose_headers("*, X-Custom").unwrap()),
            false,
            Some(parse_max_age("200").unwrap()),
        );
        let mut h = HeaderMap::new();
        c.decorate(&mut h, HeaderValue::from_static("*"));
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(!h.contains_key("access-control-allow-credentials"));
        assert_eq!(h["access-control-allow-methods"], "POST, GET");
        assert_eq!(h["access-control-allow-headers"], DEFAULT_HEADERS);
        assert_eq!(h["access-control-expose-headers"], "*, X-Custom");
        assert_eq!(h["access-control-max-age"], "200");
        assert!(!h.contains_key("vary"));

        let c = Cors::new(None, None, None, None, true, None);
        let mut h = HeaderMap::new();
        c.decorate(&mut h, HeaderValue::from_static("https://a.example"));
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-methods"], DEFAULT_METHODS);
        assert_eq!(h["access-control-max-age"], "1728000");
        assert_eq!(h["vary"], "Origin");
        assert!(!h.contains_key("access-control-expose-headers"));
    }

    #[test]
    fn bad_values() {
        for v in [
            "origin.cors.com",
            "https://",
            "https://a.example/path",
            "https://a.example:0",
            "https://a.example:99999",
            "https://*.*.example.com",
            "https://*",
            "1http://a.example",
        ] {
            assert!(parse_origins(v).is_err(), "{v}");
        }
        assert!(parse_methods("GET,,POST").is_err());
        assert!(parse_methods("GET;").is_err());
        assert!(parse_allow_headers("X-A, *").is_err());
        assert!(parse_expose_headers("X-A, *").is_ok());
        assert!(parse_max_age("1.5").is_err());
    }

    #[test]
    fn preflight_detection() {
        let mut h = origin("https://a.example");
        assert!(!Cors::is_preflight(&Method::OPTIONS, &h));
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        assert!(Cors::is_preflight(&Method::OPTIONS, &h));
        assert!(!Cors::is_preflight(&Method::GET, &h));
        let r = Cors::preflight();
        assert_eq!(r.status(), 204);
    }
}
