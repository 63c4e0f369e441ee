//! Regression (track record #3 in docs/ROBUSTNESS.md): a leader killed with -9 and
//! restarted before the others elect a new one came back as leader of the same term
//! (openraft restored its committed vote) with a commit index, and so a read index, behind
//! writes it had acknowledged before the crash (the commit index is saved without a sync,
//! as etcd's is): linearizable reads on it, or through it from a follower, returned older
//! state. Now a restarted leader holds an election (`enable_leader_restore` off) and the new
//! term's first entry commits everything before it. With restore on, this test fails in
//! most rounds. The soak found it as a stale Range in the Kubernetes profile.

use std::time::{Duration, Instant};

use stead_robustness::cluster::{Cluster, channel, stead_bin};
use stead_server::pb;

#[test]
fn a_leader_restarted_in_its_own_term_never_serves_a_stale_linearizable_read() {
    let bin = stead_bin().expect("the stead binary (cargo build -p stead)");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cluster = Cluster::start(&bin, dir.path(), 3, &[])
            .await
            .expect("cluster");
        let mut stale = Vec::new();
        for round in 0..10 {
            let Some(leader) = cluster.leader().await else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let ep = cluster.members[leader].endpoint();
            let mut kv = pb::kv_client::KvClient::new(channel(&ep, Some(Duration::from_secs(5))));
            let mut acked = 0;
            for i in 0..50 {
                if let Ok(r) = kv
                    .put(pb::PutRequest {
                        key: format!("k{}", i % 5).into_bytes(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    })
                    .await
                {
                    acked = r.into_inner().header.map_or(0, |h| h.revision);
                }
            }
            cluster.kill(leader);
            cluster.spawn(leader).expect("restart");
            // Read through every member until one answers; none may be behind `acked`.
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                let mut answered = false;
                for i in cluster.active() {
                    let ep = cluster.members[i].endpoint();
                    let mut kv =
                        pb::kv_client::KvClient::new(channel(&ep, Some(Duration::from_secs(2))));
                    if let Ok(r) = kv
                        .range(pb::RangeRequest {
                            key: b"k0".to_vec(),
                            ..Default::default()
                        })
                        .await
                    {
                        answered = true;
                        let rev = r.into_inner().header.map_or(0, |h| h.revision);
                        if rev < acked {
                            stale.push(format!(
                                "round {round}: {} answered revision {rev} after {acked} was acknowledged",
                                cluster.members[i].name
                            ));
                        }
                    }
                }
                if answered {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cluster
                .wait_healthy(Duration::from_secs(30))
                .await
                .expect("healthy");
        }
        assert!(stale.is_empty(), "stale linearizable reads: {stale:#?}");
    });
}
