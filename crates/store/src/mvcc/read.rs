//! Point-in-time reads over the `kv_latest` and `kv_history` tables. Generic over redb's
//! `ReadableTable`, so the same code serves read transactions and reads inside the apply
//! path's write transaction (which see the writes made earlier in the same batch).

use std::ops::Bound;

use redb::ReadableTable;

use crate::backend::codec::Record;
use crate::error::{Error, Result, StorageContext};
use crate::mvcc::keys::KeyRange;
use crate::types::{KeyValue, RangeRequest, RangeResponse, SortOrder, SortTarget};

/// Keys of `kv_latest`.
pub(crate) trait LatestTable: ReadableTable<&'static [u8], &'static [u8]> {}
impl<T: ReadableTable<&'static [u8], &'static [u8]>> LatestTable for T {}

/// Keys of `kv_history`.
pub(crate) trait HistoryTable: ReadableTable<(&'static [u8], u64), &'static [u8]> {}
impl<T: ReadableTable<(&'static [u8], u64), &'static [u8]>> HistoryTable for T {}

/// The newest live version of `key`.
pub(crate) fn get_latest(latest: &impl LatestTable, key: &[u8]) -> Result<Option<Record>> {
    match latest.get(key).ctx("reading a key")? {
        Some(raw) => Ok(Some(Record::decode(raw.value(), "kv_latest")?)),
        None => Ok(None),
    }
}

/// The newest version of `key` strictly below `revision` (None if absent or deleted).
pub(crate) fn get_before(
    history: &impl HistoryTable,
    key: &[u8],
    revision: i64,
) -> Result<Option<Record>> {
    let mut iter = history
        .range((key, 0u64)..(key, revision as u64))
        .ctx("reading key history")?;
    match iter.next_back() {
        Some(entry) => {
            let (_, raw) = entry.ctx("reading key history")?;
            let rec = Record::decode(raw.value(), "kv_history")?;
            Ok((!rec.is_tombstone()).then_some(rec))
        }
        None => Ok(None),
    }
}

/// Calls `f(key, encoded record)` for every live key of `range`, in key order, as of
/// `revision` (`None` = the newest state). `f` returns false to stop early.
pub(crate) fn visit(
    latest: &impl LatestTable,
    history: &impl HistoryTable,
    range: &KeyRange,
    revision: Option<i64>,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    let Some(revision) = revision else {
        if range.is_single() {
            if let Some(raw) = latest.get(range.start()).ctx("reading a key")? {
                f(range.start(), raw.value())?;
            }
            return Ok(());
        }
        let bounds = (Bound::Included(range.start()), range.upper());
        for entry in latest.range::<&[u8]>(bounds).ctx("scanning keys")? {
            let (key, raw) = entry.ctx("scanning keys")?;
            if !f(key.value(), raw.value())? {
                break;
            }
        }
        return Ok(());
    };

    let rev = revision as u64;
    if range.is_single() {
        let key = range.start();
        let mut iter = history
            .range((key, 0u64)..=(key, rev))
            .ctx("reading key history")?;
        if let Some(entry) = iter.next_back() {
            let (_, raw) = entry.ctx("reading key history")?;
            if Record::decode_meta(raw.value(), "kv_history")?.version != 0 {
                f(key, raw.value())?;
            }
        }
        return Ok(());
    }

    let upper = match range.upper() {
        Bound::Excluded(end) => Bound::Excluded((end, 0u64)),
        _ => Bound::Unbounded,
    };
    let bounds = (Bound::Included((range.start(), 0u64)), upper);
    // Versions of one key are adjacent and ascend by revision: the candidate for a key is
    // its last version at or below `rev`, known once the next key starts.
    let mut current: Option<(Vec<u8>, Option<Vec<u8>>)> = None;
    let mut emit = |cand: Option<(Vec<u8>, Option<Vec<u8>>)>| -> Result<bool> {
        match cand {
            Some((key, Some(raw))) if Record::decode_meta(&raw, "kv_history")?.version != 0 => {
                f(&key, &raw)
            }
            _ => Ok(true),
        }
    };
    for entry in history
        .range::<(&[u8], u64)>(bounds)
        .ctx("scanning key history")?
    {
        let (k, raw) = entry.ctx("scanning key history")?;
        let (key, r) = k.value();
        let same = matches!(&current, Some((cur, _)) if cur.as_slice() == key);
        if !same {
            if !emit(current.take())? {
                return Ok(());
            }
            current = Some((key.to_vec(), None));
        }
        if r <= rev
            && let Some((_, best)) = current.as_mut()
        {
            *best = Some(raw.value().to_vec());
        }
    }
    emit(current.take())?;
    Ok(())
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

/// etcd's Range: count is every key in the range at the revision; filters, sorting and the
/// limit apply afterwards, exactly as etcd's applier does.
pub(crate) fn range(
    latest: &impl LatestTable,
    history: &impl HistoryTable,
    req: &RangeRequest,
    current: i64,
    compacted: i64,
) -> Result<RangeResponse> {
    if req.key.is_empty() {
        return Err(Error::KeyNotProvided);
    }
    let rev = read_revision(req.revision, current, compacted)?;
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // Fetch one more than the limit to learn `more`, unless sorting or filtering needs all.
    let fetch = if req.sort_order != SortOrder::None || filtered || req.limit <= 0 {
        usize::MAX
    } else {
        usize::try_from(req.limit)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    };
    let at = (rev != current).then_some(rev);
    let range = KeyRange::new(&req.key, &req.range_end);
    let mut count = 0i64;
    let mut kvs = Vec::new();
    // Sorting by value needs the values even for `keys_only`; they are dropped after the sort.
    let strip_after_sort = req.keys_only && req.sort_target == SortTarget::Value;
    visit(latest, history, &range, at, |key, raw| {
        count += 1;
        if !req.count_only && kvs.len() < fetch {
            let rec = if req.keys_only && !strip_after_sort {
                Record::decode_meta(raw, "kv")?
            } else {
                Record::decode(raw, "kv")?
            };
            kvs.push(rec.into_kv(key.to_vec()));
        }
        Ok(true)
    })?;

    if filtered {
        kvs.retain(|kv| {
            (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
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
        revision: current,
        kvs,
        more,
        count,
    })
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
