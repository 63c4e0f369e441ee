//! stead's resource model: typed objects with desired state (spec) and actual state (status).
//!
//! This crate is pure (no tokio, tonic, redb or I/O) — the rules the REST server applies to
//! every write, testable on their own:
//!
//! ```text
//!  YAML manifest ─► yaml::load_documents ─► DynamicObject
//!                                              │ KindRegistry::lookup_object (apiVersion/kind)
//!                                              ▼
//!  create / update / patch / apply ─► patch::*, apply::* ─► lifecycle::prepare_* ─► Kind::validate
//!                                                                   │
//!                                     storage_key(...) + JSON ◄─────┘  (the server writes it)
//! ```
//!
//! - [`meta`]: `TypeMeta`, `ObjectMeta`, group/version/kind, timestamps, naming rules;
//! - [`Resource`] for Rust kinds, [`DynamicObject`] for any kind, [`kinds`] built in;
//! - [`registry`]: kinds from Rust types and CustomResourceDefinitions; [`schema`]: validation;
//! - [`patch`]: JSON merge patch and JSON patch; [`apply`]: server-side apply and field managers;
//! - [`selector`]: label and field selectors; [`yaml`]: multi-document manifests;
//! - [`lifecycle`]: create/update/status/delete rules (uid, generation, finalizers, no-ops).

pub mod apply;
mod dynamic;
mod json;
pub mod kinds;
pub mod lifecycle;
pub mod meta;
pub mod patch;
pub mod registry;
mod resource;
pub mod schema;
pub mod selector;
pub mod yaml;

pub use dynamic::{DynamicObject, ObjectError};
pub use meta::{
    GroupKind, GroupVersion, GroupVersionKind, GroupVersionResource, ObjectMeta, OwnerReference,
    Timestamp, TypeMeta,
};
pub use registry::{CustomResourceDefinition, Kind, KindRegistry, KindVersion, RegistryError};
pub use resource::{Resource, Scope, storage_key, storage_prefix};
pub use schema::{FieldIssue, NameRule, SchemaValidator, ValidationErrors, validate_metadata};
