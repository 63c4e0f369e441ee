//! [`finalizer`]: clean-up that is guaranteed to run before an object disappears.
//!
//! ```text
//!  deletionTimestamp  our finalizer   what happens
//!  ─────────────────  ─────────────   ──────────────────────────────────────────────────
//!  unset              absent          add it (JSON patch guarded by a resourceVersion
//!                                     test); the write wakes the controller again
//!  unset              present         Event::Apply(obj)          → its Action
//!  set                present         Event::Cleanup(obj); on Ok remove the finalizer
//!                                     (JSON patch guarded by a test of that entry)
//!  set                absent          nothing: our clean-up is done, others are pending
//! ```
//!
//! Adding the finalizer before the first `Apply` means nothing the reconciler creates can
//! outlive the object: the server keeps it (with `deletionTimestamp`) until `Cleanup` succeeds.

use std::future::Future;
use std::sync::Arc;

use serde_json::{Value, json};
use stead_api::DynamicObject;

use crate::client::{ApiResource, Client, ClientError, Patch, PatchParams};
use crate::{Action, ObjectRef};

/// What the reconciler is asked to do.
#[derive(Debug, Clone)]
pub enum Event {
    /// The object exists and carries the finalizer: reconcile it.
    Apply(Arc<DynamicObject>),
    /// The object is being deleted: release what it owns; the finalizer goes on success.
    Cleanup(Arc<DynamicObject>),
}

/// Why [`finalizer`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FinalizerError<E> {
    /// The reconciler's `Apply` failed.
    #[error("apply failed: {0}")]
    ApplyFailed(#[source] E),
    /// The reconciler's `Cleanup` failed; the finalizer stays.
    #[error("cleanup failed: {0}")]
    CleanupFailed(#[source] E),
    /// The finalizer could not be added (typically the object changed meanwhile).
    #[error("cannot add finalizer {finalizer} to {object}: {source}")]
    AddFinalizer {
        finalizer: String,
        object: ObjectRef,
        #[source]
        source: ClientError,
    },
    /// The finalizer could not be removed after a successful clean-up.
    #[error("cannot remove finalizer {finalizer} from {object}: {source}")]
    RemoveFinalizer {
        finalizer: String,
        object: ObjectRef,
        #[source]
        source: ClientError,
    },
}

/// Runs `reconcile` for `object` behind the finalizer `name` (see the module docs).
pub async fn finalizer<C, E, F, Fut>(
    client: &C,
    resource: &ApiResource,
    name: &str,
    object: Arc<DynamicObject>,
    reconcile: F,
) -> Result<Action, FinalizerError<E>>
where
    C: Client,
    F: FnOnce(Event) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
{
    let position = object.finalizers().iter().position(|f| *f == name);
    let deleting = object.deletion_timestamp().is_some();
    let key = ObjectRef::from_obj(&object);
    match (deleting, position) {
        (false, Some(_)) => reconcile(Event::Apply(object))
            .await
            .map_err(FinalizerError::ApplyFailed),
        (false, None) => {
            let has_list = object
                .metadata_map()
                .and_then(|m| m.get("finalizers"))
                .is_some_and(Value::is_array);
            let add = if has_list {
                json!({"op": "add", "path": "/metadata/finalizers/-", "value": name})
            } else {
                json!({"op": "add", "path": "/metadata/finalizers", "value": [name]})
            };
            let patch = Patch::Json(json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": object.resource_version()},
                add,
            ]));
            client
                .patch(
                    resource,
                    key.namespace(),
                    &key.name,
                    &patch,
                    &PatchParams::default(),
                    false,
                )
                .await
                .map_err(|source| FinalizerError::AddFinalizer {
                    finalizer: name.to_owned(),
                    object: key.clone(),
                    source,
                })?;
            // The write is an event of its own; the next reconcile sees the finalizer.
            Ok(Action::await_change())
        }
        (true, Some(index)) => {
            let action = reconcile(Event::Cleanup(object))
                .await
                .map_err(FinalizerError::CleanupFailed)?;
            let path = format!("/metadata/finalizers/{index}");
            let patch = Patch::Json(json!([
                {"op": "test", "path": path, "value": name},
                {"op": "remove", "path": path},
            ]));
            client
                .patch(
                    resource,
                    key.namespace(),
                    &key.name,
                    &patch,
                    &PatchParams::default(),
                    false,
                )
                .await
                .map_err(|source| FinalizerError::RemoveFinalizer {
                    finalizer: name.to_owned(),
                    object: key.clone(),
                    source,
                })?;
            Ok(action)
        }
        (true, None) => Ok(Action::await_change()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::controller::{Config, Controller, default_error_policy};
    use crate::testing::{FakeClient, object, widgets};

    const NAME: &str = "example.com/cleanup";

    fn widget() -> DynamicObject {
        object(&widgets(), Some("ns"), "a", json!({"size": 1}))
    }

    fn with_finalizers(mut object: DynamicObject, finalizers: &[&str]) -> DynamicObject {
        object
            .metadata_map_mut()
            .insert("finalizers".into(), json!(finalizers));
        object
    }

    /// Calls `finalizer` once; answers which event the reconciler got, if any.
    async fn step(client: &FakeClient, stored: DynamicObject) -> (Option<&'static str>, bool) {
        let called = Mutex::new(None);
        let result = finalizer(client, &widgets(), NAME, Arc::new(stored), |event| {
            *called
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(match event {
                Event::Apply(_) => "apply",
                Event::Cleanup(_) => "cleanup",
            });
            async { Ok::<_, std::io::Error>(Action::await_change()) }
        })
        .await;
        let called = *called
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (called, result.is_ok())
    }

    #[tokio::test]
    async fn each_combination_of_deletion_and_finalizer_does_its_one_thing() {
        // (finalizers before, delete first, event, finalizers after, object still there)
        type Case = (
            &'static [&'static str],
            bool,
            Option<&'static str>,
            &'static [&'static str],
            bool,
        );
        let cases: [Case; 5] = [
            (&[], false, None, &[NAME], true),
            (&["other"], false, None, &["other", NAME], true),
            (&[NAME], false, Some("apply"), &[NAME], true),
            (&[NAME], true, Some("cleanup"), &[], false),
            (&["other"], true, None, &["other"], true),
        ];
        for (before, delete, event, after, exists) in cases {
            let client = FakeClient::new();
            let mut stored = client.put(&widgets(), with_finalizers(widget(), before));
            if delete {
                let _ = client.delete(&widgets(), Some("ns"), "a").await;
                stored = client.peek(&widgets(), Some("ns"), "a").unwrap_or_default();
            }
            let rv = stored.resource_version().to_owned();
            assert_eq!(
                step(&client, stored).await,
                (event, true),
                "{before:?} delete={delete}"
            );
            let now = client.peek(&widgets(), Some("ns"), "a");
            assert_eq!(now.is_some(), exists, "{before:?} delete={delete}");
            if let Some(now) = now {
                assert_eq!(now.finalizers(), after, "{before:?} delete={delete}");
                if event.is_none() && delete {
                    assert_eq!(now.resource_version(), rv, "nothing was written");
                }
            }
        }
    }

    #[tokio::test]
    async fn the_finalizer_is_not_added_to_a_stale_object() {
        let client = FakeClient::new();
        let stale = client.put(&widgets(), widget());
        client.put(
            &widgets(),
            object(&widgets(), Some("ns"), "a", json!({"size": 2})),
        );
        let result = finalizer(&client, &widgets(), NAME, Arc::new(stale), |_| async {
            Ok::<_, std::io::Error>(Action::await_change())
        })
        .await;
        assert!(matches!(result, Err(FinalizerError::AddFinalizer { .. })));
        let now = client.peek(&widgets(), Some("ns"), "a").unwrap_or_default();
        assert!(now.finalizers().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_controller_adds_the_finalizer_applies_and_cleans_up_before_the_object_goes() {
        let client = FakeClient::new();
        client.put(&widgets(), widget());
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let writer = client.clone();
        let controller = Controller::new(client.clone(), widgets()).with_config(Config {
            resync: None,
            ..Config::default()
        });
        let task = tokio::spawn(controller.run(
            move |obj, log: Arc<Mutex<Vec<String>>>| {
                let client = writer.clone();
                async move {
                    finalizer(&client, &widgets(), NAME, obj, |event| async move {
                        let entry = match &event {
                            Event::Apply(o) => format!("apply gen {}", o.generation()),
                            Event::Cleanup(o) => format!("cleanup gen {}", o.generation()),
                        };
                        log.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(entry);
                        Ok::<_, std::io::Error>(Action::await_change())
                    })
                    .await
                }
            },
            default_error_policy,
            Arc::clone(&log),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stored = client.peek(&widgets(), Some("ns"), "a").unwrap_or_default();
        assert_eq!(stored.finalizers(), [NAME]);
        let deleted = client.delete(&widgets(), Some("ns"), "a").await;
        assert!(matches!(deleted, Ok(crate::client::Deleted::Pending(_))));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(client.peek(&widgets(), Some("ns"), "a").is_none());
        let log = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        assert_eq!(log, ["apply gen 1", "cleanup gen 2"]);
        task.abort();
    }
}
