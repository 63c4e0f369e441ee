//! stead's network face: the etcd v3 gRPC services, the HTTP/JSON gateway, TLS and
//! metrics, on top of [`stead_store`].
//!
//! - [`etcd`]: one tonic service per etcd service, on the shared [`etcd::EtcdApi`].
//! - [`gateway`]: `/v3/...` JSON, `/version`, `/health`, `/metrics`.
//! - [`status`]: the single mapping from store errors to gRPC (and HTTP) errors.
//! - [`rest`]: the Kubernetes-shaped REST API (`/apis/...`) on `--listen-api-url`.
//! - [`serve`]: listeners (plain or TLS) carrying gRPC and HTTP on the same port.
//! - [`authority`]: lets HTTP/2 clients that send a URL as `:authority` (etcdctl 3.4 with
//!   `--endpoints=http://...`) through hyper.

pub mod ask;
pub mod authority;
pub mod cluster;
pub mod convert;
pub mod etcd;
pub mod forward;
pub mod gateway;
pub mod metrics;
pub mod pb;
pub mod peer;
pub mod reads;
pub mod rest;
pub mod serve;
pub mod status;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use serve::{Server, ServerConfig};
pub use tls::TlsFiles;

/// Locks `mutex`, going on with the data if a panicking holder poisoned it (every state
/// behind these locks is left consistent between statements).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why the server could not start. Causes are chained as `source()`, not repeated in the
/// message, so `anyhow`'s `{:#}` prints each once.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS file {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("cannot open the data directory")]
    Store(#[source] stead_store::Error),
}
