//! The Raft type configuration and the encodings used for the log and the wire.

use serde::{Deserialize, Serialize};

use crate::types::{Command, CommandError, CommandResponse};

/// What a member is, as the cluster records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// URL peers use to reach this member.
    pub peer_url: String,
    /// URLs clients use to reach this member.
    pub client_urls: Vec<String>,
}

/// The state machine's answer to one log entry: `None` for entries that carry no command
/// (blank and membership entries).
pub type Reply = Option<Result<CommandResponse, CommandError>>;

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Put(p) => write!(f, "put {:?}", String::from_utf8_lossy(&p.key)),
            Command::DeleteRange(d) => write!(f, "delete {:?}", String::from_utf8_lossy(&d.key)),
            Command::Txn(t) => write!(
                f,
                "txn ({} compares, {}/{} ops)",
                t.compare.len(),
                t.success.len(),
                t.failure.len()
            ),
            Command::Compact { revision } => write!(f, "compact {revision}"),
            Command::LeaseGrant { id, ttl } => write!(f, "lease grant {id:x} ttl {ttl}"),
            Command::LeaseRevoke { id } => write!(f, "lease revoke {id:x}"),
            Command::LeaseCheckpoint { remaining } => {
                write!(f, "lease checkpoint of {} leases", remaining.len())
            }
            Command::Alarm {
                activate,
                member,
                alarm,
            } => write!(f, "alarm {alarm:?} on {member:x}: {activate}"),
        }
    }
}

openraft::declare_raft_types!(
    /// stead's Raft types: commands in, replies out, members identified by etcd-style ids.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = u64,
        Node = NodeInfo,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;
pub type Raft = openraft::Raft<TypeConfig, super::StateMachine>;

/// Encodes a value for the log or the wire (postcard: compact, not self-describing; both
/// ends run the same pinned openraft).
pub fn encode<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(std::io::Error::other)
}

/// The length of [`encode`]'s output for `value`, counted without building it.
pub fn encoded_len<T: Serialize>(value: &T) -> std::io::Result<usize> {
    postcard::experimental::serialized_size(value).map_err(std::io::Error::other)
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> std::io::Result<T> {
    postcard::from_bytes(bytes).map_err(std::io::Error::other)
}
