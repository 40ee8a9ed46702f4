//! `auth-proxy-set-headers`: the ConfigMap whose `data` entries (header name → value) are
//! set on every external-auth subrequest, as ingress-nginx's `proxy_set_header` lines in
//! the auth location. Values may hold the nginx variables [`Template`] knows (`$host`,
//! `$http_x_token`, …); an empty value removes the header from the subrequest, as an empty
//! `proxy_set_header` does in nginx.
//!
//! Failure behaviour: fail closed. A missing ConfigMap, or one with an entry that is not a
//! valid header (hop-by-hop or framing names, invalid values, unknown variables), leaves
//! the routes answering 500 to every request and is reported as a problem of the Ingress:
//! an auth service that expects a header must never be asked without it.
use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::external::External;
use super::template::{Template, Vars};
use crate::ingress::build::secret_refs::parse_config_map_ref;
use crate::source::ObjectStore;

/// Longest value accepted, as for the other auth templates.
const MAX_VALUE: usize = 2048;
/// Most entries one ConfigMap may set; more is a mistake, not a header list.
const MAX_ENTRIES: usize = 64;
/// Names that frame the subrequest or belong to its connection, never set from a ConfigMap.
const REFUSED: [&str; 10] = [
    "connection",
    "content-length",
    "expect",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The headers an `External` adds to its subrequests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum ProxyHeaders {
    /// No `auth-proxy-set-headers`.
    #[default]
    None,
    /// Named, but compile has not read the ConfigMap (admission's parse, or a policy compile
    /// could not prepare): requests are refused.
    Unresolved,
    /// Name and value (`None`: remove the header) of each entry, in key order.
    Ready(Vec<(HeaderName, Option<Template>)>),
    /// The ConfigMap is missing or unusable: requests are refused.
    Broken,
}

impl ProxyHeaders {
    /// Whether every request must be refused.
    pub fn refuses(&self) -> bool {
        matches!(self, ProxyHeaders::Unresolved | ProxyHeaders::Broken)
    }

    /// Sets the headers on a subrequest; an error when a value expands to something that
    /// is not a header value (the request is then refused).
    pub fn apply(&self, headers: &mut HeaderMap, vars: &Vars<'_>) -> Result<(), String> {
        let ProxyHeaders::Ready(entries) = self else {
            return Ok(());
        };
        for (name, value) in entries {
            let Some(value) = value else {
                headers.remove(name);
                continue;
            };
            let expanded = value.expand(vars);
            let value = HeaderValue::from_str(&expanded)
                .map_err(|_| format!("auth-proxy-set-headers {name}: not a header value"))?;
            headers.insert(name.clone(), value);
        }
        Ok(())
    }
}

/// Validates a ConfigMap's `data` as headers.
pub fn parse_entries(
    data: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, Option<Template>)>, String> {
    if data.len() > MAX_ENTRIES {
        return Err(format!("more than {MAX_ENTRIES} entries"));
    }
    let mut out = Vec::with_capacity(data.len());
    for (key, value) in data {
        let name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| format!("{key:?} is not a header name"))?;
        if REFUSED.contains(&name.as_str()) {
            return Err(format!("{key} cannot be set on the auth subrequest"));
        }
        if value.is_empty() {
            out.push((name, None));
            continue;
        }
        if value.len() > MAX_VALUE {
            return Err(format!("{key}: the value is longer than {MAX_VALUE} bytes"));
        }
        let template = Template::parse(value).map_err(|e| format!("{key}: {e}"))?;
        // Variables expand to header-safe text; the literal parts must be header-safe too.
        if HeaderValue::from_str(&template.sample()).is_err() {
            return Err(format!("{key}: {value:?} is not a valid header value"));
        }
        out.push((name, Some(template)));
    }
    Ok(out)
}

/// Fills in `external`'s headers from the ConfigMap it names; the problems found.
/// `namespace` is the Ingress's, for a reference without one.
pub fn attach(external: &mut External, store: &ObjectStore, namespace: &str) -> Vec<String> {
    let Some(reference) = external.proxy_headers_ref.as_deref() else {
        return Vec::new();
    };
    let resolved = parse_config_map_ref(reference, namespace).and_then(|r| {
        let key = r.key();
        let cm = store
            .config_map_by_key(&key)
            .ok_or_else(|| format!("ConfigMap {key} does not exist"))?;
        let empty = BTreeMap::new();
        parse_entries(cm.data.as_ref().unwrap_or(&empty))
            .map_err(|e| format!("ConfigMap {key} is unusable ({e})"))
    });
    let problems = match resolved {
        Ok(entries) => {
            external.proxy_headers = ProxyHeaders::Ready(entries);
            Vec::new()
        }
        Err(e) => {
            external.proxy_headers = ProxyHeaders::Broken;
            vec![format!(
                "auth-proxy-set-headers: {e}; requests are answered 500"
            )]
        }
    };
    // The headers may change the service's decision: cached outcomes follow them.
    external.share_cache();
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn entries_are_validated_and_expanded() {
        let entries = parse_entries(&data(&[
            ("X-Tenant", "blue"),
            ("X-Auth-Host", "$host"),
            ("Cookie", ""),
        ]))
        .unwrap();
        let ready = ProxyHeaders::Ready(entries);
        let mut client = HeaderMap::new();
        client.insert("cookie", "a=1".parse().unwrap());
        let vars = Vars {
            scheme: "https",
            host: "shop.test",
            http_host: "shop.test",
            method: "GET",
            path_and_query: "/",
            remote_addr: "10.0.0.1".parse().unwrap(),
            headers: &client,
        };
        let mut sub = client.clone();
        ready.apply(&mut sub, &vars).unwrap();
        assert_eq!(sub["x-tenant"], "blue");
        assert_eq!(sub["x-auth-host"], "shop.test");
        assert!(sub.get("cookie").is_none(), "an empty value removes");

        for bad in [
            data(&[("Bad Name", "x")]),
            data(&[("Connection", "close")]),
            data(&[("Transfer-Encoding", "chunked")]),
            data(&[("X-A", "line\nbreak")]),
            data(&[("X-A", "$upstream_addr")]),
        ] {
            assert!(parse_entries(&bad).is_err(), "{bad:?}");
        }
        assert!(ProxyHeaders::Broken.refuses() && ProxyHeaders::Unresolved.refuses());
        assert!(!ProxyHeaders::None.refuses());
    }
}
