//! One access-log line per request, written when the response is finished (last body
//! byte sent, or the client went away), so bytes and duration are the real ones: one flat
//! JSON object per line on stdout.
//!
//! The request path only hands the finished `Entry` to the log thread (`log_writer`):
//! the JSON is formatted and written there, so a request pays neither for formatting nor
//! for a write system call, and a stalled stdout drops lines instead of stalling the data
//! plane. Logging never fails a request.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::uri::PathAndQuery;
use http::{HeaderValue, Method};

use crate::ingress::request::request_id::RequestId;

/// What is known about a request when it finishes.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: SystemTime,
    pub client: IpAddr,
    pub method: Method,
    /// As the client sent it (`:authority` or Host).
    pub host: HeaderValue,
    /// Path and query as routed (normalised; as received when that failed).
    pub path: PathAndQuery,
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub duration: Duration,
    pub upstream_addr: Option<SocketAddr>,
    pub upstream_duration: Option<Duration>,
    pub ingress: Option<Arc<str>>,
    pub service: Option<Arc<str>>,
    pub request_id: Option<RequestId>,
    pub retries: u8,
    /// Why we answered instead of the pod, when we did.
    pub error: Option<crate::ingress::request::proxy_error::ErrorKind>,
}

/// Queues `entry` for the access log, if the log thread runs (`log_writer::stdout`
/// starts it; without it, as in library tests, nothing is written). Takes the entry and
/// leaves an empty one behind: a clone would cost a reference count per shared field,
/// twice (made here, dropped with the request).
pub(crate) fn emit(entry: &mut Entry) {
    crate::ingress::request::log_writer::submit(std::mem::take(entry));
}

impl Default for Entry {
    /// Nothing known yet: no client, `GET /` with no host, no answer.
    fn default() -> Self {
        Entry {
            time: UNIX_EPOCH,
            client: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            method: Method::GET,
            host: HeaderValue::from_static(""),
            path: PathAndQuery::from_static("/"),
            status: 0,
            request_bytes: 0,
            response_bytes: 0,
            duration: Duration::ZERO,
            upstream_addr: None,
            upstream_duration: None,
            ingress: None,
            service: None,
            request_id: None,
            retries: 0,
            error: None,
        }
    }
}

/// Appends `entry` as one JSON object and a newline to `out` (on the log thread). The
/// field names and their order are the log's stable format. Written by hand into the
/// batch buffer: no intermediate strings per line.
pub(crate) fn write_line(entry: &Entry, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writes into a Vec cannot fail.
    let _ = write!(out, "{{\"time\":\"");
    write_rfc3339(entry.time, out);
    let _ = write!(out, "\",\"client\":\"{}\",\"method\":", entry.client);
    json_str(entry.method.as_str().as_bytes(), out);
    out.extend_from_slice(b",\"host\":");
    json_str(entry.host.as_bytes(), out);
    out.extend_from_slice(b",\"path\":");
    json_str(entry.path.as_str().as_bytes(), out);
    use crate::http_text::format_u64;
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(format_u64(u64::from(entry.status), &mut [0; 20]));
    out.extend_from_slice(b",\"bytes\":");
    out.extend_from_slice(format_u64(entry.response_bytes, &mut [0; 20]));
    out.extend_from_slice(b",\"request_bytes\":");
    out.extend_from_slice(format_u64(entry.request_bytes, &mut [0; 20]));
    out.extend_from_slice(b",\"duration_ms\":");
    put_ms(entry.duration, out);
    out.extend_from_slice(b",\"upstream_addr\":\"");
    if let Some(addr) = entry.upstream_addr {
        let _ = write!(out, "{addr}");
    }
    out.extend_from_slice(b"\",\"upstream_duration_ms\":");
    match entry.upstream_duration {
        Some(d) => put_ms(d, out),
        None => out.extend_from_slice(b"-1"),
    }
    out.extend_from_slice(b",\"ingress\":");
    json_str(entry.ingress.as_deref().unwrap_or("").as_bytes(), out);
    out.extend_from_slice(b",\"service\":");
    json_str(entry.service.as_deref().unwrap_or("").as_bytes(), out);
    out.extend_from_slice(b",\"request_id\":");
    json_str(
        entry
            .request_id
            .as_ref()
            .map_or(&b""[..], RequestId::as_bytes),
        out,
    );
    out.extend_from_slice(b",\"retries\":");
    out.extend_from_slice(format_u64(u64::from(entry.retries), &mut [0; 20]));
    out.extend_from_slice(b",\"error\":\"");
    if let Some(kind) = entry.error {
        out.extend_from_slice(kind.as_str().as_bytes());
    }
    out.extend_from_slice(b"\"}\n");
}

/// `bytes` as a JSON string. Header values may hold any byte but control characters;
/// bytes that are not UTF-8 become U+FFFD so the line stays valid JSON. Runs of bytes
/// that need no escape are copied whole (most values are one run): copying character by
/// character made this the log thread's largest cost.
fn json_str(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        escape_valid(chunk.valid().as_bytes(), out);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out.push(b'"');
}

/// Valid UTF-8 escaped for a JSON string. Every byte that needs an escape is ASCII, and
/// no byte of a multi-byte character is, so this can work byte by byte.
fn escape_valid(text: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut from = 0;
    for (i, &b) in text.iter().enumerate() {
        let escaped: [u8; 6];
        let with: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0..=0x1f | 0x7f => {
                escaped = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ];
                &escaped
            }
            _ => continue,
        };
        out.extend_from_slice(&text[from..i]);
        out.extend_from_slice(with);
        from = i + 1;
    }
    out.extend_from_slice(&text[from..]);
}

/// A duration as milliseconds with up to three decimals, as `{}` prints
/// `round(µs) / 1000.0` (`1.5`, `0.012`, `3`), without the float formatter.
fn put_ms(d: Duration, out: &mut Vec<u8>) {
    use crate::http_text::format_u64;
    let micros = u64::try_from(d.as_nanos().saturating_add(500) / 1000).unwrap_or(u64::MAX);
    out.extend_from_slice(format_u64(micros / 1000, &mut [0; 20]));
    let frac = micros % 1000;
    if frac != 0 {
        let digits = [
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let keep = 3 - digits.iter().rev().take_while(|d| **d == b'0').count();
        out.push(b'.');
        out.extend_from_slice(&digits[..keep]);
    }
}

/// UTC timestamp with milliseconds, e.g. `2026-11-22T10:04:05.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339(t, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn write_rfc3339(t: SystemTime, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {

    #[test]
    fn milliseconds_print_as_the_float_formatter_printed_them() {
        let old = |d: Duration| format!("{}", (d.as_secs_f64() * 1_000_000.0).round() / 1000.0);
        let mut nanos = 0u64;
        while nanos < 5_000_000_000 {
            let d = Duration::from_nanos(nanos);
            let mut out = Vec::new();
            put_ms(d, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), old(d), "{nanos} ns");
            nanos = nanos * 3 / 2 + 7_919;
        }
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_controls_only() {
        let mut out = Vec::new();
        json_str(
            b"plain /a?b=c \"q\" back\\slash \x01\x7f caf\xc3\xa9 \xff",
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "\"plain /a?b=c \\\"q\\\" back\\\\slash \\u0001\\u007f caf\u{e9} \u{fffd}\""
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            "plain /a?b=c \"q\" back\\slash \u{1}\u{7f} caf\u{e9} \u{fffd}"
        );
    }

    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599); // 2026-12-31T23:59:59
        assert_eq!(rfc3339(t), "2026-12-31T23:59:59.000Z");
    }

    #[test]
    fn one_json_line_per_entry() {
        let entry = Entry {
            time: UNIX_EPOCH,
            client: "10.1.2.3".parse().unwrap(),
            method: Method::POST,
            host: HeaderValue::from_static("ex\"ample\\.com"),
            path: PathAndQuery::from_static("/a?b=1"),
            status: 201,
            request_bytes: 5,
            response_bytes: 7,
            duration: Duration::from_micros(1500),
            upstream_addr: Some("10.0.0.1:8080".parse().unwrap()),
            upstream_duration: Some(Duration::from_millis(1)),
            ingress: Some("default/web".into()),
            service: Some("default/web:80".into()),
            request_id: Some(RequestId::Value(HeaderValue::from_static("abc"))),
            retries: 1,
            error: Some(crate::ingress::request::proxy_error::ErrorKind::Connect(
                crate::ingress::request::upstream::ConnectKind::Refused,
            )),
        };
        let mut out = Vec::new();
        write_line(&entry, &mut out);
        write_line(&entry, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["status"], 201);
        assert_eq!(v["method"], "POST");
        assert_eq!(v["client"], "10.1.2.3");
        // A quote or backslash in the host is escaped, not the end of the string.
        assert_eq!(v["host"], "ex\"ample\\.com");
        assert_eq!(v["path"], "/a?b=1");
        assert_eq!(v["bytes"], 7);
        assert_eq!(v["request_bytes"], 5);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream_addr"], "10.0.0.1:8080");
        assert_eq!(v["upstream_duration_ms"], 1.0);
        assert_eq!(v["ingress"], "default/web");
        assert_eq!(v["service"], "default/web:80");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["retries"], 1);
        assert_eq!(v["error"], "connect_refused");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn odd_header_bytes_stay_valid_json() {
        let mut entry = sample();
        entry.host = HeaderValue::from_bytes(b"a\tb\xffc").unwrap();
        let mut out = Vec::new();
        write_line(&entry, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["host"], "a\tb\u{fffd}c");
        assert_eq!(v["upstream_addr"], "");
        assert_eq!(v["upstream_duration_ms"], -1.0);
        assert_eq!(v["error"], "");
    }

    fn sample() -> Entry {
        Entry {
            client: "::1".parse().unwrap(),
            host: HeaderValue::from_static("example.com"),
            status: 404,
            duration: Duration::from_millis(12),
            ..Entry::default()
        }
    }
}
