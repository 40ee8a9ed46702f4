//! A TCP stream whose writes (and reads into initialised buffers) go to the kernel
//! without passing through glibc.
//!
//! glibc's `send` and `writev` are thread-cancellation points: in a process with more than
//! one thread, each call marks the thread cancellable before the system call and unmarks
//! it after, two locked read-modify-writes on the thread's cancel state. Under HTTP/1.1
//! load `perf` put that bookkeeping at 1.2 % of the proxy's CPU (the atomic right after the
//! system call returns is the expensive one). Nothing in this process cancels threads.
//! rustix makes the system call itself, so the writes here pay only for the call. Reads
//! into an initialised buffer (rustls's) do the same; reads into uninitialised room stay
//! with tokio, because handing that room to rustix needs `unsafe`.
//!
//! Readiness follows tokio's own streams: a short write means the socket's buffer is
//! full, so the readiness that allowed it is cleared and the next write waits for epoll
//! instead of failing with `EAGAIN` first.
use std::io::{self, IoSlice};
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// The kernel caps one call's buffers at `IOV_MAX`; the rest waits for the next write.
const IOV_MAX: usize = 1024;

/// A `TcpStream` whose system calls skip glibc where they safely can (see the module's note).
#[derive(Debug)]
pub struct Sock(TcpStream);

impl Sock {
    pub fn new(stream: TcpStream) -> Self {
        Sock(stream)
    }

    /// One system call once the socket is ready for `interest`, repeated until it
    /// is not `EAGAIN` or `EINTR`. `call` reports how many of the `wanted` bytes moved.
    fn poll_call(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        wanted: usize,
        mut call: impl FnMut(&TcpStream) -> rustix::io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if interest.is_readable() {
                ready!(self.0.poll_read_ready(cx))?;
            } else {
                ready!(self.0.poll_write_ready(cx))?;
            }
            let mut short = None;
            // A call that moved only part of the bytes drained the socket (or filled its
            // buffer): it is returned as `WouldBlock` to `try_io`, which clears the
            // readiness it read before the call (a later event is kept).
            let moved = self.0.try_io(interest, || {
                let n = call(&self.0).map_err(io::Error::from)?;
                if n > 0 && n < wanted {
                    short = Some(n);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match moved {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(n) = short {
                        return Poll::Ready(Ok(n));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Deref for Sock {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        &self.0
    }
}

impl DerefMut for Sock {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.0
    }
}

impl AsyncRead for Sock {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // rustls reads into its own buffer, which is initialised: such a read can skip
        // glibc at no cost. Zeroing the spare room of a plain read's buffer first would
        // cost about what it saves.
        if buf.initialized().len() < buf.capacity() {
            return Pin::new(&mut this.0).poll_read(cx, buf);
        }
        let room = buf.initialize_unfilled();
        let wanted = room.len();
        let n = ready!(this.poll_call(cx, Interest::READABLE, wanted, |s| {
            rustix::net::recv(s, &mut *room, RecvFlags::empty()).map(|(n, _)| n)
        }))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Sock {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // MSG_NOSIGNAL: a peer that has gone makes this an error, never a SIGPIPE.
        self.poll_call(cx, Interest::WRITABLE, buf.len(), |s| {
            rustix::net::send(s, buf, SendFlags::NOSIGNAL)
        })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs = &bufs[..bufs.len().min(IOV_MAX)];
        let wanted = bufs.iter().map(|b| b.len()).sum();
        if wanted == 0 {
            return Poll::Ready(Ok(0));
        }
        self.poll_call(cx, Interest::WRITABLE, wanted, |s| {
            rustix::net::sendmsg(
                s,
                bufs,
                &mut SendAncillaryBuffer::default(),
                SendFlags::NOSIGNAL,
            )
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (Sock, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Sock::new(ours.unwrap()), theirs.unwrap().0)
    }

    #[tokio::test]
    async fn bytes_written_plain_and_vectored_arrive_in_order() {
        let (mut ours, mut theirs) = pair().await;
        ours.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let parts = [
            IoSlice::new(b"host: a\r\n"),
            IoSlice::new(b""),
            IoSlice::new(b"\r\n"),
        ];
        let n = ours.write_vectored(&parts).await.unwrap();
        assert_eq!(n, 11);
        ours.shutdown().await.unwrap();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    }

    /// Far more than the socket buffers hold: writes come back short, the readiness is
    /// cleared, and the writer sleeps until the reader makes room, then finishes.
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_larger_than_the_buffers_waits_for_room_and_arrives_whole() {
        let (mut ours, mut theirs) = pair().await;
        let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let expected = body.clone();
        let writer = tokio::spawn(async move {
            ours.write_all(&body).await.unwrap();
            ours.shutdown().await.unwrap();
        });
        let mut got = Vec::with_capacity(expected.len());
        // A readiness event lost after a short write would leave both sides waiting.
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            theirs.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
        })
        .await
        .expect("the writer stalled after a short write");
        assert!(
            got == expected,
            "{} bytes arrived of {}",
            got.len(),
            expected.len()
        );
    }

    /// Reads into initialised room (as rustls's are) take the rustix path; reads into
    /// uninitialised room (a `BytesMut`'s spare capacity) take tokio's. Both see every
    /// byte in order, then the end of the stream.
    #[tokio::test(flavor = "current_thread")]
    async fn reads_into_either_kind_of_room_see_every_byte_then_the_end() {
        for initialised in [true, false] {
            let (mut ours, mut theirs) = pair().await;
            let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
            let expected = sent.clone();
            let writer = tokio::spawn(async move {
                theirs.write_all(&sent).await.unwrap();
                theirs.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            let mut room = [0u8; 1000];
            let mut spare = bytes::BytesMut::with_capacity(1000);
            tokio::time::timeout(std::time::Duration::from_secs(30), async {
                loop {
                    let n = if initialised {
                        let n = ours.read(&mut room).await.unwrap();
                        got.extend_from_slice(&room[..n]);
                        n
                    } else {
                        spare.clear();
                        let n = ours.read_buf(&mut spare).await.unwrap();
                        got.extend_from_slice(&spare);
                        n
                    };
                    if n == 0 {
                        break;
                    }
                }
            })
            .await
            .expect("a read stalled");
            writer.await.unwrap();
            assert!(
                got == expected,
                "initialised {initialised}: {} bytes of {}",
                got.len(),
                expected.len()
            );
        }
    }

    #[tokio::test]
    async fn writing_to_a_closed_peer_is_an_error_not_a_signal() {
        let (mut ours, theirs) = pair().await;
        drop(theirs);
        let mut failed = None;
        // The first write may be accepted before the peer's reset arrives.
        for _ in 0..100 {
            if let Err(e) = ours.write_all(&[0u8; 4096]).await {
                failed = Some(e);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let e = failed.expect("writes to a closed socket kept succeeding");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    }
}
