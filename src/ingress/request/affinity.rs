//! Cookie session affinity (`affinity: cookie` and the `session-cookie-*` annotations):
//! the first response carries a cookie, and later requests that present it go to the
//! same endpoint while that endpoint is eligible.
//!
//! Two modes, as in ingress-nginx:
//! - `balanced` (default): the cookie holds a random token, placed on the backend's
//!   consistent-hash ring. When an endpoint leaves, its clients spread over the others;
//!   when one joins, it takes over a fair share of the tokens.
//! - `persistent`: the cookie names the endpoint itself (a hash of its address). Clients
//!   stay until their endpoint leaves, then get a new cookie; new endpoints only get new
//!   clients.
//!
//! Neither value shows a pod address. The cookie is always `HttpOnly`; it is `Secure` when
//! the request came over HTTPS unless `session-cookie-secure` says otherwise.
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::COOKIE;
use regex::Regex;

/// ingress-nginx's default cookie name.
pub const DEFAULT_COOKIE: &str = "INGRESSCOOKIE";
/// Longest cookie lifetime accepted (ten years), so the date arithmetic cannot overflow.
const MAX_LIFETIME: u64 = 10 * 366 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Balanced,
    Persistent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    None,
    Lax,
    Strict,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            SameSite::None => "None",
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        }
    }
}

/// The cookie and how it steers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub mode: Mode,
    pub name: String,
    /// `None`: the route's path (or `/` for regex paths, which are no cookie paths).
    pub path: Option<String>,
    pub domain: Option<String>,
    /// `session-cookie-expires`: lifetime in seconds, sent as an `Expires` date.
    pub expires: Option<u64>,
    /// `session-cookie-max-age`: lifetime in seconds, sent as `Max-Age`.
    pub max_age: Option<u64>,
    pub same_site: Option<SameSite>,
    /// Leave `SameSite=None` out for browsers known to mishandle it.
    pub conditional_same_site_none: bool,
    /// `None`: Secure exactly when the request came over HTTPS.
    pub secure: Option<bool>,
    /// After a failed attempt moved the request to another endpoint, point the cookie
    /// there; otherwise the client keeps its endpoint for later requests.
    pub change_on_failure: bool,
}

impl Affinity {
    /// The `Set-Cookie` value carrying `value`. `route_path` and `regex` are the route's
    /// path and whether it is a regex; `https` how the client reached us; `user_agent` its
    /// User-Agent (for the SameSite=None exception).
    pub fn set_cookie(
        &self,
        value: &str,
        route_path: &str,
        regex: bool,
        https: bool,
        user_agent: Option<&str>,
        now: SystemTime,
    ) -> String {
        let path = match (&self.path, regex) {
            (Some(p), _) => p.as_str(),
            (None, false) if route_path.starts_with('/') => route_path,
            (None, _) => "/",
        };
        let mut out = format!("{}={value}; Path={path}", self.name);
        if let Some(d) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(d);
        }
        if let Some(secs) = self.expires {
            let at = now + Duration::from_secs(secs);
            out.push_str("; Expires=");
            out.push_str(&httpdate::fmt_http_date(at));
        }
        if let Some(secs) = self.max_age {
            out.push_str(&format!("; Max-Age={secs}"));
        }
        if self.secure.unwrap_or(https) {
            out.push_str("; Secure");
        }
        out.push_str("; HttpOnly");
        if let Some(s) = self.same_site {
            let omit = s == SameSite::None
                && self.conditional_same_site_none
                && user_agent.is_some_and(same_site_none_incompatible);
            if !omit {
                out.push_str("; SameSite=");
                out.push_str(s.as_str());
            }
        }
        out
    }
}

/// The value of cookie `name` in the request, if present and non-empty.
pub fn request_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// Browsers that reject `SameSite=None` cookies or read them as `Strict`: Chrome and
/// Chromium 51 to 66, Safari and embedded web views on iOS 12 and macOS 10.14, and UC
/// Browser before 12.13.2.
pub fn same_site_none_incompatible(ua: &str) -> bool {
    static OLD_CHROME: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"Chrom(?:e|ium)/(?:5[1-9]|6[0-6])\.").ok());
    static IOS_12: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"\(iP.+; CPU .*OS 12[_\d]*.*\) AppleWebKit/").ok());
    static MACOS_10_14: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"\(Macintosh;.*Mac OS X 10_14[_\d]*.*\) AppleWebKit/").ok());
    static UC: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"UCBrowser/(\d+)\.(\d+)\.(\d+)").ok());
    let hit = |re: &LazyLock<Option<Regex>>| re.as_ref().is_some_and(|r| r.is_match(ua));
    if hit(&OLD_CHROME) || hit(&IOS_12) {
        return true;
    }
    if hit(&MACOS_10_14) {
        // Safari itself, or a web view (which names no browser at the end).
        let safari = ua.contains("Version/") && ua.contains("Safari") && !ua.contains("Chrom");
        let web_view = ua.trim_end().ends_with("(KHTML, like Gecko)");
        if safari || web_view {
            return true;
        }
    }
    if let Some(c) = UC.as_ref().and_then(|r| r.captures(ua)) {
        let n = |i: usize| {
            c.get(i)
                .and_then(|m| m.as_str().parse::<u32>().ok())
                .unwrap_or(0)
        };
        return (n(1), n(2), n(3)) < (12, 13, 2);
    }
    false
}

/// `affinity`: only `cookie` exists.
pub fn parse_type(v: &str) -> Result<(), String> {
    match v {
        "cookie" => Ok(()),
        _ => Err("the only affinity type is cookie".into()),
    }
}

pub fn parse_mode(v: &str) -> Result<Mode, String> {
    match v {
        "balanced" => Ok(Mode::Balanced),
        "persistent" => Ok(Mode::Persistent),
        _ => Err("expected balanced or persistent".into()),
    }
}

/// A cookie name: an RFC 6265 token.
pub fn parse_name(v: &str) -> Result<String, String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if v.is_empty() || v.len() > 256 || !v.bytes().all(token) {
        return Err("expected a cookie name (letters, digits and !#$%&'*+-.^_`|~)".into());
    }
    Ok(v.to_string())
}

pub fn parse_path(v: &str) -> Result<String, String> {
    let ok = v.starts_with('/')
        && v.len() <= 2048
        && v.bytes().all(|b| b.is_ascii_graphic() && b != b';');
    if !ok {
        return Err("expected an absolute path without spaces or ;".into());
    }
    Ok(v.to_string())
}

pub fn parse_domain(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !ok {
        return Err("expected a domain name".into());
    }
    Ok(v.to_string())
}

/// Seconds, a non-negative integer.
pub fn parse_seconds(v: &str) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) && n <= MAX_LIFETIME => Ok(n),
        _ => Err("expected a number of seconds (at most ten years)".into()),
    }
}

pub fn parse_same_site(v: &str) -> Result<SameSite, String> {
    match v.to_ascii_lowercase().as_str() {
        "none" => Ok(SameSite::None),
        "lax" => Ok(SameSite::Lax),
        "strict" => Ok(SameSite::Strict),
        _ => Err("expected None, Lax or Strict".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affinity() -> Affinity {
        Affinity {
            mode: Mode::Balanced,
            name: DEFAULT_COOKIE.into(),
            path: None,
            domain: None,
            expires: None,
            max_age: None,
            same_site: None,
            conditional_same_site_none: false,
            secure: None,
            change_on_failure: false,
        }
    }

    #[test]
    fn cookie_attributes() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = affinity();
        assert_eq!(
            a.set_cookie("abc", "/shop", false, false, None, now),
            "INGRESSCOOKIE=abc; Path=/shop; HttpOnly"
        );
        assert_eq!(
            a.set_cookie("abc", "/shop/(.*)", true, true, None, now),
            "INGRESSCOOKIE=abc; Path=/; Secure; HttpOnly"
        );
        let a = Affinity {
            name: "route".into(),
            path: Some("/app".into()),
            domain: Some("example.com".into()),
            expires: Some(3600),
            max_age: Some(60),
            same_site: Some(SameSite::Lax),
            secure: Some(false),
            ..affinity()
        };
        assert_eq!(
            a.set_cookie("x", "/", false, true, None, now),
            "route=x; Path=/app; Domain=example.com; Expires=Tue, 14 Nov 2023 23:13:20 GMT; \
             Max-Age=60; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn conditional_same_site_none() {
        let now = SystemTime::UNIX_EPOCH;
        let a = Affinity {
            same_site: Some(SameSite::None),
            conditional_same_site_none: true,
            secure: Some(true),
            ..affinity()
        };
        let old = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/65.0.3325.181 Safari/537.36";
        let new = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        let ios12 = "Mozilla/5.0 (iPhone; CPU iPhone OS 12_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1";
        let uc = "Mozilla/5.0 (Linux; U; Android 8.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 UCBrowser/12.10.0.1163 Mobile Safari/537.36";
        for ua in [old, ios12, uc] {
            assert!(same_site_none_incompatible(ua), "{ua}");
            assert!(
                !a.set_cookie("v", "/", false, true, Some(ua), now)
                    .contains("SameSite")
            );
        }
        assert!(!same_site_none_incompatible(new));
        assert!(
            a.set_cookie("v", "/", false, true, Some(new), now)
                .ends_with("; SameSite=None")
        );
        let plain = Affinity {
            conditional_same_site_none: false,
            ..a
        };
        assert!(
            plain
                .set_cookie("v", "/", false, true, Some(old), now)
                .ends_with("; SameSite=None")
        );
    }

    #[test]
    fn reads_the_named_cookie() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; INGRESSCOOKIE=\"tok\"".parse().unwrap());
        h.append(COOKIE, "b=2".parse().unwrap());
        assert_eq!(request_cookie(&h, "INGRESSCOOKIE"), Some("tok"));
        assert_eq!(request_cookie(&h, "b"), Some("2"));
        assert_eq!(request_cookie(&h, "c"), None);
        h.append(COOKIE, "c=".parse().unwrap());
        assert_eq!(request_cookie(&h, "c"), None);
    }
}
