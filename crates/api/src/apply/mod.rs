//! Field ownership and server-side apply: which field manager owns which field
//! (`metadata.managedFields`), how an apply merges a partial configuration, and when it
//! conflicts. See [`server_side_apply`] for the algorithm and its documented simplifications
//! (lists are atomic).

mod field_set;
mod managed_fields;
mod server_side;

pub use field_set::{FieldPath, FieldScope, FieldSet};
pub use managed_fields::{Conflict, ManagedFields, ManagerEntry};
pub use server_side::{ApplyError, ApplyOptions, UpdateOptions, server_side_apply, track_update};
