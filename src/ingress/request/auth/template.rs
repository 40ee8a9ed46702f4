//! The nginx variables ingress-nginx users put in `auth-url`, `auth-signin`,
//! `auth-request-redirect` and `auth-cache-key`, parsed once into literal and variable parts
//! and expanded per request from the request head. Only the variables listed in [`Var`]
//! are known; any other `$name` refuses the annotation, so nothing is silently left as text.
use std::fmt::Write as _;

use http::HeaderMap;

/// One supported variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `$host`: host name without port, lower case.
    Host,
    /// `$http_host`: the Host header as sent.
    HttpHost,
    /// `$scheme`: `http` or `https`.
    Scheme,
    /// `$request_uri`: path and query as sent.
    RequestUri,
    /// `$escaped_request_uri`: the same, percent-encoded as a query value.
    EscapedRequestUri,
    /// `$uri`: the path.
    Uri,
    /// `$args` / `$query_string`: the query without `?`.
    Args,
    /// `$request_method`.
    Method,
    /// `$remote_addr`: the client address.
    RemoteAddr,
    /// `$http_<name>`: a request header (`_` for `-`).
    Header(http::HeaderName),
    /// `$cookie_<name>`: one cookie's value.
    Cookie(String),
    /// `$remote_user`: the user name of a Basic Authorization header.
    RemoteUser,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A string with nginx variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The request facts variables expand to.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub http_host: &'a str,
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub remote_addr: std::net::IpAddr,
    pub headers: &'a HeaderMap,
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(at) = rest.find('$') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, tail) = crate::ingress::request::nginx_vars::split_variable(after)?;
            if name.is_empty() {
                return Err("a $ that starts no variable".into());
            }
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Var(var(name)?));
            rest = tail;
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The text with a placeholder for each variable (to check a URL's shape at parse time).
    pub fn sample(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(_) => out.push('x'),
            }
        }
        out
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Text(t) if t.contains(needle)))
    }

    pub fn expand(&self, v: &Vars<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(var) => expand_var(&mut out, var, v),
            }
        }
        out
    }
}

fn var(name: &str) -> Result<Var, String> {
    Ok(match name {
        "host" => Var::Host,
        "http_host" => Var::HttpHost,
        "scheme" | "pass_access_scheme" => Var::Scheme,
        "request_uri" => Var::RequestUri,
        "escaped_request_uri" => Var::EscapedRequestUri,
        "uri" => Var::Uri,
        "args" | "query_string" => Var::Args,
        "request_method" => Var::Method,
        "remote_addr" => Var::RemoteAddr,
        "remote_user" => Var::RemoteUser,
        _ => {
            if let Some(h) = name.strip_prefix("http_") {
                let header = http::HeaderName::from_bytes(h.replace('_', "-").as_bytes())
                    .map_err(|_| format!("${name} is not a valid header variable"))?;
                Var::Header(header)
            } else if let Some(c) = name.strip_prefix("cookie_") {
                Var::Cookie(c.to_string())
            } else {
                return Err(format!("nginx variable ${name} is not supported"));
            }
        }
    })
}

fn expand_var(out: &mut String, var: &Var, v: &Vars<'_>) {
    let (path, query) = match v.path_and_query.split_once('?') {
        Some((p, q)) => (p, q),
        None => (v.path_and_query, ""),
    };
    match var {
        Var::Host => out.push_str(v.host),
        Var::HttpHost => out.push_str(v.http_host),
        Var::Scheme => out.push_str(v.scheme),
        Var::RequestUri => out.push_str(v.path_and_query),
        Var::EscapedRequestUri => escape_into(out, v.path_and_query),
        Var::Uri => out.push_str(path),
        Var::Args => out.push_str(query),
        Var::Method => out.push_str(v.method),
        Var::RemoteAddr => {
            let _ = write!(out, "{}", v.remote_addr);
        }
        Var::Header(name) => {
            let values: Vec<&str> = v
                .headers
                .get_all(name)
                .iter()
                .filter_map(|h| h.to_str().ok())
                .collect();
            out.push_str(&values.join(", "));
        }
        Var::Cookie(name) => {
            if let Some(value) = cookie(v.headers, name) {
                out.push_str(value);
            }
        }
        Var::RemoteUser => {
            if let Some(user) = super::basic::credentials(v.headers).map(|(u, _)| u) {
                out.push_str(&user);
            }
        }
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Percent-encodes everything but unreserved characters (RFC 3986), so the result is safe
/// as one query value.
pub fn escape_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_expands_the_common_variables() {
        let mut headers = HeaderMap::new();
        headers.insert("x-token", "t1".parse().unwrap());
        headers.insert("cookie", "a=1; session=s3".parse().unwrap());
        let v = Vars {
            scheme: "https",
            host: "shop.test",
            http_host: "Shop.test:8443",
            method: "POST",
            path_and_query: "/a b?x=1&y=2",
            remote_addr: "10.1.2.3".parse().unwrap(),
            headers: &headers,
        };
        let t = Template::parse(
            "http://auth/$host/${uri}?rd=$scheme://$http_host$escaped_request_uri&q=$args",
        )
        .unwrap();
        assert_eq!(
            t.expand(&v),
            "http://auth/shop.test//a b?rd=https://Shop.test:8443%2Fa%20b%3Fx%3D1%26y%3D2&q=x=1&y=2"
        );
        let key =
            Template::parse("$http_x_token:$cookie_session:$remote_addr:$request_method").unwrap();
        assert_eq!(key.expand(&v), "t1:s3:10.1.2.3:POST");
        assert!(Template::parse("http://auth/verify").unwrap().is_literal());
        assert!(Template::parse("$upstream_addr").is_err());
        assert!(Template::parse("${host").is_err());
        assert!(Template::parse("a$").is_err());
    }
}
