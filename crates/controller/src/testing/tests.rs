//! The fake client keeps the server's semantics: these tests pin the ones controllers rely on.

use futures::StreamExt;
use serde_json::json;

use super::*;
use crate::client::{Client, Deleted, ListParams, Patch, PatchParams, WatchEvent, WatchParams};

fn widget(name: &str, size: i64) -> DynamicObject {
    object(&widgets(), Some("ns"), name, json!({ "size": size }))
}

fn kind_and_rv(event: &WatchEvent) -> (&'static str, String) {
    match event {
        WatchEvent::Added(o) => ("ADDED", o.resource_version().to_owned()),
        WatchEvent::Modified(o) => ("MODIFIED", o.resource_version().to_owned()),
        WatchEvent::Deleted(o) => ("DELETED", o.resource_version().to_owned()),
        WatchEvent::Bookmark { resource_version } => ("BOOKMARK", resource_version.clone()),
        WatchEvent::Error(s) => ("ERROR", s.code.to_string()),
    }
}

#[tokio::test]
async fn create_assigns_identity_and_refuses_a_second_create() {
    let client = FakeClient::new();
    let created = client.create(&widgets(), &widget("a", 1)).await;
    let created = created.unwrap_or_default();
    assert_eq!((created.generation(), created.resource_version()), (1, "2"));
    assert!(!created.uid().is_empty());
    assert!(created.creation_timestamp().is_some());
    let again = client.create(&widgets(), &widget("a", 1)).await;
    assert!(again.is_err_and(|e| e.is_conflict()));
}

#[tokio::test]
async fn generation_moves_only_on_spec_changes_and_stale_writes_conflict() {
    let client = FakeClient::new();
    let created = client
        .create(&widgets(), &widget("a", 1))
        .await
        .unwrap_or_default();
    let mut with_status = created.clone();
    with_status.set_status(Some(json!({"ready": true})));
    let after_status = client
        .replace_status(&widgets(), &with_status)
        .await
        .unwrap_or_default();
    assert_eq!(
        after_status.generation(),
        1,
        "status writes keep the generation"
    );
    assert_eq!(after_status.status(), Some(&json!({"ready": true})));

    let stale = client
        .replace(&widgets(), &widget_with_rv(&created, 2))
        .await;
    assert!(
        stale.is_err_and(|e| e.is_conflict()),
        "the status write moved the resourceVersion"
    );
    let fresh = client
        .replace(&widgets(), &widget_with_rv(&after_status, 2))
        .await
        .unwrap_or_default();
    assert_eq!(fresh.generation(), 2);
    assert_eq!(
        fresh.status(),
        Some(&json!({"ready": true})),
        "replace keeps status"
    );
}

fn widget_with_rv(stored: &DynamicObject, size: i64) -> DynamicObject {
    let mut object = stored.clone();
    object
        .as_map_mut()
        .insert("spec".into(), json!({ "size": size }));
    object
}

#[tokio::test]
async fn delete_with_finalizers_is_pending_until_the_last_one_is_removed() {
    let client = FakeClient::new();
    let mut with_finalizer = widget("a", 1);
    with_finalizer
        .metadata_map_mut()
        .insert("finalizers".into(), json!(["x/y"]));
    client
        .create(&widgets(), &with_finalizer)
        .await
        .unwrap_or_default();
    let deleted = client.delete(&widgets(), Some("ns"), "a").await;
    assert!(matches!(&deleted, Ok(Deleted::Pending(o)) if o.deletion_timestamp().is_some()));
    assert!(client.peek(&widgets(), Some("ns"), "a").is_some());
    let patch = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    let removed = client
        .patch(
            &widgets(),
            Some("ns"),
            "a",
            &patch,
            &PatchParams::default(),
            false,
        )
        .await;
    assert!(removed.is_ok());
    assert!(client.peek(&widgets(), Some("ns"), "a").is_none());
    let plain = client
        .create(&widgets(), &widget("b", 1))
        .await
        .unwrap_or_default();
    let gone = client.delete(&widgets(), Some("ns"), "b").await;
    assert!(matches!(gone, Ok(Deleted::Gone(o)) if o.uid() == plain.uid()));
}

#[tokio::test]
async fn json_patch_tests_guard_against_concurrent_changes() {
    let client = FakeClient::new();
    let created = client
        .create(&widgets(), &widget("a", 1))
        .await
        .unwrap_or_default();
    let guarded = |rv: &str| {
        Patch::Json(json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "replace", "path": "/spec/size", "value": 5}
        ]))
    };
    let params = PatchParams::default();
    let ok = client
        .patch(
            &widgets(),
            Some("ns"),
            "a",
            &guarded(created.resource_version()),
            &params,
            false,
        )
        .await;
    assert_eq!(ok.map(|o| o.generation()).ok(), Some(2));
    let stale = client
        .patch(
            &widgets(),
            Some("ns"),
            "a",
            &guarded(created.resource_version()),
            &params,
            false,
        )
        .await;
    assert!(stale.is_err());
}

#[tokio::test]
async fn watch_replays_after_a_revision_and_expires_after_a_compaction() {
    let client = FakeClient::new();
    for (name, size) in [("a", 1), ("b", 2), ("c", 3)] {
        client.put(&widgets(), widget(name, size));
    }
    client.put(&gadgets(), object(&gadgets(), Some("ns"), "g", json!({})));
    let params = WatchParams {
        resource_version: Some("2".into()),
        ..WatchParams::default()
    };
    let mut stream = client
        .watch(&widgets(), None, &params)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut seen = Vec::new();
    for _ in 0..2 {
        if let Some(Ok(event)) = stream.next().await {
            seen.push(kind_and_rv(&event));
        }
    }
    assert_eq!(seen, [("ADDED", "3".to_owned()), ("ADDED", "4".to_owned())]);

    client.compact(4);
    let mut old = client
        .watch(&widgets(), None, &params)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = old
        .next()
        .await
        .and_then(Result::ok)
        .map(|e| kind_and_rv(&e));
    assert_eq!(first, Some(("ERROR", "410".to_owned())));
    assert!(old.next().await.is_none(), "an expired watch ends");
}

#[tokio::test]
async fn paged_lists_are_pinned_to_the_first_page_revision() {
    let client = FakeClient::new();
    for name in ["a", "b", "c"] {
        client.put(&widgets(), widget(name, 1));
    }
    let first = client
        .list(
            &widgets(),
            Some("ns"),
            &ListParams {
                limit: Some(2),
                ..ListParams::default()
            },
        )
        .await
        .unwrap_or_default();
    client.put(&widgets(), widget("d", 1));
    let second = client
        .list(
            &widgets(),
            Some("ns"),
            &ListParams {
                continue_token: first.continue_token.clone(),
                ..ListParams::default()
            },
        )
        .await
        .unwrap_or_default();
    let names: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|o| o.name().to_owned())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(
        (
            first.resource_version.as_str(),
            second.resource_version.as_str()
        ),
        ("4", "4")
    );
    assert!(second.continue_token.is_none());
}

#[tokio::test]
async fn injected_faults_and_broken_watches_surface_as_transport_errors() {
    let client = FakeClient::new();
    let other_path = client.with_own_faults();
    client.fail_next(1);
    let failed = client.get(&widgets(), Some("ns"), "a").await;
    assert!(matches!(failed, Err(ClientError::Transport(_))));
    assert!(
        other_path
            .get(&widgets(), Some("ns"), "a")
            .await
            .is_err_and(|e| e.is_not_found())
    );
    let mut stream = client
        .watch(&widgets(), None, &WatchParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client.break_watches();
    assert!(matches!(
        stream.next().await,
        Some(Err(ClientError::Transport(_)))
    ));
    assert!(stream.next().await.is_none());
}

use crate::client::ClientError;
