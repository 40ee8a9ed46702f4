//! The recompile-and-swap step both drivers share (`Publisher`): compile the store on a
//! blocking thread against the snapshot in force (or refresh its endpoints in place),
//! publish the result, count it and log the problems that are new.
//!
//! Problems in files or objects are logged once each (when they first appear), exported
//! as a gauge, and never stop a reload.
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio::sync::watch;

use super::ConfigHandle;
use crate::ingress::build::compile::{CompileOptions, compile};
use crate::ingress::build::endpoint_refresh::refresh;
use crate::ingress::model::problem::Problem;
use crate::ingress::model::snapshot::{Backend, Snapshot};
use crate::source::ObjectStore;

/// What one rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    /// Nothing had changed.
    Nothing,
    /// Only endpoints changed; this many backends got a new set in the snapshot in force.
    Endpoints(usize),
    /// A new snapshot of this generation is in force.
    Snapshot(u64),
}

enum Step {
    Refreshed(Vec<Arc<Backend>>),
    Compiled(Box<Snapshot>),
}

/// Swaps endpoint sets in place when only endpoints changed (and the fast path can say
/// all of it), compiles otherwise.
fn step(store: &mut ObjectStore, opts: &CompileOptions, previous: &Snapshot) -> Step {
    let changes = store.take_changes();
    if changes.endpoints_only() {
        match refresh(
            previous,
            store,
            &opts.endpoint_filter,
            &changes.endpoints_of,
        ) {
            Ok(backends) => return Step::Refreshed(backends),
            Err(why) => tracing::debug!(%why, "endpoint change needs a full compile"),
        }
    }
    Step::Compiled(Box::new(compile(store, opts, Some(previous))))
}

/// The recompile-and-swap step every source shares: compile the store on a blocking
/// thread against the snapshot in force, publish the result, announce its generation.
#[derive(Debug)]
pub(crate) struct Publisher {
    handle: ConfigHandle,
    opts: CompileOptions,
    generations: watch::Sender<u64>,
}

impl Publisher {
    /// A publisher into `handle`; the receiver sees every generation it publishes.
    pub(crate) fn new(handle: ConfigHandle, opts: CompileOptions) -> (Self, watch::Receiver<u64>) {
        let (generations, rx) = watch::channel(handle.load().generation);
        (
            Publisher {
                handle,
                opts,
                generations,
            },
            rx,
        )
    }

    /// Runs `prepare` on `state` and compiles the store it returns, both on a blocking
    /// thread (parsing and compiling are CPU work; the async workers keep serving), then
    /// publishes the snapshot. When the store says only endpoints changed, the affected
    /// backends of the snapshot in force are refreshed instead and nothing is published.
    /// `prepare` returns `Ok(None)` when nothing changed. Gives the state back with what
    /// was done; `None` only if the blocking task died, in which case the state is lost.
    pub(crate) async fn rebuild<S, E>(
        &self,
        mut state: S,
        prepare: fn(&mut S) -> Result<Option<&mut ObjectStore>, E>,
    ) -> Option<(S, Result<Published, E>)>
    where
        S: Send + 'static,
        E: Send + 'static,
    {
        let previous = self.handle.load_full();
        let opts = self.opts.clone();
        let (state, outcome, previous, started) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let outcome =
                prepare(&mut state).map(|store| store.map(|store| step(store, &opts, &previous)));
            (state, outcome, previous, started)
        })
        .await
        .ok()?;
        let outcome = outcome.map(|step| match step {
            Some(Step::Compiled(snapshot)) => {
                report(&snapshot, &previous.problems, started);
                let generation = snapshot.generation;
                self.handle.store(Arc::from(snapshot));
                let _ = self.generations.send(generation);
                Published::Snapshot(generation)
            }
            Some(Step::Refreshed(backends)) => {
                for b in &backends {
                    crate::ingress::model::ingress_metrics::set_backend_gauges(b);
                }
                if let Some(m) = metrics() {
                    m.reloads.with_label_values(&["endpoints"]).inc();
                }
                tracing::debug!(
                    generation = previous.generation,
                    backends = backends.len(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "endpoints refreshed in place"
                );
                Published::Endpoints(backends.len())
            }
            None => Published::Nothing,
        });
        Some((state, outcome))
    }
}

pub(super) struct Metrics {
    pub(super) reloads: IntCounterVec,
    problems: IntGauge,
    last_reload: IntGauge,
}

/// The reload metrics; `None` only if their (constant) definitions were refused.
pub(super) fn metrics() -> Option<&'static Metrics> {
    static METRICS: OnceLock<Option<Metrics>> = OnceLock::new();
    METRICS
        .get_or_init(|| {
            let reloads = IntCounterVec::new(
                Opts::new(
                    "config_reloads_total",
                    "Configuration rebuilds by result: ok, problems (built, with problems), \
                     endpoints (only endpoints changed, swapped in place without a compile), \
                     error (source unreadable, nothing changed).",
                ),
                &["result"],
            )
            .ok()?;
            let problems = IntGauge::new(
                "config_problems",
                "Problems in the configuration currently served.",
            )
            .ok()?;
            let last_reload = IntGauge::new(
                "config_last_reload_timestamp_seconds",
                "Unix time of the last configuration rebuild (its age: time() minus this).",
            )
            .ok()?;
            Some(Metrics {
                reloads: crate::metrics::register(reloads),
                problems: crate::metrics::register(problems),
                last_reload: crate::metrics::register(last_reload),
            })
        })
        .as_ref()
}

/// Counts the reload, sets the gauge and logs each problem that is new since `before`.
pub(super) fn report(snapshot: &Snapshot, before: &[Problem], started: Instant) {
    if let Some(m) = metrics() {
        let result = if snapshot.problems.is_empty() {
            "ok"
        } else {
            "problems"
        };
        m.reloads.with_label_values(&[result]).inc();
        m.problems.set(snapshot.problems.len() as i64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        m.last_reload.set(i64::try_from(now).unwrap_or(i64::MAX));
    }
    let known: HashSet<String> = before.iter().map(Problem::to_string).collect();
    for p in snapshot
        .problems
        .iter()
        .filter(|p| !known.contains(&p.to_string()))
    {
        tracing::warn!(
            file = p.file.as_deref().unwrap_or("-"),
            object = p.object.as_deref().unwrap_or("-"),
            "{}",
            p.message
        );
    }
    tracing::info!(
        generation = snapshot.generation,
        routes = snapshot.router.len(),
        problems = snapshot.problems.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "ingress configuration loaded"
    );
}
