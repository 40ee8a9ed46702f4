//! External auth (`auth-url`): before a request is proxied, a bodiless subrequest with the
//! client's headers goes to the auth service, which decides. A 2xx lets the request through
//! (copying `auth-response-headers` from the answer into the upstream request), 401 and 403
//! reach the client with the service's `WWW-Authenticate` and `Location` (or, with
//! `auth-signin`, a 401 becomes a 302 to the sign-in page carrying the original URL), and
//! anything else, including no answer, is a 500.
//!
//! Outcomes may be cached per `auth-cache-key` (expanded per request, stored as a digest)
//! for the durations of `auth-cache-duration`; the cache outlives recompiles that keep the
//! same settings.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::cache::{self, Cache};
use super::metrics::{self, Kind, count};
use super::proxy_headers::ProxyHeaders;
use super::template::{Template, escape_into};
use super::{Granted, Head, Verdict};
use crate::ingress::request::respond::{generated, redirect};

/// Longest wait for the auth service's answer (connect included).
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What ingress-nginx sends as `X-Sent-From`; auth services written for it may look.
const SENT_FROM: HeaderValue = HeaderValue::from_static("nginx-ingress-controller");

/// Headers of the client request not passed to the auth service besides the hop-by-hop
/// ones: they frame a body the subrequest does not have, or name the wrong host.
const NOT_FORWARDED: [HeaderName; 4] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::EXPECT,
];
/// Most of an auth answer's body read so its connection can be reused; a longer body just
/// costs that connection.
const MAX_DRAIN: usize = 64 * 1024;

/// One `auth-cache-duration` rule: these statuses (empty: 200, 301, 302, as nginx's
/// `proxy_cache_valid`) are kept this long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRule {
    pub statuses: Vec<u16>,
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
enum Outcome {
    Pass(Option<Arc<Granted>>),
    Deny(StatusCode, HeaderMap),
}

#[derive(Debug)]
pub struct External {
    pub url: Template,
    pub method: Method,
    pub signin: Option<Template>,
    pub redirect_param: String,
    pub response_headers: Vec<HeaderName>,
    pub request_redirect: Option<Template>,
    pub cache_key: Option<Template>,
    pub cache_rules: Vec<CacheRule>,
    /// `auth-always-set-cookie`.
    pub always_set_cookie: bool,
    /// `auth-proxy-set-headers` as written (`namespace/name` or `name`), already validated.
    pub proxy_headers_ref: Option<String>,
    /// Its ConfigMap's headers, filled in by compile (`proxy_headers::attach`).
    pub proxy_headers: ProxyHeaders,
    /// Shared by every compile of the same settings (see [`External::share_cache`]).
    outcomes: Arc<Cache<Outcome>>,
}

impl External {
    pub fn new(url: Template) -> External {
        External {
            url,
            method: Method::GET,
            signin: None,
            redirect_param: "rd".into(),
            response_headers: Vec::new(),
            request_redirect: None,
            cache_key: None,
            cache_rules: Vec::new(),
            always_set_cookie: false,
            proxy_headers_ref: None,
            proxy_headers: ProxyHeaders::None,
            outcomes: Arc::default(),
        }
    }

    /// Takes the outcome cache of an earlier compile with exactly these settings, if a
    /// route still holds it, so a recompile for an unrelated change does not send every
    /// client back to the auth service. Settings that differ in anything get their own.
    pub fn share_cache(&mut self) {
        static LIVE: Mutex<Option<HashMap<cache::Key, Weak<Cache<Outcome>>>>> = Mutex::new(None);
        if self.cache_key.is_none() {
            return;
        }
        let settings = format!(
            "{:?}|{}|{:?}|{:?}|{:?}|{:?}|{}|{:?}",
            self.url,
            self.method,
            self.response_headers,
            self.cache_key,
            self.cache_rules,
            self.signin,
            self.always_set_cookie,
            self.proxy_headers
        );
        let key = cache::key(&[settings.as_bytes()]);
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        let live = live.get_or_insert_with(HashMap::new);
        if let Some(existing) = live.get(&key).and_then(Weak::upgrade) {
            self.outcomes = existing;
            return;
        }
        live.retain(|_, w| w.strong_count() > 0);
        live.insert(key, Arc::downgrade(&self.outcomes));
    }

    pub async fn check(&self, head: &Head<'_>) -> Verdict {
        if self.proxy_headers.refuses() {
            count(Kind::External, metrics::Outcome::Error);
            return Verdict::Answer(generated(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the authentication settings of this Ingress are unusable",
            ));
        }
        let vars = head.vars();
        let cache_key = self
            .cache_key
            .as_ref()
            // The host is part of every key: an auth service may decide per host, and
            // Ingresses with the same settings share one cache.
            .map(|k| cache::key(&[head.hostname.as_bytes(), k.expand(&vars).as_bytes()]));
        let cached = cache_key.as_ref().and_then(|k| self.outcomes.get(k));
        let outcome = match cached {
            Some(outcome) => {
                count(Kind::External, metrics::Outcome::Cached);
                outcome
            }
            None => {
                let (outcome, status) = match self.ask(head).await {
                    Ok(answer) => answer,
                    Err(reason) => {
                        count(Kind::External, metrics::Outcome::Error);
                        tracing::warn!(%reason, "external auth failed");
                        return Verdict::Answer(generated(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "the authentication service did not answer usefully",
                        ));
                    }
                };
                if let (Some(key), Some(ttl)) = (cache_key, self.ttl(status)) {
                    self.outcomes.put(key, outcome.clone(), ttl);
                }
                let result = match outcome {
                    Outcome::Pass(_) => metrics::Outcome::Pass,
                    Outcome::Deny(..) => metrics::Outcome::Denied,
                };
                count(Kind::External, result);
                outcome
            }
        };
        match outcome {
            Outcome::Pass(headers) => Verdict::Pass(headers),
            Outcome::Deny(status, headers) => Verdict::Answer(self.deny(status, headers, head)),
        }
    }

    /// Removes the client's own copies of `auth-response-headers` (a client must not pose
    /// as the auth service) and adds the service's.
    pub fn set_upstream_headers(&self, headers: &mut HeaderMap, from_auth: Option<&Granted>) {
        for name in &self.response_headers {
            headers.remove(name);
        }
        if let Some(granted) = from_auth {
            for (name, value) in &granted.upstream {
                headers.append(name.clone(), value.clone());
            }
        }
    }

    fn ttl(&self, status: StatusCode) -> Option<Duration> {
        let code = status.as_u16();
        self.cache_rules
            .iter()
            .find(|r| {
                r.statuses.contains(&code)
                    || (r.statuses.is_empty() && matches!(code, 200 | 301 | 302))
            })
            .map(|r| r.ttl)
    }

    fn deny(
        &self,
        status: StatusCode,
        from_auth: HeaderMap,
        head: &Head<'_>,
    ) -> Response<crate::body::Body> {
        if status == StatusCode::UNAUTHORIZED
            && let Some(signin) = &self.signin
        {
            let mut location = signin.expand(&head.vars());
            if !signin.contains(&format!("{}=", self.redirect_param)) {
                location.push(if location.contains('?') { '&' } else { '?' });
                location.push_str(&self.redirect_param);
                location.push('=');
                location.push_str(head.scheme);
                location.push_str("://");
                location.push_str(head.host);
                escape_into(&mut location, head.path_and_query);
            }
            return redirect(StatusCode::FOUND, &location);
        }
        let mut resp = generated(status, "denied by the authentication service");
        for (name, value) in &from_auth {
            resp.headers_mut().append(name.clone(), value.clone());
        }
        resp
    }

    /// Sends the subrequest; the outcome and the status it came from.
    async fn ask(&self, head: &Head<'_>) -> Result<(Outcome, StatusCode), String> {
        let vars = head.vars();
        let url = self.url.expand(&vars);
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("auth-url {url:?} is not a valid URL"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("auth-url {url:?} has no host"))?
            .clone();
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let headers = req.headers_mut();
        for (name, value) in head.headers {
            if !NOT_FORWARDED.contains(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        crate::ingress::request::forwarded::strip_hop_by_hop(headers, false);
        // Before portcullis's own headers below, which therefore win over a ConfigMap's.
        self.proxy_headers.apply(headers, &vars)?;
        let value = |s: &str| HeaderValue::from_str(s).map_err(|_| format!("header value {s:?}"));
        headers.insert(header::HOST, value(authority.as_str())?);
        let original = format!("{}://{}{}", head.scheme, head.host, head.path_and_query);
        headers.insert("x-original-url", value(&original)?);
        headers.insert("x-original-method", value(head.method.as_str())?);
        headers.insert("x-sent-from", SENT_FROM);
        let request_id = &crate::ingress::request::forwarded::X_REQUEST_ID;
        if !headers.contains_key(request_id) {
            headers.insert(
                request_id,
                crate::ingress::request::request_id::fresh_value(),
            );
        }
        let client = head.client.to_string();
        headers.insert("x-real-ip", value(&client)?);
        headers.insert("x-forwarded-for", value(&client)?);
        headers.insert("x-forwarded-host", value(head.host)?);
        headers.insert("x-forwarded-proto", value(head.scheme)?);
        let redirect_to = match &self.request_redirect {
            Some(t) => t.expand(&vars),
            None => head.path_and_query.to_string(),
        };
        headers.insert("x-auth-request-redirect", value(&redirect_to)?);

        let pool = client_pool().ok_or("no TLS client for auth services")?;
        let resp = tokio::time::timeout(AUTH_TIMEOUT, pool.request(req))
            .await
            .map_err(|_| "the authentication service did not answer in time".to_string())?
            .map_err(|e| format!("the authentication service is unreachable: {e}"))?;
        let status = resp.status();
        let outcome = if status.is_success() {
            let mut granted = Granted {
                always_set_cookie: self.always_set_cookie,
                ..Granted::default()
            };
            for name in &self.response_headers {
                for v in resp.headers().get_all(name) {
                    granted.upstream.append(name.clone(), v.clone());
                }
            }
            granted.cookies = resp
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .cloned()
                .collect();
            let any = !granted.upstream.is_empty() || !granted.cookies.is_empty();
            Outcome::Pass(any.then(|| Arc::new(granted)))
        } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let mut kept = HeaderMap::new();
            for name in [
                header::WWW_AUTHENTICATE,
                header::LOCATION,
                header::SET_COOKIE,
            ] {
                for v in resp.headers().get_all(&name) {
                    kept.append(name.clone(), v.clone());
                }
            }
            Outcome::Deny(status, kept)
        } else {
            return Err(format!("the authentication service answered {status}"));
        };
        let drain = Limited::new(resp.into_body(), MAX_DRAIN).collect();
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, drain).await;
        Ok((outcome, status))
    }
}

type Pool = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// One pooled client for every auth service (keep-alive across requests); `None` if no
/// TLS configuration could be built (then every auth request fails closed).
fn client_pool() -> Option<&'static Pool> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let tls = match tls_config() {
            Ok(tls) => tls,
            Err(e) => {
                tracing::error!(error = %e, "no TLS client for auth services");
                return None;
            }
        };
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Some(Client::builder(TokioExecutor::new()).build(connector))
    })
    .as_ref()
}

/// An `https://` auth service is verified against the system's CA certificates (the
/// image's `/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`), as nginx with
/// `proxy_ssl_trusted_certificate` pointing at the system bundle would.
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let loaded = rustls_native_certs::load_native_certs();
    for e in &loaded.errors {
        tracing::warn!(error = %e, "reading system CA certificates");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::warn!("no system CA certificates: https auth services will be refused");
    }
    let provider = crate::tls::provider();
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn external(url: &str) -> External {
        let mut e = External::new(Template::parse(url).unwrap());
        e.cache_key = Some(Template::parse("$http_authorization").unwrap());
        e.share_cache();
        e
    }

    #[test]
    fn same_settings_share_one_cache() {
        let a = external("http://auth.test/a");
        let b = external("http://auth.test/a");
        assert!(Arc::ptr_eq(&a.outcomes, &b.outcomes));
        let c = external("http://auth.test/c");
        assert!(!Arc::ptr_eq(&a.outcomes, &c.outcomes));
        let mut uncached = External::new(Template::parse("http://auth.test/a").unwrap());
        uncached.share_cache();
        assert!(
            !Arc::ptr_eq(&a.outcomes, &uncached.outcomes),
            "no key, no sharing"
        );
    }
}
