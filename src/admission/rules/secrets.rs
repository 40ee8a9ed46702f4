//! Secrets in plain sight: literal environment values and ConfigMap entries whose names say
//! they hold a credential, or whose values carry a PEM private key. Such values end up in
//! `kubectl describe`, in Git and in every backup; a Secret (referenced with `valueFrom`)
//! keeps them out.
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::{Rule, Violation};
use crate::admission::context::Context;
use crate::admission::patch::Pointer;
use crate::admission::settings::Action;
use crate::admission::template::containers;

/// The secrets rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(SensitiveContainerEnvVar),
        Box::new(SensitiveConfigmapContent),
    ]
}

// The patterns are literals, so building them cannot fail; a failure would be a typo
// caught by the first test run, and even then the rule only finds nothing.
static SENSITIVE_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^AWS_SECRET_ACCESS_KEY$|^GOOGLE_APPLICATION_CREDENTIALS$|^AZURE_.+KEY$|^OCI_CLI_KEY_CONTENT$|password|token|bearer|secret",
    )
    .ok()
});
static PRIVATE_KEY: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)-BEGIN\s+.*PRIVATE KEY-").ok());

/// Whether a variable or key name says it holds a credential.
pub fn sensitive_name(name: &str) -> bool {
    SENSITIVE_NAME.as_ref().is_some_and(|r| r.is_match(name))
}

/// Whether a value carries a PEM private key.
pub fn holds_private_key(value: &str) -> bool {
    PRIVATE_KEY.as_ref().is_some_and(|r| r.is_match(value))
}

/// `sensitiveContainerEnvVar` (Polaris id): an env var with a literal `value` whose name
/// says credential, or whose value is a private key.
pub struct SensitiveContainerEnvVar;

impl Rule for SensitiveContainerEnvVar {
    fn id(&self) -> &'static str {
        "sensitiveContainerEnvVar"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for c in containers(ctx.object, &t.spec) {
            let Some(env) = c.value.get("env").and_then(Value::as_array) else {
                continue;
            };
            for (i, e) in env.iter().enumerate() {
                let name = e.get("name").and_then(Value::as_str).unwrap_or("");
                let Some(value) = e.get("value").and_then(Value::as_str) else {
                    continue;
                };
                let why = if holds_private_key(value) {
                    "holds a private key"
                } else if sensitive_name(name) {
                    "is named like a credential"
                } else {
                    continue;
                };
                out.push(Violation::new(
                    format!(
                        "{} sets env {name:?} to a literal value that {why}: move it to a Secret and use valueFrom.secretKeyRef",
                        c.label()
                    ),
                    c.ptr.child("env").index(i).child("value"),
                ));
            }
        }
        out
    }
}

/// `sensitiveConfigmapContent` (Polaris id): a ConfigMap key named like a credential, or a
/// value holding a private key.
pub struct SensitiveConfigmapContent;

impl Rule for SensitiveConfigmapContent {
    fn id(&self) -> &'static str {
        "sensitiveConfigmapContent"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == ("", "ConfigMap")
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if (ctx.group, ctx.kind) != ("", "ConfigMap") {
            return Vec::new();
        }
        let Some(data) = ctx.object.get("data").and_then(Value::as_object) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in data {
            let value = value.as_str().unwrap_or("");
            let why = if holds_private_key(value) {
                "holds a private key"
            } else if sensitive_name(key) {
                "is named like a credential"
            } else {
                continue;
            };
            out.push(Violation::new(
                format!(
                    "ConfigMap key {key:?} {why}: keep credentials in a Secret, which is not printed by kubectl describe and can be encrypted at rest"
                ),
                Pointer::from_tokens(["data", key.as_str()]),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys() {
        for bad in [
            "DB_PASSWORD",
            "github_token",
            "aws_secret_access_key",
            "AZURE_STORAGE_KEY",
            "Bearer",
        ] {
            assert!(sensitive_name(bad), "{bad}");
        }
        for ok in ["AWS_REGION", "AZURE_KEY", "LOG_LEVEL", "PASS"] {
            assert!(!sensitive_name(ok), "{ok}");
        }
        assert!(holds_private_key(
            "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----"
        ));
        assert!(!holds_private_key("-----BEGIN CERTIFICATE-----"));
    }
}
