//! Multi-version concurrency control with etcd's semantics.
//!
//! - [`keys`]: the `key`/`range_end` convention of every etcd request.
//! - [`read`]: point-in-time reads (Range, compares) over the latest or historical tables.
//! - [`apply`]: the single deterministic mutation path.
//! - [`txn`]: request validation (op limits, duplicate keys) and compare evaluation.
//! - [`compaction`]: dropping superseded versions below a revision.

pub(crate) mod apply;
pub(crate) mod compaction;
pub(crate) mod keys;
pub(crate) mod read;
pub(crate) mod txn;
