//! Events about objects (`stead.dev/v1` Event), for `describe` and the demo's live output.

use stead_api::kinds::{Event, EventType, ObjectReference};
use stead_api::{DynamicObject, ObjectMeta, Resource, Timestamp};

use crate::client::{ApiResource, Client};

/// Where Events live.
pub fn event_resource() -> ApiResource {
    ApiResource::new(
        Event::GROUP,
        Event::VERSION,
        Event::KIND,
        Event::PLURAL,
        true,
    )
}

/// Records what a controller did to `object`. Failures are logged, never fatal: an event is
/// history, not state.
pub async fn record<C: Client>(
    client: &C,
    controller: &str,
    object: &DynamicObject,
    warning: bool,
    reason: &str,
    note: String,
) {
    let namespace = object.namespace().unwrap_or("default").to_owned();
    let suffix: u64 = rand_suffix();
    let mut event = Event {
        metadata: ObjectMeta::namespaced(&namespace, format!("{}.{suffix:x}", object.name())),
        regarding: ObjectReference {
            api_version: object.api_version().to_owned(),
            kind: object.kind().to_owned(),
            name: object.name().to_owned(),
            namespace: object.namespace().unwrap_or_default().to_owned(),
            uid: object.uid().to_owned(),
            ..ObjectReference::default()
        },
        reason: reason.to_owned(),
        note,
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        action: reason.to_owned(),
        reporting_controller: controller.to_owned(),
        reporting_instance: controller.to_owned(),
        event_time: Some(Timestamp::from_system_time(std::time::SystemTime::now())),
        ..Event::default()
    };
    event.types = Event::type_meta();
    let object = match DynamicObject::from_resource(&event) {
        Ok(object) => object,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode an event");
            return;
        }
    };
    if let Err(e) = client.create(&event_resource(), &object).await {
        tracing::debug!(error = %e, reason, "cannot record an event");
    }
}

/// A unique-enough suffix for event names (time and a counter).
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(48)
}
