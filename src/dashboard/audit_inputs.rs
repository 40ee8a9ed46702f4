//! What the background audit of `serve` judges, per configuration source: every object of
//! the manifests directory (not only the kinds the data plane keeps), or, with the
//! Kubernetes source, whatever the watches already hold (the ingress store's Ingresses,
//! IngressClasses and Services, and the webhook's cluster view). Nothing here talks to
//! the API server: the audit costs no extra watches or permissions.
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use serde_json::Value;

use crate::admission::audit::Input;
use crate::admission::check::parse_manifests;
use crate::admission::cluster::ClusterViewHandle;
use crate::reload::ConfigHandle;
use crate::reload::HeldObjects;
use crate::source::files::{FilesError, manifest_names, read_limited};

/// Why a source could not be read for an audit (the previous audit stays shown).
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    #[error(transparent)]
    Directory(#[from] FilesError),
}

/// One set of objects to audit.
#[derive(Debug)]
pub struct Inputs {
    /// What was audited, for the page.
    pub source: String,
    pub objects: Vec<Input>,
    /// The objects are all there is (a directory), so a missing one is worth a finding;
    /// watched objects may lag behind the cluster, so there an absence proves nothing.
    pub complete: bool,
}

/// Where the audit reads its objects.
pub trait AuditSource: Send + Sync + 'static {
    /// Changes whenever the objects may have changed; cheap, polled.
    fn version(&self) -> u64;
    /// The objects as they stand now. Called on a blocking thread.
    fn read(&self) -> Result<Inputs, InputsError>;
}

/// The manifests directory of `--source files`. Its version counts the files source's
/// scans that found a file changed (`FilesDriver::changed_scans`), so an edit to kinds
/// the data plane ignores is audited too.
#[derive(Debug)]
pub struct ManifestsDir {
    pub dir: PathBuf,
    pub changed_scans: Arc<AtomicU64>,
}

impl AuditSource for ManifestsDir {
    fn version(&self) -> u64 {
        self.changed_scans.load(Ordering::Acquire)
    }

    fn read(&self) -> Result<Inputs, InputsError> {
        let mut objects = Vec::new();
        for name in manifest_names(&self.dir)? {
            let path = self.dir.join(&name);
            let file = path.display().to_string();
            // A file that cannot be read or parsed is already on the problems list; the
            // audit judges the rest rather than nothing.
            let text = match read_limited(&path).map(String::from_utf8) {
                Ok(Ok(text)) => text,
                Ok(Err(_)) | Err(_) => {
                    tracing::debug!(%file, "audit: skipping an unreadable manifest");
                    continue;
                }
            };
            match parse_manifests(&file, &text) {
                Ok(docs) => objects.extend(docs.into_iter().map(|object| Input {
                    file: file.clone(),
                    object,
                })),
                Err(e) => tracing::debug!(%file, error = %e, "audit: skipping a manifest"),
            }
        }
        Ok(Inputs {
            source: self.dir.display().to_string(),
            objects,
            complete: true,
        })
    }
}

/// The objects the Kubernetes source's watches hold. Its version moves with every
/// routing change (the snapshot generation) and every new cluster view.
#[derive(Debug)]
pub struct Watched {
    pub config: ConfigHandle,
    pub held: Arc<ArcSwap<HeldObjects>>,
    pub cluster: Option<ClusterViewHandle>,
}

/// `what` as JSON; k8s-openapi writes apiVersion and kind itself.
fn as_input<T: serde::Serialize>(what: &T) -> Option<Input> {
    let object = serde_json::to_value(what).ok()?;
    Some(Input {
        file: "cluster".to_string(),
        object,
    })
}

impl AuditSource for Watched {
    fn version(&self) -> u64 {
        // Both only grow, so their sum changes whenever either does.
        let view = self.cluster.as_ref().map_or(0, ClusterViewHandle::version);
        self.config.load().generation.wrapping_add(view)
    }

    fn read(&self) -> Result<Inputs, InputsError> {
        let held = self.held.load_full();
        let mut objects: Vec<Input> = Vec::new();
        objects.extend(held.classes.iter().filter_map(|o| as_input(&**o)));
        objects.extend(held.ingresses.iter().filter_map(|o| as_input(&**o)));
        objects.extend(held.services.iter().filter_map(|o| as_input(&**o)));
        if let Some(view) = self.cluster.as_ref().and_then(ClusterViewHandle::load) {
            objects.extend(view.objects().map(|o: &Value| Input {
                file: "cluster".to_string(),
                object: o.clone(),
            }));
        }
        Ok(Inputs {
            source: "cluster (watched objects)".to_string(),
            objects,
            complete: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_object_of_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("broken.yaml"), "a: [").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "kind: Pod\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "kind: Pod\n").unwrap();
        let source = ManifestsDir {
            dir: dir.path().to_path_buf(),
            changed_scans: Arc::default(),
        };
        let inputs = source.read().unwrap();
        assert!(inputs.complete);
        let kinds: Vec<&str> = inputs
            .objects
            .iter()
            .filter_map(|i| i.object["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["Deployment", "ConfigMap"]);
        assert!(inputs.objects[0].file.ends_with("a.yaml"));
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let source = ManifestsDir {
            dir: PathBuf::from("/nonexistent/portcullis-audit"),
            changed_scans: Arc::default(),
        };
        assert!(source.read().is_err());
    }
}
