//! [`Store`]: the asynchronous face of the engine — group commit, reads, leases, watches.
//!
//! ```text
//!  propose(cmd) ──► bounded queue ──► committer (the proposer's own thread if no one is
//!        ▲                            committing, else the writer thread): drain queue
//!        │                              │
//!        │                              ├─► ONE log record: write with RWF_DSYNC (io_uring) ─┐
//!        │                              └─► meanwhile ONE redb write txn                     │
//!        │                                  (unsynced, unrevealed)                           │
//!        └──── reply ◄──── publish to Hub ◄──── reveal ◄──── write durable ◄────────────────┘
//! ```
//!
//! Concurrent writers share a commit: the writer thread drains everything queued while
//! the previous commit ran, so under load one flush acknowledges many writes, and a reply
//! is only sent once its write is durable. A batch's apply runs on the committing thread
//! while the disk writes its log record, so a lone write costs about one flush, and no
//! thread hand-off: a proposer that finds no commit under way commits its own batch
//! (see `Committer`). Where io_uring is unavailable, the apply follows the flush.
//!
//! # Correctness (single member)
//! - A batch is durable in the write-ahead log (`data-dir/wal`, one preallocated segment
//!   overwritten in place: one flush, no metadata) before anyone sees it. redb commits the
//!   batch unsynced, together with the log sequence number it applied (`local-wal`
//!   replication row), while the record is written, but readers see the index only up to
//!   the revealed revision ([`Unrevealed`]), raised once the record is durable; the watch hub
//!   and the replies come after that. A batch that compacts is applied after its flush
//!   instead (a compaction shows as soon as it is applied). Syncing, defragmenting and
//!   snapshotting redb wait for an unrevealed batch to be revealed. Reads straight from
//!   redb that skip the index (lease lists, the applied index, the whole-database hash) may
//!   see a batch up to one flush before it is durable.
//! - If the flush fails, the batch stays unrevealed and nothing more is logged. redb
//!   is never synced, defragmented, snapshotted or closed again in this process: closing
//!   would make its unsynced commits durable, so the database is left open until the
//!   process exits, and the next open rolls back to the last synced commit and replays the
//!   log.
//! - When a log segment fills, redb is synced (an empty durable commit makes every earlier
//!   one durable) and the older segments are removed: by the writer thread, before its
//!   next batch.
//! - A commit that panics stops all writing, as a failed flush does.
//! - On open, every logged batch above the applied sequence number is applied again, in
//!   order, through the same deterministic path; a batch that redb refused after it was
//!   logged has an `Abort` record and is skipped. Then redb is synced and the log restarts
//!   empty.
//!
//! Where commands go is a [`Proposer`]: the local committer above for a single member,
//! or the replication layer (Raft) for a cluster, whose state machine applies committed
//! commands through the same [`Shared::apply`] path on every member.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::Durability;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{
    ApplyGate, BatchResult, Engine, EngineOptions, LeaseInfo, Unrevealed, frame_snapshot,
};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::lease::MIN_LEASE_TTL;
use crate::lock;
use crate::mvcc::apply::LeaseChange;
use crate::raft::{decode, encode};
use crate::types::{
    AlarmType, Command, CommandResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RevisionEvents, TxnRequest, TxnResponse,
};
use crate::wal::{self, Appended, Wal};
use crate::watch::Hub;

/// How often the leader records the seconds left on leases.
const LEASE_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// How long a measurement of the bytes in use stays fresh for quota checks.
const IN_USE_REFRESH: Duration = Duration::from_millis(100);

/// Most commands applied in one write transaction.
const MAX_BATCH: usize = 4096;

/// The replication row holding the sequence number of the last write-ahead log record a
/// single member applied to redb.
const LOCAL_WAL: &str = "local-wal";

/// A record of the single member's write-ahead log, as read back.
#[derive(Debug, Deserialize)]
enum LocalRecord {
    /// The commands of one batch, applied in one transaction.
    Batch(Vec<Command>),
    /// The batch with this sequence number failed to apply and was answered with an error.
    Abort { seq: u64 },
}

/// [`LocalRecord`] as written, from borrowed commands (postcard encodes both alike).
#[derive(Serialize)]
enum LocalRecordRef<'a> {
    Batch(&'a [&'a Command]),
    Abort { seq: u64 },
}

fn wal_error(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

fn encode_record(record: &LocalRecordRef<'_>) -> Result<Vec<u8>> {
    encode(record).map_err(wal_error("encoding a write-ahead log record"))
}

/// Where a single member's write-ahead log lives.
fn wal_dir(config: &StoreConfig) -> std::path::PathBuf {
    config.data_dir.join("wal")
}

/// Where the single member's write-ahead log resumes after recovery.
#[derive(Debug, Clone, Copy)]
struct WalStart {
    segment: u64,
    seq: u64,
}

/// Applies the batches in the write-ahead log at `dir` that redb does not have yet, makes
/// redb durable and empties the log (see the module's correctness notes).
fn recover_local_writes(engine: &Engine, dir: &std::path::Path) -> Result<WalStart> {
    let replay = Wal::read(dir).map_err(wal_error("reading the write-ahead log"))?;
    let applied = match engine.replication(LOCAL_WAL)? {
        Some(bytes) => {
            let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| Error::Corrupt {
                table: "replication",
            })?;
            u64::from_be_bytes(bytes)
        }
        None => 0,
    };
    let mut batches = Vec::new();
    let mut aborted = std::collections::HashSet::new();
    for record in replay.records.iter().filter(|r| r.seq > applied) {
        match decode::<LocalRecord>(&record.payload) {
            Ok(LocalRecord::Batch(cmds)) => batches.push((record.seq, cmds)),
            Ok(LocalRecord::Abort { seq }) => {
                aborted.insert(seq);
            }
            Err(_) => return Err(Error::Corrupt { table: "wal" }),
        }
    }
    let mut replayed = 0;
    for (seq, cmds) in batches.iter().filter(|(seq, _)| !aborted.contains(seq)) {
        let refs: Vec<&Command> = cmds.iter().collect();
        let row = seq.to_be_bytes();
        // No watcher exists yet.
        engine.apply_batch_with(&refs, Durability::None, &[(LOCAL_WAL, &row)], false)?;
        replayed += 1;
    }
    if replayed > 0 {
        engine.sync()?;
        tracing::info!(
            batches = replayed,
            "applied the write-ahead log's unsynced batches"
        );
    }
    let start = WalStart {
        segment: replay.next_segment(),
        seq: replay.last_seq().unwrap_or(0).max(applied) + 1,
    };
    wal::remove_segments_below(dir, start.segment)
        .map_err(wal_error("removing applied write-ahead log segments"))?;
    Ok(start)
}

/// Store configuration.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory holding the data file (created if missing).
    pub data_dir: PathBuf,
    /// Backend size above which writes are refused and the NOSPACE alarm is raised.
    pub quota_bytes: u64,
    /// This member's id (alarms are raised on behalf of it).
    pub member_id: u64,
    /// Engine tuning.
    pub engine: EngineOptions,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            quota_bytes: 2 << 30,
            member_id: 1,
            engine: EngineOptions::default(),
        }
    }
}

/// Counters of the write path.
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    proposals: AtomicU64,
    commit_nanos: AtomicU64,
}

/// How the write path has been used: under load, `proposals / commits` is the average
/// number of writes sharing one fsync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Durable commits (each one fsync).
    pub commits: u64,
    /// Commands applied by those commits.
    pub proposals: u64,
    /// Time spent applying and committing batches, in nanoseconds.
    pub commit_nanos: u64,
}

struct Proposal {
    cmd: Command,
    reply: oneshot::Sender<Result<CommandResponse>>,
}

/// A future returned by a [`Proposer`].
pub type ProposeFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;

/// Where commands go to be ordered, made durable and applied.
///
/// # Correctness
/// `propose` resolves only after the command is durable and applied on this member (its
/// effects are visible to reads here); `read_barrier` resolves once a read served locally
/// right after it is linearizable.
pub trait Proposer: Send + Sync + 'static {
    fn propose(&self, cmd: Command) -> ProposeFuture<CommandResponse>;
    fn read_barrier(&self) -> ProposeFuture<()>;
    /// A lease keep-alive, served where lease deadlines are kept (the leader).
    fn keep_alive(&self, id: i64) -> ProposeFuture<i64>;
    /// Seconds left on a lease, as the leader sees it (`None` if it has no deadline).
    fn lease_remaining(&self, id: i64) -> ProposeFuture<Option<i64>>;
    /// Whether this member decides lease expiry.
    fn is_leader(&self) -> bool;
}

/// What the write path and the read path share: the engine, the watch hub, lease deadlines
/// and the write counters.
pub struct Shared {
    engine: Arc<Engine>,
    hub: Arc<Hub>,
    lessor: Mutex<Lessor>,
    db_size: AtomicU64,
    no_space: AtomicBool,
    counters: Counters,
    db_path: PathBuf,
}

impl Shared {
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Gives every lease a full TTL from now: a new leader does not know when its
    /// predecessor last saw keep-alives, so it must not expire leases early (etcd does the
    /// same on promotion).
    pub fn refresh_leases(&self) {
        let checkpoints = self
            .engine
            .lease_checkpoints()
            .unwrap_or_default()
            .into_iter()
            .collect();
        lock(&self.lessor).refresh_all(Instant::now(), &checkpoints);
    }

    /// Seconds left on a lease by this member's deadlines.
    pub fn lease_remaining(&self, id: i64) -> Option<i64> {
        lock(&self.lessor).remaining(id, Instant::now())
    }

    /// Renews a lease's deadline here; the lease's TTL, or 0 if unknown.
    pub fn renew_lease(&self, id: i64) -> i64 {
        lock(&self.lessor).renew(id, Instant::now()).unwrap_or(0)
    }

    /// Applies a batch through the engine with `durability`, also writing `replication`
    /// rows, then publishes its events and updates lease deadlines and counters. Returns
    /// one result per command.
    pub fn apply(
        &self,
        cmds: &[&Command],
        durability: Durability,
        replication: &[(&str, &[u8])],
    ) -> Result<Vec<Result<CommandResponse>>> {
        let (batch, unrevealed) = self.apply_unrevealed(None, cmds, durability, replication)?;
        unrevealed.reveal();
        Ok(self.publish(cmds, batch))
    }

    /// [`Shared::apply`] up to the commit: readers see nothing of the batch until it is
    /// revealed and then [published](Shared::publish).
    /// It applies under `gate` if given, else waits for the engine's.
    fn apply_unrevealed<'a>(
        &'a self,
        gate: Option<ApplyGate<'a>>,
        cmds: &[&Command],
        durability: Durability,
        replication: &[(&str, &[u8])],
    ) -> Result<(BatchResult, Unrevealed<'a>)> {
        let gate = gate.unwrap_or_else(|| self.engine.apply_gate());
        let started = Instant::now();
        let prev_kv_events = self.hub.wants_prev_kv();
        let result =
            self.engine
                .apply_unrevealed(gate, cmds, durability, replication, prev_kv_events);
        self.counters
            .commit_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }

    /// The rest of [`Shared::apply`] for a revealed batch of `cmds`: counters, lease
    /// deadlines, alarms, and its events to watchers. Returns one result per command.
    fn publish(&self, cmds: &[&Command], batch: BatchResult) -> Vec<Result<CommandResponse>> {
        let touches_alarms = cmds.iter().any(|c| matches!(c, Command::Alarm { .. }));
        let BatchResult {
            responses,
            revision,
            compacted,
            events,
            lease_changes,
        } = batch;
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.counters
            .proposals
            .fetch_add(cmds.len() as u64, Ordering::Relaxed);
        // Before the replies: a writer's next write is checked against the quota with it.
        if let Ok(meta) = std::fs::metadata(&self.db_path) {
            self.db_size.store(meta.len(), Ordering::Release);
        }
        {
            let mut lessor = lock(&self.lessor);
            let now = Instant::now();
            for change in lease_changes {
                match change {
                    LeaseChange::Granted { id, ttl } => lessor.track(id, ttl, now),
                    LeaseChange::Revoked { id } => lessor.forget(id),
                }
            }
        }
        if touches_alarms && let Ok(alarms) = self.engine.alarms() {
            let raised = alarms.iter().any(|(_, a)| *a == AlarmType::NoSpace);
            self.no_space.store(raised, Ordering::Release);
        }
        self.hub.publish(revision, compacted, events);
        responses
    }

    /// After the whole state was replaced (a snapshot was installed): reload what is kept
    /// in memory and let watchers catch up from the new history.
    pub fn reload(&self) -> Result<()> {
        let (revision, compacted) = self.engine.revisions()?;
        let mut lessor = lock(&self.lessor);
        *lessor = Lessor::default();
        let now = Instant::now();
        for (id, ttl) in self.engine.leases()? {
            lessor.track(id, ttl, now);
        }
        lessor.refresh_all(now, &self.engine.lease_checkpoints()?.into_iter().collect());
        drop(lessor);
        let raised = self
            .engine
            .alarms()?
            .iter()
            .any(|(_, a)| *a == AlarmType::NoSpace);
        self.no_space.store(raised, Ordering::Release);
        self.hub.publish_jump(revision, compacted);
        Ok(())
    }
}

struct Inner {
    shared: Arc<Shared>,
    proposer: OnceLock<Arc<dyn Proposer>>,
    /// The local writer thread and its queue, when this store is not replicated. Closing
    /// the queue (taking the sender) and waking the thread stops it once every proposal
    /// is answered.
    writer: Mutex<Option<JoinHandle<()>>>,
    local_queue: Arc<Mutex<Option<mpsc::Sender<Proposal>>>>,
    /// Last measurement of the bytes in use, for quota checks.
    in_use: Mutex<Option<(Instant, u64)>>,
    /// Where a single member's write-ahead log starts.
    wal_start: WalStart,
    config: StoreConfig,
}

impl Drop for Inner {
    /// A store dropped without [`Store::shutdown`]: closes the queue and wakes the writer
    /// thread, which answers what is queued and closes the database.
    fn drop(&mut self) {
        lock(&self.local_queue).take();
        if let Some(handle) = lock(&self.writer).take() {
            handle.thread().unpark();
        }
    }
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens a single-member store in `config.data_dir`: commands are committed in batches
    /// (see `Committer`). Must be called inside a tokio runtime.
    pub fn open(config: StoreConfig) -> Result<Store> {
        let store = Store::open_unstarted(config)?;
        let start = store.inner.wal_start;
        let mut wal = Wal::create(&wal_dir(&store.inner.config), start.segment, start.seq)
            .map_err(wal_error("creating the write-ahead log"))?;
        store.start_writer(move |record, during| wal.append_during(&[record], during))?;
        Ok(store)
    }

    /// Starts the local writer thread; each record is written and synced with `append`.
    fn start_writer(
        &self,
        append: impl FnMut(&[u8], &mut dyn FnMut()) -> std::io::Result<Appended> + Send + 'static,
    ) -> Result<()> {
        let (tx, rx) = mpsc::channel(MAX_BATCH);
        let committer = Arc::new(Committer {
            writer: Mutex::new(Writer {
                shared: self.inner.shared.clone(),
                queue: rx,
                carried: None,
                append: Some(Box::new(append)),
                next_seq: self.inner.wal_start.seq,
                wal_dir: wal_dir(&self.inner.config),
                checkpoint_due: None,
                closed: false,
                failed: false,
            }),
            thread: OnceLock::new(),
            batch_size: AtomicU32::new(16),
        });
        let runner = Arc::clone(&committer);
        let handle = std::thread::Builder::new()
            .name("stead-writer".into())
            .spawn(move || runner.run())
            .map_err(|source| Error::Io {
                context: "starting the writer thread",
                source,
            })?;
        let _ = committer.thread.set(handle.thread().clone());
        *lock(&self.inner.writer) = Some(handle);
        *lock(&self.inner.local_queue) = Some(tx);
        self.set_proposer(Arc::new(LocalProposer {
            queue: self.inner.local_queue.clone(),
            committer,
            shared: self.inner.shared.clone(),
        }));
        Ok(())
    }

    /// Opens the store without a proposer; the replication layer supplies one with
    /// [`Store::set_proposer`] and applies committed commands through [`Store::shared`].
    /// Must be called inside a tokio runtime.
    pub fn open_unstarted(config: StoreConfig) -> Result<Store> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::Io {
            context: "creating the data directory",
            source,
        })?;
        let db_path = config.data_dir.join("stead.redb");
        let engine = Arc::new(Engine::open(&db_path, &config.engine)?);
        // Writes a single member logged but redb may not have durably (a replicated member
        // only finds a log left by an earlier single-member run).
        let wal_start = recover_local_writes(&engine, &wal_dir(&config))?;
        let (revision, compacted) = engine.revisions()?;
        let hub = Arc::new(Hub::new(revision, compacted));

        // Leases resume their countdown from the last checkpoint (full TTL without one).
        let mut lessor = Lessor::default();
        let now = Instant::now();
        for (id, ttl) in engine.leases()? {
            lessor.track(id, ttl, now);
        }
        lessor.refresh_all(now, &engine.lease_checkpoints()?.into_iter().collect());
        let no_space = engine
            .alarms()?
            .iter()
            .any(|(_, a)| *a == AlarmType::NoSpace);
        let db_size = engine.size()?.0;
        let shared = Arc::new(Shared {
            engine,
            hub,
            lessor: Mutex::new(lessor),
            db_size: AtomicU64::new(db_size),
            no_space: AtomicBool::new(no_space),
            counters: Counters::default(),
            db_path,
        });
        let store = Store {
            inner: Arc::new(Inner {
                shared,
                proposer: OnceLock::new(),
                writer: Mutex::new(None),
                local_queue: Arc::new(Mutex::new(None)),
                in_use: Mutex::new(None),
                wal_start,
                config,
            }),
        };
        tokio::spawn(expire_leases(Arc::downgrade(&store.inner)));
        Ok(store)
    }

    /// Installs where commands go; only the first call takes effect.
    pub fn set_proposer(&self, proposer: Arc<dyn Proposer>) {
        let _ = self.inner.proposer.set(proposer);
    }

    fn proposer(&self) -> Result<&Arc<dyn Proposer>> {
        self.inner.proposer.get().ok_or(Error::Stopped)
    }

    /// The part shared with the replication layer's state machine.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Stops accepting writes, waits for queued ones to finish and joins the writer thread.
    pub fn shutdown(&self) {
        lock(&self.inner.local_queue).take();
        if let Some(handle) = lock(&self.inner.writer).take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.shared.hub
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.inner.shared.engine
    }

    /// Counters of the write path (group commit at work).
    pub fn write_stats(&self) -> WriteStats {
        let c = &self.inner.shared.counters;
        WriteStats {
            commits: c.commits.load(Ordering::Relaxed),
            proposals: c.proposals.load(Ordering::Relaxed),
            commit_nanos: c.commit_nanos.load(Ordering::Relaxed),
        }
    }

    pub fn member_id(&self) -> u64 {
        self.inner.config.member_id
    }

    /// Proposes a command and waits until it is applied and durable.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResponse> {
        self.check_quota(&cmd).await?;
        self.proposer()?.propose(cmd).await
    }

    async fn check_quota(&self, cmd: &Command) -> Result<()> {
        let grows = match cmd {
            Command::Put(_) | Command::LeaseGrant { .. } => true,
            Command::Txn(t) => !t.is_read_only(),
            _ => false,
        };
        if !grows {
            return Ok(());
        }
        if self.inner.shared.no_space.load(Ordering::Acquire) {
            return Err(Error::NoSpace);
        }
        // The file grows in large steps; only when it is past the quota is the (slower)
        // count of pages actually in use taken, and that decides.
        let quota = self.inner.config.quota_bytes;
        if self.inner.shared.db_size.load(Ordering::Acquire) > quota && self.in_use().await? > quota
        {
            let raise = Command::Alarm {
                activate: true,
                member: self.member_id(),
                alarm: AlarmType::NoSpace,
            };
            self.proposer()?.propose(raise).await?;
            return Err(Error::NoSpace);
        }
        Ok(())
    }

    /// Bytes in use, measured at most every [`IN_USE_REFRESH`] (measuring takes the write
    /// lock).
    async fn in_use(&self) -> Result<u64> {
        let cached = *lock(&self.inner.in_use);
        if let Some((at, bytes)) = cached
            && at.elapsed() < IN_USE_REFRESH
        {
            return Ok(bytes);
        }
        let bytes = self.size().await?.1;
        *lock(&self.inner.in_use) = Some((Instant::now(), bytes));
        Ok(bytes)
    }

    pub async fn put(&self, req: PutRequest) -> Result<PutResponse> {
        match self.propose(Command::Put(req)).await? {
            CommandResponse::Put(r) => Ok(r),
            _ => unreachable!("a put command yields a put response"),
        }
    }

    pub async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        match self.propose(Command::DeleteRange(req)).await? {
            CommandResponse::DeleteRange(r) => Ok(r),
            _ => unreachable!("a delete command yields a delete response"),
        }
    }

    /// A txn; read-only ones are served from a snapshot without taking the write path.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        if req.is_read_only() {
            self.proposer()?.read_barrier().await?;
            // As for a range of one key (see `Store::range`), for a few of them: a value
            // compare reads a row as a range does.
            if req.reads_single_keys()
                && req.reads() <= INLINE_TXN_READS
                && let Some(resp) = self.engine().try_read_only_txn(&req)
            {
                return resp;
            }
            let engine = self.engine().clone();
            return blocking(move || engine.read_only_txn(&req)).await;
        }
        match self.propose(Command::Txn(req)).await? {
            CommandResponse::Txn(r) => Ok(r),
            _ => unreachable!("a txn command yields a txn response"),
        }
    }

    pub async fn compact(&self, revision: i64) -> Result<i64> {
        match self.propose(Command::Compact { revision }).await? {
            CommandResponse::Compact { revision } => Ok(revision),
            _ => unreachable!("a compact command yields a compact response"),
        }
    }

    /// Grants a lease; `id == 0` picks a fresh random id. Returns (id, ttl, revision).
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> Result<(i64, i64, i64)> {
        let ttl = ttl.max(MIN_LEASE_TTL);
        for _ in 0..8 {
            let chosen = if id == 0 {
                (rand::random::<u64>() >> 1).max(1) as i64
            } else {
                id
            };
            match self.propose(Command::LeaseGrant { id: chosen, ttl }).await {
                Ok(CommandResponse::LeaseGrant { id, ttl, revision }) => {
                    return Ok((id, ttl, revision));
                }
                Err(Error::LeaseExists { .. }) if id == 0 => continue,
                Err(e) => return Err(e),
                Ok(_) => unreachable!("a grant command yields a grant response"),
            }
        }
        Err(Error::LeaseExists { id })
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<i64> {
        match self.propose(Command::LeaseRevoke { id }).await? {
            CommandResponse::LeaseRevoke { revision } => Ok(revision),
            _ => unreachable!("a revoke command yields a revoke response"),
        }
    }

    /// A keep-alive: the lease's TTL, or 0 if it does not exist.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        self.proposer()?.keep_alive(id).await
    }

    /// (remaining TTL, lease) or `None` for an unknown lease.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<Option<(i64, LeaseInfo)>> {
        let engine = self.engine().clone();
        let info = blocking(move || engine.lease(id, keys)).await?;
        let remaining = self.proposer()?.lease_remaining(id).await?;
        Ok(match (info, remaining) {
            (Some(info), Some(rem)) => Some((rem, info)),
            _ => None,
        })
    }

    pub async fn leases(&self) -> Result<Vec<i64>> {
        let engine = self.engine().clone();
        let leases = blocking(move || engine.leases()).await?;
        Ok(leases.into_iter().map(|(id, _)| id).collect())
    }

    /// Activates or deactivates an alarm; returns the alarms now active.
    pub async fn alarm(
        &self,
        activate: bool,
        member: u64,
        alarm: AlarmType,
    ) -> Result<Vec<(u64, AlarmType)>> {
        let cmd = Command::Alarm {
            activate,
            member,
            alarm,
        };
        match self.proposer()?.propose(cmd).await? {
            CommandResponse::Alarm { alarms, .. } => Ok(alarms),
            _ => unreachable!("an alarm command yields an alarm response"),
        }
    }

    pub async fn alarms(&self) -> Result<Vec<(u64, AlarmType)>> {
        let engine = self.engine().clone();
        blocking(move || engine.alarms()).await
    }

    /// A Range; unless `serializable`, it waits for the read barrier first, so it sees every
    /// write acknowledged before it started, on any member.
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        if !req.serializable {
            self.proposer()?.read_barrier().await?;
        }
        // One key is an index lookup and at most one row: served here, unless a writer holds
        // the index (an apply batch) — then on the blocking pool, like every wider range,
        // instead of holding up this thread. A row outside redb's cache is still read here
        // (one `pread`), and so is one whose page waits for redb to write out a durable
        // commit: bounded by the disk, but this thread's other tasks wait that long.
        if req.range_end.is_empty()
            && let Some(resp) = self.engine().try_range(&req)
        {
            return resp;
        }
        let engine = self.engine().clone();
        blocking(move || engine.range(&req)).await
    }

    pub async fn read_events(
        &self,
        from: i64,
        to: i64,
        max_events: usize,
    ) -> Result<Vec<RevisionEvents>> {
        let engine = self.engine().clone();
        blocking(move || engine.read_events(from, to, max_events)).await
    }

    /// [`Engine::fill_prev_kvs`].
    pub async fn fill_prev_kvs(
        &self,
        mut events: Vec<crate::types::Event>,
    ) -> Result<Vec<crate::types::Event>> {
        let engine = self.engine().clone();
        blocking(move || engine.fill_prev_kvs(&mut events).map(|()| events)).await
    }

    pub async fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64)> {
        let engine = self.engine().clone();
        blocking(move || engine.hash_kv(revision)).await
    }

    /// How many commands have been applied (reported as the raft index).
    pub async fn applied_index(&self) -> Result<i64> {
        let engine = self.engine().clone();
        blocking(move || engine.applied_index()).await
    }

    pub async fn hash(&self) -> Result<u32> {
        let engine = self.engine().clone();
        blocking(move || engine.hash()).await
    }

    /// (file size, bytes in use).
    pub async fn size(&self) -> Result<(u64, u64)> {
        let engine = self.engine().clone();
        blocking(move || engine.size()).await
    }

    pub async fn defragment(&self) -> Result<()> {
        let engine = self.engine().clone();
        let shared = self.inner.shared.clone();
        blocking(move || {
            engine.defragment()?;
            shared.db_size.store(engine.size()?.0, Ordering::Release);
            Ok(())
        })
        .await
    }

    /// A consistent snapshot framed like etcd's (`etcdctl snapshot save` accepts it).
    pub async fn snapshot(&self) -> Result<Vec<u8>> {
        let engine = self.engine().clone();
        blocking(move || {
            let mut payload = Vec::new();
            engine.write_snapshot(&mut payload)?;
            Ok(frame_snapshot(payload))
        })
        .await
    }
}

/// Single-key compares and ranges a read-only txn may have and still be served on the
/// request's thread.
const INLINE_TXN_READS: usize = 8;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(Error::Stopped))
}

/// The single-member proposer: it queues a proposal, then commits it itself if no one else
/// is committing (see [`Committer`]).
struct LocalProposer {
    queue: Arc<Mutex<Option<mpsc::Sender<Proposal>>>>,
    committer: Arc<Committer>,
    shared: Arc<Shared>,
}

impl Proposer for LocalProposer {
    fn propose(&self, cmd: Command) -> ProposeFuture<CommandResponse> {
        let tx = lock(&self.queue).clone();
        let committer = Arc::clone(&self.committer);
        Box::pin(async move {
            let tx = tx.ok_or(Error::Stopped)?;
            let (reply, rx) = oneshot::channel();
            tx.send(Proposal { cmd, reply })
                .await
                .map_err(|_| Error::Stopped)?;
            drop(tx);
            committer.commit_here();
            rx.await.map_err(|_| Error::Stopped)?
        })
    }

    fn read_barrier(&self) -> ProposeFuture<()> {
        // Replies are sent after commit and reads see every commit: nothing to wait for.
        Box::pin(std::future::ready(Ok(())))
    }

    fn keep_alive(&self, id: i64) -> ProposeFuture<i64> {
        let ttl = self.shared.renew_lease(id);
        Box::pin(std::future::ready(Ok(ttl)))
    }

    fn lease_remaining(&self, id: i64) -> ProposeFuture<Option<i64>> {
        let remaining = self.shared.lease_remaining(id);
        Box::pin(std::future::ready(Ok(remaining)))
    }

    fn is_leader(&self) -> bool {
        true
    }
}

/// Most proposals a proposer commits on its own thread in one batch; the writer thread
/// takes the rest.
const MAX_BATCH_HERE: usize = 64;

/// The average batch, in sixteenths of a proposal, from which proposers leave commits to
/// the writer thread: one and a half proposals.
const CROWDED: u32 = 24;

/// How long the writer thread sleeps unwoken before it looks at the queue anyway (a
/// proposal cancelled before it was queued wakes no one, and shutdown waits for its
/// sender to go).
#[cfg(not(test))]
const WRITER_IDLE_CHECK: Duration = Duration::from_millis(100);

/// In tests, a missed wake-up must not pass unseen: it leaves a write unanswered.
#[cfg(test)]
const WRITER_IDLE_CHECK: Duration = Duration::from_secs(3600);

/// Commits the single member's proposals. Whoever holds the [`Writer`] takes a batch off
/// the queue, starts writing its log record, applies it to redb (unsynced, unrevealed)
/// while the disk writes, then reveals it, publishes it and answers — on one thread.
///
/// A proposer that finds the writer free commits on its own thread (a gRPC worker), so a
/// lone write wakes no other thread. While a commit is under way, proposers queue and wake
/// the writer thread, which commits what they left: it holds the writer as long as
/// proposals keep coming, so under load batches grow as they did with a dedicated thread.
/// Compactions and checkpoints (syncing redb, then dropping old log segments) are always
/// the writer thread's: they can take long. So is a batch that finds the engine held by a
/// sync, a defragmentation or a snapshot, for as long as they take: a proposer takes the
/// engine's [`ApplyGate`] before it logs anything, or leaves the batch to the writer
/// thread. A proposer's commit may still move the log to its next segment, which is made
/// ahead of time in the background.
struct Committer {
    writer: Mutex<Writer>,
    /// The writer thread, once started.
    thread: OnceLock<std::thread::Thread>,
    /// Proposals per batch lately, in sixteenths (a moving average over about eight
    /// batches). From [`CROWDED`] on, writes are arriving together and proposers leave the
    /// commits to the writer thread: one proposer committing on its own thread would
    /// commit a batch of one while the others queue, so batches would be more and smaller
    /// (16 clients' puts 12% slower on 2 cores, measured).
    batch_size: AtomicU32,
}

impl Committer {
    /// After queueing a proposal: commits a batch here if no one else is committing; if
    /// someone is (or work is left for the writer thread), wakes the writer thread.
    ///
    /// No proposal is left unseen: a proposer queues before it tries the lock, and a holder
    /// looks at the queue before it lets go; one of the two sees the other.
    fn commit_here(&self) {
        if self.batch_size.load(Ordering::Relaxed) >= CROWDED {
            return self.wake();
        }
        let mut writer = match self.writer.try_lock() {
            Ok(writer) => writer,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return self.wake(),
        };
        if let Some(batch) = writer.take_batch(MAX_BATCH_HERE) {
            let shared = Arc::clone(&writer.shared);
            // A compaction, or a database held by a sync, a defragmentation or a snapshot
            // (which can take seconds), is the writer thread's to wait for, not this
            // gRPC worker's.
            let gate = shared.engine.try_apply_gate();
            match gate {
                Some(gate) if !batch.iter().any(|p| compacts(&p.cmd)) => {
                    self.commit(&mut writer, batch, Some(gate));
                }
                _ => writer.carried = Some(batch),
            }
        }
        let left = writer.has_work();
        drop(writer);
        if left {
            self.wake();
        }
    }

    /// Commits `batch`, applying it under `gate` if given (else under the gate once free).
    fn commit(&self, writer: &mut Writer, batch: Vec<Proposal>, gate: Option<ApplyGate<'_>>) {
        let size = u32::try_from(batch.len())
            .unwrap_or(u32::MAX)
            .saturating_mul(16);
        let average = self.batch_size.load(Ordering::Relaxed);
        self.batch_size
            .store(average - average / 8 + size / 8, Ordering::Relaxed);
        // A panic midway leaves the log, redb and the index out of step: nothing more is
        // written (the batch's proposers, their replies dropped, see the write stopped).
        let committed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.commit(batch, gate)));
        if committed.is_err() {
            writer.fail(&Error::Io {
                context: "committing a batch",
                source: std::io::Error::other("the commit panicked"),
            });
        }
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// The writer thread: commits whatever proposers leave, until the queue is closed and
    /// drained.
    fn run(&self) {
        loop {
            let mut writer = lock(&self.writer);
            loop {
                // Before the next batch: under load the queue is never empty.
                if let Some(segment) = writer.checkpoint_due.take() {
                    writer.checkpoint(segment);
                }
                let Some(batch) = writer.take_batch(MAX_BATCH) else {
                    break;
                };
                self.commit(&mut writer, batch, None);
            }
            if writer.closed {
                writer.close();
                return;
            }
            drop(writer);
            std::thread::park_timeout(WRITER_IDLE_CHECK);
        }
    }
}

/// Writes and syncs one record, running the given work while the disk writes (see
/// [`Wal::append_during`]).
type Append = Box<dyn FnMut(&[u8], &mut dyn FnMut()) -> std::io::Result<Appended> + Send>;

/// The state of the single member's write path, held by whoever commits (see
/// [`Committer`]).
struct Writer {
    shared: Arc<Shared>,
    queue: mpsc::Receiver<Proposal>,
    /// A batch taken off the queue for the writer thread to commit.
    carried: Option<Vec<Proposal>>,
    /// `None` once the writer is closed.
    append: Option<Append>,
    /// The sequence number of the next record.
    next_seq: u64,
    wal_dir: PathBuf,
    /// The log moved to this segment since the last checkpoint.
    checkpoint_due: Option<u64>,
    /// Every sender is gone and the queue is drained.
    closed: bool,
    /// A batch may be in redb (unsynced, unrevealed) without its log record: nothing more
    /// may be written, and redb must never be synced.
    failed: bool,
}

impl Writer {
    /// The next batch: the carried one, else up to `max` proposals off the queue.
    fn take_batch(&mut self, max: usize) -> Option<Vec<Proposal>> {
        if let Some(batch) = self.carried.take() {
            return Some(batch);
        }
        let mut batch = Vec::new();
        while batch.len() < max {
            match self.queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
        (!batch.is_empty()).then_some(batch)
    }

    /// Whether the writer thread has something to do.
    fn has_work(&self) -> bool {
        self.carried.is_some()
            || self.checkpoint_due.is_some()
            || self.closed
            || !self.queue.is_empty()
    }

    fn commit(&mut self, batch: Vec<Proposal>, gate: Option<ApplyGate<'_>>) {
        if self.failed || self.append.is_none() {
            return refuse(batch, &log_failed());
        }
        let cmds: Vec<&Command> = batch.iter().map(|p| &p.cmd).collect();
        match self.log_and_apply(&cmds, gate) {
            Ok(responses) => {
                for (p, resp) in batch.into_iter().zip(responses) {
                    let _ = p.reply.send(resp);
                }
            }
            Err(e) => refuse(batch, &e),
        }
    }

    /// Logs the batch and, while the disk writes its record, applies it to redb unsynced
    /// and unrevealed; reveals it once the record is durable. A batch that compacts is
    /// applied after the write instead: a compaction shows as soon as it is applied. The
    /// apply takes `gate` if given, else waits for the engine's.
    fn log_and_apply(
        &mut self,
        cmds: &[&Command],
        mut gate: Option<ApplyGate<'_>>,
    ) -> Result<Vec<Result<CommandResponse>>> {
        let record = encode_record(&LocalRecordRef::Batch(cmds)).inspect_err(|e| {
            tracing::error!(error = %e, "encoding a batch failed; nothing of it was logged");
        })?;
        let seq = self.next_seq;
        let row = seq.to_be_bytes();
        let replication = [(LOCAL_WAL, row.as_slice())];
        let compacts = cmds.iter().any(|c| compacts(c));
        let shared = Arc::clone(&self.shared);
        let mut applied = None;
        let logged = self.append(&record, seq, &mut || {
            if !compacts {
                applied = Some(shared.apply_unrevealed(
                    gate.take(),
                    cmds,
                    Durability::None,
                    &replication,
                ));
            }
        });
        let logged = match logged {
            Ok(logged) => logged,
            Err(e) => {
                // Not durable, so no one may see it, and redb must never make it durable:
                // no more writes in this process. Closing the database would make its
                // unsynced commits durable, so an applied batch keeps it open until the
                // process exits; the next open rolls back to the last synced commit and
                // replays the log. (The applied batch, dropped unrevealed, makes the engine
                // refuse syncs, defragmentation and snapshots.)
                if let Some(Ok(_)) = &applied {
                    std::mem::forget(Arc::clone(&shared.engine));
                }
                self.fail(&e);
                return Err(e);
            }
        };
        let applied = applied.unwrap_or_else(|| {
            shared.apply_unrevealed(gate.take(), cmds, Durability::None, &replication)
        });
        match applied {
            Ok((batch, unrevealed)) => {
                unrevealed.reveal();
                let responses = shared.publish(cmds, batch);
                if logged.rotated {
                    self.checkpoint_after(logged.segment);
                }
                Ok(responses)
            }
            Err(e) => {
                // Logged but not applied: a replay must not apply it either.
                tracing::error!(error = %e, "redb refused a logged batch; aborting it");
                self.abort(seq, logged);
                Err(e)
            }
        }
    }

    /// Writes and syncs `record`, numbered `seq`, running `during` while the disk works.
    fn append(&mut self, record: &[u8], seq: u64, during: &mut dyn FnMut()) -> Result<Appended> {
        let append = self.append.as_mut().ok_or(Error::Stopped)?;
        let logged = append(record, during).map_err(wal_error("writing the write-ahead log"))?;
        if logged.last_seq != seq {
            return Err(Error::Io {
                context: "writing the write-ahead log",
                source: std::io::Error::other(format!(
                    "record {} logged where {seq} was expected",
                    logged.last_seq
                )),
            });
        }
        self.next_seq = seq + 1;
        Ok(logged)
    }

    /// Logs that the batch numbered `seq` was not applied. If that fails, nothing more is
    /// written: a replay would apply the batch, out of order. `logged` is where the batch's
    /// own record went.
    fn abort(&mut self, seq: u64, logged: Appended) {
        let aborted = encode_record(&LocalRecordRef::Abort { seq })
            .and_then(|record| self.append(&record, seq + 1, &mut || {}));
        match aborted {
            Ok(aborted) => {
                if logged.rotated || aborted.rotated {
                    self.checkpoint_after(aborted.segment);
                }
            }
            Err(e) => self.fail(&e),
        }
    }

    /// Stops all writing in this process.
    fn fail(&mut self, e: &Error) {
        self.failed = true;
        tracing::error!(error = %e, "the write-ahead log failed; restart the member");
    }

    /// Asks the writer thread for a checkpoint once the log has moved to `segment`.
    fn checkpoint_after(&mut self, segment: u64) {
        self.checkpoint_due = self.checkpoint_due.max(Some(segment));
    }

    /// Makes redb durable up to now, so the log segments before `segment` are not needed.
    fn checkpoint(&self, segment: u64) {
        if self.failed {
            return;
        }
        match self.shared.engine.sync() {
            Ok(()) => {
                if let Err(e) = wal::remove_segments_below(&self.wal_dir, segment) {
                    tracing::warn!(error = %e, "removing synced write-ahead log segments failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "syncing the store for a checkpoint failed"),
        }
    }

    /// Once every proposal is answered: syncs redb (a clean stop leaves nothing to replay)
    /// and closes the log.
    fn close(&mut self) {
        if !self.failed
            && let Err(e) = self.shared.engine.sync()
        {
            tracing::warn!(error = %e, "syncing the store on shutdown failed");
        }
        self.append = None;
    }
}

/// Whether `cmd` compacts: it shows as soon as it is applied, so it is applied after its
/// log record is durable, on the writer thread.
fn compacts(cmd: &Command) -> bool {
    matches!(cmd, Command::Compact { .. })
}

/// The error every write gets once the log has failed.
fn log_failed() -> Error {
    Error::Io {
        context: "writing the write-ahead log",
        source: std::io::Error::other(
            "an earlier write-ahead log write failed; restart the member",
        ),
    }
}

/// Answers every proposal of a batch that failed (the failure is logged where it happened).
fn refuse(batch: Vec<Proposal>, e: &Error) {
    let msg = e.to_string();
    for p in batch {
        let _ = p.reply.send(Err(Error::Io {
            context: "applying a batch",
            source: std::io::Error::other(msg.clone()),
        }));
    }
}

/// Proposes a revoke for every lease past its deadline.
///
/// The leader also checkpoints the seconds left on every lease every
/// [`LEASE_CHECKPOINT_INTERVAL`], so that a new leader continues their countdown.
async fn expire_leases(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_checkpoint = Instant::now();
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let store = Store { inner };
        if !store.proposer().is_ok_and(|p| p.is_leader()) {
            continue;
        }
        if last_checkpoint.elapsed() >= LEASE_CHECKPOINT_INTERVAL {
            last_checkpoint = Instant::now();
            let remaining = lock(&store.inner.shared.lessor).checkpoint(Instant::now());
            if !remaining.is_empty()
                && let Err(e) = store.propose(Command::LeaseCheckpoint { remaining }).await
            {
                tracing::debug!(error = %e, "checkpointing leases failed");
            }
        }
        let due = lock(&store.inner.shared.lessor).take_expired(Instant::now());
        for id in due {
            match store.propose(Command::LeaseRevoke { id }).await {
                Ok(_) | Err(Error::LeaseNotFound { .. }) => {
                    lock(&store.inner.shared.lessor).forget(id);
                }
                Err(Error::Stopped) => return,
                Err(e) => {
                    tracing::warn!(lease = id, error = %e, "revoking an expired lease failed");
                    lock(&store.inner.shared.lessor).retry(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> Command {
        Command::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ..PutRequest::default()
        })
    }

    async fn revision_of(store: &Store, key: &str) -> Option<i64> {
        let found = store
            .range(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..RangeRequest::default()
            })
            .await
            .ok()?;
        found.kvs.first().map(|kv| kv.mod_revision)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_returns_once_the_log_is_closed_and_its_spare_segment_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path())).expect("open");
        store.propose(put("a")).await.expect("put a");
        store.shutdown();
        let mut files: Vec<String> = std::fs::read_dir(dir.path().join("wal"))
            .expect("wal dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        // A spare still being made would appear later, under a number a reopened log uses.
        assert_eq!(files, ["0000000000000001.wal", "0000000000000002.wal"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_put_leaves_a_held_database_to_the_writer_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path())).expect("open");
        // Held as a defragmentation or a snapshot holds it, for as long as they take.
        let gate = store.engine().apply_gate();
        let (polled, first_poll) = std::sync::mpsc::channel();
        let proposer = {
            let store = store.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    let mut put = std::pin::pin!(store.propose(put("k")));
                    let _ = polled.send(futures::poll!(put.as_mut()).is_pending());
                    put.await
                })
            })
        };
        let pending = first_poll
            .recv_timeout(Duration::from_secs(10))
            .expect("the put blocked its thread (a gRPC worker) while the database was held");
        assert!(pending, "the put was answered while the database was held");
        drop(gate);
        match proposer.join().expect("proposer thread") {
            Ok(CommandResponse::Put(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
        store.shutdown();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_proposals_each_commit_once_whoever_commits_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path())).expect("open");
        let mut tasks = Vec::new();
        for t in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..100 {
                    let cmd = if t == 0 && i % 10 == 9 {
                        // Compactions take the writer thread's way.
                        let (revision, _) = store.engine().revisions().expect("revisions");
                        Command::Compact { revision }
                    } else {
                        put(&format!("k{t}-{i}"))
                    };
                    match store.propose(cmd).await.expect("committed") {
                        CommandResponse::Put(r) => revisions.push(r.revision),
                        CommandResponse::Compact { .. } => {}
                        other => panic!("unexpected response {other:?}"),
                    }
                }
                revisions
            }));
        }
        // The writer thread's idle check is an hour long in tests: a proposal that woke no
        // one stays unanswered.
        let answered = tokio::time::timeout(Duration::from_secs(60), async {
            let mut revisions = Vec::new();
            for task in tasks {
                revisions.extend(task.await.expect("task"));
            }
            // Then one writer alone again: its proposer commits, and leaves its compaction
            // to the writer thread, which only it can wake.
            for i in 0..50 {
                match store.propose(put(&format!("k-alone-{i}"))).await {
                    Ok(CommandResponse::Put(r)) => revisions.push(r.revision),
                    other => panic!("unexpected {other:?}"),
                }
            }
            let (revision, _) = store.engine().revisions().expect("revisions");
            store
                .propose(Command::Compact { revision })
                .await
                .expect("compacted");
            revisions
        });
        let mut revisions = answered
            .await
            .expect("a write went unanswered: a wake-up was missed");
        revisions.sort_unstable();
        let puts = 16 * 100 - 10 + 50;
        assert_eq!(
            revisions,
            (2..2 + puts as i64).collect::<Vec<_>>(),
            "every put has a revision of its own, none skipped"
        );
        let stats = store.write_stats();
        assert_eq!(stats.proposals, 16 * 100 + 50 + 1);
        // Shutdown with writes still arriving: they are answered, or refused as stopped.
        let late: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.propose(put(&format!("late{i}"))).await })
            })
            .collect();
        store.shutdown();
        for task in late {
            match task.await.expect("task") {
                Ok(_) | Err(Error::Stopped) => {}
                Err(e) => panic!("a late write failed: {e}"),
            }
        }
        drop(store);
        let store = Store::open(StoreConfig::new(dir.path())).expect("reopen");
        let all = store
            .range(RangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                count_only: true,
                ..RangeRequest::default()
            })
            .await
            .expect("range");
        assert_eq!(
            all.count, puts as i64,
            "every acknowledged put survives a reopen"
        );
    }

    /// The files of `dir` as a crash or restart would find them now.
    fn copy_of(dir: &std::path::Path) -> tempfile::TempDir {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_dir(dir, copy.path());
        copy
    }

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                std::fs::create_dir_all(&target).expect("mkdir");
                copy_dir(&entry.path(), &target);
            } else {
                match std::fs::copy(entry.path(), &target) {
                    // The log's spare segment, renamed as it was read: a crash before it
                    // was made.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    copied => {
                        copied.expect("copy");
                    }
                }
            }
        }
    }

    /// Appends batches (and aborts) to the log of `dir` the way the writer does, as if redb
    /// lost them in a crash: the log continues from what the store recorded as applied.
    fn log_unsynced(dir: &std::path::Path, records: &[LocalRecordRef<'_>], torn_tail: bool) {
        let engine = Engine::open(&dir.join("stead.redb"), &EngineOptions::default())
            .expect("open the engine");
        let applied = engine
            .replication(LOCAL_WAL)
            .expect("replication row")
            .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
        drop(engine);
        let wal_dir = dir.join("wal");
        let next = Wal::read(&wal_dir).expect("read").next_segment();
        let mut wal = Wal::create(&wal_dir, next, applied + 1).expect("create");
        for record in records {
            let bytes = encode_record(record).expect("encode");
            wal.append(&[&bytes], &[], true).expect("append");
        }
        if torn_tail {
            // A batch whose write was cut short: a length and no payload.
            let bytes = encode_record(&LocalRecordRef::Batch(&[&put("torn")])).expect("encode");
            let mut head = (bytes.len() as u32).to_le_bytes().to_vec();
            head.extend_from_slice(&[0xab; 12]);
            wal.append(&[], &[], true).expect("nothing");
            drop(wal);
            let path = wal_dir.join(format!("{next:016x}.wal"));
            let mut segment = std::fs::read(&path).expect("segment");
            let end = segment
                .windows(16)
                .rposition(|w| w.iter().any(|b| *b != 0))
                .map_or(0, |p| p + 16);
            segment[end..end + head.len()].copy_from_slice(&head);
            std::fs::write(&path, segment).expect("write");
        }
    }

    /// A store in `dir` whose log fails every append after the first `good` ones.
    fn store_whose_log_fails_after(dir: &std::path::Path, good: usize) -> Store {
        let config = StoreConfig::new(dir);
        let store = Store::open_unstarted(config.clone()).expect("open");
        let start = store.inner.wal_start;
        let mut wal = Wal::create(&wal_dir(&config), start.segment, start.seq).expect("create");
        let mut appends = 0;
        store
            .start_writer(move |record, during| {
                appends += 1;
                if appends > good {
                    // As when the disk fails the write the batch was applied beside.
                    during();
                    return Err(std::io::Error::other("injected: the flush failed"));
                }
                wal.append_during(&[record], during)
            })
            .expect("start");
        store
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compaction_whose_log_write_fails_never_shows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_whose_log_fails_after(dir.path(), 2);
        store.propose(put("a")).await.expect("put a");
        store.propose(put("a")).await.expect("put a again");
        store
            .propose(Command::Compact { revision: 3 })
            .await
            .expect_err("the log failed");
        assert_eq!(store.engine().revisions().expect("revisions"), (3, 0));
        let at_two = store
            .range(RangeRequest {
                key: b"a".to_vec(),
                revision: 2,
                ..RangeRequest::default()
            })
            .await
            .expect("revision 2 is not compacted");
        assert_eq!(at_two.kvs.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_redb_refuses_after_it_is_logged_is_aborted_and_never_replayed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path())).expect("open");
        store.propose(put("a")).await.expect("put a");
        store.engine().failing_applies.store(1, Ordering::Release);
        let refused = store.propose(put("b")).await.expect_err("redb refused b");
        assert!(refused.to_string().contains("injected"), "{refused}");
        store.propose(put("c")).await.expect("writes go on");
        assert_eq!(revision_of(&store, "b").await, None);
        assert_eq!(revision_of(&store, "c").await, Some(3));

        // A crash now: redb rolls back to its last synced commit and the log is replayed.
        let crashed = copy_of(dir.path());
        store.shutdown();
        let store = Store::open(StoreConfig::new(crashed.path())).expect("reopen");
        assert_eq!(revision_of(&store, "a").await, Some(2));
        assert_eq!(
            revision_of(&store, "b").await,
            None,
            "the refused batch came back"
        );
        assert_eq!(revision_of(&store, "c").await, Some(3), "c moved");
        store.propose(put("d")).await.expect("put d");
        assert_eq!(revision_of(&store, "d").await, Some(4));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn old_log_segments_go_while_writes_keep_coming() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig::new(dir.path());
        let store = Store::open_unstarted(config.clone()).expect("open");
        let start = store.inner.wal_start;
        let wal_dir = wal_dir(&config);
        // Segments of one block: nearly every batch moves the log to a new one.
        let mut wal = Wal::create_sized(&wal_dir, start.segment, start.seq, 4096).expect("create");
        store
            .start_writer(move |record, during| wal.append_during(&[record], during))
            .expect("start");
        let writing = Arc::new(AtomicBool::new(true));
        let counting = {
            let (writing, wal_dir) = (Arc::clone(&writing), wal_dir.clone());
            std::thread::spawn(move || {
                let mut most = 0;
                while writing.load(Ordering::Acquire) {
                    let segments = std::fs::read_dir(&wal_dir).map_or(0, |d| d.count());
                    most = most.max(segments);
                    std::thread::sleep(Duration::from_millis(1));
                }
                most
            })
        };
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..150 {
                        store.propose(put(&format!("k{t}-{i}"))).await.expect("put");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        writing.store(false, Ordering::Release);
        let most = counting.join().expect("counting");
        // The current segment, the spare being made, and one left for the next checkpoint.
        assert!(
            most <= 6,
            "{most} log segments at once: checkpoints waited for the writes to stop"
        );
        store.shutdown();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_panics_stops_all_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path())).expect("open");
        store.propose(put("a")).await.expect("put a");
        store
            .engine()
            .panicking_apply
            .store(true, Ordering::Release);
        let stopped = store
            .propose(put("b"))
            .await
            .expect_err("b's commit panicked");
        assert!(matches!(stopped, Error::Stopped), "{stopped}");
        let refused = store.propose(put("c")).await.expect_err("writing stopped");
        assert!(refused.to_string().contains("restart"), "{refused}");
        assert_eq!(revision_of(&store, "b").await, None);
        assert_eq!(revision_of(&store, "c").await, None);
        assert_eq!(store.engine().revisions().expect("revisions"), (2, 0));
        store.shutdown();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_whose_log_write_fails_is_never_seen_nor_made_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_whose_log_fails_after(dir.path(), 1);
        store.propose(put("a")).await.expect("put a");
        // redb applies this batch while its log record is (not) being written.
        let failed = store.propose(put("b")).await.expect_err("the log failed");
        assert!(failed.to_string().contains("injected"), "{failed}");
        assert_eq!(
            revision_of(&store, "b").await,
            None,
            "seen before it was durable"
        );
        let (revision, _) = store.engine().revisions().expect("revisions");
        assert_eq!(revision, 2, "the revision readers see");
        let refused = store
            .propose(put("c"))
            .await
            .expect_err("the log failed earlier");
        assert!(refused.to_string().contains("restart"), "{refused}");
        store
            .defragment()
            .await
            .expect_err("would make the unlogged batch durable");
        store
            .snapshot()
            .await
            .expect_err("would copy the unlogged batch");
        store.shutdown();
        drop(store);

        // What a restart finds once this process exits: the files as they are now (the
        // database stays open here, so that closing it cannot make the batch durable).
        let restarted = copy_of(dir.path());
        let store = Store::open(StoreConfig::new(restarted.path())).expect("reopen");
        assert_eq!(revision_of(&store, "a").await, Some(2));
        assert_eq!(
            revision_of(&store, "b").await,
            None,
            "made durable without its log"
        );
        store.propose(put("c")).await.expect("put c");
        assert_eq!(revision_of(&store, "c").await, Some(3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logged_batches_redb_lost_are_applied_again_on_open_in_order_without_aborted_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path())).expect("open");
        store.propose(put("a")).await.expect("put a");
        store.shutdown();
        drop(store);

        let (b, c) = (put("b"), put("c"));
        let (d, e) = (put("d"), put("e"));
        log_unsynced(
            dir.path(),
            &[
                LocalRecordRef::Batch(&[&b, &c]),
                LocalRecordRef::Batch(&[&d]),
                // The seq of the `d` batch: applied by no one, answered with an error.
                LocalRecordRef::Abort { seq: 3 },
                LocalRecordRef::Batch(&[&e]),
            ],
            true,
        );
        let store = Store::open(StoreConfig::new(dir.path())).expect("reopen");
        let revisions = [
            revision_of(&store, "a").await,
            revision_of(&store, "b").await,
            revision_of(&store, "c").await,
            revision_of(&store, "d").await,
            revision_of(&store, "e").await,
            revision_of(&store, "torn").await,
        ];
        assert_eq!(
            revisions,
            [Some(2), Some(3), Some(4), None, Some(5), None],
            "a, b and c in order, d aborted, e, the torn batch never acknowledged"
        );
        // The log restarted above everything applied: new writes survive another recovery.
        store.propose(put("f")).await.expect("put f");
        let (g, h) = (put("g"), put("h"));
        store.shutdown();
        drop(store);
        log_unsynced(dir.path(), &[LocalRecordRef::Batch(&[&g, &h])], false);
        let store = Store::open(StoreConfig::new(dir.path())).expect("reopen");
        assert_eq!(revision_of(&store, "f").await, Some(6));
        assert_eq!(revision_of(&store, "h").await, Some(8));
        let segments = Wal::read(&dir.path().join("wal")).expect("read").records;
        assert!(
            segments.is_empty(),
            "recovery leaves an empty log: {segments:?}"
        );
    }
}
