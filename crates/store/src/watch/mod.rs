//! Watches: the hub that fans committed revisions out, and the per-stream watcher logic.
//!
//! ```text
//!  writer thread ──commit──► Hub { revision, broadcast<[RevisionEvents]> }
//!                                         │ live batches (bounded; a slow stream lags)
//!                                         ▼
//!  client stream ──create/cancel/progress──► WatchStream ──► responses
//!                                         ▲
//!                  history (Engine::read_events) for replays and lagging watchers
//! ```
//!
//! Every watcher keeps `next_rev`, the first revision it has not been sent. A live batch is
//! delivered only if it starts at or before `next_rev`; anything earlier is read from history
//! first. That one rule gives etcd's guarantees: ordered, unique, no gaps, and a revision is
//! never split across responses.

mod hub;
mod stream;

pub use hub::{Batch, Hub};
pub use stream::{WatchOutput, WatchRequest, WatchSpec, serve_watch};
