//! The connections a listener's kernel queue holds when accepting stops.

use std::io::ErrorKind;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// Takes every connection the kernel has completed on `listener`, then closes it.
///
/// Left in the queue, they would be reset with the listener although their clients saw
/// the connect succeed. tokio's `accept` makes the system call only once its reactor has
/// seen the socket readable, which misses whatever arrived since the reactor's last turn;
/// the std socket asks the kernel directly until it has nothing more.
pub(super) fn take_backlog(listener: TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let Ok(listener) = listener.into_std() else {
        return Vec::new();
    };
    let mut taken = Vec::new();
    loop {
        // Still non-blocking (tokio set it): an empty queue answers WouldBlock.
        match listener.accept() {
            Ok((stream, remote)) => {
                // Accepted sockets do not inherit O_NONBLOCK, which tokio needs.
                if stream.set_nonblocking(true).is_ok()
                    && let Ok(stream) = TcpStream::from_std(stream)
                {
                    taken.push((stream, remote));
                }
            }
            // A client that gave up while queued: the next one may still be there.
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
            // Empty, or out of descriptors: what is left goes with the listener.
            Err(_) => break,
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn connections_the_reactor_has_not_seen_yet_are_taken() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Blocking connects: each returns once the kernel completed the handshake.
        let mut clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // The reactor has not run since: tokio's own accept does not even try.
        assert!(listener.accept().now_or_never().is_none());

        let taken = take_backlog(listener);
        assert_eq!(taken.len(), 3);
        let mut want: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        let mut got: Vec<_> = taken.iter().map(|(_, remote)| *remote).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want);

        // Taken connections are served like any other, and the listener is closed.
        for (i, (mut stream, _)) in taken.into_iter().enumerate() {
            stream.write_all(&[i as u8]).await.unwrap();
            let who = clients
                .iter_mut()
                .position(|c| c.local_addr().unwrap() == stream.peer_addr().unwrap())
                .unwrap();
            let mut byte = [0u8; 1];
            std::io::Read::read_exact(&mut clients[who], &mut byte).unwrap();
            assert_eq!(byte[0], i as u8);
        }
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "listener still open"
        );
    }
}
