//! `ssl-protocols` and `ssl-ciphers` (ingress-nginx ConfigMap keys, OpenSSL spelling)
//! turned into what rustls offers: protocol versions and a provider whose TLS 1.2 cipher
//! suites are the ones named, in that order.
//!
//! Failure behaviour: a name that is neither a known OpenSSL cipher nor an OpenSSL list
//! keyword is an error naming it, and so is a list that leaves TLS 1.2 with no suite.
//! Known OpenSSL ciphers rustls does not implement (CBC, DHE, RSA key exchange, ...) are
//! skipped with a warning: ingress-nginx's own default list names two of them.
use std::sync::Arc;

use super::backend::cipher_suite as cs;
use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;

use super::TlsError;

/// What the listeners' TLS offers.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    pub versions: Vec<&'static SupportedProtocolVersion>,
    pub provider: Arc<CryptoProvider>,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        TlsPolicy {
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            provider: super::provider(),
        }
    }
}

impl TlsPolicy {
    /// Reads `ssl-protocols` and `ssl-ciphers`; the warnings are names skipped.
    pub fn from_openssl(protocols: &str, ciphers: &str) -> Result<(Self, Vec<String>), TlsError> {
        let versions = versions(protocols)?;
        let (provider, warnings) = provider(ciphers)?;
        Ok((TlsPolicy { versions, provider }, warnings))
    }
}

/// `TLSv1.2 TLSv1.3` → versions. Older ones are refused: rustls has none of them.
pub fn versions(list: &str) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let mut out: Vec<&'static SupportedProtocolVersion> = Vec::new();
    for name in list.split_whitespace() {
        let v = match name {
            "TLSv1.3" => &rustls::version::TLS13,
            "TLSv1.2" => &rustls::version::TLS12,
            "TLSv1" | "TLSv1.1" | "SSLv2" | "SSLv3" => {
                return Err(TlsError::Config(format!(
                    "ssl-protocols: {name} is not supported (only TLSv1.2 and TLSv1.3)"
                )));
            }
            _ => {
                return Err(TlsError::Config(format!(
                    "ssl-protocols: unknown protocol {name:?} (expected TLSv1.2 and/or TLSv1.3)"
                )));
            }
        };
        if !out.iter().any(|o| o.version == v.version) {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err(TlsError::Config("ssl-protocols: no protocol given".into()));
    }
    Ok(out)
}

/// OpenSSL name → rustls suite.
fn suite(name: &str) -> Option<rustls::SupportedCipherSuite> {
    Some(match name {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        // TLS 1.3 names (OpenSSL configures these apart, `ssl_conf_command Ciphersuites`).
        "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

/// A real OpenSSL cipher name that rustls does not implement.
fn known_unsupported(name: &str) -> bool {
    const FAMILIES: &[&str] = &[
        "CAMELLIA", "ARIA", "CCM", "DES", "RC4", "IDEA", "SEED", "PSK", "SRP", "NULL", "ADH",
        "AECDH", "GOST",
    ];
    let upper = name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
    if !upper {
        return false;
    }
    let kx_ok = name.starts_with("DHE-")
        || name.starts_with("EDH-")
        || name.starts_with("ECDHE-")
        || name.starts_with("AES")
        || name.starts_with("ECDH-");
    // CBC suites end in -SHA, -SHA256 or -SHA384 without GCM.
    let cbc = name.contains("AES") && !name.contains("GCM") && name.contains("SHA");
    FAMILIES.iter().any(|f| name.contains(f))
        || (kx_ok && (cbc || name.contains("GCM") || name.contains("CHACHA20")))
}

/// An OpenSSL list keyword or modifier (`HIGH`, `!aNULL`, `@STRENGTH`, ...), which
/// selects nothing by name.
fn is_keyword(token: &str) -> bool {
    token.starts_with(['!', '-', '+', '@'])
        || matches!(
            token,
            "ALL"
                | "DEFAULT"
                | "HIGH"
                | "MEDIUM"
                | "LOW"
                | "COMPLEMENTOFDEFAULT"
                | "EECDH"
                | "EDH"
                | "ECDHE"
                | "AESGCM"
                | "CHACHA20"
                | "kEECDH"
                | "kECDHE"
                | "aRSA"
                | "aECDSA"
        )
}

/// The provider offering the TLS 1.2 suites of `list`, in its order, plus every TLS 1.3
/// suite (as with OpenSSL, `ssl_ciphers` does not touch TLS 1.3). Empty: the default.
pub fn provider(list: &str) -> Result<(Arc<CryptoProvider>, Vec<String>), TlsError> {
    let base = super::backend::default_provider();
    if list.trim().is_empty() {
        return Ok((Arc::new(base), Vec::new()));
    }
    let mut warnings = Vec::new();
    let mut tls12 = Vec::new();
    let mut tls13 = Vec::new();
    for token in list.split([':', ',', ' ']).filter(|t| !t.is_empty()) {
        if let Some(s) = suite(token) {
            let dest = match s.version().version == rustls::ProtocolVersion::TLSv1_3 {
                true => &mut tls13,
                false => &mut tls12,
            };
            if !dest.contains(&s) {
                dest.push(s);
            }
        } else if is_keyword(token) {
            warnings.push(format!(
                "ssl-ciphers: {token:?} is an OpenSSL selector; only cipher names are used"
            ));
        } else if known_unsupported(token) {
            warnings.push(format!(
                "ssl-ciphers: {token} is not available (rustls has only AEAD suites with ECDHE); skipped"
            ));
        } else {
            return Err(TlsError::Config(format!(
                "ssl-ciphers: unknown cipher {token:?}"
            )));
        }
    }
    if tls12.is_empty() {
        return Err(TlsError::Config(
            "ssl-ciphers: none of the listed ciphers is available for TLS 1.2".into(),
        ));
    }
    let all13: Vec<_> = base
        .cipher_suites
        .iter()
        .copied()
        .filter(|s| s.version().version == rustls::ProtocolVersion::TLSv1_3)
        .filter(|s| !tls13.contains(s))
        .collect();
    tls13.extend(all13);
    let mut provider = base;
    provider.cipher_suites = tls13.into_iter().chain(tls12).collect();
    Ok((Arc::new(provider), warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols() {
        assert_eq!(versions("TLSv1.2 TLSv1.3").unwrap().len(), 2);
        let only13 = versions("TLSv1.3").unwrap();
        assert_eq!(only13.len(), 1);
        assert_eq!(only13[0].version, rustls::ProtocolVersion::TLSv1_3);
        let e = versions("TLSv1.1 TLSv1.2").unwrap_err().to_string();
        assert!(e.contains("TLSv1.1 is not supported"), "{e}");
        assert!(
            versions("TLS1.3")
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
        assert!(versions("  ").is_err());
    }

    #[test]
    fn ingress_nginx_default_list_maps_with_two_skipped() {
        let list = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
                    ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
                    ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
                    DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";
        let (p, warnings) = provider(list).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let tls12 = p
            .cipher_suites
            .iter()
            .filter(|s| s.version().version == rustls::ProtocolVersion::TLSv1_2)
            .count();
        assert_eq!(tls12, 6);
        assert_eq!(p.cipher_suites.len(), 9, "TLS 1.3 suites stay");
    }

    #[test]
    fn order_is_kept_and_unknown_names_are_errors() {
        let (p, w) =
            provider("ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:!aNULL").unwrap();
        assert_eq!(w.len(), 1);
        let tls12: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version().version == rustls::ProtocolVersion::TLSv1_2)
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            tls12,
            [
                rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            ]
        );
        let e = provider("ECDHE-RSA-AES128-GCM-SHA256:NOT-A-CIPHER")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown cipher \"NOT-A-CIPHER\""), "{e}");
        let e = provider("AES128-SHA:DHE-RSA-AES256-GCM-SHA384").unwrap_err();
        assert!(e.to_string().contains("none of the listed"), "{e}");
    }
}
