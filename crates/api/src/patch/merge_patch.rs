//! JSON merge patch (RFC 7386): a partial document where objects merge recursively, `null`
//! deletes a key and anything else (including arrays) replaces the target value.
//!
//! [`create_merge_patch`] computes the patch between two documents, e.g. for a CLI that wants
//! to send only what changed.

use serde_json::{Map, Value};

use crate::json::object_mut;

/// Applies a merge patch to a copy of `target` (RFC 7386 `MergePatch`). Never fails: every JSON
/// value is a valid merge patch.
///
/// ```
/// use serde_json::json;
/// use stead_api::patch::apply_merge_patch;
/// let target = json!({"spec": {"replicas": 1, "image": "a"}, "metadata": {"labels": {"x": "1"}}});
/// let patch = json!({"spec": {"replicas": 3}, "metadata": {"labels": {"x": null}}});
/// assert_eq!(apply_merge_patch(&target, &patch),
///            json!({"spec": {"replicas": 3, "image": "a"}, "metadata": {"labels": {}}}));
/// ```
pub fn apply_merge_patch(target: &Value, patch: &Value) -> Value {
    let mut out = target.clone();
    merge_into(&mut out, patch);
    out
}

/// Applies a merge patch in place.
pub fn merge_into(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    let map = object_mut(target);
    for (key, value) in fields {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_into(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The merge patch that turns `from` into `to`.
///
/// Merge patches cannot set a value to `null` inside an object (null means "delete"), so for
/// documents containing `null` values the result deletes those keys instead.
pub fn create_merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => Value::Object(diff_objects(a, b)),
        _ => to.clone(),
    }
}

fn diff_objects(a: &Map<String, Value>, b: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for key in a.keys() {
        if !b.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (key, new) in b {
        match a.get(key) {
            Some(old) if old == new => {}
            Some(Value::Object(old)) if new.is_object() => {
                if let Value::Object(new) = new {
                    patch.insert(key.clone(), Value::Object(diff_objects(old, new)));
                }
            }
            _ => {
                patch.insert(key.clone(), strip_nulls(new));
            }
        }
    }
    patch
}

/// Null values inside new objects would mean "delete" in a patch; they are dropped.
fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::json_patch::tests::arb_json;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn rfc7386_appendix_a_examples_behave_as_specified() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, want) in cases {
            assert_eq!(
                apply_merge_patch(&target, &patch),
                want,
                "{target} + {patch}"
            );
        }
    }

    #[test]
    fn created_patches_contain_only_the_changes() {
        let from = json!({"spec": {"replicas": 1, "image": "a"}, "status": {"x": 1}, "keep": [1]});
        let to =
            json!({"spec": {"replicas": 2, "image": "a"}, "keep": [1], "new": {"n": null, "m": 1}});
        let patch = create_merge_patch(&from, &to);
        assert_eq!(
            patch,
            json!({"spec": {"replicas": 2}, "status": null, "new": {"m": 1}})
        );
        assert_eq!(create_merge_patch(&from, &from), json!({}));
        assert_eq!(create_merge_patch(&json!(1), &json!([2])), json!([2]));
    }

    fn without_nulls_in_objects(value: &Value) -> bool {
        match value {
            Value::Object(map) => map
                .values()
                .all(|v| !v.is_null() && without_nulls_in_objects(v)),
            Value::Array(items) => items.iter().all(without_nulls_in_objects),
            _ => true,
        }
    }

    proptest! {
        #[test]
        fn applying_a_merge_patch_twice_is_the_same_as_once(target in arb_json(), patch in arb_json()) {
            let once = apply_merge_patch(&target, &patch);
            prop_assert_eq!(apply_merge_patch(&once, &patch), once);
        }

        #[test]
        fn a_created_merge_patch_turns_one_document_into_the_other(a in arb_json(), b in arb_json()) {
            prop_assume!(without_nulls_in_objects(&b));
            prop_assert_eq!(apply_merge_patch(&a, &create_merge_patch(&a, &b)), b);
        }
    }
}
