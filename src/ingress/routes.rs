//! `portcullis routes`: a plain-text table of what a snapshot serves (host, path, type,
//! Ingress, backend, endpoints with their state), the TLS hosts and every problem.
//! Pure rendering; it cannot fail.
use std::fmt::Write;

use super::router::RouteRole;
use super::snapshot::{Backend, PathType, Snapshot};

type Row = [String; 6];
/// host, role order, path
type GroupKey = (String, u8, String);

/// Renders `snapshot` for people.
pub fn render_routes(snapshot: &Snapshot) -> String {
    // One group per route (its row, then its canary's), sorted by host, role and path.
    let mut groups: Vec<(GroupKey, Vec<Row>)> = Vec::new();
    for (role, route) in snapshot.router.entries() {
        let mut rows = Vec::new();
        let host = route.host.as_deref().unwrap_or("*").to_string();
        let (path, kind) = match role {
            RouteRole::Rule => (
                route.path.to_string(),
                path_type(route.path_type, route.policy.use_regex),
            ),
            RouteRole::HostFallback => ("(no match)".to_string(), "default"),
            RouteRole::CatchAll => ("(no match)".to_string(), "catch-all"),
        };
        rows.push([
            host.clone(),
            path.clone(),
            kind.to_string(),
            route.ingress.to_string(),
            route.backend.name.to_string(),
            endpoints(&route.backend),
        ]);
        if let Some(c) = &route.policy.canary {
            let mut how = format!("weight {}%", c.weight);
            if let Some(h) = &c.header {
                let _ = write!(how, ", header {h}");
                if let Some(v) = &c.header_value {
                    let _ = write!(how, "={v}");
                }
            }
            rows.push([
                host,
                path,
                format!("canary ({how})"),
                route.ingress.to_string(),
                c.backend.name.to_string(),
                endpoints(&c.backend),
            ]);
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
    let mut rows: Vec<Row> = vec![[
        "HOST".into(),
        "PATH".into(),
        "TYPE".into(),
        "INGRESS".into(),
        "BACKEND".into(),
        "ENDPOINTS".into(),
    ]];
    rows.extend(groups.into_iter().flat_map(|(_, r)| r));
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

    let mut tls: Vec<&String> = snapshot.tls_hosts.keys().collect();
    tls.sort();
    if !tls.is_empty() {
        out.push_str("\nTLS hosts:\n");
        for h in tls {
            let cert = match h.strip_prefix("*.") {
                Some(parent) => snapshot.certs.wildcard.contains_key(parent),
                None => snapshot.certs.exact.contains_key(h.as_str()),
            };
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

fn endpoints(b: &Backend) -> String {
    if let Some((name, port)) = &b.external {
        return format!("external {name}:{port}");
    }
    if b.endpoints.is_empty() {
        return "<none> (503)".into();
    }
    let list: Vec<String> = b
        .endpoints
        .iter()
        .map(|e| {
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
            format!("{} ({})", e.addr, states.join("+"))
        })
        .collect();
    let mut s = list.join(", ");
    if b.eligible.is_empty() {
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
