//! The background audit of `serve`: once the configuration is complete, and again after
//! it changes, every object the source holds goes through every admission rule (as
//! `portcullis audit` does) and the summary is published for the dashboard.
//!
//! It never runs on a request: the work happens on a blocking thread, and readers load
//! the last published summary without waiting. Audits are at least `min_interval` apart
//! whatever the rate of changes, so a rollout or an editor saving in a loop costs one
//! audit per interval. A source that cannot be read leaves the previous summary shown.
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::audit::{AuditCell, Run, summarize};
use super::audit_inputs::AuditSource;
use crate::admission::Engine;
use crate::admission::audit::{audit, audit_watched};

/// How often the source's version is looked at between audits.
const POLL: Duration = Duration::from_secs(1);

/// A background audit.
pub struct Auditor {
    pub engine: Arc<Engine>,
    pub source: Arc<dyn AuditSource>,
    pub min_interval: Duration,
    pub max_findings: usize,
    pub cell: AuditCell,
}

impl Auditor {
    /// Runs until the runtime ends; the first audit waits for `complete` to turn true, so
    /// a half-listed cluster is never scored.
    pub fn spawn(self, mut complete: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            if complete.wait_for(|c| *c).await.is_err() {
                return;
            }
            let mut audited: Option<u64> = None;
            loop {
                // Read before the audit: a change made while it runs gets the next one.
                let version = self.source.version();
                if audited != Some(version) {
                    audited = Some(version);
                    self.audit_once().await;
                    tokio::time::sleep(self.min_interval).await;
                } else {
                    tokio::time::sleep(POLL).await;
                }
            }
        })
    }

    /// One audit, published into the cell when it succeeds.
    pub async fn audit_once(&self) {
        let engine = self.engine.clone();
        let source = self.source.clone();
        let max_findings = self.max_findings;
        let outcome = tokio::task::spawn_blocking(move || {
            let time_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let started = Instant::now();
            let inputs = source.read()?;
            let report = if inputs.complete {
                audit(&engine, &inputs.source, &inputs.objects)
            } else {
                audit_watched(&engine, &inputs.source, &inputs.objects)
            };
            let run = Run {
                time_ms,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                objects: inputs.objects.len(),
            };
            Ok::<_, super::audit_inputs::InputsError>(summarize(&report, run, max_findings))
        })
        .await;
        match outcome {
            Ok(Ok(summary)) => {
                tracing::info!(
                    objects = summary.objects,
                    score = summary.score,
                    findings = summary.findings_total,
                    elapsed_ms = summary.duration_ms,
                    "dashboard audit done"
                );
                self.cell.store(Some(Arc::new(summary)));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "dashboard audit: cannot read the objects; the last audit stays shown")
            }
            Err(e) => tracing::warn!(error = %e, "dashboard audit task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::audit::Input;
    use crate::dashboard::audit_inputs::{Inputs, InputsError};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A source whose objects and version the test sets.
    #[derive(Default)]
    struct Fake {
        version: AtomicU64,
        images: Mutex<Vec<&'static str>>,
    }

    impl AuditSource for Fake {
        fn version(&self) -> u64 {
            self.version.load(Ordering::SeqCst)
        }
        fn read(&self) -> Result<Inputs, InputsError> {
            let objects = self
                .images
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, image)| Input {
                    file: "t".into(),
                    object: serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": format!("p{i}"), "namespace": "t"},
                        "spec": {"containers": [{"name": "c", "image": image}]}}),
                })
                .collect();
            Ok(Inputs {
                source: "fake".into(),
                objects,
                complete: true,
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn audits_after_ready_and_after_changes_at_most_once_per_interval() {
        let (engine, _) = crate::admission::polaris::engine(Default::default(), None).unwrap();
        let fake = Arc::new(Fake::default());
        fake.images.lock().unwrap().push("nginx:1.27");
        let cell = AuditCell::default();
        let (ready, complete) = watch::channel(false);
        let task = Auditor {
            engine: Arc::new(engine),
            source: fake.clone(),
            min_interval: Duration::from_secs(10),
            max_findings: 100,
            cell: cell.clone(),
        }
        .spawn(complete);
        let settle = || async {
            for _ in 0..20 {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        settle().await;
        assert!(
            cell.load().is_none(),
            "audited before the source was complete"
        );
        ready.send_replace(true);
        let mut first = None;
        for _ in 0..100 {
            settle().await;
            if let Some(s) = cell.load_full() {
                first = Some(s);
                break;
            }
        }
        let first = first.expect("no audit after ready");
        assert_eq!(first.objects, 1);

        // A change right away waits out the interval.
        fake.images.lock().unwrap().push("nginx:latest");
        fake.version.store(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        settle().await;
        assert_eq!(cell.load_full().unwrap().objects, 1, "re-audited too early");
        let mut second = None;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            settle().await;
            let s = cell.load_full().unwrap();
            if s.objects == 2 {
                second = Some(s);
                break;
            }
        }
        let second = second.expect("the change was never audited");
        assert!(
            second
                .findings
                .iter()
                .any(|f| f.name == "p1" && f.check == "tagNotSpecified")
        );
        task.abort();
    }
}
