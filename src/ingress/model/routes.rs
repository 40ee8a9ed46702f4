//! `portcullis routes`: a plain-text table of what a snapshot serves (host, path, type,
//! Ingress, backend, endpoints with their state), the TLS hosts and every problem; and
//! the same as JSON for the admin listener's `/routes`. Pure rendering; it cannot fail.
use std::fmt::Write;
use std::sync::Arc;

use super::router::RouteRole;
use super::snapshot::{Backend, Endpoint, PathType, Snapshot};

type Row = [String; 6];
/// host, role order, path
type GroupKey = (String, u8, String);

/// One line of the route table: a route, or the canary attached to the route before it.
/// The text table and the admin listener's `/routes` JSON are both made of these, so the
/// two never disagree.
#[derive(Debug, Clone)]
pub(crate) struct RouteRow {
    /// The Ingress host, `*` for hostless rules.
    pub host: String,
    /// The rule's path, `(no match)` for default backends.
    pub path: String,
    /// `Exact`, `Prefix`, `Regex`, `ImplSpecific`, `default` or `catch-all`.
    pub path_type: &'static str,
    /// How a canary row takes traffic (`weight 10%, header x-canary`); None on main rows.
    pub canary: Option<String>,
    pub ingress: Arc<str>,
    pub backend: Arc<Backend>,
}

/// The rows of `snapshot`, sorted by host, role (rules, host default, catch-all) and
/// path, each route followed by its canary.
pub(crate) fn route_rows(snapshot: &Snapshot) -> Vec<RouteRow> {
    let mut groups: Vec<(GroupKey, Vec<RouteRow>)> = Vec::new();
    for (role, route) in snapshot.router.entries() {
        let mut rows = Vec::new();
        let host = route.host.as_deref().unwrap_or("*").to_string();
        let (path, path_type) = match role {
            RouteRole::Rule => (
                route.path.to_string(),
                path_type(route.path_type, route.policy.use_regex),
            ),
            RouteRole::HostFallback => ("(no match)".to_string(), "default"),
            RouteRole::CatchAll => ("(no match)".to_string(), "catch-all"),
        };
        rows.push(RouteRow {
            host: host.clone(),
            path: path.clone(),
            path_type,
            canary: None,
            ingress: route.ingress.clone(),
            backend: route.backend.clone(),
        });
        if let Some(c) = &route.policy.canary {
            let mut how = format!("weight {}%", c.weight);
            if let Some(h) = &c.header {
                let _ = write!(how, ", header {h}");
                if let Some(v) = &c.header_value {
                    let _ = write!(how, "={v}");
                }
            }
            rows.push(RouteRow {
                host,
                path,
                path_type,
                canary: Some(how),
                ingress: route.ingress.clone(),
                backend: c.backend.clone(),
            });
        }
        let order = match role {
            RouteRole::Rule => 0,
            RouteRole::HostFallback => 1,
            RouteRole::CatchAll => 2,
        };
        let host = route.host.as_deref().unwrap_or("\u{10ffff}").to_string();
        groups.push(((host, order, route.path.to_string()), rows));
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    groups.into_iter().flat_map(|(_, r)| r).collect()
}

/// The TLS hosts of `snapshot`, sorted, each with whether its certificate is loaded.
pub fn tls_hosts(snapshot: &Snapshot) -> Vec<(&str, bool)> {
    let mut tls: Vec<(&str, bool)> = snapshot
        .tls_hosts
        .keys()
        .map(|h| {
            let cert = match h.strip_prefix("*.") {
                Some(parent) => snapshot.certs.wildcard.contains_key(parent),
                None => snapshot.certs.exact.contains_key(h.as_str()),
            };
            (h.as_str(), cert)
        })
        .collect();
    tls.sort();
    tls
}

/// The route table as JSON, for `GET /routes` on the admin listener: what
/// [`render_routes`] prints, as data.
pub fn routes_json(snapshot: &Snapshot) -> serde_json::Value {
    let routes: Vec<serde_json::Value> = route_rows(snapshot)
        .iter()
        .map(|r| {
            let set = r.backend.endpoints.load();
            serde_json::json!({
                "host": r.host,
                "path": r.path,
                "pathType": r.path_type,
                "canary": r.canary,
                "ingress": &*r.ingress,
                "backend": &*r.backend.name,
                "external": r.backend.external.as_ref().map(|(n, p)| format!("{n}:{p}")),
                "endpoints": set.all.iter().map(|e| serde_json::json!({
                    "address": e.addr.to_string(),
                    "ready": e.ready,
                    "serving": e.serving,
                    "terminating": e.terminating,
                    "state": endpoint_state(e),
                    "eligible": set.eligible.contains(&e.addr),
                })).collect::<Vec<_>>(),
                "unavailable": r.backend.external.is_none() && set.eligible.is_empty(),
            })
        })
        .collect();
    let tls: Vec<serde_json::Value> = tls_hosts(snapshot)
        .into_iter()
        .map(|(host, cert)| serde_json::json!({"host": host, "certificateLoaded": cert}))
        .collect();
    serde_json::json!({
        "generation": snapshot.generation,
        "routes": routes,
        "tlsHosts": tls,
        "problems": snapshot.problems,
    })
}

/// Renders `snapshot` for people.
pub fn render_routes(snapshot: &Snapshot) -> String {
    let mut rows: Vec<Row> = vec![[
        "HOST".into(),
        "PATH".into(),
        "TYPE".into(),
        "INGRESS".into(),
        "BACKEND".into(),
        "ENDPOINTS".into(),
    ]];
    rows.extend(route_rows(snapshot).into_iter().map(|r| {
        let kind = match &r.canary {
            Some(how) => format!("canary ({how})"),
            None => r.path_type.to_string(),
        };
        [
            r.host,
            r.path,
            kind,
            r.ingress.to_string(),
            r.backend.name.to_string(),
            endpoints(&r.backend),
        ]
    }));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "generation {}: {} route(s)\n",
        snapshot.generation,
        snapshot.router.len()
    );
    if rows.len() == 1 {
        out.push_str("(no routes)\n");
    } else {
        table(&mut out, &rows);
    }

    let tls = tls_hosts(snapshot);
    if !tls.is_empty() {
        out.push_str("\nTLS hosts:\n");
        for (h, cert) in tls {
            let note = if cert {
                "certificate loaded"
            } else {
                "no certificate (default served)"
            };
            let _ = writeln!(out, "  {h}  {note}");
        }
    }
    if snapshot.problems.is_empty() {
        out.push_str("\nNo problems.\n");
    } else {
        let _ = writeln!(out, "\nProblems ({}):", snapshot.problems.len());
        for p in &snapshot.problems {
            let _ = writeln!(out, "  - {p}");
        }
    }
    out
}

fn path_type(t: PathType, regex: bool) -> &'static str {
    match t {
        PathType::Exact => "Exact",
        PathType::Prefix => "Prefix",
        PathType::ImplementationSpecific if regex => "Regex",
        PathType::ImplementationSpecific => "ImplSpecific",
    }
}

/// An endpoint's conditions in one word or a few joined by `+`: `ready`, `serving`
/// (serving but not ready), `terminating`, or `not-ready` when none holds.
pub fn endpoint_state(e: &Endpoint) -> String {
    let mut states = Vec::new();
    if e.ready {
        states.push("ready");
    }
    if e.serving && !e.ready {
        states.push("serving");
    }
    if e.terminating {
        states.push("terminating");
    }
    if states.is_empty() {
        states.push("not-ready");
    }
    states.join("+")
}

fn endpoints(b: &Backend) -> String {
    if let Some((name, port)) = &b.external {
        return format!("external {name}:{port}");
    }
    let set = b.endpoints.load();
    if set.all.is_empty() {
        return "<none> (503)".into();
    }
    let list: Vec<String> = set
        .all
        .iter()
        .map(|e| format!("{} ({})", e.addr, endpoint_state(e)))
        .collect();
    let mut s = list.join(", ");
    if set.eligible.is_empty() {
        s.push_str("  => 503");
    }
    s
}

fn table(out: &mut String, rows: &[Row]) {
    let mut widths = [0usize; 6];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}
