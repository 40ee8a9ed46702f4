//! The request's host, read once per request: as the client sent it (`:authority` or
//! Host, port included) for the access log, forwarded headers and the Host to the pod, and
//! as the lower-case name without port or trailing dot that routing, filters and
//! redirects compare. Routing, the access record and the proxy phases all share this one
//! reading instead of each splitting the header again.
use http::{HeaderValue, Request, header};

use crate::ingress::request::forwarded;

#[derive(Debug, Clone)]
pub struct RequestHost {
    /// Shares the request's buffer when it came from the Host header.
    raw: HeaderValue,
    name: Name,
    port: Option<u16>,
}

#[derive(Debug, Clone)]
enum Name {
    /// A byte range of `raw` (the usual case: already lower case).
    Span(usize, usize),
    /// The name had upper-case letters.
    Lowered(Box<str>),
}

impl RequestHost {
    pub fn of<B>(req: &Request<B>) -> Self {
        Self::from_value(Self::raw_value(req))
    }

    /// Only the host as sent (for answers given before routing, which need no name).
    /// Shares the request's buffer when it came from the Host header; empty when the
    /// request named no valid host.
    pub fn raw_value<B>(req: &Request<B>) -> HeaderValue {
        match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => req
                .headers()
                .get(header::HOST)
                .filter(|v| v.to_str().is_ok())
                .cloned(),
        }
        .unwrap_or_else(|| HeaderValue::from_static(""))
    }

    fn from_value(raw: HeaderValue) -> Self {
        let s = raw.to_str().unwrap_or("");
        let (split, port) = forwarded::split_host(s);
        let name = match split {
            std::borrow::Cow::Borrowed(n) => {
                // `n` is a sub-slice of `s`: its offset locates it.
                let start = n.as_ptr() as usize - s.as_ptr() as usize;
                Name::Span(start, start + n.len())
            }
            std::borrow::Cow::Owned(n) => Name::Lowered(n.into_boxed_str()),
        };
        Self { raw, name, port }
    }

    /// As sent, port included; empty when the request named no (valid) host.
    pub fn raw(&self) -> &str {
        self.raw.to_str().unwrap_or("")
    }

    pub fn header(&self) -> &HeaderValue {
        &self.raw
    }

    /// Lower case, without port or trailing dot.
    pub fn name(&self) -> &str {
        match &self.name {
            Name::Span(a, b) => self.raw().get(*a..*b).unwrap_or(""),
            Name::Lowered(n) => n,
        }
    }

    /// The port the client named, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(req: Request<()>) -> (String, String, Option<u16>) {
        let h = RequestHost::of(&req);
        (h.raw().to_string(), h.name().to_string(), h.port())
    }

    #[test]
    fn the_host_header_is_split_and_lowered_once() {
        let req = Request::builder()
            .uri("/x")
            .header("host", "Shop.Example.test.:8443")
            .body(())
            .unwrap();
        assert_eq!(
            host(req),
            (
                "Shop.Example.test.:8443".into(),
                "shop.example.test".into(),
                Some(8443)
            )
        );
        let req = Request::builder()
            .uri("/x")
            .header("host", "[::1]:80")
            .body(())
            .unwrap();
        assert_eq!(host(req), ("[::1]:80".into(), "[::1]".into(), Some(80)));
    }

    #[test]
    fn the_authority_of_an_absolute_uri_wins_over_the_host_header() {
        let req = Request::builder()
            .uri("http://a.test:81/x")
            .header("host", "b.test")
            .body(())
            .unwrap();
        assert_eq!(host(req), ("a.test:81".into(), "a.test".into(), Some(81)));
    }

    #[test]
    fn no_usable_host_is_an_empty_one() {
        let req = Request::builder().uri("/x").body(()).unwrap();
        assert_eq!(host(req), (String::new(), String::new(), None));
        let req = Request::builder()
            .uri("/x")
            .header(
                "host",
                HeaderValue::from_bytes(b"caf\xc3\xa9.test").unwrap(),
            )
            .body(())
            .unwrap();
        assert_eq!(host(req).0, "");
    }
}
