//! Writes a follower forwards to the leader, gathered into batches: while a few batches are
//! on their way, the writes that arrive wait, and the next batch carries all of them. One
//! write alone goes out at once; a busy follower sends one request for many writes instead of
//! one each, and the leader hands them to Raft together. Batches travel on the follower's
//! [`crate::ask`] stream to the leader.
//!
//! A batch's answer lists one outcome per write, in order. A batch that fails as a whole
//! gives every write in it the same transport error, which the caller judges as before:
//! nothing was sent (ask again) or the outcome is unknown.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use stead_store::raft::{decode, encode, encoded_len};
use stead_store::{Command, CommandError, CommandResponse};
use tokio::sync::oneshot;
use tonic::Status;

use crate::ask::{AskKind, Asks};

/// Batches in flight to the leader before arriving writes wait for the next one.
const BATCHES_IN_FLIGHT: usize = 8;

/// Writes in one batch at most.
const WRITES_PER_BATCH: usize = 256;

/// Encoded bytes of the writes in one batch at most, though a batch always takes its first
/// write (a write is at most etcd's 1.5 MiB request limit). A batch is one message on the
/// stream to the leader, and the read indexes and lease renewals behind it wait for all of
/// it to go.
const BYTES_PER_BATCH: usize = 4 << 20;

/// What became of one forwarded write at the leader.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Forwarded {
    /// Committed and applied at this log index, with what applying it gave.
    Applied(u64, Result<CommandResponse, CommandError>),
    /// The member asked does not lead: the write was not appended, so it may be asked again.
    NotLeader,
    /// The write may or may not take effect (the leader lost its term, or stopped).
    Failed(String),
}

struct Pending {
    leader: u64,
    /// The leader's peer URL.
    url: String,
    cmd: Command,
    /// `cmd`'s encoded length.
    bytes: usize,
    answer: oneshot::Sender<Result<Forwarded, Status>>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Pending>,
    in_flight: usize,
}

impl Queue {
    /// The next batch: the oldest waiting write and the ones after it for its leader, in
    /// order, up to the limits. Writes for another leader (leadership just moved) wait their
    /// turn; so does the first one that would take the batch over its bytes, and every one
    /// after it.
    fn next_batch(&mut self) -> Option<Vec<Pending>> {
        let first = self.waiting.pop_front()?;
        let leader = first.leader;
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        let mut i = 0;
        while batch.len() < WRITES_PER_BATCH && i < self.waiting.len() {
            let next = &self.waiting[i];
            if next.leader != leader {
                i += 1;
                continue;
            }
            if bytes + next.bytes > BYTES_PER_BATCH {
                break;
            }
            bytes += next.bytes;
            batch.extend(self.waiting.remove(i));
        }
        Some(batch)
    }
}

/// The follower's side of forwarding; cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    queue: Arc<Mutex<Queue>>,
    asks: Asks,
}

impl Forwarder {
    /// Forwards over `asks`.
    pub fn new(asks: Asks) -> Self {
        Forwarder {
            queue: Arc::default(),
            asks,
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        crate::lock(&self.queue)
    }

    /// Sends `cmd` to `leader` (its peer URL `url`) and waits for its outcome.
    pub async fn forward(
        &self,
        leader: u64,
        url: String,
        cmd: Command,
    ) -> Result<Forwarded, Status> {
        let (answer, outcome) = oneshot::channel();
        // A command that cannot be counted cannot be encoded either; its batch fails then.
        let bytes = encoded_len(&cmd).unwrap_or(0);
        let batch = {
            let mut queue = self.queue();
            queue.waiting.push_back(Pending {
                leader,
                url,
                cmd,
                bytes,
                answer,
            });
            if queue.in_flight < BATCHES_IN_FLIGHT {
                queue.in_flight += 1;
                queue.next_batch()
            } else {
                None
            }
        };
        // The batch runs on its own task: this request may be cancelled, the others in it not.
        if let Some(batch) = batch {
            tokio::spawn(self.clone().batches(batch));
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("the member is stopping")))
    }

    /// Sends `batch`, then the batches of the writes that arrived meanwhile, until none wait.
    async fn batches(self, mut batch: Vec<Pending>) {
        loop {
            send(&self.asks, batch).await;
            let mut queue = self.queue();
            match queue.next_batch() {
                Some(next) => batch = next,
                None => {
                    queue.in_flight -= 1;
                    return;
                }
            }
        }
    }
}

/// One request carrying `batch`; every write in it gets its outcome.
async fn send(asks: &Asks, batch: Vec<Pending>) {
    let cmds: Vec<&Command> = batch.iter().map(|p| &p.cmd).collect();
    let outcome = match encode(&cmds) {
        Ok(data) => asks
            .ask(&batch[0].url, AskKind::Propose, data)
            .await
            .and_then(|answer| {
                decode::<Vec<Forwarded>>(&answer)
                    .map_err(|e| Status::internal(format!("bad answer from the leader: {e}")))
            }),
        Err(e) => Err(Status::internal(e.to_string())),
    };
    match outcome {
        Ok(results) if results.len() == batch.len() => {
            for (p, result) in batch.into_iter().zip(results) {
                let _ = p.answer.send(Ok(result));
            }
        }
        Ok(results) => {
            let reason = format!(
                "the leader answered {} of {} forwarded writes",
                results.len(),
                batch.len()
            );
            for p in batch {
                let _ = p.answer.send(Ok(Forwarded::Failed(reason.clone())));
            }
        }
        Err(status) => {
            for p in batch {
                let _ = p.answer.send(Err(status.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(leader: u64, n: u64) -> (Pending, oneshot::Receiver<Result<Forwarded, Status>>) {
        sized(leader, n, 8)
    }

    fn sized(
        leader: u64,
        n: u64,
        bytes: usize,
    ) -> (Pending, oneshot::Receiver<Result<Forwarded, Status>>) {
        let (answer, outcome) = oneshot::channel();
        let cmd = Command::Compact { revision: n as i64 };
        let p = Pending {
            leader,
            url: format!("http://leader-{leader}"),
            cmd,
            bytes,
            answer,
        };
        (p, outcome)
    }

    fn revisions(batch: &[Pending]) -> Vec<i64> {
        batch
            .iter()
            .map(|p| match &p.cmd {
                Command::Compact { revision, .. } => *revision,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_gathers_the_waiting_writes_for_one_leader_in_order_up_to_the_limit() {
        let mut queue = Queue::default();
        let mut outcomes = Vec::new();
        for n in 0..(WRITES_PER_BATCH as u64 + 10) {
            // Leadership moved in the middle: writes 3 and 7 name leader 2.
            let leader = if n == 3 || n == 7 { 2 } else { 1 };
            let (p, o) = pending(leader, n);
            queue.waiting.push_back(p);
            outcomes.push(o);
        }
        let first = queue.next_batch().expect("a batch");
        let want: Vec<i64> = (0..WRITES_PER_BATCH as i64 + 2)
            .filter(|n| *n != 3 && *n != 7)
            .collect();
        assert_eq!(revisions(&first), want);
        let second = queue.next_batch().expect("a batch");
        assert_eq!(revisions(&second), vec![3, 7]);
        let third = queue.next_batch().expect("a batch");
        let want: Vec<i64> = (WRITES_PER_BATCH as i64 + 2..WRITES_PER_BATCH as i64 + 10).collect();
        assert_eq!(revisions(&third), want);
        assert!(queue.next_batch().is_none());
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_bytes_but_always_takes_its_first_write() {
        let mut queue = Queue::default();
        let mut outcomes = Vec::new();
        let third = BYTES_PER_BATCH / 3;
        // Three thirds fit; the fourth waits, and the small one behind it with it (in
        // order). A write over the limit on its own still goes, alone.
        for (n, bytes) in [third, third, third, third, 10, BYTES_PER_BATCH + 1, 10]
            .into_iter()
            .enumerate()
        {
            let (p, o) = sized(1, n as u64, bytes);
            queue.waiting.push_back(p);
            outcomes.push(o);
        }
        let batches: Vec<Vec<i64>> = std::iter::from_fn(|| queue.next_batch())
            .map(|batch| revisions(&batch))
            .collect();
        assert_eq!(batches, vec![vec![0, 1, 2], vec![3, 4], vec![5], vec![6]]);
    }
}
