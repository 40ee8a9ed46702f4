//! Storage rules: emptyDir volumes without a `sizeLimit`, with a mutation that fills in the
//! configured default. Volumes that are not maps, and `emptyDir: null` (which is not an
//! emptyDir at all), are skipped.
use serde_json::Value;

use super::{Rule, Violation};
use crate::admission::context::Context;
use crate::admission::patch::{PatchBuilder, Pointer};
use crate::admission::quantity;
use crate::admission::settings::Action;

/// The storage rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![Box::new(EmptyDirSizeLimitMissing)]
}

/// One emptyDir volume without a size limit.
struct Unbounded {
    name: String,
    /// The volume's `emptyDir` map.
    ptr: Pointer,
    memory: bool,
}

/// The emptyDir volumes of the pod spec at `spec` in `doc` that have no usable sizeLimit
/// (absent, null or `""`).
fn unbounded(doc: &Value, spec: &Pointer) -> Vec<Unbounded> {
    let Some(volumes) = spec
        .get(doc)
        .and_then(|s| s.get("volumes"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    volumes
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let dir = v.get("emptyDir").filter(|d| d.is_object())?;
            let limited = dir
                .get("sizeLimit")
                .is_some_and(|l| !l.is_null() && l.as_str() != Some(""));
            if limited {
                return None;
            }
            Some(Unbounded {
                name: v
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                ptr: spec.child("volumes").index(i).child("emptyDir"),
                memory: dir.get("medium").and_then(Value::as_str) == Some("Memory"),
            })
        })
        .collect()
}

/// `emptyDirSizeLimitMissing`: an emptyDir without `sizeLimit` can grow until the node's
/// disk (or, for `medium: Memory`, its RAM) runs out, and the kubelet then evicts pods.
pub struct EmptyDirSizeLimitMissing;

impl Rule for EmptyDirSizeLimitMissing {
    fn id(&self) -> &'static str {
        "emptyDirSizeLimitMissing"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn mutation(&self) -> Option<bool> {
        Some(true)
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        unbounded(ctx.object, &t.spec)
            .into_iter()
            .map(|u| {
                let msg = if u.memory {
                    format!(
                        "volume {:?} is a memory emptyDir without sizeLimit: set emptyDir.sizeLimit; its files count against the memory limit and can fill the node's RAM",
                        u.name
                    )
                } else {
                    format!(
                        "volume {:?} is an emptyDir without sizeLimit: set emptyDir.sizeLimit; one pod can fill the node's disk and get pods on it evicted",
                        u.name
                    )
                };
                Violation::new(msg, u.ptr.child("sizeLimit"))
            })
            .collect()
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        let Some(t) = &ctx.template else {
            return;
        };
        let limit = &ctx.settings.defaults.empty_dir_size_limit;
        // An unparseable default would make every patched object invalid.
        if quantity::parse(limit).is_none() {
            return;
        }
        let targets: Vec<Pointer> = unbounded(patch.doc(), &t.spec)
            .into_iter()
            .map(|u| u.ptr.child("sizeLimit"))
            .collect();
        for ptr in targets {
            // `""` counts as missing, and add_if_absent leaves present values alone.
            if patch.get(&ptr).and_then(Value::as_str) == Some("") {
                patch.set(&ptr, Value::String(limit.clone()));
            } else {
                patch.add_if_absent(&ptr, Value::String(limit.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_only_unbounded_emptydirs() {
        let doc = json!({"spec": {"volumes": [
            {"name": "a", "emptyDir": {}},
            {"name": "b", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "c", "emptyDir": {"medium": "Memory", "sizeLimit": ""}},
            {"name": "d", "emptyDir": null},
            {"name": "e", "configMap": {"name": "x"}},
            "junk",
            {"name": "f", "emptyDir": {"sizeLimit": null}},
        ]}});
        let found = unbounded(&doc, &Pointer::from_tokens(["spec"]));
        let names: Vec<_> = found.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "f"]);
        assert!(found[1].memory && !found[0].memory);
        assert_eq!(found[2].ptr.render(), "/spec/volumes/6/emptyDir");
    }

    #[test]
    fn odd_volumes_do_not_panic() {
        for doc in [
            json!({"spec": {"volumes": "x"}}),
            json!({"spec": null}),
            json!([]),
        ] {
            assert!(unbounded(&doc, &Pointer::from_tokens(["spec"])).is_empty());
        }
    }

    #[test]
    fn broken_default_is_not_written() {
        use crate::admission::context::Operation;
        use crate::admission::settings::AdmissionSettings;
        let mut settings = AdmissionSettings::default();
        let obj = json!({"kind": "Pod", "spec": {"volumes": [{"name": "a", "emptyDir": {}}]}});
        let ctx = Context::new("", "Pod", Operation::Create, "ns", "p", &obj, &settings);
        let mut patch = PatchBuilder::new(obj.clone());
        EmptyDirSizeLimitMissing.mutate(&ctx, &mut patch);
        assert_eq!(patch.ops().len(), 1);
        settings.defaults.empty_dir_size_limit = "big".into();
        let ctx = Context::new("", "Pod", Operation::Create, "ns", "p", &obj, &settings);
        let mut patch = PatchBuilder::new(obj.clone());
        EmptyDirSizeLimitMissing.mutate(&ctx, &mut patch);
        assert!(patch.is_empty());
    }
}
