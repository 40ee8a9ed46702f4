//! Image rules: a tag that pins nothing, and `:latest` that the kubelet will not re-pull.
use serde_json::Value;

use super::{Rule, Violation};
use crate::admission::context::Context;
use crate::admission::patch::PatchBuilder;
use crate::admission::settings::Action;
use crate::admission::template::containers;

/// The images rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(TagNotSpecified),
        Box::new(PullPolicyNotAlways),
        Box::new(FloatingImagePullPolicy),
    ]
}

/// The tag of an image reference, or None when it has none. A digest pins the image, so
/// it counts as a tag. Registry ports (`host:5000/app`) are not tags.
pub fn image_tag(image: &str) -> Option<&str> {
    if let Some((_, digest)) = image.split_once('@') {
        return Some(digest);
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, t)| t)
}

/// True for images that move: no tag, or `latest`.
pub fn is_floating(image: &str) -> bool {
    matches!(image_tag(image), None | Some("latest"))
}

/// Containers (not ephemeral) with their image, for both rules.
fn images<'v>(
    doc: &'v Value,
    ctx: &Context<'_>,
) -> Vec<(crate::admission::template::ContainerRef<'v>, &'v str)> {
    let Some(t) = &ctx.template else {
        return Vec::new();
    };
    containers(doc, &t.spec)
        .into_iter()
        .filter_map(|c| {
            let img = c.value.get("image").and_then(Value::as_str)?;
            Some((c, img))
        })
        .collect()
}

/// `tagNotSpecified` (Polaris id): an image without a tag or with `:latest`.
pub struct TagNotSpecified;

impl Rule for TagNotSpecified {
    fn id(&self) -> &'static str {
        "tagNotSpecified"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        images(ctx.object, ctx)
            .into_iter()
            .filter(|(_, img)| is_floating(img))
            .map(|(c, img)| {
                Violation::new(
                    format!(
                        "{} uses image {img:?} without a fixed tag: pin a version tag or digest so every node runs the same code",
                        c.label()
                    ),
                    c.ptr.child("image"),
                )
            })
            .collect()
    }
}

/// `pullPolicyNotAlways` (Polaris id): any container whose `imagePullPolicy` is not
/// Always, so a node may run a cached image that the registry no longer serves (or that a
/// pod without pull credentials should not reach). Its mutation, off unless configured
/// (Polaris' `mutations:` list), sets Always.
pub struct PullPolicyNotAlways;

impl Rule for PullPolicyNotAlways {
    fn id(&self) -> &'static str {
        "pullPolicyNotAlways"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn mutation(&self) -> Option<bool> {
        Some(false)
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        images(ctx.object, ctx)
            .into_iter()
            .filter(|(c, _)| c.value.get("imagePullPolicy").and_then(Value::as_str) != Some("Always"))
            .map(|(c, _)| {
                Violation::new(
                    format!(
                        "{} does not set imagePullPolicy: Always: set it so every start checks the registry (and its credentials) instead of trusting the node's cache",
                        c.label()
                    ),
                    c.ptr.child("imagePullPolicy"),
                )
            })
            .collect()
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        let targets: Vec<_> = images(patch.doc(), ctx)
            .into_iter()
            .filter(|(c, _)| {
                c.value.get("imagePullPolicy").and_then(Value::as_str) != Some("Always")
            })
            .map(|(c, _)| c.ptr.child("imagePullPolicy"))
            .collect();
        for ptr in targets {
            patch.set(&ptr, Value::String("Always".into()));
        }
    }
}

/// `floatingImagePullPolicy`: a floating image (no tag, `latest`) whose pull policy is not
/// Always, so nodes keep whatever `latest` they pulled first. The mutation sets Always
/// where the policy is unset (an explicit choice is left to the validation rule). Before
/// the Polaris catalogue this rule was `pullPolicyNotAlways`.
pub struct FloatingImagePullPolicy;

impl Rule for FloatingImagePullPolicy {
    fn id(&self) -> &'static str {
        "floatingImagePullPolicy"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn mutation(&self) -> Option<bool> {
        Some(true)
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        images(ctx.object, ctx)
            .into_iter()
            .filter(|(c, img)| {
                is_floating(img) && c.value.get("imagePullPolicy").and_then(Value::as_str) != Some("Always")
            })
            .map(|(c, img)| {
                Violation::new(
                    format!(
                        "{} uses floating image {img:?} without imagePullPolicy: Always: set it, or pin a tag, so nodes do not keep a stale image",
                        c.label()
                    ),
                    c.ptr.child("imagePullPolicy"),
                )
            })
            .collect()
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        let targets: Vec<_> = images(patch.doc(), ctx)
            .into_iter()
            .filter(|(c, img)| is_floating(img) && c.value.get("imagePullPolicy").is_none())
            .map(|(c, _)| c.ptr.child("imagePullPolicy"))
            .collect();
        for ptr in targets {
            patch.add_if_absent(&ptr, Value::String("Always".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(image_tag("nginx"), None);
        assert_eq!(image_tag("nginx:1.27"), Some("1.27"));
        assert_eq!(image_tag("registry:5000/team/app"), None);
        assert_eq!(image_tag("registry:5000/team/app:v2"), Some("v2"));
        assert_eq!(image_tag("app@sha256:abc"), Some("sha256:abc"));
        assert!(is_floating("nginx:latest"));
        assert!(!is_floating("nginx:1.27"));
    }
}
