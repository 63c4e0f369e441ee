//! The Raft wiring (redb log store + MVCC state machine under openraft) in one process,
//! with a network that drops, delays and partitions messages. No test sleeps in the hope of
//! convergence: each waits on a condition with a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::network::v2::RaftNetworkV2;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{Config, OptionalSend, RaftNetworkFactory, ServerState};
use stead_store::raft::{LogStore, NodeInfo, Raft, Snapshot, StateMachine, TypeConfig, Vote};
use stead_store::{Command, PutRequest, RangeRequest, Store, StoreConfig};

/// Deterministic fault decisions (xorshift from a seed).
#[derive(Default)]
struct Faults {
    /// Pairs (from, to) whose messages are dropped.
    cut: BTreeSet<(u64, u64)>,
    /// Per-mille chance to drop any message.
    drop_per_mille: u64,
    max_delay_ms: u64,
    rng: u64,
}

impl Faults {
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, Raft>>>,
    faults: Arc<Mutex<Faults>>,
}

impl Router {
    /// The target's handle after the fault decisions, or the error the sender sees.
    async fn deliver(&self, from: u64, to: u64) -> Result<Raft, Unreachable<TypeConfig>> {
        let (drop, delay) = {
            let mut f = self.faults.lock().expect("lock");
            let roll = f.next() % 1000;
            let delay = if f.max_delay_ms > 0 {
                f.next() % f.max_delay_ms
            } else {
                0
            };
            (
                f.cut.contains(&(from, to)) || roll < f.drop_per_mille,
                delay,
            )
        };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if drop {
            return Err(Unreachable::from_string("dropped by the test network"));
        }
        self.nodes
            .lock()
            .expect("lock")
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::from_string("no such node"))
    }

    /// Cuts every link between `node` and the others, both ways.
    fn isolate(&self, node: u64, others: &[u64]) {
        let mut f = self.faults.lock().expect("lock");
        for o in others {
            f.cut.insert((node, *o));
            f.cut.insert((*o, node));
        }
    }

    fn heal(&self) {
        let mut f = self.faults.lock().expect("lock");
        f.cut.clear();
        f.drop_per_mille = 0;
        f.max_delay_ms = 0;
    }
}

struct Conn {
    router: Router,
    to: u64,
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Conn;

    async fn new_client(&mut self, target: u64, _node: &NodeInfo) -> Conn {
        Conn {
            router: self.clone(),
            to: target,
        }
    }
}

fn unreachable(e: impl std::fmt::Display) -> Unreachable<TypeConfig> {
    Unreachable::from_string(e.to_string())
}

impl RaftNetworkV2<TypeConfig> for Conn {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _o: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let from = rpc.vote.leader_id.node_id;
        let raft = self.router.deliver(from, self.to).await?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::Unreachable(unreachable(e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _o: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let from = rpc.vote.leader_id.node_id;
        let raft = self.router.deliver(from, self.to).await?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::Unreachable(unreachable(e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _o: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let raft = self.router.deliver(vote.leader_id.node_id, self.to).await?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Unreachable(unreachable(e)))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        _o: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let raft = self
            .router
            .deliver(req.from_leader().leader_id.node_id, self.to)
            .await?;
        raft.handle_transfer_leader(req)
            .await
            .map_err(|e| RPCError::Unreachable(unreachable(e)))
    }
}

struct Node {
    raft: Raft,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn cluster(router: &Router, n: u64) -> Vec<Node> {
    let config = Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            ..Default::default()
        }
        .validate()
        .expect("config"),
    );
    let mut nodes = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=n {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_unstarted(StoreConfig::new(dir.path())).expect("store");
        let sm = StateMachine::new(store.shared().clone(), dir.path()).expect("sm");
        let log = LogStore::open(&dir.path().join("raft")).expect("log");
        let raft = Raft::new(id, config.clone(), router.clone(), log, sm)
            .await
            .expect("raft");
        router.nodes.lock().expect("lock").insert(id, raft.clone());
        members.insert(
            id,
            NodeInfo {
                name: format!("n{id}"),
                ..Default::default()
            },
        );
        nodes.push(Node {
            raft,
            store,
            _dir: dir,
        });
    }
    nodes[0].raft.initialize(members).await.expect("initialize");
    nodes
}

fn put(i: usize) -> Command {
    Command::Put(PutRequest {
        key: format!("k{i:04}").into_bytes(),
        value: format!("v{i}").into_bytes(),
        ..Default::default()
    })
}

/// Writes through whichever member leads, retrying while there is none.
async fn write(nodes: &[Node], cmd: Command) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        for node in nodes {
            if let Ok(resp) = node.raft.client_write(cmd.clone()).await
                && let Some(Ok(stead_store::CommandResponse::Put(p))) = resp.data
            {
                return p.revision;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader accepted {cmd}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_converged(nodes: &[Node], revision: i64) {
    for node in nodes {
        node.raft
            .wait(Some(Duration::from_secs(20)))
            .metrics(
                |m| m.last_applied.is_some() && m.last_applied == m.local_committed,
                "applied everything committed",
            )
            .await
            .expect("member applies");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while node.store.hub().revision() < revision {
            assert!(
                tokio::time::Instant::now() < deadline,
                "member stuck below {revision}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let hashes: Vec<u32> = nodes
        .iter()
        .map(|n| n.store.engine().hash_kv(revision).expect("hash").0)
        .collect();
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "members differ: {hashes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_commit_once_and_members_converge_despite_dropped_and_delayed_messages() {
    let router = Router::default();
    {
        let mut f = router.faults.lock().expect("lock");
        f.rng = 0x5eed_1234_abcd_0001;
        f.drop_per_mille = 150;
        f.max_delay_ms = 15;
    }
    let nodes = cluster(&router, 3).await;
    let mut revisions = Vec::new();
    for i in 0..60 {
        revisions.push(write(&nodes, put(i)).await);
    }
    router.heal();
    let last = *revisions.iter().max().expect("writes");
    wait_converged(&nodes, last).await;
    // Each acknowledged write is one revision, in order: none applied twice or lost.
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    for node in &nodes {
        let all = node
            .store
            .engine()
            .range(&RangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                ..Default::default()
            })
            .expect("range");
        assert_eq!(all.count, 60);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_rejoins_without_diverging() {
    let router = Router::default();
    let nodes = cluster(&router, 3).await;
    write(&nodes, put(0)).await;
    let leader = nodes
        .iter()
        .position(|n| n.raft.metrics().borrow_watched().state == ServerState::Leader)
        .expect("a leader");
    let old = leader as u64 + 1;
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    router.isolate(old, &others);

    // The majority elects a new leader and keeps committing.
    let majority: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.raft.metrics().borrow_watched().id != old)
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !majority
        .iter()
        .any(|n| n.raft.metrics().borrow_watched().state == ServerState::Leader)
    {
        assert!(tokio::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A just-elected leader may still refuse writes until its lease is established: retry
    // through the majority until each write commits.
    let mut last = 0;
    for i in 1..20 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        last = loop {
            let mut committed = None;
            for node in &majority {
                if let Ok(resp) = node.raft.client_write(put(i)).await
                    && let Some(Ok(stead_store::CommandResponse::Put(p))) = resp.data
                {
                    committed = Some(p.revision);
                    break;
                }
            }
            if let Some(rev) = committed {
                break rev;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the majority never committed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
    }
    // The isolated old leader cannot commit anything.
    let stale = tokio::time::timeout(
        Duration::from_millis(800),
        nodes[leader].raft.client_write(put(999)),
    )
    .await;
    assert!(
        !matches!(stale, Ok(Ok(_))),
        "an isolated leader committed a write"
    );

    router.heal();
    wait_converged(&nodes, last).await;
    let gone = nodes[leader]
        .store
        .engine()
        .range(&RangeRequest {
            key: b"k0999".to_vec(),
            ..Default::default()
        })
        .expect("range");
    assert_eq!(
        gone.count, 0,
        "the uncommitted write survived on the old leader"
    );
}
