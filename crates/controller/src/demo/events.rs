//! Events about objects (core `v1` Event), for `describe` and the demo's live output.

use stead_api::kinds::{Event, EventType, ObjectReference};
use stead_api::{DynamicObject, Resource, Timestamp};

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
    message: String,
) {
    let type_ = if warning {
        EventType::Warning
    } else {
        EventType::Normal
    };
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let suffix = format!("{:x}", rand_suffix());
    let mut event = Event::about(
        ObjectReference::to(object),
        type_,
        reason,
        &message,
        now,
        &suffix,
    );
    let component = format!("stead.dev/{controller}");
    event.source.component = component.clone();
    event.reporting_component = component;
    event.reporting_instance = controller.to_owned();
    event.action = reason.to_owned();
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
