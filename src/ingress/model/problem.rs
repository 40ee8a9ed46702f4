//! Problems found while loading or compiling configuration, each naming where it came
//! from so an operator can find and fix it.
use std::fmt;

/// One thing wrong with the configuration. The last good version of the object it names
/// stays in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The file it came from, for the manifests source.
    pub file: Option<String>,
    /// `Kind namespace/name`, when an object is known.
    pub object: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if let Some(obj) = &self.object {
            write!(f, "{obj}: ")?;
        }
        f.write_str(&self.message)
    }
}
