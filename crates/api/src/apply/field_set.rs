//! [`FieldSet`]: a set of field paths, and its `fieldsV1` encoding in `managedFields`.
//!
//! A path is the list of map keys from the object root to a *leaf*: a scalar, a list, `null`
//! or an empty map. Non-empty maps are never members themselves — owning `spec.replicas` does
//! not mean owning `spec`. Lists are atomic: a list is one leaf, whoever sets it owns all of it
//! (Kubernetes can merge lists by key; stead does not, see the [`crate::apply`] docs).
//!
//! `fieldsV1` worked example — the set {`metadata.labels.app`, `spec.replicas`, `spec.args`}:
//!
//! ```text
//! {"f:metadata": {"f:labels": {"f:app": {}}},
//!  "f:spec": {"f:replicas": {}, "f:args": {}}}
//! ```
//!
//! A path that is a member *and* has members below it (a map that was empty when one manager
//! set it and got keys from another) carries `".": {}`, as in Kubernetes.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

/// A path of map keys from the object root.
pub type FieldPath = Vec<String>;

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    paths: BTreeSet<FieldPath>,
}

/// Which parts of an object a write may touch, and so which fields are tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldScope {
    /// The main resource: everything but `apiVersion`, `kind` and identity/system metadata;
    /// `status` too unless the kind has a status subresource.
    MainResource {
        /// Whether the kind has a `/status` subresource (then `status` is not tracked here).
        status_subresource: bool,
    },
    /// The `/status` subresource: only `status`.
    Status,
}

impl FieldScope {
    /// The `subresource` value of managedFields entries written in this scope.
    pub fn subresource(self) -> &'static str {
        match self {
            FieldScope::MainResource { .. } => "",
            FieldScope::Status => "status",
        }
    }

    /// Whether a top-level field is tracked in this scope.
    fn tracks_top(self, key: &str) -> bool {
        match self {
            FieldScope::Status => key == "status",
            FieldScope::MainResource { status_subresource } => match key {
                "apiVersion" | "kind" => false,
                "status" => !status_subresource,
                _ => true,
            },
        }
    }
}

/// `metadata` fields that field managers own; the rest is identity or server-maintained.
const TRACKED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        FieldSet::default()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Number of paths.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Adds a path.
    pub fn insert(&mut self, path: FieldPath) {
        self.paths.insert(path);
    }

    /// Removes a path.
    pub fn remove(&mut self, path: &[String]) -> bool {
        self.paths.remove(path)
    }

    /// Whether the exact path is a member.
    pub fn contains(&self, path: &[String]) -> bool {
        self.paths.contains(path)
    }

    /// The paths, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &FieldPath> {
        self.paths.iter()
    }

    /// Members equal to, above or below `path`.
    pub fn related<'a>(&'a self, path: &'a [String]) -> impl Iterator<Item = &'a FieldPath> {
        self.paths.iter().filter(move |p| are_related(p, path))
    }

    /// Keeps only the paths for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&FieldPath) -> bool) {
        self.paths.retain(keep);
    }

    /// The leaf paths of an object within a scope (see the module docs for what a leaf is).
    ///
    /// ```
    /// use stead_api::apply::{FieldScope, FieldSet};
    /// let obj = serde_json::json!({"apiVersion": "v1", "kind": "K",
    ///     "metadata": {"name": "a", "labels": {"app": "x"}},
    ///     "spec": {"replicas": 1, "args": ["a"], "empty": {}}, "status": {"ready": true}});
    /// let set = FieldSet::leaves_of(&obj, FieldScope::MainResource { status_subresource: true });
    /// let paths: Vec<String> = set.iter().map(|p| p.join(".")).collect();
    /// assert_eq!(paths, ["metadata.labels.app", "spec.args", "spec.empty", "spec.replicas"]);
    /// ```
    pub fn leaves_of(object: &Value, scope: FieldScope) -> Self {
        let mut set = FieldSet::new();
        let Value::Object(fields) = object else {
            return set;
        };
        for (key, value) in fields {
            if !scope.tracks_top(key) {
                continue;
            }
            if key == "metadata" {
                if let Value::Object(meta) = value {
                    for (mkey, mvalue) in meta
                        .iter()
                        .filter(|(k, _)| TRACKED_METADATA.contains(&k.as_str()))
                    {
                        collect_leaves(mvalue, vec![key.clone(), mkey.clone()], &mut set);
                    }
                }
                continue;
            }
            collect_leaves(value, vec![key.clone()], &mut set);
        }
        set
    }

    /// Decodes `fieldsV1`. Keys other than `f:` (`k:`, `v:`, `i:` from Kubernetes' keyed
    /// lists) make their parent an atomic member, matching stead's atomic lists.
    pub fn from_fields_v1(fields: &Value) -> Self {
        let mut set = FieldSet::new();
        decode(fields, &mut Vec::new(), &mut set);
        set
    }

    /// Encodes as `fieldsV1`.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Map::new();
        for path in &self.paths {
            let mut node = &mut root;
            for segment in path {
                node = crate::json::child_object_mut(node, &format!("f:{segment}"));
            }
        }
        // A member that also has members below it carries "." (its own node is not empty).
        for path in &self.paths {
            let mut node = &mut root;
            for segment in path {
                node = crate::json::child_object_mut(node, &format!("f:{segment}"));
            }
            if node.keys().any(|k| k != ".") {
                node.insert(".".to_owned(), Value::Object(Map::new()));
            }
        }
        Value::Object(root)
    }
}

fn collect_leaves(value: &Value, path: FieldPath, set: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let mut child_path = path.clone();
                child_path.push(key.clone());
                collect_leaves(child, child_path, set);
            }
        }
        _ => set.insert(path),
    }
}

fn decode(node: &Value, path: &mut FieldPath, set: &mut FieldSet) {
    let Value::Object(map) = node else { return };
    if map.is_empty() && !path.is_empty() {
        set.insert(path.clone());
        return;
    }
    for (key, child) in map {
        if key == "." {
            set.insert(path.clone());
        } else if let Some(name) = key.strip_prefix("f:") {
            path.push(name.to_owned());
            decode(child, path, set);
            path.pop();
        } else if !path.is_empty() {
            set.insert(path.clone());
        }
    }
}

/// Whether one path is equal to, a prefix of, or an extension of the other.
pub(crate) fn are_related(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The value at a path of map keys, if every step is an object that has the key.
pub(crate) fn value_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |node, key| node.as_object()?.get(key))
}

/// Sets the value at a path, creating (or replacing non-object) intermediate maps.
pub(crate) fn set_at(value: &mut Value, path: &[String], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        *value = new;
        return;
    };
    let mut node = crate::json::object_mut(value);
    for key in parents {
        node = crate::json::child_object_mut(node, key);
    }
    node.insert(last.clone(), new);
}

/// Removes the value at a path; returns whether something was removed.
pub(crate) fn remove_at(value: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for key in parents {
        match node.as_object_mut().and_then(|m| m.get_mut(key)) {
            Some(child) => node = child,
            None => return false,
        }
    }
    node.as_object_mut()
        .is_some_and(|m| m.remove(last).is_some())
}

/// Renders a path as Kubernetes prints field paths: `.spec.replicas`.
pub(crate) struct DisplayPath<'a>(pub(crate) &'a [String]);

impl fmt::Display for DisplayPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in self.0 {
            write!(f, ".{segment}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(text: &str) -> FieldPath {
        text.split('.').map(str::to_owned).collect()
    }

    fn set(paths: &[&str]) -> FieldSet {
        let mut s = FieldSet::new();
        for path in paths {
            s.insert(p(path));
        }
        s
    }

    #[test]
    fn leaves_depend_on_the_scope() {
        let obj = json!({"apiVersion": "v1", "kind": "K",
            "metadata": {"name": "a", "namespace": "n", "uid": "u", "annotations": {"x": "1"},
                         "finalizers": ["f"], "managedFields": [{}]},
            "spec": {"a": {"b": null}}, "status": {"s": 1}});
        let names = |scope| -> Vec<String> {
            FieldSet::leaves_of(&obj, scope)
                .iter()
                .map(|p| p.join("."))
                .collect()
        };
        assert_eq!(
            names(FieldScope::MainResource {
                status_subresource: true
            }),
            ["metadata.annotations.x", "metadata.finalizers", "spec.a.b"]
        );
        assert_eq!(
            names(FieldScope::MainResource {
                status_subresource: false
            }),
            [
                "metadata.annotations.x",
                "metadata.finalizers",
                "spec.a.b",
                "status.s"
            ]
        );
        assert_eq!(names(FieldScope::Status), ["status.s"]);
    }

    #[test]
    fn fields_v1_round_trips_including_dot_members() {
        let cases = [
            (
                set(&["spec.replicas", "metadata.labels.app"]),
                json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}}),
            ),
            (
                set(&["spec.template", "spec.template.x"]),
                json!({"f:spec": {"f:template": {".": {}, "f:x": {}}}}),
            ),
            (FieldSet::new(), json!({})),
        ];
        for (fields, encoded) in cases {
            assert_eq!(fields.to_fields_v1(), encoded);
            assert_eq!(FieldSet::from_fields_v1(&encoded), fields);
        }
    }

    #[test]
    fn kubernetes_keyed_list_entries_decode_as_an_atomic_list() {
        let encoded = json!({"f:spec": {"f:containers": {
            "k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}, "f:replicas": {}}});
        assert_eq!(
            FieldSet::from_fields_v1(&encoded),
            set(&["spec.containers", "spec.replicas"])
        );
    }

    #[test]
    fn path_helpers_read_write_and_relate_paths() {
        let mut v = json!({"a": {"b": 1}});
        assert_eq!(value_at(&v, &p("a.b")), Some(&json!(1)));
        assert_eq!(value_at(&v, &p("a.b.c")), None);
        set_at(&mut v, &p("a.c.d"), json!(2));
        set_at(&mut v, &p("a.b.x"), json!(3));
        assert_eq!(v, json!({"a": {"b": {"x": 3}, "c": {"d": 2}}}));
        assert!(remove_at(&mut v, &p("a.c.d")) && !remove_at(&mut v, &p("a.zz")));
        assert_eq!(v, json!({"a": {"b": {"x": 3}, "c": {}}}));
        assert!(are_related(&p("a.b"), &p("a")) && are_related(&p("a"), &p("a.b")));
        assert!(!are_related(&p("a.b"), &p("a.c")));
        assert_eq!(
            DisplayPath(&p("spec.replicas")).to_string(),
            ".spec.replicas"
        );
        let s = set(&["a.b", "a.c", "d"]);
        assert_eq!(s.related(&p("a")).count(), 2);
    }
}
