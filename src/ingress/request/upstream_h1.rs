//! HTTP/1.1 connections to pods (plain and TLS), kept alive in a pool of our own on
//! `hyper::client::conn::http1`: one pool per worker thread, keyed by wire and endpoint.
//!
//! Why not hyper-util's pooled client: it locks one shared pool on every checkout and
//! return, spawns a task per request to wait for the connection to be reusable, and needs
//! the absolute URI of the pod on every request only to derive the pool key and turn it
//! back into origin form. Here a worker thread takes a connection from its own list (no
//! lock anyone else holds), sends the origin-form request, and the response body's end
//! puts the connection back (`H1Lease`'s drop). With the ingress workers on
//! current-thread runtimes, a connection, its requests and its pool slot never leave
//! the thread; on a multi-threaded runtime the pool still works, just less tidily.
//!
//! Idle connections close after `idle_timeout`: each connection's driver holds one timer
//! that looks at when the connection went idle (reset once per timeout, not per request).
//! Closed connections leave the lists on the next checkout or on the periodic sweep.
//!
//! Failure behaviour: a connect failure is a typed `ConnectError` (the proxy ejects and
//! retries elsewhere); a pooled connection that turns out closed before the request was
//! written hands the request back, and it goes once more on a fresh connection to the
//! same endpoint (nothing of it was sent, so this is not a retry of the request).
use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use thread_local::ThreadLocal;
use tower::Service;

use crate::ingress::model::fast_map::FastMap;
use crate::ingress::request::health::monotonic_us;
use crate::ingress::request::upstream::{Connector, UpstreamBody, UpstreamError, Wire};

/// `ConnState::idle_since_us` of a connection in use.
const BUSY: u64 = 0;
/// `ConnState::idle_since_us` of a connection its driver has closed for idleness.
const CLOSED: u64 = u64::MAX;
/// Checkouts between two sweeps of a thread's lists for closed connections and
/// endpoints that went away.
const SWEEP_EVERY: u32 = 4096;

/// What the pool and a connection's driver share: since when the connection is idle.
#[derive(Debug)]
struct ConnState {
    idle_since_us: AtomicU64,
}

impl ConnState {
    /// Takes an idle connection for a request; false when its driver closed it first.
    fn claim(&self) -> bool {
        let since = self.idle_since_us.load(Ordering::Acquire);
        since != CLOSED
            && self
                .idle_since_us
                .compare_exchange(since, BUSY, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn release(&self) {
        // 1 is the earliest "idle since": BUSY is 0.
        self.idle_since_us
            .store(monotonic_us().max(1), Ordering::Release);
    }
}

/// An idle connection in a thread's list.
struct Idle {
    sender: SendRequest<UpstreamBody>,
    state: Arc<ConnState>,
}

type Key = (Wire, Authority);

/// One thread's idle connections.
#[derive(Default)]
struct Lists {
    by_endpoint: FastMap<Key, Vec<Idle>>,
    checkouts: u32,
}

/// Pooled HTTP/1.1 connections, per worker thread and per endpoint.
pub struct H1Pool {
    idle_timeout: Duration,
    /// Idle connections kept per endpoint and thread; more are closed when released.
    max_idle: usize,
    lists: ThreadLocal<RefCell<Lists>>,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool")
            .field("idle_timeout", &self.idle_timeout)
            .field("max_idle", &self.max_idle)
            .finish()
    }
}

/// Holds a connection while its response streams; its drop puts the connection back in
/// the pool of the thread it is dropped on.
pub struct H1Lease {
    pool: Arc<H1Pool>,
    key: Key,
    sender: Option<SendRequest<UpstreamBody>>,
    state: Arc<ConnState>,
}

impl std::fmt::Debug for H1Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H1Lease")
    }
}

impl Drop for H1Lease {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.pool.put(&self.key, sender, &self.state);
        }
    }
}

impl H1Pool {
    pub fn new(idle_timeout: Duration, max_idle: usize) -> Self {
        Self {
            idle_timeout,
            max_idle,
            lists: ThreadLocal::new(),
        }
    }

    /// Sends `req` (origin-form URI, Host header set) to the pod at `target`.
    pub async fn send(
        self: &Arc<Self>,
        connector: impl FnOnce() -> Connector,
        wire: Wire,
        target: &Authority,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, H1Lease), UpstreamError> {
        let key: Key = (wire, target.clone());
        if let Some((mut sender, state)) = self.checkout(&key) {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.lease(key, sender, state))),
                Err(mut e) => match e.take_message() {
                    // Closed under us before a byte went out: a fresh connection below.
                    Some(back) => req = back,
                    None => return Err(UpstreamError::Failed(Box::new(e.into_error()))),
                },
            }
        }
        // Boxed: connecting (TCP, maybe TLS, the handshake) is the rare path, and its
        // state would otherwise sit in every request's future.
        let (mut sender, state) = Box::pin(self.connect(connector(), &key)).await?;
        match sender.send_request(req).await {
            Ok(resp) => Ok((resp, self.lease(key, sender, state))),
            Err(e) => Err(UpstreamError::Failed(Box::new(e))),
        }
    }

    fn lease(
        self: &Arc<Self>,
        key: Key,
        sender: SendRequest<UpstreamBody>,
        state: Arc<ConnState>,
    ) -> H1Lease {
        H1Lease {
            pool: self.clone(),
            key,
            sender: Some(sender),
            state,
        }
    }

    /// The most recently used idle connection to `key` that is ready for a request.
    fn checkout(&self, key: &Key) -> Option<(SendRequest<UpstreamBody>, Arc<ConnState>)> {
        let mut lists = self.lists.get_or_default().borrow_mut();
        lists.checkouts = lists.checkouts.wrapping_add(1);
        if lists.checkouts.is_multiple_of(SWEEP_EVERY) {
            sweep(&mut lists.by_endpoint);
        }
        let list = lists.by_endpoint.get_mut(key)?;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            let idle = &list[i];
            if idle.sender.is_closed() {
                list.swap_remove(i);
                continue;
            }
            // Still finishing its previous exchange (it went back at the body's end,
            // a moment before hyper noticed): leave it for a later request.
            if !idle.sender.is_ready() {
                continue;
            }
            let idle = list.swap_remove(i);
            if idle.state.claim() {
                return Some((idle.sender, idle.state));
            }
        }
        None
    }

    fn put(&self, key: &Key, sender: SendRequest<UpstreamBody>, state: &Arc<ConnState>) {
        // Upgraded (101) or closed by either side: nothing to keep.
        if sender.is_closed() {
            return;
        }
        let mut lists = self.lists.get_or_default().borrow_mut();
        // Looked up by reference first: the key is only cloned for a new endpoint.
        if !lists.by_endpoint.contains_key(key) {
            lists.by_endpoint.insert(key.clone(), Vec::new());
        }
        let Some(list) = lists.by_endpoint.get_mut(key) else {
            return;
        };
        if list.len() >= self.max_idle {
            return;
        }
        state.release();
        list.push(Idle {
            sender,
            state: state.clone(),
        });
    }

    /// Connects, handshakes and starts the connection's driver on this thread.
    async fn connect(
        &self,
        mut connector: Connector,
        key: &Key,
    ) -> Result<(SendRequest<UpstreamBody>, Arc<ConnState>), UpstreamError> {
        let uri = Uri::builder()
            .scheme(key.0.scheme())
            .authority(key.1.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| UpstreamError::Failed(Box::new(e)))?;
        let io = connector
            .call(uri)
            .await
            .map_err(UpstreamError::from_connect)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Failed(Box::new(e)))?;
        let state = Arc::new(ConnState {
            idle_since_us: AtomicU64::new(BUSY),
        });
        tokio::spawn(drive(
            conn.with_upgrades(),
            state.clone(),
            self.idle_timeout,
        ));
        Ok((sender, state))
    }

    /// Idle connections this thread holds, for tests.
    pub fn idle_here(&self) -> usize {
        self.lists
            .get()
            .map_or(0, |l| l.borrow().by_endpoint.values().map(Vec::len).sum())
    }
}

/// Drops closed connections and the lists of endpoints that have none left.
fn sweep(by_endpoint: &mut FastMap<Key, Vec<Idle>>) {
    by_endpoint.retain(|_, list| {
        list.retain(|idle| !idle.sender.is_closed());
        !list.is_empty()
    });
}

/// Runs one connection until it ends, or until it has been idle for `idle_timeout`.
async fn drive<C>(conn: C, state: Arc<ConnState>, idle_timeout: Duration)
where
    C: Future<Output = hyper::Result<()>>,
{
    let idle_us = u64::try_from(idle_timeout.as_micros()).unwrap_or(u64::MAX);
    let timer = tokio::time::sleep(idle_timeout);
    tokio::pin!(conn, timer);
    loop {
        tokio::select! {
            biased;
            ended = &mut conn => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
                return;
            }
            () = &mut timer => {
                let since = state.idle_since_us.load(Ordering::Acquire);
                let now = monotonic_us();
                let next = match since {
                    BUSY => now.saturating_add(idle_us),
                    _ if now.saturating_sub(since) >= idle_us => {
                        if state
                            .idle_since_us
                            .compare_exchange(since, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                        {
                            // Dropping the connection closes the socket.
                            return;
                        }
                        now.saturating_add(idle_us)
                    }
                    _ => since.saturating_add(idle_us),
                };
                let wait = Duration::from_micros(next.saturating_sub(now).max(1_000));
                timer.as_mut().reset(tokio::time::Instant::now() + wait);
            }
        }
    }
}
