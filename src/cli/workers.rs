//! The ingress listeners on worker threads of their own, nginx's model: each worker is a
//! single-threaded runtime with its own `SO_REUSEPORT` socket on the shared address, so
//! the kernel spreads connections over the workers and a connection, its requests and
//! the upstream exchanges they start stay on one thread: no work stealing, no wakeups
//! across threads, no atomics of a shared scheduler per request. Everything else (the
//! webhook, admin, watches, reloads, status) stays on the main multi-threaded runtime.
//!
//! Failure behaviour: a worker that cannot start its runtime or listen reports the error
//! through its completion channel, like a listener that failed.
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use portcullis::server::{Respond, ServeOptions, Shutdown, serve};
use tokio::net::TcpSocket;
use tokio::sync::oneshot;

/// Accept queue length per worker socket, as `tokio::net::TcpListener::bind` uses.
const BACKLOG: u32 = 1024;

/// The running workers of one listener.
pub struct Workers {
    name: &'static str,
    done: Vec<oneshot::Receiver<std::io::Result<()>>>,
    /// Dropping these lets the workers' runtimes end. They outlive `serve` because tasks
    /// the requests spawned there (WebSocket tunnels) get the rest of the grace period.
    release: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Waits until every worker's listener has stopped, returning the first error.
    pub async fn join(&mut self) -> std::io::Result<()> {
        let mut first = Ok(());
        for rx in std::mem::take(&mut self.done) {
            let result = rx.await.unwrap_or_else(|_| {
                Err(std::io::Error::other(format!(
                    "a {} worker thread ended without a result",
                    self.name
                )))
            });
            if first.is_ok() {
                first = result;
            }
        }
        first
    }

    /// Ends the workers' runtimes, and with them whatever still runs on them.
    pub fn release(self) {
        drop(self.release);
    }
}

/// How many workers `configured` asks for: 0 means one per CPU this process may use.
pub fn count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Binds `count` sockets to `addr` (port 0: the port the first one got) with
/// `SO_REUSEPORT`. Binding here, before any worker starts, makes a taken address an
/// error of `serve` itself.
pub fn bind(addr: SocketAddr, count: usize, what: &str) -> anyhow::Result<Vec<TcpSocket>> {
    // With SO_REUSEPORT a second portcullis of the same user on the same port would share
    // it silently and take half the traffic. A plain bind first still fails when anyone
    // listens there, as a listener without the option would.
    if addr.port() != 0 {
        drop(
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("binding the {what} listener to {addr}"))?,
        );
    }
    let mut sockets = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .with_context(|| format!("creating the {what} socket"))?;
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket
            .bind(addr)
            .with_context(|| format!("binding the {what} listener to {addr}"))?;
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Starts one worker thread per socket, each serving `handler` until `shutdown`.
pub fn start<H: Respond>(
    name: &'static str,
    sockets: Vec<TcpSocket>,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: H,
    shutdown: Shutdown,
    opts: impl Fn() -> ServeOptions,
) -> anyhow::Result<Workers> {
    let mut done = Vec::with_capacity(sockets.len());
    let mut release = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        let (tx, rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let (tls, handler, shutdown, opts) =
            (tls.clone(), handler.clone(), shutdown.clone(), opts());
        std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| {
                        rt.block_on(async move {
                            let served = match socket.listen(BACKLOG) {
                                Ok(listener) => serve(listener, tls, handler, shutdown, opts).await,
                                Err(e) => Err(e),
                            };
                            let _ = tx.send(served);
                            let _ = release_rx.await;
                        })
                    });
                if let Err(e) = result {
                    tracing::error!(worker = i, error = %e, "{name} worker runtime failed");
                }
            })
            .with_context(|| format!("starting {name} worker {i}"))?;
        done.push(rx);
        release.push(release_tx);
    }
    Ok(Workers {
        name,
        done,
        release,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_share_one_port_and_a_taken_port_is_an_error() {
        let sockets = bind("127.0.0.1:0".parse().unwrap(), 3, "test").unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0), "{ports:?}");
        let taken = SocketAddr::from(([127, 0, 0, 1], ports[0]));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _listening: Vec<_> =
            rt.block_on(async { sockets.into_iter().map(|s| s.listen(16).unwrap()).collect() });
        let Err(e) = bind(taken, 2, "test") else {
            panic!("a second group bound a port that is in use");
        };
        assert!(
            format!("{e:#}").contains("binding the test listener"),
            "{e:#}"
        );
    }

    #[test]
    fn zero_workers_means_one_per_cpu() {
        assert!(count(0) >= 1);
        assert_eq!(count(3), 3);
    }
}
