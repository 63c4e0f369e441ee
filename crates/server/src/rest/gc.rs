//! Garbage collection and namespace lifecycle, in the background on every member.
//!
//! ```text
//!  watch /registry/ ── a delete, or an object marked for deletion ──► sweep (debounced)
//!  every SWEEP_INTERVAL ───────────────────────────────────────────► sweep
//!
//!  sweep: one range over /registry/ at one revision R, then delete (finalizers honoured)
//!    - objects whose owners (by uid) are all absent at R           (background propagation)
//!    - namespaced objects whose namespace is absent or terminating at R
//!    - custom objects whose CustomResourceDefinition is gone at R
//!    - terminating namespaces that hold nothing at R
//!    - owners deleted with `foregroundDeletion`: their dependents, then the finalizer
//!    - owners deleted with `orphan`: their owner references in the dependents, then the
//!      finalizer
//! ```
//!
//! Every deletion is a Txn guarded by the mod_revision read at R, so a sweep never removes
//! an object that changed after it looked, and members sweeping at once do no harm.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use stead_api::kinds::{CORE_GROUP, CORE_VERSION};
use stead_api::lifecycle::{KindRules, WriteOutcome, is_garbage, prepare_create, prepare_delete};
use stead_api::registry::KindSource;
use stead_api::{DynamicObject, GroupVersionKind, ObjectMeta, storage_prefix};
use stead_store::watch::{WatchOutput, WatchRequest, WatchSpec, serve_watch};
use stead_store::{EventType, RangeRequest};
use tokio::sync::mpsc;

use super::delete::{FOREGROUND, ORPHAN};
use super::handlers::{DEFAULT_NAMESPACE, RandomIds, now};
use super::status::ApiError;
use super::storage::{self, decode_kv, prefix_end};
use super::{CRD_GROUP, CRD_PLURAL, RestApi};

/// The safety net: a full sweep at least this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Changes arriving together are swept once.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Pause before watching again after the watch stream stopped.
const RETRY: Duration = Duration::from_secs(1);

const REGISTRY: &[u8] = b"/registry/";

/// The key prefix of Namespaces.
pub(crate) fn namespaces_prefix() -> String {
    storage_prefix(CORE_GROUP, "namespaces", None)
}

/// The uids an object's owner references name.
fn owner_uids(object: &DynamicObject) -> Vec<String> {
    object
        .metadata()
        .map(|m| m.owner_references.into_iter().map(|r| r.uid).collect())
        .unwrap_or_default()
}

/// One stored object as a sweep sees it.
struct Entry {
    key: String,
    mod_revision: i64,
    object: DynamicObject,
}

/// What one sweep found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    pub(crate) deleted: usize,
}

impl RestApi {
    /// Creates the `default` Namespace if it does not exist yet. It is made on first use of
    /// the resource API (not at start-up), so a store used only through the etcd API keeps
    /// every revision to itself.
    pub(crate) async fn ensure_default_namespace(&self) -> Result<(), ApiError> {
        if self.default_namespace.load(Ordering::Acquire) {
            return Ok(());
        }
        self.create_namespace(DEFAULT_NAMESPACE).await?;
        self.default_namespace.store(true, Ordering::Release);
        Ok(())
    }

    async fn create_namespace(&self, name: &str) -> Result<(), ApiError> {
        let gvk = GroupVersionKind::new(CORE_GROUP, CORE_VERSION, "Namespace");
        let (rules, kind) = {
            let registry = self.registry();
            let (kind, version) = registry
                .lookup(&gvk)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            (KindRules::of(kind, version), kind.clone())
        };
        let key = kind.storage_key(None, name);
        if storage::get(&self.store, &key).await?.is_some() {
            return Ok(());
        }
        let object = DynamicObject::new(&gvk, &ObjectMeta::named(name));
        let mut object = prepare_create(object, &rules, now(), &mut RandomIds)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        // Set after prepare_create, which drops status (the kind has a /status subresource).
        object.set_status(Some(serde_json::json!({"phase": "Active"})));
        // Lost a race with another member: the namespace exists either way.
        storage::put_if(&self.store, &key, 0, object).await?;
        Ok(())
    }

    /// Runs garbage collection until the task is aborted.
    pub async fn collect_garbage(self) {
        let (wake_tx, mut wake) = mpsc::channel::<()>(1);
        let watcher = tokio::spawn({
            let api = self.clone();
            async move { api.watch_for_deletions(wake_tx).await }
        });
        loop {
            match self.sweep().await {
                Ok(swept) if swept.deleted > 0 => {
                    tracing::debug!(deleted = swept.deleted, "garbage collected");
                    // Deleting may orphan more objects (a chain of owners): look again.
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e.message, "garbage collection sweep failed"),
            }
            if tokio::time::timeout(SWEEP_INTERVAL, wake.recv()).await == Ok(None) {
                break;
            }
            tokio::time::sleep(DEBOUNCE).await;
            while wake.try_recv().is_ok() {}
        }
        watcher.abort();
    }

    /// Wakes the sweeper on every delete and on every object marked for deletion.
    async fn watch_for_deletions(&self, wake: mpsc::Sender<()>) {
        loop {
            let Ok(current) = self
                .store
                .range(RangeRequest {
                    key: REGISTRY.to_vec(),
                    range_end: prefix_end(REGISTRY),
                    count_only: true,
                    serializable: true,
                    ..Default::default()
                })
                .await
            else {
                tokio::time::sleep(RETRY).await;
                continue;
            };
            let (requests, request_rx) = mpsc::channel(1);
            let (out_tx, mut out) = mpsc::channel(16);
            let task = tokio::spawn(serve_watch(
                self.store.clone(),
                request_rx,
                out_tx,
                self.progress_interval,
            ));
            let spec = WatchSpec {
                key: REGISTRY.to_vec(),
                range_end: prefix_end(REGISTRY),
                start_revision: current.revision + 1,
                ..Default::default()
            };
            if requests.send(WatchRequest::Create(spec)).await.is_ok() {
                while let Some(output) = out.recv().await {
                    let WatchOutput::Events { events, .. } = output else {
                        if matches!(output, WatchOutput::Canceled { .. }) {
                            break;
                        }
                        continue;
                    };
                    let relevant = events.iter().any(|e| match e.kind {
                        EventType::Delete => true,
                        EventType::Put => {
                            decode_kv(&e.kv).is_ok_and(|o| o.deletion_timestamp().is_some())
                        }
                    });
                    if relevant && wake.try_send(()).is_err() && wake.is_closed() {
                        task.abort();
                        return;
                    }
                }
            }
            task.abort();
            tokio::time::sleep(RETRY).await;
        }
    }

    /// One pass over every object at one revision.
    pub(crate) async fn sweep(&self) -> Result<Swept, ApiError> {
        let resp = self
            .store
            .range(RangeRequest {
                key: REGISTRY.to_vec(),
                range_end: prefix_end(REGISTRY),
                ..Default::default()
            })
            .await?;
        let mut entries = Vec::with_capacity(resp.kvs.len());
        for kv in &resp.kvs {
            if let Ok(object) = decode_kv(kv) {
                entries.push(Entry {
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    mod_revision: kv.mod_revision,
                    object,
                });
            }
        }
        let uids: HashSet<&str> = entries.iter().map(|e| e.object.uid()).collect();
        let ns_prefix = namespaces_prefix();
        let namespaces: HashMap<&str, bool> = entries
            .iter()
            .filter(|e| e.key.starts_with(&ns_prefix))
            .map(|e| (e.object.name(), e.object.deletion_timestamp().is_some()))
            .collect();
        let served = self.served_collections(&entries);
        let mut doomed: Vec<&Entry> = Vec::new();
        let mut occupied: HashSet<&str> = HashSet::new();
        for entry in &entries {
            let object = &entry.object;
            if let Some(ns) = object.namespace() {
                occupied.insert(ns);
                let gone = ns != DEFAULT_NAMESPACE && namespaces.get(ns).is_none_or(|t| *t);
                if gone {
                    doomed.push(entry);
                    continue;
                }
            }
            if !served
                .iter()
                .any(|prefix| entry.key.starts_with(prefix.as_str()))
            {
                doomed.push(entry);
                continue;
            }
            if is_garbage(object, |owner| uids.contains(owner.uid.as_str())) {
                doomed.push(entry);
            }
        }
        for entry in &entries {
            let terminating =
                entry.key.starts_with(&ns_prefix) && entry.object.deletion_timestamp().is_some();
            if terminating && !occupied.contains(entry.object.name()) {
                doomed.push(entry);
            }
        }
        let mut swept = Swept::default();
        for entry in doomed {
            if self.collect(entry).await? {
                swept.deleted += 1;
            }
        }
        // Owners deleted in the foreground or orphaning their dependents.
        for owner in entries
            .iter()
            .filter(|e| e.object.deletion_timestamp().is_some())
        {
            let finalizers = owner.object.finalizers();
            let policy = if finalizers.contains(&FOREGROUND) {
                FOREGROUND
            } else if finalizers.contains(&ORPHAN) {
                ORPHAN
            } else {
                continue;
            };
            let uid = owner.object.uid();
            let dependents: Vec<&Entry> = entries
                .iter()
                .filter(|e| owner_uids(&e.object).iter().any(|u| u == uid))
                .collect();
            let mut settled = true;
            for dependent in &dependents {
                let done = if policy == ORPHAN {
                    self.release(dependent, uid).await?
                } else {
                    // Foreground: the owner waits until its dependents are gone.
                    self.collect(dependent).await?;
                    false
                };
                settled &= done;
            }
            if settled && self.remove_finalizer(owner, policy).await? {
                swept.deleted += 1;
            }
        }
        Ok(swept)
    }

    /// Removes the owner reference to `owner_uid` from a dependent; `true` once written.
    async fn release(&self, dependent: &Entry, owner_uid: &str) -> Result<bool, ApiError> {
        let mut released = dependent.object.clone();
        if let Some(Value::Array(refs)) = released.metadata_map_mut().get_mut("ownerReferences") {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
            if refs.is_empty() {
                released.metadata_map_mut().remove("ownerReferences");
            }
        }
        let written = storage::put_if(
            &self.store,
            &dependent.key,
            dependent.mod_revision,
            released,
        )
        .await?;
        Ok(written.is_some())
    }

    /// Removes one finalizer; the object goes when it was the last one.
    async fn remove_finalizer(&self, entry: &Entry, finalizer: &str) -> Result<bool, ApiError> {
        let mut updated = entry.object.clone();
        let left: Vec<Value> = entry
            .object
            .finalizers()
            .into_iter()
            .filter(|f| *f != finalizer)
            .map(Value::from)
            .collect();
        if left.is_empty() {
            return storage::delete_if(&self.store, &entry.key, entry.mod_revision).await;
        }
        updated
            .metadata_map_mut()
            .insert("finalizers".into(), Value::Array(left));
        let written = storage::put_if(&self.store, &entry.key, entry.mod_revision, updated).await?;
        Ok(written.is_some())
    }

    /// Key prefixes of every collection that is served at the sweep's revision: built-in
    /// kinds, and the kinds of the CRDs stored then.
    fn served_collections(&self, entries: &[Entry]) -> Vec<String> {
        let mut prefixes: Vec<String> = self
            .registry()
            .kinds()
            .filter(|k| matches!(k.source, KindSource::BuiltIn))
            .map(|k| storage_prefix(&k.group, &k.names.plural, None))
            .collect();
        let crd_prefix = storage_prefix(CRD_GROUP, CRD_PLURAL, None);
        for entry in entries.iter().filter(|e| e.key.starts_with(&crd_prefix)) {
            let spec = entry.object.spec();
            let text = |pointer: &str| {
                spec.and_then(|s| s.pointer(pointer))
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let (group, plural) = (text("/group"), text("/names/plural"));
            if !group.is_empty() && !plural.is_empty() {
                prefixes.push(storage_prefix(&group, &plural, None));
            }
        }
        prefixes
    }

    /// Deletes one object as a DELETE would (an object with finalizers is only marked);
    /// `true` when something was written.
    async fn collect(&self, entry: &Entry) -> Result<bool, ApiError> {
        let written = match prepare_delete(&entry.object, now()) {
            WriteOutcome::Unchanged => false,
            WriteOutcome::Delete(_) => {
                storage::delete_if(&self.store, &entry.key, entry.mod_revision).await?
            }
            WriteOutcome::Write(marked) => {
                storage::put_if(&self.store, &entry.key, entry.mod_revision, marked)
                    .await?
                    .is_some()
            }
        };
        if written {
            tracing::info!(key = %entry.key, "garbage collected");
        }
        Ok(written)
    }
}
