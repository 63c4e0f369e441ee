//! `Event` (core `v1`, namespaced): a record of something that happened to an object, shown
//! by `describe` (`stead describe` and `kubectl describe`). The shape is Kubernetes' core/v1
//! Event (`involvedObject`, `reason`, `message`, `source`, `count`, `firstTimestamp`,
//! `lastTimestamp`, ...), stored under `/registry/events/<namespace>/<name>`.
//!
//! Events can be selected by the fields `kubectl describe` asks for:
//! `involvedObject.{kind,namespace,name,uid,apiVersion,resourceVersion,fieldPath}`,
//! `reason`, `type`, `source` and `reportingComponent`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CORE_GROUP, CORE_VERSION};
use crate::dynamic::DynamicObject;
use crate::meta::{ObjectMeta, Timestamp, TypeMeta, null_as_default};
use crate::registry::PrinterColumn;
use crate::resource::{Resource, Scope};

/// An event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "Something that happened to an object, for describe-style history.")]
pub struct Event {
    /// `v1`, `Event`.
    #[serde(flatten)]
    pub types: TypeMeta,
    /// Standard metadata; by convention the name is `<involvedObject.name>.<unique suffix>`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The object this event is about.
    #[serde(default)]
    pub involved_object: ObjectReference,
    /// Short CamelCase reason, e.g. `Restarted`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub reason: String,
    /// Human-readable description.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub message: String,
    /// The component that reported it.
    #[serde(default, skip_serializing_if = "EventSource::is_empty")]
    pub source: EventSource,
    /// When it first happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<Timestamp>,
    /// When it last happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<Timestamp>,
    /// How many times it happened.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: i32,
    /// `Normal` or `Warning`.
    #[serde(rename = "type", default)]
    pub type_: EventType,
    /// When it happened, with microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<Timestamp>,
    /// Repetition data of a recurring event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<EventSeries>,
    /// What was done (or failed), e.g. `Start`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub action: String,
    /// A second object involved, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<ObjectReference>,
    /// The controller that emitted it, e.g. `stead.dev/processset-controller`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub reporting_component: String,
    /// Which instance of that controller.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub reporting_instance: String,
}

/// The fields Events can be selected by, as Kubernetes allows them.
const SELECTABLE_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Who reported an event (`v1.EventSource`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub component: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub host: String,
}

impl EventSource {
    fn is_empty(&self) -> bool {
        self.component.is_empty() && self.host.is_empty()
    }
}

/// Whether an event is routine or needs attention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EventType {
    /// Routine.
    #[default]
    Normal,
    /// Something may be wrong.
    Warning,
}

/// Repetition data of a recurring event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSeries {
    /// How many times it happened.
    pub count: i32,
    /// When it last happened.
    pub last_observed_time: Timestamp,
}

/// A pointer to an object (`v1.ObjectReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// `apiVersion` of the object.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub api_version: String,
    /// Kind of the object.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub kind: String,
    /// Namespace of the object.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub namespace: String,
    /// Name of the object.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub name: String,
    /// uid of the object.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub uid: String,
    /// resourceVersion the event refers to.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub resource_version: String,
    /// A field within the object, e.g. `spec.containers{web}`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub field_path: String,
}

impl ObjectReference {
    /// A reference to an object.
    pub fn to(object: &DynamicObject) -> Self {
        ObjectReference {
            api_version: object.api_version().to_owned(),
            kind: object.kind().to_owned(),
            namespace: object.namespace().unwrap_or_default().to_owned(),
            name: object.name().to_owned(),
            uid: object.uid().to_owned(),
            resource_version: object.resource_version().to_owned(),
            field_path: String::new(),
        }
    }
}

impl Event {
    /// A new event about `involved`, named `<involved.name>.<suffix>` in its namespace
    /// (`default` for cluster-scoped objects), happened once at `now`.
    pub fn about(
        involved: ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
        now: Timestamp,
        suffix: &str,
    ) -> Self {
        let name = format!("{}.{suffix}", involved.name);
        let namespace = if involved.namespace.is_empty() {
            "default"
        } else {
            &involved.namespace
        };
        Event {
            types: Self::type_meta(),
            metadata: ObjectMeta::namespaced(namespace, name),
            reason: reason.to_owned(),
            message: message.to_owned(),
            type_,
            first_timestamp: Some(now.truncated_to_seconds()),
            last_timestamp: Some(now.truncated_to_seconds()),
            count: 1,
            event_time: Some(now),
            involved_object: involved,
            ..Event::default()
        }
    }

    /// Whether this event is about the object with this uid (or, for references without a
    /// uid, this kind, namespace and name).
    pub fn is_about(&self, object: &DynamicObject) -> bool {
        let r = &self.involved_object;
        if !r.uid.is_empty() && !object.uid().is_empty() {
            return r.uid == object.uid();
        }
        r.kind == object.kind()
            && r.name == object.name()
            && r.namespace == object.namespace().unwrap_or_default()
    }
}

impl Resource for Event {
    const GROUP: &'static str = CORE_GROUP;
    const VERSION: &'static str = CORE_VERSION;
    const KIND: &'static str = "Event";
    const PLURAL: &'static str = "events";
    const SINGULAR: &'static str = "event";
    const SHORT_NAMES: &'static [&'static str] = &["ev"];
    const SCOPE: Scope = Scope::Namespaced;

    fn selectable_fields() -> &'static [&'static str] {
        SELECTABLE_FIELDS
    }

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("Last Seen", "date", ".lastTimestamp"),
            PrinterColumn::new("Type", "string", ".type"),
            PrinterColumn::new("Reason", "string", ".reason"),
            PrinterColumn::new("Object", "string", ".involvedObject.name"),
            PrinterColumn::new("Message", "string", ".message"),
            PrinterColumn {
                format: "name".into(),
                priority: 1,
                ..PrinterColumn::new("Name", "string", ".metadata.name")
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn process() -> DynamicObject {
        DynamicObject::from_value(json!({
            "apiVersion": "stead.dev/v1", "kind": "Process",
            "metadata": {"name": "web-0", "namespace": "apps", "uid": "u-7", "resourceVersion": "12"}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn an_event_about_an_object_names_and_references_it() {
        let now = Timestamp::from_unix(0, 0);
        let event = Event::about(
            ObjectReference::to(&process()),
            EventType::Warning,
            "BackOff",
            "restarting",
            now,
            "17a",
        );
        assert_eq!(
            serde_json::to_value(&event).ok(),
            Some(json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "web-0.17a", "namespace": "apps"},
                "involvedObject": {"apiVersion": "stead.dev/v1", "kind": "Process",
                                   "namespace": "apps", "name": "web-0", "uid": "u-7",
                                   "resourceVersion": "12"},
                "reason": "BackOff", "message": "restarting", "type": "Warning",
                "firstTimestamp": "1970-01-01T00:00:00Z", "lastTimestamp": "1970-01-01T00:00:00Z",
                "count": 1, "eventTime": "1970-01-01T00:00:00Z"
            }))
        );
        assert!(event.is_about(&process()));
    }

    #[test]
    fn events_match_by_uid_or_by_name_when_no_uid_is_known() {
        let mut reference = ObjectReference::to(&process());
        let mut event = Event::about(
            reference.clone(),
            EventType::Normal,
            "R",
            "n",
            Timestamp::UNIX_EPOCH,
            "1",
        );
        let mut other = process();
        other.set_meta_str("uid", "u-8");
        assert!(
            !event.is_about(&other),
            "same name, different uid: a recreated object"
        );
        reference.uid.clear();
        event.involved_object = reference;
        assert!(event.is_about(&other));
        other.set_meta_str("name", "web-1");
        assert!(!event.is_about(&other));
    }
}
