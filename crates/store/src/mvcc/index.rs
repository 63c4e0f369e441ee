//! The in-memory key index: for every key, the revisions at which it changed, oldest first
//! (etcd's `treeIndex`). Values live on disk in the `kv` table, keyed by those revisions.
//!
//! Example: `put a` (rev 2), `put a` (rev 3), `del a` (rev 4), `put a` (rev 6) give
//! `a -> [2, 3, 4†, 6]` (`†` = tombstone). At revision 5 `a` is absent (newest entry <= 5 is
//! a tombstone); at 3 it is the version written at 3. Compacting at 5 keeps nothing of the
//! first life except what reads at >= 5 can see: `a -> [6]` (the tombstone below 5 and
//! everything under it are gone).
//!
//! The versions live in a hash map, the keys also in an ordered set: a point lookup (every
//! put, delete and single-key read) is a hash probe instead of a descent through ordered
//! keys, each comparison of which follows a pointer to the key's bytes; ranges walk the
//! ordered set and probe the map per key. Both hold the same shared key bytes.
//!
//! Like etcd's `keyIndex`, a key also carries what a put needs of its current life (create
//! revision, version, lease), so a put does not read the previous record from disk.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

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

/// The newest version's create revision, version and lease (what a put builds on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Life {
    pub(crate) create_revision: i64,
    pub(crate) version: i64,
    pub(crate) lease: i64,
}

#[derive(Debug)]
struct Entry {
    versions: Vec<Version>,
    /// Of the newest version; meaningless when that is a tombstone.
    life: Life,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Every key's versions.
    keys: HashMap<Arc<[u8]>, Entry, foldhash::fast::RandomState>,
    /// The keys of `keys`, in order.
    order: BTreeSet<Arc<[u8]>>,
}

/// The newest version at or below `rev` (`None` if absent or deleted at `rev`).
fn live_at(versions: &[Version], rev: i64) -> Option<Version> {
    let n = versions.partition_point(|v| v.rev <= rev);
    let v = *versions.get(n.checked_sub(1)?)?;
    (!v.tombstone).then_some(v)
}

impl Index {
    /// Records a change and, for a put, the new version's `life` (ignored for a tombstone);
    /// versions of a key arrive in increasing (rev, sub) order.
    pub(crate) fn push(&mut self, key: &[u8], version: Version, life: Life) {
        match self.keys.get_mut(key) {
            Some(entry) => {
                debug_assert!(entry.versions.last().is_none_or(|last| *last < version));
                entry.versions.push(version);
                entry.life = life;
            }
            None => {
                let key: Arc<[u8]> = Arc::from(key);
                self.order.insert(key.clone());
                let versions = vec![version];
                self.keys.insert(key, Entry { versions, life });
            }
        }
    }

    /// The live version of `key` at `rev`.
    pub(crate) fn get(&self, key: &[u8], rev: i64) -> Option<Version> {
        live_at(&self.keys.get(key)?.versions, rev)
    }

    /// The life of `key`'s newest version, if that is not a tombstone.
    pub(crate) fn newest(&self, key: &[u8]) -> Option<Life> {
        let entry = self.keys.get(key)?;
        (!entry.versions.last()?.tombstone).then_some(entry.life)
    }

    /// The live version of `key` just before `slot` (for `prev_kv`).
    pub(crate) fn before(&self, key: &[u8], slot: (i64, u32)) -> Option<Version> {
        let versions = &self.keys.get(key)?.versions;
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
        for key in self.order.range::<[u8], _>(bounds) {
            let entry = self.keys.get(key);
            debug_assert!(entry.is_some(), "{key:?} is ordered but has no versions");
            let Some(entry) = entry else { continue };
            if let Some(v) = live_at(&entry.versions, rev)
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
            .filter(|e| live_at(&e.versions, rev).is_some())
            .count()
    }

    /// Drops every version that no read at or above `rev` can see and returns where they
    /// were stored. Per key, the newest version at or below `rev` stays, unless it is a
    /// tombstone below `rev`; a tombstone exactly at `rev` stays so that a watch starting at
    /// `rev` still sees the delete.
    pub(crate) fn compact(&mut self, rev: i64) -> Vec<(u64, u32)> {
        let mut doomed = Vec::new();
        let mut gone = Vec::new();
        self.keys.retain(|key, entry| {
            let versions = &mut entry.versions;
            let n = versions.partition_point(|v| v.rev <= rev);
            if n == 0 {
                return true;
            }
            let newest = versions[n - 1];
            let keep_newest = !newest.tombstone || newest.rev == rev;
            let cut = if keep_newest { n - 1 } else { n };
            doomed.extend(versions.drain(..cut).map(|v| v.slot()));
            if versions.is_empty() {
                gone.push(key.clone());
            }
            !versions.is_empty()
        });
        for key in gone {
            self.order.remove(&key);
        }
        doomed.sort_unstable();
        doomed
    }

    /// Forgets everything (before a rebuild).
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.order.clear();
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
            idx.push(b"a", ver, Life::default());
        }
        idx.push(b"b", v(5, false), Life::default());
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

    #[test]
    fn a_key_compacted_away_leaves_both_maps_and_comes_back_once() {
        let mut idx = example();
        idx.push(b"c", v(7, false), Life::default());
        idx.push(b"c", v(8, true), Life::default());
        assert_eq!(idx.compact(9), vec![(2, 0), (3, 0), (4, 0), (7, 0), (8, 0)]);
        assert_eq!((idx.keys.len(), idx.order.len()), (2, 2));
        idx.push(b"c", v(10, false), Life::default());
        assert_eq!((idx.keys.len(), idx.order.len()), (3, 3));
        let mut seen = Vec::new();
        idx.visit(&KeyRange::new(b"a", b"\0"), 10, |k, ver| {
            seen.push((k.to_vec(), ver.rev));
            true
        });
        let want = vec![(b"a".to_vec(), 6), (b"b".to_vec(), 5), (b"c".to_vec(), 10)];
        assert_eq!(seen, want);
    }
}
