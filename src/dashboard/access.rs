//! Who may see the admin listener's sensitive parts (the dashboard, its JSON, `/problems`,
//! `/routes`): optionally only loopback clients, optionally only holders of a bearer
//! token. `/healthz`, `/readyz` and `/metrics` are never restricted: kubelet probes and
//! Prometheus scrapes come from other addresses and carry no token.
//!
//! The dashboard's HTML is the same bytes in every binary and holds no data, and a browser
//! cannot put a bearer token on a page load, so with a token it is served to anyone the
//! loopback rule lets in; the page then sends the token on its own requests for the JSON.
use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::body::{self, Body};

/// The configured restrictions; the default restricts nothing.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Required as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Only clients on a loopback address get answers.
    pub loopback_only: bool,
}

/// Why a request for a sensitive path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("forbidden: this admin endpoint answers only on loopback")]
    NotLoopback,
    #[error("unauthorized: send Authorization: Bearer <admin token>")]
    MissingToken,
    #[error("unauthorized: wrong admin token")]
    WrongToken,
}

impl Refused {
    pub fn status(self) -> StatusCode {
        match self {
            Refused::NotLoopback => StatusCode::FORBIDDEN,
            Refused::MissingToken | Refused::WrongToken => StatusCode::UNAUTHORIZED,
        }
    }

    /// The plain-text answer, with the challenge a 401 must carry.
    pub fn response(self) -> Response<Body> {
        let mut resp = body::text(self.status(), self.to_string());
        if self.status() == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis admin\""),
            );
        }
        resp
    }
}

/// How much a path is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Probes and metrics: open.
    Open,
    /// The page shell: the loopback rule only.
    Page,
    /// Data: the loopback rule and the token.
    Data,
}

impl Access {
    /// Decides a request from `remote` with `headers` for a path guarded by `guard`.
    pub fn check(&self, guard: Guard, remote: IpAddr, headers: &HeaderMap) -> Result<(), Refused> {
        if guard == Guard::Open {
            return Ok(());
        }
        // An IPv4 client on a dual-stack socket shows up as ::ffff:127.0.0.1.
        if self.loopback_only && !remote.to_canonical().is_loopback() {
            return Err(Refused::NotLoopback);
        }
        let (Guard::Data, Some(token)) = (guard, &self.token) else {
            return Ok(());
        };
        let Some(given) = bearer(headers) else {
            return Err(Refused::MissingToken);
        };
        if constant_time_eq(given, token.as_bytes()) {
            Ok(())
        } else {
            Err(Refused::WrongToken)
        }
    }
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    let token = &rest[start..];
    let end = token.iter().rposition(|b| *b != b' ').map_or(0, |i| i + 1);
    Some(&token[..end])
}

/// Compares without stopping at the first difference, so the answer's timing does not
/// tell an attacker how much of a guess was right. Only the length can leak.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));

    #[test]
    fn nothing_configured_lets_everyone_in() {
        let a = Access::default();
        for guard in [Guard::Open, Guard::Page, Guard::Data] {
            assert_eq!(a.check(guard, REMOTE, &headers(None)), Ok(()));
        }
    }

    #[test]
    fn token_is_required_for_data_only() {
        let a = Access {
            token: Some("s3cret".into()),
            loopback_only: false,
        };
        assert_eq!(
            a.check(Guard::Data, LOCAL, &headers(None)),
            Err(Refused::MissingToken)
        );
        assert_eq!(
            a.check(Guard::Data, LOCAL, &headers(Some("Bearer s3cre"))),
            Err(Refused::WrongToken)
        );
        assert_eq!(
            a.check(Guard::Data, LOCAL, &headers(Some("Bearer s3cret!"))),
            Err(Refused::WrongToken)
        );
        assert_eq!(
            a.check(Guard::Data, LOCAL, &headers(Some("Basic s3cret"))),
            Err(Refused::MissingToken)
        );
        assert_eq!(
            a.check(Guard::Data, REMOTE, &headers(Some("bearer  s3cret "))),
            Ok(())
        );
        assert_eq!(a.check(Guard::Page, REMOTE, &headers(None)), Ok(()));
        assert_eq!(a.check(Guard::Open, REMOTE, &headers(None)), Ok(()));
        assert_eq!(Refused::WrongToken.status(), StatusCode::UNAUTHORIZED);
        let resp = Refused::MissingToken.response();
        assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn loopback_only_refuses_other_addresses_before_the_token() {
        let a = Access {
            token: Some("t".into()),
            loopback_only: true,
        };
        let ok = headers(Some("Bearer t"));
        assert_eq!(a.check(Guard::Data, REMOTE, &ok), Err(Refused::NotLoopback));
        assert_eq!(a.check(Guard::Page, REMOTE, &ok), Err(Refused::NotLoopback));
        assert_eq!(Refused::NotLoopback.status(), StatusCode::FORBIDDEN);
        assert_eq!(a.check(Guard::Data, LOCAL, &ok), Ok(()));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(a.check(Guard::Data, mapped, &ok), Ok(()));
        assert_eq!(a.check(Guard::Data, "::1".parse().unwrap(), &ok), Ok(()));
        assert_eq!(a.check(Guard::Open, REMOTE, &headers(None)), Ok(()));
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
