//! AdmissionReview decoding and encoding for `admission.k8s.io/v1` and `v1beta1`.
//!
//! The response always carries `apiVersion` and `kind` of the version received and the
//! request's uid; `patch` and `patchType` appear together or not at all. Warnings are
//! shaped to the API server's limits (no control characters, 256 characters each, about
//! 4 KiB in total) so none is silently dropped there.
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::context::Operation;
use super::engine::Finding;
use super::settings::Action;

pub const V1: &str = "admission.k8s.io/v1";
pub const V1BETA1: &str = "admission.k8s.io/v1beta1";

/// Why a body is not a review we can answer.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("request body is empty")]
    Empty,
    #[error("request body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("apiVersion {0:?} is not admission.k8s.io/v1 or admission.k8s.io/v1beta1")]
    Version(String),
    #[error("kind {0:?} is not AdmissionReview")]
    Kind(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request has no uid")]
    NoUid,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<Request>,
}

/// group/version/kind as the API server sends it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Gvk {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// The fields of `request` portcullis uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub kind: Gvk,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub object: Option<Value>,
    #[serde(default)]
    pub old_object: Option<Value>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// A decoded review.
#[derive(Debug)]
pub struct Review {
    /// Which version to answer in.
    pub api_version: &'static str,
    pub request: Request,
}

/// Decodes a request body.
pub fn decode(body: &[u8]) -> Result<Review, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    let env: Envelope = serde_json::from_slice(body)?;
    let api_version = match env.api_version.as_deref() {
        Some(V1) => V1,
        Some(V1BETA1) => V1BETA1,
        other => return Err(DecodeError::Version(other.unwrap_or("").to_string())),
    };
    match env.kind.as_deref() {
        Some("AdmissionReview") => {}
        other => return Err(DecodeError::Kind(other.unwrap_or("").to_string())),
    }
    let request = env.request.ok_or(DecodeError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(DecodeError::NoUid);
    }
    Ok(Review {
        api_version,
        request,
    })
}

/// What to answer.
#[derive(Debug, Default)]
pub struct Answer {
    pub allowed: bool,
    /// Shown to the user when denied.
    pub message: Option<String>,
    pub warnings: Vec<String>,
    /// Rendered JSON Patch, only from /mutate and only when non-empty.
    pub patch: Option<Vec<u8>>,
}

/// Encodes the response review.
pub fn encode(api_version: &str, uid: &str, answer: &Answer) -> Vec<u8> {
    let mut resp = Map::new();
    resp.insert("uid".into(), Value::String(uid.to_string()));
    resp.insert("allowed".into(), Value::Bool(answer.allowed));
    if !answer.allowed {
        resp.insert(
            "status".into(),
            json!({
                "status": "Failure",
                "code": 403,
                "reason": "Forbidden",
                "message": answer.message.clone().unwrap_or_else(|| "denied by portcullis".into()),
            }),
        );
    }
    if !answer.warnings.is_empty() {
        resp.insert("warnings".into(), json!(answer.warnings));
    }
    if let Some(p) = &answer.patch {
        resp.insert("patchType".into(), Value::String("JSONPatch".into()));
        resp.insert(
            "patch".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(p)),
        );
    }
    let review = json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": Value::Object(resp)});
    serde_json::to_vec(&review).unwrap_or_default()
}

/// Largest warning the API server keeps whole once the total budget is exceeded.
const WARNING_MAX_CHARS: usize = 256;
/// The API server keeps all warnings whole while their total stays within 4096 runes;
/// stay under it, leaving room for other webhooks of the same request.
const WARNING_BUDGET_CHARS: usize = 3072;

/// One line per finding: `ruleId: message (at path)`.
pub fn finding_line(f: &Finding) -> String {
    if f.path.is_empty() {
        format!("{}: {}", f.rule, f.message)
    } else {
        format!("{}: {} (at {})", f.rule, f.message, f.path)
    }
}

/// Warnings for the warn findings, shaped to the API server's limits.
pub fn warnings(findings: &[Finding]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut total = 0;
    let warns: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.action == Action::Warn)
        .collect();
    for (i, f) in warns.iter().enumerate() {
        let mut line: String = finding_line(f)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if line.chars().count() > WARNING_MAX_CHARS {
            line = line.chars().take(WARNING_MAX_CHARS - 1).collect();
            line.push('…');
        }
        let len = line.chars().count();
        if total + len > WARNING_BUDGET_CHARS {
            out.push(format!(
                "portcullis: {} more warnings not shown; run `portcullis check` on the manifest",
                warns.len() - i
            ));
            break;
        }
        if !out.contains(&line) {
            total += len;
            out.push(line);
        }
    }
    out
}

/// The denial message: names the object and every denying rule, each saying what to fix.
pub fn denial_message(object: &str, findings: &[Finding]) -> String {
    let lines: Vec<String> = findings
        .iter()
        .filter(|f| f.action == Action::Deny)
        .map(finding_line)
        .collect();
    format!("portcullis denied {object}: {}", lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(action: Action, msg: &str) -> Finding {
        Finding {
            rule: "r",
            action,
            message: msg.into(),
            path: "/spec".into(),
        }
    }

    #[test]
    fn decode_errors_are_specific() {
        assert!(matches!(decode(b"  "), Err(DecodeError::Empty)));
        assert!(matches!(decode(b"{"), Err(DecodeError::Json(_))));
        assert!(matches!(
            decode(br#"{"apiVersion":"v1","kind":"AdmissionReview"}"#),
            Err(DecodeError::Version(_))
        ));
        assert!(matches!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#),
            Err(DecodeError::Kind(_))
        ));
        assert!(matches!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            Err(DecodeError::NoRequest)
        ));
        assert!(matches!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#),
            Err(DecodeError::NoUid)
        ));
    }

    #[test]
    fn encode_has_gvk_uid_and_base64_patch() {
        let a = Answer {
            allowed: true,
            patch: Some(b"[]".to_vec()),
            ..Default::default()
        };
        let v: Value = serde_json::from_slice(&encode(V1BETA1, "u-1", &a)).unwrap();
        assert_eq!(v["apiVersion"], V1BETA1);
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], "u-1");
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        assert_eq!(v["response"]["patch"], "W10=");
        assert!(v["response"].get("status").is_none());
    }

    #[test]
    fn warnings_respect_limits() {
        let long = "x".repeat(1000);
        let many: Vec<Finding> = (0..40)
            .map(|i| finding(Action::Warn, &format!("{i} {long}")))
            .collect();
        let w = warnings(&many);
        assert!(
            w.iter()
                .all(|l| l.chars().count() <= WARNING_MAX_CHARS + 80)
        );
        assert!(w.iter().map(|l| l.chars().count()).sum::<usize>() <= 4096);
        assert!(w.last().unwrap().contains("more warnings"));
        let ctrl = warnings(&[finding(Action::Warn, "a\nb")]);
        assert_eq!(ctrl, vec!["r: a b (at /spec)"]);
        assert!(warnings(&[finding(Action::Deny, "no")]).is_empty());
    }
}
