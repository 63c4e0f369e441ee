//! Replication with openraft: the Raft log in a write-ahead log and the MVCC engine as the state
//! machine. The network (peer RPCs) lives in the server, which owns every socket.
//!
//! ```text
//!  client_write(Command) ─► leader log (raft/, fsync) ─► followers' logs (fsync)
//!                                   │ committed
//!                                   ▼
//!         every member: StateMachine::apply ─► Shared::apply ─► MVCC (stead.redb) ─► Hub
//! ```
//!
//! The state machine records the last applied log id and the membership in the same redb
//! transaction as the data it describes, so the two never disagree after a crash.

mod log_store;
mod state_machine;
mod types;

pub use log_store::{LastVote, LogStore};
pub use state_machine::StateMachine;
pub use types::{
    Entry, LogId, NodeInfo, Raft, Reply, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
    Vote, decode, encode, encoded_len,
};
