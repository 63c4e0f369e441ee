//! Object lifecycle rules as pure functions, called by the server around every write:
//!
//! ```text
//!  POST            ─► prepare_create         uid, creationTimestamp, generation 1, no status
//!  PUT / PATCH     ─► prepare_update         immutable fields kept, status kept (if /status
//!                                            exists), generation +1 on spec change, no-op check
//!  PUT .../status  ─► prepare_status_update  only status changes, generation unchanged
//!  DELETE          ─► prepare_delete         finalizers? set deletionTimestamp : remove
//! ```
//!
//! Each returns a [`WriteOutcome`]: write the object, write nothing (the update changes
//! nothing — so no new revision), or delete the key (the last finalizer of a terminating
//! object is gone). Schema validation ([`crate::Kind::validate`]) and field-manager tracking
//! ([`crate::apply`]) are separate steps.

mod create;
mod delete;
mod update;

use crate::dynamic::{DynamicObject, ObjectError};
use crate::registry::{Kind, KindVersion};
use crate::resource::Scope;
use crate::schema::{FieldIssue, NameRule};

pub use create::{IdGenerator, prepare_create};
pub use delete::{is_garbage, prepare_delete};
pub use update::{prepare_status_update, prepare_update};

/// The facts about a kind that the lifecycle rules depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindRules {
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// Whether `status` is written only through `/status`.
    pub status_subresource: bool,
    /// Rule for `metadata.name`.
    pub name_rule: NameRule,
}

impl KindRules {
    /// The rules of a registered kind version.
    pub fn of(kind: &Kind, version: &KindVersion) -> Self {
        KindRules {
            scope: kind.scope,
            status_subresource: version.subresources.status,
            name_rule: kind.name_rule,
        }
    }
}

/// What the server should do with the key.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Store this object.
    Write(DynamicObject),
    /// Nothing changed: write nothing, answer with the stored object.
    Unchanged,
    /// Remove the key; the object is its final state (for the DELETED event).
    Delete(DynamicObject),
}

/// A write breaks a lifecycle rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LifecycleError {
    /// Neither `metadata.name` nor `metadata.generateName` is set.
    #[error("metadata.name: name or generateName is required")]
    MissingName,
    /// A field that may not change did.
    #[error("{field}: field is immutable (was {old:?}, got {new:?})")]
    Immutable {
        /// Dotted path, e.g. `metadata.uid`.
        field: &'static str,
        /// Stored value.
        old: String,
        /// Requested value.
        new: String,
    },
    /// Finalizers were added to an object that is being deleted.
    #[error(
        "metadata.finalizers: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
    )]
    FinalizersAddedDuringDeletion {
        /// The finalizers that were added.
        added: Vec<String>,
    },
    /// A status update for a kind without the status subresource.
    #[error("the kind has no status subresource")]
    NoStatusSubresource,
    /// The metadata could not be decoded.
    #[error(transparent)]
    Object(#[from] ObjectError),
}

impl LifecycleError {
    /// The error as a field issue, for a Kubernetes `Invalid` (422) status.
    pub fn to_issue(&self) -> FieldIssue {
        match self {
            LifecycleError::MissingName => FieldIssue::new(
                "metadata.name",
                "required",
                "name or generateName is required",
            ),
            LifecycleError::Immutable { field, .. } => {
                FieldIssue::new(*field, "immutable", "field is immutable")
            }
            LifecycleError::FinalizersAddedDuringDeletion { added } => FieldIssue::new(
                "metadata.finalizers",
                "forbidden",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                ),
            ),
            LifecycleError::NoStatusSubresource => {
                FieldIssue::new("status", "forbidden", "the kind has no status subresource")
            }
            LifecycleError::Object(e) => FieldIssue::new("metadata", "type", e.to_string()),
        }
    }
}

/// Test helpers shared by the lifecycle tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use serde_json::{Value, json};

    pub(crate) const NAMESPACED_WITH_STATUS: KindRules = KindRules {
        scope: Scope::Namespaced,
        status_subresource: true,
        name_rule: NameRule::Dns1123Subdomain,
    };
    pub(crate) const CLUSTER_NO_STATUS: KindRules = KindRules {
        scope: Scope::Cluster,
        status_subresource: false,
        name_rule: NameRule::Dns1123Subdomain,
    };

    pub(crate) fn obj(value: Value) -> DynamicObject {
        DynamicObject::from_value(value).unwrap_or_default()
    }

    /// A stored object as `prepare_create` would have left it.
    pub(crate) fn stored() -> DynamicObject {
        obj(json!({
            "apiVersion": "x.io/v1", "kind": "K",
            "metadata": {"name": "a", "namespace": "n", "uid": "uid-1", "resourceVersion": "5",
                         "generation": 2, "creationTimestamp": "2024-01-01T00:00:00Z",
                         "labels": {"app": "a"}},
            "spec": {"replicas": 1},
            "status": {"ready": false}
        }))
    }
}
