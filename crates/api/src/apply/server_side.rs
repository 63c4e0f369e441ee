//! Server-side apply ([`server_side_apply`]) and ownership tracking for ordinary writes
//! ([`track_update`]).
//!
//! ```text
//!  applied config ──leaves──► A (fields this manager now wants)
//!  live object ──managedFields──► previous A of this manager, other managers' sets
//!
//!  new = live
//!      − (previous A − A)        fields no longer applied, unless someone else owns them
//!      + values of A             (null in the config means "absent")
//!  conflict = a field of another manager, related to A, whose value would change
//!  force    = take those fields over instead of failing
//! ```
//!
//! Kubernetes' rules are followed for maps and scalars. Lists are atomic (one leaf): applying a
//! list replaces it whole and the applier owns all of it; Kubernetes' keyed merge of
//! `x-kubernetes-list-type: map` lists is not implemented. Two more simplifications: a field set
//! to `null` in the applied config is removed and owned by nobody, and entries of the same
//! manager name (e.g. its own `Update` entry) never conflict with its apply.

use serde_json::Value;

use super::field_set::{FieldPath, FieldScope, FieldSet, are_related, remove_at, set_at, value_at};
use super::managed_fields::{Conflict, ConflictMessage, ManagedFields};
use crate::meta::{ManagedFieldsOperation, Timestamp};
use crate::patch::json_equal;

/// A server-side apply or update could not be tracked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// No field manager was named.
    #[error("fieldManager is required for {operation} requests")]
    MissingManager {
        /// `apply` or `update`.
        operation: &'static str,
    },
    /// The applied configuration is not a JSON object.
    #[error("an applied configuration must be an object")]
    NotAnObject,
    /// Fields owned by other managers would change; retry with `force` to take them over.
    #[error("{}", ConflictMessage(.conflicts))]
    Conflicts {
        /// Every conflicting (manager, field), grouped by manager.
        conflicts: Vec<Conflict>,
    },
}

/// Who applies, and how.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions<'a> {
    /// The field manager (`fieldManager` query parameter), e.g. `kubectl`.
    pub manager: &'a str,
    /// Take over conflicting fields instead of failing (`force=true`).
    pub force: bool,
    /// Main resource or `/status`.
    pub scope: FieldScope,
    /// The time recorded in the manager's entry when it changes.
    pub now: Timestamp,
}

/// Applies a (partial) configuration as `opts.manager` and returns the new object, with
/// `metadata.managedFields` updated. `live` is `None` when the object does not exist yet.
///
/// Applying the same configuration twice returns the live object unchanged (same
/// managedFields, same time), so the server can detect the no-op and write nothing.
///
/// ```
/// use serde_json::json;
/// use stead_api::Timestamp;
/// use stead_api::apply::{ApplyOptions, FieldScope, server_side_apply};
/// let opts = |manager| ApplyOptions {
///     manager, force: false, now: Timestamp::UNIX_EPOCH,
///     scope: FieldScope::MainResource { status_subresource: true },
/// };
/// let config = json!({"apiVersion": "x.io/v1", "kind": "K", "metadata": {"name": "a"},
///                     "spec": {"replicas": 1}});
/// let live = server_side_apply(None, &config, &opts("alice")).unwrap();
/// let mut other = config.clone();
/// other["spec"]["replicas"] = json!(2);
/// let err = server_side_apply(Some(&live), &other, &opts("bob")).unwrap_err();
/// assert_eq!(err.to_string(),
///            "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas");
/// ```
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    opts: &ApplyOptions<'_>,
) -> Result<Value, ApplyError> {
    if opts.manager.is_empty() {
        return Err(ApplyError::MissingManager { operation: "apply" });
    }
    if !applied.is_object() {
        return Err(ApplyError::NotAnObject);
    }
    let subresource = opts.scope.subresource();
    let mut managed = live.map(ManagedFields::of).unwrap_or_default();
    let me = managed.position(opts.manager, ManagedFieldsOperation::Apply, subresource);
    let previous = me
        .map(|i| managed.entries[i].fields.clone())
        .unwrap_or_default();

    let mut wanted = FieldSet::new();
    let mut nulls: Vec<FieldPath> = Vec::new();
    for path in FieldSet::leaves_of(applied, opts.scope).iter() {
        if value_at(applied, path).is_some_and(Value::is_null) {
            nulls.push(path.clone());
        } else {
            wanted.insert(path.clone());
        }
    }

    let base = live.cloned().unwrap_or_else(|| skeleton(applied));
    let mut new = base.clone();
    let others_own = |path: &FieldPath| {
        managed
            .entries
            .iter()
            .enumerate()
            .any(|(i, m)| Some(i) != me && m.fields.related(path).next().is_some())
    };
    for dropped in previous.iter().filter(|p| !wanted.contains(p)) {
        if !others_own(dropped) {
            remove_at(&mut new, dropped);
        }
    }
    for path in &nulls {
        remove_at(&mut new, path);
    }
    for path in wanted.iter() {
        let value = value_at(applied, path).cloned().unwrap_or(Value::Null);
        let is_empty_map = value.as_object().is_some_and(serde_json::Map::is_empty);
        if is_empty_map && value_at(&new, path).is_some_and(Value::is_object) {
            continue; // Owning an empty map keeps whatever others put in it.
        }
        set_at(&mut new, path, value);
    }

    // Conflicts: another manager's field, related to what this apply touches, whose value
    // changes. Equal values become shared ownership.
    let touched: Vec<&FieldPath> = wanted.iter().chain(nulls.iter()).collect();
    let mut conflicts = Vec::new();
    let mut taken: Vec<(usize, FieldPath)> = Vec::new();
    for (i, m) in managed.entries.iter().enumerate() {
        if Some(i) == me || m.entry.manager == opts.manager {
            continue;
        }
        for owned in m.fields.iter() {
            let is_touched = touched.iter().any(|t| are_related(t, owned));
            if !is_touched || same_value(value_at(&base, owned), value_at(&new, owned)) {
                continue;
            }
            conflicts.push(m.conflict(owned));
            taken.push((i, owned.clone()));
        }
    }
    if !conflicts.is_empty() && !opts.force {
        return Err(ApplyError::Conflicts { conflicts });
    }
    for (i, path) in taken {
        managed.entries[i].fields.remove(&path);
    }
    // The same manager's other entries give up what it now applies.
    for (i, m) in managed.entries.iter_mut().enumerate() {
        if Some(i) != me && m.entry.manager == opts.manager {
            m.fields
                .retain(|p| !wanted.iter().any(|w| are_related(w, p)));
        }
    }

    let changed = !json_equal(&strip_managed(&base), &strip_managed(&new)) || previous != wanted;
    let entry = managed.entry_mut(opts.manager, ManagedFieldsOperation::Apply, subresource);
    entry.fields = wanted;
    let api_version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if changed || entry.entry.time.is_none() || entry.entry.api_version != api_version {
        entry.entry.time = Some(opts.now.truncated_to_seconds());
        entry.entry.api_version = api_version.to_owned();
    }
    managed.prune_to(&new);
    managed.write_to(&mut new);
    Ok(new)
}

/// What a new object starts from: identity fields of the applied configuration.
fn skeleton(applied: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["apiVersion", "kind"] {
        if let Some(v) = applied.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    let mut meta = serde_json::Map::new();
    for key in ["name", "generateName", "namespace"] {
        if let Some(v) = applied.pointer(&format!("/metadata/{key}")) {
            meta.insert(key.to_owned(), v.clone());
        }
    }
    out.insert("metadata".to_owned(), Value::Object(meta));
    Value::Object(out)
}

fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => json_equal(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn strip_managed(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    copy
}

/// Who writes, for [`track_update`].
#[derive(Debug, Clone, Copy)]
pub struct UpdateOptions<'a> {
    /// The field manager, e.g. `kubectl-edit` or a controller's name.
    pub manager: &'a str,
    /// Main resource or `/status`.
    pub scope: FieldScope,
    /// The time recorded in the manager's entry when it changes.
    pub now: Timestamp,
}

/// Records ownership for a create, update, merge patch or JSON patch: fields whose value
/// changed now belong to `opts.manager` (an `Update` entry) and are taken from every other
/// manager without conflict; fields that disappeared are owned by nobody. `live` is `None`
/// for a create. The result is written into `updated`'s `metadata.managedFields`.
///
/// If the caller sent `managedFields` different from the live ones, they are taken as given
/// (that is how clients reset ownership); a single empty entry (`[{}]`) clears them.
pub fn track_update(
    live: Option<&Value>,
    updated: &mut Value,
    opts: &UpdateOptions<'_>,
) -> Result<(), ApplyError> {
    if opts.manager.is_empty() {
        return Err(ApplyError::MissingManager {
            operation: "update",
        });
    }
    let sent = updated.pointer("/metadata/managedFields").cloned();
    let stored = live
        .and_then(|l| l.pointer("/metadata/managedFields"))
        .cloned();
    let mut managed = match &sent {
        Some(Value::Array(list)) if list.len() == 1 && list[0] == serde_json::json!({}) => {
            ManagedFields::default()
        }
        Some(_) if sent != stored => ManagedFields::of(updated),
        _ => live.map(ManagedFields::of).unwrap_or_default(),
    };
    let empty = Value::Object(serde_json::Map::new());
    let old = live.unwrap_or(&empty);
    let changed: Vec<FieldPath> = FieldSet::leaves_of(updated, opts.scope)
        .iter()
        .filter(|p| !same_value(value_at(old, p), value_at(updated, p)))
        .cloned()
        .collect();
    if !changed.is_empty() {
        let subresource = opts.scope.subresource();
        let me = managed.position(opts.manager, ManagedFieldsOperation::Update, subresource);
        for path in &changed {
            managed.disown(path, me);
        }
        let api_version = updated
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let entry = managed.entry_mut(opts.manager, ManagedFieldsOperation::Update, subresource);
        for path in changed {
            entry.fields.retain(|p| !are_related(p, &path));
            entry.fields.insert(path);
        }
        entry.entry.time = Some(opts.now.truncated_to_seconds());
        entry.entry.api_version = api_version;
    }
    managed.prune_to(updated);
    managed.write_to(updated);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAIN: FieldScope = FieldScope::MainResource {
        status_subresource: true,
    };

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(1_700_000_000 + secs, 0)
    }

    fn apply_as(
        live: Option<&Value>,
        config: &Value,
        manager: &str,
        force: bool,
        now: i64,
    ) -> Result<Value, ApplyError> {
        server_side_apply(
            live,
            config,
            &ApplyOptions {
                manager,
                force,
                scope: MAIN,
                now: at(now),
            },
        )
    }

    fn update_as(live: &Value, updated: &Value, manager: &str, now: i64) -> Value {
        let mut out = updated.clone();
        let opts = UpdateOptions {
            manager,
            scope: MAIN,
            now: at(now),
        };
        track_update(Some(live), &mut out, &opts).unwrap_or_else(|e| panic!("{e}"));
        out
    }

    fn config(spec: Value) -> Value {
        json!({"apiVersion": "x.io/v1", "kind": "K", "metadata": {"name": "a", "namespace": "n"}, "spec": spec})
    }

    fn owners(obj: &Value) -> Vec<(String, String, Vec<String>)> {
        ManagedFields::of(obj)
            .entries
            .iter()
            .map(|m| {
                let paths = m.fields.iter().map(|p| p.join(".")).collect();
                (
                    m.entry.manager.clone(),
                    m.entry.operation.as_str().to_owned(),
                    paths,
                )
            })
            .collect()
    }

    fn owner(manager: &str, op: &str, paths: &[&str]) -> (String, String, Vec<String>) {
        (
            manager.to_owned(),
            op.to_owned(),
            paths.iter().map(|p| (*p).to_owned()).collect(),
        )
    }

    fn ok(result: Result<Value, ApplyError>) -> Value {
        result.unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn applying_to_nothing_creates_the_object_owned_by_the_applier() {
        let obj = ok(apply_as(
            None,
            &config(json!({"replicas": 1, "image": "a"})),
            "alice",
            false,
            0,
        ));
        assert_eq!(obj["spec"], json!({"replicas": 1, "image": "a"}));
        assert_eq!(obj["metadata"]["name"], json!("a"));
        assert_eq!(
            obj["metadata"]["managedFields"],
            json!([{"manager": "alice", "operation": "Apply", "apiVersion": "x.io/v1",
                    "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:image": {}, "f:replicas": {}}}}])
        );
    }

    #[test]
    fn reapplying_the_same_configuration_changes_nothing_not_even_the_time() {
        let cfg = config(json!({"replicas": 1, "labels": {"a": "b"}}));
        let first = ok(apply_as(None, &cfg, "alice", false, 0));
        let second = ok(apply_as(Some(&first), &cfg, "alice", false, 60));
        assert_eq!(second, first);
    }

    #[test]
    fn changing_an_owned_value_updates_it_and_the_entry_time() {
        let first = ok(apply_as(
            None,
            &config(json!({"replicas": 1})),
            "alice",
            false,
            0,
        ));
        let second = ok(apply_as(
            Some(&first),
            &config(json!({"replicas": 2})),
            "alice",
            false,
            60,
        ));
        assert_eq!(second["spec"]["replicas"], json!(2));
        assert_eq!(
            second["metadata"]["managedFields"][0]["time"],
            json!("2023-11-14T22:14:20Z")
        );
    }

    #[test]
    fn fields_a_manager_stops_applying_are_removed_unless_someone_else_owns_them() {
        let first = ok(apply_as(
            None,
            &config(json!({"replicas": 1, "image": "a", "note": "x"})),
            "alice",
            false,
            0,
        ));
        // bob shares `image` (same value: no conflict).
        let shared = ok(apply_as(
            Some(&first),
            &config(json!({"image": "a"})),
            "bob",
            false,
            1,
        ));
        assert_eq!(
            owners(&shared),
            [
                owner(
                    "alice",
                    "Apply",
                    &["spec.image", "spec.note", "spec.replicas"]
                ),
                owner("bob", "Apply", &["spec.image"])
            ]
        );
        let trimmed = ok(apply_as(
            Some(&shared),
            &config(json!({"replicas": 1})),
            "alice",
            false,
            2,
        ));
        assert_eq!(
            trimmed["spec"],
            json!({"replicas": 1, "image": "a"}),
            "note removed, image kept for bob"
        );
        assert_eq!(
            owners(&trimmed),
            [
                owner("alice", "Apply", &["spec.replicas"]),
                owner("bob", "Apply", &["spec.image"])
            ]
        );
    }

    #[test]
    fn changing_another_managers_field_conflicts_and_force_takes_it_over() {
        let alice = ok(apply_as(
            None,
            &config(json!({"replicas": 1, "image": "a"})),
            "alice",
            false,
            0,
        ));
        let bob_cfg = config(json!({"replicas": 3}));
        let err = apply_as(Some(&alice), &bob_cfg, "bob", false, 1).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas".to_owned())
        );
        let forced = ok(apply_as(Some(&alice), &bob_cfg, "bob", true, 1));
        assert_eq!(forced["spec"], json!({"replicas": 3, "image": "a"}));
        assert_eq!(
            owners(&forced),
            [
                owner("alice", "Apply", &["spec.image"]),
                owner("bob", "Apply", &["spec.replicas"])
            ]
        );
        // alice re-applying her old value now conflicts with bob.
        let err = apply_as(
            Some(&forced),
            &config(json!({"replicas": 1, "image": "a"})),
            "alice",
            false,
            2,
        );
        assert!(
            matches!(err, Err(ApplyError::Conflicts { ref conflicts }) if conflicts[0].manager == "bob")
        );
    }

    #[test]
    fn conflicts_with_several_managers_are_all_listed() {
        let a = ok(apply_as(None, &config(json!({"x": 1})), "alice", false, 0));
        let b = ok(apply_as(
            Some(&a),
            &config(json!({"y": 1, "z": 1})),
            "bob",
            false,
            0,
        ));
        let err = apply_as(
            Some(&b),
            &config(json!({"x": 2, "y": 2, "z": 2})),
            "carol",
            false,
            0,
        );
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("Apply failed with 3 conflicts: conflicts with \"alice\":\n- .spec.x\nconflicts with \"bob\":\n- .spec.y\n- .spec.z".to_owned())
        );
    }

    #[test]
    fn updates_take_ownership_without_conflict_and_then_conflict_with_appliers() {
        let applied = ok(apply_as(
            None,
            &config(json!({"replicas": 1, "image": "a"})),
            "alice",
            false,
            0,
        ));
        let mut edited = applied.clone();
        edited["spec"]["replicas"] = json!(5);
        let edited = update_as(&applied, &edited, "kubectl-edit", 30);
        assert_eq!(
            owners(&edited),
            [
                owner("alice", "Apply", &["spec.image"]),
                owner("kubectl-edit", "Update", &["spec.replicas"])
            ]
        );
        let err = apply_as(
            Some(&edited),
            &config(json!({"replicas": 1, "image": "a"})),
            "alice",
            false,
            60,
        );
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("Apply failed with 1 conflict: conflict with \"kubectl-edit\" using x.io/v1 at 2023-11-14T22:13:50Z: .spec.replicas".to_owned())
        );
    }

    #[test]
    fn label_maps_merge_key_by_key_between_managers() {
        let labels = |l: Value| json!({"apiVersion": "x.io/v1", "kind": "K", "metadata": {"name": "a", "labels": l}});
        let a = ok(apply_as(
            None,
            &labels(json!({"app": "web"})),
            "alice",
            false,
            0,
        ));
        let b = ok(apply_as(
            Some(&a),
            &labels(json!({"tier": "db"})),
            "bob",
            false,
            0,
        ));
        assert_eq!(b["metadata"]["labels"], json!({"app": "web", "tier": "db"}));
        let dropped = ok(apply_as(Some(&b), &labels(json!({})), "alice", false, 0));
        assert_eq!(dropped["metadata"]["labels"], json!({"tier": "db"}));
        assert_eq!(
            owners(&dropped),
            [
                owner("alice", "Apply", &["metadata.labels"]),
                owner("bob", "Apply", &["metadata.labels.tier"])
            ]
        );
    }

    #[test]
    fn lists_are_atomic() {
        let a = ok(apply_as(
            None,
            &config(json!({"args": ["a", "b"]})),
            "alice",
            false,
            0,
        ));
        let err = apply_as(Some(&a), &config(json!({"args": ["c"]})), "bob", false, 0);
        assert!(
            matches!(err, Err(ApplyError::Conflicts { ref conflicts }) if conflicts[0].path == ".spec.args")
        );
        let same = ok(apply_as(
            Some(&a),
            &config(json!({"args": ["a", "b"]})),
            "bob",
            false,
            0,
        ));
        assert_eq!(owners(&same).len(), 2, "an equal list is shared");
    }

    #[test]
    fn status_is_applied_only_through_the_status_scope() {
        let cfg = json!({"apiVersion": "x.io/v1", "kind": "K", "metadata": {"name": "a"},
                         "spec": {"x": 1}, "status": {"ready": true}});
        let main = ok(apply_as(None, &cfg, "alice", false, 0));
        assert_eq!(main.get("status"), None, "the main resource ignores status");
        let status_opts = ApplyOptions {
            manager: "ctrl",
            force: false,
            scope: FieldScope::Status,
            now: at(5),
        };
        let with_status = ok(server_side_apply(Some(&main), &cfg, &status_opts));
        assert_eq!(with_status["status"], json!({"ready": true}));
        assert_eq!(with_status["spec"], json!({"x": 1}));
        let entries = &with_status["metadata"]["managedFields"];
        assert_eq!(entries[1]["subresource"], json!("status"));
        assert_eq!(entries[1]["fieldsV1"], json!({"f:status": {"f:ready": {}}}));
    }

    #[test]
    fn a_null_in_the_configuration_removes_the_field() {
        let a = ok(apply_as(
            None,
            &config(json!({"x": 1, "y": 2})),
            "alice",
            false,
            0,
        ));
        let b = ok(apply_as(
            Some(&a),
            &config(json!({"x": 1, "y": null})),
            "alice",
            false,
            1,
        ));
        assert_eq!(b["spec"], json!({"x": 1}));
        assert_eq!(owners(&b), [owner("alice", "Apply", &["spec.x"])]);
    }

    #[test]
    fn empty_manager_names_and_non_object_configurations_are_rejected() {
        assert_eq!(
            apply_as(None, &config(json!({})), "", false, 0),
            Err(ApplyError::MissingManager { operation: "apply" })
        );
        assert_eq!(
            apply_as(None, &json!([1]), "a", false, 0),
            Err(ApplyError::NotAnObject)
        );
        let mut v = json!({});
        let opts = UpdateOptions {
            manager: "",
            scope: MAIN,
            now: at(0),
        };
        assert_eq!(
            track_update(None, &mut v, &opts),
            Err(ApplyError::MissingManager {
                operation: "update"
            })
        );
    }

    #[test]
    fn a_create_records_every_field_for_its_manager_and_clients_can_reset_ownership() {
        let mut created = config(json!({"replicas": 1}));
        let opts = UpdateOptions {
            manager: "python",
            scope: MAIN,
            now: at(0),
        };
        assert_eq!(track_update(None, &mut created, &opts), Ok(()));
        assert_eq!(
            owners(&created),
            [owner("python", "Update", &["spec.replicas"])]
        );

        let unchanged = update_as(&created, &created, "other", 10);
        assert_eq!(
            unchanged, created,
            "an update that changes nothing records nothing"
        );

        let mut reset = created.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        let reset = update_as(&created, &reset, "other", 10);
        assert_eq!(reset["metadata"].get("managedFields"), None);

        let mut removed = created.clone();
        removed["spec"] = json!({});
        let removed = update_as(&created, &removed, "other", 10);
        assert_eq!(
            owners(&removed),
            [owner("other", "Update", &["spec"])],
            "the now-empty map changed"
        );
    }
}
