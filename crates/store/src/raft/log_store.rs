//! [`LogStore`]: the Raft log and vote — in memory for reads, and in a write-ahead log of
//! preallocated segments (`data-dir/raft/`) for durability.
//!
//! ```text
//!  append(entries, callback) ─► memory (readable at once: replication starts)
//!                            └─► job queue ─► writer thread: every queued job's records,
//!                                             one write + one fdatasync ─► callbacks
//!  save_vote / truncate_after / purge ─► memory + job, answered once synced
//!  save_committed ─► memory + job written without a sync (the next sync carries it)
//! ```
//!
//! # Correctness
//! - Every write goes through one writer thread, in call order, so vote and log changes are
//!   never reordered on disk; memory changes in the same order, at call time, so readers see
//!   what the calls asked for (openraft's contract: entries are readable when `append`
//!   returns, durable when its callback fires).
//! - An append's callback fires only after the fdatasync that covers it: an entry is never
//!   acknowledged to the leader (or a client) before it is on disk. The vote, truncation and
//!   purge are durable before their calls return.
//! - The commit index rides unsynced (the next sync carries it): Raft re-learns it after a
//!   crash, and a restarted leader holds an election before it serves
//!   (`enable_leader_restore` off in stead-server), as etcd's does.
//! - Each segment starts with a `State` record (vote, commit index, purge bound as written so
//!   far), so a segment is removed once every entry in it and in the segments before it is
//!   purged: nothing it held is needed any more. Replay applies the records in order.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::types::{Entry, LogId, TypeConfig, Vote, decode, encode};
use crate::wal::{SEGMENT_BYTES, Wal, remove_segments_below};

/// A record of the log, as read back.
#[derive(Debug, Deserialize)]
enum LogRecord {
    /// The head of a segment: what the records before it left.
    State {
        vote: Option<Vote>,
        committed: Option<LogId>,
        purged: Option<LogId>,
    },
    Entries(Vec<Entry>),
    Vote(Vote),
    Committed(Option<LogId>),
    TruncateAfter(Option<LogId>),
    Purge(LogId),
}

/// [`LogRecord`] as written, borrowing the entries (postcard encodes both alike).
#[derive(Serialize)]
enum LogRecordRef<'a> {
    State {
        vote: &'a Option<Vote>,
        committed: &'a Option<LogId>,
        purged: &'a Option<LogId>,
    },
    Entries(&'a [Entry]),
    Vote(&'a Vote),
    Committed(&'a Option<LogId>),
    TruncateAfter(&'a Option<LogId>),
    Purge(&'a LogId),
}

/// The vote, commit index and purge bound: what a segment's head restates.
#[derive(Debug, Clone, Default)]
struct Hard {
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

impl Hard {
    fn head(&self) -> io::Result<Vec<u8>> {
        encode(&LogRecordRef::State {
            vote: &self.vote,
            committed: &self.committed,
            purged: &self.purged,
        })
    }
}

/// The log as the calls so far left it.
#[derive(Debug, Default)]
struct Memory {
    entries: BTreeMap<u64, Entry>,
    hard: Hard,
}

impl Memory {
    fn truncate_after(&mut self, last: Option<&LogId>) {
        let from = last.map_or(0, |l| l.index() + 1);
        self.entries.split_off(&from);
    }

    fn purge(&mut self, upto: &LogId) {
        self.entries = self.entries.split_off(&(upto.index() + 1));
        if self.hard.purged.as_ref().is_none_or(|p| p < upto) {
            self.hard.purged = Some(*upto);
        }
    }
}

/// What a job's record changes, for the writer's own account of what is on disk.
enum Effect {
    /// Entries up to this index.
    Entries(u64),
    Vote(Vote),
    Committed(Option<LogId>),
    Truncate,
    Purge(LogId),
}

/// Who waits for a job.
enum Done {
    Reply(oneshot::Sender<io::Result<()>>),
    Flushed(IOFlushed<TypeConfig>),
    Nobody,
}

impl Done {
    fn complete(self, result: &io::Result<()>) {
        let result = match result {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        match self {
            Done::Reply(tx) => {
                let _ = tx.send(result);
            }
            Done::Flushed(callback) => callback.io_completed(result),
            Done::Nobody => {}
        }
    }
}

/// One record for the writer thread.
struct Job {
    record: Vec<u8>,
    effect: Effect,
    sync: bool,
    done: Done,
}

/// The writer thread's state: the log file and what it has written.
struct Writer {
    wal: Wal,
    dir: std::path::PathBuf,
    hard: Hard,
    /// Highest entry index written into each segment.
    segment_max: BTreeMap<u64, u64>,
}

impl Writer {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            batch.extend(jobs.try_iter());
            let result = self.write(&batch);
            for job in batch {
                job.done.complete(&result);
            }
        }
    }

    /// Writes every job's record in one append (synced if any job asks for it).
    fn write(&mut self, batch: &[Job]) -> io::Result<()> {
        let head = self.hard.head()?;
        let records: Vec<&[u8]> = batch.iter().map(|j| j.record.as_slice()).collect();
        let sync = batch.iter().any(|j| j.sync);
        let appended = self.wal.append(&records, &head, sync)?;
        let mut purged = false;
        for job in batch {
            match &job.effect {
                Effect::Entries(last) => {
                    let max = self.segment_max.entry(appended.segment).or_default();
                    *max = (*max).max(*last);
                }
                Effect::Vote(vote) => self.hard.vote = Some(*vote),
                Effect::Committed(committed) => self.hard.committed = *committed,
                Effect::Truncate => {}
                Effect::Purge(upto) => {
                    self.hard.purged = Some(*upto);
                    purged = true;
                }
            }
        }
        if purged || appended.rotated {
            self.remove_purged_segments();
        }
        Ok(())
    }

    /// Removes the oldest segments while every entry in them is purged. The current one
    /// stays: it holds the latest head.
    fn remove_purged_segments(&mut self) {
        let purged = self.hard.purged.as_ref().map_or(0, |p| p.index());
        let current = self.wal.segment();
        // The first segment still holding an entry that is not purged; every segment before
        // it holds purged entries or only hard state, which later heads restate.
        let keep = self
            .segment_max
            .iter()
            .find(|&(_, &max)| max > purged)
            .map_or(current, |(&segment, _)| segment.min(current));
        match remove_segments_below(&self.dir, keep) {
            Ok(()) => self.segment_max = self.segment_max.split_off(&keep),
            Err(e) => tracing::warn!(error = %e, "removing purged raft log segments failed"),
        }
    }
}

/// A handle to the log; clones share the memory and the writer thread, which ends when the
/// last handle is dropped.
#[derive(Clone)]
pub struct LogStore {
    memory: Arc<Mutex<Memory>>,
    jobs: mpsc::Sender<Job>,
    /// Dropped after `jobs` (field order), so the writer sees its queue close first.
    _writer: Arc<WriterThread>,
}

/// The vote a [`LogStore`] was last given to save. A member grants a vote only once it is
/// saved, so while this is for some leadership, the member has granted no vote above it.
/// Holds the log's memory only, not its writer.
#[derive(Clone)]
pub struct LastVote(Arc<Mutex<Memory>>);

impl LastVote {
    pub fn get(&self) -> Option<Vote> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .hard
            .vote
    }
}

/// Joins the writer thread when the last handle goes: by then every queued record is
/// written and the spare segment prepared, so the directory can be opened again at once
/// (a log reopened while the old writer still prepared its spare found the spare's
/// temporary file vanish under it).
struct WriterThread(Option<std::thread::JoinHandle<()>>);

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take()
            && handle.join().is_err()
        {
            tracing::error!("the raft log writer thread panicked");
        }
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("the raft log writer has stopped")
}

impl LogStore {
    /// Opens (or creates) the log in the directory `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        LogStore::open_sized(dir, SEGMENT_BYTES)
    }

    /// [`LogStore::open`] with log segments of `segment_bytes`.
    fn open_sized(dir: &Path, segment_bytes: u64) -> io::Result<Self> {
        let replay = Wal::read(dir)?;
        let mut memory = Memory::default();
        let mut segment_max: BTreeMap<u64, u64> = BTreeMap::new();
        for record in &replay.records {
            match decode::<LogRecord>(&record.payload)? {
                LogRecord::State {
                    vote,
                    committed,
                    purged,
                } => {
                    memory.hard.vote = vote;
                    memory.hard.committed = committed;
                    if let Some(purged) = purged {
                        memory.purge(&purged);
                    }
                }
                LogRecord::Entries(entries) => {
                    for entry in entries {
                        let max = segment_max.entry(record.segment).or_default();
                        *max = (*max).max(entry.index());
                        memory.entries.insert(entry.index(), entry);
                    }
                }
                LogRecord::Vote(vote) => memory.hard.vote = Some(vote),
                LogRecord::Committed(committed) => memory.hard.committed = committed,
                LogRecord::TruncateAfter(last) => memory.truncate_after(last.as_ref()),
                LogRecord::Purge(upto) => memory.purge(&upto),
            }
        }
        let mut wal = Wal::create_sized(
            dir,
            replay.next_segment(),
            replay.last_seq().map_or(1, |s| s + 1),
            segment_bytes,
        )?;
        // The new segment starts with what the old ones left, like any segment.
        let hard = memory.hard.clone();
        wal.append(&[&hard.head()?], &[], true)?;
        let mut writer = Writer {
            wal,
            dir: dir.to_path_buf(),
            hard,
            segment_max,
        };
        writer.remove_purged_segments();
        let (jobs, queue) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(queue))?;
        Ok(LogStore {
            memory: Arc::new(Mutex::new(memory)),
            jobs,
            _writer: Arc::new(WriterThread(Some(handle))),
        })
    }

    /// A handle on the vote this log was last given to save.
    pub fn last_vote(&self) -> LastVote {
        LastVote(self.memory.clone())
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes memory and queues the record under one lock, so that memory and disk see
    /// the calls in the same order.
    fn submit(
        &self,
        record: Vec<u8>,
        effect: Effect,
        sync: bool,
        done: Done,
        change: impl FnOnce(&mut Memory),
    ) -> io::Result<()> {
        let mut memory = self.memory();
        change(&mut memory);
        self.jobs
            .send(Job {
                record,
                effect,
                sync,
                done,
            })
            .map_err(|_| writer_gone())
    }

    /// [`LogStore::submit`], answered once the record is synced.
    async fn submit_synced(
        &self,
        record: Vec<u8>,
        effect: Effect,
        change: impl FnOnce(&mut Memory),
    ) -> io::Result<()> {
        let (done, answer) = oneshot::channel();
        self.submit(record, effect, true, Done::Reply(done), change)?;
        answer.await.map_err(|_| writer_gone())?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        Ok(self
            .memory()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(self.memory().hard.vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let memory = self.memory();
        let purged = memory.hard.purged;
        let last = match memory.entries.last_key_value() {
            Some((_, entry)) => Some(entry.log_id()),
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
        let record = encode(&LogRecordRef::Vote(vote))?;
        let vote = *vote;
        self.submit_synced(record, Effect::Vote(vote), move |m| {
            m.hard.vote = Some(vote);
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Not synced: see the module's correctness notes.
        let record = encode(&LogRecordRef::Committed(&committed))?;
        self.submit(
            record,
            Effect::Committed(committed),
            false,
            Done::Nobody,
            move |m| m.hard.committed = committed,
        )
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.memory().hard.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.index()) else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let record = encode(&LogRecordRef::Entries(&entries))?;
        self.submit(
            record,
            Effect::Entries(last),
            true,
            Done::Flushed(callback),
            move |m| {
                for entry in entries {
                    m.entries.insert(entry.index(), entry);
                }
            },
        )
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let record = encode(&LogRecordRef::TruncateAfter(&last_log_id))?;
        self.submit_synced(record, Effect::Truncate, move |m| {
            m.truncate_after(last_log_id.as_ref());
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let record = encode(&LogRecordRef::Purge(&log_id))?;
        self.submit_synced(record, Effect::Purge(log_id), move |m| m.purge(&log_id))
            .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{blank_ent, log_id};
    use openraft::type_config::TypeConfigExt;

    use super::*;

    type Tc = TypeConfig;

    async fn append(log: &mut LogStore, from: u64, to: u64, term: u64) {
        let (tx, rx) = Tc::oneshot();
        let entries = (from..=to).map(|i| blank_ent::<Tc>(term, 1, i));
        log.append(entries, IOFlushed::signal(tx))
            .await
            .expect("append");
        rx.await.expect("flushed").expect("synced");
    }

    /// (first index, last index, term of the last entry, vote term, committed index,
    /// purged index) as the log reports them.
    async fn summary(
        log: &mut LogStore,
    ) -> (Vec<(u64, u64)>, Option<u64>, Option<u64>, Option<u64>) {
        let entries = log
            .try_get_log_entries(0..u64::MAX)
            .await
            .expect("entries")
            .iter()
            .map(|e| (e.index(), e.log_id().committed_leader_id().term))
            .collect();
        let state = log.get_log_state().await.expect("state");
        let vote = log
            .read_vote()
            .await
            .expect("vote")
            .map(|v| v.leader_id().term);
        let committed = log
            .read_committed()
            .await
            .expect("committed")
            .map(|c| c.index());
        (
            entries,
            vote,
            committed,
            state.last_purged_log_id.map(|p| p.index()),
        )
    }

    fn segment_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".wal"))
            })
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_reopens_as_it_was_left_through_truncation_purge_and_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = LogStore::open_sized(dir.path(), 4096).expect("open");
        log.save_vote(&Vote::new(3, 1)).await.expect("vote");
        for chunk in 0..40 {
            append(&mut log, chunk * 10 + 1, chunk * 10 + 10, 3).await;
        }
        // A new leader's entries replace the tail from 395 on.
        log.truncate_after(Some(log_id::<Tc>(3, 1, 394)))
            .await
            .expect("truncate");
        append(&mut log, 395, 420, 4).await;
        log.save_committed(Some(log_id::<Tc>(4, 1, 410)))
            .await
            .expect("committed");
        log.purge(log_id::<Tc>(3, 1, 300)).await.expect("purge");
        let before = summary(&mut log).await;
        let want: Vec<(u64, u64)> = (301..=420)
            .map(|i| (i, if i < 395 { 3 } else { 4 }))
            .collect();
        assert_eq!(before, (want, Some(3), Some(410), Some(300)));
        // 420 blank entries rotated through many 4 KiB segments; those holding only purged
        // entries are gone.
        let files = segment_files(dir.path());
        assert!(files < 10, "{files} segment files left after the purge");
        drop(log);

        let mut log = LogStore::open_sized(dir.path(), 4096).expect("reopen");
        assert_eq!(summary(&mut log).await, before);
        // And again after more writes in the reopened log.
        append(&mut log, 421, 430, 4).await;
        log.purge(log_id::<Tc>(4, 1, 425)).await.expect("purge");
        let after = summary(&mut log).await;
        drop(log);
        let mut log = LogStore::open_sized(dir.path(), 4096).expect("reopen");
        assert_eq!(summary(&mut log).await, after);
        assert_eq!(after.0, [(426, 4), (427, 4), (428, 4), (429, 4), (430, 4)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_torn_last_append_is_dropped_and_the_reopened_log_goes_on_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = LogStore::open_sized(dir.path(), 1 << 20).expect("open");
        append(&mut log, 1, 5, 1).await;
        drop(log);
        // A sixth entry whose write was cut short: a header and part of a payload, right
        // after the last record.
        let replay = Wal::read(dir.path()).expect("read");
        let segment = replay.records.last().expect("records").segment;
        let end: usize = replay
            .records
            .iter()
            .filter(|r| r.segment == segment)
            .map(|r| 16 + r.payload.len())
            .sum();
        let path = dir.path().join(format!("{segment:016x}.wal"));
        let mut bytes = std::fs::read(&path).expect("segment");
        let torn = [64, 0, 0, 0, 9, 9, 9, 9, 99, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        bytes[end..end + torn.len()].copy_from_slice(&torn);
        std::fs::write(&path, bytes).expect("write");

        let mut log = LogStore::open_sized(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(summary(&mut log).await.0.len(), 5);
        append(&mut log, 6, 8, 1).await;
        drop(log);
        let mut log = LogStore::open_sized(dir.path(), 1 << 20).expect("reopen");
        let entries = summary(&mut log).await.0;
        assert_eq!(
            entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
    }
}
