//! [`ObjectRef`]: the key of an object within one kind — its namespace and name.
//!
//! The cache, the queue and the scheduler are all keyed by `ObjectRef`; the kind itself is
//! implied by the controller or store that holds the key.

use std::fmt;

use stead_api::{DynamicObject, OwnerReference};

use crate::client::ApiResource;

/// Namespace (for namespaced kinds) and name of one object.
///
/// ```
/// use stead_controller::ObjectRef;
/// let key = ObjectRef::new("web").within("default");
/// assert_eq!(key.to_string(), "default/web");
/// assert_eq!(ObjectRef::new("cluster-wide").to_string(), "cluster-wide");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// A cluster-scoped key.
    pub fn new(name: impl Into<String>) -> Self {
        ObjectRef {
            namespace: None,
            name: name.into(),
        }
    }

    /// The same name inside `namespace`.
    #[must_use]
    pub fn within(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The key of an object.
    pub fn from_obj(object: &DynamicObject) -> Self {
        ObjectRef {
            namespace: object.namespace().map(str::to_owned),
            name: object.name().to_owned(),
        }
    }

    /// The owner an owner reference of `child` points at, if the reference names an object of
    /// `owner` kind. Owners of namespaced kinds live in the child's namespace.
    pub fn from_owner_reference(
        child: &DynamicObject,
        reference: &OwnerReference,
        owner: &ApiResource,
    ) -> Option<Self> {
        if reference.kind != owner.kind || reference.api_version != owner.api_version() {
            return None;
        }
        Some(ObjectRef {
            namespace: if owner.namespaced {
                child.namespace().map(str::to_owned)
            } else {
                None
            },
            name: reference.name.clone(),
        })
    }

    /// The namespace as a borrowed `Option<&str>`, as the client calls take it.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}
