//! One cluster-wide kube-rs watcher per kind, turned into `Change`s for the driver: objects
//! trimmed and typed as store `Object`s, and a relist (Init … InitDone) delivered whole.
//!
//! Failure behaviour: a watch never ends on an error. Every error is logged and counted,
//! and the watcher resumes after the default backoff (0.8 s doubling to 30 s), from its
//! last resourceVersion or, after 410 Gone, with a fresh list. The task ends only when the
//! driver stops listening.
use std::fmt::Debug;
use std::sync::OnceLock;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Client, Resource};
use prometheus::{IntCounterVec, Opts};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::trim;
use crate::source::store::{Kind, Object, object_key};

/// What one watch tells the driver.
// Each change is moved once, through the queue into the store; boxing would only add an
// allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Change {
    /// An object was added or modified (already trimmed).
    Apply(Object),
    /// The object of this kind and `namespace/name` key was deleted.
    Delete(Kind, String),
    /// A full list finished: these are now all the objects of the kind; anything else
    /// stored for it was deleted while the watch was not looking.
    Relisted(Kind, Vec<Object>),
}

/// A kind the kube source watches.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    const KIND: Kind;
    /// Server-side field selector, so unwanted objects never leave the API server.
    const FIELDS: Option<&'static str> = None;
    fn trim(&mut self);
    fn into_object(self) -> Object;
}

impl Watched for IngressClass {
    const KIND: Kind = Kind::IngressClass;
    fn trim(&mut self) {
        trim::ingress_class(self)
    }
    fn into_object(self) -> Object {
        Object::IngressClass(self)
    }
}

impl Watched for Ingress {
    const KIND: Kind = Kind::Ingress;
    fn trim(&mut self) {
        trim::ingress(self)
    }
    fn into_object(self) -> Object {
        Object::Ingress(self)
    }
}

impl Watched for Service {
    const KIND: Kind = Kind::Service;
    fn trim(&mut self) {
        trim::service(self)
    }
    fn into_object(self) -> Object {
        Object::Service(self)
    }
}

impl Watched for EndpointSlice {
    const KIND: Kind = Kind::EndpointSlice;
    fn trim(&mut self) {
        trim::endpoint_slice(self)
    }
    fn into_object(self) -> Object {
        Object::EndpointSlice(self)
    }
}

impl Watched for Endpoints {
    const KIND: Kind = Kind::Endpoints;
    fn trim(&mut self) {
        trim::endpoints(self)
    }
    fn into_object(self) -> Object {
        Object::Endpoints(self)
    }
}

/// Only `kubernetes.io/tls` Secrets (`TLS_SECRET_TYPE`): other Secrets never reach us.
const SECRET_FIELDS: &str = "type=kubernetes.io/tls";

impl Watched for Secret {
    const KIND: Kind = Kind::Secret;
    const FIELDS: Option<&'static str> = Some(SECRET_FIELDS);
    fn trim(&mut self) {
        trim::secret(self)
    }
    fn into_object(self) -> Object {
        Object::Secret(self)
    }
}

fn object<K: Watched>(mut o: K) -> Object {
    o.trim();
    o.into_object()
}

/// Watches every object of kind `K` in the cluster and sends what changes to `changes`
/// until the receiver is dropped.
pub async fn run<K: Watched>(client: Client, changes: mpsc::Sender<Change>) {
    let api: Api<K> = Api::all(client);
    let mut config = watcher::Config::default();
    if let Some(fields) = K::FIELDS {
        config = config.fields(fields);
    }
    let kind = K::KIND.as_str();
    let mut stream = watch_stream(api, config).default_backoff().boxed();
    // Objects of a relist in progress; the store keeps the old set until InitDone.
    let mut listing: Vec<Object> = Vec::new();
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                let reason = error_reason(&e);
                if let Some(m) = metrics() {
                    m.errors.with_label_values(&[kind, reason]).inc();
                }
                tracing::warn!(kind, reason, error = %e, "watch error; retrying after backoff");
                continue;
            }
        };
        let (label, change) = match event {
            Event::Init => {
                listing = Vec::new();
                ("init", None)
            }
            Event::InitApply(o) => {
                listing.push(object(o));
                ("init_apply", None)
            }
            Event::InitDone => {
                let objects = std::mem::take(&mut listing);
                tracing::debug!(kind, objects = objects.len(), "list complete");
                ("init_done", Some(Change::Relisted(K::KIND, objects)))
            }
            Event::Apply(o) => ("apply", Some(Change::Apply(object(o)))),
            Event::Delete(o) => (
                "delete",
                Some(Change::Delete(K::KIND, object_key(o.meta()))),
            ),
        };
        if let Some(m) = metrics() {
            m.events.with_label_values(&[kind, label]).inc();
        }
        if let Some(change) = change
            && changes.send(change).await.is_err()
        {
            return;
        }
    }
}

/// A short, bounded label for an error (metric label values must not be free text).
fn error_reason(e: &watcher::Error) -> &'static str {
    match e {
        watcher::Error::InitialListFailed(_) => "list",
        watcher::Error::WatchStartFailed(_) => "watch_start",
        watcher::Error::WatchError(status) if status.code == 410 => "gone",
        watcher::Error::WatchError(_) => "watch_event",
        watcher::Error::WatchFailed(_) => "stream",
        watcher::Error::NoResourceVersion => "no_resource_version",
    }
}

struct Metrics {
    events: IntCounterVec,
    errors: IntCounterVec,
}

/// The watch metrics; `None` only if their (constant) definitions were refused.
fn metrics() -> Option<&'static Metrics> {
    static METRICS: OnceLock<Option<Metrics>> = OnceLock::new();
    METRICS
        .get_or_init(|| {
            let events = IntCounterVec::new(
                Opts::new(
                    "kube_watch_events_total",
                    "Kubernetes watch events by kind and event (init, init_apply, init_done, \
                     apply, delete).",
                ),
                &["kind", "event"],
            )
            .ok()?;
            let errors = IntCounterVec::new(
                Opts::new(
                    "kube_watch_errors_total",
                    "Kubernetes watch errors by kind and reason (list, watch_start, gone, \
                     watch_event, stream, no_resource_version); every one is retried.",
                ),
                &["kind", "reason"],
            )
            .ok()?;
            Some(Metrics {
                events: crate::metrics::register(events),
                errors: crate::metrics::register(errors),
            })
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::store::TLS_SECRET_TYPE;

    #[test]
    fn secret_selector_names_the_type_the_store_keeps() {
        assert_eq!(
            Secret::FIELDS,
            Some(format!("type={TLS_SECRET_TYPE}").as_str())
        );
        assert_eq!(Ingress::FIELDS, None);
    }
}
