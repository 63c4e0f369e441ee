//! [`LogStore`]: the Raft log and vote in their own redb file (`raft.redb`), separate from
//! the state so that appends and applies never wait for each other's write lock.
//!
//! # Correctness
//! - An append commits with `Durability::Immediate` before its flush callback fires: an
//!   entry is never acknowledged to the leader (or a client) before it is on disk.
//! - The vote is durable before `save_vote` returns.
//! - All writes go through one redb writer in call order, so vote and log changes are never
//!   reordered; truncation and purge remove a suffix and a prefix, never leaving holes, and
//!   the purge bound commits with the deletion.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::types::{Entry, LogId, TypeConfig, Vote, decode, encode};

const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
const STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("state");
const VOTE: &str = "vote";
const PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

/// A handle to the log; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

fn io_err(e: impl Into<redb::Error>) -> io::Error {
    io::Error::other(e.into())
}

impl LogStore {
    pub fn open(path: &Path) -> io::Result<Self> {
        let db = Database::create(path).map_err(io_err)?;
        let txn = db.begin_write().map_err(io_err)?;
        txn.open_table(LOG).map_err(io_err)?;
        txn.open_table(STATE).map_err(io_err)?;
        txn.commit().map_err(io_err)?;
        Ok(LogStore { db: Arc::new(db) })
    }

    fn get_state<T: serde::de::DeserializeOwned>(&self, name: &str) -> io::Result<Option<T>> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(STATE).map_err(io_err)?;
        match table.get(name).map_err(io_err)? {
            Some(raw) => Ok(Some(decode(raw.value())?)),
            None => Ok(None),
        }
    }

    /// Runs `f` in one write transaction committed with `durability`, on a blocking thread.
    async fn write(
        &self,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> io::Result<()> + Send + 'static,
    ) -> io::Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(io_err)?;
            txn.set_durability(durability).map_err(io_err)?;
            f(&txn)?;
            txn.commit().map_err(io_err)
        })
        .await
        .map_err(io::Error::other)?
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let db = self.db.clone();
        let range = bounds(&range);
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(io_err)?;
            let table = txn.open_table(LOG).map_err(io_err)?;
            let mut out = Vec::new();
            for row in table.range(range).map_err(io_err)? {
                let (_, raw) = row.map_err(io_err)?;
                out.push(decode(raw.value())?);
            }
            Ok(out)
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.get_state(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let purged: Option<LogId> = self.get_state(PURGED)?;
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(LOG).map_err(io_err)?;
        let last = match table.last().map_err(io_err)? {
            Some((_, raw)) => Some(decode::<Entry>(raw.value())?.log_id()),
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let bytes = encode(vote)?;
        self.write(Durability::Immediate, move |txn| {
            let mut table = txn.open_table(STATE).map_err(io_err)?;
            table.insert(VOTE, bytes.as_slice()).map_err(io_err)?;
            Ok(())
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Not synced (the next append's sync carries it), as etcd's commit index rides in
        // its HardState: Raft re-learns the commit index after a crash, and a restarted leader
        // resuming its term waits for the log it started with before serving a linearizable
        // read (stead-server's `Member::read_linearizer`; tests/robustness,
        // `restarted_leader_read`).
        let bytes = encode(&committed)?;
        self.write(Durability::None, move |txn| {
            let mut table = txn.open_table(STATE).map_err(io_err)?;
            table.insert(COMMITTED, bytes.as_slice()).map_err(io_err)?;
            Ok(())
        })
        .await
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.get_state::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows = entries
            .into_iter()
            .map(|e| Ok((e.index(), encode(&e)?)))
            .collect::<io::Result<Vec<_>>>()?;
        let result = self
            .write(Durability::Immediate, move |txn| {
                let mut table = txn.open_table(LOG).map_err(io_err)?;
                for (index, bytes) in &rows {
                    table.insert(*index, bytes.as_slice()).map_err(io_err)?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let start = last_log_id.map_or(0, |l| l.index() + 1);
        self.write(Durability::Immediate, move |txn| {
            let mut table = txn.open_table(LOG).map_err(io_err)?;
            table.retain_in(start.., |_, _| false).map_err(io_err)?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let bytes = encode(&log_id)?;
        let upto = log_id.index();
        self.write(Durability::Immediate, move |txn| {
            let mut state = txn.open_table(STATE).map_err(io_err)?;
            state.insert(PURGED, bytes.as_slice()).map_err(io_err)?;
            let mut table = txn.open_table(LOG).map_err(io_err)?;
            table.retain_in(..=upto, |_, _| false).map_err(io_err)?;
            Ok(())
        })
        .await
    }
}
