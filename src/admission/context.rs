//! What a rule gets to look at: one object, how it is being changed, and where its pod
//! template is.
use crate::admission::lookup::At;
use std::cell::OnceCell;

use serde_json::{Map, Value};

use super::cluster::ClusterView;
use super::ingress::{self, IngressView};
use super::settings::AdmissionSettings;
use super::template::{self, PodTemplate};
use crate::ingress::model::live::LiveState;

/// The admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// One object under review.
#[derive(Debug)]
pub struct Context<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub operation: Operation,
    /// The request namespace (a pod template has none of its own).
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: &'a Value,
    pub old_object: Option<&'a Value>,
    pub dry_run: bool,
    pub template: Option<PodTemplate>,
    pub settings: &'a AdmissionSettings,
    /// The live configuration, for rules that compare with what is already served.
    pub live: Option<&'a dyn LiveState>,
    /// The other objects cross-object rules read (PDBs, HPAs, roles, ...); None when the
    /// caller has no view of the cluster.
    pub cluster: Option<&'a ClusterView>,
    /// Decoded on first use, shared by the Ingress rules.
    ingress: OnceCell<Option<IngressView>>,
}

impl<'a> Context<'a> {
    /// Builds a context; the name falls back to `metadata.name`/`generateName` because
    /// `request.name` is empty for generated names.
    pub fn new(
        group: &'a str,
        kind: &'a str,
        operation: Operation,
        namespace: &'a str,
        name: &'a str,
        object: &'a Value,
        settings: &'a AdmissionSettings,
    ) -> Self {
        let name = if name.is_empty() {
            object
                .at("/metadata/name")
                .or_else(|| object.at("/metadata/generateName"))
                .and_then(Value::as_str)
                .unwrap_or("")
        } else {
            name
        };
        Context {
            group,
            kind,
            operation,
            namespace,
            name,
            object,
            old_object: None,
            dry_run: false,
            template: template::find(group, kind, object),
            settings,
            live: None,
            cluster: None,
            ingress: OnceCell::new(),
        }
    }

    /// The object as a typed, inspected Ingress (None for other kinds).
    pub fn ingress(&self) -> Option<&IngressView> {
        self.ingress
            .get_or_init(|| ingress::view(self.group, self.kind, self.object))
            .as_ref()
    }

    /// The object's own labels.
    pub fn labels(&self) -> Option<&'a Map<String, Value>> {
        self.object
            .at("/metadata/labels")
            .and_then(Value::as_object)
    }

    /// The object's own annotations.
    pub fn annotations(&self) -> Option<&'a Map<String, Value>> {
        self.object
            .at("/metadata/annotations")
            .and_then(Value::as_object)
    }

    /// `Kind namespace/name` for messages.
    pub fn describe(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}
