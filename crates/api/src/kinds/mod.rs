//! Built-in kinds:
//!
//! | kind         | apiVersion     | plural       | scope      | short | status subresource |
//! |--------------|----------------|--------------|------------|-------|--------------------|
//! | `Namespace`  | `v1` (core)    | namespaces   | Cluster    | ns    | yes                |
//! | `Event`      | `v1` (core)    | events       | Namespaced | ev    | no                 |
//! | `Lease`      | `stead.dev/v1` | leases       | Namespaced |       | no                 |
//! | `ProcessSet` | `stead.dev/v1` | processsets  | Namespaced | pset  | yes (and `/scale`) |
//! | `Process`    | `stead.dev/v1` | processes    | Namespaced | proc  | yes                |
//! | `ManagedFile`| `stead.dev/v1` | managedfiles | Cluster    | mf    | yes                |
//!
//! `Namespace` and `Event` are in Kubernetes' core group (`""`, served at `/api/v1`, stored
//! under `/registry/namespaces/` and `/registry/events/`), as Kubernetes clients
//! (`kubectl create namespace`, `kubectl describe`) expect them there, in core/v1's shapes.
//! stead's own kinds are in `stead.dev` (`/apis/stead.dev/v1`, `/registry/stead.dev/...`);
//! `Lease` follows `coordination.k8s.io/v1`.
//! `CustomResourceDefinition` (`apiextensions.k8s.io/v1`) is built in too, see
//! [`crate::CustomResourceDefinition`].

mod event;
mod lease;
mod managed_file;
mod namespace;
mod process_set;

pub use event::{Event, EventSeries, EventSource, EventType, ObjectReference};
pub use lease::{Lease, LeaseSpec};
pub use managed_file::{ManagedFile, ManagedFileSpec, ManagedFileStatus};
pub use namespace::{Namespace, NamespacePhase, NamespaceSpec, NamespaceStatus};
pub use process_set::{
    Condition, Process, ProcessPhase, ProcessSet, ProcessSetSpec, ProcessSetStatus, ProcessStatus,
    ProcessTemplate, RestartPolicy,
};

/// Kubernetes' core group (`apiVersion: v1`), served at `/api/v1`.
pub const CORE_GROUP: &str = "";
/// Version of the core group.
pub const CORE_VERSION: &str = "v1";
/// Group of stead's own built-in kinds.
pub const STEAD_GROUP: &str = "stead.dev";
/// Version of stead's own built-in kinds.
pub const STEAD_VERSION: &str = "v1";
