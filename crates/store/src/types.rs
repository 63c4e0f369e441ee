//! Request, response and command types of the store. They mirror the etcd v3 messages field
//! for field, but belong to the store: the server converts between them and the wire.

use serde::{Deserialize, Serialize};

/// A key-value pair at one revision, as etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// 1 on creation, +1 on every put; 0 for a deleted key.
    pub version: i64,
    pub value: Vec<u8>,
    pub lease: i64,
}

/// What happened to a key at a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Put,
    Delete,
}

/// One change of one key. A delete's `kv` carries the key and the deletion revision only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventType,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// A put of a key that had a version before it in its life (version > 1), delivered
    /// without that version: the apply path reads it only while a watcher wants it, so a
    /// watcher asking for `prev_kv` fills it in from the store.
    pub fn lacks_prev_kv(&self) -> bool {
        self.kind == EventType::Put && self.kv.version > 1 && self.prev_kv.is_none()
    }
}

/// The events of one revision, in the order the request produced them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionEvents {
    pub revision: i64,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

/// etcd's `RangeRequest`. `range_end` rules: empty = the single key `key`; `[0]` = every key
/// `>= key`; otherwise the half-open interval `[key, range_end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub limit: i64,
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub serializable: bool,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The store's current revision when the read was served.
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    pub revision: i64,
    pub prev_kv: Option<KeyValue>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    pub revision: i64,
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// What a compare looks at, with the operand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Vec<u8>),
    Lease(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

impl TxnRequest {
    /// The ops of the branch the compares chose.
    pub fn branch(&self, succeeded: bool) -> &[RequestOp] {
        if succeeded {
            &self.success
        } else {
            &self.failure
        }
    }

    /// True when no branch (at any depth) can write.
    pub fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            RequestOp::Range(_) => true,
            RequestOp::Txn(t) => t.is_read_only(),
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
        })
    }

    /// The reads the txn may make: its compares and the ranges in both branches, nested
    /// txns included.
    pub fn reads(&self) -> usize {
        self.compare.len()
            + self
                .success
                .iter()
                .chain(&self.failure)
                .map(|op| match op {
                    RequestOp::Range(_) => 1,
                    RequestOp::Txn(t) => t.reads(),
                    RequestOp::Put(_) | RequestOp::DeleteRange(_) => 0,
                })
                .sum::<usize>()
    }

    /// True when the txn only reads, and every compare and range names one key.
    pub fn reads_single_keys(&self) -> bool {
        self.compare.iter().all(|c| c.range_end.is_empty())
            && self.success.iter().chain(&self.failure).all(|op| match op {
                RequestOp::Range(r) => r.range_end.is_empty(),
                RequestOp::Txn(t) => t.reads_single_keys(),
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
            })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    pub revision: i64,
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

/// Alarms, as etcd's `AlarmType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AlarmType {
    NoSpace,
    Corrupt,
}

/// A mutation of the store. Every change enters through [`crate::Engine::apply_batch`] as one of
/// these; each is deterministic (ids and decisions that need a clock or randomness are made
/// before the command is built), so a log of commands replays to the same state anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact {
        revision: i64,
    },
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    /// The leader's record of the seconds left on leases, so that a new leader continues
    /// their countdown instead of restarting it.
    LeaseCheckpoint {
        remaining: Vec<(i64, i64)>,
    },
    Alarm {
        activate: bool,
        member: u64,
        alarm: AlarmType,
    },
}

/// The successful outcome of a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact {
        revision: i64,
    },
    LeaseGrant {
        id: i64,
        ttl: i64,
        revision: i64,
    },
    LeaseRevoke {
        revision: i64,
    },
    LeaseCheckpoint {
        revision: i64,
    },
    Alarm {
        alarms: Vec<(u64, AlarmType)>,
        revision: i64,
    },
}

/// A command's failure that every member reaches identically (validation against the
/// replicated state), carried back from whichever member applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandError {
    KeyNotProvided,
    Compacted { requested: i64, compacted: i64 },
    FutureRevision { requested: i64, current: i64 },
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    TooManyTxnOps { limit: usize },
    DuplicateKey,
    LeaseNotFound { id: i64 },
    LeaseExists { id: i64 },
    LeaseTtlTooLarge { ttl: i64 },
    RequestTooLarge { size: usize, limit: usize },
    NoSpace,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(key: &str, range_end: &str) -> RequestOp {
        RequestOp::Range(RangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..RangeRequest::default()
        })
    }

    fn compare(key: &str, range_end: &str) -> Compare {
        Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Version(1),
            key: key.into(),
            range_end: range_end.into(),
        }
    }

    #[test]
    fn a_txn_reads_single_keys_only_if_no_compare_range_or_write_spans_more() {
        let txn = |compare, success, failure| TxnRequest {
            compare,
            success,
            failure,
        };
        let nested = |op| RequestOp::Txn(txn(vec![], vec![op], vec![]));
        assert!(
            txn(
                vec![compare("a", "")],
                vec![get("a", "")],
                vec![get("b", "")]
            )
            .reads_single_keys()
        );
        assert!(txn(vec![], vec![nested(get("a", ""))], vec![]).reads_single_keys());
        assert!(!txn(vec![compare("a", "b")], vec![get("a", "")], vec![]).reads_single_keys());
        assert!(!txn(vec![], vec![get("a", "")], vec![get("a", "\0")]).reads_single_keys());
        assert!(!txn(vec![], vec![nested(get("a", "z"))], vec![]).reads_single_keys());
        let put = RequestOp::Put(PutRequest::default());
        assert!(!txn(vec![], vec![put.clone()], vec![]).reads_single_keys());
        let both = txn(
            vec![],
            vec![get("a", ""), nested(get("b", "z"))],
            vec![get("c", ""), put],
        );
        assert_eq!(both.reads(), 3);
        let compared = txn(
            vec![compare("a", ""), compare("b", "")],
            vec![RequestOp::Txn(txn(vec![compare("c", "")], vec![], vec![]))],
            vec![get("d", "")],
        );
        assert_eq!(
            compared.reads(),
            4,
            "compares are reads too, nested ones included"
        );
    }
}
