//! `upstream-hash-by`: an nginx-style key template (`$request_uri`, `$host$uri`,
//! `${cookie_user}-x`, …) compiled once when the snapshot is built and evaluated per
//! request straight into the ring hash, without building the key as a string.
//!
//! Variables: `request_uri` (path and query as sent), `uri` / `document_uri` (the path),
//! `args` / `query_string`, `host` (lower case, no port), `remote_addr` /
//! `binary_remote_addr` (the client address after trusted-proxy processing), `scheme`,
//! `request_method`, `http_NAME` (a request header, `_` read as `-`), `cookie_NAME` and
//! `arg_NAME` (a query parameter, name compared without case, value as sent). A variable
//! with no value contributes nothing, as in nginx. Anything else is refused when parsed,
//! so a typo cannot silently send every request to one pod.
use std::fmt::Write as _;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Method};

use crate::ingress::request::affinity::request_cookie;
use crate::ingress::request::hash_ring::StableHasher;

const MAX_TEMPLATE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    RequestUri,
    Uri,
    Args,
    Host,
    RemoteAddr,
    BinaryRemoteAddr,
    Scheme,
    Method,
    Header(HeaderName),
    Cookie(String),
    Arg(String),
}

/// A compiled `upstream-hash-by` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashBy {
    parts: Vec<Part>,
}

/// The request facts a template can read.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub client: IpAddr,
    pub scheme: &'a str,
    pub method: &'a Method,
    /// Host without port, lower case.
    pub hostname: &'a str,
    pub path: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
}

impl HashBy {
    pub fn parse(v: &str) -> Result<Self, String> {
        if v.is_empty() || v.len() > MAX_TEMPLATE {
            return Err(format!(
                "expected a template of 1 to {MAX_TEMPLATE} characters"
            ));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = v;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, tail) = crate::ingress::request::nginx_vars::split_variable(after)?;
            if name.is_empty() {
                return Err("a $ must be followed by a variable name".into());
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(variable(name)?);
            rest = tail;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(HashBy { parts })
    }

    /// The ring key of a request.
    pub fn key(&self, r: &RequestView<'_>) -> u64 {
        let mut h = StableHasher::default();
        for part in &self.parts {
            match part {
                Part::Literal(s) => h.write(s.as_bytes()),
                Part::RequestUri => h.write(r.path_and_query.as_bytes()),
                Part::Uri => h.write(r.path.as_bytes()),
                Part::Args => h.write(query(r).as_bytes()),
                Part::Host => h.write(r.hostname.as_bytes()),
                Part::RemoteAddr => {
                    let _ = write!(h, "{}", r.client);
                }
                Part::BinaryRemoteAddr => match r.client {
                    IpAddr::V4(a) => h.write(&a.octets()),
                    IpAddr::V6(a) => h.write(&a.octets()),
                },
                Part::Scheme => h.write(r.scheme.as_bytes()),
                Part::Method => h.write(r.method.as_str().as_bytes()),
                Part::Header(name) => {
                    if let Some(v) = r.headers.get(name) {
                        h.write(v.as_bytes());
                    }
                }
                Part::Cookie(name) => {
                    if let Some(v) = request_cookie(r.headers, name) {
                        h.write(v.as_bytes());
                    }
                }
                Part::Arg(name) => {
                    if let Some(v) = arg(query(r), name) {
                        h.write(v.as_bytes());
                    }
                }
            }
        }
        h.finish()
    }
}

fn query<'a>(r: &RequestView<'a>) -> &'a str {
    r.path_and_query.split_once('?').map_or("", |(_, q)| q)
}

/// The raw value of query parameter `name` (first occurrence).
fn arg<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn variable(name: &str) -> Result<Part, String> {
    let part = match name {
        "request_uri" => Part::RequestUri,
        "uri" | "document_uri" => Part::Uri,
        "args" | "query_string" => Part::Args,
        "host" => Part::Host,
        "remote_addr" => Part::RemoteAddr,
        "binary_remote_addr" => Part::BinaryRemoteAddr,
        "scheme" => Part::Scheme,
        "request_method" => Part::Method,
        _ => {
            if let Some(h) = name.strip_prefix("http_") {
                let header = h.replace('_', "-").to_ascii_lowercase();
                let header = HeaderName::try_from(header)
                    .map_err(|_| format!("${name}: not a header name"))?;
                Part::Header(header)
            } else if let Some(c) = name.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                Part::Cookie(c.to_string())
            } else if let Some(a) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                Part::Arg(a.to_string())
            } else {
                return Err(format!(
                    "${name} is not supported (use request_uri, uri, args, host, remote_addr, \
                     scheme, request_method, http_*, cookie_* or arg_*)"
                ));
            }
        }
    };
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::request::hash_ring::stable_hash;

    fn view<'a>(headers: &'a HeaderMap, pq: &'a str) -> RequestView<'a> {
        RequestView {
            client: "10.0.0.9".parse().unwrap(),
            scheme: "https",
            method: &Method::GET,
            hostname: "shop.example.com",
            path: pq.split('?').next().unwrap_or(pq),
            path_and_query: pq,
            headers,
        }
    }

    #[test]
    fn templates_hash_what_nginx_would_build() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user-id", "u7".parse().unwrap());
        headers.insert("cookie", "sid=abc; other=1".parse().unwrap());
        let r = view(&headers, "/cart?item=5&Lang=de");
        let cases = [
            ("$request_uri", "/cart?item=5&Lang=de"),
            ("$host$request_uri", "shop.example.com/cart?item=5&Lang=de"),
            (
                "${request_uri}-text-value",
                "/cart?item=5&Lang=de-text-value",
            ),
            ("$uri", "/cart"),
            ("$args", "item=5&Lang=de"),
            ("$remote_addr", "10.0.0.9"),
            ("$http_x_user_id", "u7"),
            ("$cookie_sid|$arg_lang", "abc|de"),
            ("$http_missing$scheme", "https"),
            ("$request_method:fixed", "GET:fixed"),
        ];
        for (template, key) in cases {
            let t = HashBy::parse(template).unwrap();
            assert_eq!(t.key(&r), stable_hash(key.as_bytes()), "{template}");
        }
        let bin = HashBy::parse("$binary_remote_addr").unwrap();
        assert_eq!(bin.key(&r), stable_hash(&[10, 0, 0, 9]));
    }

    #[test]
    fn malformed_templates() {
        for bad in [
            "",
            "$",
            "${request_uri",
            "$nonsense",
            "${http_bad header}",
            "${}",
            "$cookie_",
        ] {
            assert!(HashBy::parse(bad).is_err(), "{bad:?}");
        }
        // Unbraced, a name ends at the first other character: a variable, then a literal.
        assert!(HashBy::parse("$http_x y").is_ok());
    }
}
