//! The closed-loop driver shared by every workload: clients, budget, rate, progress.

use std::future::Future;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Budget {
    Requests(u64),
    Time(Duration),
}

/// How a run is driven.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Driver {
    pub(crate) clients: usize,
    pub(crate) budget: Budget,
    /// Requests per second over all clients.
    pub(crate) rate: Option<f64>,
    pub(crate) progress: bool,
}

/// What a run measured.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Latency of every successful request, sorted.
    pub(crate) latencies: Vec<Duration>,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
}

impl Outcome {
    pub(crate) fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// p50, p90, p99, p99.9 in milliseconds.
    pub(crate) fn percentiles_ms(&self) -> [f64; 4] {
        [0.5, 0.9, 0.99, 0.999].map(|p| percentile(&self.latencies, p).as_secs_f64() * 1000.0)
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

impl Driver {
    /// Runs `op(client, seq)` from every client until the budget is spent; `op` takes the
    /// client's state and hands it back with the result. `seq` numbers requests over all
    /// clients, from 0.
    pub(crate) async fn run<S, F, Fut, E>(&self, state: Vec<S>, op: F) -> Outcome
    where
        S: Send + 'static,
        F: Fn(S, u64) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = (S, Result<(), E>)> + Send,
    {
        let issued = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let deadline = match self.budget {
            Budget::Time(d) => Some(start + d),
            Budget::Requests(_) => None,
        };
        let limit = match self.budget {
            Budget::Requests(n) => n,
            Budget::Time(_) => u64::MAX,
        };
        let reporter = self.reporter(start, &done, &errors);
        let mut tasks = Vec::new();
        for client in state {
            let (issued, done, errors, op) =
                (issued.clone(), done.clone(), errors.clone(), op.clone());
            let rate = self.rate;
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut client = Some(client);
                loop {
                    let seq = issued.fetch_add(1, Ordering::Relaxed);
                    if seq >= limit || deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    if let Some(rate) = rate {
                        // Request `seq` is due `seq / rate` seconds after the start.
                        tokio::time::sleep_until(
                            start + Duration::from_secs_f64(seq as f64 / rate),
                        )
                        .await;
                    }
                    let Some(state) = client.take() else { break };
                    let t = Instant::now();
                    let (state, result) = op(state, seq).await;
                    client = Some(state);
                    match result {
                        Ok(()) => latencies.push(t.elapsed()),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(joined(task.await));
        }
        finish(start, reporter, latencies, &errors)
    }

    /// Runs the blocking `op` over and over on one thread of its own until the budget is
    /// spent, timing each call on that thread: what it costs, without a hand-off to or from
    /// the async runtime. One client, whatever `clients` says.
    pub(crate) async fn run_blocking<E>(
        &self,
        mut op: impl FnMut() -> Result<(), E> + Send + 'static,
    ) -> Outcome {
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let reporter = self.reporter(start, &done, &errors);
        let (budget, rate) = (self.budget, self.rate);
        let (counted, failed) = (done.clone(), errors.clone());
        let latencies = tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            let mut latencies = Vec::new();
            for seq in 0.. {
                let over = match budget {
                    Budget::Requests(n) => seq >= n,
                    Budget::Time(d) => start.elapsed() >= d,
                };
                if over {
                    break;
                }
                if let Some(rate) = rate {
                    let due = start + Duration::from_secs_f64(seq as f64 / rate);
                    std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
                }
                let t = std::time::Instant::now();
                match op() {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                counted.fetch_add(1, Ordering::Relaxed);
            }
            latencies
        })
        .await;
        finish(start, reporter, joined(latencies), &errors)
    }

    /// The progress line on a terminal, every half second, until aborted.
    fn reporter(
        &self,
        start: Instant,
        done: &Arc<AtomicU64>,
        errors: &Arc<AtomicU64>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let progress = self.progress && std::io::stderr().is_terminal();
        progress.then(|| {
            let (done, errors) = (done.clone(), errors.clone());
            let budget = self.budget;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    let n = done.load(Ordering::Relaxed);
                    let secs = start.elapsed().as_secs_f64().max(f64::EPSILON);
                    let of = match budget {
                        Budget::Requests(total) => format!("{n}/{total}"),
                        Budget::Time(d) => format!("{n} in {:.0}/{:.0} s", secs, d.as_secs_f64()),
                    };
                    eprint!(
                        "\r  {of}  {:.0} req/s  errors {}   ",
                        n as f64 / secs,
                        errors.load(Ordering::Relaxed)
                    );
                }
            })
        })
    }
}

/// Ends a run that began at `start`: stops the progress line and sorts the latencies.
fn finish(
    start: Instant,
    reporter: Option<tokio::task::JoinHandle<()>>,
    mut latencies: Vec<Duration>,
    errors: &AtomicU64,
) -> Outcome {
    let elapsed = start.elapsed();
    if let Some(reporter) = reporter {
        reporter.abort();
        eprintln!();
    }
    latencies.sort_unstable();
    Outcome {
        latencies,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
    }
}

/// A client's latencies; a client that panicked takes the run down with it rather than
/// leave it short and quiet.
fn joined(task: Result<Vec<Duration>, tokio::task::JoinError>) -> Vec<Duration> {
    match task {
        Ok(latencies) => latencies,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Vec::new(),
    }
}

/// How many events each watcher should expect, once the writers are done (`None` before).
pub(crate) type Expected = tokio::sync::watch::Receiver<Option<usize>>;

/// Collects delivery latencies from a watcher's `events` until it has `expected` of them
/// (known once the writers finish) or the stream stays silent for `idle`. Returns the
/// latencies and when the last one arrived.
pub(crate) async fn collect<S>(
    mut events: S,
    mut expected: Expected,
    idle: Duration,
    mut latency_of: impl FnMut(S::Item) -> Vec<Duration>,
) -> (Vec<Duration>, Instant)
where
    S: futures::Stream + Unpin,
{
    use futures::StreamExt;
    let mut latencies = Vec::new();
    let mut last = Instant::now();
    loop {
        if expected.borrow().is_some_and(|n| latencies.len() >= n) {
            break;
        }
        tokio::select! {
            item = tokio::time::timeout(idle, events.next()) => match item {
                Ok(Some(item)) => {
                    latencies.extend(latency_of(item));
                    last = Instant::now();
                }
                _ => break,
            },
            changed = expected.changed() => if changed.is_err() { break },
        }
    }
    (latencies, last)
}

/// Waits for the watcher tasks of a delivery workload (each running [`collect`]): all their
/// latencies, sorted, and the delivery window from `start` to the last event any of them
/// received (not the silence that ends it).
pub(crate) async fn gather(
    watchers: Vec<tokio::task::JoinHandle<(Vec<Duration>, Instant)>>,
    start: Instant,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let mut latencies = Vec::new();
    let mut last = start;
    for w in watchers {
        let (lat, at) = w.await?;
        latencies.extend(lat);
        last = last.max(at);
    }
    latencies.sort_unstable();
    Ok((latencies, last.duration_since(start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_budget_is_spent_exactly_over_all_clients() {
        let driver = Driver {
            clients: 4,
            budget: Budget::Requests(103),
            rate: None,
            progress: false,
        };
        let outcome = driver
            .run(vec![(); 4], |(), seq| async move {
                ((), if seq % 10 == 0 { Err(()) } else { Ok(()) })
            })
            .await;
        assert_eq!(outcome.latencies.len() as u64 + outcome.errors, 103);
        assert_eq!(outcome.errors, 11);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_spaces_requests_out() {
        let driver = Driver {
            clients: 8,
            budget: Budget::Requests(50),
            rate: Some(100.0),
            progress: false,
        };
        let outcome = driver
            .run(vec![(); 8], |(), _| async { ((), Ok::<(), ()>(())) })
            .await;
        // 50 requests at 100/s: the last is due after 0.49 s.
        assert!(
            outcome.elapsed >= Duration::from_millis(490),
            "{:?}",
            outcome.elapsed
        );
        assert_eq!(outcome.latencies.len(), 50);
    }

    #[tokio::test]
    async fn a_blocking_op_runs_to_the_budget_each_call_timed() {
        let driver = Driver {
            clients: 4,
            budget: Budget::Requests(20),
            rate: None,
            progress: false,
        };
        let mut calls = 0;
        let outcome = driver
            .run_blocking(move || {
                calls += 1;
                std::thread::sleep(Duration::from_millis(2));
                if calls % 5 == 0 { Err(()) } else { Ok(()) }
            })
            .await;
        assert_eq!(outcome.latencies.len(), 16);
        assert_eq!(outcome.errors, 4);
        assert!(outcome.latencies[0] >= Duration::from_millis(2));
    }

    #[tokio::test]
    async fn a_blocking_op_stops_when_the_time_is_up() {
        let driver = Driver {
            clients: 1,
            budget: Budget::Time(Duration::from_millis(60)),
            rate: None,
            progress: false,
        };
        let outcome = driver
            .run_blocking(|| {
                std::thread::sleep(Duration::from_millis(10));
                Ok::<(), ()>(())
            })
            .await;
        assert!(!outcome.latencies.is_empty());
        assert!(
            outcome.elapsed >= Duration::from_millis(60),
            "{:?}",
            outcome.elapsed
        );
    }

    #[tokio::test]
    #[should_panic(expected = "the op broke")]
    async fn a_panicking_op_takes_the_run_down() {
        let driver = Driver {
            clients: 1,
            budget: Budget::Requests(3),
            rate: None,
            progress: false,
        };
        driver
            .run_blocking(|| -> Result<(), ()> { panic!("the op broke") })
            .await;
    }
}
