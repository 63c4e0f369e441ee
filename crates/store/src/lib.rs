//! stead's storage: an etcd-compatible MVCC key-value store on redb.
//!
//! - [`Engine`]: the synchronous MVCC state machine on one redb file. Every mutation is a
//!   [`Command`] applied through one deterministic path ([`Engine::apply_batch`]).
//! - [`Store`]: the asynchronous handle: group commit (many writers, one fsync), reads on
//!   blocking threads, lease expiry, and the watch [`Hub`].
//! - [`watch`]: per-stream watchers with history replay and etcd's delivery guarantees.
//! - `wal`: the write-ahead log (preallocated segment files) that makes a write durable
//!   with one flush: a single member's writes, and a cluster member's Raft log.
//!
//! The store is bytes-in, bytes-out: it knows nothing of resources or of the wire.

mod backend;
mod engine;
mod error;
pub mod lease;

mod mvcc;
pub mod raft;
mod store;
mod types;
#[cfg(target_os = "linux")]
mod uring;
mod wal;
pub mod watch;

pub use engine::{
    ApplyGate, BatchResult, Engine, EngineOptions, LeaseInfo, Unrevealed, frame_snapshot,
};
pub use error::{Error, Result};
pub use mvcc::apply::{LeaseChange, MAX_LEASE_TTL};
pub use mvcc::keys::KeyRange;
pub use mvcc::txn::MAX_TXN_OPS;
pub use store::{ProposeFuture, Proposer, Shared, Store, StoreConfig, WriteStats};
pub use types::*;
pub use watch::Hub;

/// Locks `mutex`, going on with the data if a panicking holder poisoned it (every state
/// behind these locks is left consistent between statements).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
