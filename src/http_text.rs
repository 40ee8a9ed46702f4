//! Pieces of HTTP/1.1 text that the server's own writer and our client to pods both
//! write (or read), without formatting machinery or allocation.

/// `name: value\r\n`.
pub(crate) fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    // One capacity check for the line: four made each piece a possible growth call.
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, written at the end of `buf`.
pub(crate) fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The field names a message's `Connection` fields list (RFC 9110 §7.6.1): they go no
/// further than this hop, whichever side is forwarding.
pub(crate) fn connection_named(
    headers: &http::HeaderMap,
) -> impl Iterator<Item = http::HeaderName> + '_ {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| http::HeaderName::from_bytes(t.trim().as_bytes()).ok())
}

/// Whether a `TE` field value lists the `trailers` coding (parameters and case aside),
/// the one TE a proxy passes on.
pub(crate) fn lists_trailers(value: &[u8]) -> bool {
    value.split(|b| *b == b',').any(|coding| {
        let name = coding.split(|b| *b == b';').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(b"trailers")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_is_found_among_te_codings() {
        assert!(lists_trailers(b"trailers"));
        assert!(lists_trailers(b"gzip;q=0.5, Trailers"));
        assert!(lists_trailers(b"trailers;q=1"));
        assert!(!lists_trailers(b"gzip, deflate"));
        assert!(!lists_trailers(b"trailer"));
        assert!(!lists_trailers(b""));
    }

    #[test]
    fn numbers_and_fields_are_written_as_http_text() {
        let mut d = [0u8; 20];
        assert_eq!(format_u64(0, &mut d), b"0");
        assert_eq!(format_u64(u64::MAX, &mut d), b"18446744073709551615");
        let mut out = Vec::new();
        put_field(&mut out, b"content-length", b"5");
        assert_eq!(out, b"content-length: 5\r\n");
    }
}
