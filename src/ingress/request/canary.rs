//! Canary choice for one request: by header first (`always` / `never` / the configured
//! value), then by weight (0..=100 percent, `fastrand`), as ingress-nginx orders them.
//! A canary with no eligible endpoint is skipped so it cannot take the main route down.
use std::sync::Arc;

use http::HeaderMap;

use crate::ingress::model::policy::Canary;
use crate::ingress::model::snapshot::Backend;

/// The backend for this request and whether it is the canary.
pub fn choose<'a>(
    main: &'a Arc<Backend>,
    canary: Option<&'a Canary>,
    headers: &HeaderMap,
) -> (&'a Arc<Backend>, bool) {
    let Some(c) = canary else {
        return (main, false);
    };
    if c.backend.external.is_none() && c.backend.endpoints.load().eligible.is_empty() {
        return (main, false);
    }
    if let Some(name) = &c.header
        && let Some(value) = headers.get(name).and_then(|v| v.to_str().ok())
    {
        let wanted = match &c.header_value {
            Some(expected) => value == expected,
            None => value == "always",
        };
        if wanted {
            return (&c.backend, true);
        }
        if value == "never" {
            return (main, false);
        }
        // Any other value is ignored: the weight decides.
    }
    if c.weight > 0 && fastrand::u32(1..=100) <= c.weight {
        return (&c.backend, true);
    }
    (main, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::model::snapshot::{EndpointCell, UpstreamProtocol};
    use http::{HeaderName, HeaderValue};

    fn backend(name: &str) -> Arc<Backend> {
        Arc::new(Backend {
            name: name.into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: EndpointCell::new(Vec::new(), vec!["127.0.0.1:1".parse().unwrap()]),
            external: None,
        })
    }

    fn canary(weight: u32, value: Option<&str>) -> Canary {
        Canary {
            backend: backend("canary"),
            weight,
            header: Some(HeaderName::from_static("x-canary")),
            header_value: value.map(String::from),
        }
    }

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-canary", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn header_then_weight() {
        let main = backend("main");
        let c0 = canary(0, None);
        let c100 = canary(100, None);
        assert!(choose(&main, Some(&c0), &with("always")).1);
        assert!(!choose(&main, Some(&c100), &with("never")).1);
        assert!(
            choose(&main, Some(&c100), &with("other")).1,
            "falls to weight"
        );
        assert!(!choose(&main, Some(&c0), &with("other")).1);
        assert!(!choose(&main, Some(&c0), &HeaderMap::new()).1);
        assert!(choose(&main, Some(&c100), &HeaderMap::new()).1);
        let cv = canary(0, Some("blue"));
        assert!(choose(&main, Some(&cv), &with("blue")).1);
        assert!(!choose(&main, Some(&cv), &with("always")).1);
        assert!(!choose(&main, None, &with("always")).1);
    }

    #[test]
    fn empty_canary_is_skipped() {
        let main = backend("main");
        let mut c = canary(100, None);
        c.backend = Arc::new(Backend {
            name: "empty".into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: EndpointCell::new(Vec::new(), Vec::new()),
            external: None,
        });
        assert!(!choose(&main, Some(&c), &with("always")).1);
    }
}
