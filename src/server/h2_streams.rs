//! HTTP/2 streams polled inside their connection's task instead of one task each.
//!
//! hyper hands every stream it accepts to an executor. With tokio's, each stream becomes a
//! task: an aligned allocation sized for the handler's whole future, a copy of that future
//! into it, and a pass through the scheduler on every wake-up (a stream waking its
//! connection and the connection waking the stream, at least twice per request). A
//! connection's streams run on the connection's own thread anyway (one current-thread
//! runtime per worker), so a set of futures the connection task polls gives the same
//! concurrency for less: a stream's future is boxed (hyper's stream type names its
//! executor, so the set cannot hold it unboxed) and its wake-ups reach only this task.
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

/// The executor given to hyper's HTTP/2 server: it only queues the stream. hyper starts
/// streams while the connection is being polled, and [`Driven`] takes what was queued
/// right after each such poll, so the queue needs no waker of its own.
#[derive(Clone)]
pub(super) struct StreamExec {
    queued: Arc<Mutex<Vec<Stream>>>,
}

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

impl StreamExec {
    pub(super) fn new() -> Self {
        StreamExec {
            queued: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        // Nothing panics while the lock is held, so a poisoned lock still holds a valid list.
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::pin(fut));
    }
}

/// An HTTP/2 connection and the streams it started, polled as one future. It ends when
/// the connection does; streams still running then are dropped, which cancels their
/// handlers as a client abort would (a connection that closed cleanly, the graceful
/// way included, waits for its streams' handles first, so only broken ones drop work).
pub(super) struct Driven<'a, C> {
    conn: Pin<&'a mut C>,
    exec: StreamExec,
    streams: FuturesUnordered<Stream>,
}

impl<'a, C> Driven<'a, C> {
    pub(super) fn new(conn: Pin<&'a mut C>, exec: StreamExec) -> Self {
        Driven {
            conn,
            exec,
            streams: FuturesUnordered::new(),
        }
    }

    /// The connection itself, for a graceful shutdown.
    pub(super) fn conn(&mut self) -> Pin<&mut C> {
        self.conn.as_mut()
    }

    fn take_queued(&mut self) {
        let mut queued = self
            .exec
            .queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for fut in queued.drain(..) {
            self.streams.push(Box::pin(fut));
        }
    }
}

impl<C: Future> Future for Driven<'_, C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        if let Poll::Ready(out) = this.conn.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        this.take_queued();
        // Finished streams are simply gone; `FuturesUnordered` itself yields back to the
        // scheduler after a run of polls, so a busy connection cannot starve the worker.
        while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {}
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::pin::pin;
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::sync::Barrier;

    /// Two streams whose handlers each wait for the other finish only if the connection
    /// polls both while either is pending: they run concurrently, not one after another.
    #[tokio::test]
    async fn streams_of_one_connection_run_concurrently() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let barrier = Arc::new(Barrier::new(2));
        let server = tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let barrier = barrier.clone();
                async move {
                    barrier.wait().await;
                    let path = req.uri().path().to_owned();
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(path))))
                }
            });
            let exec = StreamExec::new();
            let builder = hyper::server::conn::http2::Builder::new(exec.clone());
            let conn = pin!(builder.serve_connection(TokioIo::new(server_io), service));
            Driven::new(conn, exec).await
        });
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client_io))
                .await
                .expect("client handshake");
        tokio::spawn(conn);
        let get = |path: &'static str| {
            let mut sender = sender.clone();
            async move {
                let req = Request::get(format!("http://test{path}"))
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let resp = sender.send_request(req).await.expect("response");
                resp.into_body().collect().await.expect("body").to_bytes()
            }
        };
        let both = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(get("/one"), get("/two"))
        })
        .await
        .expect("both streams answered: they were polled concurrently");
        assert_eq!(both.0, Bytes::from_static(b"/one"));
        assert_eq!(both.1, Bytes::from_static(b"/two"));
        drop(sender);
        let ended = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("connection ends once the client goes");
        assert!(ended.expect("server task").is_ok());
    }
}
