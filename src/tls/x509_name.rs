//! Subject and issuer of an X.509 certificate as RFC 2253 strings (`CN=client,O=Example`),
//! the form nginx gives in `$ssl_client_s_dn` and ingress-nginx passes upstream. Only the
//! few DER structures on the way to the two names are walked.
//!
//! Failure behaviour: total over any input; a certificate that does not parse gives `None`.

/// The subject and issuer names of a DER certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub subject: String,
    pub issuer: String,
    /// The subject's (last) common name, if any.
    pub common_name: Option<String>,
}

/// One DER element: tag, contents, and the bytes after it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest.get(n..)?)
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// Parses `der` (one certificate).
pub fn names(der: &[u8]) -> Option<Names> {
    let (tag, cert, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // [0] EXPLICIT version, when present.
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    let (_, _, after_serial) = element(rest)?;
    let (_, _, after_alg) = element(after_serial)?;
    let (tag, issuer, after_issuer) = element(after_alg)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, after_validity) = element(after_issuer)?;
    let (tag, subject, _) = element(after_validity)?;
    if tag != SEQUENCE {
        return None;
    }
    let (issuer, _) = rfc2253(issuer)?;
    let (subject, common_name) = rfc2253(subject)?;
    Some(Names {
        subject,
        issuer,
        common_name,
    })
}

/// A Name (SEQUENCE OF SET OF AttributeTypeAndValue) in RFC 2253 order (last RDN first),
/// and the value of its last CN.
fn rfc2253(mut name: &[u8]) -> Option<(String, Option<String>)> {
    let mut rdns = Vec::new();
    let mut cn = None;
    while !name.is_empty() {
        let (tag, set, rest) = element(name)?;
        if tag != SET {
            return None;
        }
        name = rest;
        let mut parts = Vec::new();
        let mut set = set;
        while !set.is_empty() {
            let (tag, atv, rest) = element(set)?;
            if tag != SEQUENCE {
                return None;
            }
            set = rest;
            let (tag, oid, after) = element(atv)?;
            if tag != OID {
                return None;
            }
            let (value_tag, value, _) = element(after)?;
            let value = string_value(value_tag, value);
            let key = short_name(oid);
            if key == "CN" {
                cn = Some(value.clone());
            }
            parts.push(format!("{key}={}", escape(&value)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some((rdns.join(","), cn))
}

fn short_name(oid: &[u8]) -> String {
    let known = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "street",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    dotted(oid).unwrap_or_else(|| "?".into())
}

/// An OID in dotted form, for attributes without a short name.
fn dotted(oid: &[u8]) -> Option<String> {
    let (&first, rest) = oid.split_first()?;
    let mut out = format!("{}.{}", first / 40, first % 40);
    let mut acc: u64 = 0;
    for &b in rest {
        acc = acc.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            out.push_str(&format!(".{acc}"));
            acc = 0;
        }
    }
    Some(out)
}

/// A directory string as text: UTF-8, printable, IA5 and T61 taken as UTF-8 (lossy),
/// BMP as UTF-16.
fn string_value(tag: u8, value: &[u8]) -> String {
    match tag {
        0x1e => {
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => String::from_utf8_lossy(value).into_owned(),
    }
}

/// RFC 2253 §2.4 escaping, plus control characters as `\XX`.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_an_rcgen_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".into()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc.");
        dn.push(rcgen::DnType::CommonName, "client-7");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let n = names(cert.der()).unwrap();
        assert_eq!(n.subject, "CN=client-7,O=Example\\, Inc.,C=DE");
        assert_eq!(n.issuer, n.subject, "self-signed");
        assert_eq!(n.common_name.as_deref(), Some("client-7"));
    }

    #[test]
    fn garbage_and_truncation_give_none() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        for cut in 0..der.len() {
            let _ = names(&der[..cut]);
        }
        assert_eq!(names(&[]), None);
        assert_eq!(names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(names(b"not a certificate"), None);
        assert_eq!(escape(" a#b, "), "\\ a#b\\,\\ ");
        assert_eq!(dotted(&[0x2a, 0x03]).as_deref(), Some("1.2.3"));
    }
}
