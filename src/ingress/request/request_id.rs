//! Request ids (`X-Request-ID`, `$req_id` in ingress-nginx): 32 lower-case hex digits of
//! 128 random bits, or the id a trusted client carried.
use std::cell::RefCell;

use bytes::BytesMut;
use http::HeaderValue;

/// A request's id as the access record keeps it.
#[derive(Debug, Clone)]
pub enum RequestId {
    /// One we made, held by value. The plain lanes write it into the upstream head and
    /// the record, and need no field value: making one cost a shared buffer's reference
    /// counts and a check of every byte (a few hundred instructions per request).
    Made([u8; 32]),
    /// A field value: one the usual path put in the request's map, or the client's.
    Value(HeaderValue),
}

impl RequestId {
    /// A fresh id.
    pub fn fresh() -> RequestId {
        RequestId::Made(fresh_hex())
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RequestId::Made(hex) => hex,
            RequestId::Value(v) => v.as_bytes(),
        }
    }

    /// The id as a field value (an answer we write ourselves, such as an error page).
    pub fn to_value(&self) -> HeaderValue {
        match self {
            RequestId::Made(hex) => {
                HeaderValue::from_bytes(hex).unwrap_or_else(|_| HeaderValue::from_static("0"))
            }
            RequestId::Value(v) => v.clone(),
        }
    }
}

/// 128 random bits as 32 lower-case hex digits.
fn fresh_hex() -> [u8; 32] {
    hex(fastrand::u128(..))
}

/// `n` as 32 lower-case hex digits. Eight digits at a time in a 64-bit word: a digit a
/// time cost about 170 instructions per id (the formatting machinery, more than that).
fn hex(n: u128) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (digits, word) in out.chunks_exact_mut(8).zip(n.to_be_bytes().chunks_exact(4)) {
        let word = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        digits.copy_from_slice(&hex8(word).to_be_bytes());
    }
    out
}

/// The eight hex digits of `x`, most significant first in the word's high byte.
fn hex8(x: u32) -> u64 {
    const LOW_BITS: u64 = 0x0101_0101_0101_0101;
    // Spread the nibbles so that each byte of the word holds one: halves, then bytes,
    // then nibbles move apart, each step keeping their order.
    let x = u64::from(x);
    let x = ((x & 0xffff_0000) << 16) | (x & 0xffff);
    let x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
    let x = ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f);
    // Every byte is now below 16: adding 6 carries into its high nibble just when it is
    // a letter digit, which moves it from after '9' to 'a' (39 apart in ASCII).
    let letters = ((x + 6 * LOW_BITS) >> 4) & LOW_BITS;
    x + u64::from(b'0') * LOW_BITS + letters * 39
}

/// A fresh id as a field value, for a request's map.
pub(crate) fn fresh_value() -> HeaderValue {
    let hex = fresh_hex();
    // Ids are cut from a per-thread block, one allocation per block rather than one per
    // request; an id kept alive (an access log entry) keeps only its block.
    let id = ID_BLOCK.with_borrow_mut(|block| {
        if block.capacity() < hex.len() {
            *block = BytesMut::with_capacity(ID_BLOCK_BYTES);
        }
        block.extend_from_slice(&hex);
        block.split().freeze()
    });
    HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Size of the blocks request ids are cut from (128 ids).
const ID_BLOCK_BYTES: usize = 4096;

thread_local! {
    static ID_BLOCK: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_id(bytes: &[u8]) -> bool {
        bytes.len() == 32
            && bytes
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    }

    #[test]
    fn ids_are_fresh_lower_case_hex_made_or_as_values() {
        // Values across several blocks, and made ids beside them: all distinct.
        let values: Vec<HeaderValue> = (0..3 * ID_BLOCK_BYTES / 32 + 5)
            .map(|_| fresh_value())
            .collect();
        let made: Vec<RequestId> = (0..500).map(|_| RequestId::fresh()).collect();
        let mut seen = std::collections::HashSet::new();
        for id in values
            .iter()
            .map(|v| v.as_bytes())
            .chain(made.iter().map(|m| m.as_bytes()))
        {
            assert!(is_id(id), "{:?}", String::from_utf8_lossy(id));
            assert!(seen.insert(id.to_vec()), "repeated id");
        }
    }

    #[test]
    fn digits_are_the_number_written_in_hex() {
        let mut n: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for _ in 0..1000 {
            assert_eq!(hex(n), format!("{n:032x}").as_bytes(), "{n:x}");
            n = n.rotate_left(7).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        assert_eq!(&hex(0), b"00000000000000000000000000000000");
        assert_eq!(&hex(u128::MAX), b"ffffffffffffffffffffffffffffffff");
    }

    #[test]
    fn a_made_id_becomes_the_same_field_value() {
        let id = RequestId::fresh();
        assert_eq!(id.to_value().as_bytes(), id.as_bytes());
        let carried = RequestId::Value(HeaderValue::from_static("client-7"));
        assert_eq!(carried.as_bytes(), b"client-7");
        assert_eq!(carried.to_value(), "client-7");
    }
}
