//! Linearizable reads gathered into read-index rounds. A round asks the leader for its read
//! index (the leader confirms its leadership with a quorum) and waits until this member has
//! applied that far; every read that was waiting when the round started may then be served
//! locally. While a round is on its way, arriving reads wait for the next one: a busy member
//! runs one round for many reads instead of one each, and a lone read starts its round at
//! once.
//!
//! # Correctness
//! A read may only use a round that *started after the read arrived*: the leader's
//! confirmation then happened after the read began, so whatever was committed before the read
//! began is at or below the read index. A round therefore takes only the reads already
//! waiting when it starts; reads that arrive while it runs are never answered by it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use stead_store::{Error, Result};
use tokio::sync::oneshot;

/// Rounds on their way at once before arriving reads wait for the next one.
const ROUNDS_IN_FLIGHT: usize = 2;

/// One read-index round: confirms a read index and waits until it is applied here.
pub type Round = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

#[derive(Default)]
struct Queue {
    waiting: Vec<oneshot::Sender<Result<()>>>,
    rounds: usize,
}

/// The member's read-index rounds; cheap to clone.
#[derive(Clone, Default)]
pub struct ReadRounds {
    queue: Arc<Mutex<Queue>>,
}

impl ReadRounds {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        crate::lock(&self.queue)
    }

    /// Waits until a read that starts now may be served locally. `round` runs a round; it is
    /// called only when this read has to start one.
    pub async fn barrier<F>(&self, round: F) -> Result<()>
    where
        F: Fn() -> Round + Send + 'static,
    {
        let (ready, outcome) = oneshot::channel();
        let batch = {
            let mut queue = self.queue();
            queue.waiting.push(ready);
            if queue.rounds < ROUNDS_IN_FLIGHT {
                queue.rounds += 1;
                Some(std::mem::take(&mut queue.waiting))
            } else {
                None
            }
        };
        // Rounds run on their own task: this read may be cancelled, the others in it not.
        if let Some(batch) = batch {
            tokio::spawn(self.clone().rounds(batch, round));
        }
        outcome.await.unwrap_or(Err(Error::Stopped))
    }

    /// Runs a round for `batch`, then one for the reads that arrived meanwhile, until none wait.
    async fn rounds<F>(self, mut batch: Vec<oneshot::Sender<Result<()>>>, round: F)
    where
        F: Fn() -> Round + Send + 'static,
    {
        let mut running = Running {
            rounds: self,
            counted: true,
        };
        loop {
            let result = round().await;
            for ready in batch {
                let _ = ready.send(share(&result));
            }
            let mut queue = running.rounds.queue();
            if queue.waiting.is_empty() {
                // Under the lock: a read arriving after this starts a round of its own.
                queue.rounds -= 1;
                drop(queue);
                running.counted = false;
                return;
            }
            batch = std::mem::take(&mut queue.waiting);
        }
    }
}

/// A task running rounds, counted in `Queue::rounds` until it returns. Should it end any
/// other way (a round panicked, the runtime stopped), the count goes down all the same and
/// the reads left waiting with no round to take them are failed, so that no read waits
/// forever and later reads start rounds again.
struct Running {
    rounds: ReadRounds,
    counted: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut queue = self.rounds.queue();
        queue.rounds -= 1;
        if queue.rounds == 0 {
            // Dropping their senders answers them with `Error::Stopped`.
            queue.waiting.clear();
        }
    }
}

/// A round's outcome for each read in it (a barrier fails only with these two kinds).
fn share(result: &Result<()>) -> Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(Error::NoLeader) => Err(Error::NoLeader),
        Err(Error::Replication { reason }) => Err(Error::Replication {
            reason: reason.clone(),
        }),
        Err(e) => Err(Error::Replication {
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;

    /// Rounds that each wait for a permit, numbered in the order they start.
    fn gated(started: Arc<AtomicUsize>, gate: Arc<Semaphore>) -> impl Fn() -> Round + Send {
        move || {
            let started = started.clone();
            let gate = gate.clone();
            Box::pin(async move {
                let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                gate.acquire().await.expect("gate open").forget();
                if n == 2 { Err(Error::NoLeader) } else { Ok(()) }
            })
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn rounds_that_panic_fail_their_reads_and_leave_room_for_new_rounds() {
        let rounds = ReadRounds::default();
        let panicking = || -> Round { Box::pin(async { panic!("a round failed") }) };
        for _ in 0..ROUNDS_IN_FLIGHT {
            let outcome = rounds.barrier(panicking).await;
            assert!(matches!(outcome, Err(Error::Stopped)), "{outcome:?}");
        }
        assert_eq!(rounds.queue().rounds, 0);
        let ok = || -> Round { Box::pin(async { Ok(()) }) };
        let outcome = tokio::time::timeout(Duration::from_secs(5), rounds.barrier(ok)).await;
        assert!(
            matches!(outcome, Ok(Ok(()))),
            "a read after panicked rounds: {outcome:?}"
        );
    }

    #[tokio::test]
    async fn reads_arriving_during_a_round_wait_for_a_round_that_starts_after_them() {
        let rounds = ReadRounds::default();
        let started = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let read = |rounds: &ReadRounds| {
            let rounds = rounds.clone();
            let round = gated(started.clone(), gate.clone());
            tokio::spawn(async move { rounds.barrier(round).await })
        };
        // The first reads start the rounds allowed in flight; both wait at the gate.
        let first: Vec<_> = (0..ROUNDS_IN_FLIGHT).map(|_| read(&rounds)).collect();
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), ROUNDS_IN_FLIGHT);
        // These arrive while rounds are under way: no new round, and none of them is answered
        // when the rounds under way finish.
        let later: Vec<_> = (0..10).map(|_| read(&rounds)).collect();
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), ROUNDS_IN_FLIGHT);
        gate.add_permits(ROUNDS_IN_FLIGHT);
        let mut outcomes = Vec::new();
        for r in first {
            outcomes.push(r.await.expect("read task"));
        }
        // Round 2 failed: exactly one of the first reads got its error.
        assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 1);
        settle().await;
        assert!(
            later.iter().all(|r| !r.is_finished()),
            "a read was answered by a round that started before it"
        );
        // One more round serves all ten.
        assert_eq!(started.load(Ordering::SeqCst), ROUNDS_IN_FLIGHT + 1);
        gate.add_permits(1);
        for r in later {
            assert!(r.await.expect("read task").is_ok());
        }
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), ROUNDS_IN_FLIGHT + 1);
        // Idle again: the next read starts its own round at once.
        let last = read(&rounds);
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), ROUNDS_IN_FLIGHT + 2);
        gate.add_permits(1);
        assert!(last.await.expect("read task").is_ok());
    }
}
