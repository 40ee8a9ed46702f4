//! Headers a proxy owns: hop-by-hop removal (RFC 9110 §7.6.1) and the forwarded family
//! (`X-Forwarded-*`, `X-Real-IP`, `X-Request-ID`). Incoming forwarded values are believed
//! only when the connecting peer is in the trusted CIDRs (default: none), so a client
//! cannot spoof its address past an allowlist. Never fails: unparsable values are
//! treated as absent.
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::ingress::request::request_id;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub(crate) static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// RFC 7239.
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static TRUE_CLIENT_IP: HeaderName = HeaderName::from_static("true-client-ip");
static X_CLIENT_IP: HeaderName = HeaderName::from_static("x-client-ip");
static X_ORIGINAL_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-original-forwarded-for");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// httpoxy: a `Proxy` request header must never reach CGI-style backends.
static PROXY: HeaderName = HeaderName::from_static("proxy");

/// True when `headers` carry the token `token` in any `Connection` value.
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// An HTTP/1.1 switch to WebSocket (`Connection: upgrade` + `Upgrade: websocket`), the
/// only protocol tunnelled. Any other `Upgrade` (notably `h2c`, which would carry
/// requests past every route and policy inside the tunnel) is not honoured: the headers
/// are dropped as hop-by-hop and the request is proxied as an ordinary one.
///
/// `allowed` names further protocols an Ingress enabled (`upgrade-protocols`).
pub fn is_upgrade_request(version: http::Version, headers: &HeaderMap, allowed: &[String]) -> bool {
    version == http::Version::HTTP_11
        && connection_has(headers, "upgrade")
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| {
                let name = p.split('/').next().unwrap_or("").trim();
                name.eq_ignore_ascii_case("websocket")
                    || allowed.iter().any(|a| name.eq_ignore_ascii_case(a))
            })
}

/// Removes hop-by-hop headers. With `upgrade`, `Upgrade` survives and `Connection` is
/// reduced to `upgrade` so the next hop switches protocols too.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of these: one pass over the names is cheaper than a
    // hashed removal of each (this runs twice per request).
    if !headers.keys().any(is_hop_by_hop) {
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    // Headers named by Connection are hop-by-hop too; collect before removing.
    let named: Vec<HeaderName> = crate::http_text::connection_named(headers)
        .filter(|n| !(upgrade && n == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| crate::http_text::lists_trailers(v.as_bytes()));
    for name in hop_by_hop_names() {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// True when `ip` is inside one of `nets`.
pub fn is_trusted(ip: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn real_client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    let entries: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for entry in entries.iter().rev() {
        let Some(ip) = parse_forwarded_ip(entry) else {
            break;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    client
}

/// Parses an `X-Forwarded-For` entry: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]:80` or
/// `1.2.3.4:80`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    let s = entry.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    None
}

/// Splits `host[:port]` (IPv6 literals in brackets) into the lower-case host name and the
/// explicit port, if any. Allocates only when the name has upper-case letters.
pub fn split_host(raw: &str) -> (std::borrow::Cow<'_, str>, Option<u16>) {
    // Byte-wise: `trim`'s Unicode whitespace test cost more than the rest. Hosts reach
    // here as visible ASCII (a field value's `to_str`), so the two trim alike.
    let raw = raw.trim_ascii();
    let (name, port) = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => (&raw[..=end], raw[end + 1..].strip_prefix(':')),
            None => (raw, None),
        }
    } else {
        // A byte search: `rsplit_once(':')`'s reverse char searcher was half of this
        // function's instructions, once per request.
        match raw.bytes().rposition(|b| b == b':') {
            Some(i)
                if i + 1 < raw.len() && raw.as_bytes()[i + 1..].iter().all(u8::is_ascii_digit) =>
            {
                (&raw[..i], Some(&raw[i + 1..]))
            }
            _ => (raw, None),
        }
    };
    // A trailing dot names the same host (`example.com.`); routes never carry one.
    let name = name.strip_suffix('.').unwrap_or(name);
    let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    };
    (name, port.and_then(|p| p.parse().ok()))
}

/// What the proxy knows about the downstream side of a request.
#[derive(Debug, Clone, Copy)]
pub struct Downstream<'a> {
    /// The connecting peer (a client or a trusted proxy).
    pub peer: IpAddr,
    /// The client address after trusted-proxy processing.
    pub client: IpAddr,
    pub peer_trusted: bool,
    /// `http` or `https`, as the client connected.
    pub scheme: &'a str,
    /// The host as the client sent it (Host header or :authority, port included).
    pub host: &'a str,
    /// Port the client connected to, as it sees it.
    pub port: u16,
}

/// How many headers `apply_forwarded` may add.
const FORWARDED_HEADERS: usize = 7;

/// Sets the forwarded family on an upstream request's headers. Returns the request id.
pub fn apply_forwarded(
    headers: &mut HeaderMap,
    down: &Downstream<'_>,
    prefix: Option<&str>,
) -> HeaderValue {
    // Values are built so that each costs at most one allocation and clones cost none
    // (this runs on every request): addresses are formatted on the stack, fixed strings
    // are static, and the client's own Host value is reused.
    // Room for what follows at once: the map the server parsed is sized to the client's
    // headers, and growing it one insert at a time rehashes it more than once.
    headers.reserve(FORWARDED_HEADERS);
    // Most requests carry none of the names below: one pass over the names (a length
    // switch and a compare each) spares the hashed lookups and removals of each.
    let carried = headers.keys().any(is_forwarding_name);
    // A trusted peer's own values are kept; an untrusted peer's are removed.
    let keep_theirs = down.peer_trusted && carried;
    let strip_theirs = !down.peer_trusted && carried;
    let peer = ip_value(down.peer);
    let prior_xff = match keep_theirs {
        true => {
            let prior: Vec<&str> = headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!prior.is_empty()).then(|| prior.join(", "))
        }
        false => None,
    };
    match (prior_xff, peer.to_str()) {
        (Some(prior), Ok(p)) => set(headers, &X_FORWARDED_FOR, &format!("{prior}, {p}")),
        _ => {
            headers.insert(&X_FORWARDED_FOR, peer.clone());
        }
    }
    if !(keep_theirs && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(&X_FORWARDED_PROTO, scheme_value(down.scheme));
    }
    if !(keep_theirs && headers.contains_key(&X_FORWARDED_HOST)) {
        match single_value(headers, &header::HOST).filter(|v| v.as_bytes() == down.host.as_bytes())
        {
            Some(host) => {
                let host = host.clone();
                headers.insert(&X_FORWARDED_HOST, host);
            }
            None => set(headers, &X_FORWARDED_HOST, down.host),
        }
    }
    if !(keep_theirs && headers.contains_key(&X_FORWARDED_PORT)) {
        headers.insert(&X_FORWARDED_PORT, port_value(down.port));
    }
    let real_ip = match down.client == down.peer {
        true => peer,
        false => ip_value(down.client),
    };
    headers.insert(&X_REAL_IP, real_ip);
    if strip_theirs {
        // Other spellings of "the client's address" that applications read: from an
        // untrusted peer they are whatever the client wanted them to be.
        for name in [
            &FORWARDED,
            &TRUE_CLIENT_IP,
            &X_CLIENT_IP,
            &X_ORIGINAL_FORWARDED_FOR,
        ] {
            headers.remove(name);
        }
    }
    match prefix {
        Some(p) => set(headers, &X_FORWARDED_PREFIX, p),
        None if strip_theirs => {
            headers.remove(&X_FORWARDED_PREFIX);
        }
        None => {}
    }
    let id = carried
        .then(|| headers.get(&X_REQUEST_ID))
        .flatten()
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .cloned()
        .unwrap_or_else(request_id::fresh_value);
    headers.insert(&X_REQUEST_ID, id.clone());
    id
}

/// Writes the forwarded family as `name: value` lines for a request that carried none of
/// it (`is_forwarding_name` matched no field), from the same values `apply_forwarded` sets
/// in that case and in its order: the plain lane's upstream head, which has no map.
pub(crate) fn put_forwarded(out: &mut Vec<u8>, down: &Downstream<'_>, request_id: &[u8]) {
    let peer = ip_value(down.peer);
    let client = (down.client != down.peer).then(|| ip_value(down.client));
    let (scheme, port) = (scheme_value(down.scheme), port_value(down.port));
    let values: [&[u8]; 6] = [
        peer.as_bytes(),
        scheme.as_bytes(),
        down.host.as_bytes(),
        port.as_bytes(),
        client.as_ref().unwrap_or(&peer).as_bytes(),
        request_id,
    ];
    // Each line's end and the next line's name are one constant piece: 13 copies for the
    // six lines instead of 24, and one capacity check (a tenth of the plain lane's own
    // instructions went to writing these lines).
    const JOINTS: [&[u8]; 6] = [
        b"x-forwarded-for: ",
        b"\r\nx-forwarded-proto: ",
        b"\r\nx-forwarded-host: ",
        b"\r\nx-forwarded-port: ",
        b"\r\nx-real-ip: ",
        b"\r\nx-request-id: ",
    ];
    let len: usize = JOINTS.iter().chain(&values).map(|p| p.len()).sum();
    out.reserve(len + 2);
    for (joint, value) in JOINTS.iter().zip(values) {
        out.extend_from_slice(joint);
        out.extend_from_slice(value);
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether `name` (as sent, any case) is one `apply_forwarded` reads or removes.
pub(crate) fn is_forwarding_bytes(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 11] = [
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"x-real-ip",
        b"x-request-id",
        b"forwarded",
        b"true-client-ip",
        b"x-client-ip",
        b"x-original-forwarded-for",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether `name` (as sent, any case) is hop-by-hop for `strip_hop_by_hop`: one of the
/// names always removed, or `Upgrade`.
pub(crate) fn is_hop_by_hop_bytes(name: &[u8]) -> bool {
    // Every field of both heads of a plain-lane exchange comes here: the length picks the
    // one or two names worth comparing (ten compares per field were over 1 % of its
    // instructions).
    let candidates: &[&[u8]] = match name.len() {
        2 => &[b"te"],
        5 => &[b"proxy"],
        7 => &[b"upgrade", b"trailer"],
        10 => &[b"connection", b"keep-alive"],
        16 => &[b"proxy-connection"],
        17 => &[b"transfer-encoding"],
        18 => &[b"proxy-authenticate"],
        19 => &[b"proxy-authorization"],
        _ => return false,
    };
    candidates.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// Whether `apply_forwarded` reads or removes a header of this name.
pub(crate) fn is_forwarding_name(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "x-forwarded-prefix"
            | "x-real-ip"
            | "x-request-id"
            | "forwarded"
            | "true-client-ip"
            | "x-client-ip"
            | "x-original-forwarded-for"
    )
}

/// The header's value when it occurs exactly once.
pub(crate) fn single_value<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Option<&'h HeaderValue> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

fn scheme_value(scheme: &str) -> HeaderValue {
    match scheme {
        "https" => HeaderValue::from_static("https"),
        _ => HeaderValue::from_static("http"),
    }
}

fn port_value(port: u16) -> HeaderValue {
    match port {
        80 => HeaderValue::from_static("80"),
        443 => HeaderValue::from_static("443"),
        p => HeaderValue::from(p),
    }
}

/// Up to 48 bytes kept inline behind one shared allocation, so a header value made from
/// them clones by reference count.
struct Inline {
    buf: [u8; 48],
    len: usize,
}

impl AsRef<[u8]> for Inline {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn inline_value(
    f: impl FnOnce(&mut std::io::Cursor<&mut [u8]>) -> std::io::Result<()>,
) -> Option<HeaderValue> {
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    f(&mut cursor).ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(Inline { buf, len })).ok()
}

/// The hop-by-hop names always removed (Upgrade is kept for an upgrade).
fn hop_by_hop_names() -> [&'static HeaderName; 9] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRANSFER_ENCODING,
        &header::TRAILER,
        &header::PROXY_AUTHORIZATION,
        &header::PROXY_AUTHENTICATE,
        &PROXY,
    ]
}

/// Whether `strip_hop_by_hop` has anything to do for `name` (besides the names a
/// Connection header lists, which only exist with a Connection header).
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::UPGRADE || hop_by_hop_names().contains(&name)
}

/// Slots of the per-thread cache of formatted addresses.
const IP_CACHE_SLOTS: usize = 16;

thread_local! {
    /// Recently formatted client addresses: requests come in runs from the same peers
    /// (keep-alive connections, a cloud load balancer's few addresses), and a hit costs a
    /// reference count instead of formatting and an allocation.
    static IP_VALUES: std::cell::RefCell<[Option<(IpAddr, HeaderValue)>; IP_CACHE_SLOTS]> =
        const { std::cell::RefCell::new([const { None }; IP_CACHE_SLOTS]) };
}

/// An address as a header value (an IPv6 address is at most 45 characters).
fn ip_value(ip: IpAddr) -> HeaderValue {
    let slot = match ip {
        IpAddr::V4(a) => usize::from(a.octets()[3] ^ a.octets()[2]),
        IpAddr::V6(a) => usize::from(a.octets()[15] ^ a.octets()[14]),
    } % IP_CACHE_SLOTS;
    let cached = IP_VALUES.with(|c| match &c.borrow()[slot] {
        Some((at, v)) if *at == ip => Some(v.clone()),
        _ => None,
    });
    if let Some(v) = cached {
        return v;
    }
    use std::io::Write as _;
    let value =
        inline_value(|c| write!(c, "{ip}")).unwrap_or_else(|| HeaderValue::from_static("unknown"));
    IP_VALUES.with(|c| c.borrow_mut()[slot] = Some((ip, value.clone())));
    value
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    // Values come from the client's own header bytes or our formatting; if one is not a
    // valid header value anyway, leave the header out rather than fail the request.
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_apply_forwarded_reads_or_removes_is_seen_by_its_pre_scan() {
        // A name missing from the pre-scan would let a client's own copy through.
        for name in [
            &X_FORWARDED_FOR,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &X_FORWARDED_PORT,
            &X_FORWARDED_PREFIX,
            &X_REAL_IP,
            &X_REQUEST_ID,
            &FORWARDED,
            &TRUE_CLIENT_IP,
            &X_CLIENT_IP,
            &X_ORIGINAL_FORWARDED_FOR,
        ] {
            assert!(is_forwarding_name(name), "{name}");
        }
        assert!(!is_forwarding_name(&header::HOST));
        assert!(!is_forwarding_name(&HeaderName::from_static("x-forwarded")));
    }

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn host_forms() {
        assert_eq!(
            split_host("Example.COM:8080"),
            ("example.com".into(), Some(8080))
        );
        assert_eq!(split_host("example.com"), ("example.com".into(), None));
        assert_eq!(split_host("example.com."), ("example.com".into(), None));
        assert_eq!(split_host("[::1]:443"), ("[::1]".into(), Some(443)));
        assert_eq!(split_host("[::1]"), ("[::1]".into(), None));
        assert_eq!(split_host(""), ("".into(), None));
        // Only digits after the last colon make a port.
        assert_eq!(split_host("example.com:"), ("example.com:".into(), None));
        assert_eq!(
            split_host("example.com:8x"),
            ("example.com:8x".into(), None)
        );
        assert_eq!(split_host("a:b:80"), ("a:b".into(), Some(80)));
        assert_eq!(
            split_host(" example.com:80 "),
            ("example.com".into(), Some(80))
        );
    }

    #[test]
    fn hop_by_hop_removed_and_connection_named_too() {
        let mut h = hm(&[
            ("connection", "keep-alive, x-secret"),
            ("connection", "X-Other"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip, trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("trailer", "x-t"),
            ("proxy-authorization", "Basic x"),
            ("proxy", "http://evil"),
            ("user-agent", "ua"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["te", "user-agent"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn upgrade_kept_when_upgrading() {
        let mut h = hm(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
        ]);
        assert!(is_upgrade_request(http::Version::HTTP_11, &h, &[]));
        assert!(!is_upgrade_request(http::Version::HTTP_2, &h, &[]));
        for other in ["h2c", "HTTP/2.0", "tls/1.2", ""] {
            let o = hm(&[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", other),
            ]);
            assert!(
                !is_upgrade_request(http::Version::HTTP_11, &o, &[]),
                "{other}"
            );
        }
        let ws = hm(&[("connection", "upgrade"), ("upgrade", "WebSocket")]);
        assert!(is_upgrade_request(http::Version::HTTP_11, &ws, &[]));
        let mqtt = hm(&[("connection", "upgrade"), ("upgrade", "mqtt")]);
        assert!(!is_upgrade_request(http::Version::HTTP_11, &mqtt, &[]));
        assert!(is_upgrade_request(
            http::Version::HTTP_11,
            &mqtt,
            &["mqtt".into()]
        ));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(!h.contains_key("te"));
    }

    #[test]
    fn real_client_only_through_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = hm(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        let untrusted_peer: IpAddr = "5.5.5.5".parse().unwrap();
        assert_eq!(real_client(untrusted_peer, &h, &trusted), untrusted_peer);
        let proxy: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(
            real_client(proxy, &h, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let junk = hm(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(real_client(proxy, &junk, &trusted), proxy);
        assert_eq!(
            parse_forwarded_ip("[2001:db8::1]:80"),
            Some("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn hop_by_hop_bytes_agree_with_the_header_name_check() {
        let mut names: Vec<String> = hop_by_hop_names()
            .iter()
            .map(|n| n.as_str().to_owned())
            .chain(["upgrade".to_owned()])
            .collect();
        // Every hop-by-hop name in other cases, with one letter changed, and one longer
        // or shorter; and fields pods send.
        for n in names.clone() {
            names.push(n.to_ascii_uppercase());
            let mut changed = n.clone().into_bytes();
            changed[0] ^= 1;
            names.push(String::from_utf8(changed).unwrap());
            names.push(format!("{n}s"));
            names.push(n[1..].to_owned());
        }
        for other in [
            "content-type",
            "content-length",
            "date",
            "x-upstream",
            "host",
            "t",
        ] {
            names.push(other.to_owned());
        }
        let mut hop = 0;
        for n in &names {
            let by_name = HeaderName::from_bytes(n.as_bytes()).is_ok_and(|h| is_hop_by_hop(&h));
            assert_eq!(is_hop_by_hop_bytes(n.as_bytes()), by_name, "{n}");
            hop += usize::from(by_name);
        }
        assert_eq!(hop, 20, "ten names, each in two cases");
    }

    #[test]
    fn the_lines_put_forwarded_writes_are_the_fields_apply_forwarded_sets() {
        for (peer, client, scheme, port) in [
            ("10.0.0.7", "10.0.0.7", "http", 80),
            ("2001:db8::5", "2001:db8::5", "https", 8443),
            ("10.0.0.7", "192.0.2.1", "https", 443),
        ] {
            let down = Downstream {
                peer: peer.parse().unwrap(),
                client: client.parse().unwrap(),
                peer_trusted: false,
                scheme,
                host: "shop.example:8080",
                port,
            };
            let mut map = HeaderMap::new();
            let id = apply_forwarded(&mut map, &down, None);
            let mut out = Vec::new();
            put_forwarded(&mut out, &down, id.as_bytes());
            let text = String::from_utf8(out).unwrap();
            let lines: Vec<(&str, &str)> = text
                .strip_suffix("\r\n")
                .unwrap()
                .split("\r\n")
                .map(|l| l.split_once(": ").unwrap())
                .collect();
            let want: Vec<(&str, &str)> = map
                .iter()
                .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
                .collect();
            assert_eq!(lines, want, "{peer} {client} {scheme}");
            // The third case's client is not its peer (as behind a trusted proxy): the
            // line follows the client, as the map does.
            assert_eq!(lines[4], ("x-real-ip", client));
        }
    }

    #[test]
    fn forwarded_family_untrusted_vs_trusted() {
        let down = |trusted| Downstream {
            peer: "10.0.0.7".parse().unwrap(),
            client: "10.0.0.7".parse().unwrap(),
            peer_trusted: trusted,
            scheme: "http",
            host: "example.com:8080",
            port: 8080,
        };
        let incoming = &[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-prefix", "/evil"),
            ("x-request-id", "abc"),
        ];
        let mut h = hm(incoming);
        let id = apply_forwarded(&mut h, &down(false), None);
        assert_eq!(id, "abc");
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com:8080");
        assert_eq!(h["x-forwarded-port"], "8080");
        assert_eq!(h["x-real-ip"], "10.0.0.7");
        assert!(!h.contains_key("x-forwarded-prefix"));
        for spoofable in ["forwarded", "true-client-ip", "x-client-ip"] {
            let mut h = hm(&[(spoofable, "for=1.1.1.1")]);
            apply_forwarded(&mut h, &down(false), None);
            assert!(
                !h.contains_key(spoofable),
                "{spoofable} kept from an untrusted peer"
            );
            let mut h = hm(&[(spoofable, "for=1.1.1.1")]);
            apply_forwarded(&mut h, &down(true), None);
            assert!(
                h.contains_key(spoofable),
                "{spoofable} dropped from a trusted proxy"
            );
        }

        let mut h = hm(incoming);
        apply_forwarded(&mut h, &down(true), Some("/app"));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-prefix"], "/app");

        let mut h = HeaderMap::new();
        let id = apply_forwarded(&mut h, &down(false), None);
        assert_eq!(id.len(), 32);
        assert!(id.to_str().unwrap().chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(h["x-request-id"], id);
    }

    #[test]
    fn address_values_stay_right_when_cache_slots_collide() {
        // Same slot (last two octets xor to 1), different addresses, in turns.
        let ips: [IpAddr; 3] = [
            "10.0.0.1".parse().unwrap(),
            "10.0.1.0".parse().unwrap(),
            "fe80::1".parse().unwrap(),
        ];
        for _ in 0..3 {
            for ip in ips {
                assert_eq!(ip_value(ip).to_str().unwrap(), ip.to_string());
            }
        }
    }

    #[test]
    fn nothing_hop_by_hop_leaves_the_headers_as_they_were() {
        let mut h = hm(&[("host", "a"), ("accept", "*/*"), ("x-custom", "1")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 3);
        let mut h = hm(&[("host", "a")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
    }
}
