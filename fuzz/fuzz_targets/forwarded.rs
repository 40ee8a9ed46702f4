//! The forwarded-header handling: client address behind trusted proxies, the request host,
//! hop-by-hop removal and the X-Forwarded-* family. Input: the first byte picks the peer
//! (and with it whether the peer is trusted), the rest is header lines `name: value`.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use portcullis::ingress::build::annotations::parse_ranges;
use portcullis::ingress::request::forwarded::{self, Downstream, X_FORWARDED_FOR, X_REAL_IP};
use portcullis::ingress::request::request_host::RequestHost;

static TRUSTED: LazyLock<Vec<IpNet>> =
    LazyLock::new(|| parse_ranges("10.0.0.0/8, fd00::/8, 127.0.0.1").unwrap_or_default());

fn peer(selector: u8) -> IpAddr {
    match selector % 4 {
        0 => IpAddr::V4(Ipv4Addr::new(10, 1, 2, selector)),
        1 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, selector)),
        2 => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(selector))),
        _ => IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            u16::from(selector),
        )),
    }
}

fn headers(lines: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        map.append(name, value);
    }
    map
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, lines)) = data.split_first() else {
        return;
    };
    let peer = peer(selector);
    let trusted = forwarded::is_trusted(peer, &TRUSTED);
    let mut headers = headers(lines);

    let client = forwarded::real_client(peer, &headers, &TRUSTED);
    if !trusted {
        assert_eq!(
            client, peer,
            "an untrusted peer's headers moved the client address"
        );
    }

    // The reading the gateway makes once per request.
    let mut req = http::Request::new(());
    *req.headers_mut() = headers.clone();
    let host = RequestHost::of(&req);
    let raw_host = host.raw().to_string();
    let (name, port) = (host.name(), host.port());
    assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
    assert!(raw_host.to_ascii_lowercase().contains(name), "{raw_host:?} -> {name:?}");
    if let Some(port) = port {
        assert!(raw_host.trim().ends_with(&port.to_string()), "{raw_host:?}");
    }

    let upgrade = forwarded::is_upgrade_request(http::Version::HTTP_11, &headers, &[]);
    forwarded::strip_hop_by_hop(&mut headers, upgrade);
    if upgrade {
        assert_eq!(
            headers.get(header::CONNECTION).map(HeaderValue::as_bytes),
            Some(&b"upgrade"[..])
        );
    } else {
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(!headers.contains_key(header::UPGRADE));
    }
    assert!(!headers.contains_key(header::TRANSFER_ENCODING));
    if let Some(te) = headers.get(header::TE) {
        assert_eq!(te.as_bytes(), b"trailers");
    }

    let down = Downstream {
        peer,
        client,
        peer_trusted: trusted,
        scheme: "https",
        host: &raw_host,
        port: 443,
    };
    let id = forwarded::apply_forwarded(&mut headers, &down, None);
    assert!(!id.is_empty());
    assert_eq!(headers.get(&forwarded::X_REQUEST_ID), Some(&id));
    assert_eq!(
        headers.get(&X_REAL_IP).and_then(|v| v.to_str().ok()),
        Some(client.to_string().as_str())
    );
    let xff = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The peer is always the last hop, whatever the client claimed before it.
    assert!(xff.ends_with(&peer.to_string()), "X-Forwarded-For {xff:?}");
    if !trusted {
        assert_eq!(xff, peer.to_string());
    }
});
