//! Patches: JSON merge patch (RFC 7386, `application/merge-patch+json`) and JSON patch
//! (RFC 6902, `application/json-patch+json`), plus JSON pointers (RFC 6901).
//!
//! Both work on plain JSON values; the server applies a patch to the stored object, then runs
//! the same lifecycle rules and validation as for an update. Strategic merge patch needs the
//! Go types' list strategies: it is served for the core kinds only ([`strategic`]); for
//! custom resources the server answers 415, as Kubernetes does.

mod json_patch;
mod merge_patch;
mod pointer;
pub mod strategic;

pub(crate) use json_patch::json_equal;
pub use json_patch::{JsonPatchError, PatchOperation, apply_json_patch, diff, parse_json_patch};
pub use merge_patch::{apply_merge_patch, create_merge_patch, merge_into};
pub use pointer::{JsonPointer, PointerError, escape_token};
pub use strategic::{
    ListStrategy, StrategicPatchError, apply_strategic_merge_patch, object_meta_lists,
};
