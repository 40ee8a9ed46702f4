//! The "edge" annotations of ingress-nginx: CORS, fixed redirects (`permanent-redirect`,
//! `temporal-redirect`), `from-to-www-redirect`, `server-alias`, and custom error pages
//! (`custom-http-errors` with `default-backend`). Parsed once per Ingress into one
//! `EdgePolicy`; an Ingress that sets none of them gets `None`, so its requests pay a
//! single `Option` check.
//!
//! Failure behaviour: a malformed value is an error naming its annotation (compile then
//! refuses the Ingress and admission denies it), never a silent fallback to a default as
//! ingress-nginx does, because a mistyped origin list or redirect target would otherwise
//! serve something else than what was asked for.
use std::sync::Arc;

use http::header;
use http::{HeaderValue, Response, StatusCode};

use super::cors::{self, Cors};
use super::respond::{generated, redirect};
use crate::body::Body;
use crate::ingress::build::annotations::Note;
use crate::ingress::model::snapshot::Backend;

/// The controller-wide error pages (`proxy.defaultBackend`, `proxy.customHttpErrors`):
/// what an Ingress without its own `default-backend` / `custom-http-errors` gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDefaults {
    /// `namespace`, `service`, `port`.
    pub backend: Option<(String, String, crate::ingress::build::backends::PortRef)>,
    /// Sorted status codes.
    pub codes: Vec<u16>,
}

impl ErrorDefaults {
    /// From the settings' `namespace/name:port` and code list.
    pub fn from_settings(backend: Option<&str>, codes: &[u16]) -> Result<Self, String> {
        let backend = match backend.map(str::trim).filter(|b| !b.is_empty()) {
            None => None,
            Some(b) => Some(parse_service_ref(b)?),
        };
        let mut codes = codes.to_vec();
        if let Some(c) = codes.iter().find(|c| !(400..=599).contains(*c)) {
            return Err(format!(
                "customHttpErrors: {c} is not an error status code (400 to 599)"
            ));
        }
        codes.sort_unstable();
        codes.dedup();
        Ok(ErrorDefaults { backend, codes })
    }
}

/// `namespace/name:port`, the port a number or a port name.
fn parse_service_ref(
    v: &str,
) -> Result<(String, String, crate::ingress::build::backends::PortRef), String> {
    let bad = || format!("defaultBackend: expected namespace/service:port, got {v:?}");
    let (ns, rest) = v.split_once('/').ok_or_else(bad)?;
    let (name, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let ns = parse_service_name(ns).map_err(|_| bad())?;
    let name = parse_service_name(name).map_err(|_| bad())?;
    let port = match port.parse::<i32>() {
        Ok(n) if (1..=65535).contains(&n) => crate::ingress::build::backends::PortRef::Number(n),
        Ok(_) => return Err(bad()),
        Err(_) => crate::ingress::build::backends::PortRef::Name(
            parse_service_name(port).map_err(|_| bad())?,
        ),
    };
    Ok((ns, name, port))
}

/// What the edge annotations of one Ingress ask for.
#[derive(Debug, Default, Clone)]
pub struct EdgePolicy {
    pub cors: Option<Cors>,
    /// `permanent-redirect` / `temporal-redirect`: every request answered with this.
    pub redirect: Option<FixedRedirect>,
    /// `from-to-www-redirect`: compile adds the `www.` twin (or the bare name) of each host.
    pub from_to_www: bool,
    /// Set by compile on the route of such a twin: 308 to this host, same scheme and URI.
    pub www_target: Option<Arc<str>>,
    /// `server-alias`: more host names served by the same rules (lower case).
    pub aliases: Vec<String>,
    /// `custom-http-errors`, sorted; compile replaces them by the controller-wide list when
    /// the annotation is absent.
    pub error_codes: Vec<u16>,
    /// `default-backend`: a Service name in the Ingress's namespace.
    pub default_backend: Option<String>,
    /// Resolved by compile (annotation, else the controller-wide default backend): serves
    /// the error pages, and the requests of a route whose Service has no ready endpoint.
    pub error_backend: Option<Arc<Backend>>,
}

/// A redirect to a fixed URL instead of proxying.
#[derive(Debug, Clone)]
pub struct FixedRedirect {
    pub status: StatusCode,
    pub location: HeaderValue,
}

impl EdgePolicy {
    /// CORS for a request: the settings and the `Access-Control-Allow-Origin` to send,
    /// `None` when CORS is off or the request's origin is not allowed.
    pub(crate) fn cors_for(&self, headers: &http::HeaderMap) -> Option<(&Cors, HeaderValue)> {
        let cors = self.cors.as_ref()?;
        Some((cors, cors.allow_origin(headers)?))
    }

    /// A redirect that replaces proxying: the fixed one, else the www twin's. `port` is
    /// the one the request's Host named, `path_and_query` its URI.
    pub(crate) fn redirect_for(
        &self,
        scheme: &str,
        port: Option<u16>,
        path_and_query: &str,
    ) -> Option<Response<Body>> {
        if let Some(r) = &self.redirect {
            let mut resp = generated(r.status, "redirecting");
            resp.headers_mut()
                .insert(header::LOCATION, r.location.clone());
            return Some(resp);
        }
        let target = self.www_target.as_deref()?;
        // The port the client named stays: the twin is served on the same listeners.
        let location = match port {
            Some(p) => format!("{scheme}://{target}:{p}{path_and_query}"),
            None => format!("{scheme}://{target}{path_and_query}"),
        };
        Some(redirect(StatusCode::PERMANENT_REDIRECT, &location))
    }

    /// The backend to use instead of `backend` when it has no endpoint to take the
    /// request and an error backend is known (ingress-nginx's `default-backend`).
    pub fn fallback<'a>(&'a self, backend: &'a Arc<Backend>) -> &'a Arc<Backend> {
        match &self.error_backend {
            Some(fallback)
                if backend.external.is_none() && backend.endpoints.load().eligible.is_empty() =>
            {
                fallback
            }
            _ => backend,
        }
    }

    /// The error backend when `status` is one of the codes to intercept.
    pub(crate) fn intercepts(&self, status: StatusCode) -> Option<&Arc<Backend>> {
        let backend = self.error_backend.as_ref()?;
        self.error_codes
            .binary_search(&status.as_u16())
            .is_ok()
            .then_some(backend)
    }
}

/// Reads one annotation value at a time, collecting errors.
struct Reader<G> {
    get: G,
    errors: Vec<Note>,
}

impl<'a, G: Fn(&str) -> Option<(&'a str, &'a str)>> Reader<G> {
    fn value<T>(&mut self, short: &str, f: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let (key, raw) = (self.get)(short)?;
        match f(raw.trim()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(Note {
                    key: Some(key.to_string()),
                    message: format!("{key}: {e} (value {raw:?})"),
                });
                None
            }
        }
    }
}

/// Parses the edge annotations; `get` looks a short name up under the preferred prefix
/// (`(full key, value)`). `None` when none of them asks for anything.
pub fn parse<'a>(
    get: impl Fn(&str) -> Option<(&'a str, &'a str)>,
) -> (Option<Arc<EdgePolicy>>, Vec<Note>) {
    let mut r = Reader {
        get,
        errors: Vec::new(),
    };
    let mut edge = EdgePolicy::default();
    let cors_on = r.value("enable-cors", parse_bool).unwrap_or(false);
    // Read even while CORS is off, so a malformed value is reported either way.
    let origins = r.value("cors-allow-origin", cors::parse_origins);
    let methods = r.value("cors-allow-methods", cors::parse_methods);
    let headers = r.value("cors-allow-headers", cors::parse_allow_headers);
    let expose = r.value("cors-expose-headers", cors::parse_expose_headers);
    let credentials = r.value("cors-allow-credentials", parse_bool);
    let max_age = r.value("cors-max-age", cors::parse_max_age);
    if cors_on {
        edge.cors = Some(Cors::new(
            origins,
            methods,
            headers,
            expose,
            credentials.unwrap_or(true),
            max_age,
        ));
    }
    let permanent = r.value("permanent-redirect", parse_url);
    let permanent_code = r.value("permanent-redirect-code", parse_redirect_code);
    let temporal = r.value("temporal-redirect", parse_url);
    let temporal_code = r.value("temporal-redirect-code", parse_redirect_code);
    // As in ingress-nginx, a temporal redirect wins over a permanent one.
    edge.redirect = match (temporal, permanent) {
        (Some(location), _) => Some(FixedRedirect {
            status: temporal_code.unwrap_or(StatusCode::FOUND),
            location,
        }),
        (None, Some(location)) => Some(FixedRedirect {
            status: permanent_code.unwrap_or(StatusCode::MOVED_PERMANENTLY),
            location,
        }),
        (None, None) => None,
    };
    edge.from_to_www = r.value("from-to-www-redirect", parse_bool).unwrap_or(false);
    edge.aliases = r.value("server-alias", parse_aliases).unwrap_or_default();
    edge.error_codes = r
        .value("custom-http-errors", parse_codes)
        .unwrap_or_default();
    edge.default_backend = r.value("default-backend", parse_service_name);
    // Annotations that switch nothing on (`enable-cors: "false"`) leave the fast path.
    let active = edge.cors.is_some()
        || edge.redirect.is_some()
        || edge.from_to_www
        || !edge.aliases.is_empty()
        || !edge.error_codes.is_empty()
        || edge.default_backend.is_some();
    (active.then(|| Arc::new(edge)), r.errors)
}

pub(crate) fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// An absolute `http(s)://` URL, usable as a Location header as it is.
fn parse_url(v: &str) -> Result<HeaderValue, String> {
    let uri: http::Uri = v
        .parse()
        .map_err(|_| "expected an absolute http:// or https:// URL".to_string())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok
        || uri.host().is_none_or(str::is_empty)
        || !v.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("expected an absolute http:// or https:// URL".into());
    }
    HeaderValue::from_str(v).map_err(|_| "not a valid Location value".to_string())
}

/// ingress-nginx accepts the 3xx redirect codes 300 to 308.
fn parse_redirect_code(v: &str) -> Result<StatusCode, String> {
    match v.parse::<u16>() {
        Ok(c @ 300..=308) if c != 306 => {
            StatusCode::from_u16(c).map_err(|_| "not a status code".to_string())
        }
        _ => Err("expected a redirect status code from 300 to 308".into()),
    }
}

/// Comma-separated host names, optionally `*.` wildcards.
fn parse_aliases(v: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let name = item.to_ascii_lowercase();
        let bare = name.strip_prefix("*.").unwrap_or(&name);
        if !is_dns_name(bare) {
            return Err(format!("{item:?} is not a host name"));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        return Err("expected a comma-separated list of host names".into());
    }
    Ok(out)
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens.
pub(crate) fn is_dns_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Comma-separated HTTP status codes from 400 to 599, sorted for lookup.
fn parse_codes(v: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<u16>() {
            Ok(c @ 400..=599) => out.push(c),
            _ => return Err(format!("{item:?} is not an error status code (400 to 599)")),
        }
    }
    if out.is_empty() {
        return Err("expected a comma-separated list of status codes".into());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A Service name (RFC 1035 label), as `default-backend` names one in the same namespace.
fn parse_service_name(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.starts_with(|c: char| c.is_ascii_lowercase())
        && !v.ends_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(v.to_string())
    } else {
        Err("expected the name of a Service in the Ingress's namespace".into())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn parse_map(pairs: &[(&str, &str)]) -> (Option<Arc<EdgePolicy>>, Vec<Note>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect();
        let get = |short: &str| {
            map.get_key_value(&format!("nginx.ingress.kubernetes.io/{short}"))
                .map(|(k, v)| (k.as_str(), v.as_str()))
        };
        let (edge, errors) = parse(get);
        (edge, errors)
    }

    #[test]
    fn nothing_set_is_none() {
        let (edge, errors) = parse_map(&[]);
        assert!(edge.is_none() && errors.is_empty());
    }

    #[test]
    fn cors_annotations() {
        let (edge, errors) = parse_map(&[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "https://a.example.com, http://*.b.example:8080",
            ),
            ("cors-allow-methods", "GET, PUT"),
            ("cors-allow-headers", "X-A, X_B"),
            ("cors-expose-headers", "X-Total"),
            ("cors-allow-credentials", "false"),
            ("cors-max-age", "60"),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let cors = edge.unwrap().cors.clone().unwrap();
        assert!(matches!(&cors.origins, cors::Origins::List(l) if l.len() == 2));
        assert!(!cors.credentials);
        let mut h = http::HeaderMap::new();
        cors.decorate(&mut h, HeaderValue::from_static("https://a.example.com"));
        assert_eq!(h["access-control-allow-methods"], "GET, PUT");
        assert_eq!(h["access-control-allow-headers"], "X-A, X_B");
        assert_eq!(h["access-control-expose-headers"], "X-Total");
        assert_eq!(h["access-control-max-age"], "60");

        // cors-* without enable-cors: checked, but CORS stays off.
        let (edge, errors) = parse_map(&[("cors-max-age", "60")]);
        assert!(errors.is_empty());
        assert!(
            edge.is_none(),
            "nothing to do: the route keeps the fast path"
        );
        let (edge, _) = parse_map(&[("enable-cors", "false")]);
        assert!(edge.is_none());
    }

    #[test]
    fn redirects() {
        let (edge, errors) = parse_map(&[("permanent-redirect", "https://example.com/new")]);
        assert!(errors.is_empty(), "{errors:?}");
        let r = edge.unwrap().redirect.clone().unwrap();
        assert_eq!(r.status, 301);
        assert_eq!(r.location, "https://example.com/new");

        let (edge, _) = parse_map(&[
            ("permanent-redirect", "https://example.com/new"),
            ("permanent-redirect-code", "308"),
        ]);
        assert_eq!(edge.unwrap().redirect.as_ref().unwrap().status, 308);

        let (edge, _) = parse_map(&[
            ("permanent-redirect", "https://a.example/"),
            ("temporal-redirect", "http://b.example/x"),
        ]);
        let r = edge.unwrap().redirect.clone().unwrap();
        assert_eq!(
            (r.status.as_u16(), r.location.to_str().unwrap()),
            (302, "http://b.example/x")
        );

        let (edge, _) = parse_map(&[
            ("temporal-redirect", "http://b.example/x"),
            ("temporal-redirect-code", "307"),
        ]);
        assert_eq!(edge.unwrap().redirect.as_ref().unwrap().status, 307);
    }

    #[test]
    fn www_redirect_keeps_scheme_port_and_uri() {
        let edge = EdgePolicy {
            www_target: Some(Arc::from("example.com")),
            ..EdgePolicy::default()
        };
        let r = edge.redirect_for("https", None, "/a/b?c=1").unwrap();
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()["location"], "https://example.com/a/b?c=1");
        let r = edge.redirect_for("http", Some(8080), "/").unwrap();
        assert_eq!(r.headers()["location"], "http://example.com:8080/");
        assert!(
            EdgePolicy::default()
                .redirect_for("http", None, "/")
                .is_none()
        );
    }

    #[test]
    fn www_alias_and_errors() {
        let (edge, errors) = parse_map(&[
            ("from-to-www-redirect", "true"),
            (
                "server-alias",
                "Alias.example.com, *.extra.example.com,alias.example.com",
            ),
            ("custom-http-errors", "503, 404,404"),
            ("default-backend", "error-pages"),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let e = edge.unwrap();
        assert!(e.from_to_www);
        assert_eq!(e.aliases, ["alias.example.com", "*.extra.example.com"]);
        assert_eq!(e.error_codes, [404, 503]);
        assert_eq!(e.default_backend.as_deref(), Some("error-pages"));
    }

    #[test]
    fn controller_wide_defaults() {
        let d = ErrorDefaults::from_settings(Some("ops/errors:8080"), &[503, 404]).unwrap();
        let (ns, name, port) = d.backend.unwrap();
        assert_eq!((ns.as_str(), name.as_str()), ("ops", "errors"));
        assert_eq!(port, crate::ingress::build::backends::PortRef::Number(8080));
        assert_eq!(d.codes, [404, 503]);
        let d = ErrorDefaults::from_settings(Some("ops/errors:http"), &[]).unwrap();
        assert_eq!(
            d.backend.unwrap().2,
            crate::ingress::build::backends::PortRef::Name("http".into())
        );
        assert_eq!(
            ErrorDefaults::from_settings(None, &[]).unwrap(),
            ErrorDefaults::default()
        );
        for bad in ["errors:80", "ops/errors", "ops/errors:0", "ops/Errors:80"] {
            assert!(
                ErrorDefaults::from_settings(Some(bad), &[]).is_err(),
                "{bad}"
            );
        }
        assert!(ErrorDefaults::from_settings(None, &[200]).is_err());
    }

    #[test]
    fn malformed_values_name_their_key() {
        let cases = [
            ("permanent-redirect", "/relative"),
            ("permanent-redirect", "ftp://example.com/"),
            ("permanent-redirect", "https://exa mple.com/"),
            ("permanent-redirect-code", "200"),
            ("temporal-redirect-code", "abc"),
            ("from-to-www-redirect", "yes"),
            ("server-alias", "bad_name.example.com"),
            ("server-alias", " , "),
            ("custom-http-errors", "404,abc"),
            ("custom-http-errors", "200"),
            ("default-backend", "Other/Namespace"),
            ("enable-cors", "on"),
            ("cors-allow-origin", "origin.example.com:8080"),
            ("cors-allow-origin", "https://*.*.example.com"),
            ("cors-allow-methods", "GET, P0ST"),
            ("cors-allow-headers", "X-Ok, X Bad"),
            ("cors-expose-headers", "X-A;"),
            ("cors-allow-credentials", "maybe"),
            ("cors-max-age", "-1"),
        ];
        for (k, v) in cases {
            let (_, errors) = parse_map(&[(k, v)]);
            assert_eq!(errors.len(), 1, "{k}={v:?}: {errors:?}");
            let key = format!("nginx.ingress.kubernetes.io/{k}");
            assert_eq!(errors[0].key.as_deref(), Some(key.as_str()));
            assert!(errors[0].message.starts_with(&key), "{errors:?}");
        }
    }
}
