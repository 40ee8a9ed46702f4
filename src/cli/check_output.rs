//! The formats of `portcullis check`: a narrow table for people, JSON (an array of
//! findings, as before, now with file and line), SARIF 2.1.0 for code-scanning UIs, and
//! JUnit XML for CI test reports.
use std::fmt::Write as _;

use portcullis::admission::settings::Action;
use serde_json::{Value, json};

/// One finding located in its input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// The input (`source` for compatibility with earlier JSON output).
    pub source: String,
    pub line: usize,
    pub object: String,
    pub rule: &'static str,
    pub action: Action,
    pub message: String,
    pub path: String,
}

/// An object the rules did not judge, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub source: String,
    pub line: usize,
    pub object: String,
    pub reason: String,
}

/// A document that could not be interpreted.
#[derive(Debug, Clone)]
pub struct Refused {
    pub source: String,
    pub line: usize,
    pub message: String,
}

/// Everything one run found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub checked: usize,
    pub files: usize,
    pub skipped: Vec<Skipped>,
    pub refused: Vec<Refused>,
}

impl Outcome {
    pub fn count(&self, action: Action) -> usize {
        self.rows.iter().filter(|r| r.action == action).count()
    }

    /// One line for the end of any output: what was read and what came of it.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "checked {} objects in {} inputs: {} denied, {} warnings",
            self.checked,
            self.files,
            self.count(Action::Deny),
            self.count(Action::Warn),
        );
        if !self.skipped.is_empty() {
            let mut reasons: Vec<(&str, usize)> = Vec::new();
            for sk in &self.skipped {
                match reasons.iter_mut().find(|(r, _)| *r == sk.reason) {
                    Some((_, n)) => *n += 1,
                    None => reasons.push((&sk.reason, 1)),
                }
            }
            let list: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            let _ = write!(s, "; skipped {} ({})", self.skipped.len(), list.join(", "));
        }
        if !self.refused.is_empty() {
            let _ = write!(
                s,
                "; {} documents could not be read or interpreted",
                self.refused.len()
            );
        }
        s
    }
}

/// A table that fits a terminal: location, object, rule and action on one line, the
/// message indented under it.
pub fn table(o: &Outcome) -> String {
    if o.rows.is_empty() {
        return "no findings\n".into();
    }
    let loc = |r: &Row| format!("{}:{}", r.source, r.line);
    let w_loc = o
        .rows
        .iter()
        .map(|r| loc(r).len())
        .max()
        .unwrap_or(0)
        .min(40);
    let w_obj = o
        .rows
        .iter()
        .map(|r| r.object.len())
        .max()
        .unwrap_or(0)
        .min(40);
    let w_rule = o.rows.iter().map(|r| r.rule.len()).max().unwrap_or(0);
    let mut out = format!(
        "{:<w_loc$}  {:<w_obj$}  {:<w_rule$}  ACTION\n",
        "FILE", "OBJECT", "RULE"
    );
    for r in &o.rows {
        let _ = writeln!(
            out,
            "{:<w_loc$}  {:<w_obj$}  {:<w_rule$}  {}",
            loc(r),
            r.object,
            r.rule,
            r.action.as_str()
        );
        let _ = writeln!(out, "    {}", r.message);
        if !r.path.is_empty() {
            let _ = writeln!(out, "    at {}", r.path);
        }
    }
    out
}

pub fn json(o: &Outcome) -> String {
    serde_json::to_string_pretty(&o.rows).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// SARIF 2.1.0: one run, one result per finding (deny → error, warn → warning) and per
/// refused document (error), with the rule ids declared in the driver.
pub fn sarif(o: &Outcome) -> String {
    let mut rule_ids: Vec<&str> = o.rows.iter().map(|r| r.rule).collect();
    rule_ids.sort_unstable();
    rule_ids.dedup();
    let location = |source: &str, line: usize| {
        json!([{ "physicalLocation": {
            "artifactLocation": { "uri": source },
            "region": { "startLine": line.max(1) }
        }}])
    };
    let mut results: Vec<Value> = o
        .rows
        .iter()
        .map(|r| {
            json!({
                "ruleId": r.rule,
                "level": if r.action == Action::Deny { "error" } else { "warning" },
                "message": { "text": format!("{}: {}", r.object, r.message) },
                "locations": location(&r.source, r.line),
                "properties": { "object": r.object, "jsonPointer": r.path },
            })
        })
        .collect();
    for f in &o.refused {
        results.push(json!({
            "ruleId": "unreadable",
            "level": "error",
            "message": { "text": f.message },
            "locations": location(&f.source, f.line),
        }));
    }
    let mut rules: Vec<Value> = rule_ids
        .iter()
        .map(|id| json!({ "id": id, "name": id }))
        .collect();
    if !o.refused.is_empty() {
        rules.push(json!({ "id": "unreadable", "name": "unreadable",
            "shortDescription": { "text": "A document that is no valid Kubernetes object" } }));
    }
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "portcullis",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }]
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// JUnit XML: one testsuite per input, one testcase per object checked (failing with one
/// `<failure>` per denying finding; warnings are in `<system-out>`), skipped objects as
/// skipped test cases, refused documents as errors.
pub fn junit(o: &Outcome, checked_objects: &[(String, usize, String)]) -> String {
    let mut sources: Vec<&str> = checked_objects.iter().map(|(s, _, _)| s.as_str()).collect();
    sources.extend(o.skipped.iter().map(|s| s.source.as_str()));
    sources.extend(o.refused.iter().map(|r| r.source.as_str()));
    let mut seen = std::collections::BTreeSet::new();
    sources.retain(|s| seen.insert(*s));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total = checked_objects.len() + o.skipped.len() + o.refused.len();
    let failures: usize = checked_objects
        .iter()
        .filter(|(s, l, obj)| {
            o.rows.iter().any(|r| {
                &r.source == s && r.line == *l && &r.object == obj && r.action == Action::Deny
            })
        })
        .count();
    let _ = writeln!(
        out,
        "<testsuites name=\"portcullis check\" tests=\"{total}\" failures=\"{failures}\" errors=\"{}\" skipped=\"{}\">",
        o.refused.len(),
        o.skipped.len()
    );
    for source in sources {
        let _ = writeln!(out, "  <testsuite name=\"{}\">", xml(source));
        for (s, line, object) in checked_objects.iter().filter(|(s, _, _)| s == source) {
            let mine: Vec<&Row> = o
                .rows
                .iter()
                .filter(|r| &r.source == s && r.line == *line && &r.object == object)
                .collect();
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\">",
                xml(source),
                xml(object)
            );
            for r in mine.iter().filter(|r| r.action == Action::Deny) {
                let _ = write!(
                    out,
                    "\n      <failure type=\"{}\" message=\"{}\">{}:{} {}</failure>",
                    r.rule,
                    xml(&r.message),
                    xml(s),
                    line,
                    xml(&r.path)
                );
            }
            let warns: Vec<String> = mine
                .iter()
                .filter(|r| r.action == Action::Warn)
                .map(|r| format!("warning {}: {}", r.rule, r.message))
                .collect();
            if !warns.is_empty() {
                let _ = write!(
                    out,
                    "\n      <system-out>{}</system-out>",
                    xml(&warns.join("\n"))
                );
            }
            if mine.iter().any(|r| r.action == Action::Deny) || !warns.is_empty() {
                out.push_str("\n    ");
            }
            out.push_str("</testcase>\n");
        }
        for sk in o.skipped.iter().filter(|sk| sk.source == source) {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" line=\"{}\"><skipped message=\"{}\"/></testcase>",
                xml(source),
                xml(&sk.object),
                sk.line,
                xml(&sk.reason)
            );
        }
        for f in o.refused.iter().filter(|f| f.source == source) {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"line {}\"><error message=\"{}\"/></testcase>",
                xml(source),
                f.line,
                xml(&f.message)
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> Outcome {
        Outcome {
            rows: vec![
                Row {
                    source: "a.yaml".into(),
                    line: 3,
                    object: "Deployment shop/web".into(),
                    rule: "memoryLimitsMissing",
                    action: Action::Deny,
                    message: "no memory limit <set>".into(),
                    path: "/spec/template/spec/containers/0".into(),
                },
                Row {
                    source: "a.yaml".into(),
                    line: 3,
                    object: "Deployment shop/web".into(),
                    rule: "tagNotSpecified",
                    action: Action::Warn,
                    message: "latest".into(),
                    path: String::new(),
                },
            ],
            checked: 2,
            files: 2,
            skipped: vec![Skipped {
                source: "b.yaml".into(),
                line: 1,
                object: "Widget shop/w".into(),
                reason: "kind not checked by any rule".into(),
            }],
            refused: vec![],
        }
    }

    #[test]
    fn summary_counts_and_reasons() {
        let s = outcome().summary();
        assert_eq!(
            s,
            "checked 2 objects in 2 inputs: 1 denied, 1 warnings; skipped 1 (1 kind not checked by any rule)"
        );
    }

    #[test]
    fn sarif_levels_and_locations() {
        let v: Value = serde_json::from_str(&sarif(&outcome())).unwrap();
        assert_eq!(v["version"], "2.1.0");
        let results = v["runs"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["level"], "error");
        assert_eq!(results[1]["level"], "warning");
        let loc = &results[0]["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], "a.yaml");
        assert_eq!(loc["region"]["startLine"], 3);
        assert_eq!(
            v["runs"][0]["tool"]["driver"]["rules"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn junit_failures_skips_and_escaping() {
        let o = outcome();
        let checked = vec![
            ("a.yaml".to_string(), 3, "Deployment shop/web".to_string()),
            ("a.yaml".to_string(), 9, "Service shop/web".to_string()),
        ];
        let x = junit(&o, &checked);
        assert!(
            x.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""),
            "{x}"
        );
        assert!(
            x.contains(
                "<failure type=\"memoryLimitsMissing\" message=\"no memory limit &lt;set&gt;\">"
            ),
            "{x}"
        );
        assert!(
            x.contains("<system-out>warning tagNotSpecified: latest</system-out>"),
            "{x}"
        );
        assert!(
            x.contains("line=\"1\"><skipped message=\"kind not checked by any rule\"/>"),
            "{x}"
        );
        assert!(x.contains("name=\"Service shop/web\"></testcase>"), "{x}");
    }

    #[test]
    fn narrow_table_puts_the_message_under_the_finding() {
        let t = table(&outcome());
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("FILE"));
        assert!(lines[1].starts_with("a.yaml:3"), "{t}");
        assert!(lines[1].ends_with("deny"), "{t}");
        assert_eq!(lines[2], "    no memory limit <set>");
        assert!(lines.iter().all(|l| l.len() < 120), "{t}");
    }
}
