//! The `Date` field of responses the server writes itself, formatted once a second per
//! thread rather than once per response (as bytes for `h1`, as a shared field value for
//! `h2`).
use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

struct Cached {
    second: u64,
    text: [u8; 29],
    /// `text` as a field value, made on first use in its second: a clone of it is a
    /// reference count, where a new value per answer is an allocation and a copy.
    value: Option<HeaderValue>,
}

thread_local! {
    static NOW: RefCell<Cached> =
        const { RefCell::new(Cached { second: u64::MAX, text: [0; 29], value: None }) };
}

/// Calls `f` with the current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn with_now<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    current(|cached| f(&cached.text))
}

/// The current time as a `Date` field value.
pub(crate) fn header_value() -> Option<HeaderValue> {
    current(|cached| {
        if cached.value.is_none() {
            let value = HeaderValue::from_bytes(&cached.text).ok()?;
            // Cloned once here, so the cached value is the shared kind from now on.
            let _ = value.clone();
            cached.value = Some(value);
        }
        cached.value.clone()
    })
}

fn current<R>(f: impl FnOnce(&mut Cached) -> R) -> R {
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    NOW.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.second != second {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second));
            if let Some(bytes) = text.as_bytes().get(..29) {
                cached.text.copy_from_slice(bytes);
                cached.second = second;
                cached.value = None;
            }
        }
        f(&mut cached)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_an_imf_fixdate_of_now() {
        let text = with_now(|d| String::from_utf8(d.to_vec()).unwrap());
        let parsed = httpdate::parse_http_date(&text).unwrap();
        let off = SystemTime::now()
            .duration_since(parsed)
            .unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(2), "{text}");
        assert!(text.ends_with(" GMT"), "{text}");
    }

    #[test]
    fn the_field_value_says_what_the_bytes_say() {
        let value = header_value().unwrap();
        let text = with_now(|d| String::from_utf8(d.to_vec()).unwrap());
        // Both read the clock; a second may have turned between them.
        let parsed = httpdate::parse_http_date(value.to_str().unwrap()).unwrap();
        let again = httpdate::parse_http_date(&text).unwrap();
        let apart = again
            .duration_since(parsed)
            .unwrap_or_else(|e| e.duration());
        assert!(apart <= Duration::from_secs(1), "{value:?} against {text}");
    }
}
