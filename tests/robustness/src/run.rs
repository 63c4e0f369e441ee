//! One robustness run: start a cluster, run traffic and the nemesis, heal, then check
//! everything.
//!
//! ```text
//!  clients ──► history ─┐
//!  watchers ──► events ─┼─► watch checks ─► patch unknown writes ─► linearizability
//!  nemesis ──► faults   │                └─► acknowledged writes in the event log
//!                       └─► final state per member == event replay; HashKV equal
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use stead_server::pb;

use crate::cluster::{Cluster, channel};
use crate::history::{Kv, Operation, Outcome, Recorder, Request, Response, TxnWrite};
use crate::linearizability::{self, Verdict};
use crate::model::State;
use crate::nemesis::{Fault, Nemesis};
use crate::traffic::{self, Profile, TrafficConfig};
use crate::watch::{self, Revisions, WatchLog};

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub name: String,
    pub members: usize,
    pub profile: Profile,
    pub duration: Duration,
    pub seed: u64,
    pub clients: usize,
    pub faults: bool,
    /// Pause between two requests of a client (bounds the history for the checker).
    pub pause: Duration,
    pub checker_budget: u64,
}

impl RunConfig {
    pub fn new(
        name: &str,
        members: usize,
        profile: Profile,
        duration: Duration,
        seed: u64,
    ) -> Self {
        RunConfig {
            name: name.to_string(),
            members,
            profile,
            duration,
            seed,
            clients: 6,
            faults: true,
            pause: Duration::from_millis(20),
            checker_budget: 50_000_000,
        }
    }
}

#[derive(Debug, Default)]
pub struct RunReport {
    pub name: String,
    pub seed: u64,
    pub operations: usize,
    pub succeeded: usize,
    pub unknown: usize,
    pub watch_events: usize,
    pub final_revision: i64,
    pub faults: BTreeMap<String, u64>,
    pub skipped_faults: Vec<String>,
    pub anomalies: Vec<String>,
    pub findings: Vec<String>,
    pub checker_steps: u64,
    pub kept_dir: Option<String>,
}

impl RunReport {
    pub fn faults_injected(&self) -> u64 {
        self.faults.values().sum()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} (seed {}): {} operations ({} ok, {} unknown), {} watch events, final revision {}, \
             {} faults {:?}, {} checker steps, {} anomalies",
            self.name,
            self.seed,
            self.operations,
            self.succeeded,
            self.unknown,
            self.watch_events,
            self.final_revision,
            self.faults_injected(),
            self.faults,
            self.checker_steps,
            self.anomalies.len()
        );
        for a in &self.anomalies {
            s.push_str(&format!("\n  ANOMALY: {a}"));
        }
        for f in &self.findings {
            s.push_str(&format!("\n  FINDING: {f}"));
        }
        if !self.skipped_faults.is_empty() {
            s.push_str(&format!(
                "\n  faults not injected: {}",
                self.skipped_faults.len()
            ));
            for f in self.skipped_faults.iter().take(5) {
                s.push_str(&format!("\n    {f}"));
            }
        }
        if let Some(dir) = &self.kept_dir {
            s.push_str(&format!("\n  data and member logs kept in {dir}"));
        }
        if !self.anomalies.is_empty() {
            s.push_str(&format!(
                "\n  replay: cargo run -p stead-robustness -- run --members {} --seed {}",
                if self.name.contains("1-member") { 1 } else { 3 },
                self.seed
            ));
        }
        s
    }
}

/// Runs a whole scenario against the `stead` at `bin`.
pub async fn run(bin: &Path, cfg: &RunConfig) -> anyhow::Result<RunReport> {
    let dir = tempfile::Builder::new()
        .prefix("stead-robustness-")
        .tempdir()?;
    let mut report = RunReport {
        name: cfg.name.clone(),
        seed: cfg.seed,
        ..Default::default()
    };
    let snapshot_count = 300;
    let catchup = 30;
    let extra: Vec<String> = [
        "--snapshot-count",
        &snapshot_count.to_string(),
        "--experimental-snapshot-catchup-entries",
        &catchup.to_string(),
        "--experimental-watch-progress-notify-interval",
        "2s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut cluster = Cluster::start(bin, dir.path(), cfg.members, &extra).await?;
    let start = Instant::now();
    let say = |what: &str| {
        eprintln!(
            "[{:>7.1}s] {}: {what}",
            start.elapsed().as_secs_f64(),
            cfg.name
        );
    };
    say("cluster up, starting traffic and faults");
    let recorder = Recorder::new(start);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let watchers: Vec<WatchLog> = (0..2).map(|_| WatchLog::default()).collect();
    let mut watch_tasks = Vec::new();
    for (i, log) in watchers.iter().enumerate() {
        watch_tasks.push(tokio::spawn(watch::run(
            i,
            cluster.endpoints.clone(),
            cfg.profile.prefix().to_string(),
            log.clone(),
            recorder.clone(),
            stop_rx.clone(),
            Duration::from_millis(700),
        )));
    }
    let (traffic_stop_tx, traffic_stop_rx) = tokio::sync::watch::channel(false);
    let traffic_cfg = TrafficConfig {
        profile: cfg.profile,
        seed: cfg.seed,
        pause: cfg.pause,
        request_timeout: Duration::from_secs(3),
        lease_ttl: (cfg.duration.as_secs() as i64 + 600).max(3600),
    };
    let clients: Vec<_> = (0..cfg.clients)
        .map(|id| {
            tokio::spawn(traffic::run(
                id,
                traffic_cfg.clone(),
                cluster.endpoints.clone(),
                recorder.clone(),
                traffic_stop_rx.clone(),
            ))
        })
        .collect();

    let deadline = start + cfg.duration;
    let mut nemesis = Nemesis::new(
        cfg.seed,
        if cfg.faults {
            Fault::for_members(cfg.members)
        } else {
            Vec::new()
        },
        watchers.clone(),
    );
    nemesis.snapshot_distance = snapshot_count + 2 * catchup;
    nemesis.run(&mut cluster, deadline).await;
    let remaining = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(remaining).await;

    say("stopping traffic");
    let _ = traffic_stop_tx.send(true);
    for c in clients {
        let _ = c.await;
    }
    report.faults = std::mem::take(&mut nemesis.report.injected);
    report.skipped_faults = std::mem::take(&mut nemesis.report.skipped);
    report.anomalies.append(&mut nemesis.report.anomalies);
    report.findings.append(&mut nemesis.report.findings);
    let compacted = nemesis.report.compacted;

    say("healing");
    cluster.heal()?;
    if let Err(e) = cluster.wait_healthy(Duration::from_secs(30)).await {
        report.anomalies.push(format!("after healing: {e:#}"));
    }
    let final_revision = stable_revision(&cluster).await;
    let final_leases = final_leases(&cluster).await;
    report.final_revision = final_revision;

    say(&format!(
        "final revision {final_revision}; waiting for watchers"
    ));
    // Watchers must get everything up to the final revision.
    let until = Instant::now() + Duration::from_secs(30);
    for (i, w) in watchers.iter().enumerate() {
        while w.complete_to.load(Ordering::SeqCst) < final_revision {
            if Instant::now() > until {
                report.anomalies.push(format!(
                    "watcher {i} got only up to revision {} of {final_revision} within 30 s \
                     after healing",
                    w.complete_to.load(Ordering::SeqCst)
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = stop_tx.send(true);
    for t in watch_tasks {
        let _ = t.await;
    }

    say("checking");
    // Watch guarantees, per watcher and between watchers.
    let mut revs: Vec<Revisions> = Vec::new();
    for (i, w) in watchers.iter().enumerate() {
        let (r, anomalies) = watch::check(&format!("watcher {i}"), &w.snapshot(), final_revision);
        report.anomalies.extend(anomalies.into_iter().take(10));
        revs.push(r);
    }
    for i in 1..revs.len() {
        report.anomalies.extend(watch::compare(
            "watcher 0",
            &revs[0],
            &format!("watcher {i}"),
            &revs[i],
        ));
    }
    let events = revs.swap_remove(0);
    report.watch_events = events.values().map(Vec::len).sum();

    let mut ops = recorder.take();
    report.operations = ops.len();
    report.succeeded = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
        .count();
    report.unknown = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Unknown { .. }))
        .count();
    report.anomalies.extend(check_writes(&ops, &events));
    crate::patch::patch(&mut ops, &events, final_leases.as_ref());
    // The checked history, for a closer look when a check fails (the directory is kept).
    // history.json replays the check alone: `stead-robustness check DIR/history.json`.
    let text: String = ops.iter().map(|o| format!("{o}\n")).collect();
    let _ = std::fs::write(dir.path().join("history.txt"), text);
    if let Ok(json) = serde_json::to_vec(&ops) {
        let _ = std::fs::write(dir.path().join("history.json"), json);
    }
    match linearizability::check(&ops, State::default(), cfg.checker_budget) {
        Verdict::Linearizable { steps } => report.checker_steps = steps,
        Verdict::Violation { excerpt, stuck_at } => report.anomalies.push(format!(
            "history is not linearizable:\n{excerpt}{}",
            events_after(&events, stuck_at)
        )),
        Verdict::Inconclusive {
            steps,
            excerpt,
            stuck_at,
        } => report.anomalies.push(format!(
            "linearizability check gave up after {steps} steps (budget): not proven; \
             deepest point so far:\n{excerpt}{}",
            events_after(&events, stuck_at)
        )),
    }

    say(&format!(
        "linearizability checked ({} operations); checking members",
        ops.len()
    ));
    report.anomalies.extend(
        check_members(
            &cluster,
            cfg.profile.prefix(),
            &events,
            final_revision,
            compacted,
        )
        .await,
    );
    report.anomalies.extend(cluster.crashed());
    drop(cluster);
    if !report.anomalies.is_empty() {
        report.kept_dir = Some(dir.keep().display().to_string());
    }
    Ok(report)
}

/// The watch's events of the few revisions after `revision`, for a failure report.
fn events_after(events: &Revisions, revision: i64) -> String {
    let mut out = String::from("the watch's events after that revision:\n");
    for (rev, evs) in events.range(revision + 1..).take(3) {
        for e in evs {
            let what = if e.delete { "DELETE" } else { "PUT" };
            out.push_str(&format!("  rev {rev} {what} {}", e.kv));
            if let Some(p) = &e.prev {
                out.push_str(&format!(" (prev {p})"));
            }
            out.push('\n');
        }
    }
    out
}

/// The leases that exist at the end (None if no member answered).
async fn final_leases(cluster: &Cluster) -> Option<std::collections::BTreeSet<i64>> {
    for i in cluster.active() {
        let ch = channel(&cluster.members[i].endpoint(), Some(Duration::from_secs(3)));
        if let Ok(r) = pb::lease_client::LeaseClient::new(ch)
            .lease_leases(pb::LeaseLeasesRequest {})
            .await
        {
            return Some(r.into_inner().leases.iter().map(|l| l.id).collect());
        }
    }
    None
}

/// The current revision, once it stopped moving (in-flight proposals may still commit).
async fn stable_revision(cluster: &Cluster) -> i64 {
    let mut last = -1;
    for _ in 0..50 {
        let mut rev = -1;
        for i in cluster.active() {
            let ch = channel(&cluster.members[i].endpoint(), Some(Duration::from_secs(3)));
            if let Ok(r) = pb::kv_client::KvClient::new(ch)
                .range(pb::RangeRequest {
                    key: b"health".to_vec(),
                    ..Default::default()
                })
                .await
            {
                rev = r.into_inner().header.map_or(-1, |h| h.revision);
                break;
            }
        }
        if rev == last && rev > 0 {
            return rev;
        }
        last = rev;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    last
}

/// Every acknowledged write is in the event log at the revision it was acknowledged with,
/// and every written value in the log was written by some request.
fn check_writes(ops: &[Operation], events: &Revisions) -> Vec<String> {
    let mut anomalies = Vec::new();
    let find = |rev: i64, key: &str, delete: bool| {
        events.get(&rev).and_then(|evs| {
            evs.iter()
                .find(|e| e.kv.key == key && e.delete == delete)
                .cloned()
        })
    };
    for op in ops {
        let Outcome::Ok(resp) = &op.outcome else {
            continue;
        };
        let lost = match (&op.request, resp) {
            (Request::Put { key, value, .. }, Response::Put { revision, .. })
            | (
                Request::Txn {
                    key,
                    write: TxnWrite::Put { value },
                    ..
                },
                Response::Txn {
                    revision,
                    succeeded: true,
                    ..
                },
            ) => find(*revision, key, false).is_none_or(|e| e.kv.value != *value),
            (Request::Delete { key }, Response::Delete { revision, deleted }) if *deleted > 0 => {
                find(*revision, key, true).is_none()
            }
            // A compare on mod_revision 0 that holds means the key is absent: nothing deleted.
            (
                Request::Txn {
                    key,
                    expected,
                    write: TxnWrite::Delete,
                },
                Response::Txn {
                    revision,
                    succeeded: true,
                    ..
                },
            ) if *expected != 0 => find(*revision, key, true).is_none(),
            _ => false,
        };
        if lost {
            anomalies.push(format!("acknowledged write not in the event log: {op}"));
        }
    }
    let written: std::collections::HashSet<&str> = ops
        .iter()
        .filter_map(|o| o.request.written_value())
        .collect();
    for (rev, evs) in events {
        for e in evs.iter().filter(|e| !e.delete) {
            if !written.contains(e.kv.value.as_str()) {
                anomalies.push(format!(
                    "revision {rev}: {} was never written by any client",
                    e.kv
                ));
            }
        }
    }
    anomalies.truncate(20);
    anomalies
}

/// After healing: every member holds the replayed state, reads at past revisions return the
/// replayed state there, and HashKV agrees at the final revision.
async fn check_members(
    cluster: &Cluster,
    prefix: &str,
    events: &Revisions,
    final_revision: i64,
    compacted: i64,
) -> Vec<String> {
    let mut anomalies = Vec::new();
    let expected: Vec<Kv> = watch::state_at(events, final_revision)
        .into_values()
        .collect();
    let mut end = prefix.as_bytes().to_vec();
    if let Some(l) = end.last_mut() {
        *l += 1;
    }
    let range = |revision: i64, serializable: bool| pb::RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: end.clone(),
        revision,
        serializable,
        ..Default::default()
    };
    let mut hashes = Vec::new();
    for i in cluster.active() {
        let name = &cluster.members[i].name;
        let ch = channel(&cluster.members[i].endpoint(), Some(Duration::from_secs(5)));
        let mut kv = pb::kv_client::KvClient::new(ch.clone());
        // The member's own state (serializable), once it has applied everything.
        let until = Instant::now() + Duration::from_secs(20);
        let mut got = None;
        while Instant::now() < until {
            if let Ok(r) = kv.range(range(0, true)).await {
                let r = r.into_inner();
                if r.header.as_ref().map_or(0, |h| h.revision) >= final_revision {
                    got = Some(r);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let Some(r) = got else {
            anomalies.push(format!("{name} did not reach revision {final_revision}"));
            continue;
        };
        let kvs: Vec<Kv> = r.kvs.iter().map(Kv::from_pb).collect();
        if kvs != expected {
            anomalies.push(format!(
                "{name}: final state differs from the event log: {} keys vs {} expected; \
                 first difference {:?}",
                kvs.len(),
                expected.len(),
                kvs.iter().zip(&expected).find(|(a, b)| a != b)
            ));
        }
        // Past revisions above the compaction point, on this member.
        for k in 1..=4 {
            let rev = compacted.max(1) + (final_revision - compacted.max(1)) * k / 4;
            if rev <= compacted || rev < 2 {
                continue;
            }
            let want: Vec<Kv> = watch::state_at(events, rev).into_values().collect();
            match kv.range(range(rev, true)).await {
                Ok(r) => {
                    let kvs: Vec<Kv> = r.into_inner().kvs.iter().map(Kv::from_pb).collect();
                    if kvs != want {
                        anomalies.push(format!(
                            "{name}: range at revision {rev} differs from the event log replay"
                        ));
                    }
                }
                Err(e) => anomalies.push(format!("{name}: range at revision {rev}: {e}")),
            }
        }
        match pb::maintenance_client::MaintenanceClient::new(ch)
            .hash_kv(pb::HashKvRequest {
                revision: final_revision,
            })
            .await
        {
            Ok(h) => hashes.push((name.clone(), h.into_inner().hash)),
            Err(e) => anomalies.push(format!("{name}: HashKV at {final_revision}: {e}")),
        }
    }
    if hashes.windows(2).any(|w| w[0].1 != w[1].1) {
        anomalies.push(format!(
            "HashKV at revision {final_revision} differs: {hashes:?}"
        ));
    }
    anomalies
}
