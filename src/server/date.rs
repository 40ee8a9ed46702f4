//! The `Date` field of responses the server writes itself, formatted once a second per
//! thread rather than once per response.
use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Cached {
    second: u64,
    text: [u8; 29],
}

thread_local! {
    static NOW: RefCell<Cached> = const { RefCell::new(Cached { second: u64::MAX, text: [0; 29] }) };
}

/// Calls `f` with the current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn with_now<R>(f: impl FnOnce(&[u8]) -> R) -> R {
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
            }
        }
        f(&cached.text)
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
}
