//! [`Engine`]: the MVCC state on one redb file plus its in-memory key index — batched
//! application of commands, reads, history for watchers, hashes, snapshots and
//! defragmentation. It is synchronous; the [`crate::Store`] drives it from a writer thread
//! and blocking read tasks.
//!
//! # Correctness
//! Locks are always taken in the order unrevealed gate, database, index. Readers see the
//! index only up to `committed`, the newest revision whose write transaction has committed
//! (and been revealed, see [`Unrevealed`]), and read the database through a snapshot taken
//! while holding the index lock; the writer raises `committed` only after its commit
//! returns.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::codec::Row;
use crate::backend::schema::{
    ALARMS, KV, LEASE_CHECKPOINTS, LEASE_KEYS, LEASES, META, REPLICATION,
};
use crate::error::{Error, Result, StorageContext};
use crate::mvcc::apply::{Applied, Applier, State, read_alarms};
use crate::mvcc::index::{Index, Version};
use crate::mvcc::read::{View, with_row};
use crate::types::{
    AlarmType, Command, CommandResponse, Event, EventType, KeyValue, RangeRequest, RangeResponse,
    RevisionEvents, TxnRequest, TxnResponse,
};

/// Engine options.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// redb page cache size in bytes.
    pub cache_bytes: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_bytes: 16 << 20,
        }
    }
}

/// The outcome of one applied batch.
pub struct BatchResult {
    /// One result per command, in order.
    pub responses: Vec<Result<CommandResponse>>,
    /// The revision after the batch.
    pub revision: i64,
    /// The compacted revision after the batch.
    pub compacted: i64,
    /// The events of every revision the batch created, in order.
    pub events: Vec<RevisionEvents>,
    /// Leases granted or revoked by the batch.
    pub lease_changes: Vec<crate::mvcc::apply::LeaseChange>,
}

/// A batch committed to the database that readers do not see yet.
///
/// [`Unrevealed::reveal`] raises the revision readers see to the batch's. Dropped instead
/// (its log record failed to become durable), the batch stays invisible to every read
/// through the index, and the engine refuses from then on to sync, defragment or snapshot
/// the database, which would make it durable or copy it; its owner must write nothing more.
/// Until either, [`Engine::sync`], [`Engine::defragment`] and snapshots wait. A batch that
/// compacted also keeps the index locked (readers would otherwise miss versions it removed),
/// and its compaction shows once it is applied: such a batch should be revealed at once.
#[must_use = "a batch is invisible until revealed"]
pub struct Unrevealed<'a> {
    engine: &'a Engine,
    held: Option<RwLockWriteGuard<'a, Indexed>>,
    revision: i64,
    revealed: bool,
    _gate: ApplyGate<'a>,
}

/// The right to apply a batch unrevealed: one batch at a time, and never while the
/// database is synced, defragmented or copied whole (they hold it too). An
/// [`Unrevealed`] batch keeps it until it is revealed or dropped.
pub struct ApplyGate<'a> {
    _held: MutexGuard<'a, ()>,
}

impl Unrevealed<'_> {
    pub fn reveal(mut self) {
        match self.held.take() {
            Some(mut indexed) => indexed.committed = self.revision,
            None => write_lock(&self.engine.index).committed = self.revision,
        }
        self.revealed = true;
    }
}

impl Drop for Unrevealed<'_> {
    fn drop(&mut self) {
        if !self.revealed {
            self.engine.abandoned.store(true, Ordering::Release);
        }
    }
}

/// A lease as stored: its id and granted TTL, plus the attached keys on request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Vec<u8>>,
}

/// The index and the revisions readers may see through it.
#[derive(Debug, Default)]
struct Indexed {
    index: Index,
    /// Newest committed revision.
    committed: i64,
    compacted: i64,
}

pub struct Engine {
    // `Database::compact` needs `&mut`; everything else shares the read lock.
    db: RwLock<Database>,
    index: RwLock<Indexed>,
    path: PathBuf,
    /// Held by an [`Unrevealed`] batch until it is revealed: what would make the database
    /// durable or copy it whole waits for it.
    unrevealed: Mutex<()>,
    /// An unrevealed batch was dropped: the database holds a commit that no one may see,
    /// persist or copy.
    abandoned: AtomicBool,
    /// Tests: how many of the next batches fail as a storage error would, nothing applied.
    #[cfg(test)]
    pub(crate) failing_applies: std::sync::atomic::AtomicUsize,
    /// Tests: the next batch's apply panics.
    #[cfg(test)]
    pub(crate) panicking_apply: AtomicBool,
}

// A poisoned lock only means another thread panicked while holding it; the database is
// transactional and the index is rebuilt whenever an apply fails part-way.
fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// [`read_lock`] if no writer holds or waits for `lock`.
fn try_read_lock<T>(lock: &RwLock<T>) -> Option<RwLockReadGuard<'_, T>> {
    match lock.try_read() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Runs `f` on the view of `db` that `indexed` describes.
fn view_of<T>(
    db: &Database,
    indexed: &Indexed,
    f: impl FnOnce(&View<'_, KvTable>) -> Result<T>,
) -> Result<T> {
    let txn = db.begin_read().ctx("starting a read")?;
    let kv = txn.open_table(KV).ctx("opening kv")?;
    f(&View {
        index: &indexed.index,
        kv: &kv,
        current: indexed.committed,
        compacted: indexed.compacted,
    })
}

type KvTable = ReadOnlyTable<(u64, u32), &'static [u8]>;

fn is_fatal(e: &Error) -> bool {
    matches!(
        e,
        Error::Storage { .. } | Error::Corrupt { .. } | Error::Io { .. }
    )
}

impl Engine {
    /// Opens (or creates) the store file at `path` and rebuilds the key index from it.
    pub fn open(path: &Path, options: &EngineOptions) -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(path)
            .ctx("opening the database file")?;
        let txn = db.begin_write().ctx("initialising tables")?;
        {
            txn.open_table(KV).ctx("initialising tables")?;
            txn.open_table(META).ctx("initialising tables")?;
            txn.open_table(LEASES).ctx("initialising tables")?;
            txn.open_table(LEASE_KEYS).ctx("initialising tables")?;
            txn.open_table(ALARMS).ctx("initialising tables")?;
            txn.open_table(REPLICATION).ctx("initialising tables")?;
            txn.open_table(LEASE_CHECKPOINTS)
                .ctx("initialising tables")?;
        }
        txn.commit().ctx("initialising tables")?;
        let engine = Engine {
            db: RwLock::new(db),
            index: RwLock::new(Indexed::default()),
            path: path.to_path_buf(),
            unrevealed: Mutex::new(()),
            abandoned: AtomicBool::new(false),
            #[cfg(test)]
            failing_applies: std::sync::atomic::AtomicUsize::new(0),
            #[cfg(test)]
            panicking_apply: AtomicBool::new(false),
        };
        engine.with_db(|db| engine.rebuild_index(db))?;
        Ok(engine)
    }

    /// Rebuilds the index from the `kv` table (on open, after a restore, and after an apply
    /// that failed part-way).
    fn rebuild_index(&self, db: &Database) -> Result<()> {
        self.rebuild_into(db, &mut write_lock(&self.index))
    }

    fn rebuild_into(&self, db: &Database, indexed: &mut Indexed) -> Result<()> {
        indexed.index.clear();
        let txn = db.begin_read().ctx("rebuilding the index")?;
        let state = State::load(&txn.open_table(META).ctx("opening meta")?)?;
        let kv = txn.open_table(KV).ctx("opening kv")?;
        for entry in kv.iter().ctx("rebuilding the index")? {
            let (slot, raw) = entry.ctx("rebuilding the index")?;
            let (rev, sub) = slot.value();
            let row = Row::parse(raw.value())?;
            let version = Version {
                rev: rev as i64,
                sub,
                tombstone: row.is_tombstone(),
            };
            indexed.index.push(row.key, version, row.life());
        }
        indexed.committed = state.revision;
        indexed.compacted = state.compacted;
        Ok(())
    }

    fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        f(&read_lock(&self.db))
    }

    /// Runs `f` on a consistent view at the committed revision.
    fn view<T>(&self, f: impl FnOnce(&View<'_, KvTable>) -> Result<T>) -> Result<T> {
        self.with_db(|db| view_of(db, &read_lock(&self.index), f))
    }

    /// [`Engine::view`] if it can start without waiting; `None` while a writer holds the
    /// index (an apply batch) or the database (a defragmentation).
    fn try_view<T>(&self, f: impl FnOnce(&View<'_, KvTable>) -> Result<T>) -> Option<Result<T>> {
        let db = try_read_lock(&self.db)?;
        let indexed = try_read_lock(&self.index)?;
        Some(view_of(&db, &indexed, f))
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        self.with_db(|db| f(&db.begin_read().ctx("starting a read")?))
    }

    /// [`Engine::read`] of a snapshot without an unrevealed batch in it.
    fn read_settled<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let settled = self.settled()?;
        self.with_db(|db| {
            let txn = db.begin_read().ctx("starting a read")?;
            drop(settled);
            f(&txn)
        })
    }

    /// Applies `commands` in one write transaction committed with `durability`.
    ///
    /// # Correctness
    /// The data, the revision counter and the compacted revision commit atomically; an `Err`
    /// (a storage failure) means nothing of the batch was committed, and the index is
    /// rebuilt from what is on disk.
    /// Every put event carries its previous version.
    pub fn apply_batch(
        &self,
        commands: &[&Command],
        durability: Durability,
    ) -> Result<BatchResult> {
        self.apply_batch_with(commands, durability, &[], true)
    }

    /// [`Engine::apply_batch`], also writing `replication` rows (name, bytes) in the same
    /// transaction, so that the replication layer's record of what was applied can never
    /// disagree with the data. Put events carry the previous version only if
    /// `prev_kv_events` or the request asked for it (see [`Event::lacks_prev_kv`]).
    pub fn apply_batch_with(
        &self,
        commands: &[&Command],
        durability: Durability,
        replication: &[(&str, &[u8])],
        prev_kv_events: bool,
    ) -> Result<BatchResult> {
        let (batch, unrevealed) = self.apply_unrevealed(
            self.apply_gate(),
            commands,
            durability,
            replication,
            prev_kv_events,
        )?;
        unrevealed.reveal();
        Ok(batch)
    }

    /// Waits for the [`ApplyGate`].
    pub fn apply_gate(&self) -> ApplyGate<'_> {
        ApplyGate {
            _held: crate::lock(&self.unrevealed),
        }
    }

    /// The [`ApplyGate`] if it is free now; `None` while a sync, a defragmentation, a
    /// snapshot or another batch holds it.
    pub fn try_apply_gate(&self) -> Option<ApplyGate<'_>> {
        match self.unrevealed.try_lock() {
            Ok(held) => Some(ApplyGate { _held: held }),
            Err(TryLockError::Poisoned(e)) => Some(ApplyGate {
                _held: e.into_inner(),
            }),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// [`Engine::apply_batch_with`], except that readers see the batch only once the
    /// returned [`Unrevealed`] is revealed: the caller makes it durable elsewhere first.
    pub fn apply_unrevealed<'a>(
        &'a self,
        gate: ApplyGate<'a>,
        commands: &[&Command],
        durability: Durability,
        replication: &[(&str, &[u8])],
        prev_kv_events: bool,
    ) -> Result<(BatchResult, Unrevealed<'a>)> {
        let (batch, held) = self.with_db(|db| {
            let result =
                self.apply_and_commit(db, commands, durability, replication, prev_kv_events);
            if result.is_err() {
                self.rebuild_index(db)?;
            }
            result
        })?;
        let unrevealed = Unrevealed {
            engine: self,
            held,
            revision: batch.revision,
            revealed: false,
            _gate: gate,
        };
        Ok((batch, unrevealed))
    }

    /// Waits for an unrevealed batch to be revealed and fails if one was abandoned: what
    /// would persist or copy the database whole calls this first, and keeps the guard.
    fn settled(&self) -> Result<MutexGuard<'_, ()>> {
        let gate = crate::lock(&self.unrevealed);
        if self.abandoned.load(Ordering::Acquire) {
            return Err(Error::Io {
                context: "the database",
                source: std::io::Error::other(
                    "it holds a write whose log record failed to become durable; restart the member",
                ),
            });
        }
        Ok(gate)
    }

    fn apply_and_commit(
        &self,
        db: &Database,
        commands: &[&Command],
        durability: Durability,
        replication: &[(&str, &[u8])],
        prev_kv_events: bool,
    ) -> Result<(BatchResult, Option<RwLockWriteGuard<'_, Indexed>>)> {
        #[cfg(test)]
        if self
            .failing_applies
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Io {
                context: "committing a write",
                source: std::io::Error::other("injected: the apply failed"),
            });
        }
        let mut txn: WriteTransaction = db.begin_write().ctx("starting a write")?;
        txn.set_durability(durability).ctx("setting durability")?;
        #[cfg(test)]
        assert!(
            !self.panicking_apply.swap(false, Ordering::AcqRel),
            "injected: the apply panicked"
        );
        let mut indexed = write_lock(&self.index);
        let (responses, applied) = {
            let mut applier = Applier::open(&txn, &mut indexed.index, prev_kv_events)?;
            let mut responses = Vec::with_capacity(commands.len());
            for cmd in commands {
                match applier.apply(cmd) {
                    Err(e) if is_fatal(&e) => return Err(e),
                    other => responses.push(other),
                }
            }
            (responses, applier.finish()?)
        };
        // Compaction already dropped index entries: readers must see the new bound.
        indexed.compacted = applied.state.compacted;
        // A compaction above what readers can see (revisions made earlier in this batch)
        // removed versions they still read: keep them out until the commit is visible.
        let held = if applied.state.compacted > indexed.committed {
            Some(indexed)
        } else {
            drop(indexed);
            None
        };
        if !replication.is_empty() {
            let mut table = txn.open_table(REPLICATION).ctx("opening replication")?;
            for (name, bytes) in replication {
                table.insert(*name, *bytes).ctx("writing replication")?;
            }
        }
        txn.commit().ctx("committing a write")?;
        let Applied {
            state,
            events,
            lease_changes,
        } = applied;
        let batch = BatchResult {
            responses,
            revision: state.revision,
            compacted: state.compacted,
            events,
            lease_changes,
        };
        Ok((batch, held))
    }

    /// Commits an empty transaction with `Immediate` durability, which makes every earlier
    /// `Durability::None` commit durable too.
    pub fn sync(&self) -> Result<()> {
        let _settled = self.settled()?;
        self.with_db(|db| {
            let mut txn = db.begin_write().ctx("starting a sync")?;
            txn.set_durability(Durability::Immediate)
                .ctx("setting durability")?;
            txn.commit().ctx("syncing")
        })
    }

    /// A `replication` row written by [`Engine::apply_batch_with`] or
    /// [`Engine::set_replication`].
    pub fn replication(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.read(|txn| {
            let table = txn.open_table(REPLICATION).ctx("opening replication")?;
            Ok(table
                .get(name)
                .ctx("reading replication")?
                .map(|v| v.value().to_vec()))
        })
    }

    /// Writes `replication` rows on their own, durably.
    pub fn set_replication(&self, rows: &[(&str, &[u8])]) -> Result<()> {
        self.with_db(|db| {
            let mut txn = db.begin_write().ctx("starting a write")?;
            txn.set_durability(Durability::Immediate)
                .ctx("setting durability")?;
            {
                let mut table = txn.open_table(REPLICATION).ctx("opening replication")?;
                for (name, bytes) in rows {
                    table.insert(*name, *bytes).ctx("writing replication")?;
                }
            }
            txn.commit().ctx("writing replication")
        })
    }

    /// How many commands have been applied.
    pub fn applied_index(&self) -> Result<i64> {
        self.read(|txn| Ok(State::load(&txn.open_table(META).ctx("opening meta")?)?.applied))
    }

    /// The current and compacted revision.
    pub fn revisions(&self) -> Result<(i64, i64)> {
        let indexed = read_lock(&self.index);
        Ok((indexed.committed, indexed.compacted))
    }

    /// etcd's Range, served from one consistent snapshot.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        self.view(|view| view.range(req))
    }

    /// [`Engine::range`] if it can start without waiting; `None` while a writer holds the
    /// index (an apply batch) or the database (a defragmentation).
    pub fn try_range(&self, req: &RangeRequest) -> Option<Result<RangeResponse>> {
        self.try_view(|view| view.range(req))
    }

    /// A txn that cannot write (see [`TxnRequest::is_read_only`]), served from one
    /// consistent snapshot without a write transaction.
    pub fn read_only_txn(&self, req: &TxnRequest) -> Result<TxnResponse> {
        self.view(|view| view.read_only_txn(req))
    }

    /// [`Engine::read_only_txn`] if it can start without waiting; `None` while a writer
    /// holds the index or the database.
    pub fn try_read_only_txn(&self, req: &TxnRequest) -> Option<Result<TxnResponse>> {
        self.try_view(|view| view.read_only_txn(req))
    }

    /// The events of revisions `from..=to` (capped at the current revision), stopping at a
    /// revision boundary once at least `max_events` events are collected. Every event
    /// carries its `prev_kv` when the previous version is still stored.
    pub fn read_events(
        &self,
        from: i64,
        to: i64,
        max_events: usize,
    ) -> Result<Vec<RevisionEvents>> {
        self.view(|view| {
            if from < view.compacted {
                return Err(Error::Compacted {
                    requested: from,
                    compacted: view.compacted,
                });
            }
            let to = to.min(view.current);
            if from > to {
                return Ok(Vec::new());
            }
            let mut out: Vec<RevisionEvents> = Vec::new();
            let rows = view
                .kv
                .range((from.max(0) as u64, 0)..=(to as u64, u32::MAX))
                .ctx("reading kv")?;
            for (total, entry) in rows.enumerate() {
                let (slot, raw) = entry.ctx("reading kv")?;
                let (rev, sub) = slot.value();
                let rev = rev as i64;
                if out.last().is_none_or(|r| r.revision != rev) {
                    // At least one revision, and never a revision split in two.
                    if !out.is_empty() && total >= max_events {
                        break;
                    }
                    out.push(RevisionEvents {
                        revision: rev,
                        events: Vec::new(),
                    });
                }
                let row = Row::parse(raw.value())?;
                let prev_kv = match view.index.before(row.key, (rev, sub)) {
                    Some(prev) => Some(with_row(view.kv, prev, |p| Ok(p.kv(false)))?),
                    None => None,
                };
                let (kind, kv) = if row.is_tombstone() {
                    let kv = KeyValue {
                        key: row.key.to_vec(),
                        mod_revision: rev,
                        ..KeyValue::default()
                    };
                    (EventType::Delete, kv)
                } else {
                    (EventType::Put, row.kv(false))
                };
                if let Some(last) = out.last_mut() {
                    last.events.push(Event { kind, kv, prev_kv });
                }
            }
            Ok(out)
        })
    }

    /// Fills in the previous version of each event that lacks it
    /// ([`Event::lacks_prev_kv`]): the version before the event's, if still stored (a
    /// compaction may have removed it; then the event goes without, as in etcd).
    pub fn fill_prev_kvs(&self, events: &mut [Event]) -> Result<()> {
        self.view(|view| {
            for event in events.iter_mut().filter(|e| e.lacks_prev_kv()) {
                let slot = (event.kv.mod_revision, 0);
                if let Some(prev) = view.index.before(&event.kv.key, slot) {
                    event.prev_kv = Some(with_row(view.kv, prev, |p| Ok(p.kv(false)))?);
                }
            }
            Ok(())
        })
    }

    /// A lease's granted TTL and, if `with_keys`, its attached keys.
    pub fn lease(&self, id: i64, with_keys: bool) -> Result<Option<LeaseInfo>> {
        self.read(|txn| {
            let leases = txn.open_table(LEASES).ctx("opening leases")?;
            let Some(ttl) = leases.get(id).ctx("reading leases")? else {
                return Ok(None);
            };
            let mut keys = Vec::new();
            if with_keys {
                let lease_keys = txn.open_table(LEASE_KEYS).ctx("opening lease_keys")?;
                for entry in lease_keys
                    .range((id, &[][..])..)
                    .ctx("reading lease_keys")?
                {
                    let (k, _) = entry.ctx("reading lease_keys")?;
                    let (lease, key) = k.value();
                    if lease != id {
                        break;
                    }
                    keys.push(key.to_vec());
                }
            }
            Ok(Some(LeaseInfo {
                id,
                granted_ttl: ttl.value(),
                keys,
            }))
        })
    }

    /// Every lease id with its granted TTL.
    pub fn leases(&self) -> Result<Vec<(i64, i64)>> {
        self.read(|txn| {
            let leases = txn.open_table(LEASES).ctx("opening leases")?;
            let mut out = Vec::new();
            for entry in leases.iter().ctx("reading leases")? {
                let (id, ttl) = entry.ctx("reading leases")?;
                out.push((id.value(), ttl.value()));
            }
            Ok(out)
        })
    }

    /// The seconds left on each checkpointed lease, as of its last checkpoint.
    pub fn lease_checkpoints(&self) -> Result<Vec<(i64, i64)>> {
        self.read(|txn| {
            let table = txn
                .open_table(LEASE_CHECKPOINTS)
                .ctx("opening lease_checkpoints")?;
            let mut out = Vec::new();
            for entry in table.iter().ctx("reading lease_checkpoints")? {
                let (id, left) = entry.ctx("reading lease_checkpoints")?;
                out.push((id.value(), left.value()));
            }
            Ok(out)
        })
    }

    /// Active alarms.
    pub fn alarms(&self) -> Result<Vec<(u64, AlarmType)>> {
        self.read(|txn| read_alarms(&txn.open_table(ALARMS).ctx("opening alarms")?))
    }

    /// A CRC-32 of every stored version at or below `revision` (0 = current): equal on every
    /// member that applied the same commands. Returns (hash, compacted, current).
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64)> {
        self.view(|view| {
            let rev = crate::mvcc::read::read_revision(revision, view.current, view.compacted)?;
            let mut hasher = crc32fast::Hasher::new();
            for entry in view.kv.range(..=(rev as u64, u32::MAX)).ctx("hashing kv")? {
                let (slot, raw) = entry.ctx("hashing kv")?;
                let (r, sub) = slot.value();
                hasher.update(&r.to_be_bytes());
                hasher.update(&sub.to_be_bytes());
                hasher.update(raw.value());
            }
            Ok((hasher.finalize(), view.compacted, view.current))
        })
    }

    /// A CRC-32 of the whole state (every table).
    pub fn hash(&self) -> Result<u32> {
        let mut hasher = HashWriter(crc32fast::Hasher::new());
        self.write_snapshot(&mut hasher)?;
        Ok(hasher.0.finalize())
    }

    /// File size and the part of it holding live data.
    pub fn size(&self) -> Result<(u64, u64)> {
        let total = std::fs::metadata(&self.path)
            .map_err(|source| Error::Io {
                context: "reading the database file size",
                source,
            })?
            .len();
        let in_use = self.with_db(|db| {
            let txn = db.begin_write().ctx("reading stats")?;
            let stats = txn.stats().ctx("reading stats")?;
            let used = stats.allocated_pages() * stats.page_size() as u64;
            txn.abort().ctx("reading stats")?;
            Ok(used)
        })?;
        Ok((total, in_use.min(total)))
    }

    /// Rewrites the file to release free space (etcd's defragment). Waits for every open
    /// transaction to finish.
    pub fn defragment(&self) -> Result<()> {
        let _settled = self.settled()?;
        let mut db = write_lock(&self.db);
        while db.compact().ctx("defragmenting")? {}
        Ok(())
    }

    /// Writes a consistent logical copy of every table to `out` (a sequence of length-prefixed
    /// records, read back by [`Engine::restore_snapshot`]).
    pub fn write_snapshot(&self, out: &mut impl Write) -> Result<u64> {
        Ok(self.write_snapshot_reading(out, &[])?.0)
    }

    /// [`Engine::write_snapshot`], also returning the named `replication` rows as of the
    /// same consistent view (what the snapshot's data reflects).
    pub fn write_snapshot_reading(
        &self,
        out: &mut impl Write,
        replication: &[&str],
    ) -> Result<(u64, Vec<Option<Vec<u8>>>)> {
        self.read_settled(|txn| {
            let rows = {
                let table = txn.open_table(REPLICATION).ctx("opening replication")?;
                replication
                    .iter()
                    .map(|name| {
                        Ok(table
                            .get(*name)
                            .ctx("reading replication")?
                            .map(|v| v.value().to_vec()))
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            let mut w = SnapshotWriter { out, bytes: 0 };
            w.raw(SNAPSHOT_MAGIC)?;
            for e in txn
                .open_table(META)
                .ctx("snapshot")?
                .iter()
                .ctx("snapshot")?
            {
                let (k, v) = e.ctx("snapshot")?;
                w.record(&SnapshotRecord::Meta(k.value(), v.value()))?;
            }
            for e in txn.open_table(KV).ctx("snapshot")?.iter().ctx("snapshot")? {
                let (k, v) = e.ctx("snapshot")?;
                let (rev, sub) = k.value();
                w.record(&SnapshotRecord::Kv(rev, sub, v.value()))?;
            }
            for e in txn
                .open_table(LEASES)
                .ctx("snapshot")?
                .iter()
                .ctx("snapshot")?
            {
                let (k, v) = e.ctx("snapshot")?;
                w.record(&SnapshotRecord::Lease(k.value(), v.value()))?;
            }
            for e in txn
                .open_table(LEASE_KEYS)
                .ctx("snapshot")?
                .iter()
                .ctx("snapshot")?
            {
                let (k, _) = e.ctx("snapshot")?;
                let (id, key) = k.value();
                w.record(&SnapshotRecord::LeaseKey(id, key))?;
            }
            for e in txn
                .open_table(ALARMS)
                .ctx("snapshot")?
                .iter()
                .ctx("snapshot")?
            {
                let (k, _) = e.ctx("snapshot")?;
                let (member, alarm) = k.value();
                w.record(&SnapshotRecord::Alarm(member, alarm))?;
            }
            for e in txn
                .open_table(REPLICATION)
                .ctx("snapshot")?
                .iter()
                .ctx("snapshot")?
            {
                let (k, v) = e.ctx("snapshot")?;
                w.record(&SnapshotRecord::Replication(k.value(), v.value()))?;
            }
            for e in txn
                .open_table(LEASE_CHECKPOINTS)
                .ctx("snapshot")?
                .iter()
                .ctx("snapshot")?
            {
                let (k, v) = e.ctx("snapshot")?;
                w.record(&SnapshotRecord::LeaseCheckpoint(k.value(), v.value()))?;
            }
            w.record(&SnapshotRecord::End)?;
            Ok((w.bytes, rows))
        })
    }

    /// Replaces the whole state with a snapshot written by [`Engine::write_snapshot`], in one
    /// transaction: a failure leaves the previous state intact.
    pub fn restore_snapshot(&self, input: &mut impl Read) -> Result<()> {
        let mut magic = [0u8; SNAPSHOT_MAGIC.len()];
        read_exact(input, &mut magic)?;
        if magic != *SNAPSHOT_MAGIC {
            return Err(Error::InvalidSnapshot {
                reason: "bad magic",
            });
        }
        self.with_db(|db| {
            let c = "restoring a snapshot";
            let mut txn = db.begin_write().ctx(c)?;
            txn.set_durability(Durability::Immediate).ctx(c)?;
            txn.delete_table(KV).ctx(c)?;
            txn.delete_table(META).ctx(c)?;
            txn.delete_table(LEASES).ctx(c)?;
            txn.delete_table(LEASE_KEYS).ctx(c)?;
            txn.delete_table(ALARMS).ctx(c)?;
            txn.delete_table(REPLICATION).ctx(c)?;
            txn.delete_table(LEASE_CHECKPOINTS).ctx(c)?;
            {
                let mut checkpoints = txn.open_table(LEASE_CHECKPOINTS).ctx(c)?;
                let mut replication = txn.open_table(REPLICATION).ctx(c)?;
                let mut kv = txn.open_table(KV).ctx(c)?;
                let mut meta = txn.open_table(META).ctx(c)?;
                let mut leases = txn.open_table(LEASES).ctx(c)?;
                let mut lease_keys = txn.open_table(LEASE_KEYS).ctx(c)?;
                let mut alarms = txn.open_table(ALARMS).ctx(c)?;
                let mut buf = Vec::new();
                loop {
                    let mut len = [0u8; 4];
                    read_exact(input, &mut len)?;
                    // The length is untrusted: let the buffer grow with the bytes actually
                    // read instead of allocating up to 4 GiB for a damaged prefix.
                    let len = u64::from(u32::from_le_bytes(len));
                    buf.clear();
                    input
                        .by_ref()
                        .take(len)
                        .read_to_end(&mut buf)
                        .map_err(|source| Error::Io {
                            context: "reading a snapshot",
                            source,
                        })?;
                    if buf.len() as u64 != len {
                        return Err(Error::InvalidSnapshot {
                            reason: "truncated record",
                        });
                    }
                    let rec: SnapshotRecord<'_> =
                        postcard::from_bytes(&buf).map_err(|_| Error::InvalidSnapshot {
                            reason: "bad record",
                        })?;
                    match rec {
                        SnapshotRecord::Meta(k, v) => meta.insert(k, v).map(drop).ctx(c)?,
                        SnapshotRecord::Kv(rev, sub, v) => {
                            Row::parse(v)?;
                            kv.insert((rev, sub), v).map(drop).ctx(c)?
                        }
                        SnapshotRecord::Lease(id, ttl) => {
                            leases.insert(id, ttl).map(drop).ctx(c)?
                        }
                        SnapshotRecord::LeaseKey(id, k) => {
                            lease_keys.insert((id, k), ()).map(drop).ctx(c)?
                        }
                        SnapshotRecord::Alarm(m, a) => {
                            alarms.insert((m, a), ()).map(drop).ctx(c)?
                        }
                        SnapshotRecord::LeaseCheckpoint(id, left) => {
                            checkpoints.insert(id, left).map(drop).ctx(c)?
                        }
                        SnapshotRecord::Replication(k, v) => {
                            replication.insert(k, v).map(drop).ctx(c)?
                        }
                        SnapshotRecord::End => break,
                    }
                }
            }
            // Readers must never pair the old index with the new data.
            let mut indexed = write_lock(&self.index);
            txn.commit().ctx(c)?;
            self.rebuild_into(db, &mut indexed)
        })
    }

    /// Number of live keys (for status and metrics).
    pub fn key_count(&self) -> Result<u64> {
        let indexed = read_lock(&self.index);
        Ok(indexed.index.live_keys(indexed.committed) as u64)
    }
}

const SNAPSHOT_MAGIC: &[u8; 12] = b"STEAD-SNAP2\n";

/// One record of a logical snapshot: `u32 LE length | postcard(record)`, after the magic.
#[derive(Serialize, Deserialize)]
enum SnapshotRecord<'a> {
    Meta(&'a str, i64),
    Kv(u64, u32, &'a [u8]),
    Lease(i64, i64),
    LeaseKey(i64, &'a [u8]),
    Alarm(u64, u8),
    Replication(&'a str, &'a [u8]),
    LeaseCheckpoint(i64, i64),
    End,
}

struct SnapshotWriter<'w, W: Write> {
    out: &'w mut W,
    bytes: u64,
}

impl<W: Write> SnapshotWriter<'_, W> {
    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|source| Error::Io {
            context: "writing a snapshot",
            source,
        })?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn record(&mut self, rec: &SnapshotRecord<'_>) -> Result<()> {
        let body = postcard::to_stdvec(rec).map_err(|_| Error::InvalidSnapshot {
            reason: "record does not encode",
        })?;
        self.raw(&(body.len() as u32).to_le_bytes())?;
        self.raw(&body)
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    input.read_exact(buf).map_err(|source| Error::Io {
        context: "reading a snapshot",
        source,
    })
}

struct HashWriter(crc32fast::Hasher);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Frames a snapshot for `etcdctl snapshot save`: the payload is zero-padded to a multiple
/// of 512 bytes and followed by its 32-byte SHA-256, as etcd's snapshot files are.
pub fn frame_snapshot(mut payload: Vec<u8>) -> Vec<u8> {
    let padded = payload.len().div_ceil(512) * 512;
    payload.resize(padded.max(512), 0);
    let digest = Sha256::digest(&payload);
    payload.extend_from_slice(&digest);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PutRequest, RequestOp};

    #[test]
    fn a_batch_applied_unrevealed_is_read_only_once_revealed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine =
            Engine::open(&dir.path().join("db"), &EngineOptions::default()).expect("engine opens");
        let put = |value: &[u8]| {
            Command::Put(PutRequest {
                key: b"k".to_vec(),
                value: value.to_vec(),
                ..PutRequest::default()
            })
        };
        let req = RangeRequest {
            key: b"k".to_vec(),
            ..RangeRequest::default()
        };
        let read = |engine: &Engine| {
            let found = engine.range(&req).expect("range");
            let values: Vec<Vec<u8>> = found.kvs.iter().map(|kv| kv.value.clone()).collect();
            (engine.revisions().expect("revisions").0, values)
        };
        engine
            .apply_batch(&[&put(b"one")], Durability::Immediate)
            .expect("put");
        let (two, three) = (put(b"two"), put(b"three"));
        let (_, unrevealed) = engine
            .apply_unrevealed(engine.apply_gate(), &[&two], Durability::None, &[], true)
            .expect("put");
        assert_eq!(read(&engine), (2, vec![b"one".to_vec()]));
        // A sync (and so a defragmentation or a snapshot) waits for the batch's fate.
        std::thread::scope(|scope| {
            let synced = scope.spawn(|| engine.sync());
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(!synced.is_finished(), "synced an unrevealed batch");
            unrevealed.reveal();
            synced.join().expect("sync thread").expect("sync");
        });
        assert_eq!(read(&engine), (3, vec![b"two".to_vec()]));
        let (batch, unrevealed) = engine
            .apply_unrevealed(engine.apply_gate(), &[&three], Durability::None, &[], true)
            .expect("put");
        assert_eq!(batch.revision, 4);
        drop(unrevealed);
        assert_eq!(
            read(&engine),
            (3, vec![b"two".to_vec()]),
            "dropped, never seen"
        );
        // Nothing may make the dropped batch durable or copy it.
        engine.sync().expect_err("sync");
        engine.defragment().expect_err("defragment");
        engine
            .write_snapshot(&mut Vec::new())
            .expect_err("snapshot");
    }

    #[test]
    fn a_range_tried_without_waiting_gives_way_to_writers_and_else_reads_as_range_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine =
            Engine::open(&dir.path().join("db"), &EngineOptions::default()).expect("engine opens");
        let put = Command::Put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..PutRequest::default()
        });
        engine
            .apply_batch(&[&put], Durability::Immediate)
            .expect("put");
        let req = RangeRequest {
            key: b"k".to_vec(),
            ..RangeRequest::default()
        };
        let tried = engine.try_range(&req).expect("nothing holds the engine");
        assert_eq!(tried.expect("range"), engine.range(&req).expect("range"));
        {
            let _applying = write_lock(&engine.index);
            assert!(engine.try_range(&req).is_none(), "went past an apply batch");
        }
        {
            let _defragmenting = write_lock(&engine.db);
            assert!(
                engine.try_range(&req).is_none(),
                "went past a defragmentation"
            );
        }
        assert!(engine.try_range(&req).is_some());
        // A lock poisoned by a panicking holder is read through, as everywhere else.
        std::thread::scope(|scope| {
            let poisoner = scope.spawn(|| {
                let _held = write_lock(&engine.index);
                panic!("poisoning the index lock");
            });
            assert!(poisoner.join().is_err());
        });
        assert!(engine.index.is_poisoned());
        assert!(
            engine.try_range(&req).is_some(),
            "a poisoned lock sent reads away"
        );
        let txn = TxnRequest {
            success: vec![RequestOp::Range(req)],
            ..TxnRequest::default()
        };
        let tried = engine
            .try_read_only_txn(&txn)
            .expect("nothing holds the engine");
        assert_eq!(
            tried.expect("txn"),
            engine.read_only_txn(&txn).expect("txn")
        );
        let _applying = write_lock(&engine.index);
        assert!(
            engine.try_read_only_txn(&txn).is_none(),
            "went past an apply batch"
        );
    }
}
