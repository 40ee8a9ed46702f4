//! labels rules.
use super::Rule;

/// The labels rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    Vec::new()
}
