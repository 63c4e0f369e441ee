//! Writes a follower forwards to the leader, gathered into calls: while a few calls are on
//! their way, the writes that arrive wait, and the next call carries all of them. One write
//! alone goes out at once; a busy follower makes one call for many writes instead of one
//! each, and the leader hands them to Raft together.
//!
//! A call's answer lists one outcome per write, in order. A call that fails as a whole gives
//! every write in it the same transport error, which the caller judges as before: nothing was
//! sent (ask again) or the outcome is unknown.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use stead_store::raft::{decode, encode};
use stead_store::{Command, CommandError, CommandResponse};
use tokio::sync::oneshot;
use tonic::Status;
use tonic::transport::Channel;

use crate::cluster::forwarded;
use crate::pb::steadpeer::Blob;
use crate::pb::steadpeer::peer_client::PeerClient;

/// Calls in flight to the leader before arriving writes wait for the next one.
const CALLS_IN_FLIGHT: usize = 8;

/// Writes in one call at most (each at most etcd's 1.5 MiB request limit, so a call stays
/// well under the peer message limit).
const WRITES_PER_CALL: usize = 256;

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
    client: PeerClient<Channel>,
    cmd: Command,
    answer: oneshot::Sender<Result<Forwarded, Status>>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Pending>,
    calls: usize,
}

impl Queue {
    /// The next call's writes: the oldest waiting write and every other one for its leader
    /// (up to the limit). Writes for another leader (leadership just moved) wait their turn.
    fn next_call(&mut self) -> Option<Vec<Pending>> {
        let first = self.waiting.pop_front()?;
        let leader = first.leader;
        let mut call = vec![first];
        let mut i = 0;
        while call.len() < WRITES_PER_CALL && i < self.waiting.len() {
            if self.waiting[i].leader == leader {
                call.extend(self.waiting.remove(i));
            } else {
                i += 1;
            }
        }
        Some(call)
    }
}

/// The follower's side of forwarding; cheap to clone.
#[derive(Clone, Default)]
pub struct Forwarder {
    queue: Arc<Mutex<Queue>>,
}

impl Forwarder {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        crate::lock(&self.queue)
    }

    /// Sends `cmd` to `leader` (reached through `client`) and waits for its outcome.
    pub async fn forward(
        &self,
        leader: u64,
        client: PeerClient<Channel>,
        cmd: Command,
    ) -> Result<Forwarded, Status> {
        let (answer, outcome) = oneshot::channel();
        let call = {
            let mut queue = self.queue();
            queue.waiting.push_back(Pending {
                leader,
                client,
                cmd,
                answer,
            });
            if queue.calls < CALLS_IN_FLIGHT {
                queue.calls += 1;
                queue.next_call()
            } else {
                None
            }
        };
        // The call runs on its own task: this request may be cancelled, the others in it not.
        if let Some(call) = call {
            tokio::spawn(self.clone().calls(call));
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("the member is stopping")))
    }

    /// Makes `call`, then the calls for the writes that arrived meanwhile, until none wait.
    async fn calls(self, mut call: Vec<Pending>) {
        loop {
            send(call).await;
            let mut queue = self.queue();
            match queue.next_call() {
                Some(next) => call = next,
                None => {
                    queue.calls -= 1;
                    return;
                }
            }
        }
    }
}

/// One call carrying `batch`; every write in it gets its outcome.
async fn send(batch: Vec<Pending>) {
    let mut client = batch[0].client.clone();
    let cmds: Vec<&Command> = batch.iter().map(|p| &p.cmd).collect();
    let outcome = match encode(&cmds) {
        Ok(data) => forwarded(client.propose(Blob { data }))
            .await
            .and_then(|resp| {
                decode::<Vec<Forwarded>>(&resp.get_ref().data)
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
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let (answer, outcome) = oneshot::channel();
        let cmd = Command::Compact { revision: n as i64 };
        let p = Pending {
            leader,
            client: PeerClient::new(channel),
            cmd,
            answer,
        };
        (p, outcome)
    }

    fn revisions(call: &[Pending]) -> Vec<i64> {
        call.iter()
            .map(|p| match &p.cmd {
                Command::Compact { revision, .. } => *revision,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_call_gathers_the_waiting_writes_for_one_leader_in_order_up_to_the_limit() {
        let mut queue = Queue::default();
        let mut outcomes = Vec::new();
        for n in 0..(WRITES_PER_CALL as u64 + 10) {
            // Leadership moved in the middle: writes 3 and 7 name leader 2.
            let leader = if n == 3 || n == 7 { 2 } else { 1 };
            let (p, o) = pending(leader, n);
            queue.waiting.push_back(p);
            outcomes.push(o);
        }
        let first = queue.next_call().expect("a call");
        let want: Vec<i64> = (0..WRITES_PER_CALL as i64 + 2)
            .filter(|n| *n != 3 && *n != 7)
            .collect();
        assert_eq!(revisions(&first), want);
        let second = queue.next_call().expect("a call");
        assert_eq!(revisions(&second), vec![3, 7]);
        let third = queue.next_call().expect("a call");
        let want: Vec<i64> = (WRITES_PER_CALL as i64 + 2..WRITES_PER_CALL as i64 + 10).collect();
        assert_eq!(revisions(&third), want);
        assert!(queue.next_call().is_none());
    }
}
