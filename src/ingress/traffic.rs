//! The traffic-shaping annotations of an Ingress, gathered in one `Policy` field so an
//! Ingress without them pays one `Option` check: per-client rate limits
//! (`ingress::rate_limit`).
//!
//! Formats (ingress-nginx's): `limit-rps`, `limit-rpm`, `limit-connections` and
//! `limit-burst-multiplier` are non-negative integers (0 turns a limit off; the
//! multiplier must be at least 1, default 5); `limit-allowlist` (historically
//! `limit-whitelist`) is a comma-separated list of CIDRs never limited.
use std::sync::Arc;

use http::Response;

use super::annotations::{Parser, parse_ranges};
use super::rate_limit::{self, LimitSpec, RateLimits, Verdict};
use crate::body::Body;
use crate::ingress::proxy::Proxy;
use crate::ingress::respond::generated;
use crate::ingress::snapshot::Route;
use crate::ingress::tail::Tail;

/// ingress-nginx's default `limit-burst-multiplier`.
pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;
/// Highest rate accepted: the GCRA works in microseconds.
const MAX_RATE: u32 = 1_000_000;

/// Everything this group of annotations asks of one Ingress.
#[derive(Debug, Default)]
pub struct Traffic {
    pub limits: Option<RateLimits>,
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
            let status = proxy.config.limit_status;
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
}

/// Reads the group's annotations; `None` when none of them is set (or all are off).
pub(super) fn parse(p: &mut Parser<'_>) -> Option<Arc<Traffic>> {
    let traffic = Traffic {
        limits: parse_limits(p),
    };
    let any = traffic.limits.is_some();
    any.then(|| Arc::new(traffic))
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
    use std::collections::BTreeMap;

    use crate::ingress::annotations::{ParsedAnnotations, parse_annotations};

    fn parse(pairs: &[(&str, &str)]) -> ParsedAnnotations {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_annotations(&map)
    }

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
