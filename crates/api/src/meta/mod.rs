//! Object metadata and type identity: [`TypeMeta`], [`ObjectMeta`], group/version/kind tuples,
//! [`Timestamp`] and the Kubernetes naming rules ([`names`]).

mod gvk;
pub mod names;
mod object_meta;
mod time;

pub use gvk::{
    ApiVersionError, GroupKind, GroupVersion, GroupVersionKind, GroupVersionResource, TypeMeta,
};
pub(crate) use object_meta::null_as_default;
pub use object_meta::{ManagedFieldsEntry, ManagedFieldsOperation, ObjectMeta, OwnerReference};
pub use time::{Timestamp, TimestampError};
