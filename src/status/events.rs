//! Kubernetes Events on Ingresses: while this replica leads, each configuration problem
//! that names an Ingress (a route conflict, a missing Service or Secret, an invalid
//! annotation) becomes one `events.k8s.io/v1` Warning Event regarding that Ingress, so
//! `kubectl describe ingress` shows what ingress-nginx users are used to seeing there.
//!
//! A problem is reported when it appears, not again while it stays, and again if it comes
//! back after having been fixed. Only the leader writes, so N replicas do not post N copies.
//!
//! Failure behaviour: a failed write is logged and counted, never retried (the next
//! appearance of the problem posts again); nothing here is fatal.
use std::collections::HashSet;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use super::metrics;
use crate::ingress::model::problem::Problem;
use crate::reload::ConfigHandle;

/// The `reportingController` of our Events.
pub const CONTROLLER: &str = "portcullis.io/ingress-controller";
/// At most this many Events per snapshot, so a bad bulk apply cannot flood the API.
const MAX_PER_CYCLE: usize = 50;
/// The API server's limit on `note`.
const MAX_NOTE: usize = 1024;

/// One Event to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub namespace: String,
    pub name: String,
    pub reason: &'static str,
    pub note: String,
}

/// What was reported and is still standing.
#[derive(Debug, Default)]
pub struct EventBook {
    standing: HashSet<(String, String)>,
}

impl EventBook {
    /// The Events for problems that were not standing at the last call; forgets the ones
    /// that are gone, so they are reported again if they return.
    pub fn plan(&mut self, problems: &[Problem]) -> Vec<Planned> {
        let mut now = HashSet::new();
        let mut out = Vec::new();
        for p in problems {
            let Some((namespace, name)) = ingress_of(p) else {
                continue;
            };
            let key = (format!("{namespace}/{name}"), p.message.clone());
            if !self.standing.contains(&key) {
                if out.len() >= MAX_PER_CYCLE {
                    // Not standing yet: reported by a later cycle.
                    continue;
                }
                out.push(Planned {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    reason: reason(&p.message),
                    note: truncate(&p.message, MAX_NOTE),
                });
            }
            now.insert(key);
        }
        self.standing = now;
        out
    }
}

/// `Ingress ns/name` → (ns, name).
fn ingress_of(p: &Problem) -> Option<(&str, &str)> {
    let object = p.object.as_deref()?.strip_prefix("Ingress ")?;
    let (ns, name) = object.split_once('/')?;
    (!ns.is_empty() && !name.is_empty()).then_some((ns, name))
}

/// A short CamelCase reason, as Events carry (ingress-nginx uses a few such words too).
fn reason(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("annotation") {
        "InvalidAnnotation"
    } else if m.contains("secret") {
        "MissingSecret"
    } else if m.contains("service") && (m.contains("does not exist") || m.contains("no port")) {
        "MissingService"
    } else if m.contains("claimed") || m.contains("conflict") || m.contains("already served") {
        "RouteConflict"
    } else {
        "ConfigProblem"
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The Event object for `p`.
pub fn event(p: &Planned, instance: &str) -> Event {
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", p.name)),
            namespace: Some(p.namespace.clone()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        reporting_controller: Some(CONTROLLER.into()),
        reporting_instance: Some(instance.into()),
        action: Some("Sync".into()),
        reason: Some(p.reason.into()),
        note: Some(p.note.clone()),
        type_: Some("Warning".into()),
        regarding: Some(ObjectReference {
            api_version: Some("networking.k8s.io/v1".into()),
            kind: Some("Ingress".into()),
            namespace: Some(p.namespace.clone()),
            name: Some(p.name.clone()),
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}

/// Posts Events for new problems of every snapshot while `leader` is true, once
/// `complete` (every watch listed) is.
pub fn start_events(
    client: kube::Client,
    config: ConfigHandle,
    mut generations: watch::Receiver<u64>,
    mut complete: watch::Receiver<bool>,
    mut leader: watch::Receiver<bool>,
    instance: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Before every watch has listed, "missing" Services and Secrets may only be not
        // listed yet: no Events about them.
        if complete.wait_for(|c| *c).await.is_err() {
            return;
        }
        let mut book = EventBook::default();
        loop {
            if !*leader.borrow_and_update() {
                if leader.wait_for(|l| *l).await.is_err() {
                    return;
                }
                // A new term: report what stands, the previous leader may not have.
                book = EventBook::default();
            }
            generations.mark_unchanged();
            let problems = config.load().problems.clone();
            for planned in book.plan(&problems) {
                let api: Api<Event> = Api::namespaced(client.clone(), &planned.namespace);
                match api
                    .create(&PostParams::default(), &event(&planned, &instance))
                    .await
                {
                    Ok(_) => metrics::event_posted(true),
                    Err(e) => {
                        metrics::event_posted(false);
                        tracing::warn!(ingress = %format!("{}/{}", planned.namespace, planned.name), error = %e, "posting an Event failed");
                    }
                }
            }
            tokio::select! {
                changed = generations.changed() => if changed.is_err() { return },
                changed = leader.changed() => if changed.is_err() { return },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(object: Option<&str>, message: &str) -> Problem {
        Problem {
            file: None,
            object: object.map(str::to_string),
            message: message.into(),
        }
    }

    #[test]
    fn new_problems_once_and_again_after_a_fix() {
        let mut book = EventBook::default();
        let missing = problem(
            Some("Ingress shop/web"),
            "backend Service shop/api does not exist; requests get 503",
        );
        let annotation = problem(
            Some("Ingress shop/web"),
            "annotation nginx.ingress.kubernetes.io/proxy-read-timeout: not a number",
        );
        let not_ingress = problem(None, "file x.yaml does not parse");
        let first = book.plan(&[missing.clone(), annotation.clone(), not_ingress]);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].reason, "MissingService");
        assert_eq!(first[1].reason, "InvalidAnnotation");
        assert_eq!(
            (first[0].namespace.as_str(), first[0].name.as_str()),
            ("shop", "web")
        );
        // Still standing: nothing new.
        assert!(book.plan(&[missing.clone(), annotation.clone()]).is_empty());
        // The annotation was fixed, then broken again: reported again.
        assert!(book.plan(std::slice::from_ref(&missing)).is_empty());
        let again = book.plan(&[missing, annotation]);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].reason, "InvalidAnnotation");
    }

    #[test]
    fn bounded_per_cycle_and_notes_cut_to_the_api_limit() {
        let mut book = EventBook::default();
        let many: Vec<Problem> = (0..200)
            .map(|i| problem(Some(&format!("Ingress ns/i{i}")), &"é".repeat(800)))
            .collect();
        let planned = book.plan(&many);
        assert_eq!(planned.len(), MAX_PER_CYCLE);
        // The rest come in the following cycles.
        assert_eq!(book.plan(&many).len(), MAX_PER_CYCLE);
        assert!(planned.iter().all(|p| p.note.len() <= MAX_NOTE));
        let ev = event(&planned[0], "pod-1");
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert_eq!(ev.regarding.unwrap().kind.as_deref(), Some("Ingress"));
        assert_eq!(ev.metadata.generate_name.as_deref(), Some("i0."));
    }
}
