//! `portcullis rules`: every rule id with its default action, mutation, Polaris category
//! and what it checks, so ids for `--rule`, settings and Polaris configurations can be
//! looked up. `portcullis rules ID` adds how to fix it (like `kubectl explain`), and
//! `--output json` gives every field of every rule for tools.
use std::process::ExitCode;

use portcullis::admission::rules::{Rule, catalogue};
use serde::Serialize;

/// Text is wrapped to this width: readable on an 80-column terminal.
const WIDTH: usize = 80;
/// Indent of the wrapped description under each rule's line.
const INDENT: &str = "    ";

#[derive(Copy, Clone, Debug, Default, clap::ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    /// Show one rule in full, with how to fix what it reports.
    pub id: Option<String>,
    /// `table` for people, `json` (every field, every rule) for tools.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// One rule as `--output json` prints it.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    id: &'a str,
    default_action: &'a str,
    /// `on`/`off` for rules that can mutate, absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    mutation: Option<&'a str>,
    category: &'a str,
    checks: &'a str,
    fix: &'a str,
}

fn entry(r: &dyn Rule) -> Entry<'_> {
    Entry {
        id: r.id(),
        default_action: r.default_action().as_str(),
        mutation: r.mutation().map(|on| if on { "on" } else { "off" }),
        category: r.category(),
        checks: r.checks(),
        fix: r.fix(),
    }
}

pub fn run(args: &RulesArgs) -> anyhow::Result<ExitCode> {
    let rules = catalogue();
    let chosen: Vec<&dyn Rule> = match &args.id {
        Some(id) => {
            let Some(r) = rules.iter().find(|r| r.id().eq_ignore_ascii_case(id)) else {
                eprintln!("no rule {id:?}; `portcullis rules` lists them all");
                return Ok(ExitCode::from(2));
            };
            vec![r.as_ref()]
        }
        None => rules.iter().map(|r| r.as_ref()).collect(),
    };
    let entries: Vec<Entry<'_>> = chosen.into_iter().map(entry).collect();
    let text = match (args.output, args.id.is_some()) {
        (Output::Json, _) => {
            let mut s = serde_json::to_string_pretty(&entries)?;
            s.push('\n');
            s
        }
        (Output::Table, true) => entries.iter().map(explain).collect(),
        (Output::Table, false) => table(&entries),
    };
    super::stdout::write(&text);
    Ok(ExitCode::SUCCESS)
}

/// One line per rule, its description wrapped and indented below it.
fn table(entries: &[Entry<'_>]) -> String {
    let width = entries.iter().map(|e| e.id.len()).max().unwrap_or(0);
    let mut out = format!("{:<width$}  DEFAULT  MUTATION  CATEGORY\n", "RULE");
    for e in entries {
        out.push_str(&format!(
            "{:<width$}  {:<7}  {:<8}  {}\n",
            e.id,
            e.default_action,
            e.mutation.unwrap_or("-"),
            e.category
        ));
        for line in wrap(e.checks, WIDTH - INDENT.len()) {
            out.push_str(INDENT);
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push_str("\n`portcullis rules ID` shows how to fix a rule's findings.\n");
    out
}

/// The full entry of one rule.
fn explain(e: &Entry<'_>) -> String {
    let mut out = format!(
        "RULE:      {}\nDEFAULT:   {}\nMUTATION:  {}\nCATEGORY:  {}\n",
        e.id,
        e.default_action,
        e.mutation.unwrap_or("-"),
        e.category
    );
    for (title, text) in [("CHECKS:", e.checks), ("FIX:", e.fix)] {
        out.push_str(&format!("\n{title}\n"));
        for line in wrap(text, WIDTH - INDENT.len()) {
            out.push_str(INDENT);
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Greedy word wrap; a word longer than `width` gets a line of its own.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrap_keeps_lines_within_width() {
        let text = "one two three four five six seven eight nine ten eleven twelve";
        let lines = wrap(text, 15);
        assert!(lines.iter().all(|l| l.len() <= 15), "{lines:?}");
        assert_eq!(lines.join(" "), text);
        assert_eq!(
            wrap("averyveryverylongword x", 5),
            ["averyveryverylongword", "x"]
        );
        assert!(wrap("", 10).is_empty());
    }
}
