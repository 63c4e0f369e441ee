//! [`StateMachine`]: committed log entries applied to the MVCC engine through
//! [`Shared::apply`], the same path a single member uses.
//!
//! # Correctness
//! - One engine transaction per applied batch records the data, the last applied log id and
//!   the membership together, so after a crash they agree and openraft re-applies exactly
//!   what is missing.
//! - The Raft log is the durable record: entries are applied only once committed, and a
//!   committed entry is fsynced in a quorum's logs. Applies therefore commit without an
//!   fsync of their own (at least one per [`SYNC_EVERY`] makes the state durable too), and
//!   what a crash takes back is re-applied from the log. The log is purged only behind a
//!   snapshot, which is written and fsynced on its own, so nothing needed for re-applying
//!   is ever gone.
//! - Replies are sent only after that transaction commits.
//! - The current snapshot is kept in a file (`snapshot.bin`, replaced atomically) so a
//!   member can still serve it after a restart once the log behind it is purged.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::Durability;

use super::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, decode, encode};
use crate::lock;
use crate::store::Shared;
use crate::types::Command;

const APPLIED: &str = "raft.applied";

/// Longest time the state may go without a durable commit (bounds re-apply after a crash).
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const MEMBERSHIP: &str = "raft.membership";

/// A built or installed snapshot: its metadata and payload.
type CurrentSnapshot = (SnapshotMeta, Arc<Vec<u8>>);

/// Applies committed entries; cheap to clone (the snapshot builder is a clone).
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
    snapshot_path: PathBuf,
    /// The current snapshot, loaded lazily from `snapshot_path`.
    current: Arc<Mutex<Option<CurrentSnapshot>>>,
    /// When the state last committed durably.
    last_sync: Arc<Mutex<std::time::Instant>>,
}

fn store_err(e: crate::Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl StateMachine {
    pub fn new(shared: Arc<Shared>, data_dir: &std::path::Path) -> io::Result<Self> {
        let snapshot_path = data_dir.join("snapshot.bin");
        let current = match std::fs::read(&snapshot_path) {
            Ok(bytes) => Some(decode_snapshot_file(&bytes)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(StateMachine {
            shared,
            snapshot_path,
            current: Arc::new(Mutex::new(current)),
            last_sync: Arc::new(Mutex::new(std::time::Instant::now())),
        })
    }

    /// Persists `meta`/`data` as the current snapshot unless a newer one is already current.
    /// Builds and installs may race; holding `current` throughout serializes them.
    fn save_current(&self, meta: &SnapshotMeta, data: &Arc<Vec<u8>>) -> io::Result<()> {
        let mut current = lock(&self.current);
        if let Some((existing, _)) = current.as_ref()
            && existing.last_log_id > meta.last_log_id
        {
            return Ok(());
        }
        let meta_json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        let mut file = Vec::with_capacity(4 + meta_json.len() + data.len());
        file.extend_from_slice(&(meta_json.len() as u32).to_le_bytes());
        file.extend_from_slice(&meta_json);
        file.extend_from_slice(data);
        let tmp = self.snapshot_path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&file)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.snapshot_path)?;
        if let Some(dir) = self.snapshot_path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        *current = Some((meta.clone(), data.clone()));
        Ok(())
    }
}

impl StateMachine {
    /// [`StateMachine::save_current`] on a blocking thread: it writes and fsyncs a file.
    async fn save_current_blocking(
        &self,
        meta: SnapshotMeta,
        data: Arc<Vec<u8>>,
    ) -> io::Result<()> {
        let sm = self.clone();
        tokio::task::spawn_blocking(move || sm.save_current(&meta, &data))
            .await
            .map_err(io::Error::other)?
    }
}

fn decode_snapshot_file(bytes: &[u8]) -> io::Result<(SnapshotMeta, Arc<Vec<u8>>)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "damaged snapshot file");
    let (len, rest) = bytes.split_at_checked(4).ok_or_else(bad)?;
    let mut buf = [0u8; 4];
    buf.copy_from_slice(len);
    let (meta, data) = rest
        .split_at_checked(u32::from_le_bytes(buf) as usize)
        .ok_or_else(bad)?;
    let meta = serde_json::from_slice(meta).map_err(io::Error::other)?;
    Ok((meta, Arc::new(data.to_vec())))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let engine = self.shared.engine().clone();
        let (data, rows) = tokio::task::spawn_blocking(move || {
            let mut data = Vec::new();
            let (_, rows) = engine
                .write_snapshot_reading(&mut data, &[APPLIED, MEMBERSHIP])
                .map_err(store_err)?;
            Ok::<_, io::Error>((data, rows))
        })
        .await
        .map_err(io::Error::other)??;
        let last_log_id: Option<LogId> = match &rows[0] {
            Some(raw) => decode(raw)?,
            None => None,
        };
        let last_membership: StoredMembership = match &rows[1] {
            Some(raw) => decode(raw)?,
            None => StoredMembership::default(),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
        };
        let data = Arc::new(data);
        self.save_current_blocking(meta.clone(), data.clone())
            .await?;
        Ok(Snapshot {
            meta,
            snapshot: data.as_ref().clone(),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let engine = self.shared.engine();
        let applied = match engine.replication(APPLIED).map_err(store_err)? {
            Some(raw) => decode(&raw)?,
            None => None,
        };
        let membership = match engine.replication(MEMBERSHIP).map_err(store_err)? {
            Some(raw) => decode(&raw)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: futures::Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let mut commands: Vec<Command> = Vec::new();
        // For each entry with a waiting caller: its responder and its command's position.
        let mut waiting = Vec::new();
        let mut last = None;
        let mut membership = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            last = Some(entry.log_id);
            let slot = match entry.payload {
                EntryPayload::Normal(cmd) => {
                    commands.push(cmd);
                    Some(commands.len() - 1)
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    None
                }
                EntryPayload::Blank => None,
            };
            if let Some(r) = responder {
                waiting.push((r, slot));
            }
        }
        let Some(last) = last else { return Ok(()) };
        let mut rows = vec![(APPLIED, encode(&Some(last))?)];
        if let Some(m) = &membership {
            rows.push((MEMBERSHIP, encode(m)?));
        }
        let durability = {
            let mut last = lock(&self.last_sync);
            if last.elapsed() >= SYNC_EVERY || membership.is_some() {
                *last = std::time::Instant::now();
                Durability::Immediate
            } else {
                Durability::None
            }
        };
        let shared = self.shared.clone();
        let responses = tokio::task::spawn_blocking(move || {
            let cmds: Vec<&Command> = commands.iter().collect();
            let rows: Vec<(&str, &[u8])> = rows.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            shared.apply(&cmds, durability, &rows)
        })
        .await
        .map_err(io::Error::other)?
        .map_err(store_err)?;
        let mut replies: Vec<Option<_>> = responses.into_iter().map(Some).collect();
        for (responder, slot) in waiting {
            let reply = slot
                .and_then(|i| replies.get_mut(i).and_then(Option::take))
                .map(|r| {
                    r.map_err(|e| {
                        e.to_command_error()
                            .unwrap_or(crate::types::CommandError::NoSpace)
                    })
                });
            responder.send(reply);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<()> {
        let shared = self.shared.clone();
        let data = Arc::new(snapshot);
        let restore = data.clone();
        tokio::task::spawn_blocking(move || {
            shared
                .engine()
                .restore_snapshot(&mut restore.as_slice())
                .map_err(store_err)?;
            shared.reload().map_err(store_err)
        })
        .await
        .map_err(io::Error::other)??;
        self.save_current_blocking(meta.clone(), data).await
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        Ok(lock(&self.current).as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: data.as_ref().clone(),
        }))
    }
}
