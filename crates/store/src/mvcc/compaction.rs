//! Compaction: forget every version that no read at or above the compaction revision `C`
//! can see.
//!
//! For each key changed in `[previous C, C]`, the newest version at or below `C` is kept
//! (unless it is a tombstone below `C`) and every older one is deleted. The `revisions` row
//! of `C` itself and the versions written at `C` stay, so a watch may still start exactly at
//! `C` (etcd refuses only revisions below it). Later revisions are untouched.

use redb::ReadableTable;

use crate::backend::codec::{Record, decode_keys};
use crate::error::{Error, Result, StorageContext};
use crate::mvcc::apply::Applier;

impl Applier<'_> {
    pub(crate) fn compact(&mut self, revision: i64) -> Result<()> {
        let current = self.state.revision;
        let compacted = self.state.compacted;
        if revision <= compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted,
            });
        }
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }

        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut doomed_revisions = Vec::new();
        for entry in self
            .revisions
            .range(compacted.max(0) as u64..=revision as u64)
            .ctx("reading revisions")?
        {
            let (rev, raw) = entry.ctx("reading revisions")?;
            keys.extend(decode_keys(raw.value())?);
            if rev.value() < revision as u64 {
                doomed_revisions.push(rev.value());
            }
        }
        keys.sort_unstable();
        keys.dedup();

        for key in &keys {
            let mut versions = Vec::new();
            for entry in self
                .history
                .range((key.as_slice(), 0u64)..=(key.as_slice(), revision as u64))
                .ctx("reading kv_history")?
            {
                let (k, raw) = entry.ctx("reading kv_history")?;
                let tombstone = Record::decode_meta(raw.value(), "kv_history")?.is_tombstone();
                versions.push((k.value().1, tombstone));
            }
            let Some(&(newest, tombstone)) = versions.last() else {
                continue;
            };
            let keep_newest = !tombstone || newest == revision as u64;
            let drop = if keep_newest {
                versions.len() - 1
            } else {
                versions.len()
            };
            for &(rev, _) in &versions[..drop] {
                self.history
                    .remove((key.as_slice(), rev))
                    .ctx("compacting kv_history")?;
            }
        }
        for rev in doomed_revisions {
            self.revisions.remove(rev).ctx("compacting revisions")?;
        }
        self.state.compacted = revision;
        Ok(())
    }
}
