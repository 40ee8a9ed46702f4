//! Field checks the API server applies to Ingresses (kubernetes
//! `pkg/apis/networking/validation`), repeated here because a manifests directory never
//! went through an API server. Pure; the admission webhook can reuse them.
use std::net::IpAddr;

use crate::ingress::model::snapshot::PathType;

/// Sequences an Exact or Prefix path may not contain.
const BAD_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
/// Endings an Exact or Prefix path may not have.
const BAD_SUFFIXES: &[&str] = &["/..", "/."];

/// `spec.rules[].http.paths[].pathType`.
pub fn path_type(raw: &str) -> Result<PathType, String> {
    match raw {
        "Exact" => Ok(PathType::Exact),
        "Prefix" => Ok(PathType::Prefix),
        "ImplementationSpecific" => Ok(PathType::ImplementationSpecific),
        other => Err(format!(
            "pathType {other:?} is not Exact, Prefix or ImplementationSpecific"
        )),
    }
}

/// Checks a rule path and returns it (`/` for an ImplementationSpecific path left empty).
pub fn path(path_type: PathType, path: Option<&str>) -> Result<String, String> {
    let p = path.unwrap_or("");
    if p.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("path {p:?} contains spaces or control characters"));
    }
    if path_type == PathType::ImplementationSpecific {
        if p.is_empty() {
            return Ok("/".to_string());
        }
        if !p.starts_with('/') {
            return Err(format!("path {p:?} must start with /"));
        }
        return Ok(p.to_string());
    }
    if !p.starts_with('/') {
        return Err(format!("path {p:?} must be an absolute path"));
    }
    if let Some(seq) = BAD_SEQUENCES.iter().find(|s| p.contains(*s)) {
        return Err(format!("path {p:?} must not contain {seq:?}"));
    }
    if let Some(suffix) = BAD_SUFFIXES.iter().find(|s| p.ends_with(*s)) {
        return Err(format!("path {p:?} must not end with {suffix:?}"));
    }
    // Requests are matched on their normalised path, so the rule is stored in the same
    // form (`/%61dmin` is `/admin`, `/{id}` is `/%7Bid%7D`); in any other spelling it could
    // never match. A path no request could have (`..` above the root, NUL) is refused.
    match crate::ingress::request::normalize::normalize_path(p) {
        Ok(n) => Ok(n.into_owned()),
        Err(e) => Err(format!("path {p:?} is not a valid request path: {e}")),
    }
}

/// A rule or TLS host: a lower-case DNS-1123 subdomain, or `*.` and one; never an IP.
pub fn host(h: &str) -> Result<(), String> {
    if h.parse::<IpAddr>().is_ok() {
        return Err(format!("host {h:?} must be a DNS name, not an IP address"));
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    if name.contains('*') {
        return Err(format!(
            "host {h:?}: a wildcard must be `*.` followed by a DNS name"
        ));
    }
    if !is_dns_subdomain(name) {
        return Err(format!(
            "host {h:?} is not a lower-case DNS name (RFC 1123 subdomain)"
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain as Kubernetes defines it: lower case, labels of
/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` joined by dots, at most 253 characters.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_paths_are_kept_in_the_form_requests_are_matched_in() {
        assert_eq!(
            path(PathType::Prefix, Some("/admin")),
            Ok("/admin".to_string())
        );
        assert_eq!(
            path(PathType::Exact, Some("/a/b/")),
            Ok("/a/b/".to_string())
        );
        assert_eq!(
            path(PathType::Prefix, Some("/%61dmin")),
            Ok("/admin".to_string())
        );
        assert_eq!(
            path(PathType::Exact, Some("/{odd}")),
            Ok("/%7Bodd%7D".to_string())
        );
        assert!(path(PathType::Prefix, Some("/a/../..")).is_err());
        assert!(path(PathType::Prefix, Some("/a/%00")).is_err());
        // Regex paths are matched as written.
        assert!(path(PathType::ImplementationSpecific, Some("/a/(.*)")).is_ok());
    }

    #[test]
    fn paths_per_api_validation() {
        use PathType::*;
        for ok in ["/", "/foo", "/foo/", "/a.b/c", "/~user", "/foo/..bar"] {
            assert!(path(Prefix, Some(ok)).is_ok(), "{ok}");
            assert!(path(Exact, Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "", "foo", "//", "/a//b", "/a/./b", "/a/../b", "/a%2fb", "/a%2Fb", "/a/..", "/a/.",
            "/a b", "/a\tb",
        ] {
            assert!(path(Prefix, Some(bad)).is_err(), "{bad:?}");
        }
        assert!(path(Exact, None).is_err());
        assert_eq!(path(ImplementationSpecific, None).unwrap(), "/");
        assert!(path(ImplementationSpecific, Some("/a//(.*)")).is_ok());
        assert!(path(ImplementationSpecific, Some("a")).is_err());
        assert!(path_type("prefix").is_err());
    }

    #[test]
    fn hosts_per_api_validation() {
        for ok in ["foo.bar.com", "*.foo.com", "a", "x-1.example"] {
            assert!(host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "*",
            "*.",
            "foo.*.com",
            "a*.foo.com",
            "Foo.com",
            "1.2.3.4",
            "::1",
            "foo.com.",
            "-a.com",
            "a_b.com",
            "foo.com:80",
            "",
        ] {
            assert!(host(bad).is_err(), "{bad:?}");
        }
    }
}
