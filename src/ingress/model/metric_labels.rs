//! Fixed label values for request metrics: methods from a closed list and status codes
//! from a precomputed table, so request data can never add a label value (a client
//! sending `FOO` or status 999 lands in `other`) and no label is formatted per request.
use http::Method;

/// Method label values, indexed by [`method_index`]; the last one is everything else.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
];

/// Index of the `other` method.
pub const OTHER_METHOD: usize = METHODS.len() - 1;

/// The label slot of a method. `http::Method` keeps the standard ones as an enum, so these
/// comparisons do not look at bytes.
pub fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => OTHER_METHOD,
    }
}

/// Lowest and highest status with its own label value; HTTP defines nothing outside.
pub const FIRST_STATUS: u16 = 100;
pub const LAST_STATUS: u16 = 599;
const STATUS_COUNT: usize = (LAST_STATUS - FIRST_STATUS + 1) as usize;

/// The label value of statuses outside `FIRST_STATUS..=LAST_STATUS`.
pub const OTHER_STATUS: &str = "other";

/// "100" … "599" as ASCII, built at compile time.
static STATUS_DIGITS: [[u8; 3]; STATUS_COUNT] = {
    let mut out = [[0u8; 3]; STATUS_COUNT];
    let mut i = 0;
    while i < STATUS_COUNT {
        let code = FIRST_STATUS as usize + i;
        out[i] = [
            b'0' + (code / 100) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
        ];
        i += 1;
    }
    out
};

/// The same digits as `&'static str`, so a label lookup is an index.
static STATUS_LABELS: [&str; STATUS_COUNT] = {
    let mut out = [OTHER_STATUS; STATUS_COUNT];
    let mut i = 0;
    while i < STATUS_COUNT {
        // Digits are always UTF-8; the fallback only satisfies the type.
        out[i] = match std::str::from_utf8(&STATUS_DIGITS[i]) {
            Ok(s) => s,
            Err(_) => OTHER_STATUS,
        };
        i += 1;
    }
    out
};

/// The exact code as a label value, or `other` outside 100..=599.
pub fn status_label(status: u16) -> &'static str {
    status
        .checked_sub(FIRST_STATUS)
        .and_then(|i| STATUS_LABELS.get(usize::from(i)))
        .copied()
        .unwrap_or(OTHER_STATUS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_the_fixed_list() {
        for (i, name) in METHODS.iter().enumerate().take(OTHER_METHOD) {
            let m = Method::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(method_index(&m), i, "{name}");
        }
        for odd in ["FOO", "get", "PROPFIND", "BREW"] {
            let m = Method::from_bytes(odd.as_bytes()).unwrap();
            assert_eq!(METHODS[method_index(&m)], "other", "{odd}");
        }
    }

    #[test]
    fn status_table_is_exact_inside_the_range() {
        for code in FIRST_STATUS..=LAST_STATUS {
            assert_eq!(status_label(code), code.to_string());
        }
        for code in [0, 1, 99, 600, 999, u16::MAX] {
            assert_eq!(status_label(code), "other", "{code}");
        }
    }
}
