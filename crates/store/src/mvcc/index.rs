//! The in-memory key index: for every key, the revisions at which it changed, oldest first
//! (etcd's `treeIndex`). Values live on disk in the `kv` table, keyed by those revisions.
//!
//! Example: `put a` (rev 2), `put a` (rev 3), `del a` (rev 4), `put a` (rev 6) give
//! `a -> [2, 3, 4†, 6]` (`†` = tombstone). At revision 5 `a` is absent (newest entry <= 5 is
//! a tombstone); at 3 it is the version written at 3. Compacting at 5 keeps nothing of the
//! first life except what reads at >= 5 can see: `a -> [6]` (the tombstone below 5 and
//! everything under it are gone).

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::mvcc::keys::KeyRange;

/// Where one version of a key is stored: `kv[(rev, sub)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version {
    pub(crate) rev: i64,
    pub(crate) sub: u32,
    pub(crate) tombstone: bool,
}

impl Version {
    pub(crate) fn slot(&self) -> (u64, u32) {
        (self.rev as u64, self.sub)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    keys: BTreeMap<Vec<u8>, Vec<Version>>,
}

/// The newest version at or below `rev` (`None` if absent or deleted at `rev`).
fn live_at(versions: &[Version], rev: i64) -> Option<Version> {
    let n = versions.partition_point(|v| v.rev <= rev);
    let v = *versions.get(n.checked_sub(1)?)?;
    (!v.tombstone).then_some(v)
}

impl Index {
    /// Records a change; versions of a key arrive in increasing (rev, sub) order.
    pub(crate) fn push(&mut self, key: &[u8], version: Version) {
        match self.keys.get_mut(key) {
            Some(versions) => {
                debug_assert!(versions.last().is_none_or(|last| *last < version));
                versions.push(version);
            }
            None => {
                self.keys.insert(key.to_vec(), vec![version]);
            }
        }
    }

    /// The live version of `key` at `rev`.
    pub(crate) fn get(&self, key: &[u8], rev: i64) -> Option<Version> {
        live_at(self.keys.get(key)?, rev)
    }

    /// The live version of `key` just before `slot` (for `prev_kv`).
    pub(crate) fn before(&self, key: &[u8], slot: (i64, u32)) -> Option<Version> {
        let versions = self.keys.get(key)?;
        let n = versions.partition_point(|v| (v.rev, v.sub) < slot);
        let v = *versions.get(n.checked_sub(1)?)?;
        (!v.tombstone).then_some(v)
    }

    /// Calls `f(key, version)` for every key of `range` live at `rev`, in key order, until
    /// `f` returns false.
    pub(crate) fn visit(
        &self,
        range: &KeyRange,
        rev: i64,
        mut f: impl FnMut(&[u8], Version) -> bool,
    ) {
        if range.is_empty() {
            return;
        }
        if range.is_single() {
            if let Some(v) = self.get(range.start(), rev) {
                f(range.start(), v);
            }
            return;
        }
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(range.start()), range.upper());
        for (key, versions) in self.keys.range::<[u8], _>(bounds) {
            if let Some(v) = live_at(versions, rev)
                && !f(key, v)
            {
                return;
            }
        }
    }

    /// Number of keys live at `rev` (for status and metrics).
    pub(crate) fn live_keys(&self, rev: i64) -> usize {
        self.keys
            .values()
            .filter(|v| live_at(v, rev).is_some())
            .count()
    }

    /// Drops every version that no read at or above `rev` can see and returns where they
    /// were stored. Per key, the newest version at or below `rev` stays, unless it is a
    /// tombstone below `rev`; a tombstone exactly at `rev` stays so that a watch starting at
    /// `rev` still sees the delete.
    pub(crate) fn compact(&mut self, rev: i64) -> Vec<(u64, u32)> {
        let mut doomed = Vec::new();
        self.keys.retain(|_, versions| {
            let n = versions.partition_point(|v| v.rev <= rev);
            if n == 0 {
                return true;
            }
            let newest = versions[n - 1];
            let keep_newest = !newest.tombstone || newest.rev == rev;
            let cut = if keep_newest { n - 1 } else { n };
            doomed.extend(versions.drain(..cut).map(|v| v.slot()));
            !versions.is_empty()
        });
        doomed.sort_unstable();
        doomed
    }

    /// Forgets everything (before a rebuild).
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(rev: i64, tombstone: bool) -> Version {
        Version {
            rev,
            sub: 0,
            tombstone,
        }
    }

    fn example() -> Index {
        let mut idx = Index::default();
        for ver in [v(2, false), v(3, false), v(4, true), v(6, false)] {
            idx.push(b"a", ver);
        }
        idx.push(b"b", v(5, false));
        idx
    }

    #[test]
    fn reads_see_the_newest_live_version_at_a_revision() {
        let idx = example();
        assert_eq!(idx.get(b"a", 1), None);
        assert_eq!(idx.get(b"a", 3), Some(v(3, false)));
        assert_eq!(idx.get(b"a", 5), None);
        assert_eq!(idx.get(b"a", 9), Some(v(6, false)));
        assert_eq!(idx.before(b"a", (3, 0)), Some(v(2, false)));
        assert_eq!(idx.before(b"a", (6, 0)), None);
        let mut seen = Vec::new();
        idx.visit(&KeyRange::new(b"a", b"\0"), 5, |k, ver| {
            seen.push((k.to_vec(), ver.rev));
            true
        });
        assert_eq!(seen, vec![(b"b".to_vec(), 5)]);
        assert_eq!(idx.live_keys(9), 2);
    }

    #[test]
    fn compaction_keeps_exactly_what_reads_at_or_above_it_can_see() {
        let mut idx = example();
        assert_eq!(idx.compact(4), vec![(2, 0), (3, 0)]);
        assert_eq!(idx.get(b"a", 4), None);
        assert_eq!(idx.get(b"a", 6), Some(v(6, false)));
        // The tombstone at 4 stays for a watch from 4; the next compaction removes it.
        assert_eq!(idx.compact(5), vec![(4, 0)]);
        assert_eq!(idx.get(b"b", 5), Some(v(5, false)));
        assert_eq!(idx.compact(6), Vec::<(u64, u32)>::new());
    }
}
