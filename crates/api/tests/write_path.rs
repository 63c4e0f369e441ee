//! The write path the REST server runs, end to end but without I/O: YAML manifest -> registry
//! lookup -> server-side apply -> pruning/defaulting -> lifecycle -> validation, with a map
//! standing in for the store. Checks the guarantees issue 4 asks for: re-applying a manifest
//! writes nothing, generation follows spec changes only, status goes through `/status`,
//! conflicts between managers, and finalizers.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use stead_api::apply::{
    ApplyError, ApplyOptions, FieldScope, UpdateOptions, server_side_apply, track_update,
};
use stead_api::lifecycle::{
    IdGenerator, KindRules, WriteOutcome, prepare_create, prepare_delete, prepare_status_update,
    prepare_update,
};
use stead_api::patch::{apply_json_patch, apply_merge_patch, parse_json_patch};
use stead_api::{CustomResourceDefinition, DynamicObject, KindRegistry, Timestamp, yaml};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: processsets.demo.example.com
spec:
  group: demo.example.com
  scope: Namespaced
  names: {plural: processsets, singular: processset, kind: ProcessSet, shortNames: [ps]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [command]
            properties:
              command: {type: string}
              replicas: {type: integer, minimum: 0, default: 1}
              restartPolicy: {type: string, enum: [Always, Never], default: Always}
          status:
            type: object
            properties:
              observedGeneration: {type: integer}
              readyReplicas: {type: integer}
"#;

const MANIFEST: &str = "
apiVersion: demo.example.com/v1
kind: ProcessSet
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  command: sleep
  replicas: 2
";

struct Ids(u32);

impl IdGenerator for Ids {
    fn uid(&mut self) -> String {
        self.0 += 1;
        format!("uid-{}", self.0)
    }

    fn name_suffix(&mut self) -> String {
        "zzzzz".into()
    }
}

/// A tiny stand-in for the server: one registry, one key space, a revision counter.
struct Server {
    registry: KindRegistry,
    store: BTreeMap<String, Value>,
    revision: u64,
    ids: Ids,
    clock: i64,
}

#[derive(Debug, PartialEq)]
enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Server {
    fn new() -> Self {
        let mut registry = KindRegistry::with_builtins().unwrap_or_else(|e| panic!("{e}"));
        let crd = yaml::load_objects("crd.yaml", CRD).unwrap_or_else(|e| panic!("{e}"));
        let crd = CustomResourceDefinition::from_value(&crd[0].1.to_value())
            .unwrap_or_else(|e| panic!("{e}"));
        registry
            .register_crd(&crd)
            .unwrap_or_else(|e| panic!("{e}"));
        Server {
            registry,
            store: BTreeMap::new(),
            revision: 0,
            ids: Ids(0),
            clock: 1_700_000_000,
        }
    }

    fn now(&mut self) -> Timestamp {
        self.clock += 1;
        Timestamp::from_unix(self.clock, 0)
    }

    fn key_and_rules(&self, obj: &DynamicObject) -> (String, KindRules) {
        let (kind, version) = self
            .registry
            .lookup_object(obj)
            .unwrap_or_else(|e| panic!("{e}"));
        (
            kind.storage_key(obj.namespace(), obj.name()),
            KindRules::of(kind, version),
        )
    }

    fn get(&self, key: &str) -> Option<DynamicObject> {
        self.store
            .get(key)
            .map(|v| DynamicObject::from_value(v.clone()).unwrap_or_default())
    }

    fn finish(&mut self, key: &str, outcome: WriteOutcome) -> Applied {
        match outcome {
            WriteOutcome::Unchanged => Applied::Unchanged,
            WriteOutcome::Delete(_) => {
                self.revision += 1;
                self.store.remove(key);
                Applied::Configured
            }
            WriteOutcome::Write(mut obj) => {
                self.registry
                    .validate(&obj)
                    .unwrap_or_else(|e| panic!("invalid: {e}"));
                self.revision += 1;
                let created = !self.store.contains_key(key);
                obj.set_resource_version(&self.revision.to_string());
                self.store.insert(key.to_owned(), obj.into_value());
                if created {
                    Applied::Created
                } else {
                    Applied::Configured
                }
            }
        }
    }

    /// `PATCH application/apply-patch+yaml` (server-side apply).
    fn apply(&mut self, manifest: &str, manager: &str, force: bool) -> Result<Applied, ApplyError> {
        let objects =
            yaml::load_objects("manifest.yaml", manifest).unwrap_or_else(|e| panic!("{e}"));
        let config = objects[0].1.clone();
        let (key, rules) = self.key_and_rules(&config);
        let live = self.get(&key);
        let scope = FieldScope::MainResource {
            status_subresource: rules.status_subresource,
        };
        let now = self.now();
        let opts = ApplyOptions {
            manager,
            force,
            scope,
            now,
        };
        let live_value = live.as_ref().map(DynamicObject::to_value);
        let merged = server_side_apply(live_value.as_ref(), &config.to_value(), &opts)?;
        let mut merged = DynamicObject::from_value(merged).unwrap_or_default();
        let (kind, version) = self
            .registry
            .lookup_object(&merged)
            .unwrap_or_else(|e| panic!("{e}"));
        let pruned = kind
            .version(&version.name)
            .map(|v| v.normalize(&mut merged))
            .unwrap_or_default();
        assert!(pruned.is_empty(), "unexpected unknown fields {pruned:?}");
        let outcome = match &live {
            None => WriteOutcome::Write(
                prepare_create(merged, &rules, now, &mut self.ids)
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            Some(live) => prepare_update(live, merged, &rules).unwrap_or_else(|e| panic!("{e}")),
        };
        Ok(self.finish(&key, outcome))
    }

    /// A plain update (PUT or a patch) by `manager`.
    fn update(
        &mut self,
        key: &str,
        change: impl FnOnce(&Value) -> Value,
        manager: &str,
    ) -> Applied {
        let live = self.get(key).unwrap_or_else(|| panic!("{key} missing"));
        let (_, rules) = self.key_and_rules(&live);
        let mut new = change(&live.to_value());
        let now = self.now();
        let opts = UpdateOptions {
            manager,
            scope: FieldScope::MainResource {
                status_subresource: true,
            },
            now,
        };
        track_update(Some(&live.to_value()), &mut new, &opts).unwrap_or_else(|e| panic!("{e}"));
        let new = DynamicObject::from_value(new).unwrap_or_default();
        let outcome = prepare_update(&live, new, &rules).unwrap_or_else(|e| panic!("{e}"));
        self.finish(key, outcome)
    }

    fn update_status(&mut self, key: &str, status: Value, manager: &str) -> Applied {
        let live = self.get(key).unwrap_or_else(|| panic!("{key} missing"));
        let (_, rules) = self.key_and_rules(&live);
        let mut sent = live.clone();
        sent.set_status(Some(status));
        let outcome = prepare_status_update(&live, &sent, &rules).unwrap_or_else(|e| panic!("{e}"));
        let outcome = match outcome {
            WriteOutcome::Write(obj) => {
                let mut value = obj.into_value();
                let now = self.now();
                let opts = UpdateOptions {
                    manager,
                    scope: FieldScope::Status,
                    now,
                };
                track_update(Some(&live.to_value()), &mut value, &opts)
                    .unwrap_or_else(|e| panic!("{e}"));
                WriteOutcome::Write(DynamicObject::from_value(value).unwrap_or_default())
            }
            other => other,
        };
        self.finish(key, outcome)
    }

    fn delete(&mut self, key: &str) -> Applied {
        let live = self.get(key).unwrap_or_else(|| panic!("{key} missing"));
        let now = self.now();
        let outcome = prepare_delete(&live, now);
        self.finish(key, outcome)
    }
}

const KEY: &str = "/registry/demo.example.com/processsets/default/web";

#[test]
fn applying_a_manifest_creates_it_with_defaults_and_reapplying_it_writes_nothing() {
    let mut server = Server::new();
    assert_eq!(
        server.apply(MANIFEST, "kubectl", false),
        Ok(Applied::Created)
    );
    let stored = server.get(KEY).unwrap_or_default();
    assert_eq!(
        (stored.uid(), stored.generation(), stored.resource_version()),
        ("uid-1", 1, "1")
    );
    assert_eq!(
        stored.spec(),
        Some(&json!({"command": "sleep", "replicas": 2, "restartPolicy": "Always"}))
    );
    let revision = server.revision;
    assert_eq!(
        server.apply(MANIFEST, "kubectl", false),
        Ok(Applied::Unchanged)
    );
    assert_eq!(
        server.apply(MANIFEST, "kubectl", false),
        Ok(Applied::Unchanged)
    );
    assert_eq!(
        server.revision, revision,
        "no new revision for an unchanged apply"
    );
}

#[test]
fn spec_changes_bump_generation_and_status_updates_do_not() {
    let mut server = Server::new();
    server
        .apply(MANIFEST, "kubectl", false)
        .unwrap_or_else(|e| panic!("{e}"));
    let scaled = MANIFEST.replace("replicas: 2", "replicas: 3");
    assert_eq!(
        server.apply(&scaled, "kubectl", false),
        Ok(Applied::Configured)
    );
    assert_eq!(server.get(KEY).map(|o| o.generation()), Some(2));

    let status = json!({"observedGeneration": 2, "readyReplicas": 3});
    assert_eq!(
        server.update_status(KEY, status.clone(), "processset-controller"),
        Applied::Configured
    );
    let stored = server.get(KEY).unwrap_or_default();
    assert_eq!((stored.generation(), stored.status()), (2, Some(&status)));
    assert_eq!(
        server.update_status(KEY, status, "processset-controller"),
        Applied::Unchanged
    );

    // Status sent through the main resource is ignored; the object is unchanged.
    let with_status = format!("{scaled}status:\n  readyReplicas: 0\n");
    assert_eq!(
        server.apply(&with_status, "kubectl", false),
        Ok(Applied::Unchanged)
    );
}

#[test]
fn a_field_changed_by_another_manager_conflicts_until_forced() {
    let mut server = Server::new();
    server
        .apply(MANIFEST, "kubectl", false)
        .unwrap_or_else(|e| panic!("{e}"));
    let edited = server.update(
        KEY,
        |live| apply_merge_patch(live, &json!({"spec": {"replicas": 5}})),
        "kubectl-edit",
    );
    assert_eq!(edited, Applied::Configured);
    let err = server
        .apply(MANIFEST, "kubectl", false)
        .map_err(|e| e.to_string());
    assert!(
        err.as_ref().is_err_and(|e| e.starts_with(
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using demo.example.com/v1 at "
        ) && e.ends_with(": .spec.replicas")),
        "{err:?}"
    );
    assert_eq!(
        server.apply(MANIFEST, "kubectl", true),
        Ok(Applied::Configured)
    );
    assert_eq!(
        server
            .get(KEY)
            .and_then(|o| o.spec().cloned())
            .map(|s| s["replicas"].clone()),
        Some(json!(2))
    );
}

#[test]
fn finalizers_hold_a_deleted_object_until_a_patch_removes_the_last_one() {
    let mut server = Server::new();
    let guarded = MANIFEST.replace(
        "  labels: {app: web}\n",
        "  labels: {app: web}\n  finalizers: [stead.dev/stop]\n",
    );
    server
        .apply(&guarded, "kubectl", false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.delete(KEY), Applied::Configured);
    let terminating = server.get(KEY).unwrap_or_default();
    assert!(terminating.deletion_timestamp().is_some());
    assert_eq!(terminating.generation(), 2);
    assert_eq!(
        server.delete(KEY),
        Applied::Unchanged,
        "deleting twice changes nothing"
    );

    let patch = parse_json_patch(&json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "stead.dev/stop"},
        {"op": "remove", "path": "/metadata/finalizers"}
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let removed = server.update(
        KEY,
        |live| apply_json_patch(live, &patch).unwrap_or_else(|e| panic!("{e}")),
        "processset-controller",
    );
    assert_eq!(removed, Applied::Configured);
    assert!(
        server.get(KEY).is_none(),
        "the object is gone once its last finalizer is"
    );
}

#[test]
fn an_invalid_manifest_is_rejected_with_the_field_path() {
    let server = Server::new();
    let bad = MANIFEST.replace("replicas: 2", "replicas: -1");
    let objects = yaml::load_objects("bad.yaml", &bad).unwrap_or_else(|e| panic!("{e}"));
    let err = server
        .registry
        .validate(&objects[0].1)
        .map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("spec.replicas: -1 is less than the minimum of 0".to_owned())
    );
    let unknown = MANIFEST.replace("kind: ProcessSet", "kind: ProcesSet");
    let objects = yaml::load_objects("typo.yaml", &unknown).unwrap_or_else(|e| panic!("{e}"));
    let err = server
        .registry
        .validate(&objects[0].1)
        .map_err(|e| e.to_string());
    assert!(
        err.as_ref()
            .is_err_and(|e| e.contains("no matches for kind \"ProcesSet\"")
                && e.contains("demo.example.com/v1 ProcessSet")),
        "{err:?}"
    );
}
