//! IngressClass selection: which Ingresses this controller serves.
//!
//! Our classes are the IngressClasses whose `spec.controller` is our controller name. An
//! Ingress is served when (1) its `spec.ingressClassName` names one of our classes; else
//! (2) when its legacy `kubernetes.io/ingress.class` annotation names one of them; else,
//! with no class at all, (3) when one of our classes is marked default or the
//! watch-without-class option is on. An Ingress that names any other class is never served.
use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::Ingress;

use crate::source::ObjectStore;

/// The controller name portcullis answers to unless configured otherwise.
pub const DEFAULT_CONTROLLER: &str = "portcullis.io/ingress-controller";
/// The legacy class annotation on Ingresses.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The annotation that marks an IngressClass as the cluster default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Decides, for one store, which Ingresses are ours.
#[derive(Debug, Clone, Default)]
pub struct ClassSelector {
    ours: BTreeSet<String>,
    take_classless: bool,
}

impl ClassSelector {
    pub fn new(store: &ObjectStore, controller: &str, watch_without_class: bool) -> Self {
        let mut ours = BTreeSet::new();
        let mut default = false;
        for class in store.ingress_classes() {
            let is_ours = class
                .spec
                .as_ref()
                .and_then(|s| s.controller.as_deref())
                .is_some_and(|c| c == controller);
            let Some(name) = class.metadata.name.as_deref() else {
                continue;
            };
            if !is_ours {
                continue;
            }
            ours.insert(name.to_string());
            let marked = class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
            default |= marked;
        }
        ClassSelector {
            ours,
            take_classless: default || watch_without_class,
        }
    }

    /// Our IngressClass names.
    #[cfg(test)]
    pub fn classes(&self) -> impl Iterator<Item = &str> {
        self.ours.iter().map(String::as_str)
    }

    /// Whether `ingress` is ours to serve.
    pub fn serves(&self, ingress: &Ingress) -> bool {
        let field = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .filter(|c| !c.is_empty());
        if let Some(class) = field {
            return self.ours.contains(class);
        }
        let legacy = ingress
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
            .filter(|c| !c.is_empty());
        if let Some(class) = legacy {
            return self.ours.contains(class.as_str());
        }
        self.take_classless
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Object;
    use serde_json::json;

    fn class(name: &str, controller: &str, default: bool) -> Object {
        let mut v = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                           "metadata": {"name": name}, "spec": {"controller": controller}});
        if default {
            v["metadata"]["annotations"] = json!({DEFAULT_CLASS_ANNOTATION: "true"});
        }
        Object::from_value(v).unwrap().unwrap()
    }

    fn ingress(field: Option<&str>, legacy: Option<&str>) -> Ingress {
        let mut v = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                           "metadata": {"name": "i", "namespace": "ns"}, "spec": {}});
        if let Some(f) = field {
            v["spec"]["ingressClassName"] = json!(f);
        }
        if let Some(l) = legacy {
            v["metadata"]["annotations"] = json!({LEGACY_CLASS_ANNOTATION: l});
        }
        serde_json::from_value(v).unwrap()
    }

    fn selector(default: bool, watch_without_class: bool) -> ClassSelector {
        let mut store = ObjectStore::new();
        store.replace_origin(
            "c",
            vec![
                class("portcullis", DEFAULT_CONTROLLER, default),
                class("nginx", "k8s.io/ingress-nginx", true),
            ],
            vec![],
        );
        ClassSelector::new(&store, DEFAULT_CONTROLLER, watch_without_class)
    }

    #[test]
    fn every_branch() {
        // (our class is default, watch-without-class, field, legacy annotation, served)
        type Row<'a> = (bool, bool, Option<&'a str>, Option<&'a str>, bool);
        let table: &[Row] = &[
            (false, false, Some("portcullis"), None, true),
            (false, false, Some("nginx"), None, false),
            (false, false, Some("missing"), None, false),
            // The field wins over the annotation, both ways.
            (false, false, Some("nginx"), Some("portcullis"), false),
            (false, false, Some("portcullis"), Some("nginx"), true),
            (false, false, None, Some("portcullis"), true),
            (false, false, None, Some("nginx"), false),
            // A class named elsewhere is never served, even when we take class-less ones.
            (true, true, None, Some("nginx"), false),
            (true, true, Some("nginx"), None, false),
            (false, false, None, None, false),
            (true, false, None, None, true),
            (false, true, None, None, true),
            // Another controller's default class does not make class-less Ingresses ours.
        ];
        for (i, (default, wwc, field, legacy, want)) in table.iter().enumerate() {
            let s = selector(*default, *wwc);
            assert_eq!(s.serves(&ingress(*field, *legacy)), *want, "row {i}");
        }
    }

    #[test]
    fn other_controller_string_is_not_ours() {
        let mut store = ObjectStore::new();
        store.replace_origin(
            "c",
            vec![class("portcullis", "example.com/other", true)],
            vec![],
        );
        let s = ClassSelector::new(&store, DEFAULT_CONTROLLER, false);
        assert!(!s.serves(&ingress(Some("portcullis"), None)));
        assert!(!s.serves(&ingress(None, None)));
        assert_eq!(s.classes().count(), 0);
    }
}
