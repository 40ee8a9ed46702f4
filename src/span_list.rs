//! Where the fields of one HTTP head sit, for the parsers that leave the bytes in place
//! (`server::h1` for requests, `upstream_h1_wire` for answers). Most heads have a few
//! fields: those are listed without the heap, and the list is reused head after head.

/// Up to `N` places on the stack, more on the heap.
pub(crate) struct SpanList<S, const N: usize> {
    small: [S; N],
    large: Vec<S>,
    count: usize,
}

impl<S: Copy + Default, const N: usize> Default for SpanList<S, N> {
    fn default() -> Self {
        SpanList {
            small: [S::default(); N],
            large: Vec::new(),
            count: 0,
        }
    }
}

impl<S: Copy + Default, const N: usize> SpanList<S, N> {
    /// Room for `count` places, to be filled in.
    pub(crate) fn reset(&mut self, count: usize) -> &mut [S] {
        self.count = count;
        match count <= N {
            true => &mut self.small[..count],
            false => {
                self.large.clear();
                self.large.resize(count, S::default());
                &mut self.large
            }
        }
    }

    pub(crate) fn as_slice(&self) -> &[S] {
        match self.count <= N {
            true => &self.small[..self.count],
            false => &self.large,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_lists_hold_what_was_put_in() {
        let mut list: SpanList<u32, 2> = SpanList::default();
        list.reset(2).copy_from_slice(&[1, 2]);
        assert_eq!(list.as_slice(), [1, 2]);
        list.reset(3).copy_from_slice(&[3, 4, 5]);
        assert_eq!(list.as_slice(), [3, 4, 5]);
        assert_eq!(list.len(), 3);
        list.reset(1)[0] = 6;
        assert_eq!(list.as_slice(), [6]);
    }
}
