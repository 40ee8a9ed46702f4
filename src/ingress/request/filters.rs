//! Per-Ingress checks that may answer a request before any backend is involved, in this
//! order: source deny/allow (403), `app-root` (302 for `/`), HTTPS redirect (308),
//! declared body size (413). Each is a pure function of the request head and the policy.
use std::net::IpAddr;

use http::{Response, StatusCode};

use crate::body::Body;
use crate::ingress::model::policy::Policy;
use crate::ingress::request::respond::{generated, redirect};

/// ACME HTTP-01 challenges must stay reachable over plain HTTP while a certificate is
/// being issued, or the HTTPS redirect would block its own certificate.
const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

/// The request facts the checks need.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Client address after trusted-proxy processing.
    pub client: IpAddr,
    pub scheme: &'a str,
    /// Host as sent by the client (port included).
    pub host: &'a str,
    /// Host without port, lower case.
    pub hostname: &'a str,
    pub path: &'a str,
    pub path_and_query: &'a str,
    /// The host has a TLS section in the snapshot.
    pub host_tls: bool,
    pub content_length: Option<u64>,
    /// The port clients reach HTTPS on, when it is not 443 (a local run on :9443).
    pub https_port: Option<u16>,
}

/// The answer to send instead of proxying, if any.
pub fn check(policy: &Policy, head: &Head<'_>) -> Option<Response<Body>> {
    if policy.deny_source.iter().any(|n| n.contains(&head.client)) {
        return Some(generated(
            StatusCode::FORBIDDEN,
            format!("client address {} is denied", head.client),
        ));
    }
    // With `satisfy: any` a client outside the allowlist may still authenticate.
    if !policy.allow_source.is_empty()
        && !policy.allow_source.iter().any(|n| n.contains(&head.client))
        && !policy.auth.as_ref().is_some_and(|a| a.satisfy_any)
    {
        return Some(generated(
            StatusCode::FORBIDDEN,
            format!("client address {} is not allowed", head.client),
        ));
    }
    if let Some(root) = &policy.app_root
        && head.path == "/"
    {
        let location = format!("{}://{}{}", head.scheme, head.host, root);
        return Some(redirect(StatusCode::FOUND, &location));
    }
    if head.scheme == "http"
        && (policy.force_ssl_redirect || (policy.ssl_redirect && head.host_tls))
        && !head.path.starts_with(ACME_PREFIX)
    {
        let location = match head.https_port.filter(|p| *p != 443) {
            Some(port) => format!("https://{}:{port}{}", head.hostname, head.path_and_query),
            None => format!("https://{}{}", head.hostname, head.path_and_query),
        };
        return Some(redirect(StatusCode::PERMANENT_REDIRECT, &location));
    }
    if let (Some(limit), Some(len)) = (policy.max_body_bytes, head.content_length)
        && len > limit
    {
        return Some(generated(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body of {len} bytes is over the limit of {limit}"),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(path: &'a str, scheme: &'a str) -> Head<'a> {
        Head {
            client: "192.168.1.10".parse().unwrap(),
            scheme,
            host: "Example.com:8080",
            hostname: "example.com",
            path,
            path_and_query: path,
            host_tls: true,
            content_length: Some(10),
            https_port: None,
        }
    }

    #[test]
    fn order_and_outcomes() {
        let mut p = Policy {
            deny_source: vec!["192.168.1.0/24".parse().unwrap()],
            allow_source: vec!["192.168.0.0/16".parse().unwrap()],
            app_root: Some("/app".into()),
            ssl_redirect: true,
            max_body_bytes: Some(5),
            ..Policy::default()
        };
        let status = |p: &Policy, h: &Head| check(p, h).map(|r| r.status().as_u16());
        assert_eq!(status(&p, &head("/", "http")), Some(403));
        p.deny_source.clear();
        let r = check(&p, &head("/", "http")).unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "http://Example.com:8080/app");
        assert_eq!(r.headers()["server"], "portcullis");
        assert_eq!(status(&p, &head("/x?a=1", "http")), Some(308));
        let r = check(&p, &head("/x?a=1", "http")).unwrap();
        assert_eq!(r.headers()["location"], "https://example.com/x?a=1");
        let local = Head {
            https_port: Some(9443),
            ..head("/x?a=1", "http")
        };
        let r = check(&p, &local).unwrap();
        assert_eq!(r.headers()["location"], "https://example.com:9443/x?a=1");
        let standard = Head {
            https_port: Some(443),
            ..head("/x", "http")
        };
        let r = check(&p, &standard).unwrap();
        assert_eq!(r.headers()["location"], "https://example.com/x");
        assert_eq!(
            status(&p, &head("/.well-known/acme-challenge/t", "http")),
            Some(413)
        );
        assert_eq!(status(&p, &head("/x", "https")), Some(413));
        p.max_body_bytes = Some(10);
        assert_eq!(status(&p, &head("/x", "https")), None);
        p.allow_source = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(status(&p, &head("/x", "https")), Some(403));
    }

    #[test]
    fn satisfy_any_defers_the_allowlist_to_auth() {
        use crate::ingress::request::auth::Auth;
        let auth = |satisfy_any| {
            Some(std::sync::Arc::new(Auth {
                satisfy_any,
                basic: None,
                external: None,
            }))
        };
        let mut p = Policy {
            allow_source: vec!["10.0.0.0/8".parse().unwrap()],
            deny_source: vec!["192.168.1.10/32".parse().unwrap()],
            auth: auth(false),
            ..Policy::default()
        };
        let outside = Head {
            client: "172.16.0.1".parse().unwrap(),
            ..head("/x", "https")
        };
        assert_eq!(check(&p, &outside).unwrap().status(), 403);
        p.auth = auth(true);
        assert!(check(&p, &outside).is_none(), "left to auth");
        // The denylist stays absolute.
        assert_eq!(check(&p, &head("/x", "https")).unwrap().status(), 403);
    }

    #[test]
    fn redirect_needs_tls_host_unless_forced() {
        let mut p = Policy {
            ssl_redirect: true,
            ..Policy::default()
        };
        let mut h = head("/x", "http");
        h.host_tls = false;
        assert!(check(&p, &h).is_none());
        p.force_ssl_redirect = true;
        assert_eq!(check(&p, &h).unwrap().status(), 308);
    }
}
