//! Member-to-member traffic over gRPC: the Raft RPCs (server handlers and the openraft
//! network client) and the requests a follower forwards to the leader.
//!
//! Log entries and heartbeats travel on `StreamAppend` bidirectional streams: each
//! AppendEntries request is a message, sent without waiting for the answers to those before
//! it, and the answers come back in order. A stream outlives the replication session or
//! heartbeat round that opened it: the next one to the same follower reuses it, so a
//! heartbeat round (and every linearizable read runs one) costs two messages, not a call.
//!
//! Every call has a deadline, and an append stream fails when a request waits too long for
//! its answer; a dead peer makes calls fail fast with `Unreachable`, which openraft answers
//! with backoff, so it never blocks the leader.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};

use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::RPCOption;
use openraft::network::v2::RaftNetworkV2;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory};
use stead_store::raft::{NodeInfo, Raft, Snapshot, SnapshotMeta, TypeConfig, Vote, decode, encode};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::pb::steadpeer::peer_client::PeerClient;
use crate::pb::steadpeer::{AskRequest, Blob, peer_server};

/// Largest peer message (whole snapshots travel in one message).
pub const MAX_PEER_MESSAGE: usize = 1 << 30;

fn blob<T: serde::Serialize>(value: &T) -> Result<Blob, Status> {
    encode(value)
        .map(|data| Blob { data })
        .map_err(|e| Status::internal(e.to_string()))
}

fn unblob<T: serde::de::DeserializeOwned>(b: &Blob) -> Result<T, Status> {
    decode(&b.data).map_err(|e| Status::invalid_argument(format!("bad peer message: {e}")))
}

/// Snapshot messages carry their metadata as JSON (its serde form is hand-written upstream).
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotMessage {
    vote: Vote,
    meta_json: Vec<u8>,
    data: Vec<u8>,
}

/// What followers ask of the leader (over [`crate::ask`] streams), answered by
/// [`crate::cluster`].
pub trait LeaderService: Send + Sync + 'static {
    fn propose(
        &self,
        cmd: Blob,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Blob, Status>> + Send>>;
    fn read_index(
        &self,
        ask: Blob,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Blob, Status>> + Send>>;
    fn keep_alive(
        &self,
        id: Blob,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Blob, Status>> + Send>>;
    fn change_members(
        &self,
        change: Blob,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Blob, Status>> + Send>>;
}

/// The peer gRPC service.
pub struct PeerService {
    pub raft: Raft,
    pub leader: Arc<dyn LeaderService>,
}

fn fatal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft stopped: {e}"))
}

pub(crate) type BlobStream = Pin<Box<dyn Stream<Item = Result<Blob, Status>> + Send>>;

#[tonic::async_trait]
impl peer_server::Peer for PeerService {
    type StreamAppendStream = BlobStream;

    /// The follower's end of [`PeerNetwork`]'s `stream_append`: requests go to the Raft core as
    /// they arrive, answers come back in their order. A request that does not decode ends the
    /// stream with an error after the answers to the requests before it.
    async fn stream_append(
        &self,
        req: Request<Streaming<Blob>>,
    ) -> Result<Response<BlobStream>, Status> {
        let bad: Arc<Mutex<Option<Status>>> = Arc::default();
        let bad_input = bad.clone();
        let input = tokio_stream::StreamExt::map_while(req.into_inner(), move |msg| match msg {
            Ok(b) => match unblob::<AppendEntriesRequest<TypeConfig>>(&b) {
                Ok(rpc) => Some(rpc),
                Err(status) => {
                    *crate::lock(&bad_input) = Some(status);
                    None
                }
            },
            // The leader went away or reset the stream: nothing more to answer.
            Err(_) => None,
        });
        let answers = self
            .raft
            .stream_append(input)
            .map(|item| item.map_err(fatal).and_then(|res| blob(&res)));
        let trailer = futures::stream::once(async move { crate::lock(&bad).take() })
            .filter_map(|bad| async move { bad.map(Err) });
        Ok(Response::new(Box::pin(answers.chain(trailer))))
    }

    async fn vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: VoteRequest<TypeConfig> = unblob(req.get_ref())?;
        let resp = self.raft.vote(rpc).await.map_err(fatal)?;
        Ok(Response::new(blob(&resp)?))
    }

    async fn install_snapshot(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let msg: SnapshotMessage = unblob(req.get_ref())?;
        let meta: SnapshotMeta = serde_json::from_slice(&msg.meta_json)
            .map_err(|e| Status::invalid_argument(format!("bad snapshot meta: {e}")))?;
        let snapshot = Snapshot {
            meta,
            snapshot: msg.data,
        };
        let resp = self
            .raft
            .install_full_snapshot(msg.vote, snapshot)
            .await
            .map_err(fatal)?;
        Ok(Response::new(blob(&resp)?))
    }

    async fn transfer_leader(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: TransferLeaderRequest<TypeConfig> = unblob(req.get_ref())?;
        let resp = self.raft.handle_transfer_leader(rpc).await.map_err(fatal)?;
        Ok(Response::new(blob(&resp)?))
    }

    type AskStream = crate::ask::AnswerStream;

    async fn ask(
        &self,
        req: Request<Streaming<AskRequest>>,
    ) -> Result<Response<Self::AskStream>, Status> {
        Ok(Response::new(crate::ask::answer(
            self.leader.clone(),
            req.into_inner(),
        )))
    }

    async fn change_members(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.leader
            .change_members(req.into_inner())
            .await
            .map(Response::new)
    }
}

/// One cached channel per peer URL (channels reconnect on their own).
#[derive(Clone, Default)]
pub struct Channels {
    by_url: Arc<Mutex<HashMap<String, Channel>>>,
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Channels {
    /// Channels that speak TLS to https peer URLs.
    pub fn with_tls(tls: tonic::transport::ClientTlsConfig) -> Self {
        Channels {
            by_url: Arc::default(),
            tls: Some(tls),
        }
    }

    pub fn get(&self, url: &str) -> Result<PeerClient<Channel>, Status> {
        let mut map = crate::lock(&self.by_url);
        let channel = match map.get(url) {
            Some(c) => c.clone(),
            None => {
                let mut endpoint = Endpoint::from_shared(url.to_string())
                    .map_err(|e| Status::invalid_argument(format!("bad peer URL {url}: {e}")))?
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true);
                if let Some(tls) = &self.tls
                    && url.starts_with("https://")
                {
                    endpoint = endpoint
                        .tls_config(tls.clone())
                        .map_err(|e| Status::invalid_argument(format!("peer TLS: {e}")))?;
                }
                let c = endpoint.connect_lazy();
                map.insert(url.to_string(), c.clone());
                c
            }
        };
        Ok(PeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE))
    }
}

/// openraft's network factory: a client per target member.
#[derive(Clone)]
pub struct Network {
    pub local: u64,
    pub channels: Channels,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> PeerNetwork {
        PeerNetwork {
            local: self.local,
            target,
            url: node.peer_url.clone(),
            channels: self.channels.clone(),
            session: None,
        }
    }
}

pub struct PeerNetwork {
    local: u64,
    target: u64,
    url: String,
    channels: Channels,
    /// The append stream left open by the last `stream_append` that ended cleanly.
    session: Option<Session>,
}

/// Requests buffered towards one follower before the sender waits.
const SESSION_BUFFER: usize = 64;

/// An open `StreamAppend` call: requests go in through `requests`, answers come out of
/// `answers` in their order. Between two `stream_append` calls nothing is unanswered.
struct Session {
    requests: mpsc::Sender<Blob>,
    answers: Streaming<Blob>,
}

/// One `stream_append` on a [`Session`]. The session goes back to its slot only when the
/// call's requests have ended and each has its answer; a call dropped or failed earlier
/// takes it down with it (a late answer must not pass for the next call's).
struct AppendCall<'s> {
    slot: &'s mut Option<Session>,
    session: Option<Session>,
    unanswered: Arc<Unanswered>,
    forward: tokio::task::JoinHandle<()>,
}

impl AppendCall<'_> {
    fn finish(mut self) {
        *self.slot = self.session.take();
    }
}

impl Drop for AppendCall<'_> {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

/// Feeds a call's requests into its session.
async fn forward_requests<S>(
    mut input: S,
    requests: mpsc::Sender<Blob>,
    unanswered: Arc<Unanswered>,
) where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Unpin,
{
    while let Some(rpc) = input.next().await {
        let data = match encode(&rpc) {
            Ok(data) => data,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an append request; ending the stream");
                break;
            }
        };
        unanswered.push();
        if requests.send(Blob { data }).await.is_err() {
            // The stream is gone; its answers end with the error.
            break;
        }
    }
    unanswered.end();
}

impl PeerNetwork {
    fn client(&self) -> Result<PeerClient<Channel>, RPCError<TypeConfig>> {
        self.channels
            .get(&self.url)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    /// Opens a `StreamAppend` call to the follower.
    async fn open_session(&self, ttl: Duration) -> Result<Session, RPCError<TypeConfig>> {
        let mut client = self.client()?;
        let (requests, queue) = mpsc::channel(SESSION_BUFFER);
        let call = client.stream_append(tokio_stream::wrappers::ReceiverStream::new(queue));
        let answers = match tokio::time::timeout(ttl, call).await {
            Err(_) => return Err(self.timeout(openraft::network::RPCTypes::AppendEntries, ttl)),
            Ok(Err(status)) => return Err(status_error(&status)),
            Ok(Ok(resp)) => resp.into_inner(),
        };
        Ok(Session { requests, answers })
    }

    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        kind: openraft::network::RPCTypes,
        req: &Req,
        ttl: Duration,
        pick: impl for<'a> FnOnce(
            &'a mut PeerClient<Channel>,
            Blob,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<Response<Blob>, Status>> + Send + 'a>,
        >,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let mut client = self.client()?;
        let body = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let call = pick(&mut client, Blob { data: body });
        match tokio::time::timeout(ttl, call).await {
            Err(_) => Err(self.timeout(kind, ttl)),
            Ok(Err(status)) => Err(status_error(&status)),
            Ok(Ok(resp)) => {
                decode(&resp.get_ref().data).map_err(|e| RPCError::Network(NetworkError::new(&e)))
            }
        }
    }

    fn timeout(&self, action: openraft::network::RPCTypes, ttl: Duration) -> RPCError<TypeConfig> {
        RPCError::Timeout(Timeout {
            action,
            id: self.local,
            target: self.target,
            timeout: ttl,
        })
    }
}

/// A failed peer call as openraft sees it: a member that cannot be reached is backed off from.
fn status_error(status: &Status) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => {
            RPCError::Unreachable(Unreachable::new(status))
        }
        _ => RPCError::Network(NetworkError::new(status)),
    }
}

/// When each request still unanswered on an append stream was sent, oldest first, and
/// whether the requests have ended.
#[derive(Default)]
struct Unanswered {
    sent: Mutex<VecDeque<Instant>>,
    ended: AtomicBool,
    more: Notify,
}

impl Unanswered {
    /// No request will follow (set after the last `push`).
    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.more.notify_one();
    }

    fn push(&self) {
        crate::lock(&self.sent).push_back(Instant::now());
        self.more.notify_one();
    }

    fn pop(&self) {
        crate::lock(&self.sent).pop_front();
    }

    /// When the oldest unanswered request was sent; `Err` once every request was sent and
    /// answered (the stream has nothing left to give).
    fn oldest(&self) -> Result<Option<Instant>, ()> {
        let ended = self.ended.load(Ordering::Acquire);
        let sent = crate::lock(&self.sent);
        match sent.front() {
            None if ended => Err(()),
            oldest => Ok(oldest.copied()),
        }
    }
}

/// The answers of an append stream. A request left unanswered for `ttl` ends it with a
/// timeout (a paused or cut-off follower keeps its connection open); an idle stream waits.
/// Once the requests have ended and each has its answer, the stream ends without waiting
/// for the follower to close it (a heartbeat is one request, and its round ends here).
async fn next_answer(
    answers: &mut Streaming<Blob>,
    unanswered: &Unanswered,
    ttl: Duration,
) -> Result<Option<Blob>, Option<Status>> {
    loop {
        let answer = match unanswered.oldest() {
            Err(()) => return Ok(None),
            Ok(Some(sent)) => match tokio::time::timeout_at(sent + ttl, answers.message()).await {
                Ok(answer) => answer,
                Err(_) => return Err(None),
            },
            Ok(None) => tokio::select! {
                answer = answers.message() => answer,
                () = unanswered.more.notified() => continue,
            },
        };
        return answer.map_err(Some);
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = Vec<u8>;

    /// openraft sends every append through [`Self::stream_append`]; a single one is a stream
    /// of one.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let mut answers = self
            .stream_append(futures::stream::once(async { rpc }).boxed(), option)
            .await?;
        let answer = match answers.next().await {
            Some(answer) => answer.map(AppendEntriesResponse::from),
            None => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other("the append stream ended without an answer"),
            ))),
        };
        // Read on to the end, which leaves the stream open for the next call.
        if answer.is_ok() {
            let _ = answers.next().await;
        }
        answer
    }

    /// Requests go out on the follower's append stream as openraft makes them, without
    /// waiting for the answer to the one before (the stream keeps their order), each a
    /// message instead of a call; the stream stays open for the next replication session or
    /// heartbeat round.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        // As for a single append: a follower answers after its fsync, and a catching-up
        // batch can be large.
        let ttl = option.soft_ttl().max(Duration::from_secs(2));
        Box::pin(async move {
            let session = match self.session.take() {
                // A follower that restarted or reset the stream dropped its receiving end.
                Some(session) if !session.requests.is_closed() => session,
                _ => self.open_session(ttl).await?,
            };
            let timed_out = self.timeout(openraft::network::RPCTypes::AppendEntries, ttl);
            let unanswered = Arc::new(Unanswered::default());
            let forward = tokio::spawn(forward_requests(
                input,
                session.requests.clone(),
                unanswered.clone(),
            ));
            let call = AppendCall {
                slot: &mut self.session,
                session: Some(session),
                unanswered,
                forward,
            };
            let answers = futures::stream::unfold(Some(call), move |state| {
                let timed_out = timed_out.clone();
                async move {
                    let mut call = state?;
                    let session = call.session.as_mut()?;
                    let item = match next_answer(&mut session.answers, &call.unanswered, ttl).await
                    {
                        Ok(None) => {
                            // Ended cleanly, or the follower ended its side (then the
                            // stream goes with this call).
                            if call.unanswered.oldest().is_err() {
                                call.finish();
                            }
                            return None;
                        }
                        Ok(Some(b)) => {
                            call.unanswered.pop();
                            decode::<StreamAppendResult<TypeConfig>>(&b.data)
                                .map_err(|e| RPCError::Network(NetworkError::new(&e)))
                        }
                        Err(None) => Err(timed_out),
                        Err(Some(status)) => Err(status_error(&status)),
                    };
                    // The follower ends its side after a refused append (a conflict or a
                    // higher vote), so the stream goes with this call.
                    let go_on = matches!(item, Ok(Ok(_)));
                    Some((item, go_on.then_some(call)))
                }
            });
            Ok(Box::pin(answers) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            openraft::network::RPCTypes::Vote,
            &rpc,
            option.soft_ttl(),
            |c, b| Box::pin(c.vote(b)),
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let meta_json = serde_json::to_vec(&snapshot.meta)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let msg = SnapshotMessage {
            vote,
            meta_json,
            data: snapshot.snapshot,
        };
        let send = self.call(
            openraft::network::RPCTypes::InstallSnapshot,
            &msg,
            Duration::from_secs(120),
            |c, b| Box::pin(c.install_snapshot(b)),
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = send => r.map_err(StreamingError::from),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            openraft::network::RPCTypes::TransferLeader,
            &req,
            option.soft_ttl(),
            |c, b| Box::pin(c.transfer_leader(b)),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use openraft::testing::log_id;
    use tokio_stream::wrappers::TcpListenerStream;

    use super::*;
    use crate::pb::steadpeer::peer_server::PeerServer;

    /// A follower that answers each append with the request's `prev_log_id` (so an answer
    /// names its request) after `leader_commit`'s index in milliseconds, and counts the
    /// append streams opened.
    #[derive(Clone, Default)]
    struct Follower {
        streams: Arc<AtomicUsize>,
    }

    fn unused(call: &str) -> Result<Response<Blob>, Status> {
        Err(Status::unimplemented(call.to_string()))
    }

    #[tonic::async_trait]
    impl peer_server::Peer for Follower {
        type StreamAppendStream = BlobStream;

        async fn stream_append(
            &self,
            req: Request<Streaming<Blob>>,
        ) -> Result<Response<BlobStream>, Status> {
            self.streams.fetch_add(1, Ordering::SeqCst);
            let answers = req.into_inner().then(|msg| async move {
                let rpc: AppendEntriesRequest<TypeConfig> = unblob(&msg?)?;
                let delay = rpc.leader_commit.as_ref().map_or(0, |c| c.index);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let answer: StreamAppendResult<TypeConfig> = Ok(rpc.prev_log_id);
                blob(&answer)
            });
            Ok(Response::new(Box::pin(answers)))
        }

        async fn vote(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            unused("vote")
        }

        async fn install_snapshot(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            unused("install_snapshot")
        }

        async fn transfer_leader(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            unused("transfer_leader")
        }

        type AskStream = crate::ask::AnswerStream;

        async fn ask(
            &self,
            _: Request<Streaming<AskRequest>>,
        ) -> Result<Response<Self::AskStream>, Status> {
            Err(Status::unimplemented("ask"))
        }

        async fn change_members(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            unused("change_members")
        }
    }

    /// An empty append naming `prev`, answered after `delay_ms`.
    fn append(prev: u64, delay_ms: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new(1, 1),
            prev_log_id: Some(log_id::<TypeConfig>(1, 1, prev)),
            leader_commit: (delay_ms > 0).then(|| log_id::<TypeConfig>(1, 1, delay_ms)),
            entries: Vec::new(),
        }
    }

    fn option() -> RPCOption {
        RPCOption::new(Duration::from_millis(500))
    }

    /// Sends `prevs` as one `stream_append` call and returns what each answer names.
    async fn call(net: &mut PeerNetwork, prevs: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let requests: Vec<_> = prevs.into_iter().map(|p| append(p, 0)).collect();
        let answers = net
            .stream_append(futures::stream::iter(requests), option())
            .await
            .expect("stream opens");
        answers
            .map(|a| match a {
                Ok(Ok(Some(prev))) => prev.index,
                other => panic!("unexpected answer {other:?}"),
            })
            .collect()
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn append_calls_share_one_stream_until_a_call_leaves_an_answer_behind() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let follower = Follower::default();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(PeerServer::new(follower.clone()))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let mut net = PeerNetwork {
            local: 1,
            target: 2,
            url: format!("http://{addr}"),
            channels: Channels::default(),
            session: None,
        };
        // Heartbeat rounds (one request each) and a pipelined batch: one stream for all.
        for i in 1..=3 {
            assert_eq!(call(&mut net, [i]).await, [i]);
        }
        assert_eq!(call(&mut net, 10..20).await, (10..20).collect::<Vec<_>>());
        assert_eq!(follower.streams.load(Ordering::SeqCst), 1);

        // A round given up before its slow answer (as a heartbeat round times out): the
        // stream goes with it, so the late answer cannot pass for the next round's.
        {
            let mut answers = net
                .stream_append(futures::stream::iter([append(30, 300)]), option())
                .await
                .expect("stream opens");
            let early = tokio::time::timeout(Duration::from_millis(50), answers.next()).await;
            assert!(early.is_err(), "answered before its delay: {early:?}");
        }
        assert_eq!(call(&mut net, [31]).await, [31]);
        assert_eq!(call(&mut net, [32]).await, [32]);
        assert_eq!(follower.streams.load(Ordering::SeqCst), 2);
    }
}
