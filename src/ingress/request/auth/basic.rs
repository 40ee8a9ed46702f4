//! Basic auth (`auth-type: basic`): the request's `Authorization: Basic` credentials checked
//! against the users compile read from the Secret.
//!
//! bcrypt and SHA-crypt cost milliseconds by design, so they run on the blocking pool, and
//! a successful check is remembered for [`VERIFIED_TTL`] under a digest of the header. The
//! memory belongs to one exact user list: a changed Secret starts a new one at once.
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use super::cache::{self, Cache};
use super::htpasswd::Users;
use super::metrics::{self, Kind, count};
use crate::body::Body;
use crate::ingress::request::respond::generated;

/// Slow hash checks (bcrypt, SHA-crypt) running at once, process-wide.
static SLOW_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

/// How long a verified Authorization header is trusted without hashing again.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);

/// Where the users come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretFormat {
    /// Key `auth` holds an htpasswd file (the default).
    AuthFile,
    /// Every key is a user, its value the hash.
    AuthMap,
}

/// The users as compile found them.
#[derive(Debug)]
pub enum UsersState {
    /// Not looked up (admission parses without a store); answered like a missing Secret.
    Unresolved,
    /// The Secret does not exist: 503.
    Missing,
    /// The Secret exists but holds no usable user list: 500.
    Unusable,
    Ready(Arc<Users>),
}

#[derive(Debug)]
pub struct Basic {
    /// `namespace` (None: the Ingress's own) and name of the Secret.
    pub secret_namespace: Option<String>,
    pub secret_name: String,
    pub format: SecretFormat,
    pub realm: String,
    pub challenge: HeaderValue,
    pub users: UsersState,
    /// Shared by every compile that saw the same user list (see `resolve`), so a recompile
    /// for an unrelated change does not make every user pay a slow hash again.
    pub(super) verified: Arc<Cache<()>>,
}

impl Basic {
    pub fn new(
        secret_namespace: Option<String>,
        secret_name: String,
        format: SecretFormat,
        realm: String,
    ) -> Result<Basic, String> {
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
            .map_err(|_| "the realm cannot be sent in a header".to_string())?;
        Ok(Basic {
            secret_namespace,
            secret_name,
            format,
            realm,
            challenge,
            users: UsersState::Unresolved,
            verified: Arc::default(),
        })
    }

    /// `None` when the request carries valid credentials, else the answer to send.
    pub async fn check(&self, headers: &HeaderMap) -> Option<Response<Body>> {
        let users = match &self.users {
            UsersState::Ready(users) => users,
            UsersState::Unresolved | UsersState::Missing => {
                count(Kind::Basic, metrics::Outcome::FailClosed);
                return Some(generated(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the basic auth Secret of this Ingress is missing",
                ));
            }
            UsersState::Unusable => {
                count(Kind::Basic, metrics::Outcome::FailClosed);
                return Some(generated(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the basic auth Secret of this Ingress is unusable",
                ));
            }
        };
        let Some(header) = headers.get(header::AUTHORIZATION) else {
            count(Kind::Basic, metrics::Outcome::Denied);
            return Some(self.challenge());
        };
        let key = cache::key(&[header.as_bytes()]);
        if self.verified.get(&key).is_some() {
            count(Kind::Basic, metrics::Outcome::Cached);
            return None;
        }
        let ok = match credentials(headers) {
            Some((user, password)) => match users.get(&user) {
                Some(hash) if hash.is_slow() => {
                    // A flood of guesses waits here instead of filling the blocking pool.
                    let Ok(_permit) = SLOW_CHECKS.acquire().await else {
                        return Some(self.challenge());
                    };
                    let hash = hash.clone();
                    tokio::task::spawn_blocking(move || hash.verify(&password))
                        .await
                        .unwrap_or(false)
                }
                Some(hash) => hash.verify(&password),
                None => false,
            },
            None => false,
        };
        if ok {
            count(Kind::Basic, metrics::Outcome::Pass);
            self.verified.put(key, (), VERIFIED_TTL);
            return None;
        }
        count(Kind::Basic, metrics::Outcome::Denied);
        Some(self.challenge())
    }

    fn challenge(&self) -> Response<Body> {
        let mut resp = generated(StatusCode::UNAUTHORIZED, "authorization required");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, self.challenge.clone());
        resp
    }
}

/// The user and password of a `Basic` Authorization header.
pub fn credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn credentials_parse() {
        // "alice:pa:ss" — the password may contain colons.
        let (u, p) = credentials(&with_auth("basic YWxpY2U6cGE6c3M=")).unwrap();
        assert_eq!((u.as_str(), p.as_slice()), ("alice", &b"pa:ss"[..]));
        assert!(credentials(&with_auth("Bearer YWxpY2U6cGE6c3M=")).is_none());
        assert!(credentials(&with_auth("Basic !!!")).is_none());
        assert!(credentials(&with_auth("Basic bm9jb2xvbg==")).is_none());
        assert!(credentials(&HeaderMap::new()).is_none());
    }

    #[tokio::test]
    async fn states_and_challenge() {
        let mut b = Basic::new(None, "s".into(), SecretFormat::AuthFile, "Staff".into()).unwrap();
        let status = |r: Option<Response<Body>>| r.map(|r| r.status().as_u16());
        assert_eq!(status(b.check(&HeaderMap::new()).await), Some(503));
        b.users = UsersState::Unusable;
        assert_eq!(status(b.check(&HeaderMap::new()).await), Some(500));
        let parsed =
            super::super::htpasswd::parse_file(b"alice:{SHA}W8r/fyL/UzygmbNAjq2HbA67qac=").unwrap();
        b.users = UsersState::Ready(Arc::new(parsed.users));
        let r = b.check(&HeaderMap::new()).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"Staff\"");
        // alice:open sesame
        let good = with_auth("Basic YWxpY2U6b3BlbiBzZXNhbWU=");
        assert!(b.check(&good).await.is_none());
        assert_eq!(b.verified.len(), 1, "remembered");
        assert!(b.check(&good).await.is_none());
        // alice:open sesame!
        let bad = with_auth("Basic YWxpY2U6b3BlbiBzZXNhbWUh");
        assert_eq!(status(b.check(&bad).await), Some(401));
        assert!(Basic::new(None, "s".into(), SecretFormat::AuthFile, "a\nb".into()).is_err());
    }
}
