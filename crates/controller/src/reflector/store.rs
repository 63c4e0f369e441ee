//! [`Store`] (the read side of a cache) and [`Writer`] (the side a watcher feeds).
//!
//! ```text
//!  watcher events ─► Writer ─┬─ Init / InitApply: a new map is built aside
//!                            ├─ InitDone: the new map replaces the old one in one swap,
//!                            │            and the store becomes ready
//!                            └─ Apply / Delete: the live map changes in place
//!  Store (cloned freely) ◄── get / state / len: a short read lock, never held across .await
//! ```
//!
//! Readers never see half a re-list: until `InitDone` they keep seeing the previous state.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use stead_api::DynamicObject;
use tokio::sync::watch;

use crate::ObjectRef;
use crate::watcher::Event;

type Map = HashMap<ObjectRef, Arc<DynamicObject>>;

/// The writer went away before the store was ever ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cache writer was dropped before the first complete list")]
pub struct WriterDropped;

/// A read-only view of a cache; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    map: Arc<RwLock<Map>>,
    ready: watch::Receiver<bool>,
}

impl Store {
    /// The cached object under `key`.
    pub fn get(&self, key: &ObjectRef) -> Option<Arc<DynamicObject>> {
        self.read(|map| map.get(key).cloned())
    }

    /// Every cached object (in no particular order).
    pub fn state(&self) -> Vec<Arc<DynamicObject>> {
        self.read(|map| map.values().cloned().collect())
    }

    /// Every cached key.
    pub fn keys(&self) -> Vec<ObjectRef> {
        self.read(|map| map.keys().cloned().collect())
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.read(HashMap::len)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a first complete list has been loaded.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits for the first complete list.
    pub async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| WriterDropped)
    }

    fn read<T>(&self, f: impl FnOnce(&Map) -> T) -> T {
        // Writers replace whole entries, so a poisoned map is still consistent.
        f(&self.map.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The writing side of a cache, driven by watcher events.
#[derive(Debug)]
pub struct Writer {
    map: Arc<RwLock<Map>>,
    ready: watch::Sender<bool>,
    /// The state being re-listed, between `Init` and `InitDone`.
    buffer: Option<Map>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

impl Writer {
    /// An empty, not yet ready cache.
    pub fn new() -> Self {
        Writer {
            map: Arc::new(RwLock::new(HashMap::new())),
            ready: watch::channel(false).0,
            buffer: None,
        }
    }

    /// A reader of this cache.
    pub fn as_reader(&self) -> Store {
        Store {
            map: Arc::clone(&self.map),
            ready: self.ready.subscribe(),
        }
    }

    /// Applies one watcher event.
    pub fn apply_watcher_event(&mut self, event: &Event) {
        match event {
            Event::Init => self.buffer = Some(HashMap::new()),
            Event::InitApply(object) => {
                let buffer = self.buffer.get_or_insert_with(HashMap::new);
                buffer.insert(ObjectRef::from_obj(object), Arc::new(object.clone()));
            }
            Event::InitDone => {
                let fresh = self.buffer.take().unwrap_or_default();
                *self.map.write().unwrap_or_else(PoisonError::into_inner) = fresh;
                self.ready.send_replace(true);
            }
            Event::Apply(object) => {
                let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
                map.insert(ObjectRef::from_obj(object), Arc::new(object.clone()));
            }
            Event::Delete(object) => {
                let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
                map.remove(&ObjectRef::from_obj(object));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(name: &str, size: i64) -> DynamicObject {
        DynamicObject::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": "ns"}, "spec": {"size": size}
        }))
        .unwrap_or_default()
    }

    fn sizes(store: &Store) -> Vec<(String, i64)> {
        let mut out: Vec<_> = store
            .state()
            .iter()
            .map(|o| {
                let size = o.spec().and_then(|s| s["size"].as_i64()).unwrap_or(0);
                (o.name().to_owned(), size)
            })
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_relist_is_invisible_until_init_done_and_then_replaces_everything() {
        let mut writer = Writer::new();
        let store = writer.as_reader();
        assert!(!store.is_ready());
        for event in [
            Event::Init,
            Event::InitApply(obj("a", 1)),
            Event::InitApply(obj("b", 1)),
            Event::InitDone,
        ] {
            writer.apply_watcher_event(&event);
        }
        store
            .wait_until_ready()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        writer.apply_watcher_event(&Event::Apply(obj("a", 2)));
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(obj("c", 3)));
        assert_eq!(
            sizes(&store),
            [("a".into(), 2), ("b".into(), 1)],
            "half a re-list is not visible"
        );
        writer.apply_watcher_event(&Event::InitDone);
        assert_eq!(sizes(&store), [("c".into(), 3)]);
        writer.apply_watcher_event(&Event::Delete(obj("c", 3)));
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn waiting_for_readiness_fails_when_the_writer_is_dropped() {
        let writer = Writer::new();
        let store = writer.as_reader();
        drop(writer);
        assert_eq!(store.wait_until_ready().await, Err(WriterDropped));
    }
}
