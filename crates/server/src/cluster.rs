//! A replicated member: the Raft handle wired to the store (as its [`Proposer`]) and to the
//! peer service (answering what followers forward to the leader).
//!
//! - Writes: `client_write` on the leader; a follower forwards the command to the leader
//!   ([`crate::forward`] gathers the writes waiting at the same time into one request).
//! - What a follower asks of the leader (writes, read indexes, lease renewals) travels on
//!   one long-lived stream per leader ([`crate::ask`]).
//! - Linearizable reads: read-index — the leader confirms its leadership with a quorum and
//!   names a log index; the member waits until it has applied that far, then reads locally
//!   ([`crate::reads`] gathers the reads waiting at the same time into one round). When the
//!   asking follower and the leader are a quorum by themselves (three voters or fewer), the
//!   follower's own vote stands in for the leader's heartbeat round (see `ReadIndexGrant`).
//! - Lease keep-alives go to the leader, which alone decides expiry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use openraft::async_runtime::WatchReceiver;
use openraft::raft::linearizable_read::{Linearizer, ReadLogId};
use openraft::vote::RaftLeaderId;
use openraft::{ReadPolicy, ServerState};
use stead_store::raft::{LastVote, LogId, NodeInfo, Raft, Reply, TypeConfig, Vote, decode, encode};
use stead_store::{Command, CommandResponse, Error, ProposeFuture, Proposer, Shared};
use tonic::Status;

use crate::ask::{AskKind, Asks};
use crate::forward::{Forwarded, Forwarder};
use crate::metrics::{Metrics, ReadIndexVouch};
use crate::pb::steadpeer::Blob;
use crate::peer::{Channels, LeaderService};
use crate::reads::ReadRounds;

/// How long a request waits for a leader before giving up with "no leader".
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Deadline of a request forwarded to the leader: a hung leader must not hang its callers.
pub const FORWARD_DEADLINE: Duration = Duration::from_secs(5);

/// `call` to the leader, failed with `DeadlineExceeded` after [`FORWARD_DEADLINE`].
async fn forwarded<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<tonic::Response<T>, Status> {
    tokio::time::timeout(FORWARD_DEADLINE, call)
        .await
        .unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(
                "the leader did not answer in time",
            ))
        })
}

/// A lease request that only the leader can answer (it keeps the deadlines).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub enum LeaseOp {
    KeepAlive(i64),
    Remaining(i64),
}

/// A membership change, as etcd's Cluster API asks for it; carried to the leader.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum MemberChange {
    Add {
        id: u64,
        node: NodeInfo,
        learner: bool,
    },
    Promote {
        id: u64,
    },
    Remove {
        id: u64,
    },
    Update {
        id: u64,
        peer_url: String,
    },
    /// A member publishes its own name and client URLs (etcd does this after start).
    Publish {
        id: u64,
        node: NodeInfo,
    },
}

/// The replicated member's handles; cheap to clone.
#[derive(Clone)]
pub struct Member {
    pub id: u64,
    pub raft: Raft,
    pub shared: Arc<Shared>,
    pub channels: Channels,
    /// Carries what this member asks of the leader when it does not lead.
    pub asks: Asks,
    /// Held by a membership change from its first step to its last: a change is a joint
    /// entry and then a uniform one, and a second change proposed in between would make the
    /// first one's last step fail its precondition although its effect went through.
    pub changes: Arc<tokio::sync::Mutex<()>>,
    /// Carries writes to the leader when this member does not lead.
    pub forwarder: Forwarder,
    /// Gathers linearizable reads into read-index rounds.
    pub reads: ReadRounds,
    /// The vote this member last saved, from its Raft log.
    pub last_vote: LastVote,
    /// The counters `/metrics` shows (read indexes named as leader, here).
    pub metrics: Arc<Metrics>,
}

/// A snapshot of what Raft reports, for Status and MemberList.
#[derive(Debug, Clone)]
pub struct RaftStatus {
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub members: BTreeMap<u64, NodeInfo>,
    pub learners: Vec<u64>,
}

/// What one attempt at the leader came to.
enum Attempt<T> {
    Done(stead_store::Result<T>),
    /// Nothing was done (no leader, or the member asked does not lead): ask again.
    Retry,
}

type AttemptFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Attempt<T>> + Send>>;

fn replication(e: impl std::fmt::Display) -> Error {
    Error::Replication {
        reason: e.to_string(),
    }
}

/// True when a write was refused before it entered the log (this member does not lead), so
/// proposing it again cannot apply it twice. `LogEntryDiscarded` also names a leader but
/// means the outcome is unknown: it must not be retried.
fn not_appended(
    e: &openraft::errors::RaftError<
        stead_store::raft::TypeConfig,
        openraft::errors::ClientWriteError<stead_store::raft::TypeConfig>,
    >,
) -> bool {
    matches!(
        e,
        openraft::errors::RaftError::APIError(openraft::errors::ClientWriteError::ForwardToLeader(
            _
        ))
    )
}

/// A failed request that may safely be asked again (a read index, a lease renewal): any
/// transport failure is retried, at a new leader once one is elected.
fn idempotent_failure<T>(s: Status) -> Attempt<T> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => Attempt::Retry,
        _ => remote_failure(s),
    }
}

/// A failed call at the leader: asked again when nothing was done (the member asked does not
/// lead, or could not be reached), else the error.
fn remote_failure<T>(s: Status) -> Attempt<T> {
    if s.code() == tonic::Code::FailedPrecondition || crate::ask::never_sent(&s) {
        Attempt::Retry
    } else {
        Attempt::Done(Err(replication(s.message())))
    }
}

enum ReadIndexError {
    /// This member does not lead (any more): ask the leader.
    NotLeader,
    Failed(String),
}

/// One leadership: a term and the member elected in it.
type Leadership = openraft::alias::CommittedLeaderIdOf<TypeConfig>;

/// A follower's request for the leader's read index.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct ReadIndexAsk {
    /// The asking member.
    from: u64,
    /// Confirm with a heartbeat round even if the asker could stand in for it (the asker
    /// found it could not).
    heartbeat: bool,
}

/// The leader's read index and what vouches for it.
///
/// A read index is safe once, at some moment after the read arrived, a quorum of voters had
/// granted no vote above the leadership that named it: then no later leader can have been
/// elected, let alone have acknowledged a write the index misses. A heartbeat round shows
/// this for the followers that acknowledge it. A follower asking for the index shows it for
/// itself when the vote it last saved is for that same leadership: a member saves a vote
/// before it grants it, so it has granted nothing above. With the leader — which led that
/// leadership after the ask arrived, so had granted nothing above it either — that is a
/// quorum when the voters are three or fewer, and no heartbeat round is needed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum ReadIndexGrant {
    /// A quorum acknowledged the leadership after the ask arrived.
    Confirmed(LogId),
    /// The leadership held after the ask arrived and is a quorum with the asker: the index is
    /// safe if the vote the asker last saved is for that leadership.
    IfAskerFollows(LogId),
}

/// The read index a leader may name for `asker` without a heartbeat round
/// ([`ReadIndexGrant::IfAskerFollows`]), read from the leader's Raft state: its commit index,
/// once its leadership's first entry is committed (before that, openraft's read index is
/// that entry, and the heartbeat round is left to wait for it).
fn read_index_with_asker(
    state: &openraft::RaftState<TypeConfig>,
    leader: u64,
    asker: u64,
) -> Option<LogId> {
    let vote = state.vote_ref();
    if state.server_state != ServerState::Leader
        || !vote.is_committed()
        || *vote.leader_id().node_id() != leader
    {
        return None;
    }
    let committed = state.local_committed()?;
    let quorum = quorum_of_two(
        state.membership_state.effective().get_joint_config(),
        leader,
        asker,
    );
    (quorum && *committed.committed_leader_id() == vote.leader_id().to_committed())
        .then_some(*committed)
}

/// True when `saved` — the vote a member last saved — is for `leadership`: that member has
/// granted no vote above it.
fn saved_vote_is_for(saved: Option<Vote>, leadership: &Leadership) -> bool {
    saved.is_some_and(|vote| vote.leader_id().to_committed() == *leadership)
}

/// True when `leader` and `asker` alone are a quorum of `configs` (a majority of each; a
/// membership change has two configs at once).
fn quorum_of_two(configs: &[BTreeSet<u64>], leader: u64, asker: u64) -> bool {
    leader != asker
        && !configs.is_empty()
        && configs
            .iter()
            .all(|voters| voters.contains(&leader) && voters.contains(&asker) && voters.len() <= 3)
}

fn reply_to_result(reply: Reply) -> stead_store::Result<CommandResponse> {
    match reply {
        Some(Ok(resp)) => Ok(resp),
        Some(Err(e)) => Err(e.into()),
        None => Err(Error::Replication {
            reason: "the entry carried no command".to_string(),
        }),
    }
}

impl Member {
    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        RaftStatus {
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            members: membership
                .nodes()
                .map(|(id, node)| (*id, node.clone()))
                .collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow_watched().clone();
        m.state.is_leader()
    }

    /// The leader's id and peer URL, when one is known and it is not this member.
    fn remote_leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader?;
        if leader == self.id {
            return None;
        }
        let node = m.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node.peer_url))
    }

    async fn wait_for_leader(&self, deadline: Instant) -> stead_store::Result<()> {
        if Instant::now() >= deadline {
            return Err(Error::NoLeader);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }

    /// Runs a request at the leader: `local` when this member leads, else `remote` with the
    /// leader's id and peer URL. Asks again while no leader is known or the member asked
    /// turned out not to lead (nothing was done then); gives up after [`LEADER_WAIT`].
    async fn at_leader<T>(
        &self,
        local: impl Fn(Member) -> AttemptFuture<T>,
        remote: impl Fn(Member, String, u64) -> AttemptFuture<T>,
    ) -> stead_store::Result<T> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let attempt = if self.is_leader() {
                local(self.clone()).await
            } else if let Some((leader, url)) = self.remote_leader() {
                remote(self.clone(), url, leader).await
            } else {
                Attempt::Retry
            };
            if let Attempt::Done(result) = attempt {
                return result;
            }
            self.wait_for_leader(deadline).await?;
        }
    }

    async fn propose_cmd(&self, cmd: Command) -> stead_store::Result<CommandResponse> {
        // One copy per attempt, wherever it goes.
        let cmd = Arc::new(cmd);
        let remote_cmd = cmd.clone();
        self.at_leader(
            move |member| {
                let cmd = Command::clone(&cmd);
                Box::pin(async move {
                    match member.raft.client_write(cmd).await {
                        Ok(resp) => Attempt::Done(reply_to_result(resp.data)),
                        Err(e) if not_appended(&e) => Attempt::Retry,
                        Err(e) => Attempt::Done(Err(replication(e))),
                    }
                })
            },
            move |member, url, leader| {
                let cmd = Command::clone(&remote_cmd);
                Box::pin(async move {
                    match member.forwarder.forward(leader, url, cmd).await {
                        Ok(Forwarded::Applied(index, result)) => {
                            // Like etcd, answer only once this member has applied the entry
                            // too: a serializable read here, or a defragmentation after a
                            // compaction, must see it. What is applied is committed, so the
                            // entry at that index here is the leader's.
                            if let Err(e) = member
                                .raft
                                .wait(Some(LEADER_WAIT))
                                .applied_index_at_least(Some(index), "a forwarded write")
                                .await
                            {
                                return Attempt::Done(Err(replication(format!(
                                    "committed at index {index}, not applied here in time: {e}"
                                ))));
                            }
                            Attempt::Done(result.map_err(Error::from))
                        }
                        Ok(Forwarded::NotLeader) => Attempt::Retry,
                        Ok(Forwarded::Failed(reason)) => Attempt::Done(Err(replication(reason))),
                        // Anything but "not sent at all" leaves the outcome unknown.
                        Err(s) => remote_failure(s),
                    }
                })
            },
        )
        .await
    }

    /// The leader's read index (openraft's: its commit index, or its term's first entry).
    async fn read_linearizer(&self) -> Result<Linearizer<TypeConfig>, ReadIndexError> {
        let linearizer = self
            .raft
            .get_read_linearizer(ReadPolicy::ReadIndex)
            .await
            .map_err(|e| {
                if e.forward_to_leader().is_some() {
                    ReadIndexError::NotLeader
                } else {
                    ReadIndexError::Failed(e.to_string())
                }
            })?;
        self.metrics.count_read_index(ReadIndexVouch::Heartbeat);
        Ok(linearizer)
    }

    /// Asks the leader for its read index.
    async fn ask_read_index(
        &self,
        url: &str,
        heartbeat: bool,
    ) -> Result<ReadIndexGrant, Attempt<()>> {
        let ask = ReadIndexAsk {
            from: self.id,
            heartbeat,
        };
        let data = encode(&ask).map_err(|e| Attempt::Done(Err(replication(e))))?;
        let answer = self
            .asks
            .ask(url, AskKind::ReadIndex, data)
            .await
            .map_err(idempotent_failure)?;
        decode(&answer).map_err(|e| Attempt::Done(Err(replication(e))))
    }

    /// The leader's read index, vouched for by a heartbeat round or by this member's saved
    /// vote (see [`ReadIndexGrant`]).
    async fn vouched_read_index(&self, url: &str) -> Result<LogId, Attempt<()>> {
        match self.ask_read_index(url, false).await? {
            ReadIndexGrant::Confirmed(log_id) => Ok(log_id),
            ReadIndexGrant::IfAskerFollows(log_id)
                if saved_vote_is_for(self.last_vote.get(), log_id.committed_leader_id()) =>
            {
                Ok(log_id)
            }
            // This member moved on (or never got there): only a quorum can vouch now.
            ReadIndexGrant::IfAskerFollows(_) => match self.ask_read_index(url, true).await? {
                ReadIndexGrant::Confirmed(log_id) => Ok(log_id),
                ReadIndexGrant::IfAskerFollows(_) => Err(Attempt::Done(Err(replication(
                    "the leader answered a heartbeat ask without one",
                )))),
            },
        }
    }

    /// Waits until a read that starts now may be served here (gathered into rounds).
    async fn barrier(&self) -> stead_store::Result<()> {
        let member = self.clone();
        self.reads
            .barrier(move || {
                let member = member.clone();
                Box::pin(async move { member.read_index_round().await })
            })
            .await
    }

    /// One read-index round: the leader's read index, then waiting until it is applied here.
    async fn read_index_round(&self) -> stead_store::Result<()> {
        self.at_leader(
            |member| {
                Box::pin(async move {
                    match member.read_linearizer().await {
                        Ok(l) => Attempt::Done(match l.await_ready(&member.raft).await {
                            Ok(_) => Ok(()),
                            Err(e) => Err(replication(e)),
                        }),
                        Err(ReadIndexError::NotLeader) => Attempt::Retry,
                        Err(ReadIndexError::Failed(e)) => Attempt::Done(Err(replication(e))),
                    }
                })
            },
            |member, url, leader| {
                Box::pin(async move {
                    let log_id = match member.vouched_read_index(&url).await {
                        Ok(log_id) => log_id,
                        Err(attempt) => return attempt,
                    };
                    // Read-index: once this member has applied what the leader confirmed as
                    // committed, a local read is linearizable.
                    let linearizer = Linearizer::new(leader, ReadLogId::from_log_id(log_id), None);
                    Attempt::Done(
                        match linearizer
                            .try_await_ready(&member.raft, Some(LEADER_WAIT))
                            .await
                        {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(_)) => {
                                Err(replication("timed out applying up to the read index"))
                            }
                            Err(e) => Err(replication(e)),
                        },
                    )
                })
            },
        )
        .await
    }

    fn lease_here(&self, op: LeaseOp) -> Option<i64> {
        match op {
            LeaseOp::KeepAlive(id) => Some(self.shared.renew_lease(id)),
            LeaseOp::Remaining(id) => self.shared.lease_remaining(id),
        }
    }

    async fn lease_at_leader(&self, op: LeaseOp) -> stead_store::Result<Option<i64>> {
        let body = encode(&op).map_err(replication)?;
        self.at_leader(
            move |member| Box::pin(async move { Attempt::Done(Ok(member.lease_here(op))) }),
            move |member, url, _| {
                let body = body.clone();
                Box::pin(async move {
                    match member.asks.ask(&url, AskKind::KeepAlive, body).await {
                        Ok(answer) => Attempt::Done(decode(&answer).map_err(replication)),
                        Err(s) => idempotent_failure(s),
                    }
                })
            },
        )
        .await
    }

    /// Applies a membership change on the leader (forwarding it there from a follower).
    pub async fn change_members(&self, change: MemberChange) -> Result<(), Status> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            if self.is_leader() {
                return self.change_here(change).await;
            }
            if let Some((_, url)) = self.remote_leader() {
                let mut client = self.channels.get(&url)?;
                let body = encode(&change).map_err(internal)?;
                match forwarded(client.change_members(Blob { data: body })).await {
                    Ok(_) => return Ok(()),
                    Err(s)
                        if s.code() == tonic::Code::FailedPrecondition
                            && s.message() == "etcdserver: not leader" => {}
                    Err(s) => return Err(s),
                }
            }
            self.wait_for_leader(deadline)
                .await
                .map_err(|_| Status::unavailable("etcdserver: no leader"))?;
        }
    }

    async fn change_here(&self, change: MemberChange) -> Result<(), Status> {
        use std::collections::BTreeSet;

        use openraft::ChangeMembers;
        let _one_at_a_time = self.changes.lock().await;
        let status = self.status();
        let known = |id: &u64| status.members.contains_key(id);
        let is_learner = |id: &u64| status.learners.contains(id);
        let not_found = || Status::not_found("etcdserver: member not found");
        let raft_err = |e: openraft::errors::RaftError<_, _>| {
            if e.forward_to_leader().is_some() {
                not_leader()
            } else {
                Status::failed_precondition(format!("etcdserver: {e}"))
            }
        };
        let one = |id: u64| BTreeSet::from([id]);
        match change {
            MemberChange::Add { id, node, learner } => {
                if known(&id) {
                    return Err(Status::failed_precondition(
                        "etcdserver: member ID already exist",
                    ));
                }
                if status.members.values().any(|n| n.peer_url == node.peer_url) {
                    return Err(Status::failed_precondition(
                        "etcdserver: Peer URLs already exists",
                    ));
                }
                self.raft
                    .add_learner(id, node, false)
                    .await
                    .map_err(raft_err)?;
                if !learner {
                    self.raft
                        .change_membership(ChangeMembers::AddVoterIds(one(id)), false)
                        .await
                        .map_err(raft_err)?;
                }
            }
            MemberChange::Promote { id } => {
                if !known(&id) {
                    return Err(not_found());
                }
                if !is_learner(&id) {
                    return Err(Status::failed_precondition(
                        "etcdserver: can only promote a learner member",
                    ));
                }
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(one(id)), false)
                    .await
                    .map_err(raft_err)?;
            }
            MemberChange::Remove { id } => {
                if !known(&id) {
                    return Err(not_found());
                }
                let change = if is_learner(&id) {
                    ChangeMembers::RemoveNodes(one(id))
                } else {
                    ChangeMembers::RemoveVoters(one(id))
                };
                self.raft
                    .change_membership(change, false)
                    .await
                    .map_err(raft_err)?;
            }
            MemberChange::Update { id, peer_url } => {
                let Some(node) = status.members.get(&id) else {
                    return Err(not_found());
                };
                let node = NodeInfo {
                    peer_url,
                    ..node.clone()
                };
                self.raft
                    .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), false)
                    .await
                    .map_err(raft_err)?;
            }
            MemberChange::Publish { id, node } => {
                if status.members.get(&id) == Some(&node) {
                    return Ok(());
                }
                if !known(&id) {
                    return Err(not_found());
                }
                self.raft
                    .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), false)
                    .await
                    .map_err(raft_err)?;
            }
        }
        Ok(())
    }

    /// Publishes this member's name and client URLs into the membership once a leader is
    /// known, and again whenever they differ (a restart with new flags).
    pub fn publish(&self, node: NodeInfo) {
        let member = self.clone();
        tokio::spawn(async move {
            loop {
                let current = member.status().members.get(&member.id).cloned();
                if current.as_ref() == Some(&node) {
                    return;
                }
                if current.is_some() && member.status().leader.is_some() {
                    let change = MemberChange::Publish {
                        id: member.id,
                        node: node.clone(),
                    };
                    if let Err(e) = member.change_members(change).await {
                        tracing::debug!(error = %e, "publishing member attributes failed; retrying");
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    /// Asks the leader (this member) to hand leadership to `target` and waits for it.
    pub async fn move_leader(&self, target: u64) -> Result<(), Status> {
        if !self.is_leader() {
            return Err(not_leader());
        }
        let status = self.status();
        if !status.members.contains_key(&target) || status.learners.contains(&target) {
            return Err(Status::failed_precondition(
                "etcdserver: bad leader transferee",
            ));
        }
        if target == self.id {
            return Ok(());
        }
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let deadline = Instant::now() + LEADER_WAIT;
        while self.status().leader != Some(target) {
            if Instant::now() >= deadline {
                return Err(Status::unavailable("etcdserver: request timed out"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Refreshes lease deadlines whenever this member becomes the leader.
    pub fn watch_leadership(&self) {
        let member = self.clone();
        tokio::spawn(async move {
            let mut metrics = member.raft.metrics();
            let mut was_leader = false;
            loop {
                let leader = metrics.borrow_watched().state.is_leader();
                if leader && !was_leader {
                    member.shared.refresh_leases();
                }
                was_leader = leader;
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
    }
}

impl Proposer for Member {
    fn propose(&self, cmd: Command) -> ProposeFuture<CommandResponse> {
        let member = self.clone();
        Box::pin(async move { member.propose_cmd(cmd).await })
    }

    fn read_barrier(&self) -> ProposeFuture<()> {
        let member = self.clone();
        Box::pin(async move { member.barrier().await })
    }

    fn keep_alive(&self, id: i64) -> ProposeFuture<i64> {
        let member = self.clone();
        Box::pin(async move {
            Ok(member
                .lease_at_leader(LeaseOp::KeepAlive(id))
                .await?
                .unwrap_or(0))
        })
    }

    fn lease_remaining(&self, id: i64) -> ProposeFuture<Option<i64>> {
        let member = self.clone();
        Box::pin(async move { member.lease_at_leader(LeaseOp::Remaining(id)).await })
    }

    fn is_leader(&self) -> bool {
        Member::is_leader(self)
    }
}

fn not_leader() -> Status {
    Status::failed_precondition("etcdserver: not leader")
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

impl LeaderService for Member {
    fn propose(
        &self,
        cmds: Blob,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Blob, Status>> + Send>> {
        let member = self.clone();
        Box::pin(async move {
            let cmds: Vec<Command> = decode(&cmds.data).map_err(internal)?;
            let count = cmds.len();
            let results = member
                .raft
                .client_write_many(cmds)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let mut outcomes: Vec<Forwarded> = results
                .map(|result| match result {
                    Ok(Ok(resp)) => match reply_to_result(resp.response) {
                        Ok(r) => Forwarded::Applied(resp.log_id.index, Ok(r)),
                        Err(e) => match e.to_command_error() {
                            Some(e) => Forwarded::Applied(resp.log_id.index, Err(e)),
                            None => Forwarded::Failed(e.to_string()),
                        },
                    },
                    Ok(Err(openraft::errors::ClientWriteError::ForwardToLeader(_))) => {
                        Forwarded::NotLeader
                    }
                    Ok(Err(e)) => Forwarded::Failed(e.to_string()),
                    Err(fatal) => Forwarded::Failed(fatal.to_string()),
                })
                .collect()
                .await;
            outcomes.resize_with(count, || {
                Forwarded::Failed("the leader stopped before answering".into())
            });
            Ok(Blob {
                data: encode(&outcomes).map_err(internal)?,
            })
        })
    }

    fn read_index(
        &self,
        ask: Blob,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Blob, Status>> + Send>> {
        let member = self.clone();
        Box::pin(async move {
            let ask: ReadIndexAsk = decode(&ask.data)
                .map_err(|e| Status::invalid_argument(format!("read index ask: {e}")))?;
            let me = member.id;
            let with_asker = if ask.heartbeat {
                None
            } else {
                member
                    .raft
                    .with_raft_state(move |state| read_index_with_asker(state, me, ask.from))
                    .await
                    .ok()
                    .flatten()
            };
            let grant = match with_asker {
                Some(log_id) => {
                    member.metrics.count_read_index(ReadIndexVouch::Asker);
                    ReadIndexGrant::IfAskerFollows(log_id)
                }
                None => match member.read_linearizer().await {
                    Ok(l) => ReadIndexGrant::Confirmed(*l.read_log_id().log_id()),
                    Err(ReadIndexError::NotLeader) => return Err(not_leader()),
                    Err(ReadIndexError::Failed(e)) => return Err(Status::unavailable(e)),
                },
            };
            Ok(Blob {
                data: encode(&grant).map_err(internal)?,
            })
        })
    }

    fn change_members(
        &self,
        change: Blob,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Blob, Status>> + Send>> {
        let member = self.clone();
        Box::pin(async move {
            if !Member::is_leader(&member) {
                return Err(not_leader());
            }
            let change: MemberChange = decode(&change.data).map_err(internal)?;
            member.change_here(change).await?;
            Ok(Blob::default())
        })
    }

    fn keep_alive(
        &self,
        id: Blob,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Blob, Status>> + Send>> {
        let member = self.clone();
        Box::pin(async move {
            if !Member::is_leader(&member) {
                return Err(not_leader());
            }
            let op: LeaseOp = decode(&id.data).map_err(internal)?;
            Ok(Blob {
                data: encode(&member.lease_here(op)).map_err(internal)?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use openraft::vote::RaftLeaderIdExt;

    type LeaderId = openraft::alias::LeaderIdOf<TypeConfig>;

    fn leadership(term: u64, leader: u64) -> Leadership {
        LeaderId::new_committed(term, leader)
    }

    fn voters(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn only_a_saved_vote_for_the_same_leadership_vouches_for_it() {
        let named = leadership(5, 1);
        assert!(saved_vote_is_for(Some(Vote::new_committed(5, 1)), &named));
        // Saved as a grant to that candidate, before it was seen to lead: nothing above.
        assert!(saved_vote_is_for(Some(Vote::new(5, 1)), &named));
        // Moved on: a later term, or another leader of the same term.
        assert!(!saved_vote_is_for(Some(Vote::new_committed(6, 2)), &named));
        assert!(!saved_vote_is_for(Some(Vote::new(6, 2)), &named));
        assert!(!saved_vote_is_for(Some(Vote::new(5, 2)), &named));
        // Behind, or never voted: nothing above either, but such a member has not caught up
        // with the leadership; it asks for a heartbeat round.
        assert!(!saved_vote_is_for(Some(Vote::new_committed(4, 1)), &named));
        assert!(!saved_vote_is_for(None, &named));
    }

    #[test]
    fn leader_and_asker_are_a_quorum_of_three_voters_or_fewer_only() {
        assert!(quorum_of_two(&[voters(&[1, 2, 3])], 1, 2));
        assert!(quorum_of_two(&[voters(&[1, 2])], 2, 1));
        // Five voters need a third; a learner (not a voter) counts for nothing.
        assert!(!quorum_of_two(&[voters(&[1, 2, 3, 4, 5])], 1, 2));
        assert!(!quorum_of_two(&[voters(&[1, 3, 4])], 1, 2));
        assert!(!quorum_of_two(&[voters(&[1, 2, 3])], 1, 1));
        assert!(!quorum_of_two(&[], 1, 2));
        // During a change, a majority of both configs.
        assert!(quorum_of_two(
            &[voters(&[1, 2, 3]), voters(&[1, 2, 4])],
            1,
            2
        ));
        assert!(!quorum_of_two(
            &[voters(&[1, 2, 3]), voters(&[1, 3, 4])],
            1,
            2
        ));
        assert!(!quorum_of_two(
            &[voters(&[1, 2, 3]), voters(&[1, 2, 4, 5])],
            1,
            2
        ));
    }
}
