//! Strategic merge patch (`application/strategic-merge-patch+json`) for the built-in core
//! kinds, whose Go types kubectl knows and patches this way (`kubectl apply` on a Namespace).
//!
//! It is a JSON merge patch plus Kubernetes' directives and per-field list strategies:
//!
//! ```text
//!  {"metadata": {"labels": {"a": "c"},                       maps merge, null deletes
//!                "finalizers": ["x"],                        merge strategy: union
//!                "$setElementOrder/finalizers": ["x", "y"],  ordering hint: ignored
//!                "$deleteFromPrimitiveList/finalizers": ["z"]},
//!   "spec": {"$patch": "replace", ...},                      the map is replaced
//!   "status": {"$retainKeys": ["phase"], ...}}               other keys are dropped
//! ```
//!
//! Lists merge only where the Go type says `patchStrategy:"merge"`; [`ListStrategy`] names
//! them by path. Every other list is replaced, as in a JSON merge patch. Custom resources
//! have no Go types, so the server answers 415 for them, as Kubernetes does.

use serde_json::{Map, Value};

/// How a list at a path is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the live one.
    Replace,
    /// A list of scalars: the union, live order first.
    MergePrimitives,
    /// A list of objects merged by the value of this key.
    MergeByKey(&'static str),
}

/// The list strategies of `ObjectMeta`, shared by every kind.
pub fn object_meta_lists(path: &[&str]) -> ListStrategy {
    match path {
        ["metadata", "finalizers"] => ListStrategy::MergePrimitives,
        ["metadata", "ownerReferences"] => ListStrategy::MergeByKey("uid"),
        _ => ListStrategy::Replace,
    }
}

/// An invalid directive in a strategic merge patch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid strategic merge patch at {path}: {reason}")]
pub struct StrategicPatchError {
    /// Dotted path of the offending map.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// Applies a strategic merge patch to `target`, with list strategies given by `lists`.
pub fn apply_strategic_merge_patch(
    target: &Value,
    patch: &Value,
    lists: &dyn Fn(&[&str]) -> ListStrategy,
) -> Result<Value, StrategicPatchError> {
    let mut out = target.clone();
    let mut path = Vec::new();
    merge(&mut out, patch, lists, &mut path)?;
    Ok(out)
}

fn error(path: &[&str], reason: impl Into<String>) -> StrategicPatchError {
    StrategicPatchError {
        path: path.join("."),
        reason: reason.into(),
    }
}

fn merge<'a>(
    target: &mut Value,
    patch: &'a Value,
    lists: &dyn Fn(&[&str]) -> ListStrategy,
    path: &mut Vec<&'a str>,
) -> Result<(), StrategicPatchError> {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match fields.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = fields.clone();
            replaced.remove("$patch");
            *target = Value::Object(strip_directives(replaced));
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => return Err(error(path, format!("unknown $patch {other:?}"))),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        return Ok(());
    };
    for (key, value) in fields {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let Value::Array(remove) = value else {
                return Err(error(path, format!("{key} must be a list")));
            };
            if let Some(Value::Array(items)) = map.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            return Err(error(path, format!("unknown directive {key:?}")));
        }
        if value.is_null() {
            map.remove(key);
            continue;
        }
        path.push(key);
        let slot = map.entry(key.clone()).or_insert(Value::Null);
        match (value, lists(path)) {
            (Value::Array(items), ListStrategy::MergePrimitives) => {
                let mut merged = slot.as_array().cloned().unwrap_or_default();
                for item in items {
                    if !merged.contains(item) {
                        merged.push(item.clone());
                    }
                }
                *slot = Value::Array(merged);
            }
            (Value::Array(items), ListStrategy::MergeByKey(merge_key)) => {
                let mut merged = slot.as_array().cloned().unwrap_or_default();
                for item in items {
                    let id = item.get(merge_key);
                    let deleted = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match merged
                        .iter()
                        .position(|m| id.is_some() && m.get(merge_key) == id)
                    {
                        Some(i) if deleted => {
                            merged.remove(i);
                        }
                        Some(i) => merge(&mut merged[i], item, lists, path)?,
                        None if deleted => {}
                        None => merged.push(item.clone()),
                    }
                }
                *slot = Value::Array(merged);
            }
            _ => merge(slot, value, lists, path)?,
        }
        if slot.is_null() {
            map.remove(key);
        }
        path.pop();
    }
    if let Some(Value::Array(keep)) = fields.get("$retainKeys") {
        map.retain(|k, _| keep.iter().any(|kept| kept.as_str() == Some(k)));
    }
    Ok(())
}

fn strip_directives(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(target: Value, patch: Value) -> Result<Value, StrategicPatchError> {
        apply_strategic_merge_patch(&target, &patch, &object_meta_lists)
    }

    #[test]
    fn maps_merge_and_directives_steer_lists_and_keys() {
        let live = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"},
                                       "finalizers": ["f1", "f2"],
                                       "ownerReferences": [{"uid": "u1", "name": "o1"}]},
                          "spec": {"finalizers": ["kubernetes"], "other": 1}});
        let cases = [
            (
                json!({"metadata": {"labels": {"x": "9", "y": null}}}),
                json!({"name": "a", "labels": {"x": "9"}, "finalizers": ["f1", "f2"],
                       "ownerReferences": [{"uid": "u1", "name": "o1"}]}),
                json!({"finalizers": ["kubernetes"], "other": 1}),
            ),
            (
                json!({"metadata": {"finalizers": ["f3"], "$setElementOrder/finalizers": ["f1"],
                                    "$deleteFromPrimitiveList/finalizers": ["f1"],
                                    "ownerReferences": [{"uid": "u1", "name": "renamed"},
                                                        {"uid": "u2", "name": "o2"}]},
                       "spec": {"finalizers": []}}),
                json!({"name": "a", "labels": {"x": "1", "y": "2"}, "finalizers": ["f2", "f3"],
                       "ownerReferences": [{"uid": "u1", "name": "renamed"},
                                           {"uid": "u2", "name": "o2"}]}),
                json!({"finalizers": [], "other": 1}),
            ),
            (
                json!({"metadata": {"$retainKeys": ["name"], "ownerReferences":
                                    [{"uid": "u1", "$patch": "delete"}]},
                       "spec": {"$patch": "replace", "finalizers": ["a"]}}),
                json!({"name": "a"}),
                json!({"finalizers": ["a"]}),
            ),
        ];
        for (patch, metadata, spec) in cases {
            let out = apply(live.clone(), patch.clone()).unwrap_or_default();
            assert_eq!(out["metadata"], metadata, "{patch}");
            assert_eq!(out["spec"], spec, "{patch}");
        }
    }

    #[test]
    fn unknown_directives_are_errors() {
        assert!(apply(json!({}), json!({"spec": {"$patch": "merge-ish"}})).is_err());
        assert!(apply(json!({}), json!({"spec": {"$odd": 1}})).is_err());
    }
}
