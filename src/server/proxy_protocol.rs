//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that cloud load
//! balancers put in front of a TCP connection to say whom it came from.
//!
//! Failure behaviour: `parse` is total. Any byte string gives `Incomplete`, a header, or
//! an error; nothing indexes past the input or trusts a length field beyond the bound.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: it cannot start an HTTP request or a TLS record.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n" is 107 bytes, the spec's
/// longest v1 line.
pub const V1_MAX: usize = 107;
/// Longest v2 header accepted: address block plus TLVs (AWS and GCP send a few dozen
/// bytes of TLVs; the spec allows 64 KiB, which no balancer uses).
pub const V2_MAX: usize = 16 + 2048;

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header occupies at the start of the input.
    pub len: usize,
    /// The original client, when the header names one (not for v1 `UNKNOWN`, a v2 `LOCAL`
    /// command such as a health check, or an address family we do not route).
    pub source: Option<SocketAddr>,
}

/// Why the bytes are not a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("connection does not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("PROXY protocol header longer than {0} bytes")]
    TooLong(usize),
}

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A header may follow; read more.
    Incomplete,
    Done(Header),
}

/// Parses the header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if buf.is_empty() {
        return Ok(Parsed::Incomplete);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return parse_v2(buf);
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return parse_v1(buf);
    }
    Err(HeaderError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(HeaderError::TooLong(V1_MAX));
        }
        return Ok(Parsed::Incomplete);
    };
    let line = std::str::from_utf8(&buf[6..end])
        .map_err(|_| HeaderError::Malformed("v1 line is not ASCII"))?;
    let len = end + 2;
    let mut fields = line.split(' ');
    let proto = fields.next().unwrap_or("");
    if proto == "UNKNOWN" {
        // The sender does not know the source; the rest of the line is to be ignored.
        return Ok(Parsed::Done(Header { len, source: None }));
    }
    let (src, dst, sport, dport) = match (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) {
        (Some(a), Some(b), Some(c), Some(d), None) => (a, b, c, d),
        _ => {
            return Err(HeaderError::Malformed(
                "v1 needs exactly four address fields",
            ));
        }
    };
    let ip: IpAddr = match proto {
        "TCP4" => src
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| HeaderError::Malformed("v1 TCP4 source is not an IPv4 address"))?,
        "TCP6" => src
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| HeaderError::Malformed("v1 TCP6 source is not an IPv6 address"))?,
        _ => {
            return Err(HeaderError::Malformed(
                "v1 protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    // Ports are decimal without sign or leading zeros, 0..=65535.
    let port_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'))
    };
    if !port_ok(sport) || !port_ok(dport) {
        return Err(HeaderError::Malformed("v1 port is not a decimal number"));
    }
    let port: u16 = sport
        .parse()
        .map_err(|_| HeaderError::Malformed("v1 port is over 65535"))?;
    dport
        .parse::<u16>()
        .map_err(|_| HeaderError::Malformed("v1 port is over 65535"))?;
    dst.parse::<IpAddr>()
        .map_err(|_| HeaderError::Malformed("v1 destination is not an address"))?;
    Ok(Parsed::Done(Header {
        len,
        source: Some(SocketAddr::new(ip, port)),
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let Some(fixed) = buf.get(..16) else {
        return Ok(Parsed::Incomplete);
    };
    let version = fixed[12] >> 4;
    let command = fixed[12] & 0x0f;
    if version != 2 {
        return Err(HeaderError::Malformed("v2 version nibble is not 2"));
    }
    let body_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let len = 16 + body_len;
    if len > V2_MAX {
        return Err(HeaderError::TooLong(V2_MAX));
    }
    let Some(body) = buf.get(16..len) else {
        return Ok(Parsed::Incomplete);
    };
    match command {
        // LOCAL: the balancer's own connection (a health check); keep the real peer.
        0 => return Ok(Parsed::Done(Header { len, source: None })),
        1 => {}
        _ => {
            return Err(HeaderError::Malformed(
                "v2 command is neither LOCAL nor PROXY",
            ));
        }
    }
    let family = fixed[13] >> 4;
    let transport = fixed[13] & 0x0f;
    if transport > 2 {
        return Err(HeaderError::Malformed(
            "v2 transport is not UNSPEC, STREAM or DGRAM",
        ));
    }
    // What follows the addresses is TLVs; none changes whom the connection is from, so
    // all of them (known or not) are skipped.
    let source = match family {
        0 => None,
        1 => {
            let a = body
                .get(..12)
                .ok_or(HeaderError::Malformed("v2 IPv4 address block is short"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        2 => {
            let a = body
                .get(..36)
                .ok_or(HeaderError::Malformed("v2 IPv6 address block is short"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        // AF_UNIX: a path, not an address a policy could name.
        3 => {
            body.get(..216)
                .ok_or(HeaderError::Malformed("v2 unix address block is short"))?;
            None
        }
        _ => return Err(HeaderError::Malformed("v2 address family is unknown")),
    };
    Ok(Parsed::Done(Header { len, source }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> Header {
        match parse(buf) {
            Ok(Parsed::Done(h)) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let h = done(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nGET / HTTP/1.1\r\n");
        assert_eq!(h.len, 43);
        assert_eq!(h.source, Some("203.0.113.7:51000".parse().unwrap()));
        let h = done(b"PROXY TCP6 2001:db8::7 2001:db8::1 1 80\r\n");
        assert_eq!(h.source, Some("[2001:db8::7]:1".parse().unwrap()));
        let h = done(b"PROXY UNKNOWN whatever follows\r\n\x16\x03");
        assert_eq!((h.len, h.source), (32, None));
        let h = done(b"PROXY UNKNOWN\r\n");
        assert_eq!((h.len, h.source), (15, None));
    }

    #[test]
    fn v2_inet_inet6_local_unspec_and_tlvs() {
        let mut body = vec![198, 51, 100, 9, 10, 0, 0, 1];
        body.extend_from_slice(&40000u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        // An unknown TLV (type 0xEE) and AWS's VPC endpoint TLV: both skipped.
        body.extend_from_slice(&[0xEE, 0, 3, 1, 2, 3, 0xEA, 0, 2, 1, b'x']);
        let mut buf = v2(1, 0x11, &body);
        let total = buf.len();
        buf.extend_from_slice(b"GET /");
        let h = done(&buf);
        assert_eq!(h.len, total);
        assert_eq!(h.source, Some("198.51.100.9:40000".parse().unwrap()));

        let mut body = "2001:db8::9".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0x1f, 0x90, 0, 80]);
        assert_eq!(
            done(&v2(1, 0x21, &body)).source,
            Some("[2001:db8::9]:8080".parse().unwrap())
        );
        // LOCAL (a health check) carries no client, whatever the block says.
        assert_eq!(done(&v2(0, 0x11, &[0; 12])).source, None);
        assert_eq!(done(&v2(1, 0x00, &[])).source, None);
        assert_eq!(done(&v2(1, 0x31, &[b'/'; 216])).source, None);
    }

    #[test]
    fn prefixes_are_incomplete() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n";
        let mut body = vec![0u8; 12];
        body[8] = 1;
        let v2 = v2(1, 0x11, &body);
        for full in [&v1[..], &v2[..]] {
            for cut in 0..full.len() {
                assert_eq!(parse(&full[..cut]), Ok(Parsed::Incomplete), "cut at {cut}");
            }
            assert!(matches!(parse(full), Ok(Parsed::Done(_))));
        }
    }

    #[test]
    fn malformed_inputs_are_errors_never_panics() {
        let bad: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n",
            b"\x16\x03\x01\x02\x00",
            b"PROXY\r\n",
            b"PROXY TCP4\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443 extra\r\n",
            b"PROXY TCP4 1.2.3.400 5.6.7.8 80 443\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 80 443\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 80 443\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 443\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 443\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 080 443\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 80 +443\r\n",
            b"PROXY TCP4 1.2.3.4 nowhere 80 443\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 80 443\r\n",
            b"PROXY TCP4 \xff\xfe 5.6.7.8 80 443\r\n",
            b"PROXY  TCP4 1.2.3.4 5.6.7.8 80 443\r\n",
        ];
        for b in bad {
            assert!(parse(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        // A v1 line that never ends is cut off at the spec's bound.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(parse(&long), Err(HeaderError::TooLong(V1_MAX)));
        // v2: wrong version, unknown command, family and transport, short blocks, and a
        // length over the bound.
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        assert!(parse(&wrong_version).is_err());
        assert!(parse(&v2(2, 0x11, &[0; 12])).is_err());
        assert!(parse(&v2(1, 0x41, &[0; 12])).is_err());
        assert!(parse(&v2(1, 0x13, &[0; 12])).is_err());
        assert!(parse(&v2(1, 0x11, &[0; 11])).is_err());
        assert!(parse(&v2(1, 0x21, &[0; 35])).is_err());
        assert!(parse(&v2(1, 0x31, &[0; 100])).is_err());
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&huge), Err(HeaderError::TooLong(V2_MAX)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix of many pseudo-random inputs, half of
        // them starting like a header.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..2000 {
            let len = usize::try_from(next() % 300).unwrap();
            let mut buf: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
            let lead: Vec<u8> = match i % 3 {
                0 => V2_SIGNATURE.iter().copied().chain([0x21]).collect(),
                1 => b"PROXY TCP4 ".to_vec(),
                _ => Vec::new(),
            };
            buf.splice(0..0, lead);
            for cut in [0, 1, 6, 12, 13, 16, buf.len() / 2, buf.len()] {
                let _ = parse(&buf[..cut.min(buf.len())]);
            }
        }
    }
}
