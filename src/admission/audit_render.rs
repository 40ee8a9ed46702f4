//! The audit report as a terminal table or as one self-contained HTML page (inline
//! styles, no scripts or external resources, so it opens offline and can be mailed or
//! archived as a CI artefact).
use std::fmt::Write as _;

use super::audit::{AuditReport, CheckResult, WorkloadResult};

fn object_name(w: &WorkloadResult) -> String {
    if w.namespace.is_empty() {
        format!("{} {}", w.kind, w.name)
    } else {
        format!("{} {}/{}", w.kind, w.namespace, w.name)
    }
}

fn outcome(r: &CheckResult) -> &'static str {
    r.severity.unwrap_or("ok")
}

fn message(r: &CheckResult) -> &str {
    if r.message.is_empty() {
        "passed"
    } else {
        &r.message
    }
}

/// Scores first, then one block per object with its results.
pub fn table(report: &AuditReport) -> String {
    let mut out = String::new();
    let c = &report.counts;
    let _ = writeln!(
        out,
        "{}score {} ({} successes, {} warnings, {} dangers)",
        report
            .display_name
            .as_ref()
            .map(|n| format!("{n}: "))
            .unwrap_or_default(),
        report.score,
        c.successes,
        c.warnings,
        c.dangers
    );
    for ns in &report.namespaces {
        let name = if ns.namespace.is_empty() {
            "(cluster)"
        } else {
            &ns.namespace
        };
        let _ = writeln!(
            out,
            "  namespace {name}: score {} ({} successes, {} warnings, {} dangers)",
            ns.score, ns.counts.successes, ns.counts.warnings, ns.counts.dangers
        );
    }
    for w in &report.workloads {
        let _ = writeln!(out, "\n{} [{}] score {}", object_name(w), w.file, w.score);
        let width = w.results.iter().map(|r| r.check.len()).max().unwrap_or(0);
        for r in &w.results {
            let _ = writeln!(
                out,
                "  {:<7} {:<width$}  {}{}",
                outcome(r),
                r.check,
                message(r),
                if r.path.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.path)
                },
            );
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
h1{margin-bottom:0}.score{font-size:3em;font-weight:bold}\
table{border-collapse:collapse;margin:1em 0}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
.danger{color:#b00020;font-weight:bold}.warning{color:#a05a00;font-weight:bold}.ok{color:#2e7d32}\
details{margin:.5em 0;border:1px solid #ddd;border-radius:4px;padding:.4em .8em}summary{cursor:pointer}\
code{background:#f4f4f4;padding:0 .2em}";

/// One HTML document: overall score, per-namespace scores, and for each object every
/// check with its outcome and message (the messages say how to fix what they report).
pub fn html(report: &AuditReport) -> String {
    let mut out = String::new();
    let title = report.display_name.as_deref().unwrap_or("portcullis audit");
    let c = &report.counts;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1><p>Audit of <code>{src}</code></p>\n<div class=\"score\">{score}</div><p>{s} successes, <span class=\"warning\">{w} warnings</span>, <span class=\"danger\">{d} dangers</span>. Score = 2 &times; successes / (2 &times; successes + warnings + 2 &times; dangers) &times; 100.</p>\n",
        t = escape(title),
        src = escape(&report.source),
        score = report.score,
        s = c.successes,
        w = c.warnings,
        d = c.dangers,
    );
    out.push_str("<h2>Namespaces</h2><table><tr><th>namespace</th><th>score</th><th>successes</th><th>warnings</th><th>dangers</th></tr>\n");
    for ns in &report.namespaces {
        let name = if ns.namespace.is_empty() {
            "(cluster-scoped)"
        } else {
            &ns.namespace
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            ns.score,
            ns.counts.successes,
            ns.counts.warnings,
            ns.counts.dangers
        );
    }
    out.push_str("</table>\n<h2>Objects</h2>\n");
    for w in &report.workloads {
        let failing = w.results.iter().any(|r| !r.success);
        let _ = writeln!(
            out,
            "<details{}><summary>{} &mdash; score {} ({} warnings, {} dangers) <small>{}</small></summary><table><tr><th></th><th>check</th><th>category</th><th>message</th><th>field</th></tr>",
            if failing { " open" } else { "" },
            escape(&object_name(w)),
            w.score,
            w.counts.warnings,
            w.counts.dangers,
            escape(&w.file),
        );
        for r in &w.results {
            let _ = writeln!(
                out,
                "<tr><td class=\"{o}\">{o}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                escape(&r.check),
                escape(&r.category),
                escape(message(r)),
                escape(&r.path),
                o = outcome(r),
            );
        }
        out.push_str("</table></details>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
