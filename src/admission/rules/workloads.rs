//! workloads rules.
use super::Rule;

/// The workloads rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    Vec::new()
}
