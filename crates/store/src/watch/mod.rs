//! Watches: the hub that fans committed revisions out, and the per-stream watcher logic.
//!
//! ```text
//!  writer thread ──commit──► Hub { revision, one inbox per stream }
//!                                         │ Batch: revisions touching a watched key (wakes)
//!                                         │ Quiet: revisions that touch none (no wake-up)
//!                                         ▼ (bounded; a slow stream lags)
//!  client stream ──create/cancel/progress──► WatchStream ──► responses
//!                                         ▲
//!                  history (Engine::read_events) for replays and lagging watchers
//! ```
//!
//! Every watcher keeps `next_rev`, the first revision it has not been sent. A live batch is
//! delivered only if it starts at or before `next_rev`; anything earlier is read from history
//! first. That one rule gives etcd's guarantees: ordered, unique, no gaps, and a revision is
//! never split across responses. Quiet revisions move `next_rev` past themselves the same
//! way, so a watcher is synced (and may get a bookmark) without being woken for them.

mod hub;
mod stream;

pub use hub::{Batch, Hub, Live, Subscription};
pub use stream::{WatchOutput, WatchRequest, WatchSpec, serve_watch};
