//! The watcher against the fake server: disconnects, compactions, idle connections, bookmarks.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

use super::*;
use crate::client::Client;
use crate::reflector::{Store, Writer, reflector};
use crate::testing::{FakeClient, gadgets, object, widgets};

fn widget(name: &str, size: i64) -> DynamicObject {
    object(&widgets(), Some("ns"), name, json!({ "size": size }))
}

/// Runs a watcher into a cache; events are also sent to the returned channel.
fn start(client: &FakeClient, config: Config) -> (Store, mpsc::UnboundedReceiver<Event>) {
    let writer = Writer::new();
    let store = writer.as_reader();
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = reflector(writer, watcher(client.clone(), widgets(), config));
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let _ = tx.send(event);
        }
    });
    (store, rx)
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    events
}

fn sizes(store: &Store) -> Vec<(String, i64)> {
    let mut out: Vec<_> = store
        .state()
        .iter()
        .map(|o| {
            (
                o.name().to_owned(),
                o.spec().and_then(|s| s["size"].as_i64()).unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}

async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn watcher_relists_on_410_after_a_compaction_and_the_cache_ends_right() {
    let client = FakeClient::new();
    client.put(&widgets(), widget("a", 1));
    client.put(&widgets(), widget("b", 1));
    let (store, mut rx) = start(&client, Config::default());
    store
        .wait_until_ready()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    settle().await;

    // Changes the watcher cannot see before history is compacted away.
    client.break_watches();
    client.put(&widgets(), widget("a", 2));
    let deleted = client.delete(&widgets(), Some("ns"), "b").await;
    assert!(deleted.is_ok());
    client.put(&widgets(), widget("c", 3));
    client.compact(client.revision());
    settle().await;

    assert_eq!(sizes(&store), [("a".into(), 2), ("c".into(), 3)]);
    assert_eq!(
        client.list_calls(),
        2,
        "one list at start, one after the 410"
    );
    let inits = drain(&mut rx)
        .iter()
        .filter(|e| matches!(e, Event::Init))
        .count();
    assert_eq!(inits, 2);
}

#[tokio::test(start_paused = true)]
async fn watcher_resumes_after_a_broken_stream_without_missing_or_repeating_events() {
    let client = FakeClient::new();
    let (store, mut rx) = start(&client, Config::default());
    store
        .wait_until_ready()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut written = Vec::new();
    for round in 0..5 {
        for i in 0..3 {
            let stored = client.put(&widgets(), widget(&format!("w{i}"), round));
            written.push(stored.resource_version().to_owned());
        }
        client.break_watches();
        // More writes while the watcher is disconnected or backing off.
        let stored = client.put(&widgets(), widget("late", round));
        written.push(stored.resource_version().to_owned());
        settle().await;
    }
    let seen: Vec<String> = drain(&mut rx)
        .into_iter()
        .filter_map(|e| match e {
            Event::Apply(o) => Some(o.resource_version().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(seen, written);
    assert_eq!(client.list_calls(), 1, "resuming needs no re-list");
    assert!(client.watch_calls() >= 6);
}

#[tokio::test(start_paused = true)]
async fn an_idle_watch_is_reconnected_after_the_idle_timeout() {
    let client = FakeClient::new();
    let config = Config::default().idle_timeout(Some(Duration::from_secs(30)));
    let (store, _rx) = start(&client, config);
    store
        .wait_until_ready()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    settle().await;
    client.stall_watches();
    client.put(&widgets(), widget("a", 1));
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(store.is_empty(), "the stalled stream delivers nothing");
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(sizes(&store), [("a".into(), 1)]);
    assert_eq!(client.watch_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_bookmark_moves_the_resume_point_past_compacted_history() {
    let client = FakeClient::new();
    client.put(&widgets(), widget("a", 1));
    let (store, _rx) = start(&client, Config::default());
    store
        .wait_until_ready()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..5 {
        client.put(
            &gadgets(),
            object(&gadgets(), Some("ns"), &format!("g{i}"), json!({})),
        );
    }
    client.send_bookmarks();
    settle().await;
    client.compact(client.revision());
    client.break_watches();
    settle().await;
    assert_eq!(
        client.list_calls(),
        1,
        "the bookmark's revision is still in history"
    );
    client.put(&widgets(), widget("b", 2));
    settle().await;
    assert_eq!(sizes(&store), [("a".into(), 1), ("b".into(), 2)]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_list_is_retried_with_backoff() {
    let client = FakeClient::new();
    client.put(&widgets(), widget("a", 1));
    client.fail_next(3);
    let (store, _rx) = start(&client, Config::default());
    let started = tokio::time::Instant::now();
    store
        .wait_until_ready()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // 200 + 400 + 800 ms of backoff before the fourth attempt.
    assert_eq!(started.elapsed(), Duration::from_millis(1400));
    assert_eq!(sizes(&store), [("a".into(), 1)]);
}
