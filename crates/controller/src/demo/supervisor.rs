//! Real processes on this machine: started, watched, adopted after a restart, stopped.
//!
//! ```text
//!  start(key, uid, template) ─► spawn in its own process group ─► (pid, start ticks)
//!                                  └─ a task waits for the exit, records it, and sends the
//!                                     key on `exits` (the controller reconciles at once)
//!  liveness(pid, ticks)     ─► our exit records, else /proc/<pid>/stat (state, start time)
//!  stop(pid, ticks)         ─► SIGTERM to the group, SIGKILL after a grace period
//! ```
//!
//! A process is known by its pid *and* its start time in clock ticks since boot (field 22
//! of `/proc/<pid>/stat`), so a pid reused by another program is never taken for ours. That
//! is how a restarted controller adopts the processes its predecessor started instead of
//! starting duplicates.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use stead_api::kinds::ProcessTemplate;
use tokio::sync::mpsc;

use crate::ObjectRef;

/// How long a stopped process gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// Whether a recorded process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Running,
    /// It ended; the exit code when this supervisor saw it end (`None`: killed by a signal
    /// or ended while nobody watched).
    Ended(Option<i32>),
}

/// A process this supervisor started, for the key and object uid it was started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    pub start_ticks: u64,
}

#[derive(Default)]
struct State {
    /// Exit codes of our children that ended, by pid and start ticks.
    ended: HashMap<(u32, u64), Option<i32>>,
    /// What we started per object uid, so a failed status write never leads to a second start.
    by_uid: HashMap<String, Started>,
}

/// Starts and watches processes; see the module docs.
#[derive(Clone)]
pub struct Supervisor {
    state: Arc<Mutex<State>>,
    exits: mpsc::UnboundedSender<ObjectRef>,
}

/// Field 22 (start time) and field 3 (state) of `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything; fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ticks = fields.get(19)?.parse().ok()?;
    Some((state, ticks))
}

impl Supervisor {
    /// A supervisor and the stream of keys whose process ended.
    pub fn new() -> (Supervisor, mpsc::UnboundedReceiver<ObjectRef>) {
        let (exits, rx) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            state: Arc::new(Mutex::new(State::default())),
            exits,
        };
        (supervisor, rx)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What this supervisor started for an object uid.
    pub fn started_for(&self, uid: &str) -> Option<Started> {
        self.state().by_uid.get(uid).copied()
    }

    /// Starts `template` for the object `uid` (reconciled as `key`).
    pub fn start(
        &self,
        key: ObjectRef,
        uid: &str,
        template: &ProcessTemplate,
    ) -> std::io::Result<Started> {
        let mut command = tokio::process::Command::new(&template.command);
        command
            .args(&template.args)
            .envs(&template.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: stopping it stops what it started too, and a Ctrl-C meant for
            // the controller's terminal does not reach it.
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the process ended at once"))?;
        let start_ticks = proc_stat(pid).map_or(0, |(_, ticks)| ticks);
        let started = Started { pid, start_ticks };
        self.state().by_uid.insert(uid.to_owned(), started);
        let supervisor = self.clone();
        tokio::spawn(async move {
            let code = child.wait().await.ok().and_then(|status| status.code());
            supervisor.state().ended.insert((pid, start_ticks), code);
            let _ = supervisor.exits.send(key);
        });
        Ok(started)
    }

    /// Whether the process `pid` started at `start_ticks` still runs.
    pub fn liveness(&self, pid: u32, start_ticks: u64) -> Liveness {
        if let Some(code) = self.state().ended.get(&(pid, start_ticks)) {
            return Liveness::Ended(*code);
        }
        match proc_stat(pid) {
            Some((state, ticks)) if ticks == start_ticks && state != 'Z' && state != 'X' => {
                Liveness::Running
            }
            _ => Liveness::Ended(None),
        }
    }

    /// Forgets what was recorded for an object uid (its object is gone).
    pub fn forget(&self, uid: &str) {
        self.state().by_uid.remove(uid);
    }

    /// Stops the process (and its group) if it still runs: SIGTERM, then SIGKILL after a grace
    /// period. Returns once it has ended.
    pub async fn stop(&self, pid: u32, start_ticks: u64) {
        if self.liveness(pid, start_ticks) != Liveness::Running {
            return;
        }
        signal("TERM", pid);
        let deadline = tokio::time::Instant::now() + GRACE;
        while self.liveness(pid, start_ticks) == Liveness::Running {
            if tokio::time::Instant::now() >= deadline {
                signal("KILL", pid);
                tokio::time::sleep(Duration::from_millis(100)).await;
                if self.liveness(pid, start_ticks) == Liveness::Running {
                    continue;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every process this supervisor started (the demo's Ctrl-C).
    pub async fn stop_all(&self) {
        let started: Vec<Started> = self.state().by_uid.values().copied().collect();
        for s in started {
            self.stop(s.pid, s.start_ticks).await;
        }
    }
}

/// Sends a signal to a process group with `kill(1)` (the workspace forbids `unsafe`, which a
/// direct `kill(2)` call would need).
fn signal(name: &str, pid: u32) {
    let group = format!("-{pid}");
    let _ = std::process::Command::new("kill")
        .args([&format!("-{name}"), "--", &group])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn started_processes_are_seen_running_then_ended_after_a_stop() {
        let (supervisor, mut exits) = Supervisor::new();
        let template = ProcessTemplate {
            command: "sleep".into(),
            args: vec!["30".into()],
            ..ProcessTemplate::default()
        };
        let key = ObjectRef::new("p").within("default");
        let started = supervisor
            .start(key.clone(), "uid-1", &template)
            .expect("start");
        assert!(started.start_ticks > 0);
        assert_eq!(
            supervisor.liveness(started.pid, started.start_ticks),
            Liveness::Running
        );
        // Another start time for the same pid is another process.
        assert_eq!(
            supervisor.liveness(started.pid, started.start_ticks + 1),
            Liveness::Ended(None)
        );
        assert_eq!(supervisor.started_for("uid-1"), Some(started));
        supervisor.stop(started.pid, started.start_ticks).await;
        assert_eq!(exits.recv().await, Some(key));
        assert!(matches!(
            supervisor.liveness(started.pid, started.start_ticks),
            Liveness::Ended(_)
        ));
    }

    #[tokio::test]
    async fn exit_codes_are_recorded() {
        let (supervisor, mut exits) = Supervisor::new();
        let template = ProcessTemplate {
            command: "sh".into(),
            args: vec!["-c".into(), "exit 3".into()],
            ..ProcessTemplate::default()
        };
        let started = supervisor
            .start(ObjectRef::new("x"), "uid-2", &template)
            .expect("start");
        exits.recv().await;
        assert_eq!(
            supervisor.liveness(started.pid, started.start_ticks),
            Liveness::Ended(Some(3))
        );
    }
}
