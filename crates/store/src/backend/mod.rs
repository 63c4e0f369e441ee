//! The redb backend: table layout and record encoding.

pub(crate) mod codec;
pub(crate) mod schema;
