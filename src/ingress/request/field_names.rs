//! Names of pods' response fields, parsed once per worker thread instead of per answer.
//!
//! A pod answers every request with the same fields in the same order, so the name of
//! a response's i-th field is, nearly always, the name the previous response's i-th
//! field had. Comparing against that is a short byte comparison; `HeaderName::from_bytes`
//! is a lookup among the standard names and, for any other name (`x-upstream`), an
//! allocation. Both showed in the HTTP/2 lane's profile, once per field of every answer.
//! The comparison is with the name as the pod spelled it last time: a case-blind one
//! walks the name a byte at a time, an exact one is a `memcmp`.
use std::cell::RefCell;

use http::HeaderName;

/// Fields remembered per thread, by position. Later fields are parsed every time.
const SLOTS: usize = 24;

thread_local! {
    static LAST: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// A position's last name, and its spelling on the wire.
#[derive(Clone)]
struct Slot {
    name: HeaderName,
    spelled: Box<[u8]>,
}

/// Runs `f` with a way to turn the raw name of a response's i-th field into a
/// `HeaderName` (`None`: not a valid name).
pub(crate) fn with<R>(f: impl FnOnce(&mut Names<'_>) -> R) -> R {
    LAST.with_borrow_mut(|last| {
        if last.len() < SLOTS {
            last.resize(SLOTS, None);
        }
        f(&mut Names { last })
    })
}

/// The thread's remembered names, borrowed for one response.
pub(crate) struct Names<'a> {
    last: &'a mut Vec<Option<Slot>>,
}

impl Names<'_> {
    /// The name of field number `i`, spelled `raw` (any case) on the wire.
    pub(crate) fn get(&mut self, i: usize, raw: &[u8]) -> Option<HeaderName> {
        let Some(slot) = self.last.get_mut(i) else {
            return HeaderName::from_bytes(raw).ok();
        };
        if let Some(last) = slot {
            if *last.spelled == *raw {
                return Some(last.name.clone());
            }
            // A valid name is a token whose letters `HeaderName` lowercases, so an ASCII
            // case-blind match with a parsed name is that name, spelled anew.
            if last.name.as_str().as_bytes().eq_ignore_ascii_case(raw) {
                last.spelled = raw.into();
                return Some(last.name.clone());
            }
        }
        let name = HeaderName::from_bytes(raw).ok()?;
        *slot = Some(Slot {
            name: name.clone(),
            spelled: raw.into(),
        });
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &[&[u8]]) -> Vec<Option<String>> {
        with(|n| {
            raw.iter()
                .enumerate()
                .map(|(i, r)| n.get(i, r).map(|h| h.as_str().to_owned()))
                .collect()
        })
    }

    #[test]
    fn names_come_out_as_parsing_would_make_them_whatever_came_before() {
        let first: [&[u8]; 3] = [b"Content-Type", b"X-Upstream", b"content-length"];
        let want = vec![
            Some("content-type".to_owned()),
            Some("x-upstream".to_owned()),
            Some("content-length".to_owned()),
        ];
        assert_eq!(names(&first), want);
        // The same fields again, in another case: answered from the slots.
        let again: [&[u8]; 3] = [b"content-type", b"x-UPSTREAM", b"Content-Length"];
        assert_eq!(names(&again), want);
        // And once more as spelled last time: the exact match.
        assert_eq!(names(&again), want);
        // Other fields in the same places, one of them invalid: parsed, not confused.
        let other: [&[u8]; 3] = [b"content-typ", b"x-upstream ", b"etag"];
        assert_eq!(
            names(&other),
            vec![
                Some("content-typ".to_owned()),
                None,
                Some("etag".to_owned())
            ]
        );
        // The invalid one left its slot as it was.
        assert_eq!(
            names(&[b"a", b"X-Upstream"])[1].as_deref(),
            Some("x-upstream")
        );
        // Past the remembered slots, names are still parsed.
        let many: Vec<Vec<u8>> = (0..SLOTS + 3)
            .map(|i| format!("f-{i}").into_bytes())
            .collect();
        let raw: Vec<&[u8]> = many.iter().map(|m| m.as_slice()).collect();
        let got = names(&raw);
        assert_eq!(got.len(), SLOTS + 3);
        assert_eq!(
            got[SLOTS + 2].as_deref(),
            Some(format!("f-{}", SLOTS + 2).as_str())
        );
    }
}
