//! The single mutation path. [`Applier`] opens the tables of one redb write transaction and
//! applies [`Command`]s to them one after another, keeping the in-memory [`Index`] in step;
//! the caller commits the transaction.
//!
//! # Correctness
//! - Deterministic: the outcome depends only on the stored state and the command (no clock,
//!   no randomness), so replaying the same commands anywhere yields the same state.
//! - A command is validated completely before its first write, so a failed command changes
//!   nothing and takes no revision, and the other commands of the batch are unaffected.
//! - A command that changes at least one key takes exactly one new revision; one that
//!   changes nothing (a delete of absent keys, a read-only txn) takes none. The changes of
//!   one revision are numbered by sub-revision, in the order the request made them.
//! - `meta` (current and compacted revision) is written in the same transaction as the data.
//! - Index entries above the committed revision are invisible to readers, so the index may
//!   run ahead of the commit; if the commit fails the caller rebuilds the index from disk.

use redb::{Key, ReadableTable, Table, TableDefinition, Value, WriteTransaction};

use crate::backend::codec::Record;
use crate::backend::schema::{
    ALARMS, KV, LEASE_CHECKPOINTS, LEASE_KEYS, LEASES, META, META_APPLIED, META_COMPACTED,
    META_REVISION,
};
use crate::error::{Error, Result, StorageContext};
use crate::mvcc::index::{Index, Version};
use crate::mvcc::keys::KeyRange;
use crate::mvcc::read::View;
use crate::mvcc::txn::{check_delete, check_put, check_range, check_txn};
use crate::types::{
    AlarmType, Command, CommandResponse, DeleteRangeRequest, DeleteRangeResponse, Event, EventType,
    KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp,
    RevisionEvents, TxnRequest, TxnResponse,
};

/// The largest lease TTL etcd accepts, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// The revisions an apply batch starts from and leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) revision: i64,
    pub(crate) compacted: i64,
    /// Commands applied so far, successful or not (the local stand-in for a log index).
    pub(crate) applied: i64,
}

impl State {
    /// Reads the persisted state (a fresh store is at revision 1, as etcd).
    pub(crate) fn load(meta: &impl ReadableTable<&'static str, i64>) -> Result<Self> {
        let get = |name| -> Result<Option<i64>> {
            Ok(meta.get(name).ctx("reading meta")?.map(|v| v.value()))
        };
        Ok(State {
            revision: get(META_REVISION)?.unwrap_or(1),
            compacted: get(META_COMPACTED)?.unwrap_or(0),
            applied: get(META_APPLIED)?.unwrap_or(0),
        })
    }
}

pub(crate) struct Applier<'t, 'i> {
    pub(crate) kv: Table<'t, (u64, u32), &'static [u8]>,
    pub(crate) index: &'i mut Index,
    meta: Table<'t, &'static str, i64>,
    leases: Lazy<'t, i64, i64>,
    lease_keys: Lazy<'t, (i64, &'static [u8]), ()>,
    lease_checkpoints: Lazy<'t, i64, i64>,
    alarms: Lazy<'t, (u64, u8), ()>,
    pub(crate) state: State,
    /// Whether put events carry the previous version even where the request did not ask
    /// for it (a watcher wants it). Reading it costs a lookup on disk per put.
    prev_kv_events: bool,
    /// Events of the revision being built (`state.revision + 1`).
    pending: Vec<Event>,
    produced: Vec<RevisionEvents>,
    /// Lease grants and revokes applied, for the caller's expiry bookkeeping.
    lease_changes: Vec<LeaseChange>,
}

/// A table opened on first use: most batches only touch `kv` and `meta`, and every table
/// opened costs the commit work.
struct Lazy<'t, K: Key + 'static, V: Value + 'static> {
    txn: &'t WriteTransaction,
    definition: TableDefinition<'static, K, V>,
    context: &'static str,
    table: Option<Table<'t, K, V>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> Lazy<'t, K, V> {
    fn new(
        txn: &'t WriteTransaction,
        definition: TableDefinition<'static, K, V>,
        context: &'static str,
    ) -> Self {
        Lazy {
            txn,
            definition,
            context,
            table: None,
        }
    }

    fn open(&mut self) -> Result<&mut Table<'t, K, V>> {
        let table = match self.table.take() {
            Some(table) => table,
            None => self.txn.open_table(self.definition).ctx(self.context)?,
        };
        Ok(self.table.insert(table))
    }
}

/// A lease that appeared or disappeared in an applied batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseChange {
    Granted { id: i64, ttl: i64 },
    Revoked { id: i64 },
}

/// What an applied batch produced besides the per-command responses.
pub(crate) struct Applied {
    pub(crate) state: State,
    pub(crate) events: Vec<RevisionEvents>,
    pub(crate) lease_changes: Vec<LeaseChange>,
}

impl<'t, 'i> Applier<'t, 'i> {
    pub(crate) fn open(
        txn: &'t WriteTransaction,
        index: &'i mut Index,
        prev_kv_events: bool,
    ) -> Result<Self> {
        let meta = txn.open_table(META).ctx("opening meta")?;
        let state = State::load(&meta)?;
        Ok(Applier {
            kv: txn.open_table(KV).ctx("opening kv")?,
            index,
            meta,
            leases: Lazy::new(txn, LEASES, "opening leases"),
            lease_keys: Lazy::new(txn, LEASE_KEYS, "opening lease_keys"),
            lease_checkpoints: Lazy::new(txn, LEASE_CHECKPOINTS, "opening lease_checkpoints"),
            alarms: Lazy::new(txn, ALARMS, "opening alarms"),
            state,
            prev_kv_events,
            pending: Vec::new(),
            produced: Vec::new(),
            lease_changes: Vec::new(),
        })
    }

    fn lease_exists(&mut self, id: i64) -> Result<bool> {
        Ok(self.leases.open()?.get(id).ctx("reading leases")?.is_some())
    }

    /// Persists the revisions and hands back what the batch produced.
    pub(crate) fn finish(mut self) -> Result<Applied> {
        self.meta
            .insert(META_REVISION, self.state.revision)
            .ctx("writing meta")?;
        self.meta
            .insert(META_COMPACTED, self.state.compacted)
            .ctx("writing meta")?;
        self.meta
            .insert(META_APPLIED, self.state.applied)
            .ctx("writing meta")?;
        Ok(Applied {
            state: self.state,
            events: self.produced,
            lease_changes: self.lease_changes,
        })
    }

    /// Applies one command. An `Err` means the command changed nothing.
    pub(crate) fn apply(&mut self, cmd: &Command) -> Result<CommandResponse> {
        debug_assert!(self.pending.is_empty());
        self.state.applied += 1;
        let resp = match cmd {
            Command::Put(req) => {
                check_put(req)?;
                self.check_put_state(req)?;
                let mut resp = self.put(req)?;
                self.seal();
                resp.revision = self.state.revision;
                CommandResponse::Put(resp)
            }
            Command::DeleteRange(req) => {
                check_delete(req)?;
                let mut resp = self.delete_range(req)?;
                self.seal();
                resp.revision = self.state.revision;
                CommandResponse::DeleteRange(resp)
            }
            Command::Txn(req) => {
                check_txn(req)?;
                let mut path = Vec::new();
                self.view().compare_path(req, &mut path)?;
                self.check_path(req, &mut path.iter().copied())?;
                let mut resp = self.txn(req, &mut path.iter().copied())?;
                self.seal();
                resp.revision = self.state.revision;
                CommandResponse::Txn(resp)
            }
            Command::Compact { revision } => {
                self.compact(*revision)?;
                CommandResponse::Compact {
                    revision: self.state.revision,
                }
            }
            Command::LeaseGrant { id, ttl } => {
                if *ttl > MAX_LEASE_TTL {
                    return Err(Error::LeaseTtlTooLarge { ttl: *ttl });
                }
                if self.lease_exists(*id)? {
                    return Err(Error::LeaseExists { id: *id });
                }
                self.leases
                    .open()?
                    .insert(*id, *ttl)
                    .ctx("writing leases")?;
                self.lease_changes
                    .push(LeaseChange::Granted { id: *id, ttl: *ttl });
                CommandResponse::LeaseGrant {
                    id: *id,
                    ttl: *ttl,
                    revision: self.state.revision,
                }
            }
            Command::LeaseRevoke { id } => {
                self.lease_revoke(*id)?;
                self.seal();
                CommandResponse::LeaseRevoke {
                    revision: self.state.revision,
                }
            }
            Command::LeaseCheckpoint { remaining } => {
                for (id, left) in remaining {
                    // A checkpoint may trail a revoke: only live leases are recorded.
                    if self.lease_exists(*id)? {
                        self.lease_checkpoints
                            .open()?
                            .insert(*id, *left)
                            .ctx("writing lease_checkpoints")?;
                    }
                }
                CommandResponse::LeaseCheckpoint {
                    revision: self.state.revision,
                }
            }
            Command::Alarm {
                activate,
                member,
                alarm,
            } => {
                let key = (*member, alarm_code(*alarm));
                if *activate {
                    self.alarms.open()?.insert(key, ()).ctx("writing alarms")?;
                } else {
                    self.alarms.open()?.remove(key).ctx("writing alarms")?;
                }
                CommandResponse::Alarm {
                    alarms: read_alarms(self.alarms.open()?)?,
                    revision: self.state.revision,
                }
            }
        };
        Ok(resp)
    }

    /// A view of the state including this batch's writes so far. Once the current command
    /// has written, its writes belong to `next_revision()`, which the view then treats as
    /// current (as etcd's txn view does).
    fn view(&self) -> View<'_, Table<'t, (u64, u32), &'static [u8]>> {
        View {
            index: self.index,
            kv: &self.kv,
            current: if self.pending.is_empty() {
                self.state.revision
            } else {
                self.next_revision()
            },
            compacted: self.state.compacted,
        }
    }

    fn next_revision(&self) -> i64 {
        self.state.revision + 1
    }

    /// The newest version of `key`, writes of this command included.
    fn latest(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let view = self.view();
        Ok(view
            .get(key, self.next_revision())?
            .map(|rec| rec.into_kv(key.to_vec())))
    }

    /// Closes the revision being built: if anything changed, it becomes the new revision.
    fn seal(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.state.revision = self.next_revision();
        self.produced.push(RevisionEvents {
            revision: self.state.revision,
            events: std::mem::take(&mut self.pending),
        });
    }

    /// Stores one change of `key` as the next sub-revision of the revision being built.
    fn write(&mut self, key: &[u8], rec: &Record) -> Result<()> {
        let version = Version {
            rev: self.next_revision(),
            sub: self.pending.len() as u32,
            tombstone: rec.is_tombstone(),
        };
        self.kv
            .insert(version.slot(), rec.encode(key).as_slice())
            .ctx("writing kv")?;
        self.index.push(key, version, rec.life());
        Ok(())
    }

    fn check_put_state(&mut self, req: &PutRequest) -> Result<()> {
        if (req.ignore_value || req.ignore_lease) && self.index.newest(&req.key).is_none() {
            return Err(Error::KeyNotFound);
        }
        if req.lease != 0 && !self.lease_exists(req.lease)? {
            return Err(Error::LeaseNotFound { id: req.lease });
        }
        Ok(())
    }

    /// A put builds on the index's account of the key (as etcd's does); the previous record
    /// itself is read only when its value is needed: `prev_kv` or `ignore_value` asked, or a
    /// watcher wants it. Otherwise the event of a put with version > 1 comes without it (see
    /// [`Event::lacks_prev_kv`]).
    fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let rev = self.next_revision();
        let life = self.index.newest(&req.key);
        let prev = match life {
            Some(_) if req.prev_kv || req.ignore_value || self.prev_kv_events => {
                self.latest(&req.key)?
            }
            _ => None,
        };
        let value = match &prev {
            Some(p) if req.ignore_value => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match life {
            Some(l) if req.ignore_lease => l.lease,
            _ => req.lease,
        };
        let rec = Record {
            create_revision: life.map_or(rev, |l| l.create_revision),
            mod_revision: rev,
            version: life.map_or(1, |l| l.version + 1),
            lease,
            value,
        };
        self.write(&req.key, &rec)?;
        let prev_lease = life.map_or(0, |l| l.lease);
        if prev_lease != 0 && prev_lease != lease {
            self.lease_keys
                .open()?
                .remove((prev_lease, req.key.as_slice()))
                .ctx("writing lease_keys")?;
        }
        if lease != 0 {
            self.lease_keys
                .open()?
                .insert((lease, req.key.as_slice()), ())
                .ctx("writing lease_keys")?;
        }
        self.pending.push(Event {
            kind: EventType::Put,
            kv: rec.into_kv(req.key.clone()),
            prev_kv: prev.clone(),
        });
        Ok(PutResponse {
            revision: 0,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut view = self.view();
        view.current = self.next_revision();
        let doomed = view.live(&range)?;
        for kv in &doomed {
            self.delete_key(kv)?;
        }
        Ok(DeleteRangeResponse {
            revision: 0,
            deleted: doomed.len() as i64,
            prev_kvs: if req.prev_kv { doomed } else { Vec::new() },
        })
    }

    fn delete_key(&mut self, prev: &KeyValue) -> Result<()> {
        let rev = self.next_revision();
        self.write(&prev.key, &Record::tombstone(rev))?;
        if prev.lease != 0 {
            self.lease_keys
                .open()?
                .remove((prev.lease, prev.key.as_slice()))
                .ctx("writing lease_keys")?;
        }
        self.pending.push(Event {
            kind: EventType::Delete,
            kv: KeyValue {
                key: prev.key.clone(),
                mod_revision: rev,
                ..KeyValue::default()
            },
            prev_kv: Some(prev.clone()),
        });
        Ok(())
    }

    fn lease_revoke(&mut self, id: i64) -> Result<()> {
        if !self.lease_exists(id)? {
            return Err(Error::LeaseNotFound { id });
        }
        let mut keys = Vec::new();
        for entry in self
            .lease_keys
            .open()?
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
        for key in keys {
            if let Some(kv) = self.latest(&key)? {
                self.delete_key(&kv)?;
            }
        }
        self.leases.open()?.remove(id).ctx("writing leases")?;
        self.lease_checkpoints
            .open()?
            .remove(id)
            .ctx("writing lease_checkpoints")?;
        self.lease_changes.push(LeaseChange::Revoked { id });
        Ok(())
    }

    /// Checks the ops on the chosen path against the current state before any of them runs.
    fn check_path(
        &mut self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<()> {
        let ops = req.branch(path.next().unwrap_or(false));
        for op in ops {
            match op {
                RequestOp::Range(r) => {
                    crate::mvcc::read::read_revision(
                        r.revision,
                        self.state.revision,
                        self.state.compacted,
                    )?;
                }
                RequestOp::Put(p) => self.check_put_state(p)?,
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(nested) => self.check_path(nested, path)?,
            }
        }
        Ok(())
    }

    fn txn(
        &mut self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<TxnResponse> {
        let succeeded = path.next().unwrap_or(false);
        let ops = req.branch(succeeded);
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r)?),
                RequestOp::Put(p) => {
                    let mut resp = self.put(p)?;
                    resp.revision = self.next_revision();
                    ResponseOp::Put(resp)
                }
                RequestOp::DeleteRange(d) => {
                    let mut resp = self.delete_range(d)?;
                    resp.revision = self.next_revision();
                    ResponseOp::DeleteRange(resp)
                }
                RequestOp::Txn(nested) => ResponseOp::Txn(self.txn(nested, path)?),
            });
        }
        Ok(TxnResponse {
            revision: 0,
            succeeded,
            responses,
        })
    }

    /// A range inside a txn sees the txn's own earlier writes; one pinned to an earlier
    /// revision does not.
    fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        check_range(req)?;
        self.view().range(req)
    }
}

pub(crate) fn alarm_code(alarm: AlarmType) -> u8 {
    match alarm {
        AlarmType::NoSpace => 1,
        AlarmType::Corrupt => 2,
    }
}

pub(crate) fn read_alarms(
    alarms: &impl ReadableTable<(u64, u8), ()>,
) -> Result<Vec<(u64, AlarmType)>> {
    let mut out = Vec::new();
    for entry in alarms.iter().ctx("reading alarms")? {
        let (k, _) = entry.ctx("reading alarms")?;
        let (member, code) = k.value();
        let alarm = match code {
            1 => AlarmType::NoSpace,
            2 => AlarmType::Corrupt,
            _ => return Err(Error::Corrupt { table: "alarms" }),
        };
        out.push((member, alarm));
    }
    Ok(out)
}
