//! security rules.
use super::Rule;

/// The security rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    Vec::new()
}
