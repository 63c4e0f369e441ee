//! Every redb table of the store, in one place.
//!
//! ```text
//! kv_latest    key                  -> record      live keys only: the newest version
//! kv_history   (key, revision)      -> record      every version not yet compacted away,
//!                                                  tombstones (version 0) for deletes
//! revisions    revision             -> key list    the keys each revision changed, in order
//! meta         name                 -> i64         current / compacted revision, ...
//! leases       lease id             -> granted TTL
//! lease_keys   (lease id, key)      -> ()          keys attached to each lease
//! alarms       (member id, alarm)   -> ()
//! ```
//!
//! Example: `put a=1` (rev 2), `put a=2` (rev 3), `del a` (rev 4) leave
//! `kv_history` = {(a,2): v1 "1", (a,3): v2 "2", (a,4): tombstone}, `kv_latest` = {} and
//! `revisions` = {2: [a], 3: [a], 4: [a]}. Reading `a` at revision 3 is the newest history
//! entry of `a` at or below 3.

use redb::TableDefinition;

pub(crate) const KV_LATEST: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("kv_latest");
pub(crate) const KV_HISTORY: TableDefinition<'_, (&[u8], u64), &[u8]> =
    TableDefinition::new("kv_history");
pub(crate) const REVISIONS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("revisions");
pub(crate) const META: TableDefinition<'_, &str, i64> = TableDefinition::new("meta");
pub(crate) const LEASES: TableDefinition<'_, i64, i64> = TableDefinition::new("leases");
pub(crate) const LEASE_KEYS: TableDefinition<'_, (i64, &[u8]), ()> =
    TableDefinition::new("lease_keys");
pub(crate) const ALARMS: TableDefinition<'_, (u64, u8), ()> = TableDefinition::new("alarms");

/// `meta` row: the newest revision.
pub(crate) const META_REVISION: &str = "revision";
/// `meta` row: the compacted revision (0 = never compacted).
pub(crate) const META_COMPACTED: &str = "compacted";
/// `meta` row: how many commands have been applied.
pub(crate) const META_APPLIED: &str = "applied";
