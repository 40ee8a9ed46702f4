//! The traffic-shaping annotations of an Ingress, gathered in one `Policy` field so an
//! Ingress without them pays one `Option` check: per-client rate limits
//! (`ingress::request::rate_limit`), cookie affinity (`ingress::request::affinity`) and
//! consistent hashing (`ingress::request::hash_by`), both over the ring of
//! `ingress::request::hash_ring`.
//!
//! Precedence as in ingress-nginx: cookie affinity, else `upstream-hash-by`, else
//! `load-balance`.
//!
//! Formats (ingress-nginx's): `limit-rps`, `limit-rpm`, `limit-connections` and
//! `limit-burst-multiplier` are non-negative integers (0 turns a limit off; the
//! multiplier must be at least 1, default 5); `limit-allowlist` (historically
//! `limit-whitelist`) is a comma-separated list of CIDRs never limited. `affinity:
//! cookie`; `affinity-mode`: `balanced` or `persistent`; `session-cookie-expires` and
//! `-max-age` in seconds; `-samesite`: `None`, `Lax` or `Strict`; `-secure`,
//! `-conditional-samesite-none`, `-change-on-failure`: booleans. `upstream-hash-by`: see
//! `ingress::request::hash_by`.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::header::{SET_COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Response};

use super::affinity::{self, Affinity, Mode};
use super::hash_by::{HashBy, RequestView};
use super::hash_ring::{RingCache, endpoint_id, stable_hash};
use super::next_upstream::{self, NextUpstream};
use super::rate_limit::{self, LimitSpec, RateLimits, Verdict};
use crate::body::Body;
use crate::ingress::build::annotations::{Note, Parser, parse_ranges};
use crate::ingress::model::policy::Balance;
use crate::ingress::model::snapshot::{Backend, Route};
use crate::ingress::request::balancer::{Balancer, Pick};
use crate::ingress::request::health::monotonic_us;
use crate::ingress::request::proxy::Proxy;
use crate::ingress::request::respond::generated;
use crate::ingress::request::tail::Tail;

/// ingress-nginx's default `limit-burst-multiplier`.
pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;
/// Highest rate accepted: the GCRA works in microseconds.
const MAX_RATE: u32 = 1_000_000;

/// Longest affinity cookie value read; anything longer is treated as no cookie.
const MAX_COOKIE_VALUE: usize = 256;

/// Everything this group of annotations asks of one Ingress.
#[derive(Debug, Default)]
pub struct Traffic {
    pub limits: Option<RateLimits>,
    pub affinity: Option<Affinity>,
    pub hash_by: Option<HashBy>,
    /// `proxy-next-upstream*`: `None` keeps the exchange's built-in retry rule.
    pub next_upstream: Option<NextUpstream>,
    /// Rings of the backends this Ingress routes to, for affinity and hashing.
    rings: RingCache,
}

impl Traffic {
    /// Applies the Ingress's rate limits to a request from `client`; `Some` is the
    /// refusal to send. The connection slot (if any) is held by `tail` until the response
    /// is complete.
    pub(crate) fn admit(
        &self,
        proxy: &Proxy,
        route: &Route,
        client: std::net::IpAddr,
        tail: &mut Tail,
    ) -> Option<Response<Body>> {
        if let Some(limits) = &self.limits {
            let status = proxy.config.limits;
            match limits.check(&proxy.limits, &route.ingress, client) {
                Verdict::Pass(guard) => tail.hold = guard,
                Verdict::TooManyRequests => {
                    rate_limit::record_refusal(&route.ingress, "rate");
                    return Some(generated(status.request, "request rate limit exceeded"));
                }
                Verdict::TooManyConnections => {
                    rate_limit::record_refusal(&route.ingress, "connections");
                    return Some(generated(
                        status.connection,
                        "too many concurrent requests from this address",
                    ));
                }
            }
        }
        None
    }

    /// How this request's endpoint is to be chosen, when affinity or hashing applies.
    /// Reads the request head, so it runs before the head is taken apart.
    pub(crate) fn steer(self: &Arc<Self>, view: &RequestView<'_>) -> Option<Box<Steer>> {
        let headers = view.headers;
        let how = if let Some(a) = &self.affinity {
            let presented =
                affinity::request_cookie(headers, &a.name).filter(|v| v.len() <= MAX_COOKIE_VALUE);
            match (a.mode, presented) {
                (Mode::Balanced, Some(v)) => How::Balanced(stable_hash(v.as_bytes())),
                (Mode::Balanced, None) => {
                    let (token, key) = new_token();
                    return Some(Box::new(Steer {
                        traffic: self.clone(),
                        how: How::Balanced(key),
                        cookie: Mutex::new(Some(token)),
                        user_agent: user_agent(a, headers),
                    }));
                }
                (Mode::Persistent, v) => {
                    How::Persistent(v.and_then(|v| u64::from_str_radix(v, 16).ok()))
                }
            }
        } else {
            How::Hash(self.hash_by.as_ref()?.key(view))
        };
        Some(Box::new(Steer {
            traffic: self.clone(),
            how,
            cookie: Mutex::new(None),
            user_agent: self.affinity.as_ref().and_then(|a| user_agent(a, headers)),
        }))
    }
}

/// A fresh balanced-affinity token and its ring key. Random, so it says nothing about
/// the client or the pod.
fn new_token() -> (String, u64) {
    let token = format!("{:016x}", fastrand::u64(..));
    let key = stable_hash(token.as_bytes());
    (token, key)
}

fn user_agent(a: &Affinity, headers: &HeaderMap) -> Option<HeaderValue> {
    a.conditional_same_site_none
        .then(|| headers.get(USER_AGENT).cloned())
        .flatten()
}

/// The endpoint choice of one request with affinity or hashing.
#[derive(Debug)]
pub(crate) struct Steer {
    traffic: Arc<Traffic>,
    how: How,
    /// The affinity cookie value to send with the response, once decided.
    cookie: Mutex<Option<String>>,
    /// Kept only for `session-cookie-conditional-samesite-none`.
    user_agent: Option<HeaderValue>,
}

#[derive(Debug, Clone, Copy)]
enum How {
    /// `upstream-hash-by`: the request's ring key.
    Hash(u64),
    /// Balanced affinity: the ring key of the client's token.
    Balanced(u64),
    /// Persistent affinity: the endpoint id the cookie names, if it names one.
    Persistent(Option<u64>),
}

impl Steer {
    fn pick(
        &self,
        balancer: &Balancer,
        backend: &Backend,
        balance: Balance,
        exclude: Option<SocketAddr>,
    ) -> Option<Pick> {
        let now = monotonic_us();
        let ejected = |a: SocketAddr| balancer.is_ejected(a, now);
        let excluded = |a: SocketAddr| Some(a) == exclude;
        let ring = self.traffic.rings.ring(backend);
        let change_on_failure = self
            .traffic
            .affinity
            .as_ref()
            .is_some_and(|a| a.change_on_failure);
        let chosen = match self.how {
            How::Hash(key) => ring.find(key, ejected, excluded)?,
            How::Balanced(_) if exclude.is_some() && change_on_failure => {
                let (token, key) = new_token();
                let addr = ring.find(key, ejected, excluded)?;
                self.set_cookie(token);
                addr
            }
            How::Balanced(key) => ring.find(key, ejected, excluded)?,
            How::Persistent(wanted) => {
                let current = wanted.and_then(|id| ring.by_id(id));
                if let Some(a) = current.filter(|a| !excluded(*a) && !ejected(*a)) {
                    return Some(balancer.pick_addr(a));
                }
                let pick = balancer.pick(backend, balance, exclude)?;
                // The cookie follows when its endpoint is gone (or it named none); after a
                // failure only when asked to.
                if current.is_none() || change_on_failure {
                    self.set_cookie(format!("{:016x}", endpoint_id(pick.addr)));
                }
                return Some(pick);
            }
        };
        Some(balancer.pick_addr(chosen))
    }

    fn set_cookie(&self, value: String) {
        *self.cookie.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
    }

    /// Adds the affinity cookie to the response, when this request needs one.
    pub(crate) fn respond(&self, headers: &mut HeaderMap, route: &Route, https: bool) {
        let Some(a) = &self.traffic.affinity else {
            return;
        };
        let Some(value) = self.cookie.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let ua = self.user_agent.as_ref().and_then(|v| v.to_str().ok());
        let line = a.set_cookie(
            &value,
            &route.path,
            route.policy.use_regex,
            https,
            ua,
            SystemTime::now(),
        );
        match HeaderValue::from_str(&line) {
            Ok(v) => {
                headers.append(SET_COOKIE, v);
            }
            Err(_) => tracing::warn!(cookie = %a.name, "affinity cookie not representable"),
        }
    }
}

impl Proxy {
    /// The endpoint for one attempt: the balancer's choice, unless affinity or hashing
    /// steers the request.
    pub(crate) fn pick_endpoint(
        &self,
        backend: &Backend,
        balance: Balance,
        steer: Option<&Steer>,
        exclude: Option<SocketAddr>,
        now: u64,
    ) -> Option<Pick> {
        match steer {
            None => self.balancer.pick_at(backend, balance, exclude, now),
            Some(s) => s.pick(&self.balancer, backend, balance, exclude),
        }
    }
}

/// Reads the group's annotations; `None` when none of them is set (or all are off).
pub(crate) fn parse(p: &mut Parser<'_>) -> Option<Arc<Traffic>> {
    let affinity = parse_affinity(p);
    let hash_by = p.value("upstream-hash-by", HashBy::parse);
    if affinity.is_some()
        && hash_by.is_some()
        && let Some((key, _)) = p.get("upstream-hash-by")
    {
        warn(p, key, "ignored: cookie affinity takes precedence");
    }
    let traffic = Traffic {
        limits: parse_limits(p),
        affinity,
        hash_by,
        next_upstream: parse_next_upstream(p),
        rings: RingCache::default(),
    };
    let any = traffic.limits.is_some()
        || traffic.affinity.is_some()
        || traffic.hash_by.is_some()
        || traffic.next_upstream.is_some();
    any.then(|| Arc::new(traffic))
}

fn parse_next_upstream(p: &mut Parser<'_>) -> Option<NextUpstream> {
    let keys = [
        "proxy-next-upstream",
        "proxy-next-upstream-tries",
        "proxy-next-upstream-timeout",
    ];
    if keys.iter().all(|k| p.get(k).is_none()) {
        return None;
    }
    let mut n = NextUpstream::default();
    if let Some(tries) = p.value("proxy-next-upstream-tries", next_upstream::parse_tries) {
        n.tries = tries;
    }
    if let Some(t) = p.value(
        "proxy-next-upstream-timeout",
        next_upstream::parse_total_timeout,
    ) {
        n.timeout_total = t;
    }
    // Conditions last: `off` overrides the number of tries.
    let mut with_conditions = n.clone();
    if p.value("proxy-next-upstream", |v| {
        next_upstream::parse_conditions(v, &mut with_conditions)
    })
    .is_some()
    {
        n = with_conditions;
    }
    Some(n)
}

fn warn(p: &mut Parser<'_>, key: &str, why: &str) {
    p.out.warnings.push(Note {
        key: Some(key.to_string()),
        message: format!("{key}: {why}"),
    });
}

const COOKIE_KEYS: &[&str] = &[
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-domain",
    "session-cookie-expires",
    "session-cookie-max-age",
    "session-cookie-samesite",
    "session-cookie-conditional-samesite-none",
    "session-cookie-secure",
    "session-cookie-change-on-failure",
];

fn parse_affinity(p: &mut Parser<'_>) -> Option<Affinity> {
    let bool_of = |v: &str| match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_string()),
    };
    let on = p.value("affinity", affinity::parse_type).is_some();
    let a = Affinity {
        mode: p
            .value("affinity-mode", affinity::parse_mode)
            .unwrap_or(Mode::Balanced),
        name: p
            .value("session-cookie-name", affinity::parse_name)
            .unwrap_or_else(|| affinity::DEFAULT_COOKIE.to_string()),
        path: p.value("session-cookie-path", affinity::parse_path),
        domain: p.value("session-cookie-domain", affinity::parse_domain),
        expires: p.value("session-cookie-expires", affinity::parse_seconds),
        max_age: p.value("session-cookie-max-age", affinity::parse_seconds),
        same_site: p.value("session-cookie-samesite", affinity::parse_same_site),
        conditional_same_site_none: p
            .value("session-cookie-conditional-samesite-none", bool_of)
            .unwrap_or(false),
        secure: p.value("session-cookie-secure", bool_of),
        change_on_failure: p
            .value("session-cookie-change-on-failure", bool_of)
            .unwrap_or(false),
    };
    if !on {
        if p.get("affinity").is_none()
            && let Some((key, _)) = COOKIE_KEYS.iter().find_map(|k| p.get(k))
        {
            warn(p, key, "ignored: the Ingress has no affinity: cookie");
        }
        return None;
    }
    Some(a)
}

fn parse_limits(p: &mut Parser<'_>) -> Option<RateLimits> {
    let rate = |v: &str| parse_count(v, MAX_RATE);
    let rps = p.value("limit-rps", rate).unwrap_or(0);
    let rpm = p.value("limit-rpm", rate).unwrap_or(0);
    let connections = p
        .value("limit-connections", |v| parse_count(v, u32::MAX))
        .unwrap_or(0);
    let burst_multiplier = p
        .value("limit-burst-multiplier", |v| match parse_count(v, 1000)? {
            0 => Err("must be at least 1".to_string()),
            n => Ok(n),
        })
        .unwrap_or(DEFAULT_BURST_MULTIPLIER);
    // `limit-allowlist` is the newer spelling; when both are set it wins.
    let exempt = if p.get("limit-allowlist").is_some() {
        p.value("limit-allowlist", parse_ranges)
    } else {
        p.value("limit-whitelist", parse_ranges)
    };
    if rps == 0 && rpm == 0 && connections == 0 {
        return None;
    }
    let spec = LimitSpec {
        rps,
        rpm,
        burst_multiplier,
        connections,
    };
    Some(RateLimits::new(spec, exempt.unwrap_or_default()))
}

/// A non-negative integer no larger than `max`.
fn parse_count(v: &str, max: u32) -> Result<u32, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a non-negative integer".into());
    }
    match v.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("expected an integer no larger than {max}")),
    }
}

#[cfg(test)]
mod tests {
    use crate::ingress::build::annotations::parse_pairs as parse;
    use crate::ingress::request::affinity::{self, Mode};

    #[test]
    fn no_annotations_no_traffic_policy() {
        let p = parse(&[("nginx.ingress.kubernetes.io/limit-rps", "0")]);
        assert!(p.is_ok());
        assert!(p.policy.traffic.is_none(), "0 turns the limit off");
        assert!(parse(&[]).policy.traffic.is_none());
    }

    #[test]
    fn limits_with_defaults_and_allowlist() {
        let p = parse(&[
            ("nginx.ingress.kubernetes.io/limit-rps", "5"),
            ("nginx.ingress.kubernetes.io/limit-connections", "2"),
            ("nginx.ingress.kubernetes.io/limit-whitelist", "10.0.0.0/8"),
            ("portcullis.io/limit-allowlist", "192.168.0.0/16, 127.0.0.9"),
        ]);
        assert!(p.is_ok(), "{:?}", p.errors);
        let t = p.policy.traffic.unwrap();
        let l = t.limits.as_ref().unwrap();
        assert_eq!(l.spec.rps, 5);
        assert_eq!(l.spec.rpm, 0);
        assert_eq!(l.spec.burst_multiplier, 5, "ingress-nginx's default");
        assert_eq!(l.spec.connections, 2);
        let exempt: Vec<String> = l.exempt.iter().map(|n| n.to_string()).collect();
        assert_eq!(exempt, ["192.168.0.0/16", "127.0.0.9/32"]);
    }

    #[test]
    fn affinity_defaults_and_every_attribute() {
        let p = parse(&[("nginx.ingress.kubernetes.io/affinity", "cookie")]);
        assert!(p.is_ok() && p.warnings.is_empty(), "{:?}", p.warnings);
        let t = p.policy.traffic.unwrap();
        let a = t.affinity.as_ref().unwrap();
        assert_eq!(a.mode, Mode::Balanced);
        assert_eq!(a.name, "INGRESSCOOKIE");
        assert!(a.secure.is_none() && a.path.is_none() && !a.change_on_failure);

        let p = parse(&[
            ("nginx.ingress.kubernetes.io/affinity", "cookie"),
            ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
            ("nginx.ingress.kubernetes.io/session-cookie-name", "route"),
            ("nginx.ingress.kubernetes.io/session-cookie-path", "/app"),
            (
                "nginx.ingress.kubernetes.io/session-cookie-domain",
                "example.com",
            ),
            (
                "nginx.ingress.kubernetes.io/session-cookie-expires",
                "172800",
            ),
            ("nginx.ingress.kubernetes.io/session-cookie-max-age", "60"),
            (
                "nginx.ingress.kubernetes.io/session-cookie-samesite",
                "None",
            ),
            (
                "nginx.ingress.kubernetes.io/session-cookie-conditional-samesite-none",
                "true",
            ),
            ("nginx.ingress.kubernetes.io/session-cookie-secure", "false"),
            (
                "nginx.ingress.kubernetes.io/session-cookie-change-on-failure",
                "true",
            ),
            (
                "nginx.ingress.kubernetes.io/upstream-hash-by",
                "$request_uri",
            ),
        ]);
        assert!(p.is_ok(), "{:?}", p.errors);
        assert_eq!(p.warnings.len(), 1, "hash-by yields to affinity");
        let t = p.policy.traffic.unwrap();
        let a = t.affinity.as_ref().unwrap();
        assert_eq!(a.mode, Mode::Persistent);
        assert_eq!(a.name, "route");
        assert_eq!(a.path.as_deref(), Some("/app"));
        assert_eq!(a.domain.as_deref(), Some("example.com"));
        assert_eq!((a.expires, a.max_age), (Some(172800), Some(60)));
        assert_eq!(a.same_site, Some(affinity::SameSite::None));
        assert!(a.conditional_same_site_none && a.change_on_failure);
        assert_eq!(a.secure, Some(false));

        // Cookie settings without affinity are ignored, with a warning.
        let p = parse(&[("nginx.ingress.kubernetes.io/session-cookie-name", "x")]);
        assert!(p.is_ok() && p.policy.traffic.is_none());
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn malformed_affinity_and_hash_values() {
        for (k, v) in [
            ("nginx.ingress.kubernetes.io/affinity", "ip"),
            ("nginx.ingress.kubernetes.io/affinity-mode", "sticky"),
            ("nginx.ingress.kubernetes.io/session-cookie-name", "a b"),
            ("nginx.ingress.kubernetes.io/session-cookie-path", "app"),
            ("nginx.ingress.kubernetes.io/session-cookie-path", "/a;b"),
            ("nginx.ingress.kubernetes.io/session-cookie-domain", "a;b"),
            ("nginx.ingress.kubernetes.io/session-cookie-expires", "1d"),
            ("nginx.ingress.kubernetes.io/session-cookie-max-age", "-5"),
            (
                "nginx.ingress.kubernetes.io/session-cookie-samesite",
                "Loose",
            ),
            ("nginx.ingress.kubernetes.io/session-cookie-secure", "yes"),
            ("nginx.ingress.kubernetes.io/upstream-hash-by", "$nonsense"),
        ] {
            let p = parse(&[(k, v), ("portcullis.io/affinity", "cookie")]);
            let p = if k.ends_with("/affinity") {
                parse(&[(k, v)])
            } else {
                p
            };
            assert_eq!(p.errors.len(), 1, "{k}={v:?}: {:?}", p.errors);
            assert_eq!(p.errors[0].key.as_deref(), Some(k));
            assert!(p.errors[0].message.starts_with(k));
        }
    }

    #[test]
    fn hash_by_alone() {
        let p = parse(&[(
            "nginx.ingress.kubernetes.io/upstream-hash-by",
            "$host$request_uri",
        )]);
        assert!(p.is_ok() && p.warnings.is_empty());
        let t = p.policy.traffic.unwrap();
        assert!(t.hash_by.is_some() && t.affinity.is_none() && t.limits.is_none());
        // The subset mode is not implemented: a warning, the Ingress still serves.
        let p = parse(&[
            (
                "nginx.ingress.kubernetes.io/upstream-hash-by",
                "$remote_addr",
            ),
            (
                "nginx.ingress.kubernetes.io/upstream-hash-by-subset",
                "true",
            ),
        ]);
        assert!(p.is_ok());
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn next_upstream_annotations() {
        let p = parse(&[
            (
                "nginx.ingress.kubernetes.io/proxy-next-upstream",
                "error http_503",
            ),
            ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "4"),
            (
                "nginx.ingress.kubernetes.io/proxy-next-upstream-timeout",
                "9",
            ),
        ]);
        assert!(p.is_ok(), "{:?}", p.errors);
        let t = p.policy.traffic.unwrap();
        let n = t.next_upstream.as_ref().unwrap();
        assert!(n.error && !n.timeout && n.tries == 4);
        assert_eq!(n.timeout_total, Some(std::time::Duration::from_secs(9)));
        let p = parse(&[
            ("nginx.ingress.kubernetes.io/proxy-next-upstream", "off"),
            ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "4"),
        ]);
        assert_eq!(
            p.policy
                .traffic
                .unwrap()
                .next_upstream
                .as_ref()
                .unwrap()
                .tries,
            1
        );
        // Tries alone keep ingress-nginx's default conditions.
        let p = parse(&[("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "2")]);
        let t = p.policy.traffic.unwrap();
        let n = t.next_upstream.as_ref().unwrap();
        assert!(n.error && n.timeout && n.tries == 2);
        let p = parse(&[(
            "nginx.ingress.kubernetes.io/proxy-next-upstream",
            "http_418",
        )]);
        assert_eq!(p.errors.len(), 1);
    }

    #[test]
    fn malformed_limits_are_errors_naming_the_key() {
        for (k, v) in [
            ("nginx.ingress.kubernetes.io/limit-rps", "-1"),
            ("nginx.ingress.kubernetes.io/limit-rps", "1.5"),
            ("nginx.ingress.kubernetes.io/limit-rpm", "ten"),
            ("nginx.ingress.kubernetes.io/limit-rps", "99999999999"),
            ("nginx.ingress.kubernetes.io/limit-connections", ""),
            ("portcullis.io/limit-burst-multiplier", "0"),
            ("nginx.ingress.kubernetes.io/limit-whitelist", "10.0.0.0/40"),
            ("portcullis.io/limit-allowlist", "example.com"),
        ] {
            // With a valid limit beside it, so only the bad value is reported.
            let other = match k.ends_with("limit-rpm") {
                true => ("portcullis.io/limit-rps", "1"),
                false => ("portcullis.io/limit-rpm", "60"),
            };
            let p = parse(&[(k, v), other]);
            assert_eq!(p.errors.len(), 1, "{k}={v:?}: {:?}", p.errors);
            assert_eq!(p.errors[0].key.as_deref(), Some(k));
            assert!(p.errors[0].message.starts_with(k));
        }
    }
}
