//! Built-in kinds, all in group `stead.dev`, version `v1`:
//!
//! | kind        | plural     | scope     | short | status subresource |
//! |-------------|------------|-----------|-------|--------------------|
//! | `Namespace` | namespaces | Cluster   | ns    | yes                |
//! | `Event`     | events     | Namespaced| ev    | no                 |
//! | `Lease`     | leases     | Namespaced|       | no                 |
//! | `ProcessSet`| processsets| Namespaced| pset  | yes (and `/scale`) |
//! | `Process`   | processes  | Namespaced| proc  | yes                |
//! | `ManagedFile`| managedfiles| Cluster | mf    | yes                |
//!
//! Kubernetes keeps `Namespace` and `Event` in its core group (`v1`) and `Lease` in
//! `coordination.k8s.io`; stead puts every built-in kind in one group, `stead.dev`, so that all of
//! its own objects live under `/registry/stead.dev/...` and `/apis/stead.dev/v1`. The shapes
//! follow Kubernetes' (`Event` follows `events.k8s.io/v1`: `regarding`, `note`, `reason`, ...).
//! `CustomResourceDefinition` (`apiextensions.k8s.io/v1`) is built in too, see
//! [`crate::CustomResourceDefinition`].

mod event;
mod lease;
mod managed_file;
mod namespace;
mod process_set;

pub use event::{Event, EventSeries, EventType, ObjectReference};
pub use lease::{Lease, LeaseSpec};
pub use managed_file::{ManagedFile, ManagedFileSpec, ManagedFileStatus};
pub use namespace::{Namespace, NamespacePhase, NamespaceSpec, NamespaceStatus};
pub use process_set::{
    Condition, Process, ProcessPhase, ProcessSet, ProcessSetSpec, ProcessSetStatus, ProcessStatus,
    ProcessTemplate, RestartPolicy,
};

/// Group of every built-in stead kind.
pub const STEAD_GROUP: &str = "stead.dev";
/// Version of every built-in stead kind.
pub const STEAD_VERSION: &str = "v1";
