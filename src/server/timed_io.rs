//! A connection's I/O with a bound on how long a write may stay blocked: a client that
//! stops reading its response (nginx's `send_timeout`) gets the connection closed
//! instead of pinning the response, its upstream connection and its balancer slot.
//! Reads have no timer here: idle and request-head limits are the connection task's.
//!
//! It can also hold each write back until the worker has run the other tasks that are
//! ready (`yield_before_writes`, used for HTTP/2). A write into a socket whose reader is
//! asleep pays for waking it (on a VM, an interrupt to another CPU, several
//! microseconds); writes to many connections issued close together find the load side's
//! thread still awake from the first of them, where writes spread across a round of
//! work each find it asleep again (docs/PERFORMANCE.md, "A new host; `log`'s trace
//! compiled out; writes held to the end of a round").
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `I` whose writes fail with `TimedOut` after `limit` without progress.
pub struct TimedIo<I> {
    inner: I,
    limit: Duration,
    /// Armed while a write is pending; allocated once per connection.
    stall: Pin<Box<Sleep>>,
    armed: bool,
    /// Yield once before each write (see the module's note).
    yield_first: bool,
    /// This write has yielded already.
    yielded: bool,
}

impl<I> TimedIo<I> {
    pub fn new(inner: I, limit: Duration) -> Self {
        TimedIo {
            inner,
            limit,
            stall: Box::pin(tokio::time::sleep(limit)),
            armed: false,
            yield_first: false,
            yielded: false,
        }
    }

    /// Each write first lets the worker run its other ready tasks.
    pub fn yield_before_writes(mut self) -> Self {
        self.yield_first = true;
        self
    }

    /// True when this write should step aside first: the task is woken at once, so it
    /// runs again after the tasks already queued on this worker, and writes then.
    fn step_aside(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.yield_first || self.yielded {
            return false;
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        true
    }

    /// Called when a write returned Pending: starts the clock on the first one and
    /// reports a timeout once it ran out.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.armed {
            self.armed = true;
            self.stall.as_mut().reset(Instant::now() + self.limit);
        }
        match self.stall.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("client read nothing for {:?}", self.limit),
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for TimedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for TimedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.step_aside(cx) {
            return Poll::Pending;
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => match this.check_stall(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            ready => {
                this.armed = false;
                this.yielded = false;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.step_aside(cx) {
            return Poll::Pending;
        }
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => match this.check_stall(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            ready => {
                this.armed = false;
                this.yielded = false;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => match this.check_stall(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            ready => {
                this.armed = false;
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::test_waker::CountingWaker;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_past_the_limit_fails() {
        // A duplex pipe with a tiny buffer and nobody reading the other end.
        let (a, _b) = tokio::io::duplex(16);
        let mut io = TimedIo::new(a, Duration::from_secs(60));
        let err = io.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn progress_resets_the_clock() {
        let (a, mut b) = tokio::io::duplex(16);
        let mut io = TimedIo::new(a, Duration::from_secs(60));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut total = 0;
            // Reads slowly, but within the limit each time.
            while total < 256 {
                tokio::time::sleep(Duration::from_secs(30)).await;
                total += tokio::io::AsyncReadExt::read(&mut b, &mut buf)
                    .await
                    .unwrap();
            }
            total
        });
        io.write_all(&[0u8; 256]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 256);
    }

    #[tokio::test]
    async fn a_yielding_write_steps_aside_once_then_writes() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut io = TimedIo::new(a, Duration::from_secs(60)).yield_before_writes();
        let (counter, waker) = CountingWaker::new();
        let mut cx = Context::from_waker(&waker);
        let wakes = || counter.wakes();

        // First try: nothing written, and the task is woken to come back.
        let first = Pin::new(&mut io).poll_write(&mut cx, b"hello");
        assert!(first.is_pending(), "{first:?}");
        assert_eq!(wakes(), 1);
        // Second try writes; the next write steps aside again, vectored or not.
        match Pin::new(&mut io).poll_write(&mut cx, b"hello") {
            Poll::Ready(Ok(5)) => {}
            other => panic!("{other:?}"),
        }
        let slices = [io::IoSlice::new(b" "), io::IoSlice::new(b"world")];
        assert!(
            Pin::new(&mut io)
                .poll_write_vectored(&mut cx, &slices)
                .is_pending()
        );
        assert_eq!(wakes(), 2);
        match Pin::new(&mut io).poll_write_vectored(&mut cx, &slices) {
            Poll::Ready(Ok(n)) => assert_eq!(n, 6),
            other => panic!("{other:?}"),
        }
        drop(io);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
            .await
            .unwrap();
        assert_eq!(got, b"hello world");
    }

    #[tokio::test]
    async fn a_yielding_io_still_writes_everything() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = TimedIo::new(a, Duration::from_secs(60)).yield_before_writes();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .unwrap();
            got
        });
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        io.write_all(&data).await.unwrap();
        io.shutdown().await.unwrap();
        drop(io);
        assert_eq!(reader.await.unwrap(), data);
    }
}
