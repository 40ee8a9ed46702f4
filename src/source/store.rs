//! The object store: the Kubernetes objects the ingress data plane consumes, typed and keyed
//! by `namespace/name` (IngressClasses by name), kept per origin (one manifest file, or one
//! watch) so a source can replace everything it said in one step.
//!
//! Failure behaviour: the store never rejects anything. When two origins define the same
//! object, the origin that sorts first wins and the duplicate is reported by `problems()`;
//! the load problems a source records for an origin are kept beside its objects.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::ingress::model::problem::Problem;

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The Secret type whose certificate compile serves for `spec.tls`. Secrets of other types
/// are held only when some Ingress names them (see `ingress::build::secret_refs`); the kube source
/// enforces that, the files source holds what its directory says.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// The kinds the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    IngressClass,
    Ingress,
    Service,
    EndpointSlice,
    Endpoints,
    Secret,
    /// For `auth-proxy-set-headers`: the kube source holds only the ConfigMaps an Ingress
    /// names, the files source what its directory says.
    ConfigMap,
}

impl Kind {
    /// The Kubernetes `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IngressClass => "IngressClass",
            Kind::Ingress => "Ingress",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Endpoints => "Endpoints",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        }
    }
}

/// One object of a kind the store holds.
// Objects are moved once, into an `Arc` in the store; boxing each variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Object {
    IngressClass(IngressClass),
    Ingress(Ingress),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Endpoints(Endpoints),
    Secret(Secret),
    ConfigMap(ConfigMap),
}

/// Why a manifest document could not become an `Object`.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("document is not an object with apiVersion and kind")]
    NotAnObject,
    #[error("metadata.name is missing or empty")]
    NoName,
    #[error("{kind} {api_version} is not supported (expected {expected})")]
    UnsupportedVersion {
        kind: String,
        api_version: String,
        expected: &'static str,
    },
    #[error("does not deserialize as {kind}: {message}")]
    Invalid { kind: &'static str, message: String },
}

impl Object {
    /// Turns one decoded manifest document into an object. `Ok(None)` for kinds the data
    /// plane does not use.
    pub fn from_value(value: serde_json::Value) -> Result<Option<Object>, ObjectError> {
        let (Some(api_version), Some(kind)) = (
            value.get("apiVersion").and_then(|v| v.as_str()),
            value.get("kind").and_then(|v| v.as_str()),
        ) else {
            return Err(ObjectError::NotAnObject);
        };
        let expected = match kind {
            "IngressClass" | "Ingress" => "networking.k8s.io/v1",
            "Service" | "Endpoints" | "Secret" | "ConfigMap" => "v1",
            "EndpointSlice" => "discovery.k8s.io/v1",
            _ => return Ok(None),
        };
        if api_version != expected {
            return Err(ObjectError::UnsupportedVersion {
                kind: kind.to_string(),
                api_version: api_version.to_string(),
                expected,
            });
        }
        let object = match kind {
            "IngressClass" => Object::IngressClass(decode(value, "IngressClass")?),
            "Ingress" => Object::Ingress(decode(value, "Ingress")?),
            "Service" => Object::Service(decode(value, "Service")?),
            "Endpoints" => Object::Endpoints(decode(value, "Endpoints")?),
            "EndpointSlice" => Object::EndpointSlice(decode(value, "EndpointSlice")?),
            "ConfigMap" => Object::ConfigMap(decode(value, "ConfigMap")?),
            _ => Object::Secret(decode(value, "Secret")?),
        };
        let mut object = object;
        let namespaced = object.kind() != Kind::IngressClass;
        let meta = object.metadata_mut();
        if meta.name.as_deref().unwrap_or("").is_empty() {
            return Err(ObjectError::NoName);
        }
        // kubectl applies namespace-less manifests to `default`; so do we.
        if namespaced && meta.namespace.as_deref().unwrap_or("").is_empty() {
            meta.namespace = Some("default".to_string());
        }
        Ok(Some(object))
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::IngressClass(_) => Kind::IngressClass,
            Object::Ingress(_) => Kind::Ingress,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Endpoints(_) => Kind::Endpoints,
            Object::Secret(_) => Kind::Secret,
            Object::ConfigMap(_) => Kind::ConfigMap,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::IngressClass(o) => &o.metadata,
            Object::Ingress(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Endpoints(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
        }
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::IngressClass(o) => &mut o.metadata,
            Object::Ingress(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Endpoints(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
        }
    }

    /// `namespace/name`, or `name` for cluster-scoped IngressClasses.
    pub fn key(&self) -> String {
        object_key(self.metadata())
    }

    /// `Kind namespace/name`, the form problems use to name an object.
    pub fn display_name(&self) -> String {
        format!("{} {}", self.kind().as_str(), self.key())
    }
}

/// Whether a Secret is of type `kubernetes.io/tls`.
pub fn is_tls_secret(secret: &Secret) -> bool {
    secret.type_.as_deref() == Some(TLS_SECRET_TYPE)
}

/// A Secret's keys and values, `stringData` (as written in a manifest) before `data`.
#[derive(Debug, Clone, Copy)]
pub struct SecretData<'a>(&'a Secret);

impl<'a> SecretData<'a> {
    pub fn secret_type(&self) -> Option<&'a str> {
        self.0.type_.as_deref()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        if let Some(s) = self.0.string_data.as_ref().and_then(|d| d.get(key)) {
            return Some(s.as_bytes());
        }
        self.0.data.as_ref()?.get(key).map(|b| b.0.as_slice())
    }

    /// Every key with its value, in key order (a key in both maps once, as `get` sees it).
    pub fn entries(&self) -> Vec<(&'a str, &'a [u8])> {
        let mut out: BTreeMap<&'a str, &'a [u8]> = BTreeMap::new();
        for (k, v) in self.0.data.iter().flatten() {
            out.insert(k, &v.0);
        }
        for (k, v) in self.0.string_data.iter().flatten() {
            out.insert(k, v.as_bytes());
        }
        out.into_iter().collect()
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    kind: &'static str,
) -> Result<T, ObjectError> {
    serde_json::from_value(value).map_err(|e| ObjectError::Invalid {
        kind,
        message: e.to_string(),
    })
}

/// `namespace/name` (or `name` when there is no namespace) of an object.
pub fn object_key(meta: &ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or("");
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// One kind's objects: key → origin → object. The effective object of a key is the one
/// from the first origin, so duplicates resolve the same way on every rebuild.
#[derive(Debug)]
struct Table<T> {
    by_key: BTreeMap<String, BTreeMap<Arc<str>, Arc<T>>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            by_key: BTreeMap::new(),
        }
    }
}

impl<T> Table<T> {
    fn insert(&mut self, key: String, origin: Arc<str>, obj: Arc<T>) {
        self.by_key.entry(key).or_default().insert(origin, obj);
    }

    fn remove(&mut self, key: &str, origin: &str) {
        if let Some(versions) = self.by_key.get_mut(key) {
            versions.remove(origin);
            if versions.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    fn get(&self, key: &str) -> Option<(&str, &Arc<T>)> {
        let (origin, obj) = self.by_key.get(key)?.iter().next()?;
        Some((origin, obj))
    }

    fn versions(&self, key: &str) -> impl Iterator<Item = &Arc<T>> {
        self.by_key.get(key).into_iter().flat_map(|v| v.values())
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str, &Arc<T>)> {
        self.by_key.iter().filter_map(|(key, versions)| {
            let (origin, obj) = versions.iter().next()?;
            Some((key.as_str(), &**origin, obj))
        })
    }

    fn duplicates(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.by_key
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, v)| (k.as_str(), v.keys().map(|o| &**o).collect()))
    }

    fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[derive(Debug, Default)]
struct Origin {
    objects: BTreeSet<(Kind, String)>,
    problems: Vec<Problem>,
}

/// What the store's mutations touched since the last [`ObjectStore::take_changes`], so a
/// driver can tell a pod churn (refresh a few backends) from a routing change (compile).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// An object of a kind other than EndpointSlice or Endpoints was added, changed or
    /// removed.
    pub routing: bool,
    /// `namespace/service` of every Service whose EndpointSlices or Endpoints changed.
    pub endpoints_of: BTreeSet<String>,
}

impl Changes {
    /// Only endpoints changed: the routes compiled before still stand.
    pub fn endpoints_only(&self) -> bool {
        !self.routing && !self.endpoints_of.is_empty()
    }
}

/// Everything the sources know, by kind. Cheap to read; each mutation is proportional to
/// what changed.
#[derive(Debug, Default)]
pub struct ObjectStore {
    classes: Table<IngressClass>,
    ingresses: Table<Ingress>,
    services: Table<Service>,
    slices: Table<EndpointSlice>,
    endpoints: Table<Endpoints>,
    secrets: Table<Secret>,
    config_maps: Table<ConfigMap>,
    /// `namespace/service` → keys of the slices labelled with that service.
    slices_by_service: BTreeMap<String, BTreeSet<String>>,
    origins: BTreeMap<Arc<str>, Origin>,
    changes: Changes,
}

impl ObjectStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces everything `origin` said with `objects` and its load problems with
    /// `problems` (the files source calls this once per changed file).
    /// Objects equal to what the origin already held are not counted as changes, so a file
    /// holding an Ingress and its EndpointSlice reads as an endpoint change when only the
    /// slice was edited.
    pub fn replace_origin(&mut self, origin: &str, objects: Vec<Object>, problems: Vec<Problem>) {
        let unchanged: BTreeSet<(Kind, String)> = objects
            .iter()
            .filter(|o| self.holds(origin, o))
            .map(|o| (o.kind(), o.key()))
            .collect();
        let mut touched: BTreeSet<(Kind, String)> = objects
            .iter()
            .map(|o| (o.kind(), o.key()))
            .filter(|k| !unchanged.contains(k))
            .collect();
        if let Some(state) = self.origins.get(origin) {
            touched.extend(
                state
                    .objects
                    .iter()
                    .filter(|k| !unchanged.contains(*k))
                    .cloned(),
            );
        }
        self.note_all(&touched);
        if let Some(state) = self.origins.remove(origin) {
            for (kind, key) in state.objects {
                self.remove_versions(kind, &key, origin);
            }
        }
        let origin_arc: Arc<str> = Arc::from(origin);
        for obj in objects {
            self.insert_arc(&origin_arc, obj);
        }
        self.origins.entry(origin_arc).or_default().problems = problems;
        self.note_all(&touched);
    }

    /// What changed since the last call, and starts counting afresh.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// What changed since the last `take_changes`.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Records that `(kind, key)` changes. Called before and after the mutation, so an
    /// EndpointSlice relabelled from one Service to another counts for both.
    fn note(&mut self, kind: Kind, key: &str) {
        match kind {
            Kind::Endpoints => {
                self.changes.endpoints_of.insert(key.to_string());
            }
            Kind::EndpointSlice => {
                let services = self.slice_services(key);
                self.changes.endpoints_of.extend(services);
            }
            _ => self.changes.routing = true,
        }
    }

    fn note_all(&mut self, keys: &BTreeSet<(Kind, String)>) {
        for (kind, key) in keys {
            self.note(*kind, key);
        }
    }

    /// Replaces only the load problems of `origin`, leaving its objects in force (the last
    /// good version of a file that no longer loads).
    pub fn set_origin_problems(&mut self, origin: &str, problems: Vec<Problem>) {
        self.origins.entry(Arc::from(origin)).or_default().problems = problems;
    }

    /// Forgets everything `origin` said.
    pub fn remove_origin(&mut self, origin: &str) {
        let Some(state) = self.origins.remove(origin) else {
            return;
        };
        for (kind, key) in state.objects {
            self.note(kind, &key);
            self.remove_versions(kind, &key, origin);
            self.note(kind, &key);
        }
    }

    /// Adds or replaces one object of `origin` (for watch-style sources).
    pub fn insert(&mut self, origin: &str, obj: Object) {
        let origin_arc = self
            .origins
            .get_key_value(origin)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Arc::from(origin));
        let (kind, key) = (obj.kind(), obj.key());
        self.note(kind, &key);
        self.insert_arc(&origin_arc, obj);
        self.note(kind, &key);
    }

    /// Removes one object of `origin`.
    pub fn remove(&mut self, origin: &str, kind: Kind, key: &str) {
        if let Some(state) = self.origins.get_mut(origin) {
            state.objects.remove(&(kind, key.to_string()));
        }
        self.note(kind, key);
        self.remove_versions(kind, key, origin);
        self.note(kind, key);
    }

    /// Whether `origin` already holds exactly `obj`, so storing it again would change
    /// nothing (watch sources skip a rebuild for such no-op updates).
    pub fn holds(&self, origin: &str, obj: &Object) -> bool {
        fn same<T: PartialEq>(table: &Table<T>, key: &str, origin: &str, obj: &T) -> bool {
            table
                .by_key
                .get(key)
                .and_then(|versions| versions.get(origin))
                .is_some_and(|held| **held == *obj)
        }
        let key = obj.key();
        match obj {
            Object::IngressClass(o) => same(&self.classes, &key, origin, o),
            Object::Ingress(o) => same(&self.ingresses, &key, origin, o),
            Object::Service(o) => same(&self.services, &key, origin, o),
            Object::EndpointSlice(o) => same(&self.slices, &key, origin, o),
            Object::Endpoints(o) => same(&self.endpoints, &key, origin, o),
            Object::Secret(o) => same(&self.secrets, &key, origin, o),
            Object::ConfigMap(o) => same(&self.config_maps, &key, origin, o),
        }
    }

    fn insert_arc(&mut self, origin: &Arc<str>, obj: Object) {
        let key = obj.key();
        let kind = obj.kind();
        self.origins
            .entry(origin.clone())
            .or_default()
            .objects
            .insert((kind, key.clone()));
        let origin = origin.clone();
        match obj {
            Object::IngressClass(o) => self.classes.insert(key, origin, Arc::new(o)),
            Object::Ingress(o) => self.ingresses.insert(key, origin, Arc::new(o)),
            Object::Service(o) => self.services.insert(key, origin, Arc::new(o)),
            Object::Endpoints(o) => self.endpoints.insert(key, origin, Arc::new(o)),
            Object::Secret(o) => self.secrets.insert(key, origin, Arc::new(o)),
            Object::ConfigMap(o) => self.config_maps.insert(key, origin, Arc::new(o)),
            Object::EndpointSlice(o) => {
                let before = self.slice_services(&key);
                self.slices.insert(key.clone(), origin, Arc::new(o));
                self.reindex_slice(&key, before);
            }
        }
    }

    fn remove_versions(&mut self, kind: Kind, key: &str, origin: &str) {
        match kind {
            Kind::IngressClass => self.classes.remove(key, origin),
            Kind::Ingress => self.ingresses.remove(key, origin),
            Kind::Service => self.services.remove(key, origin),
            Kind::Endpoints => self.endpoints.remove(key, origin),
            Kind::Secret => self.secrets.remove(key, origin),
            Kind::ConfigMap => self.config_maps.remove(key, origin),
            Kind::EndpointSlice => {
                let before = self.slice_services(key);
                self.slices.remove(key, origin);
                self.reindex_slice(key, before);
            }
        }
    }

    /// The `namespace/service` values every stored version of a slice claims.
    fn slice_services(&self, key: &str) -> BTreeSet<String> {
        self.slices
            .versions(key)
            .filter_map(|s| {
                let svc = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
                let ns = s.metadata.namespace.as_deref()?;
                Some(format!("{ns}/{svc}"))
            })
            .collect()
    }

    fn reindex_slice(&mut self, key: &str, before: BTreeSet<String>) {
        for svc in before {
            if let Some(set) = self.slices_by_service.get_mut(&svc) {
                set.remove(key);
                if set.is_empty() {
                    self.slices_by_service.remove(&svc);
                }
            }
        }
        for svc in self.slice_services(key) {
            self.slices_by_service
                .entry(svc)
                .or_default()
                .insert(key.to_string());
        }
    }

    /// All IngressClasses by name.
    pub fn ingress_classes(&self) -> impl Iterator<Item = &Arc<IngressClass>> {
        self.classes.iter().map(|(_, _, o)| o)
    }

    /// All Ingresses with their `namespace/name` key and origin.
    pub fn ingresses(&self) -> impl Iterator<Item = (&str, &str, &Arc<Ingress>)> {
        self.ingresses.iter()
    }

    pub fn ingress(&self, namespace: &str, name: &str) -> Option<&Arc<Ingress>> {
        self.ingresses
            .get(&format!("{namespace}/{name}"))
            .map(|(_, o)| o)
    }

    /// All Services with their `namespace/name` key.
    pub fn services(&self) -> impl Iterator<Item = (&str, &Arc<Service>)> {
        self.services.iter().map(|(k, _, o)| (k, o))
    }

    /// The `namespace/name` keys of all `kubernetes.io/tls` Secrets.
    pub fn secret_keys(&self) -> impl Iterator<Item = &str> {
        self.secrets
            .iter()
            .filter(|(_, _, s)| is_tls_secret(s))
            .map(|(k, _, _)| k)
    }

    /// The ConfigMap `namespace/name`, if held.
    pub fn config_map_by_key(&self, key: &str) -> Option<&Arc<ConfigMap>> {
        self.config_maps.get(key).map(|(_, o)| o)
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        self.services
            .get(&format!("{namespace}/{name}"))
            .map(|(_, o)| o)
    }

    pub fn endpoints(&self, namespace: &str, name: &str) -> Option<&Arc<Endpoints>> {
        self.endpoints
            .get(&format!("{namespace}/{name}"))
            .map(|(_, o)| o)
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Arc<Secret>> {
        self.secrets
            .get(&format!("{namespace}/{name}"))
            .map(|(_, o)| o)
    }

    /// The `namespace/name` keys of all Secrets held, of any type.
    pub fn all_secret_keys(&self) -> impl Iterator<Item = &str> {
        self.secrets.iter().map(|(k, _, _)| k)
    }

    /// The Secret stored under `namespace/name`.
    pub fn secret_by_key(&self, key: &str) -> Option<&Arc<Secret>> {
        self.secrets.get(key).map(|(_, o)| o)
    }

    /// The decoded data of Secret `namespace/name`, whatever its type.
    pub fn secret_data(&self, namespace: &str, name: &str) -> Option<SecretData<'_>> {
        self.secret(namespace, name).map(|s| SecretData(s))
    }

    /// The EndpointSlices labelled `kubernetes.io/service-name=<service>` in `namespace`,
    /// in key order.
    pub fn endpoint_slices(
        &self,
        namespace: &str,
        service: &str,
    ) -> impl Iterator<Item = &Arc<EndpointSlice>> {
        self.slices_by_service
            .get(&format!("{namespace}/{service}"))
            .into_iter()
            .flatten()
            .filter_map(move |key| {
                let (_, slice) = self.slices.get(key)?;
                // The effective version may be one whose label points elsewhere.
                let label = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
                (label == service && slice.metadata.namespace.as_deref() == Some(namespace))
                    .then_some(slice)
            })
    }

    /// How many objects of each kind are in force (for logs and `routes`).
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        BTreeMap::from([
            (Kind::IngressClass, self.classes.len()),
            (Kind::Ingress, self.ingresses.len()),
            (Kind::Service, self.services.len()),
            (Kind::EndpointSlice, self.slices.len()),
            (Kind::Endpoints, self.endpoints.len()),
            (Kind::Secret, self.secrets.len()),
            (Kind::ConfigMap, self.config_maps.len()),
        ])
    }

    /// Load problems of every origin plus objects defined by more than one origin.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out: Vec<Problem> = self
            .origins
            .values()
            .flat_map(|o| o.problems.iter().cloned())
            .collect();
        let mut dup = |kind: Kind, key: &str, origins: Vec<&str>| {
            let first = origins.first().copied().unwrap_or("");
            out.push(Problem {
                file: Some(first.to_string()),
                object: Some(format!("{} {key}", kind.as_str())),
                message: format!(
                    "defined more than once ({}); the one from {first} is used",
                    origins.join(", ")
                ),
            });
        };
        for (k, o) in self.classes.duplicates() {
            dup(Kind::IngressClass, k, o);
        }
        for (k, o) in self.ingresses.duplicates() {
            dup(Kind::Ingress, k, o);
        }
        for (k, o) in self.services.duplicates() {
            dup(Kind::Service, k, o);
        }
        for (k, o) in self.slices.duplicates() {
            dup(Kind::EndpointSlice, k, o);
        }
        for (k, o) in self.endpoints.duplicates() {
            dup(Kind::Endpoints, k, o);
        }
        for (k, o) in self.secrets.duplicates() {
            dup(Kind::Secret, k, o);
        }
        for (k, o) in self.config_maps.duplicates() {
            dup(Kind::ConfigMap, k, o);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, svc: &str) -> Object {
        Object::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "endpoints": []
        }))
        .unwrap()
        .unwrap()
    }

    #[test]
    fn defaults_namespace_and_skips_foreign_kinds() {
        let svc = Object::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}
        }))
        .unwrap()
        .unwrap();
        assert_eq!(svc.key(), "default/web");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        assert_eq!(Object::from_value(cm).unwrap().unwrap().key(), "default/x");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}});
        assert!(Object::from_value(pod).unwrap().is_none());
        let opaque = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": "x"}, "data": {"auth": "YQ=="},
                            "stringData": {"auth": "b", "other": "c"}});
        let mut store = ObjectStore::new();
        store.insert("f", Object::from_value(opaque).unwrap().unwrap());
        let data = store.secret_data("default", "x").unwrap();
        assert_eq!(data.get("auth"), Some(&b"b"[..]), "stringData wins");
        assert_eq!(data.entries().len(), 2);
        assert_eq!(store.secret_keys().count(), 0, "not a TLS Secret");
        let old = json!({"apiVersion": "extensions/v1beta1", "kind": "Ingress",
                         "metadata": {"name": "x"}});
        assert!(matches!(
            Object::from_value(old),
            Err(ObjectError::UnsupportedVersion { .. })
        ));
        let noname = json!({"apiVersion": "v1", "kind": "Service", "metadata": {}});
        assert!(matches!(
            Object::from_value(noname),
            Err(ObjectError::NoName)
        ));
    }

    #[test]
    fn slices_indexed_by_service_and_replaced_per_origin() {
        let mut store = ObjectStore::new();
        store.replace_origin(
            "a.yaml",
            vec![slice("s1", "web"), slice("s2", "web")],
            vec![],
        );
        store.replace_origin("b.yaml", vec![slice("s3", "api")], vec![]);
        assert_eq!(store.endpoint_slices("ns", "web").count(), 2);
        // Relabelling s2 moves it to the other service.
        store.replace_origin(
            "a.yaml",
            vec![slice("s1", "web"), slice("s2", "api")],
            vec![],
        );
        assert_eq!(store.endpoint_slices("ns", "web").count(), 1);
        assert_eq!(store.endpoint_slices("ns", "api").count(), 2);
        store.remove_origin("b.yaml");
        assert_eq!(store.endpoint_slices("ns", "api").count(), 1);
        store.remove("a.yaml", Kind::EndpointSlice, "ns/s2");
        assert_eq!(store.endpoint_slices("ns", "api").count(), 0);
    }

    #[test]
    fn changes_name_the_services_whose_endpoints_moved() {
        let services = |c: &Changes| c.endpoints_of.iter().cloned().collect::<Vec<_>>();
        let mut store = ObjectStore::new();
        store.insert("watch", slice("s1", "web"));
        let c = store.take_changes();
        assert!(c.endpoints_only());
        assert_eq!(services(&c), ["ns/web"]);
        assert_eq!(store.take_changes(), Changes::default(), "taken");

        // A relabelled slice leaves one Service and joins another: both change.
        store.insert("watch", slice("s1", "api"));
        assert_eq!(services(&store.take_changes()), ["ns/api", "ns/web"]);
        store.remove("watch", Kind::EndpointSlice, "ns/s1");
        assert_eq!(services(&store.take_changes()), ["ns/api"]);

        let endpoints = Object::from_value(json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "legacy", "namespace": "ns"}
        }))
        .unwrap()
        .unwrap();
        store.insert("watch", endpoints);
        assert_eq!(services(&store.take_changes()), ["ns/legacy"]);

        let service = Object::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "ns"}
        }))
        .unwrap()
        .unwrap();
        store.replace_origin("a.yaml", vec![service.clone(), slice("s2", "web")], vec![]);
        let c = store.take_changes();
        assert!(c.routing && !c.endpoints_only());
        // The same Service again with a new slice beside it: only the slice changed.
        store.replace_origin("a.yaml", vec![service, slice("s3", "web")], vec![]);
        let c = store.take_changes();
        assert!(c.endpoints_only(), "{c:?}");
        assert_eq!(services(&c), ["ns/web"]);
        store.remove_origin("a.yaml");
        assert!(store.take_changes().routing, "the Service went");
    }

    #[test]
    fn holds_compares_with_the_origins_own_version() {
        let mut store = ObjectStore::new();
        store.insert("watch", slice("s1", "web"));
        assert!(store.holds("watch", &slice("s1", "web")));
        assert!(!store.holds("watch", &slice("s1", "api")), "relabelled");
        assert!(!store.holds("other", &slice("s1", "web")), "another origin");
        assert!(!store.holds("watch", &slice("s2", "web")), "another key");
        store.remove("watch", Kind::EndpointSlice, "ns/s1");
        assert!(!store.holds("watch", &slice("s1", "web")));
    }

    #[test]
    fn duplicates_resolve_to_first_origin_and_are_reported() {
        let mut store = ObjectStore::new();
        store.replace_origin("b.yaml", vec![slice("s1", "api")], vec![]);
        store.replace_origin("a.yaml", vec![slice("s1", "web")], vec![]);
        assert_eq!(store.endpoint_slices("ns", "web").count(), 1);
        assert_eq!(store.endpoint_slices("ns", "api").count(), 0);
        let problems = store.problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("a.yaml, b.yaml"));
        store.remove_origin("a.yaml");
        assert_eq!(store.endpoint_slices("ns", "api").count(), 1);
        assert!(store.problems().is_empty());
    }
}
