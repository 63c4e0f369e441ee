//! JSON patch (RFC 6902): `add`, `remove`, `replace`, `move`, `copy` and `test`, applied
//! atomically (all operations or none), with errors that name the failing operation.
//!
//! [`diff`] produces a patch that turns one document into another (used by property tests and
//! by clients that want a minimal update).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::pointer::{JsonPointer, PointerError, escape_token, parse_index};
use crate::json::type_name;

/// A JSON patch could not be parsed or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPatchError {
    /// The patch document is not an array of operation objects.
    #[error("json patch must be a JSON array of operations, got {found}")]
    NotAnArray {
        /// JSON type found instead.
        found: &'static str,
    },
    /// An operation is malformed (unknown `op`, missing `path`/`from`/`value`, bad pointer).
    #[error("json patch operation {index} is invalid: {reason}")]
    InvalidOperation {
        /// Position of the operation in the patch (0-based).
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An operation could not be applied; the document is unchanged.
    #[error("json patch operation {index} ({op} {path}) failed: {reason}")]
    OperationFailed {
        /// Position of the operation in the patch (0-based).
        index: usize,
        /// `add`, `remove`, `replace`, `move`, `copy` or `test`.
        op: &'static str,
        /// The operation's `path`.
        path: String,
        /// Why it failed.
        reason: String,
    },
}

/// One JSON patch operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOperation {
    /// Insert or set a value (`-` appends to an array).
    Add {
        /// Target location.
        path: String,
        /// Value to add.
        value: Value,
    },
    /// Delete the value at `path`.
    Remove {
        /// Target location.
        path: String,
    },
    /// Overwrite the existing value at `path`.
    Replace {
        /// Target location.
        path: String,
        /// New value.
        value: Value,
    },
    /// Remove the value at `from` and add it at `path`.
    Move {
        /// Source location.
        from: String,
        /// Target location.
        path: String,
    },
    /// Add a copy of the value at `from` at `path`.
    Copy {
        /// Source location.
        from: String,
        /// Target location.
        path: String,
    },
    /// Fail unless the value at `path` equals `value`.
    Test {
        /// Location to check.
        path: String,
        /// Expected value.
        value: Value,
    },
}

impl PatchOperation {
    /// The operation's name.
    pub fn op(&self) -> &'static str {
        match self {
            PatchOperation::Add { .. } => "add",
            PatchOperation::Remove { .. } => "remove",
            PatchOperation::Replace { .. } => "replace",
            PatchOperation::Move { .. } => "move",
            PatchOperation::Copy { .. } => "copy",
            PatchOperation::Test { .. } => "test",
        }
    }

    /// The operation's target `path`.
    pub fn path(&self) -> &str {
        match self {
            PatchOperation::Add { path, .. }
            | PatchOperation::Remove { path }
            | PatchOperation::Replace { path, .. }
            | PatchOperation::Move { path, .. }
            | PatchOperation::Copy { path, .. }
            | PatchOperation::Test { path, .. } => path,
        }
    }
}

impl fmt::Display for PatchOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op(), self.path())
    }
}

/// Parses a JSON patch document, reporting the first malformed operation by index.
pub fn parse_json_patch(patch: &Value) -> Result<Vec<PatchOperation>, JsonPatchError> {
    let Value::Array(ops) = patch else {
        return Err(JsonPatchError::NotAnArray {
            found: type_name(patch),
        });
    };
    ops.iter()
        .enumerate()
        .map(|(index, op)| parse_operation(index, op))
        .collect()
}

fn parse_operation(index: usize, op: &Value) -> Result<PatchOperation, JsonPatchError> {
    let invalid = |reason: String| JsonPatchError::InvalidOperation { index, reason };
    let Value::Object(fields) = op else {
        return Err(invalid(format!("must be an object, got {}", type_name(op))));
    };
    let string = |key: &str| -> Result<String, JsonPatchError> {
        match fields.get(key) {
            Some(Value::String(s)) => {
                JsonPointer::parse(s).map_err(|e: PointerError| invalid(format!("{key}: {e}")))?;
                Ok(s.clone())
            }
            Some(other) => Err(invalid(format!(
                "{key:?} must be a string, got {}",
                type_name(other)
            ))),
            None => Err(invalid(format!("missing {key:?}"))),
        }
    };
    let value = || {
        fields
            .get("value")
            .cloned()
            .ok_or_else(|| invalid("missing \"value\"".to_owned()))
    };
    let name = match fields.get("op") {
        Some(Value::String(name)) => name.as_str(),
        Some(other) => {
            return Err(invalid(format!(
                "\"op\" must be a string, got {}",
                type_name(other)
            )));
        }
        None => return Err(invalid("missing \"op\"".to_owned())),
    };
    Ok(match name {
        "add" => PatchOperation::Add {
            path: string("path")?,
            value: value()?,
        },
        "remove" => PatchOperation::Remove {
            path: string("path")?,
        },
        "replace" => PatchOperation::Replace {
            path: string("path")?,
            value: value()?,
        },
        "move" => PatchOperation::Move {
            from: string("from")?,
            path: string("path")?,
        },
        "copy" => PatchOperation::Copy {
            from: string("from")?,
            path: string("path")?,
        },
        "test" => PatchOperation::Test {
            path: string("path")?,
            value: value()?,
        },
        other => {
            return Err(invalid(format!(
                "unknown op {other:?}: expected add, remove, replace, move, copy or test"
            )));
        }
    })
}

/// Applies a patch to a copy of `target`; on any failure the error names the operation and
/// `target` is untouched.
///
/// ```
/// use serde_json::json;
/// use stead_api::patch::{apply_json_patch, parse_json_patch};
/// let patch = parse_json_patch(&json!([
///     {"op": "test", "path": "/spec/replicas", "value": 1},
///     {"op": "replace", "path": "/spec/replicas", "value": 3}
/// ])).unwrap();
/// let out = apply_json_patch(&json!({"spec": {"replicas": 1}}), &patch).unwrap();
/// assert_eq!(out, json!({"spec": {"replicas": 3}}));
/// ```
pub fn apply_json_patch(target: &Value, patch: &[PatchOperation]) -> Result<Value, JsonPatchError> {
    let mut doc = target.clone();
    for (index, op) in patch.iter().enumerate() {
        apply_one(&mut doc, op).map_err(|reason| JsonPatchError::OperationFailed {
            index,
            op: op.op(),
            path: op.path().to_owned(),
            reason,
        })?;
    }
    Ok(doc)
}

fn pointer(text: &str) -> Result<JsonPointer, String> {
    JsonPointer::parse(text).map_err(|e| e.to_string())
}

fn apply_one(doc: &mut Value, op: &PatchOperation) -> Result<(), String> {
    match op {
        PatchOperation::Add { path, value } => add(doc, &pointer(path)?, value.clone()),
        PatchOperation::Remove { path } => remove(doc, &pointer(path)?).map(drop),
        PatchOperation::Replace { path, value } => {
            let slot = get_mut(doc, &pointer(path)?)?;
            *slot = value.clone();
            Ok(())
        }
        PatchOperation::Move { from, path } => {
            let (from, to) = (pointer(from)?, pointer(path)?);
            if from == to {
                return get_mut(doc, &from).map(drop);
            }
            if from.is_proper_prefix_of(&to) {
                return Err(format!("cannot move {from} into one of its own children"));
            }
            let value = remove(doc, &from)?;
            add(doc, &to, value)
        }
        PatchOperation::Copy { from, path } => {
            let value = get_mut(doc, &pointer(from)?)
                .map_err(|e| format!("from: {e}"))?
                .clone();
            add(doc, &pointer(path)?, value)
        }
        PatchOperation::Test { path, value } => {
            let actual = get_mut(doc, &pointer(path)?)?;
            if json_equal(actual, value) {
                Ok(())
            } else {
                Err(format!("test failed: value is {actual}, expected {value}"))
            }
        }
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`), as RFC 6902 requires.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn get_mut<'a>(doc: &'a mut Value, ptr: &JsonPointer) -> Result<&'a mut Value, String> {
    let mut node = doc;
    for (depth, token) in ptr.tokens().iter().enumerate() {
        let missing = || {
            format!(
                "path {} does not exist",
                JsonPointer::from_tokens(ptr.tokens()[..=depth].to_vec())
            )
        };
        node = match node {
            Value::Object(map) => map.get_mut(token).ok_or_else(missing)?,
            Value::Array(list) => {
                let i =
                    parse_index(token).ok_or_else(|| format!("{token:?} is not an array index"))?;
                list.get_mut(i).ok_or_else(missing)?
            }
            other => {
                return Err(format!(
                    "cannot index into a {} with {token:?}",
                    type_name(other)
                ));
            }
        };
    }
    Ok(node)
}

fn add(doc: &mut Value, ptr: &JsonPointer, value: Value) -> Result<(), String> {
    let Some((parent, last)) = ptr.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, &parent).map_err(|e| format!("parent {e}"))? {
        Value::Object(map) => {
            map.insert(last.to_owned(), value);
            Ok(())
        }
        Value::Array(list) => {
            let i = if last == "-" {
                list.len()
            } else {
                parse_index(last).ok_or_else(|| format!("{last:?} is not an array index"))?
            };
            if i > list.len() {
                return Err(format!(
                    "index {i} is out of bounds (array length {})",
                    list.len()
                ));
            }
            list.insert(i, value);
            Ok(())
        }
        other => Err(format!("cannot add to a {}", type_name(other))),
    }
}

fn remove(doc: &mut Value, ptr: &JsonPointer) -> Result<Value, String> {
    let (parent, last) = ptr
        .split_last()
        .ok_or_else(|| "cannot remove the whole document".to_owned())?;
    match get_mut(doc, &parent)? {
        Value::Object(map) => map
            .remove(last)
            .ok_or_else(|| format!("path {ptr} does not exist")),
        Value::Array(list) => {
            let i = parse_index(last).ok_or_else(|| format!("{last:?} is not an array index"))?;
            if i >= list.len() {
                return Err(format!("path {ptr} does not exist"));
            }
            Ok(list.remove(i))
        }
        other => Err(format!("cannot remove from a {}", type_name(other))),
    }
}

/// A patch that turns `from` into `to`: objects are diffed key by key, anything else that
/// differs is replaced whole.
pub fn diff(from: &Value, to: &Value) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    diff_into(from, to, "", &mut ops);
    ops
}

fn diff_into(from: &Value, to: &Value, path: &str, ops: &mut Vec<PatchOperation>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => diff_objects(a, b, path, ops),
        _ if from == to => {}
        _ => ops.push(PatchOperation::Replace {
            path: path.to_owned(),
            value: to.clone(),
        }),
    }
}

fn diff_objects(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    path: &str,
    ops: &mut Vec<PatchOperation>,
) {
    for (key, old) in a {
        let child = format!("{path}/{}", escape_token(key));
        match b.get(key) {
            None => ops.push(PatchOperation::Remove { path: child }),
            Some(new) => diff_into(old, new, &child, ops),
        }
    }
    for (key, new) in b {
        if !a.contains_key(key) {
            ops.push(PatchOperation::Add {
                path: format!("{path}/{}", escape_token(key)),
                value: new.clone(),
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn run(doc: Value, patch: Value) -> Result<Value, JsonPatchError> {
        apply_json_patch(&doc, &parse_json_patch(&patch)?)
    }

    #[test]
    fn rfc6902_appendix_a_examples_behave_as_specified() {
        let ok_cases = [
            (
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux"}]),
                json!({"baz": "qux", "foo": "bar"}),
            ),
            (
                json!({"foo": ["bar", "baz"]}),
                json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
                json!({"foo": ["bar", "qux", "baz"]}),
            ),
            (
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "remove", "path": "/baz"}]),
                json!({"foo": "bar"}),
            ),
            (
                json!({"foo": ["bar", "qux", "baz"]}),
                json!([{"op": "remove", "path": "/foo/1"}]),
                json!({"foo": ["bar", "baz"]}),
            ),
            (
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
                json!({"baz": "boo", "foo": "bar"}),
            ),
            (
                json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
                json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
                json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
            ),
            (
                json!({"foo": ["all", "grass", "cows", "eat"]}),
                json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
                json!({"foo": ["all", "cows", "eat", "grass"]}),
            ),
            (
                json!({"baz": "qux", "foo": ["a", 2, "c"]}),
                json!([{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}]),
                json!({"baz": "qux", "foo": ["a", 2, "c"]}),
            ),
            (
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
                json!({"foo": "bar", "child": {"grandchild": {}}}),
            ),
            (
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]),
                json!({"foo": "bar", "baz": "qux"}),
            ),
            (
                json!({"/": 9, "~1": 10}),
                json!([{"op": "test", "path": "/~01", "value": 10}]),
                json!({"/": 9, "~1": 10}),
            ),
            (
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
                json!({"foo": ["bar", ["abc", "def"]]}),
            ),
            (
                json!({"a": {"b": 1}}),
                json!([{"op": "copy", "from": "/a", "path": "/c"}]),
                json!({"a": {"b": 1}, "c": {"b": 1}}),
            ),
            (
                json!({"a": 1}),
                json!([{"op": "replace", "path": "", "value": [1]}]),
                json!([1]),
            ),
            (
                json!({"a": 1.0}),
                json!([{"op": "test", "path": "/a", "value": 1}]),
                json!({"a": 1.0}),
            ),
            (
                json!({"a": 1}),
                json!([{"op": "move", "from": "/a", "path": "/a"}]),
                json!({"a": 1}),
            ),
        ];
        for (doc, patch, want) in ok_cases {
            assert_eq!(run(doc, patch.clone()), Ok(want), "{patch}");
        }
    }

    #[test]
    fn failing_operations_name_the_op_path_and_reason() {
        let cases = [
            (
                json!({"baz": "qux"}),
                json!([{"op": "test", "path": "/baz", "value": "bar"}]),
                "json patch operation 0 (test /baz) failed: test failed: value is \"qux\", expected \"bar\"",
            ),
            (
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
                "json patch operation 0 (add /baz/bat) failed: parent path /baz does not exist",
            ),
            (
                json!({"/": 9, "~1": 10}),
                json!([{"op": "test", "path": "/~01", "value": "10"}]),
                "json patch operation 0 (test /~01) failed: test failed: value is 10, expected \"10\"",
            ),
            (
                json!({"a": 1}),
                json!([{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/c"}]),
                "json patch operation 1 (remove /c) failed: path /c does not exist",
            ),
            (
                json!({"a": [1]}),
                json!([{"op": "replace", "path": "/a/1", "value": 2}]),
                "json patch operation 0 (replace /a/1) failed: path /a/1 does not exist",
            ),
            (
                json!({"a": [1]}),
                json!([{"op": "add", "path": "/a/5", "value": 2}]),
                "json patch operation 0 (add /a/5) failed: index 5 is out of bounds (array length 1)",
            ),
            (
                json!({"a": [1]}),
                json!([{"op": "add", "path": "/a/01", "value": 2}]),
                "json patch operation 0 (add /a/01) failed: \"01\" is not an array index",
            ),
            (
                json!({"a": {"b": 1}}),
                json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]),
                "json patch operation 0 (move /a/b/c) failed: cannot move /a into one of its own children",
            ),
            (
                json!({"a": 1}),
                json!([{"op": "copy", "from": "/x", "path": "/y"}]),
                "json patch operation 0 (copy /y) failed: from: path /x does not exist",
            ),
            (
                json!({"a": "s"}),
                json!([{"op": "replace", "path": "/a/b", "value": 1}]),
                "json patch operation 0 (replace /a/b) failed: cannot index into a string with \"b\"",
            ),
            (
                json!({"a": 1}),
                json!([{"op": "remove", "path": ""}]),
                "json patch operation 0 (remove ) failed: cannot remove the whole document",
            ),
        ];
        for (doc, patch, want) in cases {
            let err = run(doc, patch.clone()).map_err(|e| e.to_string());
            assert_eq!(err, Err(want.to_owned()), "{patch}");
        }
    }

    #[test]
    fn malformed_patch_documents_are_rejected_before_anything_is_applied() {
        let cases = [
            (
                json!({"op": "add"}),
                "json patch must be a JSON array of operations, got object",
            ),
            (
                json!([1]),
                "json patch operation 0 is invalid: must be an object, got integer",
            ),
            (
                json!([{"path": "/a"}]),
                "json patch operation 0 is invalid: missing \"op\"",
            ),
            (
                json!([{"op": "merge", "path": "/a"}]),
                "json patch operation 0 is invalid: unknown op \"merge\": expected add, remove, replace, move, copy or test",
            ),
            (
                json!([{"op": "add", "path": "/a"}]),
                "json patch operation 0 is invalid: missing \"value\"",
            ),
            (
                json!([{"op": "remove", "path": "/a"}, {"op": "move", "path": "/b"}]),
                "json patch operation 1 is invalid: missing \"from\"",
            ),
            (
                json!([{"op": "remove", "path": "a"}]),
                "json patch operation 0 is invalid: path: invalid JSON pointer \"a\": must be empty or start with '/'",
            ),
            (
                json!([{"op": "remove", "path": 3}]),
                "json patch operation 0 is invalid: \"path\" must be a string, got integer",
            ),
        ];
        for (patch, want) in cases {
            assert_eq!(
                parse_json_patch(&patch).map_err(|e| e.to_string()),
                Err(want.to_owned()),
                "{patch}"
            );
        }
        let add_null = parse_json_patch(&json!([{"op": "add", "path": "/a", "value": null}]));
        assert!(add_null.is_ok(), "a null value is a value");
    }

    #[test]
    fn operations_serialize_in_rfc_form() {
        let op = PatchOperation::Move {
            from: "/a".into(),
            path: "/b".into(),
        };
        assert_eq!(
            serde_json::to_value(&op).ok(),
            Some(json!({"op": "move", "from": "/a", "path": "/b"}))
        );
        assert_eq!(op.to_string(), "move /b");
    }

    /// Arbitrary JSON with keys that need pointer escaping.
    pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-5i64..5).prop_map(Value::from),
            "[a-c~/]{0,3}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[ab~/]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn applying_the_diff_of_two_documents_turns_one_into_the_other(a in arb_json(), b in arb_json()) {
            let patch = diff(&a, &b);
            prop_assert_eq!(apply_json_patch(&a, &patch), Ok(b));
        }

        #[test]
        fn a_diff_survives_serialization_as_a_patch_document(a in arb_json(), b in arb_json()) {
            let doc = serde_json::to_value(diff(&a, &b)).unwrap_or_default();
            let parsed = parse_json_patch(&doc);
            prop_assert!(parsed.is_ok());
            prop_assert_eq!(apply_json_patch(&a, &parsed.unwrap_or_default()), Ok(b));
        }

        #[test]
        fn a_patch_whose_last_operation_fails_is_an_error_whatever_came_before(a in arb_json()) {
            let patch = vec![
                PatchOperation::Add { path: "/zz~1new".into(), value: json!(1) },
                PatchOperation::Test { path: "/definitely/missing".into(), value: Value::Null },
            ];
            prop_assert!(apply_json_patch(&a, &patch).is_err());
        }
    }
}
