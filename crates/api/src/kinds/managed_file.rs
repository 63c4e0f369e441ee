//! `ManagedFile` (`stead.dev/v1`, cluster-scoped): a file on the machine kept at the content
//! and mode its spec asks for. Edit or delete it by hand and its controller puts it back;
//! delete the object and the file goes too (a finalizer).
//!
//! ```yaml
//! apiVersion: stead.dev/v1
//! kind: ManagedFile
//! metadata: {name: motd}
//! spec: {path: /tmp/stead-demo/motd, content: "hello\n", mode: "0644"}
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{STEAD_GROUP, STEAD_VERSION};
use crate::meta::{ObjectMeta, Timestamp, TypeMeta};
use crate::registry::PrinterColumn;
use crate::resource::{Resource, Scope};

/// Desired state of a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFileSpec {
    /// Absolute path of the file.
    #[schemars(length(min = 2), regex(pattern = r"^/"))]
    pub path: String,
    /// The whole content.
    #[serde(default)]
    pub content: String,
    /// Permission bits in octal (default `0644`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^0?[0-7]{3}$"))]
    pub mode: Option<String>,
}

impl ManagedFileSpec {
    /// The permission bits, `0o644` when unset or unreadable.
    pub fn mode_bits(&self) -> u32 {
        self.mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o644)
    }
}

/// Observed state of a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFileStatus {
    #[serde(default)]
    pub observed_generation: i64,
    /// Whether the file matched the spec at the last check.
    #[serde(default)]
    pub in_sync: bool,
    /// Times the file was found drifted and written back.
    #[serde(default)]
    pub repairs: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_repair: Option<Timestamp>,
    /// What was wrong at the last repair (`missing`, `content`, `mode`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_drift: String,
}

/// A file kept in its desired state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "A file on the machine kept at the content and mode of its spec.")]
pub struct ManagedFile {
    #[serde(flatten)]
    pub types: TypeMeta,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: ManagedFileSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ManagedFileStatus>,
}

impl Resource for ManagedFile {
    const GROUP: &'static str = STEAD_GROUP;
    const VERSION: &'static str = STEAD_VERSION;
    const KIND: &'static str = "ManagedFile";
    const PLURAL: &'static str = "managedfiles";
    const SINGULAR: &'static str = "managedfile";
    const SHORT_NAMES: &'static [&'static str] = &["mf"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const SCOPE: Scope = Scope::Cluster;
    const STATUS_SUBRESOURCE: bool = true;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("Path", "string", ".spec.path"),
            PrinterColumn::new("In Sync", "boolean", ".status.inSync"),
            PrinterColumn::new("Repairs", "integer", ".status.repairs"),
            PrinterColumn::new("Age", "date", ".metadata.creationTimestamp"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_with_a_default() {
        let mut spec = ManagedFileSpec::default();
        assert_eq!(spec.mode_bits(), 0o644);
        spec.mode = Some("0600".into());
        assert_eq!(spec.mode_bits(), 0o600);
        spec.mode = Some("755".into());
        assert_eq!(spec.mode_bits(), 0o755);
    }
}
