//! `portcullis rules`: every rule id with its default action, mutation and Polaris
//! category, so ids for `--rule`, settings and Polaris configurations can be looked up.
use std::process::ExitCode;

use portcullis::admission::rules::catalogue;

pub fn run() -> anyhow::Result<ExitCode> {
    let rules = catalogue();
    let width = rules.iter().map(|r| r.id().len()).max().unwrap_or(0);
    let mut out = format!("{:<width$}  DEFAULT  MUTATION  CATEGORY\n", "RULE");
    for r in &rules {
        let mutation = match r.mutation() {
            Some(true) => "on",
            Some(false) => "off",
            None => "-",
        };
        out.push_str(&format!(
            "{:<width$}  {:<7}  {:<8}  {}\n",
            r.id(),
            r.default_action().as_str(),
            mutation,
            r.category()
        ));
    }
    super::stdout::write(&out);
    Ok(ExitCode::SUCCESS)
}
