//! The Ingress under review, decoded and inspected once per review with the same
//! `ingress::build::inspect` walk that compile uses; every Ingress rule reads this one view.
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::Value;

use crate::ingress::build::inspect::{Inspection, inspect};

/// A `networking.k8s.io` Ingress, typed and checked.
#[derive(Debug)]
pub struct IngressView {
    pub ingress: Ingress,
    pub inspection: Inspection,
}

/// The view of `object` when it is an Ingress that decodes; `None` otherwise (an object
/// that does not match the schema never got past the API server, and `check` reports
/// nothing the API server would refuse first).
pub fn view(group: &str, kind: &str, object: &Value) -> Option<IngressView> {
    if group != "networking.k8s.io" || kind != "Ingress" {
        return None;
    }
    let ingress: Ingress = serde_json::from_value(object.clone()).ok()?;
    let inspection = inspect(&ingress);
    Some(IngressView {
        ingress,
        inspection,
    })
}
