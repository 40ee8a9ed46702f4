//! Entry points for the fuzz targets in `fuzz/` (and their regression tests in
//! `tests/fuzz_regressions.rs`) into functions that are otherwise private. Not an API:
//! hidden from the docs, and it changes whenever the targets do.
use crate::ingress::request::normalize::{self, PathError};
use crate::source::Object;

/// (object name if known, message), as the files source reports it.
pub type FileFinding = (Option<String>, String);

/// The files source's parser for one manifest file: `name` picks JSON or YAML by its
/// extension. `Ok` holds the objects and warnings, `Err` the reasons the file is refused.
pub fn parse_manifest_file(
    name: &str,
    content: &[u8],
) -> Result<(Vec<Object>, Vec<FileFinding>), Vec<FileFinding>> {
    crate::source::files::parse_file(name, content)
}

/// Path normalisation without its shortcut for paths that are already normal, so a
/// target can check that the shortcut agrees with the full rewrite.
pub fn normalize_path_rewrite(raw: &str) -> Result<String, PathError> {
    normalize::rewrite(raw)
}
