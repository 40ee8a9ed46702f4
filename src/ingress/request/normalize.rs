//! Request-path normalisation: the one spelling of a path that routing matches and the
//! upstream receives.
//!
//! A proxy that matches the path as received lets `/api/../admin`, `/%2e%2e/admin`,
//! `//admin`, `/./admin` or `/%61dmin` slip past a restriction on `/admin`, because the
//! upstream reads every one of them as `/admin`. nginx matches its `location`s on a
//! normalised URI instead (`merge_slashes on` is its default); this module produces that
//! form, with one difference that matters for a proxy: nginx matches the normalised path
//! but (with a plain `proxy_pass`) forwards the original one, so what it checked and what
//! the upstream reads can differ. Here the returned value is meant to be both matched and
//! sent upstream, so there is nothing left for the two to disagree about.
//!
//! The rules, applied in one left-to-right pass:
//! - the path must start with a literal `/` (an empty path, `*` or a path that starts
//!   with `%2F` is refused);
//! - a percent-escape of an unreserved character (RFC 3986: `A-Z a-z 0-9 - . _ ~`) is
//!   decoded (`%61` → `a`, `%2e` → `.`); every other escape is kept, its hex digits in
//!   upper case (`%c3%a9` → `%C3%A9`), so `%3F`, `%23`, `%25` keep their meaning and
//!   nothing is decoded twice (`%252e` stays `%252E`);
//! - an encoded slash `%2F` / `%2f` is decoded into a separator, see below;
//! - raw bytes that RFC 3986 does not allow in a path segment (space, `"`, `<`, `>`, `\`,
//!   `^`, `` ` ``, `{`, `|`, `}`, `#`, `?`, `[`, `]`, and every non-ASCII byte) are
//!   percent-encoded, so `/é` and `/%C3%A9` are one path; unreserved characters,
//!   sub-delimiters, `:` and `@` stay as they are;
//! - `.` segments are dropped and `..` removes the segment before it, whether written raw
//!   or encoded; `/a/b/..` keeps its trailing slash (`/a/`), as RFC 3986 §5.2.4 does;
//! - repeated slashes are merged (`//admin` → `/admin`); one trailing slash is kept,
//!   because it is significant for Exact paths;
//! - refused, each with its own [`PathError`] (the caller answers 400): a `..` that
//!   would climb above the root (nginx answers 400 too, where RFC 3986 would clamp it),
//!   malformed escapes (`%zz`, a truncated `%4`), NUL and other control characters, raw
//!   or encoded (`%00`, `%0A`, `%7F`): no legitimate path carries them, and a decoded
//!   line break is how a path turns into a forged log line or header further on.
//!
//! Encoded slash rule: `%2F` is a separator, for matching and upstream alike. Keeping it
//! encoded as an ordinary character was the other candidate, and it is the unsafe one:
//! `/admin%2Fx` would then be one segment `admin%2Fx`, outside a Prefix `/admin`, and would
//! reach the `/` route, while many upstream frameworks decode `%2F` before they route and
//! serve it as `/admin/x`: exactly the bypass the restriction was meant to stop. Decoding
//! it puts `/admin%2Fx` under `/admin` (as nginx's location matching does) and sends the
//! upstream `/admin/x`, the path that was checked. Refusing it with 400 (Apache's
//! `AllowEncodedSlashes Off`) would be as safe but breaks APIs that put an encoded slash
//! in an identifier, which still work as long as their routes accept the extra segment.
//! The cost: an upstream cannot tell `a%2Fb` from `a/b`. Nor can it behind nginx with
//! `rewrite` or a `proxy_pass` URI part, which forward the decoded path as well.
//!
//! Not touched: `;` path parameters (`/admin;x` is the segment `admin;x`, as in nginx; a
//! servlet container that strips them sees `/admin`, so restrict such backends by
//! Prefix on a parent) and `\`, an ordinary character as in nginx on Unix (encoded as
//! `%5C`).
//!
//! Rule paths have to be in the same form to match: a Prefix or Exact path written with
//! `%61` or a lower-case escape matches nothing once requests are normalised, so compile
//! normalises them with this function too or reports them.
//!
//! Cost: a path that is already normal (nearly all of them) is checked in one scan and
//! returned borrowed; only a path that changes allocates, once, about its own length.
use std::borrow::Cow;

/// Why a request path was refused (the request gets 400). `at` is a byte offset in the
/// raw path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty request path")]
    Empty,
    #[error("request path does not start with '/'")]
    NotAbsolute,
    #[error("invalid percent-escape at byte {at}")]
    InvalidEscape { at: usize },
    #[error("truncated percent-escape at byte {at}")]
    TruncatedEscape { at: usize },
    #[error("NUL in the request path at byte {at}")]
    Nul { at: usize },
    #[error("control character in the request path at byte {at}")]
    ControlCharacter { at: usize },
    #[error("'..' at byte {at} climbs above the root")]
    AboveRoot { at: usize },
}

/// Normalises the path of a request target (no query, no fragment). Borrowed when
/// `raw` is already normal; see the module docs for the rules.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if is_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    rewrite(raw).map(Cow::Owned)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` minus `%`: what may stand raw in a normal segment.
fn is_raw_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// An escape that survives normalisation (as `%XX` in upper case).
fn keeps_escape(b: u8) -> bool {
    !is_unreserved(b) && b != b'/' && !is_control(b)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn upper_hex_value(b: u8) -> Option<u8> {
    if b.is_ascii_lowercase() {
        return None;
    }
    hex_value(b)
}

/// True when `rewrite` would return `raw` unchanged. Conservative by construction: any
/// doubt (including every error) sends the path to `rewrite`. One pass over the bytes
/// (every request's path comes here; splitting it into `str` segments first cost twice
/// as much).
fn is_normal(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut start = 1;
    let mut i = 1;
    loop {
        match bytes.get(i).copied() {
            end @ (None | Some(b'/')) => {
                let segment = &bytes[start..i];
                // An empty segment is a doubled slash, except the one after a trailing slash.
                if (segment.is_empty() && end.is_some()) || segment == b"." || segment == b".." {
                    return false;
                }
                if end.is_none() {
                    return true;
                }
                i += 1;
                start = i;
            }
            Some(b'%') => {
                let hi = bytes.get(i + 1).copied().and_then(upper_hex_value);
                let lo = bytes.get(i + 2).copied().and_then(upper_hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) if keeps_escape((hi << 4) | lo) => i += 3,
                    _ => return false,
                }
            }
            Some(b) if is_raw_pchar(b) => i += 1,
            Some(_) => return false,
        }
    }
}

/// One decoded element of the raw path.
enum Unit {
    Separator,
    /// Written raw: an unreserved character, a sub-delimiter, `:` or `@`.
    Raw(u8),
    /// Written as `%XX`.
    Escaped(u8),
}

/// Reads the unit at `i`; returns it and the index after it.
fn next_unit(bytes: &[u8], i: usize) -> Result<Option<(Unit, usize)>, PathError> {
    let Some(&b) = bytes.get(i) else {
        return Ok(None);
    };
    let unit = match b {
        b'/' => (Unit::Separator, i + 1),
        b'%' => {
            let value = decode_escape(bytes, i)?;
            let unit = if value == 0 {
                return Err(PathError::Nul { at: i });
            } else if is_control(value) {
                return Err(PathError::ControlCharacter { at: i });
            } else if value == b'/' {
                Unit::Separator
            } else if is_unreserved(value) {
                Unit::Raw(value)
            } else {
                Unit::Escaped(value)
            };
            (unit, i + 3)
        }
        0 => return Err(PathError::Nul { at: i }),
        b if is_control(b) => return Err(PathError::ControlCharacter { at: i }),
        b if is_raw_pchar(b) => (Unit::Raw(b), i + 1),
        b => (Unit::Escaped(b), i + 1),
    };
    Ok(Some(unit))
}

/// The byte `%XX` at `i` stands for.
fn decode_escape(bytes: &[u8], i: usize) -> Result<u8, PathError> {
    let digit = |j: usize| match bytes.get(j) {
        None => Err(PathError::TruncatedEscape { at: i }),
        Some(&d) => hex_value(d).ok_or(PathError::InvalidEscape { at: i }),
    };
    let hi = digit(i + 1)?;
    let lo = digit(i + 2)?;
    Ok((hi << 4) | lo)
}

/// The full rewrite, without the shortcut for normal paths (`crate::fuzzing` checks that
/// the shortcut never accepts a path this would change).
pub(crate) fn rewrite(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    match bytes.first() {
        None => return Err(PathError::Empty),
        Some(b'/') => {}
        Some(_) => return Err(PathError::NotAbsolute),
    }
    let mut out = String::with_capacity(raw.len());
    out.push('/');
    // Invariant: `out` ends with '/' whenever a segment starts; `segment` is where it
    // starts in `out`, `segment_at` where in `raw`.
    let mut segment = out.len();
    let mut segment_at = 1;
    let mut i = 1;
    loop {
        let unit = next_unit(bytes, i)?;
        match unit {
            Some((Unit::Raw(b), next)) => {
                out.push(char::from(b));
                i = next;
            }
            Some((Unit::Escaped(b), next)) => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
                i = next;
            }
            Some((Unit::Separator, next)) => {
                close_segment(&mut out, segment, segment_at, true)?;
                segment = out.len();
                segment_at = next;
                i = next;
            }
            None => {
                close_segment(&mut out, segment, segment_at, false)?;
                return Ok(out);
            }
        }
    }
}

/// Ends the segment that starts at `start` in `out`: dot segments are resolved, and a
/// kept segment is followed by '/' when a separator ended it. An empty segment (a
/// doubled slash) adds nothing, which is what merges slashes.
fn close_segment(
    out: &mut String,
    start: usize,
    at: usize,
    separator: bool,
) -> Result<(), PathError> {
    match out.get(start..) {
        Some("") => {}
        Some(".") => out.truncate(start),
        Some("..") => {
            // `start - 1` is the '/' before "..": the parent is whatever precedes it.
            let Some(before) = start.checked_sub(1).filter(|&b| b > 0) else {
                return Err(PathError::AboveRoot { at });
            };
            out.truncate(before);
            let parent = out.rfind('/').map_or(1, |p| p + 1);
            out.truncate(parent);
        }
        _ if separator => out.push('/'),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        normalize_path(raw).map(Cow::into_owned)
    }

    #[test]
    fn tricks_from_the_issue_all_become_admin() {
        for raw in [
            "/api/../admin",
            "/x/%2e%2e/admin",
            "//admin",
            "/./admin",
            "/%61dmin",
            "/%2E/admin",
            "/x/%2E%2E/admin",
            "/x/.%2e/admin",
            "/x%2F..%2Fadmin",
            "///admin",
        ] {
            assert_eq!(norm(raw).as_deref(), Ok("/admin"), "{raw}");
        }
    }

    #[test]
    fn encoded_slash_is_a_separator() {
        assert_eq!(norm("/admin%2Fx").as_deref(), Ok("/admin/x"));
        assert_eq!(norm("/admin%2fx").as_deref(), Ok("/admin/x"));
        assert_eq!(norm("/admin%2F%2Fx").as_deref(), Ok("/admin/x"));
        assert_eq!(norm("/admin%2F").as_deref(), Ok("/admin/"));
        // Decoded once only: `%252F` is an escaped '%' followed by "2F".
        assert_eq!(norm("/a%252Fb").as_deref(), Ok("/a%252Fb"));
    }

    #[test]
    fn encoded_dot_dot_above_root_is_refused() {
        assert_eq!(norm("/%2e%2e/admin"), Err(PathError::AboveRoot { at: 1 }));
        assert_eq!(norm("/%2E%2E"), Err(PathError::AboveRoot { at: 1 }));
        assert_eq!(norm("/.."), Err(PathError::AboveRoot { at: 1 }));
        assert_eq!(norm("/../"), Err(PathError::AboveRoot { at: 1 }));
        assert_eq!(norm("/a/b/../../.."), Err(PathError::AboveRoot { at: 11 }));
        assert_eq!(norm("/a/../../b"), Err(PathError::AboveRoot { at: 6 }));
        // Via a decoded separator too.
        assert_eq!(norm("/a%2F..%2F.."), Err(PathError::AboveRoot { at: 10 }));
    }

    #[test]
    fn dot_segments_resolve_like_rfc_3986() {
        let cases = [
            ("/a/b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/../", "/a/"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a/./", "/a/"),
            ("/.", "/"),
            ("/./", "/"),
            ("/a/b/../../c", "/c"),
            ("/a/b/..//c", "/a/c"),
            ("/a/./b/./c", "/a/b/c"),
            // Only exact "." and ".." are dot segments.
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/.c", "/a/..b/.c"),
            ("/a/b..", "/a/b.."),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn slashes_merge_and_one_trailing_slash_stays() {
        assert_eq!(norm("/a//b").as_deref(), Ok("/a/b"));
        assert_eq!(norm("/a/b/").as_deref(), Ok("/a/b/"));
        assert_eq!(norm("/a/b//").as_deref(), Ok("/a/b/"));
        assert_eq!(norm("//").as_deref(), Ok("/"));
        assert_eq!(norm("////").as_deref(), Ok("/"));
    }

    #[test]
    fn unreserved_escapes_decode_others_go_upper_case() {
        let cases = [
            ("/%41%5a%30%2D%5F%7E", "/AZ0-_~"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb%3Fc", "/a%3Fb%3Fc"),
            ("/%c3%a9t%C3%a9", "/%C3%A9t%C3%A9"),
            ("/100%25", "/100%25"),
            ("/%5c", "/%5C"),
            ("/%3b%3d", "/%3B%3D"),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn utf8_escapes_stay_encoded_and_raw_utf8_gets_encoded() {
        assert_eq!(norm("/caf%C3%A9").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(norm("/café").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(norm("/日本").as_deref(), Ok("/%E6%97%A5%E6%9C%AC"));
    }

    #[test]
    fn raw_characters_outside_pchar_are_encoded() {
        assert_eq!(norm("/a b").as_deref(), Ok("/a%20b"));
        assert_eq!(norm("/a\\b").as_deref(), Ok("/a%5Cb"));
        assert_eq!(norm("/{x}|<y>").as_deref(), Ok("/%7Bx%7D%7C%3Cy%3E"));
        assert_eq!(norm("/a#b").as_deref(), Ok("/a%23b"));
        // pchar punctuation stays raw.
        let kept = "/!$&'()*+,;=:@-._~";
        assert_eq!(norm(kept).as_deref(), Ok(kept));
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert_eq!(norm("/%zz"), Err(PathError::InvalidEscape { at: 1 }));
        assert_eq!(norm("/a%4g"), Err(PathError::InvalidEscape { at: 2 }));
        assert_eq!(norm("/a%/b"), Err(PathError::InvalidEscape { at: 2 }));
        assert_eq!(norm("/a%4"), Err(PathError::TruncatedEscape { at: 2 }));
        assert_eq!(norm("/a%"), Err(PathError::TruncatedEscape { at: 2 }));
    }

    #[test]
    fn nul_and_controls_are_refused_raw_or_encoded() {
        assert_eq!(norm("/a%00"), Err(PathError::Nul { at: 2 }));
        assert_eq!(norm("/a\0"), Err(PathError::Nul { at: 2 }));
        assert_eq!(norm("/a%0Ab"), Err(PathError::ControlCharacter { at: 2 }));
        assert_eq!(norm("/a%0d"), Err(PathError::ControlCharacter { at: 2 }));
        assert_eq!(norm("/a%7f"), Err(PathError::ControlCharacter { at: 2 }));
        assert_eq!(norm("/a\tb"), Err(PathError::ControlCharacter { at: 2 }));
        assert_eq!(norm("/a\x7f"), Err(PathError::ControlCharacter { at: 2 }));
    }

    #[test]
    fn a_path_must_start_with_a_slash() {
        assert_eq!(norm(""), Err(PathError::Empty));
        assert_eq!(norm("*"), Err(PathError::NotAbsolute));
        assert_eq!(norm("admin"), Err(PathError::NotAbsolute));
        assert_eq!(norm("%2Fadmin"), Err(PathError::NotAbsolute));
        assert_eq!(norm("./admin"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for raw in [
            "/",
            "/admin",
            "/admin/",
            "/api/v1/items/42",
            "/a%20b/%C3%A9",
            "/a;b=c/@x:y",
            "/.well-known/acme-challenge/x",
            "/a/...",
        ] {
            let got = normalize_path(raw);
            assert!(
                matches!(&got, Ok(Cow::Borrowed(s)) if std::ptr::eq(*s, raw)),
                "{raw}: {got:?}"
            );
        }
    }

    #[test]
    fn the_shortcut_takes_exactly_the_paths_the_rewrite_leaves_alone() {
        // Every path of up to six characters from an alphabet that makes all the cases:
        // separators, dot segments, escapes kept, decoded or malformed, raw characters
        // that must be encoded.
        const ALPHABET: &[u8] = b"/.a%2eF ";
        let mut paths = vec![String::new()];
        let mut checked = 0;
        for _ in 0..6 {
            let mut longer = Vec::new();
            for p in &paths {
                for &c in ALPHABET {
                    let mut q = p.clone();
                    q.push(c as char);
                    let unchanged = rewrite(&q).is_ok_and(|r| r == q);
                    assert_eq!(is_normal(&q), unchanged, "{q:?}");
                    checked += 1;
                    longer.push(q);
                }
            }
            paths = longer;
        }
        assert!(checked > 250_000, "{checked}");
    }

    #[test]
    fn paths_that_change_are_owned() {
        for raw in ["/%61", "//a", "/a/./b", "/%2f", "/%3f", "/é"] {
            assert!(
                matches!(normalize_path(raw), Ok(Cow::Owned(_))),
                "{raw} should be rewritten"
            );
        }
    }

    #[test]
    fn output_is_a_fixed_point_and_matches_the_full_rewrite() {
        for raw in [
            "/a/b/../c//d/./%2e/%7e%2F",
            "/%C3%a9/../x%2f%2F/y/",
            "//x/y/..%2f..%2f",
            "/a b/c\\d",
            "/",
        ] {
            let once = norm(raw).expect(raw);
            assert_eq!(rewrite(raw).as_deref(), Ok(once.as_str()));
            let twice = normalize_path(&once).expect(raw);
            assert!(matches!(twice, Cow::Borrowed(_)), "{raw} → {once}");
            assert_eq!(twice, once);
        }
    }
}
