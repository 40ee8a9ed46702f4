//! The manifests-directory source: every `*.yaml`, `*.yml` and `*.json` file directly in one
//! directory (multi-document YAML and `List` kinds included) becomes objects in the store,
//! one store origin per file, and a directory watch reports changes.
//!
//! A ConfigMap that does not deserialize is a warning, not a failed file: ConfigMaps were
//! long ignored here and only matter when `auth-proxy-set-headers` names one.
//!
//! Failure behaviour: a file is applied whole or not at all. A file that does not parse, or
//! holds an object that does not deserialize, is reported as a `Problem` and the objects
//! loaded from its last good version stay in force. An unreadable directory is an error
//! and changes nothing.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};

use super::store::{Object, ObjectError, ObjectStore};
use crate::ingress::model::problem::Problem;

/// Files larger than this are refused: a manifest this big is a mistake, not config.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// `List` nesting deeper than this is refused (Lists of Lists are legal but never deep).
const MAX_LIST_DEPTH: usize = 4;
/// How long the watcher waits after the first event for the rest of a burst (an editor's
/// write-rename, a volume's `..data` swap) before rescanning.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// What can stop a scan as a whole.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("reading manifests directory {path}")]
    ReadDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("watching manifests directory {path}")]
    Watch {
        path: String,
        #[source]
        source: notify::Error,
    },
}

#[derive(Debug)]
struct FileState {
    /// Bytes of the version last looked at, to skip files that did not change.
    /// `None` after a read error, so the next scan retries.
    content: Option<Vec<u8>>,
    /// Some version of the file was applied (so a broken one leaves objects in force).
    applied: bool,
}

/// The state of one watched manifests directory.
#[derive(Debug)]
pub struct FileSource {
    dir: PathBuf,
    files: BTreeMap<String, FileState>,
    /// Scans that found a file changed. Readers of the whole directory (the dashboard's
    /// audit) follow it rather than the snapshot generation, which an edit touching only
    /// kinds the data plane ignores, next to an EndpointSlice, would leave unchanged.
    changed_scans: Arc<AtomicU64>,
}

/// Reads every manifest in `dir` once: the store plus every problem found.
pub fn load_all(dir: &Path) -> Result<(ObjectStore, Vec<Problem>), FilesError> {
    let mut source = FileSource::new(dir);
    let mut store = ObjectStore::new();
    source.scan(&mut store)?;
    let problems = store.problems();
    Ok((store, problems))
}

impl FileSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSource {
            dir: dir.into(),
            files: BTreeMap::new(),
            changed_scans: Arc::default(),
        }
    }

    /// Counts the scans that found some file changed, appeared or vanished.
    pub fn changed_scans(&self) -> Arc<AtomicU64> {
        self.changed_scans.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the directory and applies every file that changed, appeared or vanished to
    /// `store`. Returns whether anything in the store changed.
    pub fn scan(&mut self, store: &mut ObjectStore) -> Result<bool, FilesError> {
        let names = self.list()?;
        let mut changed = false;
        let gone: Vec<String> = self
            .files
            .keys()
            .filter(|k| !names.contains(k))
            .cloned()
            .collect();
        for name in gone {
            self.files.remove(&name);
            store.remove_origin(&self.origin(&name));
            changed = true;
        }
        for name in names {
            let path = self.dir.join(&name);
            let origin = self.origin(&name);
            let content = match read_limited(&path) {
                Ok(c) => c,
                // Vanished between listing and reading: the next event rescans.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    store.set_origin_problems(&origin, vec![file_problem(&origin, e.to_string())]);
                    // Forget the content so the next scan retries, but keep `applied`.
                    if let Some(f) = self.files.get_mut(&name) {
                        f.content = None;
                    }
                    changed = true;
                    continue;
                }
            };
            if self
                .files
                .get(&name)
                .is_some_and(|f| f.content.as_ref() == Some(&content))
            {
                continue;
            }
            changed = true;
            let mut applied = self.files.get(&name).is_some_and(|f| f.applied);
            match parse_file(&name, &content) {
                Ok((objects, warnings)) => {
                    applied = true;
                    let warnings = warnings
                        .into_iter()
                        .map(|(object, message)| Problem {
                            file: Some(origin.clone()),
                            object,
                            message,
                        })
                        .collect();
                    store.replace_origin(&origin, objects, warnings);
                }
                Err(errors) => {
                    let mut problems: Vec<Problem> = errors
                        .into_iter()
                        .map(|(object, message)| Problem {
                            file: Some(origin.clone()),
                            object,
                            message,
                        })
                        .collect();
                    if applied {
                        problems.push(file_problem(
                            &origin,
                            "file not applied; its last good version stays in force".into(),
                        ));
                    } else {
                        problems.push(file_problem(&origin, "file not applied".into()));
                    }
                    store.set_origin_problems(&origin, problems);
                }
            }
            self.files.insert(
                name,
                FileState {
                    content: Some(content),
                    applied,
                },
            );
        }
        if changed {
            self.changed_scans.fetch_add(1, Ordering::Release);
        }
        Ok(changed)
    }

    fn origin(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Manifest file names directly in the directory. Dot entries are skipped: they are
    /// editor temporaries or the `..data`/`..2024_…` internals of a Kubernetes volume, whose
    /// visible entries are symlinks into them and are followed like any file.
    fn list(&self) -> Result<Vec<String>, FilesError> {
        manifest_names(&self.dir)
    }

    /// Starts a watch on the directory. Every relevant event is signalled on the returned
    /// channel (coalesced: one pending signal at most); keep the watcher alive as long as
    /// signals are wanted.
    pub fn watch(
        &self,
    ) -> Result<(notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>), FilesError> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let path = self.dir.display().to_string();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(event) if is_relevant(&event.kind) => {
                    let _ = tx.try_send(());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "manifests watch error; rescanning");
                    let _ = tx.try_send(());
                }
            })
            .map_err(|source| FilesError::Watch {
                path: path.clone(),
                source,
            })?;
        watcher
            .watch(&self.dir, RecursiveMode::NonRecursive)
            .map_err(|source| FilesError::Watch { path, source })?;
        Ok((watcher, rx))
    }
}

fn file_problem(origin: &str, message: String) -> Problem {
    Problem {
        file: Some(origin.to_string()),
        object: None,
        message,
    }
}

/// Our own reads raise open/close-nowrite events; reacting to them would rescan forever.
fn is_relevant(kind: &EventKind) -> bool {
    use notify::event::AccessKind;
    match kind {
        EventKind::Access(AccessKind::Close(notify::event::AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn is_manifest_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml") || lower.ends_with(".json")
}

/// Manifest file names directly in `dir`, sorted, as the source reads them (see
/// `FileSource::list`); other readers of the directory use it to see the same files.
pub fn manifest_names(dir: &Path) -> Result<Vec<String>, FilesError> {
    let err = |source| FilesError::ReadDir {
        path: dir.display().to_string(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') || !is_manifest_name(&name) {
            continue;
        }
        // metadata() follows symlinks; dangling links and directories are skipped.
        match std::fs::metadata(entry.path()) {
            Ok(m) if m.is_file() => names.push(name),
            _ => continue,
        }
    }
    names.sort();
    Ok(names)
}

/// The bytes of a manifest file, refused above the size limit.
pub(crate) fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "file is larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    Ok(buf)
}

/// (object name if known, message)
type Finding = (Option<String>, String);

/// Parses one file into objects. `Err` when any document fails: the file is not applied.
/// `Ok` carries warnings for objects skipped on purpose (unsupported apiVersions).
pub(crate) fn parse_file(
    name: &str,
    content: &[u8],
) -> Result<(Vec<Object>, Vec<Finding>), Vec<Finding>> {
    let text = std::str::from_utf8(content).map_err(|e| vec![(None, format!("not UTF-8: {e}"))])?;
    let documents: Vec<serde_json::Value> = if name.to_ascii_lowercase().ends_with(".json") {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| vec![(None, format!("JSON does not parse: {e}"))])?;
        vec![v]
    } else {
        serde_saphyr::from_multiple(text)
            .map_err(|e| vec![(None, format!("YAML does not parse: {e}"))])?
    };
    let mut objects = Vec::new();
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        collect(doc, i + 1, 0, &mut objects, &mut warnings, &mut errors);
    }
    if errors.is_empty() {
        Ok((objects, warnings))
    } else {
        Err(errors)
    }
}

fn collect(
    doc: serde_json::Value,
    index: usize,
    depth: usize,
    objects: &mut Vec<Object>,
    warnings: &mut Vec<Finding>,
    errors: &mut Vec<Finding>,
) {
    if doc.is_null() {
        return;
    }
    let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind.ends_with("List") && doc.get("items").is_some_and(|i| i.is_array()) {
        if depth >= MAX_LIST_DEPTH {
            errors.push((None, format!("document {index}: Lists nested too deeply")));
            return;
        }
        if let Some(serde_json::Value::Array(items)) = doc.get("items").cloned() {
            for item in items {
                collect(item, index, depth + 1, objects, warnings, errors);
            }
        }
        return;
    }
    let label = describe(&doc, index);
    // ConfigMaps were long ignored here and matter only when `auth-proxy-set-headers` names
    // one: an unrelated malformed one must not fail its file.
    let config_map = kind == "ConfigMap";
    match Object::from_value(doc) {
        Ok(Some(obj)) => objects.push(obj),
        Ok(None) => {}
        Err(e @ ObjectError::UnsupportedVersion { .. }) => {
            warnings.push((Some(label), format!("{e}; ignored")));
        }
        Err(e) if config_map => warnings.push((Some(label), format!("{e}; ignored"))),
        Err(e) => errors.push((Some(label), e.to_string())),
    }
}

/// `Kind namespace/name` as far as the raw document tells, or its position.
fn describe(doc: &serde_json::Value, index: usize) -> String {
    let kind = doc.get("kind").and_then(|k| k.as_str());
    let meta = doc.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(|n| n.as_str());
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(|n| n.as_str())
        .unwrap_or("default");
    match (kind, name) {
        (Some(k), Some(n)) if k == "IngressClass" => format!("{k} {n}"),
        (Some(k), Some(n)) => format!("{k} {ns}/{n}"),
        (Some(k), None) => format!("{k} (document {index})"),
        _ => format!("document {index}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns}\n";

    #[test]
    fn multi_document_lists_and_comment_only_documents() {
        let text = format!(
            "---\n# just a comment\n---\n{SVC}---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {{name: api}}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: c}}\n"
        );
        let (objects, warnings) = parse_file("a.yaml", text.as_bytes()).unwrap();
        let keys: Vec<_> = objects.iter().map(|o| o.key()).collect();
        assert_eq!(keys, ["ns/web", "default/api", "default/c"]);
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_malformed_config_map_is_only_a_warning() {
        let text = format!(
            "{SVC}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: ns}}\ndata: {{a: [1]}}\n"
        );
        let (objects, warnings) = parse_file("a.yaml", text.as_bytes()).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(warnings[0].0.as_deref(), Some("ConfigMap ns/c"));
    }

    #[test]
    fn bad_object_fails_the_file_and_names_the_object() {
        let text = format!(
            "{SVC}---\napiVersion: v1\nkind: Service\nmetadata: {{name: bad, namespace: ns}}\nspec: {{ports: 7}}\n"
        );
        let errors = parse_file("a.yaml", text.as_bytes()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0.as_deref(), Some("Service ns/bad"));
        let errors = parse_file("a.yaml", b"kind: [unclosed").unwrap_err();
        assert!(errors[0].1.contains("YAML does not parse"), "{errors:?}");
        let errors = parse_file("a.json", b"{").unwrap_err();
        assert!(errors[0].1.contains("JSON"));
    }

    #[test]
    fn old_api_versions_are_warnings_not_failures() {
        let text = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: old}\n";
        let (objects, warnings) = parse_file("a.yml", text.as_bytes()).unwrap();
        assert!(objects.is_empty());
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].0.as_deref(), Some("Ingress default/old"));
    }

    #[test]
    fn scan_keeps_last_good_file_and_skips_dot_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("svc.yaml"), SVC).unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not: [valid").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let mut source = FileSource::new(dir.path());
        let mut store = ObjectStore::new();
        assert!(source.scan(&mut store).unwrap());
        assert!(store.service("ns", "web").is_some());
        assert!(store.problems().is_empty());
        assert!(
            !source.scan(&mut store).unwrap(),
            "unchanged files are skipped"
        );

        std::fs::write(dir.path().join("svc.yaml"), "kind: [broken").unwrap();
        assert!(source.scan(&mut store).unwrap());
        assert!(store.service("ns", "web").is_some(), "last good stays");
        let problems = store.problems();
        assert!(problems.iter().any(|p| p.message.contains("last good")));

        std::fs::remove_file(dir.path().join("svc.yaml")).unwrap();
        assert!(source.scan(&mut store).unwrap());
        assert!(store.service("ns", "web").is_none());
        assert!(store.problems().is_empty());
    }

    #[test]
    fn changed_scans_count_edits_to_kinds_the_store_ignores() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("svc.yaml"), SVC).unwrap();
        let mut source = FileSource::new(dir.path());
        let counter = source.changed_scans();
        let mut store = ObjectStore::new();
        source.scan(&mut store).unwrap();
        source.scan(&mut store).unwrap();
        assert_eq!(counter.load(Ordering::SeqCst), 1, "an idle rescan counted");
        std::fs::write(
            dir.path().join("app.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
        )
        .unwrap();
        source.scan(&mut store).unwrap();
        assert_eq!(counter.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn kubernetes_volume_layout_is_followed() {
        // ConfigMap volumes: visible names are symlinks through `..data` into a
        // timestamped directory that is swapped atomically.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..2026_01")).unwrap();
        std::fs::write(d.join("..2026_01/svc.yaml"), SVC).unwrap();
        std::os::unix::fs::symlink("..2026_01", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/svc.yaml", d.join("svc.yaml")).unwrap();
        let (store, problems) = load_all(d).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(store.service("ns", "web").is_some());
    }

    #[test]
    fn our_own_reads_raise_no_events() {
        // inotify reports opens and reads too; reacting to those would rescan forever.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("svc.yaml"), SVC).unwrap();
        let mut source = FileSource::new(dir.path());
        let (_watcher, mut rx) = source.watch().unwrap();
        let mut store = ObjectStore::new();
        for _ in 0..3 {
            source.files.clear(); // force a full re-read
            source.scan(&mut store).unwrap();
        }
        std::thread::sleep(Duration::from_millis(150));
        assert!(rx.try_recv().is_err(), "reading files raised an event");
        std::fs::write(dir.path().join("svc.yaml"), SVC).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while rx.try_recv().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "a write raised no event"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_all(&dir.path().join("nope")),
            Err(FilesError::ReadDir { .. })
        ));
    }
}
