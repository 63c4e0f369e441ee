//! The etcd v3 services. [`EtcdApi`] holds what every service needs; each file implements
//! one tonic service on it. The HTTP/JSON gateway calls the same methods.

mod cluster;
mod kv;
mod lease;
mod maintenance;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use stead_store::Store;

use crate::cluster::{Member, RaftStatus};
use crate::metrics::Metrics;
use crate::pb;

pub use watch::watch_responses;

/// The etcd API version this server speaks.
pub const ETCD_VERSION: &str = "3.4.23";
/// The etcd cluster version reported by `/version`.
pub const ETCD_CLUSTER_VERSION: &str = "3.4.0";

/// One member of the cluster, as etcd's `Member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl MemberInfo {
    pub fn to_pb(&self) -> pb::Member {
        pb::Member {
            id: self.id,
            name: self.name.clone(),
            peer_ur_ls: self.peer_urls.clone(),
            client_ur_ls: self.client_urls.clone(),
            is_learner: false,
        }
    }
}

struct Inner {
    store: Store,
    /// Set when this member is part of a replicated cluster.
    cluster: Option<Member>,
    member: MemberInfo,
    cluster_id: u64,
    cluster_token: String,
    progress_interval: Duration,
    metrics: Arc<Metrics>,
}

/// Shared state of the etcd services; cheap to clone.
#[derive(Clone)]
pub struct EtcdApi {
    inner: Arc<Inner>,
}

impl EtcdApi {
    pub fn new(
        store: Store,
        member: MemberInfo,
        cluster_id: u64,
        progress_interval: Duration,
        metrics: Arc<Metrics>,
        cluster: Option<Member>,
        cluster_token: String,
    ) -> Self {
        EtcdApi {
            inner: Arc::new(Inner {
                store,
                cluster,
                cluster_token,
                member,
                cluster_id,
                progress_interval,
                metrics,
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.inner.cluster_id,
            member_id: self.inner.member.id,
            revision,
            raft_term: self.raft_status().map_or(RAFT_TERM, |s| s.term),
        }
    }

    /// Raft's view, when replicated.
    pub fn raft_status(&self) -> Option<RaftStatus> {
        self.inner.cluster.as_ref().map(Member::status)
    }

    fn current_header(&self) -> pb::ResponseHeader {
        self.header(self.inner.store.hub().revision())
    }
}

/// A single member is elected once and never changes term.
const RAFT_TERM: u64 = 2;
