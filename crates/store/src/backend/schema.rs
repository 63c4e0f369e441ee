//! Every redb table of the store, in one place.
//!
//! ```text
//! kv           (revision, sub)      -> key + record    every version not yet compacted away;
//!                                                      tombstones (version 0) for deletes
//! meta         name                 -> i64             current / compacted revision, applied
//! leases       lease id             -> granted TTL
//! lease_keys   (lease id, key)      -> ()              keys attached to each lease
//! alarms       (member id, alarm)   -> ()
//! lease_checkpoints  lease id       -> seconds left when the leader last checkpointed it
//! replication  name                 -> bytes           the replication layer's own state
//!                                                      (last applied log id, membership),
//!                                                      committed with the data it describes
//! ```
//!
//! `kv` is keyed by revision, as etcd's backend is: a batch of writes appends to the end of
//! the tree and dirties a handful of pages, however scattered its keys are. The key ->
//! revisions index lives in memory ([`crate::mvcc::index`]) and is rebuilt from `kv` on open.
//!
//! Example: `put a=1` (rev 2), `put a=2` (rev 3), `del a` (rev 4) leave
//! `kv` = {(2,0): a v1 "1", (3,0): a v2 "2", (4,0): a tombstone}; the index holds
//! `a -> [2, 3, 4(tombstone)]`. Reading `a` at revision 3 is the index's newest entry at or
//! below 3, fetched from `kv`.

use redb::TableDefinition;

pub(crate) const KV: TableDefinition<'_, (u64, u32), &[u8]> = TableDefinition::new("kv");
pub(crate) const META: TableDefinition<'_, &str, i64> = TableDefinition::new("meta");
pub(crate) const LEASES: TableDefinition<'_, i64, i64> = TableDefinition::new("leases");
pub(crate) const LEASE_KEYS: TableDefinition<'_, (i64, &[u8]), ()> =
    TableDefinition::new("lease_keys");
pub(crate) const ALARMS: TableDefinition<'_, (u64, u8), ()> = TableDefinition::new("alarms");
pub(crate) const LEASE_CHECKPOINTS: TableDefinition<'_, i64, i64> =
    TableDefinition::new("lease_checkpoints");
pub(crate) const REPLICATION: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("replication");

/// `meta` row: the newest revision.
pub(crate) const META_REVISION: &str = "revision";
/// `meta` row: the compacted revision (0 = never compacted).
pub(crate) const META_COMPACTED: &str = "compacted";
/// `meta` row: how many commands have been applied.
pub(crate) const META_APPLIED: &str = "applied";
