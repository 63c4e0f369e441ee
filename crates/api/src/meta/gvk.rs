//! Identifying kinds and resources: `apiVersion`/`kind` ([`TypeMeta`]) and the group/version
//! tuples built from them ([`GroupVersionKind`], [`GroupVersionResource`], [`GroupKind`]).
//!
//! `apiVersion` is `<group>/<version>` (`stead.dev/v1`), or just `<version>` for the core group
//! (`v1`), exactly as in Kubernetes.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An `apiVersion` string that is not `<version>` or `<group>/<version>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid apiVersion {api_version:?}: expected <group>/<version> or <version>")]
pub struct ApiVersionError {
    /// The rejected text.
    pub api_version: String,
}

/// The `apiVersion` and `kind` every serialized object starts with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypeMeta {
    /// `<group>/<version>` of the schema this object follows, e.g. `stead.dev/v1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// The kind of object, in CamelCase, e.g. `Lease`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

impl TypeMeta {
    /// `apiVersion` and `kind` for a group/version/kind.
    pub fn new(gvk: &GroupVersionKind) -> Self {
        TypeMeta {
            api_version: gvk.api_version(),
            kind: gvk.kind.clone(),
        }
    }

    /// The group/version/kind these fields name.
    pub fn gvk(&self) -> Result<GroupVersionKind, ApiVersionError> {
        GroupVersionKind::from_api_version(&self.api_version, &self.kind)
    }
}

/// An API group and version, e.g. (`stead.dev`, `v1`); the core group is the empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupVersion {
    /// API group (`""` for the core group).
    pub group: String,
    /// Version within the group, e.g. `v1`.
    pub version: String,
}

impl GroupVersion {
    /// A group/version pair.
    pub fn new(group: impl Into<String>, version: impl Into<String>) -> Self {
        GroupVersion {
            group: group.into(),
            version: version.into(),
        }
    }

    /// Splits an `apiVersion`: `stead.dev/v1` -> (`stead.dev`, `v1`), `v1` -> (``, `v1`).
    pub fn parse(api_version: &str) -> Result<Self, ApiVersionError> {
        let invalid = || ApiVersionError {
            api_version: api_version.to_owned(),
        };
        let (group, version) = match api_version.split_once('/') {
            None => ("", api_version),
            Some((group, version)) => {
                if group.is_empty() || version.contains('/') {
                    return Err(invalid());
                }
                (group, version)
            }
        };
        if version.is_empty() || version.chars().any(char::is_whitespace) {
            return Err(invalid());
        }
        Ok(GroupVersion::new(group, version))
    }

    /// The `apiVersion` string for this pair.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for GroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.api_version())
    }
}

/// A kind within a group, across versions: `Lease.stead.dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKind {
    /// API group.
    pub group: String,
    /// CamelCase kind.
    pub kind: String,
}

impl GroupKind {
    /// A group/kind pair.
    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> Self {
        GroupKind {
            group: group.into(),
            kind: kind.into(),
        }
    }
}

impl fmt::Display for GroupKind {
    /// `Kind.group` (just `Kind` in the core group), the form Kubernetes uses in messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

/// A versioned kind: what `apiVersion` + `kind` of an object name.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupVersionKind {
    /// API group (`""` for the core group).
    pub group: String,
    /// Version within the group.
    pub version: String,
    /// CamelCase kind.
    pub kind: String,
}

impl GroupVersionKind {
    /// A group/version/kind triple.
    pub fn new(
        group: impl Into<String>,
        version: impl Into<String>,
        kind: impl Into<String>,
    ) -> Self {
        GroupVersionKind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    /// From an object's `apiVersion` and `kind` fields.
    pub fn from_api_version(api_version: &str, kind: &str) -> Result<Self, ApiVersionError> {
        let gv = GroupVersion::parse(api_version)?;
        Ok(GroupVersionKind {
            group: gv.group,
            version: gv.version,
            kind: kind.to_owned(),
        })
    }

    /// The `apiVersion` string, e.g. `stead.dev/v1`.
    pub fn api_version(&self) -> String {
        self.group_version().api_version()
    }

    /// The group and version.
    pub fn group_version(&self) -> GroupVersion {
        GroupVersion::new(&self.group, &self.version)
    }

    /// The group and kind, without version.
    pub fn group_kind(&self) -> GroupKind {
        GroupKind::new(&self.group, &self.kind)
    }
}

impl fmt::Display for GroupVersionKind {
    /// `stead.dev/v1, Kind=Lease`, as Go's `schema.GroupVersionKind` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, Kind={}", self.api_version(), self.kind)
    }
}

/// A versioned resource: the URL form of a kind (`/apis/<group>/<version>/<resource>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupVersionResource {
    /// API group (`""` for the core group).
    pub group: String,
    /// Version within the group.
    pub version: String,
    /// Lowercase plural resource name, e.g. `leases`.
    pub resource: String,
}

impl GroupVersionResource {
    /// A group/version/resource triple.
    pub fn new(
        group: impl Into<String>,
        version: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        GroupVersionResource {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
        }
    }

    /// The `apiVersion` string of this resource's group and version.
    pub fn api_version(&self) -> String {
        GroupVersion::new(&self.group, &self.version).api_version()
    }
}

impl fmt::Display for GroupVersionResource {
    /// `stead.dev/v1, Resource=leases`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, Resource={}", self.api_version(), self.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_split_into_group_and_version() {
        let cases = [
            ("stead.dev/v1", Some(("stead.dev", "v1"))),
            (
                "apiextensions.k8s.io/v1",
                Some(("apiextensions.k8s.io", "v1")),
            ),
            ("v1", Some(("", "v1"))),
            ("", None),
            ("/v1", None),
            ("stead.dev/", None),
            ("a/b/c", None),
            ("stead.dev/v 1", None),
        ];
        for (input, want) in cases {
            let got = GroupVersion::parse(input).ok();
            let got = got
                .as_ref()
                .map(|gv| (gv.group.as_str(), gv.version.as_str()));
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn api_version_round_trips_through_the_group_version() {
        for text in ["stead.dev/v1", "v1", "example.com/v1beta1"] {
            let gvk = GroupVersionKind::from_api_version(text, "Thing").map(|g| g.api_version());
            assert_eq!(gvk.as_deref(), Ok(text));
        }
    }

    #[test]
    fn kinds_and_resources_print_like_kubernetes() {
        let gvk = GroupVersionKind::new("stead.dev", "v1", "Lease");
        assert_eq!(gvk.to_string(), "stead.dev/v1, Kind=Lease");
        assert_eq!(gvk.group_kind().to_string(), "Lease.stead.dev");
        assert_eq!(GroupKind::new("", "Pod").to_string(), "Pod");
        let gvr = GroupVersionResource::new("stead.dev", "v1", "leases");
        assert_eq!(gvr.to_string(), "stead.dev/v1, Resource=leases");
    }

    #[test]
    fn type_meta_omits_empty_fields_and_names_its_kind() {
        let tm = TypeMeta::new(&GroupVersionKind::new("stead.dev", "v1", "Lease"));
        let json = serde_json::to_value(&tm).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"apiVersion": "stead.dev/v1", "kind": "Lease"})
        );
        assert_eq!(
            serde_json::to_value(TypeMeta::default()).ok(),
            Some(serde_json::json!({}))
        );
        assert_eq!(tm.gvk().map(|g| g.kind), Ok("Lease".to_owned()));
    }
}
