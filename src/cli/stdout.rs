//! Writing to stdout without panicking: `println!` panics when the reader has gone
//! (`portcullis check … | head -2`), and Rust ignores SIGPIPE. Output goes through here;
//! a closed pipe ends the output quietly.
use std::io::Write;

/// Writes `text` to stdout. `false` when the reader has gone (stop writing, exit quietly).
pub fn write(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => false,
        // Any other failure to write (a full disk behind a redirect) is as final.
        Err(_) => false,
    }
}
