//! [`Hub`]: publishes committed revisions to watch streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::broadcast;

use crate::types::RevisionEvents;

/// How many committed batches a stream may fall behind before it lags and catches up from
/// history instead.
const LIVE_CAPACITY: usize = 1024;

/// A batch of revisions committed together.
pub type Batch = Arc<[RevisionEvents]>;

/// The publish side of watches.
///
/// # Correctness
/// `revision` is raised *before* the batch is sent, so a stream that reads `revision()` and
/// then reads history up to it has seen (or will receive) every later batch.
#[derive(Debug)]
pub struct Hub {
    live: broadcast::Sender<Batch>,
    revision: AtomicI64,
    compacted: AtomicI64,
}

impl Hub {
    pub fn new(revision: i64, compacted: i64) -> Self {
        Hub {
            live: broadcast::channel(LIVE_CAPACITY).0,
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
        }
    }

    /// The newest committed revision.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// The newest compaction revision.
    pub fn compacted(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.live.subscribe()
    }

    /// Called after the whole state was replaced (a snapshot installed): streams learn that
    /// revisions up to `revision` exist and catch up from history.
    pub fn publish_jump(&self, revision: i64, compacted: i64) {
        self.compacted.store(compacted, Ordering::Release);
        self.revision.store(revision, Ordering::Release);
        let _ = self.live.send(Vec::new().into());
    }

    /// Called after a batch is durable.
    pub fn publish(&self, revision: i64, compacted: i64, events: Vec<RevisionEvents>) {
        self.compacted.store(compacted, Ordering::Release);
        self.revision.store(revision, Ordering::Release);
        if !events.is_empty() {
            // No receivers is not an error: nobody is watching.
            let _ = self.live.send(events.into());
        }
    }
}
