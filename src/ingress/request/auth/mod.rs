//! Authentication in front of an Ingress's routes, as ingress-nginx's annotations ask for
//! it: basic auth against a Secret (`auth-type: basic`), an external auth service
//! (`auth-url`), and `satisfy` to combine either with the source allowlist.
//!
//! `parse` turns the annotations into an [`Auth`] (pure, so admission shares it); compile
//! fills in the users from the Secret (`resolve`) and the subrequest headers from the
//! `auth-proxy-set-headers` ConfigMap (`proxy_headers`); the proxy calls [`authorize`] once per
//! request on routes that have an `Auth`, and routes without one never reach this module.
//!
//! Failure behaviour: fail closed. A missing Secret answers 503, an unusable one 500, a
//! missing or unusable `auth-proxy-set-headers` ConfigMap 500, an unreachable or
//! misbehaving auth service 500; none ever lets a request through.
mod annotations;
pub mod basic;
pub mod cache;
pub mod external;
pub mod htpasswd;
mod md5_crypt;
mod metrics;
pub mod proxy_headers;
pub mod resolve;
pub mod template;

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, Response};
use ipnet::IpNet;

pub(crate) use self::annotations::parse;
use crate::body::Body;

/// What the auth annotations of one Ingress ask for.
#[derive(Debug)]
pub struct Auth {
    /// `satisfy: any`: a client inside the allowlist skips authentication, one outside it
    /// may still authenticate (instead of getting 403).
    pub satisfy_any: bool,
    pub basic: Option<basic::Basic>,
    pub external: Option<external::External>,
}

/// The request facts authorization needs.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub client: IpAddr,
    pub scheme: &'a str,
    /// Host without port, lower case.
    pub hostname: &'a str,
    /// The Host header as sent (port included).
    pub host: &'a str,
    pub method: &'a http::Method,
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
}

impl Head<'_> {
    fn vars(&self) -> template::Vars<'_> {
        template::Vars {
            scheme: self.scheme,
            host: self.hostname,
            http_host: self.host,
            method: self.method.as_str(),
            path_and_query: self.path_and_query,
            remote_addr: self.client,
            headers: self.headers,
        }
    }
}

/// How authorization ended.
#[derive(Debug)]
pub enum Verdict {
    /// Let the request through, with what the auth service handed on (if anything).
    Pass(Option<Arc<Granted>>),
    /// Answer the client with this instead.
    Answer(Response<Body>),
}

/// What a 2xx from the auth service hands on.
#[derive(Debug, Default)]
pub struct Granted {
    /// `auth-response-headers` for the upstream request.
    pub upstream: HeaderMap,
    /// The service's `Set-Cookie` values, for the client's response.
    pub cookies: Vec<http::HeaderValue>,
    /// `auth-always-set-cookie`: add them whatever the status, not only on success.
    pub always_set_cookie: bool,
}

impl Granted {
    /// Adds the auth service's cookies to the response, as nginx's `add_header` does: on
    /// 2xx and redirect statuses, or on all with `auth-always-set-cookie`.
    pub fn set_cookies(&self, status: http::StatusCode, headers: &mut HeaderMap) {
        let ok = matches!(
            status.as_u16(),
            200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
        );
        if ok || self.always_set_cookie {
            for c in &self.cookies {
                headers.append(http::header::SET_COOKIE, c.clone());
            }
        }
    }
}

/// Whether `satisfy: any` lets this client in without authenticating.
pub fn allowlisted(auth: &Auth, allow: &[IpNet], client: IpAddr) -> bool {
    auth.satisfy_any && !allow.is_empty() && allow.iter().any(|n| n.contains(&client))
}

/// The proxy's entry: authenticates a routed request unless `satisfy: any` lets the client
/// in by address (`allow` is the route's allowlist).
pub async fn check(
    auth: &Auth,
    allow: &[IpNet],
    head: &crate::ingress::request::filters::Head<'_>,
    method: &http::Method,
    headers: &HeaderMap,
) -> Verdict {
    if allowlisted(auth, allow, head.client) {
        return Verdict::Pass(None);
    }
    let head = Head {
        client: head.client,
        scheme: head.scheme,
        hostname: head.hostname,
        host: head.host,
        method,
        path_and_query: head.path_and_query,
        headers,
    };
    authorize(auth, &head).await
}

/// Authenticates one request: basic first, then the external service (both must pass).
pub async fn authorize(auth: &Auth, head: &Head<'_>) -> Verdict {
    if let Some(b) = &auth.basic
        && let Some(answer) = b.check(head.headers).await
    {
        return Verdict::Answer(answer);
    }
    match &auth.external {
        Some(e) => e.check(head).await,
        None => Verdict::Pass(None),
    }
}
