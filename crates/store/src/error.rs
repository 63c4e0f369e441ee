//! The store's error type. Variants carry structured fields; the server maps each one to the
//! exact etcd status (code and message) in a single place.

/// Errors returned by the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request named no key.
    #[error("key is not provided")]
    KeyNotProvided,
    /// A read asked for a revision that compaction removed.
    #[error("required revision {requested} has been compacted (compacted at {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    /// A read or compaction asked for a revision that does not exist yet.
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision { requested: i64, current: i64 },
    /// A put with `ignore_value` or `ignore_lease` named a key that does not exist.
    #[error("key not found")]
    KeyNotFound,
    /// A put set `ignore_value` and also carried a value.
    #[error("value is provided")]
    ValueProvided,
    /// A put set `ignore_lease` and also carried a lease.
    #[error("lease is provided")]
    LeaseProvided,
    /// A txn branch or its compares exceed the operation limit.
    #[error("too many operations in txn request (limit {limit})")]
    TooManyTxnOps { limit: usize },
    /// A txn branch writes the same key twice.
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// The lease does not exist (or expired).
    #[error("requested lease {id} not found")]
    LeaseNotFound { id: i64 },
    /// A lease grant reused a live lease id.
    #[error("lease {id} already exists")]
    LeaseExists { id: i64 },
    /// A lease grant asked for a TTL beyond the maximum.
    #[error("lease TTL {ttl} is too large")]
    LeaseTtlTooLarge { ttl: i64 },
    /// An encoded request exceeds the request size limit.
    #[error("request of {size} bytes is too large (limit {limit})")]
    RequestTooLarge { size: usize, limit: usize },
    /// The backend quota is exhausted; the NOSPACE alarm is raised.
    #[error("database space exceeded")]
    NoSpace,
    /// The apply loop has stopped (shutdown or a fatal storage error).
    #[error("store is stopped")]
    Stopped,
    /// No leader is known right now (an election is under way or a quorum is lost).
    #[error("no leader")]
    NoLeader,
    /// The replication layer failed or timed out; the command's outcome is unknown.
    #[error("replication failed: {reason}")]
    Replication { reason: String },
    /// A stored record could not be decoded: the data file is damaged.
    #[error("corrupt record in table {table}")]
    Corrupt { table: &'static str },
    /// A snapshot file is malformed.
    #[error("invalid snapshot: {reason}")]
    InvalidSnapshot { reason: &'static str },
    /// The underlying storage failed.
    #[error("storage error while {context}: {source}")]
    Storage {
        context: &'static str,
        // Not `#[source]`: the message already carries the cause, and error reports that
        // walk the source chain would print it twice.
        source: Box<redb::Error>,
    },
    /// An I/O error outside redb (snapshot files, data directory).
    #[error("i/o error while {context}: {source}")]
    Io {
        context: &'static str,
        // Not `#[source]`, for the same reason as `Storage`.
        source: std::io::Error,
    },
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds "what failed" context to redb errors.
pub(crate) trait StorageContext<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> StorageContext<T> for std::result::Result<T, E> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|e| Error::Storage {
            context,
            source: Box::new(e.into()),
        })
    }
}

impl Error {
    /// The wire form of a deterministic command failure; `None` for local failures
    /// (storage, I/O, shutdown) that must not be mistaken for an answer.
    pub fn to_command_error(&self) -> Option<crate::types::CommandError> {
        use crate::types::CommandError as C;
        Some(match *self {
            Error::KeyNotProvided => C::KeyNotProvided,
            Error::Compacted {
                requested,
                compacted,
            } => C::Compacted {
                requested,
                compacted,
            },
            Error::FutureRevision { requested, current } => {
                C::FutureRevision { requested, current }
            }
            Error::KeyNotFound => C::KeyNotFound,
            Error::ValueProvided => C::ValueProvided,
            Error::LeaseProvided => C::LeaseProvided,
            Error::TooManyTxnOps { limit } => C::TooManyTxnOps { limit },
            Error::DuplicateKey => C::DuplicateKey,
            Error::LeaseNotFound { id } => C::LeaseNotFound { id },
            Error::LeaseExists { id } => C::LeaseExists { id },
            Error::LeaseTtlTooLarge { ttl } => C::LeaseTtlTooLarge { ttl },
            Error::RequestTooLarge { size, limit } => C::RequestTooLarge { size, limit },
            Error::NoSpace => C::NoSpace,
            _ => return None,
        })
    }
}

impl From<crate::types::CommandError> for Error {
    fn from(e: crate::types::CommandError) -> Self {
        use crate::types::CommandError as C;
        match e {
            C::KeyNotProvided => Error::KeyNotProvided,
            C::Compacted {
                requested,
                compacted,
            } => Error::Compacted {
                requested,
                compacted,
            },
            C::FutureRevision { requested, current } => {
                Error::FutureRevision { requested, current }
            }
            C::KeyNotFound => Error::KeyNotFound,
            C::ValueProvided => Error::ValueProvided,
            C::LeaseProvided => Error::LeaseProvided,
            C::TooManyTxnOps { limit } => Error::TooManyTxnOps { limit },
            C::DuplicateKey => Error::DuplicateKey,
            C::LeaseNotFound { id } => Error::LeaseNotFound { id },
            C::LeaseExists { id } => Error::LeaseExists { id },
            C::LeaseTtlTooLarge { ttl } => Error::LeaseTtlTooLarge { ttl },
            C::RequestTooLarge { size, limit } => Error::RequestTooLarge { size, limit },
            C::NoSpace => Error::NoSpace,
        }
    }
}
