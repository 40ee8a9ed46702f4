//! `serve`'s Ingress status flags, and starting the status publisher from them.
use anyhow::Context as _;
use portcullis::reload::ConfigHandle;
use portcullis::status::lease::{default_identity, default_namespace};
use portcullis::status::{
    AddressSource, LeaseOptions, PublisherOptions, StatusOptions, StatusTask, parse_service_ref,
    parse_status_addresses,
};
use tokio::sync::watch;

#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// Publish the load-balancer addresses of this Service (NAMESPACE/NAME) in the status
    /// of every Ingress served (with --source kube; one replica writes, chosen by a Lease).
    #[arg(long, env = "PORTCULLIS_PUBLISH_SERVICE")]
    publish_service: Option<String>,
    /// Publish these addresses instead (comma-separated IPs and DNS names).
    #[arg(
        long,
        env = "PORTCULLIS_PUBLISH_STATUS_ADDRESS",
        conflicts_with = "publish_service"
    )]
    publish_status_address: Option<String>,
    /// Namespace of the leader Lease (default: POD_NAMESPACE, else the service account's
    /// namespace, else portcullis).
    #[arg(long, env = "PORTCULLIS_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
}

impl StatusArgs {
    /// Where the addresses come from; `None` when status publishing is off.
    fn source(&self) -> anyhow::Result<Option<AddressSource>> {
        if let Some(s) = &self.publish_service {
            let (namespace, name) = parse_service_ref(s)?;
            return Ok(Some(AddressSource::Service { namespace, name }));
        }
        if let Some(a) = &self.publish_status_address {
            return Ok(Some(AddressSource::Static(parse_status_addresses(a)?)));
        }
        Ok(None)
    }
}

/// Starts status publishing when a publish flag is given and a Kubernetes client exists
/// (status cannot be written from a files source). Bad flag values are errors.
pub fn start_status(
    args: &StatusArgs,
    client: Option<kube::Client>,
    config: &ConfigHandle,
    generations: Option<watch::Receiver<u64>>,
    complete: watch::Receiver<bool>,
) -> anyhow::Result<Option<StatusTask>> {
    let source = args.source().context("Ingress status flags")?;
    let Some(source) = source else {
        return Ok(None);
    };
    let (Some(client), Some(generations)) = (client, generations) else {
        tracing::warn!(
            "--publish-service / --publish-status-address need --source kube; Ingress status is not published"
        );
        return Ok(None);
    };
    let namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(default_namespace);
    let opts = StatusOptions {
        lease: LeaseOptions::new(namespace, default_identity()),
        publisher: PublisherOptions::new(source),
    };
    Ok(Some(portcullis::status::start_status(
        client,
        config.clone(),
        generations,
        complete,
        opts,
    )))
}
