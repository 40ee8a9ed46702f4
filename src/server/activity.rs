//! What a connection is doing, as the connection's own task needs to know it to enforce
//! idle timeouts, drain and pressure: how many requests are in flight, when the last one
//! finished, and whether any request was served yet. A request counts as in flight until
//! its response body has been sent (or dropped), which is what [`Tracked`] marks.
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::body::{Body, BoxError};

/// Milliseconds on a process-wide monotonic clock (never 0 after the first call).
pub fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

/// Shared between a connection's task and its requests.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicU32,
    served: AtomicU32,
    idle_since_ms: AtomicU64,
    h2: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            in_flight: AtomicU32::new(0),
            served: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(monotonic_ms()),
            h2: AtomicBool::new(false),
        })
    }

    /// A request arrived; the guard ends it.
    pub fn start(self: &Arc<Self>, h2: bool) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::Relaxed);
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        RequestGuard(self.clone())
    }

    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Whether any request has been seen on this connection.
    pub fn served_any(&self) -> bool {
        self.served.load(Ordering::Relaxed) > 0
    }

    pub fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    /// When the connection last became idle (or opened), on [`monotonic_ms`]'s clock.
    pub fn idle_since_ms(&self) -> u64 {
        self.idle_since_ms.load(Ordering::Relaxed)
    }
}

/// Ends one request's time in flight when dropped.
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // Store the time first so a task that sees in_flight == 0 reads a fresh time.
        self.0
            .idle_since_ms
            .store(monotonic_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is finished or dropped.
/// Not boxed again: hyper is generic over the body, so this costs no allocation.
pub struct Tracked {
    inner: Body,
    guard: Option<RequestGuard>,
}

impl Tracked {
    pub fn new(inner: Body, guard: RequestGuard) -> Self {
        Tracked {
            inner,
            guard: Some(guard),
        }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn request_in_flight_until_body_finished() {
        let a = Activity::new();
        assert!(a.is_idle() && !a.served_any());
        let body = Tracked::new(crate::body::full("hello"), a.start(false));
        assert!(!a.is_idle());
        assert!(a.served_any());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        assert!(a.is_idle());
    }

    #[test]
    fn dropped_body_ends_the_request() {
        let a = Activity::new();
        let body = Tracked::new(crate::body::empty(), a.start(true));
        assert!(a.is_h2());
        drop(body);
        assert!(a.is_idle());
    }
}
