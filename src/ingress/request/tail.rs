//! The end of a request: the response body streamed to the client while holding the
//! endpoint's in-flight count, permit and HTTP/2 stream lease, and the bookkeeping that
//! ends in metrics and exactly one access-log event — when the body ends, or when it is
//! dropped because the client went away (logged as 499 if no answer existed yet).
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use crate::body::{Body, BoxError};
use crate::ingress::model::ingress_metrics as metrics;
use crate::ingress::model::metric_labels::method_index;
use crate::ingress::model::route_metrics::{self, Finished, RouteMetrics};
use crate::ingress::request::access_log::{self, Entry};
use crate::ingress::request::balancer::InFlight;
use crate::ingress::request::upstream::BodySlot;
use crate::ingress::request::upstream::{Lease, ResponseBody};

/// Held while a response streams: the endpoint's in-flight count and concurrency permit,
/// and the upstream connection (HTTP/1.1: back to its pool when this drops).
#[derive(Debug)]
pub(crate) struct Guards {
    pub(crate) _in_flight: Option<InFlight>,
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
    pub(crate) _lease: Option<Lease>,
}

/// Per-request bookkeeping that ends in metrics and one access-log event, exactly once:
/// when the response body ends, or when it is dropped (client gone).
#[derive(Debug)]
pub(crate) struct Tail {
    pub(crate) entry: Entry,
    start: Instant,
    log: bool,
    pub(crate) slot: Option<Arc<BodySlot>>,
    /// The matched route's handles; None for answers given before or without routing.
    pub(crate) route: Option<Arc<RouteMetrics>>,
    /// A `limit-connections` slot, released with the tail when the response is done.
    pub(crate) hold: Option<crate::ingress::request::rate_limit::ConnGuard>,
    done: bool,
}

impl Tail {
    /// Starts timing a request described by `entry`; `log` enables its access-log line.
    pub(crate) fn new(entry: Entry, log: bool) -> Self {
        Self::started_at(entry, log, Instant::now())
    }

    /// `new` for a request that began at `start`. Built here, not by `new` and then
    /// changed: that read the clock for nothing and moved the record once more.
    pub(crate) fn started_at(entry: Entry, log: bool, start: Instant) -> Self {
        Self {
            entry,
            start,
            log,
            slot: None,
            route: None,
            hold: None,
            done: false,
        }
    }

    /// Ends the tail without a record: the request is served again another way, which
    /// keeps its own.
    pub(crate) fn discard(mut self) {
        self.done = true;
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
        let done = Finished {
            method: method_index(&e.method),
            status: e.status,
            duration: e.duration,
            request_bytes: e.request_bytes,
            response_bytes: e.response_bytes,
        };
        match &self.route {
            Some(r) => r.record(e.service.as_ref(), &done),
            None => route_metrics::record_unrouted(&done),
        }
        if self.log {
            let now = std::time::SystemTime::now();
            e.time = now.checked_sub(e.duration).unwrap_or(now);
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
///
/// A pod that stops sending mid-body gets `read_timeout` between two reads (nginx's
/// `proxy_read_timeout` applies between reads too); then the response is cut off, which
/// frees the client connection, the upstream connection and the endpoint's slot.
pub(crate) struct ProxiedBody {
    inner: ResponseBody,
    bytes: u64,
    tail: Option<Tail>,
    guards: Option<Guards>,
    read_timeout: Duration,
    /// Created the first time the pod keeps us waiting, so bodies that arrive whole
    /// (most) cost no timer.
    stall: Option<Pin<Box<Sleep>>>,
    stall_armed: bool,
}

impl ProxiedBody {
    pub(crate) fn new(
        inner: ResponseBody,
        tail: Tail,
        guards: Guards,
        read_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            bytes: 0,
            tail: Some(tail),
            guards: Some(guards),
            read_timeout,
            stall: None,
            stall_armed: false,
        }
    }

    /// The pod has nothing for us right now: start (or keep) the between-reads clock.
    /// True when it ran out.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = tokio::time::Instant::now() + self.read_timeout;
        let sleep = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.stall_armed {
            self.stall_armed = true;
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// The pod paused longer than the read timeout in the middle of a response body.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {0:?} in the middle of the response body")]
pub(crate) struct BodyReadTimeout(Duration);

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
                this.stall_armed = false;
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.guards = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.guards = None;
                // Finished where it lies, then dropped there (its route handles and
                // connection slot go now): taking it out of the option copied the whole
                // record.
                if let Some(t) = &mut this.tail {
                    t.finish(this.bytes);
                }
                this.tail = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.stalled(cx) {
                    this.guards = None;
                    metrics::record_upstream_error(
                        this.tail
                            .as_ref()
                            .and_then(|t| t.entry.service.as_deref())
                            .unwrap_or(""),
                        "read_timeout",
                    );
                    return Poll::Ready(Some(Err(Box::new(BodyReadTimeout(this.read_timeout)))));
                }
                Poll::Pending
            }
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
        if let Some(t) = &mut self.tail {
            t.finish(self.bytes);
        }
    }
}
