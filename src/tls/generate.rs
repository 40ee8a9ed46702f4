//! Development certificates: a private CA and one serving leaf it signs (ECDSA P-256),
//! for the webhook (`portcullis certs`) and for the ingress default certificate.
//!
//! Failure behaviour: every rcgen or file-system error comes back as a `TlsError`; nothing
//! is written half-way except when the disk itself fails between two files.
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls::sign::CertifiedKey;

use super::{TlsError, certified_key_from_pem};

/// How long the generated CA and leaf stay valid. A webhook's caBundle is pasted into a
/// cluster object, so the CA outlives several leaves; both are for development only.
const CA_YEARS: i32 = 10;
const LEAF_YEARS: i32 = 5;

/// A CA certificate and a serving certificate signed by it, all PEM.
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The CA certificate clients must trust (the webhook `caBundle`).
    pub ca_pem: String,
    /// The serving leaf certificate.
    pub cert_pem: String,
    /// The leaf's PKCS#8 private key.
    pub key_pem: String,
}

impl DevCerts {
    /// Certificates for the in-cluster Service `service` in `namespace`: every name the API
    /// server may use to reach it, plus `localhost` and `127.0.0.1` for local runs.
    pub fn generate(service: &str, namespace: &str) -> Result<DevCerts, TlsError> {
        if service.is_empty() || namespace.is_empty() {
            return Err(TlsError::Generate(
                "service and namespace must not be empty".into(),
            ));
        }
        let names = vec![
            service.to_string(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ];
        Self::generate_for_names(&names)
    }

    /// Certificates whose leaf carries exactly `names` as SANs (strings that parse as IP
    /// addresses become IP SANs, `*.example.com` is a wildcard).
    pub fn generate_for_names(names: &[String]) -> Result<DevCerts, TlsError> {
        let first = names
            .first()
            .ok_or_else(|| TlsError::Generate("at least one name is needed".into()))?;
        // rcgen takes any IA5 string as a DNS name; a typo would only show up as a
        // handshake failure much later.
        if let Some(bad) = names.iter().find(|n| !valid_san(n)) {
            return Err(TlsError::Generate(format!(
                "{bad:?} is not a DNS name or IP address"
            )));
        }
        let (not_before, ca_until, leaf_until) = validity();

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "portcullis development CA");
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "portcullis");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut ca_params, not_before, ca_until)?;
        let ca_key = KeyPair::generate().map_err(gen_err)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(gen_err)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut leaf_params = CertificateParams::new(names.to_vec()).map_err(gen_err)?;
        // X.520 caps CommonName at 64 characters; the SANs are what clients check anyway.
        if first.len() <= 64 {
            leaf_params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.use_authority_key_identifier_extension = true;
        set_validity(&mut leaf_params, not_before, leaf_until)?;
        let leaf_key = KeyPair::generate().map_err(gen_err)?;
        let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).map_err(gen_err)?;

        Ok(DevCerts {
            ca_pem: ca_cert.pem(),
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
        })
    }

    /// The leaf and key, ready to serve.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        certified_key_from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
    }

    /// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, creating it.
    pub fn write_to(&self, dir: &Path) -> Result<(), TlsError> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        write_file(&dir.join("ca.crt"), self.ca_pem.as_bytes(), false)?;
        write_file(&dir.join("tls.crt"), self.cert_pem.as_bytes(), false)?;
        write_file(&dir.join("tls.key"), self.key_pem.as_bytes(), true)?;
        Ok(())
    }

    /// The CA PEM in base64, as a webhook configuration's `caBundle` wants it.
    pub fn ca_bundle_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes())
    }
}

/// The `portcullis certs` subcommand: generates certificates for `service.namespace`,
/// writes them into `out` and returns the base64 caBundle for the caller to print.
pub fn run_certs(service: &str, namespace: &str, out: &Path) -> Result<String, TlsError> {
    let certs = DevCerts::generate(service, namespace)?;
    certs.write_to(out)?;
    Ok(certs.ca_bundle_base64())
}

fn valid_san(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    // A wildcard is only valid as the whole leftmost label.
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.contains('*') && rustls_pki_types::DnsName::try_from(host).is_ok()
}

fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), TlsError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|e| io_err(path, e))?;
    // `mode` only applies to new files: an existing key file keeps whatever it had, so the
    // permissions are narrowed explicitly before the secret goes in.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err(path, e))?;
    }
    file.write_all(data).map_err(|e| io_err(path, e))?;
    file.sync_all().map_err(|e| io_err(path, e))
}

fn io_err(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn gen_err(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// A calendar date (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ymd {
    year: i32,
    month: u8,
    day: u8,
}

/// (yesterday, yesterday + CA_YEARS, yesterday + LEAF_YEARS). Starting a day early keeps
/// the certificates valid on machines whose clocks lag a little.
fn validity() -> (Ymd, Ymd, Ymd) {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    let start = civil_from_days(i64::try_from(days).unwrap_or(0) - 1);
    let plus = |years: i32| Ymd {
        year: start.year + years,
        ..start
    };
    (start, plus(CA_YEARS), plus(LEAF_YEARS))
}

/// rcgen's `date_time_ymd` panics on impossible dates; the day is clamped to 28 so a
/// 29 February start cannot become an invalid end date.
fn set_validity(params: &mut CertificateParams, from: Ymd, until: Ymd) -> Result<(), TlsError> {
    for d in [from, until] {
        if !(1..=12).contains(&d.month) || !(1..=31).contains(&d.day) {
            return Err(TlsError::Generate(format!("invalid date {d:?}")));
        }
    }
    params.not_before = date_time_ymd(from.year, from.month, from.day.min(28));
    params.not_after = date_time_ymd(until.year, until.month, until.day.min(28));
    Ok(())
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> Ymd {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Ymd {
        year: i32::try_from(year).unwrap_or(2000),
        month: u8::try_from(month).unwrap_or(1),
        day: u8::try_from(day).unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(
            civil_from_days(0),
            Ymd {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        // 2024-02-29, a leap day.
        assert_eq!(
            civil_from_days(19_782),
            Ymd {
                year: 2024,
                month: 2,
                day: 29
            }
        );
        assert_eq!(
            civil_from_days(-1),
            Ymd {
                year: 1969,
                month: 12,
                day: 31
            }
        );
    }

    #[test]
    fn writes_files_with_a_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested");
        let bundle = run_certs("portcullis", "kube-system", &out).unwrap();
        let ca = fs::read_to_string(out.join("ca.crt")).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .unwrap();
        assert_eq!(decoded, ca.as_bytes());
        let cert = fs::read(out.join("tls.crt")).unwrap();
        let key = fs::read(out.join("tls.key")).unwrap();
        certified_key_from_pem(&cert, &key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(out.join("tls.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn rejects_empty_input() {
        assert!(DevCerts::generate_for_names(&[]).is_err());
        assert!(DevCerts::generate("", "ns").is_err());
        assert!(DevCerts::generate_for_names(&["not a name!".into()]).is_err());
        let ok = DevCerts::generate_for_names(&["*.example.com".into(), "::1".into()]);
        assert!(ok.is_ok(), "{ok:?}");
    }
}
