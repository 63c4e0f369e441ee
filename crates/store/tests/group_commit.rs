//! Group commit: concurrent writers share commits (and their fsyncs); a lone writer gets one
//! commit per write, acknowledged only once durable.

use stead_store::{PutRequest, Store, StoreConfig};

fn put(key: String) -> PutRequest {
    PutRequest {
        value: key.clone().into_bytes(),
        key: key.into_bytes(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits_instead_of_one_fsync_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    const WRITERS: usize = 64;
    const PER_WRITER: usize = 50;
    let before = store.write_stats();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    store.put(put(format!("w{w}/{i}"))).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.write_stats();
    let writes = stats.proposals - before.proposals;
    let commits = stats.commits - before.commits;
    assert_eq!(writes, (WRITERS * PER_WRITER) as u64);
    // With 64 writers waiting on each fsync, commits carry many writes each; one commit per
    // write (no group commit) would make these equal.
    assert!(
        commits * 4 <= writes,
        "{writes} writes took {commits} commits: group commit is not working"
    );
    store.shutdown();
}

#[tokio::test]
async fn a_lone_writer_commits_each_write_before_it_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let before = store.write_stats();
    for i in 0..20 {
        store.put(put(format!("k{i}"))).await.unwrap();
        // The reply came after its commit: the counter already includes it.
        assert_eq!(store.write_stats().commits - before.commits, i + 1);
    }
    store.shutdown();
}
