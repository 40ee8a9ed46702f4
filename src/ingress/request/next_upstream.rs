//! `proxy-next-upstream`, `proxy-next-upstream-tries`, `proxy-next-upstream-timeout`:
//! when a failed attempt is passed on to another endpoint.
//!
//! Without these annotations the exchange keeps its built-in rule (one more attempt after
//! a connect failure, or after a broken exchange of an idempotent request). With them:
//! - `error`: connect failures and exchanges that broke before a response head;
//! - `timeout`: connect timeouts and response heads that did not arrive in time;
//! - `http_500`, `http_502`, `http_503`, `http_504`, `http_403`, `http_404`, `http_429`:
//!   a response with that status (when no attempt is left, it is what the client gets);
//! - `invalid_header`: accepted, and covered by `error` here (a malformed head fails
//!   the exchange);
//! - `non_idempotent`: also retry POST, PATCH and LOCK-like methods;
//! - `off`: never retry.
//!
//! A request whose body has started streaming upstream is never sent again (the body is
//! not buffered), whatever the annotation says.
use std::time::Duration;

use http::StatusCode;

/// ingress-nginx's default `proxy-next-upstream-tries`.
pub const DEFAULT_TRIES: u8 = 3;
/// `proxy-next-upstream-tries: 0` means no limit in nginx; here it means this many.
const UNLIMITED_TRIES: u8 = 16;

/// When a failed attempt moves on to another endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextUpstream {
    pub error: bool,
    pub timeout: bool,
    /// Statuses that count as failures.
    pub statuses: Vec<StatusCode>,
    pub non_idempotent: bool,
    /// Attempts in all, the first included (1: no retry).
    pub tries: u8,
    /// No new attempt starts once this much time has passed since the first.
    pub timeout_total: Option<Duration>,
}

impl Default for NextUpstream {
    /// ingress-nginx's defaults: `error timeout`, 3 tries, no time limit.
    fn default() -> Self {
        NextUpstream {
            error: true,
            timeout: true,
            statuses: Vec::new(),
            non_idempotent: false,
            tries: DEFAULT_TRIES,
            timeout_total: None,
        }
    }
}

impl NextUpstream {
    /// Whether a response with `status` is retried.
    pub fn on_status(&self, status: StatusCode) -> bool {
        self.statuses.contains(&status)
    }

    /// Whether another attempt may start `elapsed` after the first began.
    pub fn in_time(&self, elapsed: Duration) -> bool {
        self.timeout_total.is_none_or(|t| elapsed < t)
    }
}

/// Applies a `proxy-next-upstream` value (space-separated conditions) to `n`.
pub fn parse_conditions(v: &str, n: &mut NextUpstream) -> Result<(), String> {
    n.error = false;
    n.timeout = false;
    n.statuses.clear();
    n.non_idempotent = false;
    let mut off = false;
    let mut any = false;
    for word in v.split_whitespace() {
        any = true;
        match word {
            "error" | "invalid_header" => n.error = true,
            "timeout" => n.timeout = true,
            "non_idempotent" => n.non_idempotent = true,
            "off" => off = true,
            _ => {
                let code = word
                    .strip_prefix("http_")
                    .and_then(|c| c.parse::<u16>().ok())
                    .filter(|c| matches!(c, 500 | 502 | 503 | 504 | 403 | 404 | 429))
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| {
                        format!(
                            "{word:?} is not a condition (error, timeout, invalid_header, \
                             http_500, http_502, http_503, http_504, http_403, http_404, \
                             http_429, non_idempotent, off)"
                        )
                    })?;
                if !n.statuses.contains(&code) {
                    n.statuses.push(code);
                }
            }
        }
    }
    if !any {
        return Err("expected conditions such as \"error timeout\"".into());
    }
    if off {
        if n.error || n.timeout || !n.statuses.is_empty() || n.non_idempotent {
            return Err("off cannot be combined with other conditions".into());
        }
        n.tries = 1;
    }
    Ok(())
}

/// `proxy-next-upstream-tries`: attempts in all; 0 for nginx's "no limit".
pub fn parse_tries(v: &str) -> Result<u8, String> {
    match v.parse::<u32>() {
        Ok(0) => Ok(UNLIMITED_TRIES),
        Ok(n) if n <= u32::from(UNLIMITED_TRIES) && v.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(n as u8)
        }
        _ => Err(format!("expected an integer from 0 to {UNLIMITED_TRIES}")),
    }
}

/// `proxy-next-upstream-timeout`: seconds; 0 for no limit.
pub fn parse_total_timeout(v: &str) -> Result<Option<Duration>, String> {
    match v.parse::<u32>() {
        Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) && n <= 24 * 3600 => {
            Ok((n > 0).then(|| Duration::from_secs(u64::from(n))))
        }
        _ => Err("expected seconds (0 for no limit)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() {
        let mut n = NextUpstream::default();
        parse_conditions("error  http_503 http_502 non_idempotent", &mut n).unwrap();
        assert!(n.error && !n.timeout && n.non_idempotent);
        assert!(n.on_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!n.on_status(StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(n.tries, DEFAULT_TRIES);
        parse_conditions("off", &mut n).unwrap();
        assert_eq!(n.tries, 1);
        assert!(!n.error && !n.timeout && n.statuses.is_empty());
        for bad in ["", "http_418", "error off", "sometimes", "http_5xx"] {
            assert!(
                parse_conditions(bad, &mut NextUpstream::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn tries_and_timeout() {
        assert_eq!(parse_tries("5"), Ok(5));
        assert_eq!(parse_tries("0"), Ok(UNLIMITED_TRIES));
        assert!(parse_tries("17").is_err() && parse_tries("-1").is_err());
        assert_eq!(parse_total_timeout("0"), Ok(None));
        assert_eq!(parse_total_timeout("10"), Ok(Some(Duration::from_secs(10))));
        assert!(parse_total_timeout("1.5").is_err());
        let n = NextUpstream {
            timeout_total: Some(Duration::from_secs(1)),
            ..NextUpstream::default()
        };
        assert!(n.in_time(Duration::from_millis(999)) && !n.in_time(Duration::from_secs(1)));
    }
}
