//! A plain HTTP/1.1 request offered to its handler as the bytes of its head, before any
//! `Request` or header map is built (`Respond::respond_raw`). A handler that can answer
//! from the raw fields (the ingress gateway's plain lane) skips building and encoding
//! maps on both sides; one that cannot declines, and the request is served the usual way
//! from the same bytes.
use bytes::Bytes;
use http::Response;

pub use super::h1_write::Framing;
use crate::body::Body;

/// Where one field sits in a request head (offsets into it).
#[derive(Clone, Copy, Default)]
pub(super) struct Span {
    pub(super) name: (u32, u32),
    pub(super) value: (u32, u32),
}

/// A request head with no body and no upgrade, as read from the client.
#[derive(Clone, Copy)]
pub struct RawRequest<'a> {
    pub(super) head: &'a Bytes,
    pub(super) method: (u32, u32),
    pub(super) target: (u32, u32),
    pub(super) minor: u8,
    pub(super) fields: &'a [Span],
}

fn range((at, len): (u32, u32)) -> std::ops::Range<usize> {
    at as usize..(at + len) as usize
}

impl<'a> RawRequest<'a> {
    pub fn method(&self) -> &'a [u8] {
        &self.head[range(self.method)]
    }

    /// The request target as sent (origin form for most requests).
    pub fn target(&self) -> &'a [u8] {
        &self.head[range(self.target)]
    }

    /// The target as a slice sharing the head's buffer, for values kept past the request.
    pub fn target_shared(&self) -> Bytes {
        self.head.slice(range(self.target))
    }

    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub fn minor_version(&self) -> u8 {
        self.minor
    }

    /// The header fields in the order sent, names as the client spelled them.
    pub fn fields(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let head: &'a Bytes = self.head;
        self.fields
            .iter()
            .map(move |s| (&head[range(s.name)], &head[range(s.value)]))
    }

    /// A field value (one `fields()` gave) as a slice sharing the head's buffer.
    pub fn share(&self, value: &[u8]) -> Bytes {
        self.head.slice_ref(value)
    }
}

/// What a handler did with a raw request.
pub enum RawAnswer {
    /// Not taken, nothing sent anywhere: serve it the usual way.
    Declined,
    /// Sent on, but the exchange broke before any answer came back; the request has no
    /// body and is idempotent, so it is served again the usual way.
    Again,
    /// An answer of the handler's own, written the usual way.
    Answer(Response<Body>),
    /// The answer's head is in the output buffer; `body` follows it framed as `framing`.
    Relay {
        body: Body,
        framing: Framing,
        keep_alive: bool,
    },
}
