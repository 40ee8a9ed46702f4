//! `portcullis rules`: every rule id with its default action, mutation and Polaris
//! category, so ids for `--rule`, settings and Polaris configurations can be looked up.
use std::process::ExitCode;

use portcullis::admission::rules::catalogue;

pub fn run() -> anyhow::Result<ExitCode> {
    let rules = catalogue();
    let width = rules.iter().map(|r| r.id().len()).max().unwrap_or(0);
    println!("{:<width$}  DEFAULT  MUTATION  CATEGORY", "RULE");
    for r in &rules {
        let mutation = match r.mutation() {
            Some(true) => "on",
            Some(false) => "off",
            None => "-",
        };
        println!(
            "{:<width$}  {:<7}  {:<8}  {}",
            r.id(),
            r.default_action().as_str(),
            mutation,
            r.category()
        );
    }
    Ok(ExitCode::SUCCESS)
}
