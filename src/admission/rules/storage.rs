//! storage rules.
use super::Rule;

/// The storage rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    Vec::new()
}
