//! Leader election over a `coordination.k8s.io/v1` Lease, so that exactly one replica
//! writes Ingress status. The usual algorithm: read the Lease, create it when absent, take
//! it over when its holder let it expire, renew it while held; every write carries the
//! `resourceVersion` that was read, so of two racing replicas one gets 409 and stays a
//! follower.
//!
//! Failure behaviour: API errors are logged, counted and retried on the next tick; they
//! never end the election. A leader that cannot renew within `renew_deadline` (shorter than
//! the lease duration) stops claiming leadership before anyone else may take over, so two
//! replicas never both believe they lead while clocks agree to within the difference. On
//! shutdown the leader releases the Lease (empty holder) so a successor need not wait.
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::metrics;

/// The Lease every replica competes for.
pub const LEASE_NAME: &str = "portcullis-leader";

/// Timing and identity of one candidate.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    pub namespace: String,
    pub name: String,
    /// Unique per process: the holder identity written into the Lease.
    pub identity: String,
    /// How long a holder's claim lasts without renewal (`leaseDurationSeconds`; whole
    /// seconds, at least one).
    pub lease_duration: Duration,
    /// How often the holder renews and followers retry.
    pub renew_period: Duration,
    /// A holder that has not renewed for this long stops acting as leader. Must be shorter
    /// than `lease_duration`.
    pub renew_deadline: Duration,
}

impl LeaseOptions {
    /// client-go's proportions: 15 s lease, renewal every 2 s, give up after 10 s.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaseOptions {
            namespace: namespace.into(),
            name: LEASE_NAME.to_string(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// The namespace portcullis runs in: `POD_NAMESPACE`, else the service account's
/// namespace file, else `portcullis`.
pub fn default_namespace() -> String {
    const SA_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
    std::env::var("POD_NAMESPACE")
        .ok()
        .or_else(|| std::fs::read_to_string(SA_NAMESPACE).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "portcullis".to_string())
}

/// `POD_NAME` (stable and readable in `kubectl get lease`), else the host name with a
/// random suffix so two processes on one host never share an identity.
pub fn default_identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()) {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "portcullis".to_string());
    let suffix: String = std::iter::repeat_with(fastrand::lowercase)
        .take(6)
        .collect();
    format!("{host}-{suffix}")
}

/// What a candidate should do about the Lease it just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or its holder let it expire: take it.
    Acquire,
    /// Someone else holds it and it has not expired.
    Follow { holder: String },
}

/// The pure core of the election. A Lease without a renew time counts as expired; one
/// without a duration gets `default_duration`.
pub fn decide(
    spec: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = match spec.holder_identity.as_deref() {
        None | Some("") => return Decision::Acquire,
        Some(h) if h == me => return Decision::Renew,
        Some(h) => h,
    };
    let Some(renewed) = &spec.renew_time else {
        return Decision::Acquire;
    };
    let duration = spec.lease_duration_seconds.filter(|s| *s > 0).map_or_else(
        || SignedDuration::try_from(default_duration).unwrap_or(SignedDuration::MAX),
        |s| SignedDuration::from_secs(i64::from(s)),
    );
    if now.duration_since(renewed.0) > duration {
        Decision::Acquire
    } else {
        Decision::Follow {
            holder: holder.to_string(),
        }
    }
}

/// The spec to write when `me` renews or takes the Lease: a new holder gets a fresh
/// acquire time and bumps the transition count; a renewal keeps both.
pub fn claimed(current: Option<&LeaseSpec>, me: &str, now: Timestamp, seconds: i32) -> LeaseSpec {
    let previous = current
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
    let (acquire_time, transitions) = match previous {
        Some(h) if h == me => (current.and_then(|s| s.acquire_time.clone()), transitions),
        Some(_) => (Some(MicroTime(now)), transitions.saturating_add(1)),
        None => (Some(MicroTime(now)), transitions),
    };
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        acquire_time: acquire_time.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_duration_seconds: Some(seconds),
        lease_transitions: Some(transitions),
        ..current.cloned().unwrap_or_default()
    }
}

/// The spec a stepping-down holder writes: no holder, so the next candidate takes it at
/// once instead of waiting for expiry.
pub fn released(current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        renew_time: Some(MicroTime(now)),
        lease_duration_seconds: Some(1),
        ..current.clone()
    }
}

/// A running candidate. Dropping it stops renewing without releasing (as a crash would);
/// `step_down` releases.
#[derive(Debug)]
pub struct Election {
    leader: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: super::AbortOnDrop,
}

impl Election {
    /// Whether this process holds the Lease now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Changes whenever leadership is gained or lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Stops competing; a leader releases the Lease first (bounded by one renew period).
    pub async fn step_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.join().await;
    }
}

/// Starts competing for the Lease. Must be called inside a tokio runtime.
pub fn start_election(client: kube::Client, opts: LeaseOptions) -> Election {
    let (tx, leader) = watch::channel(false);
    let (stop, stopped) = oneshot::channel();
    let api = Api::<Lease>::namespaced(client, &opts.namespace);
    let task = tokio::spawn(run(api, opts, tx, stopped));
    Election {
        leader,
        stop: Some(stop),
        task: super::AbortOnDrop(task),
    }
}

/// What one attempt found.
enum Outcome {
    Leading,
    Following(Option<String>),
}

async fn run(
    api: Api<Lease>,
    opts: LeaseOptions,
    tx: watch::Sender<bool>,
    mut stopped: oneshot::Receiver<()>,
) {
    // When the last successful renewal happened, while we lead.
    let mut renewed: Option<Instant> = None;
    let mut holder: Option<String> = None;
    loop {
        // A leader that could not renew in time must stop writing before the Lease can
        // expire for the others.
        if renewed.is_some_and(|t| t.elapsed() >= opts.renew_deadline) {
            renewed = None;
            set_leader(&tx, false, &opts);
        }
        let budget = match renewed {
            Some(t) => opts
                .renew_period
                .min(opts.renew_deadline.saturating_sub(t.elapsed())),
            None => opts.renew_period,
        };
        let started = Instant::now();
        match tokio::time::timeout(budget, attempt(&api, &opts)).await {
            Ok(Ok(Outcome::Leading)) => {
                renewed = Some(started);
                holder = Some(opts.identity.clone());
            }
            Ok(Ok(Outcome::Following(h))) => {
                renewed = None;
                if h != holder {
                    tracing::info!(lease = %opts.name, holder = h.as_deref().unwrap_or("-"), "following the status leader");
                    holder = h;
                }
            }
            Ok(Err(e)) => {
                metrics::lease_error();
                tracing::warn!(lease = %opts.name, error = %e, "leader election: lease request failed");
            }
            Err(_) => {
                metrics::lease_error();
                tracing::warn!(lease = %opts.name, "leader election: lease request timed out");
            }
        }
        if renewed.is_some_and(|t| t.elapsed() >= opts.renew_deadline) {
            renewed = None;
        }
        set_leader(&tx, renewed.is_some(), &opts);

        let wait = match renewed {
            Some(t) => opts
                .renew_period
                .min(opts.renew_deadline.saturating_sub(t.elapsed())),
            // Followers spread their retries so they do not all hit a fresh Lease at once.
            None => opts.renew_period.mul_f64(1.0 + fastrand::f64() * 0.2),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stopped => {
                let was_leader = renewed.is_some();
                set_leader(&tx, false, &opts);
                if was_leader {
                    let release = release(&api, &opts);
                    match tokio::time::timeout(opts.renew_period, release).await {
                        Ok(Ok(())) => tracing::info!(lease = %opts.name, "released the status leader lease"),
                        Ok(Err(e)) => tracing::warn!(lease = %opts.name, error = %e, "releasing the lease failed; it expires by itself"),
                        Err(_) => tracing::warn!(lease = %opts.name, "releasing the lease timed out; it expires by itself"),
                    }
                }
                return;
            }
        }
    }
}

fn set_leader(tx: &watch::Sender<bool>, leading: bool, opts: &LeaseOptions) {
    let changed = tx.send_if_modified(|current| {
        let changed = *current != leading;
        *current = leading;
        changed
    });
    if changed {
        metrics::set_leader(leading);
        if leading {
            tracing::info!(lease = %opts.name, identity = %opts.identity, "became the status leader");
        } else {
            tracing::info!(lease = %opts.name, identity = %opts.identity, "no longer the status leader");
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists() || s.code == 409)
}

async fn attempt(api: &Api<Lease>, opts: &LeaseOptions) -> Result<Outcome, kube::Error> {
    let now = Timestamp::now();
    let seconds = opts.duration_seconds();
    let Some(mut lease) = api.get_opt(&opts.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(opts.name.clone()),
                namespace: Some(opts.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(claimed(None, &opts.identity, now, seconds)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Outcome::Leading),
            Err(e) if is_conflict(&e) => Ok(Outcome::Following(None)),
            Err(e) => Err(e),
        };
    };
    match decide(
        lease.spec.as_ref(),
        &opts.identity,
        now,
        opts.lease_duration,
    ) {
        Decision::Follow { holder } => Ok(Outcome::Following(Some(holder))),
        Decision::Renew | Decision::Acquire => {
            lease.spec = Some(claimed(lease.spec.as_ref(), &opts.identity, now, seconds));
            lease.metadata.managed_fields = None;
            // `resourceVersion` stays as read: a concurrent writer makes this a 409.
            match api
                .replace(&opts.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(Outcome::Leading),
                Err(e) if is_conflict(&e) => Ok(Outcome::Following(None)),
                Err(e) => Err(e),
            }
        }
    }
}

async fn release(api: &Api<Lease>, opts: &LeaseOptions) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&opts.name).await? else {
        return Ok(());
    };
    let Some(spec) = &lease.spec else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(opts.identity.as_str()) {
        return Ok(());
    }
    lease.spec = Some(released(spec, Timestamp::now()));
    lease.metadata.managed_fields = None;
    api.replace(&opts.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn held(holder: &str, renewed: i64, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(at(renewed))),
            acquire_time: Some(MicroTime(at(0))),
            lease_duration_seconds: Some(seconds),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn free_leases_are_taken() {
        assert_eq!(decide(None, "a", at(0), D), Decision::Acquire);
        let empty = LeaseSpec::default();
        assert_eq!(decide(Some(&empty), "a", at(0), D), Decision::Acquire);
        let blank = LeaseSpec {
            holder_identity: Some(String::new()),
            ..held("x", 0, 15)
        };
        assert_eq!(decide(Some(&blank), "a", at(0), D), Decision::Acquire);
        let never_renewed = LeaseSpec {
            renew_time: None,
            ..held("b", 0, 15)
        };
        assert_eq!(
            decide(Some(&never_renewed), "a", at(0), D),
            Decision::Acquire
        );
    }

    #[test]
    fn a_live_lease_of_another_holder_is_respected_until_it_expires() {
        let lease = held("b", 100, 15);
        let follow = Decision::Follow { holder: "b".into() };
        assert_eq!(decide(Some(&lease), "a", at(100), D), follow);
        assert_eq!(
            decide(Some(&lease), "a", at(115), D),
            follow,
            "exactly at expiry"
        );
        assert_eq!(decide(Some(&lease), "a", at(116), D), Decision::Acquire);
        // A renew time in our future (clock skew) is not expired.
        assert_eq!(decide(Some(&lease), "a", at(50), D), follow);
    }

    #[test]
    fn missing_duration_falls_back_to_ours() {
        let lease = LeaseSpec {
            lease_duration_seconds: None,
            ..held("b", 100, 0)
        };
        let follow = Decision::Follow { holder: "b".into() };
        assert_eq!(decide(Some(&lease), "a", at(110), D), follow);
        assert_eq!(decide(Some(&lease), "a", at(116), D), Decision::Acquire);
        let zero = held("b", 100, 0);
        assert_eq!(decide(Some(&zero), "a", at(116), D), Decision::Acquire);
    }

    #[test]
    fn our_own_lease_is_renewed_even_if_expired() {
        let lease = held("a", 100, 15);
        assert_eq!(decide(Some(&lease), "a", at(101), D), Decision::Renew);
        assert_eq!(decide(Some(&lease), "a", at(1000), D), Decision::Renew);
    }

    #[test]
    fn renewal_keeps_acquire_time_and_transitions() {
        let spec = claimed(Some(&held("a", 100, 15)), "a", at(102), 15);
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(102))));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[test]
    fn takeover_counts_a_transition_and_restarts_acquire_time() {
        let spec = claimed(Some(&held("b", 100, 15)), "a", at(200), 5);
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(200))));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.lease_duration_seconds, Some(5));
        // Taking a released Lease is not a transition between holders.
        let free = released(&held("b", 100, 15), at(150));
        assert_eq!(free.holder_identity, None);
        assert_eq!(decide(Some(&free), "a", at(150), D), Decision::Acquire);
        let spec = claimed(Some(&free), "a", at(151), 15);
        assert_eq!(spec.lease_transitions, Some(3));
        // A brand-new Lease.
        let spec = claimed(None, "a", at(1), 15);
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(1))));
    }

    #[test]
    fn identities_are_unique_without_a_pod_name() {
        // POD_NAME is not set under cargo test unless a developer exports it.
        if std::env::var("POD_NAME").is_err() {
            assert_ne!(default_identity(), default_identity());
        }
        assert!(!default_namespace().is_empty());
    }
}
