//! Member-to-member traffic over gRPC: the Raft RPCs (server handlers and the openraft
//! network client) and the requests a follower forwards to the leader.
//!
//! Every call has a deadline; a dead peer makes calls fail fast with `Unreachable`, which
//! openraft answers with backoff, so it never blocks the leader.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::RPCOption;
use openraft::network::v2::RaftNetworkV2;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory};
use stead_store::raft::{NodeInfo, Raft, Snapshot, SnapshotMeta, TypeConfig, Vote, decode, encode};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::pb::steadpeer::peer_client::PeerClient;
use crate::pb::steadpeer::{Blob, peer_server};

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

/// Requests forwarded to the leader, answered by [`crate::cluster`].
pub trait LeaderService: Send + Sync + 'static {
    fn propose(
        &self,
        cmd: Blob,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Blob, Status>> + Send>>;
    fn read_index(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<Blob, Status>> + Send>>;
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

#[tonic::async_trait]
impl peer_server::Peer for PeerService {
    async fn append_entries(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = unblob(req.get_ref())?;
        let resp = self.raft.append_entries(rpc).await.map_err(fatal)?;
        Ok(Response::new(blob(&resp)?))
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

    async fn propose(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.leader
            .propose(req.into_inner())
            .await
            .map(Response::new)
    }

    async fn read_index(&self, _req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.leader.read_index().await.map(Response::new)
    }

    async fn keep_alive(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.leader
            .keep_alive(req.into_inner())
            .await
            .map(Response::new)
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
        let mut map = self.by_url.lock().unwrap_or_else(|e| e.into_inner());
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
        }
    }
}

pub struct PeerNetwork {
    local: u64,
    target: u64,
    url: String,
    channels: Channels,
}

impl PeerNetwork {
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
        let mut client = self
            .channels
            .get(&self.url)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let body = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let call = pick(&mut client, Blob { data: body });
        match tokio::time::timeout(ttl, call).await {
            Err(_) => Err(RPCError::Timeout(Timeout {
                action: kind,
                id: self.local,
                target: self.target,
                timeout: ttl,
            })),
            Ok(Err(status)) => Err(match status.code() {
                tonic::Code::Unavailable | tonic::Code::Unknown => {
                    RPCError::Unreachable(Unreachable::new(&status))
                }
                _ => RPCError::Network(NetworkError::new(&status)),
            }),
            Ok(Ok(resp)) => {
                decode(&resp.get_ref().data).map_err(|e| RPCError::Network(NetworkError::new(&e)))
            }
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // A follower answers after its fsync, and a catching-up batch can be large: allow
        // more than the heartbeat-sized soft TTL.
        let ttl = option.soft_ttl().max(Duration::from_secs(2));
        self.call(
            openraft::network::RPCTypes::AppendEntries,
            &rpc,
            ttl,
            |c, b| Box::pin(c.append_entries(b)),
        )
        .await
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
