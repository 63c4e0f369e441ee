//! [`ManagedFields`]: the decoded `metadata.managedFields` of an object — one [`FieldSet`] per
//! field manager — and [`Conflict`], a field another manager owns.
//!
//! An entry is identified by (manager, operation, subresource): a controller that both applies
//! and updates has two entries, as in Kubernetes.

use std::fmt;

use serde_json::Value;

use super::field_set::{DisplayPath, FieldPath, FieldSet, are_related};
use crate::meta::{ManagedFieldsEntry, ManagedFieldsOperation, Timestamp};

/// A field owned by another manager that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// How the other manager wrote the field.
    pub operation: ManagedFieldsOperation,
    /// The other manager's `apiVersion`.
    pub api_version: String,
    /// The subresource the other manager wrote through (`status`), or empty.
    pub subresource: String,
    /// When the other manager's entry last changed.
    pub time: Option<Timestamp>,
    /// The field, as Kubernetes prints it: `.spec.replicas`.
    pub path: String,
}

impl Conflict {
    /// The manager as Kubernetes' conflict messages describe it:
    /// `"kubectl"`, `"kubectl-edit" using stead.dev/v1 at 2024-01-01T00:00:00Z`, or
    /// `"ctrl" with subresource "status"`.
    pub fn manager_description(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == ManagedFieldsOperation::Update {
            out.push_str(&format!(" using {}", self.api_version));
            if let Some(time) = self.time {
                out.push_str(&format!(" at {}", time.truncated_to_seconds()));
            }
        }
        out
    }
}

/// Formats conflicts exactly like Kubernetes' `Apply failed with N conflicts: ...` message.
pub(crate) struct ConflictMessage<'a>(pub(crate) &'a [Conflict]);

impl fmt::Display for ConflictMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("Apply failed with 0 conflicts"),
            [one] => write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                one.manager_description(),
                one.path
            ),
            many => {
                write!(f, "Apply failed with {} conflicts: ", many.len())?;
                let mut managers: Vec<String> =
                    many.iter().map(Conflict::manager_description).collect();
                managers.sort();
                managers.dedup();
                let mut lines = Vec::new();
                for manager in managers {
                    lines.push(format!("conflicts with {manager}:"));
                    for c in many.iter().filter(|c| c.manager_description() == manager) {
                        lines.push(format!("- {}", c.path));
                    }
                }
                f.write_str(&lines.join("\n"))
            }
        }
    }
}

/// One manager's entry: its metadata and the fields it owns.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerEntry {
    /// The entry as stored, with `fieldsV1` cleared (see `fields`).
    pub entry: ManagedFieldsEntry,
    /// The owned fields.
    pub fields: FieldSet,
}

impl ManagerEntry {
    fn is(&self, manager: &str, operation: ManagedFieldsOperation, subresource: &str) -> bool {
        self.entry.manager == manager
            && self.entry.operation == operation
            && self.entry.subresource == subresource
    }

    pub(crate) fn conflict(&self, path: &[String]) -> Conflict {
        Conflict {
            manager: self.entry.manager.clone(),
            operation: self.entry.operation,
            api_version: self.entry.api_version.clone(),
            subresource: self.entry.subresource.clone(),
            time: self.entry.time,
            path: DisplayPath(path).to_string(),
        }
    }
}

/// The field managers of an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagedFields {
    /// Entries in stored order.
    pub entries: Vec<ManagerEntry>,
}

impl ManagedFields {
    /// Decodes the `metadata.managedFields` of an object (missing or malformed entries are
    /// skipped: ownership is advisory and must never make an object unwritable).
    pub fn of(object: &Value) -> Self {
        let list = object
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array);
        let entries = list
            .into_iter()
            .flatten()
            .filter_map(|raw| serde_json::from_value::<ManagedFieldsEntry>(raw.clone()).ok())
            .filter(|e| !e.manager.is_empty() || e.fields_v1.is_some())
            .map(|mut entry| {
                let fields = entry
                    .fields_v1
                    .take()
                    .map(|f| FieldSet::from_fields_v1(&f))
                    .unwrap_or_default();
                ManagerEntry { entry, fields }
            })
            .collect();
        ManagedFields { entries }
    }

    /// The entries as stored: `fieldsV1` filled in, entries that own nothing dropped.
    pub fn to_entries(&self) -> Vec<ManagedFieldsEntry> {
        self.entries
            .iter()
            .filter(|m| !m.fields.is_empty())
            .map(|m| ManagedFieldsEntry {
                fields_type: "FieldsV1".to_owned(),
                fields_v1: Some(m.fields.to_fields_v1()),
                ..m.entry.clone()
            })
            .collect()
    }

    /// Writes the entries into `metadata.managedFields` (removing the field when empty).
    pub fn write_to(&self, object: &mut Value) {
        let entries = self.to_entries();
        let meta = crate::json::child_object_mut(crate::json::object_mut(object), "metadata");
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            let value = serde_json::to_value(entries).unwrap_or(Value::Null);
            meta.insert("managedFields".to_owned(), value);
        }
    }

    /// The index of an entry.
    pub fn position(
        &self,
        manager: &str,
        operation: ManagedFieldsOperation,
        subresource: &str,
    ) -> Option<usize> {
        self.entries
            .iter()
            .position(|m| m.is(manager, operation, subresource))
    }

    /// The entry for (manager, operation, subresource), created empty if missing.
    pub(crate) fn entry_mut(
        &mut self,
        manager: &str,
        operation: ManagedFieldsOperation,
        subresource: &str,
    ) -> &mut ManagerEntry {
        let index = match self.position(manager, operation, subresource) {
            Some(i) => i,
            None => {
                self.entries.push(ManagerEntry {
                    entry: ManagedFieldsEntry {
                        manager: manager.to_owned(),
                        operation,
                        subresource: subresource.to_owned(),
                        ..ManagedFieldsEntry::default()
                    },
                    fields: FieldSet::new(),
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[index]
    }

    /// Names of the managers owning `path` (or a field above or below it).
    pub fn owners_of(&self, path: &[String]) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|m| m.fields.related(path).next().is_some())
            .map(|m| m.entry.manager.as_str())
            .collect()
    }

    /// Drops every owned path that no longer exists in `object`.
    pub(crate) fn prune_to(&mut self, object: &Value) {
        for m in &mut self.entries {
            m.fields
                .retain(|p| super::field_set::value_at(object, p).is_some());
        }
    }

    /// Removes `path` and related paths from every entry except `keep`.
    pub(crate) fn disown(&mut self, path: &FieldPath, keep: Option<usize>) {
        for (i, m) in self.entries.iter_mut().enumerate() {
            if Some(i) != keep {
                m.fields.retain(|p| !are_related(p, path));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conflict(manager: &str, operation: ManagedFieldsOperation, path: &str) -> Conflict {
        Conflict {
            manager: manager.into(),
            operation,
            api_version: "stead.dev/v1".into(),
            subresource: String::new(),
            time: Some(Timestamp::from_unix(1_700_000_000, 5)),
            path: path.into(),
        }
    }

    #[test]
    fn conflict_messages_match_kubernetes() {
        use ManagedFieldsOperation::{Apply, Update};
        let one = [conflict("kubectl", Apply, ".spec.replicas")];
        assert_eq!(
            ConflictMessage(&one).to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
        );
        let many = [
            conflict("ctrl", Update, ".spec.replicas"),
            conflict("alice", Apply, ".metadata.labels.app"),
            conflict("ctrl", Update, ".spec.image"),
        ];
        assert_eq!(
            ConflictMessage(&many).to_string(),
            "Apply failed with 3 conflicts: conflicts with \"alice\":\n- .metadata.labels.app\n\
             conflicts with \"ctrl\" using stead.dev/v1 at 2023-11-14T22:13:20Z:\n- .spec.replicas\n- .spec.image"
        );
        let mut status = conflict("ctrl", Apply, ".status.ready");
        status.subresource = "status".into();
        assert_eq!(
            status.manager_description(),
            "\"ctrl\" with subresource \"status\""
        );
    }

    #[test]
    fn managed_fields_decode_and_encode_through_the_object() {
        let mut obj = json!({"metadata": {"managedFields": [
            {"manager": "a", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:x": {}}}},
            {"manager": "b", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:y": {}}}, "subresource": "status"},
            "garbage",
        ]}, "spec": {"x": 1}});
        let mut managed = ManagedFields::of(&obj);
        assert_eq!(managed.entries.len(), 2);
        assert_eq!(
            managed.position("b", ManagedFieldsOperation::Update, "status"),
            Some(1)
        );
        assert_eq!(managed.owners_of(&["spec".to_owned()]), ["a", "b"]);
        managed.prune_to(&obj);
        managed.write_to(&mut obj);
        assert_eq!(
            obj["metadata"]["managedFields"],
            json!([{"manager": "a", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:x": {}}}}])
        );
        ManagedFields::default().write_to(&mut obj);
        assert_eq!(obj["metadata"].get("managedFields"), None);
    }
}
