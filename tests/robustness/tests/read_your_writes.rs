//! Regression: a write sent to a follower was answered as soon as the *leader* had applied
//! it. The follower itself could still be behind, so a serializable read on the same member
//! right after an acknowledged put missed the put, and a `Compact(physical)` followed by
//! `Defragment` on that member defragmented before the compaction was applied there and
//! reclaimed nothing (found by the disk-full scenario: the NOSPACE alarm could not be
//! cleared). etcd answers a proposal only once the member that received it has applied it.

use std::time::Duration;

use stead_robustness::cluster::{Cluster, channel, stead_bin};
use stead_robustness::proxy::LinkFault;
use stead_server::pb;

#[test]
fn a_write_acknowledged_by_a_follower_is_visible_to_a_serializable_read_on_it() {
    let bin = stead_bin().expect("the stead binary (cargo build -p stead)");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = Cluster::start(&bin, dir.path(), 3, &[])
            .await
            .expect("cluster");
        let leader = cluster.leader().await.expect("leader");
        let follower = (leader + 1) % 3;
        // The leader's appends reach this follower late (the other follower makes the
        // quorum): the leader commits and answers the forwarded write long before this
        // follower has applied it, so answering on the leader's word alone fails at once.
        cluster.net.set(
            leader,
            follower,
            LinkFault::Delay(Duration::from_millis(100)),
        );
        let ch = channel(
            &cluster.members[follower].endpoint(),
            Some(Duration::from_secs(5)),
        );
        let mut kv = pb::kv_client::KvClient::new(ch);
        for i in 0..50 {
            let value = format!("v{i}").into_bytes();
            let put = kv
                .put(pb::PutRequest {
                    key: b"ryw".to_vec(),
                    value: value.clone(),
                    ..Default::default()
                })
                .await
                .expect("put")
                .into_inner();
            let rev = put.header.expect("header").revision;
            let got = kv
                .range(pb::RangeRequest {
                    key: b"ryw".to_vec(),
                    serializable: true,
                    ..Default::default()
                })
                .await
                .expect("serializable range")
                .into_inner();
            let seen = got
                .kvs
                .first()
                .map(|kv| (kv.mod_revision, kv.value.clone()));
            assert_eq!(
                seen,
                Some((rev, value)),
                "write {i} acknowledged at revision {rev} by the follower is not visible there \
                 (header revision {})",
                got.header.map_or(0, |h| h.revision)
            );
        }
    });
}
