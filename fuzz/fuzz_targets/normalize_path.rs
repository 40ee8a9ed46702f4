//! Path normalisation: never panics, and what it returns is in normal form (starts with
//! `/`, no empty or dot segments, only escapes that must stay escaped, upper case), is a
//! fixed point, and agrees with the full rewrite when the borrowed shortcut is taken.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use portcullis::fuzzing::normalize_path_rewrite;
use portcullis::ingress::request::normalize::normalize_path;

fn assert_normal_form(out: &str, raw: &str) {
    assert!(out.starts_with('/'), "{raw:?} → {out:?}: not absolute");
    assert!(!out.contains("//"), "{raw:?} → {out:?}: empty segment");
    assert!(!out.contains("/./"), "{raw:?} → {out:?}: '.' segment");
    assert!(!out.contains("/../"), "{raw:?} → {out:?}: '..' segment");
    assert!(
        !out.ends_with("/.") && !out.ends_with("/.."),
        "{raw:?} → {out:?}: trailing dot segment"
    );
    let bytes = out.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
            assert!(
                hex.len() == 2 && hex.iter().all(|h| matches!(h, b'0'..=b'9' | b'A'..=b'F')),
                "{raw:?} → {out:?}: escape at {i} not two upper-case hex digits"
            );
            let text = std::str::from_utf8(hex).unwrap_or("00");
            let value = u8::from_str_radix(text, 16).unwrap_or(0);
            let unreserved = value.is_ascii_alphanumeric() || b"-._~".contains(&value);
            assert!(
                !unreserved && value != b'/' && value >= 0x20 && value != 0x7f,
                "{raw:?} → {out:?}: escape %{text} should not survive"
            );
            i += 3;
        } else {
            assert!(
                b.is_ascii_graphic() && !b"\"#<>?[\\]^`{|}".contains(&b),
                "{raw:?} → {out:?}: raw byte {b:#04x} at {i}"
            );
            i += 1;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let result = normalize_path(raw);
    let full = normalize_path_rewrite(raw);
    match &result {
        Ok(out) => {
            assert_eq!(
                full.as_deref(),
                Ok(&**out),
                "{raw:?}: shortcut and rewrite differ"
            );
            if let Cow::Borrowed(b) = out {
                assert_eq!(*b, raw);
            }
            assert_normal_form(out, raw);
            let again = normalize_path(out);
            assert!(
                matches!(&again, Ok(Cow::Borrowed(s)) if s == out),
                "{raw:?} → {out:?} → {again:?}: not a fixed point"
            );
        }
        Err(e) => assert_eq!(
            full.as_ref(),
            Err(e),
            "{raw:?}: shortcut and rewrite differ"
        ),
    }
});
