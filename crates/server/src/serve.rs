//! Listening: one port per client URL serving gRPC (HTTP/2) and the JSON gateway
//! (HTTP/1.1 or HTTP/2) side by side, in plain TCP or TLS.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use stead_store::raft::{LogStore, NodeInfo, Raft, StateMachine};
use stead_store::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use url::Url;

use crate::ask::Asks;
use crate::authority::AuthorityFix;
use crate::cluster::FORWARD_DEADLINE;
use crate::cluster::Member;
use crate::etcd::{EtcdApi, MemberInfo};
use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::pb;
use crate::pb::steadpeer::peer_server::PeerServer;
use crate::peer::{Channels, MAX_PEER_MESSAGE, Network, PeerService};
use crate::reads::ReadRounds;
use crate::status::MAX_GRPC_RECV_BYTES;
use crate::tls::{TlsFiles, acceptor};
use crate::{ServeError, gateway, rest};

/// Everything `stead serve` needs, named after etcd's flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: std::path::PathBuf,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<Url>,
    pub listen_peer_urls: Vec<Url>,
    pub initial_advertise_peer_urls: Vec<Url>,
    pub initial_cluster: Vec<(String, Url)>,
    pub initial_cluster_state_new: bool,
    pub initial_cluster_token: String,
    pub client_tls: Option<TlsFiles>,
    /// TLS between members (etcd's `--peer-*` flags); peer URLs are then https.
    pub peer_tls: Option<TlsFiles>,
    pub quota_backend_bytes: u64,
    /// redb page cache size (bytes).
    pub backend_cache_bytes: usize,
    /// Applied entries between Raft snapshots (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// Log entries kept behind a snapshot for slow followers to catch up from.
    pub snapshot_catchup_entries: u64,
    pub progress_notify_interval: Duration,
    /// Where the Kubernetes-shaped REST API listens (`--listen-api-url`); `None`: nowhere.
    pub listen_api_url: Option<Url>,
}

/// A running server: its bound addresses and a way to stop it.
pub struct Server {
    pub client_addrs: Vec<SocketAddr>,
    /// The bound address of the REST API, if it is served.
    pub api_addr: Option<SocketAddr>,
    store: Store,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Opens the store and binds every listener; serving starts immediately.
    pub async fn start(config: ServerConfig) -> Result<Server, ServeError> {
        for url in &config.listen_client_urls {
            let tls = url.scheme() == "https";
            if !tls && url.scheme() != "http" {
                return Err(ServeError::Config(format!(
                    "listen client URL {url} must use http or https"
                )));
            }
            if tls && config.client_tls.is_none() {
                return Err(ServeError::Config(format!(
                    "listen client URL {url} is https but no --cert-file/--key-file was given"
                )));
            }
        }
        let peer_urls: Vec<String> = config
            .initial_advertise_peer_urls
            .iter()
            .map(trim_url)
            .collect();
        let client_urls: Vec<String> = config.advertise_client_urls.iter().map(trim_url).collect();
        let token = &config.initial_cluster_token;
        let id = member_id(&peer_urls, token);
        let mut members: BTreeMap<u64, NodeInfo> = BTreeMap::new();
        for (name, url) in &config.initial_cluster {
            let url = trim_url(url);
            let mine = *name == config.name;
            members.insert(
                member_id(std::slice::from_ref(&url), token),
                NodeInfo {
                    name: name.clone(),
                    peer_url: url,
                    client_urls: if mine {
                        client_urls.clone()
                    } else {
                        Vec::new()
                    },
                },
            );
        }
        if !members.contains_key(&id) {
            return Err(ServeError::Config(format!(
                "--initial-cluster has no entry for this member's peer URLs {peer_urls:?}"
            )));
        }
        let cluster_id = member_id(
            &members.keys().map(u64::to_string).collect::<Vec<_>>(),
            token,
        );
        let mut store_config = StoreConfig::new(&config.data_dir);
        store_config.quota_bytes = config.quota_backend_bytes;
        store_config.engine.cache_bytes = config.backend_cache_bytes;
        store_config.member_id = id;
        let replicated = members.len() > 1 || !config.initial_cluster_state_new;

        let mut tasks = Vec::new();
        let metrics = Arc::new(Metrics::default());
        let (store, cluster) = if replicated {
            let store = Store::open_unstarted(store_config).map_err(ServeError::Store)?;
            let member = start_member(&config, id, members, &store, &metrics, &mut tasks).await?;
            (store, Some(member))
        } else {
            (Store::open(store_config).map_err(ServeError::Store)?, None)
        };

        let member = MemberInfo {
            id,
            name: config.name.clone(),
            peer_urls,
            client_urls,
        };
        let api = EtcdApi::new(
            store.clone(),
            member,
            cluster_id,
            config.progress_notify_interval,
            metrics,
            cluster,
            config.initial_cluster_token.clone(),
        );
        let app = router(api);
        let tls = config.client_tls.as_ref().map(acceptor).transpose()?;

        let mut client_addrs = Vec::new();
        for url in &config.listen_client_urls {
            let addr = socket_addr(url)?;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| ServeError::Bind { addr, source })?;
            client_addrs.push(local);
            let tls = if url.scheme() == "https" {
                tls.clone()
            } else {
                None
            };
            tracing::info!(%local, tls = tls.is_some(), "serving client requests");
            tasks.push(tokio::spawn(accept_loop(listener, tls, app.clone())));
        }
        let api_addr = match &config.listen_api_url {
            Some(url) => {
                let rest = rest::RestApi::new(store.clone(), config.progress_notify_interval)
                    .await
                    .map_err(ServeError::Config)?;
                let tls = if url.scheme() == "https" {
                    Some(tls.clone().ok_or_else(|| {
                        ServeError::Config(format!(
                            "listen API URL {url} is https but no --cert-file/--key-file was given"
                        ))
                    })?)
                } else if url.scheme() == "http" {
                    None
                } else {
                    return Err(ServeError::Config(format!(
                        "listen API URL {url} must use http or https"
                    )));
                };
                let addr = socket_addr(url)?;
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Bind { addr, source })?;
                let local = listener
                    .local_addr()
                    .map_err(|source| ServeError::Bind { addr, source })?;
                tracing::info!(%local, tls = tls.is_some(), "serving the REST API");
                tasks.push(tokio::spawn(rest.clone().follow_crds()));
                tasks.push(tokio::spawn(rest.clone().collect_garbage()));
                tasks.push(tokio::spawn(accept_loop(listener, tls, rest::router(rest))));
                Some(local)
            }
            None => None,
        };
        Ok(Server {
            client_addrs,
            api_addr,
            store,
            tasks,
        })
    }

    /// Serves until `shutdown` resolves, then stops listening and flushes the store.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        for task in &self.tasks {
            task.abort();
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
    }
}

fn trim_url(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// Starts Raft for this member: its log and state machine, the peer listeners, and (for a
/// new cluster) the initial membership.
async fn start_member(
    config: &ServerConfig,
    id: u64,
    members: BTreeMap<u64, NodeInfo>,
    store: &Store,
    metrics: &Arc<Metrics>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Member, ServeError> {
    let raft_err = |e: &dyn std::fmt::Display| ServeError::Config(format!("raft: {e}"));
    if config.quota_backend_bytes > MAX_PEER_MESSAGE as u64 {
        tracing::warn!(
            quota = config.quota_backend_bytes,
            snapshot_limit = MAX_PEER_MESSAGE,
            "the backend quota exceeds the largest snapshot a member can send to another; \
             keep the data below the limit until snapshots are sent in chunks"
        );
    }
    let own = members.get(&id).cloned().unwrap_or_default();
    let log = LogStore::open(&config.data_dir.join("raft"))
        .map_err(|e| ServeError::Config(format!("cannot open the raft log: {e}")))?;
    let sm = StateMachine::new(store.shared().clone(), &config.data_dir)
        .map_err(|e| ServeError::Config(format!("cannot open the snapshot: {e}")))?;
    let raft_config = openraft::Config {
        cluster_name: config.initial_cluster_token.clone(),
        heartbeat_interval: 100,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        install_snapshot_timeout: 120_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_count.max(1)),
        max_in_snapshot_log_to_keep: config.snapshot_catchup_entries,
        // A leader killed and restarted holds an election like any member (as etcd's does)
        // instead of resuming its term: its saved commit index may lie behind entries it
        // had committed and acknowledged, and a new term's first entry commits them all.
        // The read index a leader names without a heartbeat round (`cluster::ReadIndexGrant`)
        // relies on this too: its commit index must be its own leadership's.
        enable_leader_restore: Some(false),
        ..Default::default()
    }
    .validate()
    .map_err(|e| raft_err(&e))?;
    let channels = match &config.peer_tls {
        Some(files) => Channels::with_tls(crate::tls::client_config(files)?),
        None => Channels::default(),
    };
    let peer_acceptor = config.peer_tls.as_ref().map(acceptor).transpose()?;
    let network = Network {
        local: id,
        channels: channels.clone(),
    };
    let asks = Asks::new(channels.clone(), FORWARD_DEADLINE);
    let last_vote = log.last_vote();
    let raft = Raft::new(id, Arc::new(raft_config), network, log, sm)
        .await
        .map_err(|e| raft_err(&e))?;
    let member = Member {
        id,
        raft: raft.clone(),
        shared: store.shared().clone(),
        channels,
        asks: asks.clone(),
        changes: Arc::default(),
        forwarder: Forwarder::new(asks),
        reads: ReadRounds::default(),
        last_vote,
        metrics: metrics.clone(),
    };
    let peer = tonic::service::Routes::new(
        PeerServer::new(PeerService {
            raft: raft.clone(),
            leader: Arc::new(member.clone()),
        })
        .max_decoding_message_size(MAX_PEER_MESSAGE)
        .max_encoding_message_size(MAX_PEER_MESSAGE),
    )
    .into_axum_router();
    for url in &config.listen_peer_urls {
        let addr = socket_addr(url)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let tls = if url.scheme() == "https" {
            let Some(tls) = peer_acceptor.clone() else {
                return Err(ServeError::Config(format!(
                    "listen peer URL {url} is https but no --peer-cert-file/--peer-key-file was given"
                )));
            };
            Some(tls)
        } else {
            None
        };
        tracing::info!(%addr, tls = tls.is_some(), "serving peers");
        tasks.push(tokio::spawn(accept_loop(listener, tls, peer.clone())));
    }
    if config.initial_cluster_state_new && !raft.is_initialized().await.map_err(|e| raft_err(&e))? {
        // Every member of a new cluster proposes the same initial membership; whichever
        // is elected first commits it, the others' identical copies are harmless.
        if let Err(e) = raft.initialize(members).await {
            tracing::info!(error = %e, "initial membership already set");
        }
    }
    store.set_proposer(Arc::new(member.clone()));
    member.watch_leadership();
    member.publish(own);
    Ok(member)
}

fn socket_addr(url: &Url) -> Result<SocketAddr, ServeError> {
    let host = url
        .host_str()
        .ok_or_else(|| ServeError::Config(format!("URL {url} has no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url
        .port_or_known_default()
        .ok_or_else(|| ServeError::Config(format!("URL {url} has no port")))?;
    let ip = if host == "localhost" {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse()
            .map_err(|_| ServeError::Config(format!("URL {url} must name an IP address")))?
    };
    Ok(SocketAddr::new(ip, port))
}

fn router(api: EtcdApi) -> axum::Router {
    let (_health, health_service) = tonic_health::server::health_reporter();
    let limit = MAX_GRPC_RECV_BYTES;
    tonic::service::Routes::new(
        pb::kv_server::KvServer::new(api.clone()).max_decoding_message_size(limit),
    )
    .add_service(pb::watch_server::WatchServer::new(api.clone()).max_decoding_message_size(limit))
    .add_service(pb::lease_server::LeaseServer::new(api.clone()).max_decoding_message_size(limit))
    .add_service(
        pb::cluster_server::ClusterServer::new(api.clone()).max_decoding_message_size(limit),
    )
    .add_service(
        pb::maintenance_server::MaintenanceServer::new(api.clone())
            .max_decoding_message_size(limit),
    )
    .add_service(health_service)
    .into_axum_router()
    .merge(gateway::router(api))
    .fallback(gateway::not_found)
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, app: axum::Router) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(u32::MAX)
                .keep_alive_interval(Some(Duration::from_secs(30)));
            let result = match tls {
                Some(tls) => match tls.accept(tcp).await {
                    Ok(stream) => {
                        builder
                            .serve_connection_with_upgrades(
                                TokioIo::new(AuthorityFix::new(stream)),
                                service,
                            )
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection_with_upgrades(
                            TokioIo::new(AuthorityFix::new(tcp)),
                            service,
                        )
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// A member (or cluster) id derived from stable inputs — its peer URLs (or the member ids)
/// and the cluster token — so every member computes the same ids and a restarted member
/// keeps its own. FNV-1a over the sorted inputs; never 0.
pub fn member_id(parts: &[String], token: &str) -> u64 {
    let mut sorted: Vec<&str> = parts.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sorted.join(",").bytes().chain(token.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.max(1)
}

#[cfg(test)]
mod tests {
    use super::member_id;

    #[test]
    fn member_ids_depend_on_the_urls_and_token_but_not_their_order() {
        let a = "http://10.0.0.1:2380".to_string();
        let b = "http://10.0.0.2:2380".to_string();
        let id = member_id(&[a.clone(), b.clone()], "etcd-cluster");
        assert_eq!(id, member_id(&[b.clone(), a.clone()], "etcd-cluster"));
        assert_ne!(id, member_id(std::slice::from_ref(&a), "etcd-cluster"));
        assert_ne!(id, member_id(&[a, b], "another-cluster"));
        assert_ne!(id, 0);
    }
}
