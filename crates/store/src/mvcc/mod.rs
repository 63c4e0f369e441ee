//! Multi-version concurrency control with etcd's semantics.
//!
//! - [`keys`]: the `key`/`range_end` convention of every etcd request.
//! - [`index`]: the in-memory key -> revisions index.
//! - [`read`]: point-in-time reads (Range, compares) through the index.
//! - [`apply`]: the single deterministic mutation path.
//! - [`txn`]: request validation (op limits, duplicate keys) and compare evaluation.
//! - [`compaction`]: dropping superseded versions below a revision.

pub(crate) mod apply;
pub(crate) mod compaction;
pub(crate) mod index;
pub(crate) mod keys;
pub(crate) mod read;
pub(crate) mod txn;
