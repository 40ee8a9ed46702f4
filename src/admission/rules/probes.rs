//! probes rules.
use super::Rule;

/// The probes rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    Vec::new()
}
