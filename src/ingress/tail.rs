//! The end of a request: the response body streamed to the client while holding the
//! endpoint's in-flight count, permit and HTTP/2 stream lease, and the bookkeeping that
//! ends in metrics and exactly one access-log event — when the body ends, or when it is
//! dropped because the client went away (logged as 499 if no answer existed yet).
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use crate::body::{Body, BoxError};
use crate::ingress::access_log::{self, Entry};
use crate::ingress::balancer::InFlight;
use crate::ingress::ingress_metrics as metrics;
use crate::ingress::upstream::BodySlot;
use crate::ingress::upstream_h2::H2Lease;

/// Held while a response streams: the endpoint's in-flight count and concurrency permit.
#[derive(Debug)]
pub(crate) struct Guards {
    pub(crate) _in_flight: Option<InFlight>,
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
    pub(crate) _lease: Option<H2Lease>,
}

/// Per-request bookkeeping that ends in metrics and one access-log event, exactly once:
/// when the response body ends, or when it is dropped (client gone).
#[derive(Debug)]
pub(crate) struct Tail {
    pub(crate) entry: Entry,
    start: Instant,
    log: bool,
    pub(crate) slot: Option<Arc<BodySlot>>,
    done: bool,
}

impl Tail {
    /// Starts timing a request described by `entry`; `log` enables its access-log line.
    pub(crate) fn new(entry: Entry, log: bool) -> Self {
        Self {
            entry,
            start: Instant::now(),
            log,
            slot: None,
            done: false,
        }
    }

    /// Finishes the tail for an answer whose body is already complete (generated
    /// answers and upgrades).
    pub(crate) fn attach(mut self, resp: Response<Body>) -> Response<Body> {
        self.entry.status = resp.status().as_u16();
        let bytes = resp.body().size_hint().exact().unwrap_or(0);
        self.finish(bytes);
        resp
    }

    fn finish(&mut self, response_bytes: u64) {
        if self.done {
            return;
        }
        self.done = true;
        let e = &mut self.entry;
        if e.status == 0 {
            // No answer was produced: the client went away first (nginx's 499).
            e.status = 499;
        }
        e.duration = self.start.elapsed();
        e.response_bytes = response_bytes;
        e.request_bytes = self.slot.as_ref().map_or(0, |s| s.bytes());
        metrics::record_request(
            e.ingress.as_deref().unwrap_or(""),
            e.service.as_deref().unwrap_or(""),
            e.status,
            e.duration,
            e.request_bytes,
            e.response_bytes,
        );
        if self.log {
            access_log::emit(e);
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let bytes = self.entry.response_bytes;
        self.finish(bytes);
    }
}

/// The upstream response body streamed to the client, holding the endpoint guards until
/// the last byte.
pub(crate) struct ProxiedBody {
    inner: Incoming,
    bytes: u64,
    tail: Option<Tail>,
    guards: Option<Guards>,
}

impl ProxiedBody {
    pub(crate) fn new(inner: Incoming, tail: Tail, guards: Guards) -> Self {
        Self {
            inner,
            bytes: 0,
            tail: Some(tail),
            guards: Some(guards),
        }
    }
}

impl HttpBody for ProxiedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.guards = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                this.guards = None;
                if let Some(mut t) = this.tail.take() {
                    t.finish(this.bytes);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ProxiedBody {
    fn drop(&mut self) {
        // The client went away mid-body: still one log line, with the bytes sent so far.
        if let Some(mut t) = self.tail.take() {
            t.finish(self.bytes);
        }
    }
}
