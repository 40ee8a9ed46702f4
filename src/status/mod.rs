//! Ingress status: the replica that holds the leader Lease (`lease`) writes the published
//! load-balancer addresses (`address`) into `status.loadBalancer.ingress` of every Ingress
//! the current snapshot serves, and clears it on those it stops serving (`publisher`).
//!
//! Failure behaviour: nothing here ends the process; API failures are logged, counted in
//! `portcullis_status_*` / `portcullis_ingress_status_*` metrics and retried.
pub mod address;
pub mod lease;
mod metrics;
pub mod publisher;

use tokio::sync::watch;

pub use address::{Address, AddressError, parse_service_ref, parse_status_addresses};
pub use lease::{Election, LeaseOptions, start_election};
pub use publisher::{AddressSource, PublisherOptions, start_publisher};

use crate::ingress::config::ConfigHandle;

/// Everything the status machinery needs besides the client and the configuration.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    pub lease: LeaseOptions,
    pub publisher: PublisherOptions,
}

/// The running election and publisher. Dropping it stops both without releasing the
/// Lease; `shutdown` releases it so another replica takes over at once.
#[derive(Debug)]
pub struct StatusTask {
    // Fields drop in order: the publisher stops before the election does.
    publisher: AbortOnDrop,
    election: Election,
}

impl StatusTask {
    pub fn is_leader(&self) -> bool {
        self.election.is_leader()
    }

    /// Changes whenever this replica gains or loses leadership.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.election.subscribe()
    }

    /// Stops publishing first (a former leader must not write), then steps down.
    pub async fn shutdown(self) {
        let StatusTask {
            publisher,
            election,
        } = self;
        drop(publisher);
        election.step_down().await;
    }
}

/// Starts leader election and, under it, status publishing from `config` (once `complete`
/// turns true), re-run on every new generation. Must be called inside a tokio runtime.
pub fn start_status(
    client: kube::Client,
    config: ConfigHandle,
    generations: watch::Receiver<u64>,
    complete: watch::Receiver<bool>,
    opts: StatusOptions,
) -> StatusTask {
    tracing::info!(
        lease = %format!("{}/{}", opts.lease.namespace, opts.lease.name),
        identity = %opts.lease.identity,
        "competing for the Ingress status lease"
    );
    let election = start_election(client.clone(), opts.lease);
    let publisher = start_publisher(
        client,
        config,
        generations,
        complete,
        election.subscribe(),
        opts.publisher,
    );
    StatusTask {
        publisher: AbortOnDrop(publisher),
        election,
    }
}

/// A task that ends when its owner is dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Waits for the task to end by itself.
    pub(crate) async fn join(&mut self) {
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
