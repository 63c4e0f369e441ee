//! Compaction: forget every version that no read at or above the compaction revision `C`
//! can see (see [`crate::mvcc::index::Index::compact`] for exactly which). Versions written
//! at `C` itself stay, so a watch may still start exactly at `C` (etcd refuses only
//! revisions below it).

use crate::error::{Error, Result, StorageContext};
use crate::mvcc::apply::Applier;

impl Applier<'_, '_> {
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
        for slot in self.index.compact(revision) {
            self.kv.remove(slot).ctx("compacting kv")?;
        }
        self.state.compacted = revision;
        Ok(())
    }
}
