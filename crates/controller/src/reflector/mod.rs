//! Caches fed by watchers: [`reflector`] passes a watcher's events through while applying
//! them to a [`Writer`], whose [`Store`] readers see the kind's current state.
//!
//! ```text
//!  watcher(client, kind) ──► reflector(writer, _) ──► events, unchanged, to the caller
//!                                  │
//!                                  └─► Writer ──► Store (get / state / wait_until_ready)
//! ```

mod store;

use futures::{Stream, StreamExt};

use crate::watcher::Event;

pub use store::{Store, Writer, WriterDropped};

/// Applies each event of `stream` to `writer` and passes it on.
pub fn reflector<S>(mut writer: Writer, stream: S) -> impl Stream<Item = Event> + Send
where
    S: Stream<Item = Event> + Send,
{
    stream.map(move |event| {
        writer.apply_watcher_event(&event);
        event
    })
}
