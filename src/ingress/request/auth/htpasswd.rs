//! The user list of basic auth: an htpasswd file (`auth-file`, one `user:hash` per line) or
//! a user map (`auth-map`, one Secret key per user, the hash as its value), parsed once at
//! compile time into users and decoded hashes.
//!
//! Hash formats (as nginx's `auth_basic_user_file` accepts them through crypt(3)): bcrypt
//! (`$2y$`, `$2a$`, `$2b$`, `$2x$`), Apache MD5 (`$apr1$`), MD5-crypt (`$1$`), SHA-crypt
//! (`$5$`, `$6$`) and `{SHA}` (base64 of SHA-1). DES crypt (13 characters) and
//! plain-text passwords are not accepted: such a user can never sign in, and the
//! compile problem names them. Derived hashes are compared in constant time.
//!
//! Failure behaviour: a file with no usable line, or a line that is not `user:hash`, makes
//! the whole list unusable (the caller then refuses every request to the routes); one
//! user with an unsupported hash only locks that user out.
use std::collections::HashMap;

use base64::Engine as _;
use sha_crypt::{PasswordVerifier as _, ShaCrypt};
use subtle::ConstantTimeEq as _;

use super::md5_crypt::md5_crypt;

/// Users larger files than this are refused (a user list is not a database).
const MAX_USERS: usize = 10_000;

/// One stored password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hash {
    Bcrypt(String),
    /// `$1$` or `$apr1$`: magic, salt, and the whole hash string to compare with.
    Md5 {
        magic: &'static str,
        salt: String,
        full: String,
    },
    ShaCrypt(String),
    Sha1([u8; 20]),
}

impl Hash {
    /// Whether checking this hash is slow enough (bcrypt, SHA-crypt) to run off the
    /// request threads and to remember the outcome.
    pub fn is_slow(&self) -> bool {
        matches!(self, Hash::Bcrypt(_) | Hash::ShaCrypt(_))
    }

    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Md5 { magic, salt, full } => {
                let derived = md5_crypt(password, salt.as_bytes(), magic.as_bytes());
                derived.as_bytes().ct_eq(full.as_bytes()).into()
            }
            Hash::ShaCrypt(h) => ShaCrypt::default()
                .verify_password(password, h.as_str())
                .is_ok(),
            Hash::Sha1(expected) => {
                let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password);
                d.as_ref().ct_eq(expected).into()
            }
        }
    }
}

/// Parses one stored hash.
pub fn parse_hash(h: &str) -> Result<Hash, String> {
    let h = h.trim();
    if h.starts_with("$2") {
        h.parse::<bcrypt::HashParts>()
            .map_err(|e| format!("malformed bcrypt hash: {e}"))?;
        return Ok(Hash::Bcrypt(h.to_string()));
    }
    for magic in ["$apr1$", "$1$"] {
        if let Some(rest) = h.strip_prefix(magic) {
            let (salt, hash) = rest
                .split_once('$')
                .ok_or_else(|| "malformed MD5 hash".to_string())?;
            if hash.len() != 22 {
                return Err("malformed MD5 hash".into());
            }
            return Ok(Hash::Md5 {
                magic,
                salt: salt.to_string(),
                full: h.to_string(),
            });
        }
    }
    if h.starts_with("$5$") || h.starts_with("$6$") {
        // Checked now, so a malformed hash is reported at compile rather than never matching.
        if sha_crypt::PasswordHashRef::new(h).is_err() || h.split('$').count() < 4 {
            return Err("malformed SHA-crypt hash".into());
        }
        return Ok(Hash::ShaCrypt(h.to_string()));
    }
    if let Some(b64) = h.strip_prefix("{SHA}") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "malformed {SHA} hash".to_string())?;
        let digest: [u8; 20] = bytes
            .try_into()
            .map_err(|_| "malformed {SHA} hash".to_string())?;
        return Ok(Hash::Sha1(digest));
    }
    if h.len() == 13 && !h.starts_with('$') {
        return Err("DES crypt hashes are not supported (rehash with bcrypt)".into());
    }
    Err("unknown hash format (expected bcrypt, $apr1$, $1$, $5$, $6$ or {SHA})".into())
}

/// The users of one Secret.
#[derive(Debug, Default)]
pub struct Users {
    by_name: HashMap<String, Hash>,
}

impl Users {
    pub fn get(&self, user: &str) -> Option<&Hash> {
        self.by_name.get(user)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The parsed list plus one note per user who cannot sign in.
#[derive(Debug)]
pub struct Parsed {
    pub users: Users,
    pub notes: Vec<String>,
}

/// Parses an htpasswd file (`auth-file`): `user:hash` lines; blank lines and `#` comments
/// are skipped.
pub fn parse_file(content: &[u8]) -> Result<Parsed, String> {
    let text = std::str::from_utf8(content).map_err(|_| "not UTF-8 text".to_string())?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| format!("line {} is not user:hash", i + 1))?;
        // Some tools write `user:hash:comment`.
        let hash = hash.split(':').next().unwrap_or("");
        if user.is_empty() || hash.is_empty() {
            return Err(format!("line {} is not user:hash", i + 1));
        }
        entries.push((user, hash));
    }
    build(entries)
}

/// Parses a user map (`auth-map`): every key is a user, its value the hash.
pub fn parse_map<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Parsed, String> {
    let mut list = Vec::new();
    for (user, value) in entries {
        let hash = std::str::from_utf8(value)
            .map_err(|_| format!("the hash of user {user:?} is not text"))?
            .trim();
        if hash.is_empty() {
            return Err(format!("user {user:?} has an empty hash"));
        }
        list.push((user, hash));
    }
    build(list)
}

fn build<'a>(entries: Vec<(&'a str, &'a str)>) -> Result<Parsed, String> {
    if entries.is_empty() {
        return Err("no users".into());
    }
    if entries.len() > MAX_USERS {
        return Err(format!("more than {MAX_USERS} users"));
    }
    let mut users = Users::default();
    let mut notes = Vec::new();
    for (user, hash) in entries {
        match parse_hash(hash) {
            // The first line of a user wins, as in nginx's linear scan of the file.
            Ok(h) => {
                users.by_name.entry(user.to_string()).or_insert(h);
            }
            Err(e) => notes.push(format!("user {user:?} cannot sign in: {e}")),
        }
    }
    Ok(Parsed { users, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &[u8] = b"open sesame";

    /// Hashes of "open sesame" written by real tools: openssl passwd (-apr1, -1, -5, -6),
    /// libxcrypt's crypt(3) for bcrypt, `openssl sha1 -binary | base64` for {SHA}.
    const FIXTURES: [&str; 7] = [
        "$apr1$s4ltS4lt$eRIykmJwtClUoMY5jbNp.0",
        "$1$s4ltS4lt$kaFJMPJPftzVSWTjxFpGU.",
        "$5$s4ltS4lt$CIKcTIxBkX0aQ1sFcLKFzOzD/w2Cc3Daz/idm9xR8R6",
        "$6$s4ltS4lt$8ff68xvl1AFcXlLHnWfl7fZ5iLNJne4A3ZndBYi.AKFt5yWjhTZqsJ9usyg20/LHOi2WimT2o8R07juuFlRCt0",
        "$2b$05$abcdefghijklmnopqrstuupx2xBUC4954936wVIjyyPHmUBFu0wCW",
        "$2y$05$abcdefghijklmnopqrstuupx2xBUC4954936wVIjyyPHmUBFu0wCW",
        "{SHA}W8r/fyL/UzygmbNAjq2HbA67qac=",
    ];

    #[test]
    fn every_format_verifies_the_right_password_only() {
        for fixture in FIXTURES {
            let h = parse_hash(fixture).unwrap();
            assert!(h.verify(PASSWORD), "{fixture}");
            assert!(!h.verify(b"open sesame!"), "{fixture}");
            assert!(!h.verify(b""), "{fixture}");
        }
        // A published bcrypt vector ("U*U", OpenBSD's test set).
        let h = parse_hash("$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW").unwrap();
        assert!(h.verify(b"U*U"));
    }

    #[test]
    fn file_and_map_forms() {
        let file = format!(
            "# users\nalice:{}\n\nbob:{}:comment\ncarol:ab/G8gtZdMwak\n",
            FIXTURES[0], FIXTURES[6]
        );
        let parsed = parse_file(file.as_bytes()).unwrap();
        assert_eq!(parsed.users.len(), 2);
        assert!(parsed.users.get("bob").unwrap().verify(PASSWORD));
        assert_eq!(
            parsed.notes.len(),
            1,
            "carol's DES hash: {:?}",
            parsed.notes
        );
        assert!(parsed.notes[0].contains("DES"));

        let map = parse_map([("dave", FIXTURES[1].as_bytes())]).unwrap();
        assert!(map.users.get("dave").unwrap().verify(PASSWORD));

        assert!(parse_file(b"foo:").is_err(), "empty hash");
        assert!(parse_file(b"no colon here").is_err());
        assert!(parse_file(b"\n# nothing\n").is_err());
        assert!(parse_file(&[0xff, 0xfe]).is_err());
        assert!(parse_map([("eve", &b""[..])]).is_err());
        assert!(parse_hash("$2y$05$short").is_err());
        assert!(parse_hash("$apr1$salt$tooshort").is_err());
        assert!(parse_hash("{SHA}AAAA").is_err());
        assert!(parse_hash("plaintext-password").is_err());
    }
}
