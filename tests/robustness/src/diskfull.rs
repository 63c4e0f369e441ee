//! Disk full: with a small `--quota-backend-bytes`, writes past the quota fail with etcd's
//! `ResourceExhausted "etcdserver: mvcc: database space exceeded"` and raise NOSPACE; reads
//! keep working; compaction, defragmentation of every member and disarming the alarms
//! bring writes back, and the members still agree.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use stead_server::pb;

use crate::cluster::{Cluster, channel};

pub const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

/// What the scenario observed.
#[derive(Debug)]
pub struct DiskFullReport {
    pub writes_before_full: usize,
    pub alarms: usize,
}

fn put(key: &str, value: Vec<u8>) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value,
        ..Default::default()
    }
}

pub async fn run(bin: &Path, members: usize) -> anyhow::Result<DiskFullReport> {
    let dir = tempfile::Builder::new()
        .prefix("stead-diskfull-")
        .tempdir()?;
    let extra: Vec<String> = ["--quota-backend-bytes", "2000000"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let cluster = Cluster::start(bin, dir.path(), members, &extra).await?;
    let ep = cluster.members[0].endpoint();
    let mut kv = pb::kv_client::KvClient::new(channel(&ep, Some(Duration::from_secs(10))));
    let mut maint =
        pb::maintenance_client::MaintenanceClient::new(channel(&ep, Some(Duration::from_secs(30))));

    // Fill until refused, rotating over 4 keys so that compaction frees nearly everything.
    let mut written = 0usize;
    let refused = loop {
        ensure!(written < 300, "300 puts of 100 kB fit in a 2 MB quota");
        let value = vec![b'a' + (written % 26) as u8; 100_000];
        match kv.put(put(&format!("/full/q{}", written % 4), value)).await {
            Ok(_) => written += 1,
            Err(s) => break s,
        }
    };
    ensure!(
        refused.code() == tonic::Code::ResourceExhausted && refused.message() == NO_SPACE,
        "a write past the quota failed with {:?} {:?}, not etcd's NOSPACE error",
        refused.code(),
        refused.message()
    );
    // Every member refuses writes (the alarm is replicated), every member still reads.
    for &i in &cluster.active() {
        let ch = channel(
            &cluster.members[i].endpoint(),
            Some(Duration::from_secs(10)),
        );
        let mut kv = pb::kv_client::KvClient::new(ch);
        let r = kv.put(put("/full/tiny", b"x".to_vec())).await;
        match r {
            Err(s) if s.code() == tonic::Code::ResourceExhausted && s.message() == NO_SPACE => {}
            other => bail!(
                "{}: a tiny put under the alarm gave {other:?}",
                cluster.members[i].name
            ),
        }
        let read = kv
            .range(pb::RangeRequest {
                key: b"/full/q0".to_vec(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("{}: read under the alarm", cluster.members[i].name))?;
        ensure!(read.into_inner().kvs.len() == 1, "the stored key vanished");
    }
    let alarms = maint
        .alarm(pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Get as i32,
            member_id: 0,
            alarm: pb::AlarmType::None as i32,
        })
        .await?
        .into_inner()
        .alarms;
    ensure!(
        !alarms.is_empty()
            && alarms
                .iter()
                .all(|a| a.alarm == pb::AlarmType::Nospace as i32),
        "expected NOSPACE alarms, got {alarms:?}"
    );

    // Compact to now, defragment every member, disarm every alarm.
    let rev = kv
        .range(pb::RangeRequest {
            key: b"/full/q0".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .header
        .map_or(0, |h| h.revision);
    kv.compact(pb::CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .context("compaction under the alarm")?;
    for &i in &cluster.active() {
        let ch = channel(
            &cluster.members[i].endpoint(),
            Some(Duration::from_secs(60)),
        );
        pb::maintenance_client::MaintenanceClient::new(ch)
            .defragment(pb::DefragmentRequest {})
            .await
            .with_context(|| format!("defragmenting {}", cluster.members[i].name))?;
    }
    for a in &alarms {
        maint
            .alarm(pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Deactivate as i32,
                member_id: a.member_id,
                alarm: a.alarm,
            })
            .await
            .context("disarming")?;
    }
    // Writes work again, through every member.
    let until = Instant::now() + Duration::from_secs(10);
    for &i in &cluster.active() {
        let ch = channel(
            &cluster.members[i].endpoint(),
            Some(Duration::from_secs(10)),
        );
        let mut kv = pb::kv_client::KvClient::new(ch);
        loop {
            match kv.put(put("/full/after", b"ok".to_vec())).await {
                Ok(_) => break,
                Err(s) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = s;
                }
                Err(s) => {
                    let status = maint.status(pb::StatusRequest {}).await?.into_inner();
                    bail!(
                        "{}: writes still refused after compact + defrag + disarm: {s} \
                         (db size {}, in use {}, alarms {:?})",
                        cluster.members[i].name,
                        status.db_size,
                        status.db_size_in_use,
                        status.errors
                    )
                }
            }
        }
    }
    // And the members agree.
    let rev = kv
        .range(pb::RangeRequest {
            key: b"/full/after".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .header
        .map_or(0, |h| h.revision);
    let mut hashes = Vec::new();
    for &i in &cluster.active() {
        let ch = channel(
            &cluster.members[i].endpoint(),
            Some(Duration::from_secs(10)),
        );
        let mut kv = pb::kv_client::KvClient::new(ch.clone());
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let r = kv
                .range(pb::RangeRequest {
                    key: b"/full/after".to_vec(),
                    serializable: true,
                    ..Default::default()
                })
                .await?;
            if r.into_inner().header.map_or(0, |h| h.revision) >= rev {
                break;
            }
            ensure!(Instant::now() < until, "member {i} never reached {rev}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let h = pb::maintenance_client::MaintenanceClient::new(ch)
            .hash_kv(pb::HashKvRequest { revision: rev })
            .await?
            .into_inner()
            .hash;
        hashes.push(h);
    }
    ensure!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "HashKV differs after recovery: {hashes:?}"
    );
    Ok(DiskFullReport {
        writes_before_full: written,
        alarms: alarms.len(),
    })
}
