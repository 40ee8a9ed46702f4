//! resources rules.
use super::Rule;

/// The resources rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    Vec::new()
}
