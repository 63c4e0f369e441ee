//! The nemesis: one fault at a time, on a schedule drawn from a seeded RNG, each healed
//! before the next. The same seed gives the same sequence of fault kinds, durations and
//! random picks; which process is the leader at a given moment is up to the cluster.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use stead_server::pb;

use crate::cluster::{Cluster, channel};
use crate::proxy::LinkFault;
use crate::watch::WatchLog;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    KillLeader,
    KillRandom,
    Pause,
    Blackhole,
    BlackholeOutbound,
    Delay,
    Drop,
    Compact,
    Defrag,
    Snapshot,
    ReplaceMember,
    KillDuringDefrag,
    KillDuringCompaction,
    KillDuringSnapshotInstall,
}

impl Fault {
    /// The faults that make sense for a cluster of `members`.
    pub fn for_members(members: usize) -> Vec<Fault> {
        use Fault::*;
        let mut all = vec![
            KillRandom,
            Pause,
            Compact,
            Defrag,
            Snapshot,
            KillDuringDefrag,
            KillDuringCompaction,
        ];
        if members > 1 {
            all.extend([
                KillLeader,
                KillLeader,
                Blackhole,
                BlackholeOutbound,
                Delay,
                Drop,
                ReplaceMember,
                KillDuringSnapshotInstall,
            ]);
        }
        all
    }
}

#[derive(Debug, Default)]
pub struct NemesisReport {
    pub injected: BTreeMap<String, u64>,
    /// Faults that could not be injected (e.g. MemberAdd refused): not anomalies, but shown.
    pub skipped: Vec<String>,
    /// Things that are wrong whatever the timing (a corrupt snapshot, a cluster that does
    /// not recover).
    pub anomalies: Vec<String>,
    pub compacted: i64,
    /// API behaviour that differs from etcd's without breaking a safety property
    /// (reported, not counted as anomalies).
    pub findings: Vec<String>,
}

pub struct Nemesis {
    rng: StdRng,
    faults: Vec<Fault>,
    watchers: Vec<WatchLog>,
    pub report: NemesisReport,
    /// Entries a lagging member must miss to need a snapshot (`--snapshot-count` plus catch-up).
    pub snapshot_distance: i64,
}

fn ms(rng: &mut StdRng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo..=hi))
}

impl Nemesis {
    pub fn new(seed: u64, faults: Vec<Fault>, watchers: Vec<WatchLog>) -> Nemesis {
        Nemesis {
            rng: StdRng::seed_from_u64(seed),
            faults,
            watchers,
            report: NemesisReport::default(),
            snapshot_distance: 600,
        }
    }

    /// Injects faults until `deadline`, then returns (the caller heals the cluster).
    pub async fn run(&mut self, cluster: &mut Cluster, deadline: Instant) {
        tokio::time::sleep(ms(&mut self.rng, 500, 1500)).await;
        while Instant::now() < deadline && !self.faults.is_empty() {
            let fault = self.faults[self.rng.random_range(0..self.faults.len())];
            let began = Instant::now();
            let result = self.inject(cluster, fault).await;
            eprintln!(
                "  nemesis: {fault:?} {} ({:.1}s)",
                if result.is_ok() { "done" } else { "skipped" },
                began.elapsed().as_secs_f64()
            );
            match result {
                Ok(()) => {
                    *self
                        .report
                        .injected
                        .entry(format!("{fault:?}"))
                        .or_default() += 1;
                }
                Err(e) => self.report.skipped.push(format!("{fault:?}: {e:#}")),
            }
            if let Err(e) = cluster.heal() {
                self.report.anomalies.push(format!("healing failed: {e:#}"));
            }
            if let Err(e) = cluster.wait_healthy(Duration::from_secs(30)).await {
                self.report.anomalies.push(format!(
                    "after {fault:?}: {e:#}; last log lines:\n{}",
                    cluster
                        .active()
                        .iter()
                        .map(|&i| cluster.log_tail(i, 5))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
                return;
            }
            let crashed = cluster.crashed();
            self.report.anomalies.extend(crashed);
            tokio::time::sleep(ms(&mut self.rng, 300, 1500)).await;
        }
    }

    fn random_member(&mut self, cluster: &Cluster) -> usize {
        let active = cluster.active();
        active[self.rng.random_range(0..active.len())]
    }

    async fn leader_or_random(&mut self, cluster: &Cluster) -> usize {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Some(l) = cluster.leader().await {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.random_member(cluster)
    }

    /// The highest revision every watcher has completely received.
    fn safe_compact_revision(&self) -> i64 {
        self.watchers
            .iter()
            .map(|w| w.complete_to.load(Ordering::SeqCst))
            .min()
            .unwrap_or(1)
    }

    async fn compact(&mut self, cluster: &Cluster, via: usize) -> anyhow::Result<()> {
        let back = self.rng.random_range(0..20);
        let rev = self.safe_compact_revision() - back;
        if rev <= self.report.compacted.max(1) {
            anyhow::bail!("nothing new to compact (safe revision {rev})");
        }
        let physical = self.rng.random_bool(0.5);
        let ch = channel(
            &cluster.members[via].endpoint(),
            Some(Duration::from_secs(5)),
        );
        pb::kv_client::KvClient::new(ch)
            .compact(pb::CompactionRequest {
                revision: rev,
                physical,
            })
            .await?;
        self.report.compacted = rev;
        Ok(())
    }

    async fn inject(&mut self, cluster: &mut Cluster, fault: Fault) -> anyhow::Result<()> {
        let hold = ms(&mut self.rng, 1000, 4000);
        match fault {
            Fault::KillLeader | Fault::KillRandom => {
                let m = if fault == Fault::KillLeader {
                    self.leader_or_random(cluster).await
                } else {
                    self.random_member(cluster)
                };
                cluster.kill(m);
                tokio::time::sleep(ms(&mut self.rng, 200, 2000)).await;
                cluster.spawn(m)?;
            }
            Fault::Pause => {
                let m = self.random_member(cluster);
                cluster.pause(m)?;
                tokio::time::sleep(hold).await;
                cluster.resume(m)?;
            }
            Fault::Blackhole | Fault::BlackholeOutbound | Fault::Delay | Fault::Drop => {
                let m = if self.rng.random_bool(0.5) {
                    self.leader_or_random(cluster).await
                } else {
                    self.random_member(cluster)
                };
                let active = cluster.active();
                match fault {
                    Fault::Blackhole => cluster.net.isolate(m, &active, LinkFault::Blackhole),
                    Fault::BlackholeOutbound => {
                        for &o in active.iter().filter(|&&o| o != m) {
                            cluster.net.set(m, o, LinkFault::Blackhole);
                        }
                    }
                    Fault::Delay => {
                        let d = ms(&mut self.rng, 20, 250);
                        cluster.net.isolate(m, &active, LinkFault::Delay(d));
                    }
                    _ => {
                        let p = self.rng.random_range(0.02..0.2);
                        cluster.net.isolate(m, &active, LinkFault::Drop(p));
                    }
                }
                tokio::time::sleep(hold).await;
                cluster.net.heal();
            }
            Fault::Compact => {
                let m = self.random_member(cluster);
                self.compact(cluster, m).await?;
            }
            Fault::Defrag => {
                let m = self.random_member(cluster);
                let ch = channel(
                    &cluster.members[m].endpoint(),
                    Some(Duration::from_secs(30)),
                );
                pb::maintenance_client::MaintenanceClient::new(ch)
                    .defragment(pb::DefragmentRequest {})
                    .await?;
            }
            Fault::Snapshot => {
                let m = self.random_member(cluster);
                self.snapshot(cluster, m).await?;
            }
            Fault::ReplaceMember => self.replace_member(cluster).await?,
            Fault::KillDuringDefrag | Fault::KillDuringCompaction => {
                let m = self.random_member(cluster);
                let endpoint = cluster.members[m].endpoint();
                let task = if fault == Fault::KillDuringDefrag {
                    tokio::spawn(async move {
                        let ch = channel(&endpoint, Some(Duration::from_secs(10)));
                        let _ = pb::maintenance_client::MaintenanceClient::new(ch)
                            .defragment(pb::DefragmentRequest {})
                            .await;
                    })
                } else {
                    let rev = self.safe_compact_revision();
                    if rev <= self.report.compacted.max(1) {
                        anyhow::bail!("nothing new to compact");
                    }
                    self.report.compacted = rev;
                    tokio::spawn(async move {
                        let ch = channel(&endpoint, Some(Duration::from_secs(10)));
                        let _ = pb::kv_client::KvClient::new(ch)
                            .compact(pb::CompactionRequest {
                                revision: rev,
                                physical: true,
                            })
                            .await;
                    })
                };
                tokio::time::sleep(ms(&mut self.rng, 0, 40)).await;
                cluster.kill(m);
                task.abort();
                tokio::time::sleep(ms(&mut self.rng, 100, 1000)).await;
                cluster.spawn(m)?;
            }
            Fault::KillDuringSnapshotInstall => self.kill_during_snapshot_install(cluster).await?,
        }
        Ok(())
    }

    /// Maintenance.Snapshot: the stream ends with the SHA-256 of what came before it.
    async fn snapshot(&mut self, cluster: &Cluster, m: usize) -> anyhow::Result<()> {
        let ch = channel(
            &cluster.members[m].endpoint(),
            Some(Duration::from_secs(30)),
        );
        let mut stream = pb::maintenance_client::MaintenanceClient::new(ch)
            .snapshot(pb::SnapshotRequest {})
            .await?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(part) = stream.next().await {
            bytes.extend_from_slice(&part?.blob);
        }
        if bytes.len() < 32 {
            self.report.anomalies.push(format!(
                "snapshot from {} has {} bytes, no checksum",
                cluster.members[m].name,
                bytes.len()
            ));
            return Ok(());
        }
        let (payload, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(payload).as_slice() != sum {
            self.report.anomalies.push(format!(
                "snapshot from {} ({} bytes): SHA-256 trailer does not match",
                cluster.members[m].name,
                bytes.len()
            ));
        }
        Ok(())
    }

    async fn applied_index(cluster: &Cluster, m: usize) -> Option<u64> {
        cluster.status(m).await.map(|s| s.raft_applied_index)
    }

    /// Stops a follower until the others have moved on past the log it would need, restarts
    /// it (it now installs a snapshot) and kills it again partway.
    async fn kill_during_snapshot_install(&mut self, cluster: &mut Cluster) -> anyhow::Result<()> {
        let leader = self.leader_or_random(cluster).await;
        let followers: Vec<usize> = cluster
            .active()
            .into_iter()
            .filter(|&i| i != leader)
            .collect();
        if followers.is_empty() {
            anyhow::bail!("no follower");
        }
        let m = followers[self.rng.random_range(0..followers.len())];
        let start = Self::applied_index(cluster, leader).await.unwrap_or(0);
        cluster.kill(m);
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let now = Self::applied_index(cluster, leader).await.unwrap_or(0);
            if now >= start + self.snapshot_distance as u64 || Instant::now() > until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cluster.spawn(m)?;
        tokio::time::sleep(ms(&mut self.rng, 50, 1500)).await;
        cluster.kill(m);
        tokio::time::sleep(ms(&mut self.rng, 100, 800)).await;
        cluster.spawn(m)?;
        Ok(())
    }

    /// Adds a fresh member, waits for it to catch up, then removes a different one.
    async fn replace_member(&mut self, cluster: &mut Cluster) -> anyhow::Result<()> {
        if cluster.active().len() > 3 {
            anyhow::bail!(
                "a previous replacement left {} members",
                cluster.active().len()
            );
        }
        let via = self.leader_or_random(cluster).await;
        let target_rev = cluster
            .status(via)
            .await
            .and_then(|s| s.header)
            .map_or(0, |h| h.revision);
        let new = cluster.add_member(via).await?;
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let ch = channel(
                &cluster.members[new].endpoint(),
                Some(Duration::from_secs(2)),
            );
            let rev = pb::kv_client::KvClient::new(ch)
                .range(pb::RangeRequest {
                    key: b"health".to_vec(),
                    serializable: true,
                    ..Default::default()
                })
                .await
                .ok()
                .and_then(|r| r.into_inner().header)
                .map_or(0, |h| h.revision);
            if rev >= target_rev {
                break;
            }
            if Instant::now() > until {
                self.report.anomalies.push(format!(
                    "added member {} did not catch up to revision {target_rev} in 30 s:\n{}",
                    cluster.members[new].name,
                    cluster.log_tail(new, 10)
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let old: Vec<usize> = cluster.active().into_iter().filter(|&i| i != new).collect();
        let victim = old[self.rng.random_range(0..old.len())];
        let via = if via == victim { new } else { via };
        if let Some(note) = cluster.remove_member(victim, via).await? {
            self.report.findings.push(note);
        }
        Ok(())
    }
}
