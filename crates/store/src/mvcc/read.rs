//! Point-in-time reads: the in-memory [`Index`] says which versions are live, the `kv`
//! table holds them. [`View`] is generic over redb's `ReadableTable`, so the same code
//! serves read transactions and reads inside the apply path's write transaction (which
//! see the writes made earlier in the same batch).

use redb::ReadableTable;

use crate::backend::codec::{Record, Row};
use crate::error::{Error, Result, StorageContext};
use crate::mvcc::index::{Index, Version};
use crate::mvcc::keys::KeyRange;
use crate::types::{KeyValue, RangeRequest, RangeResponse, SortOrder, SortTarget};

/// The `kv` table, in a read or a write transaction.
pub(crate) trait KvTable: ReadableTable<(u64, u32), &'static [u8]> {}
impl<T: ReadableTable<(u64, u32), &'static [u8]>> KvTable for T {}

/// A consistent view: the index, the table, and the revisions the view is at.
pub(crate) struct View<'a, T> {
    pub(crate) index: &'a Index,
    pub(crate) kv: &'a T,
    /// Reads without a revision are served at this one.
    pub(crate) current: i64,
    pub(crate) compacted: i64,
}

/// Fetches one stored version and hands its parsed row to `f`.
pub(crate) fn with_row<T>(
    kv: &impl KvTable,
    version: Version,
    f: impl FnOnce(Row<'_>) -> Result<T>,
) -> Result<T> {
    let raw = kv
        .get(version.slot())
        .ctx("reading kv")?
        .ok_or(Error::Corrupt { table: "kv" })?;
    f(Row::parse(raw.value())?)
}

/// Resolves the revision a read is served at, or the etcd error for it.
pub(crate) fn read_revision(requested: i64, current: i64, compacted: i64) -> Result<i64> {
    if requested <= 0 {
        return Ok(current);
    }
    if requested > current {
        return Err(Error::FutureRevision { requested, current });
    }
    if requested < compacted {
        return Err(Error::Compacted {
            requested,
            compacted,
        });
    }
    Ok(requested)
}

impl<T: KvTable> View<'_, T> {
    /// The record of `key` live at `rev`.
    pub(crate) fn get(&self, key: &[u8], rev: i64) -> Result<Option<Record>> {
        match self.index.get(key, rev) {
            Some(v) => with_row(self.kv, v, |row| Ok(Some(row.record(false)))),
            None => Ok(None),
        }
    }

    /// Every key of `range` live at the current revision, with values.
    pub(crate) fn live(&self, range: &KeyRange) -> Result<Vec<KeyValue>> {
        let mut versions = Vec::new();
        self.index.visit(range, self.current, |key, v| {
            versions.push((key.to_vec(), v));
            true
        });
        versions
            .into_iter()
            .map(|(key, v)| with_row(self.kv, v, |row| Ok(row.record(false).into_kv(key))))
            .collect()
    }

    /// etcd's Range: count is every key in the range at the revision; filters, sorting and
    /// the limit apply afterwards, exactly as etcd's applier does.
    pub(crate) fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        if req.key.is_empty() {
            return Err(Error::KeyNotProvided);
        }
        let rev = read_revision(req.revision, self.current, self.compacted)?;
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        // Fetch one more than the limit to learn `more`, unless sorting or filtering needs
        // everything.
        let fetch = if req.sort_order != SortOrder::None || filtered || req.limit <= 0 {
            usize::MAX
        } else {
            usize::try_from(req.limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        };
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut count = 0i64;
        let mut wanted: Vec<Version> = Vec::new();
        self.index.visit(&range, rev, |_, v| {
            count += 1;
            if !req.count_only && wanted.len() < fetch {
                wanted.push(v);
            }
            true
        });
        // Sorting by value needs the values even for `keys_only`; they go after the sort.
        let strip_after_sort = req.keys_only && req.sort_target == SortTarget::Value;
        let meta_only = req.keys_only && !strip_after_sort;
        let mut kvs = wanted
            .into_iter()
            .map(|v| with_row(self.kv, v, |row| Ok(row.kv(meta_only))))
            .collect::<Result<Vec<_>>>()?;
        if filtered {
            kvs.retain(|kv| {
                (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                    && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                    && (req.max_create_revision == 0
                        || kv.create_revision <= req.max_create_revision)
                    && (req.min_create_revision == 0
                        || kv.create_revision >= req.min_create_revision)
            });
        }
        sort(&mut kvs, req.sort_order, req.sort_target);
        if strip_after_sort {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        let mut more = false;
        if req.limit > 0 && kvs.len() as i64 > req.limit {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        Ok(RangeResponse {
            revision: self.current,
            kvs,
            more,
            count,
        })
    }
}

fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    // Results come in ascending key order; a non-key target with no order means ascending.
    // Both directions sort stably, so ties stay in key order, as etcd's do.
    let descend = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None | SortOrder::Ascend, _) => false,
        (SortOrder::Descend, _) => true,
    };
    let by = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    if descend {
        kvs.sort_by(|a, b| by(b, a));
    } else {
        kvs.sort_by(by);
    }
}
