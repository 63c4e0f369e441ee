//! A client history: one [`Operation`] per request, with the time it was invoked, the time
//! its answer came back, and what came back.
//!
//! An answer that never came (timeout, connection lost, `Unavailable`) is
//! [`Outcome::Unknown`]: the request may or may not have taken effect, at any time after it
//! was invoked ("info" in Jepsen's terms). Its return time is [`Operation::NEVER`].

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A key-value pair as the store reports it (`mvccpb.KeyValue`), with UTF-8 key and value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl Kv {
    /// Converts a wire `KeyValue` (keys and values the harness writes are UTF-8).
    pub fn from_pb(kv: &stead_server::pb::mvccpb::KeyValue) -> Kv {
        Kv {
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            value: String::from_utf8_lossy(&kv.value).into_owned(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

impl fmt::Display for Kv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} (c{} m{} v{}",
            self.key, self.value, self.create_revision, self.mod_revision, self.version
        )?;
        if self.lease != 0 {
            write!(f, " l{:x}", self.lease)?;
        }
        write!(f, ")")
    }
}

/// The write a transaction makes when its compare holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum TxnWrite {
    Put { value: String },
    Delete,
}

/// A request, as far as the model needs to know it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Linearizable Range of one key.
    Get {
        key: String,
    },
    /// Linearizable Range of every key under a prefix.
    Range {
        prefix: String,
    },
    /// Put with `prev_kv`; `lease` 0 for none.
    Put {
        key: String,
        value: String,
        lease: i64,
    },
    /// DeleteRange of one key.
    Delete {
        key: String,
    },
    /// `Txn[mod_revision(key) == expected] write else Range(key)`: etcd's CAS and
    /// Kubernetes' create (`expected` 0), update and delete.
    Txn {
        key: String,
        expected: i64,
        write: TxnWrite,
    },
    LeaseGrant {
        id: i64,
    },
    LeaseRevoke {
        id: i64,
    },
}

impl Request {
    pub fn is_read(&self) -> bool {
        matches!(self, Request::Get { .. } | Request::Range { .. })
    }

    /// The unique value this request writes, if it writes one.
    pub fn written_value(&self) -> Option<&str> {
        match self {
            Request::Put { value, .. }
            | Request::Txn {
                write: TxnWrite::Put { value },
                ..
            } => Some(value),
            _ => None,
        }
    }
}

/// A successful answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Get {
        revision: i64,
        kv: Option<Kv>,
    },
    Range {
        revision: i64,
        kvs: Vec<Kv>,
    },
    Put {
        revision: i64,
        prev: Option<Kv>,
    },
    Delete {
        revision: i64,
        deleted: i64,
    },
    /// `kv` is what the failure branch's Range returned.
    Txn {
        revision: i64,
        succeeded: bool,
        kv: Option<Kv>,
    },
    LeaseGrant {
        revision: i64,
    },
    LeaseRevoke {
        revision: i64,
    },
}

/// How a request ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(Response),
    /// The store refused the request and did not apply it ("etcdserver: requested lease not
    /// found"): the model must agree that it would refuse it.
    LeaseNotFound,
    /// "etcdserver: lease already exists": a grant of a live lease id, refused.
    LeaseExists,
    /// No answer: applied or not, at some time after the call. `applied_at` is filled in
    /// when the watch shows that it took effect, and at which revision.
    Unknown {
        error: String,
        applied_at: Option<i64>,
    },
}

/// One request of one client.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Operation {
    pub client: usize,
    /// Nanoseconds since the run started.
    pub call: u64,
    /// Nanoseconds since the run started; [`Operation::NEVER`] when there was no answer.
    pub ret: u64,
    pub request: Request,
    pub outcome: Outcome,
}

impl Operation {
    pub const NEVER: u64 = u64::MAX;
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |t: u64| t as f64 / 1e6;
        let ret = if self.ret == Operation::NEVER {
            "never".to_string()
        } else {
            format!("{:.1}ms", ms(self.ret))
        };
        write!(
            f,
            "c{} [{:.1}ms..{}] {:?} -> ",
            self.client,
            ms(self.call),
            ret,
            self.request
        )?;
        match &self.outcome {
            Outcome::Ok(r) => write!(f, "{r:?}"),
            Outcome::LeaseNotFound => write!(f, "lease not found"),
            Outcome::LeaseExists => write!(f, "lease already exists"),
            Outcome::Unknown { error, applied_at } => match applied_at {
                Some(rev) => write!(f, "unknown ({error}), applied at revision {rev}"),
                None => write!(f, "unknown ({error})"),
            },
        }
    }
}

/// Shared, append-only record of the operations of every client of a run.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    ops: Arc<Mutex<Vec<Operation>>>,
}

impl Recorder {
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            ops: Arc::default(),
        }
    }

    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    pub fn record(&self, op: Operation) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    pub fn take(&self) -> Vec<Operation> {
        let mut ops = std::mem::take(&mut *self.ops.lock().unwrap_or_else(|e| e.into_inner()));
        ops.sort_by_key(|o| o.call);
        ops
    }

    pub fn len(&self) -> usize {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
