//! stead's fault-injection robustness harness: real `stead serve` clusters on loopback,
//! client traffic recorded as a history, a nemesis (kill -9, SIGSTOP, partitions through
//! peer-link proxies, compaction, defragmentation, snapshots, membership changes), and
//! checkers for linearizability, watch guarantees, lost writes and member agreement.
//!
//! ```text
//!  traffic ──► history ──► linearizability (WGL search over the model)
//!  watchers ──► events ──► watch guarantees ──► lost writes, final state, HashKV
//!  nemesis ──► faults on processes, peer links and maintenance
//! ```
//!
//! See `docs/ROBUSTNESS.md` for what is tested and how to run it.

pub mod cluster;
pub mod diskfull;
pub mod history;
pub mod linearizability;
pub mod model;
pub mod nemesis;
pub mod patch;
pub mod proxy;
pub mod run;
pub mod traffic;
pub mod watch;
