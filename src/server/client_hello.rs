//! The server name (SNI) of a TLS ClientHello, read from the first record before any
//! TLS library sees the connection, so the listener can decide who terminates it.
//!
//! Failure behaviour: total over any input. Only the first record is looked at; a
//! ClientHello split over several records (rare, and never needed for the name in
//! practice) gives the name only if it lies in the first one.

/// A TLS record header is 5 bytes; a record carries at most 16 KiB plus expansion.
pub const MAX_RECORD: usize = 5 + 16384 + 2048;

/// What the first bytes of a connection say about its ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// The first record is not complete yet.
    Incomplete,
    /// Not a TLS handshake record: let the TLS library fail it as it would.
    NotTls,
    /// The first record is complete; the host name it names, lower case, if any.
    Done(Option<String>),
}

/// Looks at the first TLS record in `buf`.
pub fn parse(buf: &[u8]) -> Hello {
    let Some(head) = buf.get(..5) else {
        return if buf.first().is_some_and(|b| *b != 0x16) {
            Hello::NotTls
        } else {
            Hello::Incomplete
        };
    };
    if head[0] != 0x16 || head[1] != 3 {
        return Hello::NotTls;
    }
    let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
    if 5 + len > MAX_RECORD {
        return Hello::NotTls;
    }
    let Some(record) = buf.get(5..5 + len) else {
        return Hello::Incomplete;
    };
    Hello::Done(server_name(record))
}

/// A cursor that yields `None` instead of reading past its end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// A length-prefixed block; a short one is cut to what is there.
    fn block(&mut self, len: usize) -> Cursor<'a> {
        let n = len.min(self.0.len());
        Cursor(self.take(n).unwrap_or(&[]))
    }
}

fn server_name(record: &[u8]) -> Option<String> {
    let mut c = Cursor(record);
    if c.u8()? != 1 {
        return None;
    }
    let len = c.u24()?;
    let mut hello = c.block(len);
    hello.take(2 + 32)?;
    let session = hello.u8()?;
    hello.take(session)?;
    let suites = hello.u16()?;
    hello.take(suites)?;
    let compression = hello.u8()?;
    hello.take(compression)?;
    let ext_len = hello.u16()?;
    let mut exts = hello.block(ext_len);
    while let (Some(kind), Some(len)) = (exts.u16(), exts.u16()) {
        let data = exts.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut list = Cursor(data);
        let list_len = list.u16()?;
        let mut list = list.block(list_len);
        while let (Some(name_type), Some(len)) = (list.u8(), list.u16()) {
            let name = list.take(len)?;
            if name_type == 0 {
                // Trailing dots go before the checks: a name of dots alone is no name.
                let name = std::str::from_utf8(name).ok()?.trim_end_matches('.');
                let valid = !name.is_empty()
                    && name.len() <= 253
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
                return valid.then(|| name.to_ascii_lowercase());
            }
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello from rustls, as sent on the wire.
    fn client_hello(sni: &str) -> Vec<u8> {
        crate::tls::install_provider();
        let config = crate::ingress::request::upstream_tls::client_config(&[b"h2"]).unwrap();
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(config, name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn finds_the_name_in_a_real_hello_and_waits_for_the_whole_record() {
        let hello = client_hello("Pass.Example.com");
        assert_eq!(parse(&hello), Hello::Done(Some("pass.example.com".into())));
        for cut in 0..hello.len() {
            assert_eq!(parse(&hello[..cut]), Hello::Incomplete, "cut at {cut}");
        }
        // An IP address name sends no SNI at all.
        let hello = client_hello("127.0.0.1");
        assert_eq!(parse(&hello), Hello::Done(None));
    }

    /// A ClientHello laid out by hand, so names no TLS client would send can be tried.
    fn raw_hello(name: &[u8]) -> Vec<u8> {
        let be16 = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
        let mut sni = vec![0u8];
        sni.extend(be16(name.len()));
        sni.extend(name);
        let mut ext = vec![0, 0];
        ext.extend(be16(sni.len() + 2));
        ext.extend(be16(sni.len()));
        ext.extend(sni);
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
        body.extend(be16(ext.len()));
        body.extend(ext);
        let mut hs = vec![1, 0];
        hs.extend(be16(body.len()));
        hs.extend(body);
        let mut record = vec![0x16, 3, 1];
        record.extend(be16(hs.len()));
        record.extend(hs);
        record
    }

    /// Found by the edge_prelude fuzz target: "." became an empty name.
    #[test]
    fn names_are_checked_after_trailing_dots_go() {
        assert_eq!(
            parse(&raw_hello(b"A.Example.")),
            Hello::Done(Some("a.example".into()))
        );
        for bad in [&b"."[..], b"...", b""] {
            assert_eq!(parse(&raw_hello(bad)), Hello::Done(None), "{bad:?}");
        }
        let long = [b'a'; 253];
        assert_eq!(parse(&raw_hello(&long)), Hello::Done(Some("a".repeat(253))));
        let mut dotted = long.to_vec();
        dotted.push(b'.');
        assert_eq!(
            parse(&raw_hello(&dotted)),
            Hello::Done(Some("a".repeat(253)))
        );
    }

    #[test]
    fn other_protocols_and_garbage() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse(b"G"), Hello::NotTls);
        assert_eq!(parse(&[0x16, 0x02, 0, 0, 1]), Hello::NotTls);
        assert_eq!(parse(&[0x16, 0x03, 0x01, 0xff, 0xff]), Hello::NotTls);
        // A complete record that is not a ClientHello, or one cut short inside.
        assert_eq!(parse(&[0x16, 3, 1, 0, 1, 2]), Hello::Done(None));
        let mut hello = client_hello("a.example");
        let len = hello.len();
        hello.truncate(60);
        let rlen = u16::try_from(hello.len() - 5).unwrap().to_be_bytes();
        hello[3..5].copy_from_slice(&rlen);
        assert_eq!(parse(&hello), Hello::Done(None), "{len}");
        // Pseudo-random bodies behind a valid record header never panic.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = usize::try_from(seed % 200).unwrap();
            let mut rec = vec![0x16, 3, 1];
            rec.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
            rec.push(1);
            rec.extend((0..n.saturating_sub(1)).map(|i| seed.to_le_bytes()[i % 8] ^ (i as u8)));
            let _ = parse(&rec);
        }
    }
}
