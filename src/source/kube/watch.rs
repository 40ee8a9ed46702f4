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

use super::secrets::Wanted;
use super::trim;
use crate::source::store::{Kind, Object, is_tls_secret, object_key};

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
    /// The answer to a GET of one Secret (see `secrets`), tagged with the number of the
    /// request so an answer overtaken by a newer event is ignored.
    Fetched {
        key: String,
        seq: u64,
        result: Fetch,
    },
    /// What the watch numbered `seq` of one named ConfigMap saw (see `configmaps`).
    ConfigMap {
        key: String,
        seq: u64,
        seen: super::configmaps::Seen,
    },
    /// A full list finished: these are now all the objects of the kind; anything else
    /// stored for it was deleted while the watch was not looking.
    Relisted(Kind, Vec<Object>),
}

/// What a GET of one Secret found.
// Moved once, like `Change`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Fetch {
    Found(Secret),
    /// 404: the Secret does not exist.
    Missing,
    /// The API refused for good (403, say): what is held stays, nothing is retried.
    Refused,
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
    /// Trimmed and typed; `wanted` matters only to Secrets.
    fn into_stored(mut self, wanted: &Wanted) -> Object {
        let _ = wanted;
        self.trim();
        self.into_object()
    }
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

/// Every Secret is watched (an htpasswd file is `Opaque`), but only TLS Secrets and the
/// ones an Ingress names keep their data past this point: the rest become stubs here, as
/// each event arrives, so a cluster's other Secrets never accumulate in memory.
impl Watched for Secret {
    const KIND: Kind = Kind::Secret;
    fn trim(&mut self) {
        trim::secret(self)
    }
    fn into_object(self) -> Object {
        Object::Secret(self)
    }
    fn into_stored(mut self, wanted: &Wanted) -> Object {
        if is_tls_secret(&self) {
            trim::secret(&mut self);
        } else if wanted.contains(&object_key(&self.metadata)) {
            trim::referenced_secret(&mut self);
        } else {
            trim::secret_stub(&mut self);
        }
        Object::Secret(self)
    }
}

/// Watches every object of kind `K` in the cluster and sends what changes to `changes`
/// until the receiver is dropped.
pub async fn run<K: Watched>(client: Client, changes: mpsc::Sender<Change>, wanted: Wanted) {
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
                listing.push(o.into_stored(&wanted));
                ("init_apply", None)
            }
            Event::InitDone => {
                let objects = std::mem::take(&mut listing);
                tracing::debug!(kind, objects = objects.len(), "list complete");
                ("init_done", Some(Change::Relisted(K::KIND, objects)))
            }
            Event::Apply(o) => ("apply", Some(Change::Apply(o.into_stored(&wanted)))),
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
    use serde_json::json;

    #[test]
    fn secrets_keep_data_only_when_tls_or_wanted() {
        let secret = |name: &str, ty: &str| -> Secret {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns"}, "type": ty,
                "data": {"auth": "YQ==", "tls.crt": "Yg=="}
            }))
            .unwrap()
        };
        let wanted = Wanted::default();
        wanted.set(["ns/named".to_string()].into());
        let held = |o: Object| match o {
            Object::Secret(s) => s.data.map(|d| d.len()),
            _ => None,
        };
        assert_eq!(
            held(secret("tls", "kubernetes.io/tls").into_stored(&wanted)),
            Some(1)
        );
        assert_eq!(
            held(secret("named", "Opaque").into_stored(&wanted)),
            Some(2)
        );
        assert_eq!(held(secret("other", "Opaque").into_stored(&wanted)), None);
        assert_eq!(Secret::FIELDS, None, "every type is watched");
    }
}
