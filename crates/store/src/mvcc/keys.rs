//! The `key` / `range_end` convention shared by Range, DeleteRange, Compare and Watch:
//!
//! | range_end      | keys selected          |
//! |----------------|------------------------|
//! | empty          | exactly `key`          |
//! | `"\0"`         | every key `>= key`     |
//! | anything else  | `key <= k < range_end` |
//!
//! `key = "\0", range_end = "\0"` therefore selects every key.

use std::ops::Bound;

/// A set of keys selected by `key` and `range_end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    start: Vec<u8>,
    end: End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Single,
    Unbounded,
    Before(Vec<u8>),
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        let end = match range_end {
            [] => End::Single,
            [0] => End::Unbounded,
            end => End::Before(end.to_vec()),
        };
        KeyRange {
            start: key.to_vec(),
            end,
        }
    }

    pub fn is_single(&self) -> bool {
        self.end == End::Single
    }

    pub fn start(&self) -> &[u8] {
        &self.start
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            End::Single => key == self.start,
            End::Unbounded => key >= self.start.as_slice(),
            End::Before(end) => key >= self.start.as_slice() && key < end.as_slice(),
        }
    }

    /// True if no key can be selected (`range_end <= key`).
    pub fn is_empty(&self) -> bool {
        matches!(&self.end, End::Before(end) if end.as_slice() <= self.start.as_slice())
    }

    /// True if the two ranges share at least one key.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        if self.is_empty() || other.is_empty() {
            return false;
        }
        // Two intervals [a, b) and [c, d) overlap iff a < d and c < b.
        let below_end = |key: &[u8], range: &KeyRange| match &range.end {
            End::Single => key <= range.start.as_slice(),
            End::Unbounded => true,
            End::Before(end) => key < end.as_slice(),
        };
        below_end(&self.start, other) && below_end(&other.start, self)
    }

    /// The upper bound as a redb key bound.
    pub(crate) fn upper(&self) -> Bound<&[u8]> {
        match &self.end {
            End::Single => Bound::Included(self.start.as_slice()),
            End::Unbounded => Bound::Unbounded,
            End::Before(end) => Bound::Excluded(end.as_slice()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KeyRange;

    #[test]
    fn range_end_conventions_select_the_documented_keys() {
        // (key, range_end, probe, selected)
        type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], bool);
        let cases: &[Case<'_>] = &[
            (b"a", b"", b"a", true),
            (b"a", b"", b"ab", false),
            (b"a", b"\0", b"zzz", true),
            (b"b", b"\0", b"a", false),
            (b"a", b"b", b"azz", true),
            (b"a", b"b", b"b", false),
            (b"\0", b"\0", b"\x01", true),
            (b"b", b"a", b"b", false),
        ];
        for (key, end, probe, want) in cases {
            assert_eq!(
                KeyRange::new(key, end).contains(probe),
                *want,
                "{key:?} {end:?} {probe:?}"
            );
        }
        assert!(KeyRange::new(b"b", b"a").is_empty());
    }

    #[test]
    fn overlap_detects_shared_keys_only() {
        let r = |k: &[u8], e: &[u8]| KeyRange::new(k, e);
        assert!(r(b"a", b"").overlaps(&r(b"a", b"")));
        assert!(!r(b"a", b"").overlaps(&r(b"b", b"")));
        assert!(r(b"a", b"c").overlaps(&r(b"b", b"")));
        assert!(!r(b"a", b"c").overlaps(&r(b"c", b"")));
        assert!(r(b"a", b"\0").overlaps(&r(b"zz", b"zzz")));
        assert!(!r(b"b", b"\0").overlaps(&r(b"a", b"")));
    }
}
