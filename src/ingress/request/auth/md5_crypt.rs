//! MD5-crypt, the `$1$` hashes of crypt(3) and Apache's `$apr1$` variant (the same algorithm
//! with another magic string), which `htpasswd -m` and `openssl passwd -apr1` write.
use md5::{Digest, Md5};

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// The salt is at most this long; longer salts are cut, as crypt(3) does.
const MAX_SALT: usize = 8;

/// The full hash string (`{magic}{salt}${hash}`) for `password`.
pub fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> String {
    let salt = &salt[..salt.len().min(MAX_SALT)];
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic);
    ctx.update(salt);
    for chunk in password.chunks(16) {
        ctx.update(&alternate[..chunk.len()]);
    }
    let mut bits = password.len();
    while bits > 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut digest = ctx.finalize();
    // The thousand rounds exist only to slow guessing down.
    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round & 1 == 1 {
            ctx.update(password);
        } else {
            ctx.update(digest);
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round & 1 == 1 {
            ctx.update(digest);
        } else {
            ctx.update(password);
        }
        digest = ctx.finalize();
    }
    let d = |i: usize| u32::from(digest[i]);
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(&String::from_utf8_lossy(magic));
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        encode(&mut out, (d(a) << 16) | (d(b) << 8) | d(c), 4);
    }
    encode(&mut out, d(11), 2);
    out
}

fn encode(out: &mut String, mut v: u32, chars: usize) {
    for _ in 0..chars {
        out.push(char::from(ITOA64[(v & 0x3f) as usize]));
        v >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_openssl() {
        // `openssl passwd -1 / -apr1 -salt s4ltS4lt 'open sesame'`
        assert_eq!(
            md5_crypt(b"open sesame", b"s4ltS4lt", b"$1$"),
            "$1$s4ltS4lt$kaFJMPJPftzVSWTjxFpGU."
        );
        assert_eq!(
            md5_crypt(b"open sesame", b"s4ltS4lt", b"$apr1$"),
            "$apr1$s4ltS4lt$eRIykmJwtClUoMY5jbNp.0"
        );
    }
}
