//! Upgraded connections (WebSocket and other `101 Switching Protocols` tunnels) that
//! outlive their HTTP exchange.
//!
//! Once a connection is upgraded it leaves hyper, so the listeners' graceful shutdown no
//! longer sees it and the process would exit under it as soon as the last ordinary request
//! finished. Every tunnel is therefore counted here; shutdown waits for them up to the
//! grace period (as nginx's worker-shutdown-timeout does), then cuts what is left.
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// See the module documentation. Cheap to clone; clones share the count.
#[derive(Debug, Clone)]
pub struct Tunnels {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    open: AtomicUsize,
    /// Woken whenever the count drops to zero.
    idle: Notify,
    /// `true` once remaining tunnels must close.
    cut: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            inner: Arc::new(Inner {
                open: AtomicUsize::new(0),
                idle: Notify::new(),
                cut: watch::channel(false).0,
            }),
        }
    }
}

/// Decrements the count when a tunnel task ends, however it ends.
struct Open(Arc<Inner>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Tunnels {
    /// Runs `tunnel` on its own task until it ends or the tunnels are cut.
    pub fn spawn<F>(&self, tunnel: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.open.fetch_add(1, Ordering::AcqRel);
        let open = Open(self.inner.clone());
        let mut cut = self.inner.cut.subscribe();
        tokio::spawn(async move {
            let _open = open;
            tokio::select! {
                () = tunnel => {}
                _ = cut.wait_for(|c| *c) => {}
            }
        });
    }

    /// Tunnels running now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Waits until every tunnel has ended or `deadline` passes, then cuts the rest and
    /// waits for them to go. Returns how many were cut. Tunnels started afterwards are cut
    /// at once.
    pub async fn drain(&self, deadline: Instant) -> usize {
        let ended = tokio::time::timeout_at(deadline, self.idle()).await.is_ok();
        let left = self.open();
        self.inner.cut.send_replace(true);
        if !ended {
            self.idle().await;
        }
        if ended { 0 } else { left }
    }

    async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a drop to zero in between still
            // wakes this waiter.
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn drain_waits_for_tunnels_that_end_within_the_deadline() {
        let tunnels = Tunnels::default();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let (finished_tx, finished_rx) = oneshot::channel::<()>();
        tunnels.spawn(async move {
            let _ = done_rx.await;
            let _ = finished_tx.send(());
        });
        assert_eq!(tunnels.open(), 1);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let _ = done_tx.send(());
        });
        let cut = tunnels
            .drain(Instant::now() + Duration::from_secs(10))
            .await;
        assert_eq!(cut, 0);
        assert_eq!(tunnels.open(), 0);
        // It ran to its own end rather than being cut.
        assert!(finished_rx.await.is_ok());
    }

    #[tokio::test]
    async fn drain_cuts_what_outlives_the_deadline() {
        let tunnels = Tunnels::default();
        let (_keep_open, wait) = oneshot::channel::<()>();
        let (finished_tx, finished_rx) = oneshot::channel::<()>();
        tunnels.spawn(async move {
            let _ = wait.await;
            let _ = finished_tx.send(());
        });
        let start = Instant::now();
        let cut = tunnels.drain(start + Duration::from_millis(50)).await;
        assert_eq!(cut, 1);
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(tunnels.open(), 0);
        // Cut, not finished: the sender was dropped with the task.
        assert!(finished_rx.await.is_err());
        // After a drain nothing new lingers.
        let (_keep, wait) = oneshot::channel::<()>();
        tunnels.spawn(async move {
            let _ = wait.await;
        });
        tokio::time::timeout(Duration::from_secs(5), tunnels.idle())
            .await
            .expect("a tunnel started after the cut lingers");
    }
}
