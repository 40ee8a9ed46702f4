//! Ingress status: the replica that holds the leader Lease (`lease`) writes the published
//! load-balancer addresses (`address`) into `status.loadBalancer.ingress` of every Ingress
//! the current snapshot serves, and clears it on those it stops serving (`publisher`);
//! it also posts a Warning Event on each Ingress with a configuration problem (`events`).
//!
//! Failure behaviour: nothing here ends the process; API failures are logged, counted in
//! `portcullis_status_*` / `portcullis_ingress_status_*` metrics and retried.
pub(crate) mod address;
pub(crate) mod events;
pub mod lease;
mod metrics;
pub(crate) mod publisher;

use tokio::sync::watch;

pub use address::{Address, AddressError, parse_service_ref, parse_status_addresses};
pub use lease::{Election, LeaseOptions, start_election};
pub use publisher::{AddressSource, PublisherOptions, start_publisher};

use crate::reload::ConfigHandle;

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
    // Fields drop in order: the writers stop before the election does.
    publisher: AbortOnDrop,
    events: AbortOnDrop,
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
            events,
            election,
        } = self;
        drop(publisher);
        drop(events);
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
    let instance = opts.lease.identity.clone();
    let election = start_election(client.clone(), opts.lease);
    let events = events::start_events(
        client.clone(),
        config.clone(),
        generations.clone(),
        complete.clone(),
        election.subscribe(),
        instance,
    );
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
        events: AbortOnDrop(events),
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
