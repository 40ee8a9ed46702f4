//! lifecycle rules.
use super::Rule;

/// The lifecycle rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    Vec::new()
}
