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

/// A pod's answer as the HTTP/1.1 client reads it, `step` bytes at a time: the response
/// head, then the body when it is chunked. `Ok` holds the decoded body's length.
pub fn upstream_response(data: &[u8], step: usize, head_request: bool) -> Result<usize, String> {
    crate::ingress::request::upstream_h1_wire::read_fed(data, step, head_request)
        .map(|(_, body, _)| body.len())
        .map_err(|e| e.to_string())
}

/// The request heads the server's own HTTP/1.x reader takes from `data`, each written
/// back out in canonical form.
pub fn request_heads(data: &[u8]) -> Vec<Vec<u8>> {
    crate::server::h1::heads_of(data)
}

/// Path normalisation without its shortcut for paths that are already normal, so a
/// target can check that the shortcut agrees with the full rewrite.
pub fn normalize_path_rewrite(raw: &str) -> Result<String, PathError> {
    normalize::rewrite(raw)
}
