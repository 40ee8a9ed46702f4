//! Request and error rates per Ingress, from the `portcullis_ingress_requests_total`
//! counters sampled whenever the dashboard asks: the rate is the counters' growth since the
//! oldest sample inside the window, so it needs no background task and costs nothing when
//! nobody looks.
//!
//! Failure behaviour: a counter that went down (a family re-registered) counts as 0; the
//! first look after a quiet spell has no rate yet (null), never a made-up one.
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use serde::Serialize;

use crate::ingress::model::ingress_metrics;

/// Rates are averaged over at most this much history.
const WINDOW: Duration = Duration::from_secs(10);
/// Samples closer together than this are not kept, which bounds the history however
/// many pages poll at once.
const MIN_SPACING: Duration = Duration::from_millis(250);
/// A rate over less time than this would be noise.
const MIN_SPAN: Duration = Duration::from_millis(500);
/// What requests that matched no route are shown as (their `ingress` label is empty).
pub const NO_ROUTE: &str = "(no route)";

/// Cumulative counts of one Ingress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
}

/// One Ingress's traffic as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRate {
    pub ingress: String,
    pub requests_total: u64,
    pub errors_total: u64,
    /// None until two samples far enough apart exist.
    pub requests_per_second: Option<f64>,
    pub errors_per_second: Option<f64>,
    /// 5xx share of the requests in the window; None without requests.
    pub error_ratio: Option<f64>,
}

/// The current totals per Ingress, read from the process's metric families.
pub fn read_totals() -> BTreeMap<String, Counts> {
    let mut totals: BTreeMap<String, Counts> = BTreeMap::new();
    let Some(m) = ingress_metrics::metrics() else {
        return totals;
    };
    for family in m.requests.collect() {
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value())
            };
            // The dashboard names Ingresses `namespace/name`, the series split them.
            let ingress = match (label("namespace").unwrap_or(""), label("ingress")) {
                (_, Some("") | None) => NO_ROUTE.to_string(),
                ("", Some(i)) => i.to_string(),
                (ns, Some(i)) => format!("{ns}/{i}"),
            };
            // Counters hold whole numbers; the float is only the exposition format's.
            let value = metric.get_counter().get_value() as u64;
            let c = totals.entry(ingress).or_default();
            c.requests += value;
            // Exact codes: 5xx is any code starting with 5 (never `other`).
            if label("status").is_some_and(|s| s.starts_with('5')) {
                c.errors += value;
            }
        }
    }
    totals
}

/// Recent samples of the totals.
#[derive(Debug, Default)]
pub struct RateSampler {
    samples: Mutex<VecDeque<(Instant, BTreeMap<String, Counts>)>>,
}

impl RateSampler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `totals` as seen at `now` and returns the rates of every Ingress in
    /// `totals` and in `served` (served ones without traffic show zeros).
    pub fn observe(
        &self,
        now: Instant,
        totals: BTreeMap<String, Counts>,
        served: &[&str],
    ) -> Vec<IngressRate> {
        let mut samples = self.lock();
        while samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > WINDOW)
        {
            samples.pop_front();
        }
        let baseline = samples
            .front()
            .filter(|(at, _)| now.saturating_duration_since(*at) >= MIN_SPAN)
            .map(|(at, t)| (now.saturating_duration_since(*at).as_secs_f64(), t));
        let mut names: Vec<&str> = totals.keys().map(String::as_str).collect();
        names.extend(served.iter().copied().filter(|s| !totals.contains_key(*s)));
        names.sort_unstable();
        let out = names
            .into_iter()
            .map(|name| {
                let now_c = totals.get(name).copied().unwrap_or_default();
                let (rps, eps, ratio) = match baseline {
                    Some((span, then)) => {
                        let then_c = then.get(name).copied().unwrap_or_default();
                        let req = now_c.requests.saturating_sub(then_c.requests);
                        let err = now_c.errors.saturating_sub(then_c.errors);
                        let ratio = (req > 0).then(|| err as f64 / req as f64);
                        (Some(req as f64 / span), Some(err as f64 / span), ratio)
                    }
                    None => (None, None, None),
                };
                IngressRate {
                    ingress: name.to_string(),
                    requests_total: now_c.requests,
                    errors_total: now_c.errors,
                    requests_per_second: rps,
                    errors_per_second: eps,
                    error_ratio: ratio,
                }
            })
            .collect();
        let spaced = samples
            .back()
            .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= MIN_SPACING);
        if spaced {
            samples.push_back((now, totals));
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(Instant, BTreeMap<String, Counts>)>> {
        // Nothing panics while holding the lock, so a poisoned one still holds samples.
        match self.samples.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(entries: &[(&str, u64, u64)]) -> BTreeMap<String, Counts> {
        entries
            .iter()
            .map(|(n, r, e)| {
                (
                    n.to_string(),
                    Counts {
                        requests: *r,
                        errors: *e,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn rates_come_from_counter_growth_over_the_window() {
        let s = RateSampler::new();
        let t0 = Instant::now();
        let first = s.observe(t0, totals(&[("shop/web", 100, 0)]), &["shop/idle"]);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].ingress, "shop/idle");
        assert_eq!(first[0].requests_total, 0);
        assert_eq!(
            first[1].requests_per_second, None,
            "no rate from one sample"
        );
        assert_eq!(first[1].requests_total, 100);

        let t1 = t0 + Duration::from_secs(2);
        let second = s.observe(t1, totals(&[("shop/web", 140, 10)]), &["shop/idle"]);
        let web = &second[1];
        assert_eq!(web.requests_per_second, Some(20.0));
        assert_eq!(web.errors_per_second, Some(5.0));
        assert_eq!(web.error_ratio, Some(0.25));
        let idle = &second[0];
        assert_eq!(idle.requests_per_second, Some(0.0));
        assert_eq!(idle.error_ratio, None, "no requests, no ratio");

        // Once the first sample falls out of the window, the second is the baseline.
        let t2 = t0 + Duration::from_secs(11);
        let third = s.observe(t2, totals(&[("shop/web", 230, 10)]), &[]);
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].requests_per_second, Some(10.0));
        assert_eq!(third[0].errors_per_second, Some(0.0));
    }

    #[test]
    fn close_samples_are_not_kept_and_counters_never_go_negative() {
        let s = RateSampler::new();
        let t0 = Instant::now();
        s.observe(t0, totals(&[("a", 10, 5)]), &[]);
        for i in 1..20 {
            s.observe(t0 + Duration::from_millis(i), totals(&[("a", 10, 5)]), &[]);
        }
        assert_eq!(s.len(), 1);
        let later = s.observe(t0 + Duration::from_secs(1), totals(&[("a", 3, 1)]), &[]);
        assert_eq!(later[0].requests_per_second, Some(0.0));
        assert_eq!(later[0].errors_per_second, Some(0.0));
    }

    #[test]
    fn totals_are_read_from_the_request_counters() {
        use crate::ingress::model::route_metrics::{Finished, RouteMetrics};
        use std::sync::Arc;
        let main: Arc<str> = Arc::from("rates-test/svc:80");
        let canary: Arc<str> = Arc::from("rates-test/other:80");
        let route = RouteMetrics::new(
            Arc::from("rates-test/web"),
            None,
            Arc::from("/"),
            main.clone(),
            Some(canary.clone()),
        );
        let done = |status| Finished {
            method: 0,
            status,
            duration: Duration::ZERO,
            request_bytes: 0,
            response_bytes: 0,
        };
        route.record(Some(&main), &done(200));
        route.record(Some(&main), &done(503));
        route.record(Some(&canary), &done(502));
        let t = read_totals();
        assert_eq!(
            t.get("rates-test/web"),
            Some(&Counts {
                requests: 3,
                errors: 2
            })
        );
    }
}
