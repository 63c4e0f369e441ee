//! Which kinds the server serves, from its discovery documents (`/apis`, `/api/v1`), and how
//! a name on the command line (`ProcessSet`, `processsets`, `ps`, `processset.stead.dev`)
//! resolves to one.

use anyhow::{Context, bail};
use serde_json::Value;
use stead_controller::client::Method;
use stead_controller::client::{ApiResource, HttpClient};

/// One served kind.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) resource: ApiResource,
    singular: String,
    short_names: Vec<String>,
}

impl Entry {
    /// `kind.group` in lower case, as messages name a kind (`processset.stead.dev`).
    pub(crate) fn qualified(&self) -> String {
        let kind = self.resource.kind.to_lowercase();
        if self.resource.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.resource.group)
        }
    }

    fn answers_to(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        self.resource.kind.to_lowercase() == name
            || self.resource.plural == name
            || self.singular == name
            || self.short_names.contains(&name)
    }
}

/// Every kind the server serves, preferred versions first.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    entries: Vec<Entry>,
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Catalog {
    /// Reads the server's discovery documents.
    pub(crate) async fn load(client: &HttpClient) -> anyhow::Result<Catalog> {
        let groups = client
            .request_json(Method::GET, "/apis", None)
            .await
            .with_context(|| format!("reading the API groups of {}", client.base()))?;
        let mut paths = vec!["/api/v1".to_owned()];
        for group in groups
            .get("groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for version in group
                .get("versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(gv) = version.get("groupVersion").and_then(Value::as_str) {
                    paths.push(format!("/apis/{gv}"));
                }
            }
        }
        let mut catalog = Catalog::default();
        for path in paths {
            let list = match client.request_json(Method::GET, &path, None).await {
                Ok(list) => list,
                // A group removed between the two reads.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {path}")),
            };
            catalog.add_list(&list);
        }
        Ok(catalog)
    }

    fn add_list(&mut self, list: &Value) {
        let group_version = list
            .get("groupVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (group, version) = match group_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", group_version),
        };
        for item in list
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or_default();
            let plural = text("name");
            if plural.is_empty() || plural.contains('/') {
                continue;
            }
            self.entries.push(Entry {
                resource: ApiResource::new(
                    group,
                    version,
                    text("kind"),
                    plural,
                    item.get("namespaced")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                ),
                singular: text("singularName").to_owned(),
                short_names: strings(item.get("shortNames")),
            });
        }
    }

    /// The kind a command-line name means: a kind, plural, singular or short name, optionally
    /// qualified by its group (`processsets.stead.dev`).
    pub(crate) fn resolve(&self, name: &str) -> anyhow::Result<&Entry> {
        let (bare, group) = match name.split_once('.') {
            Some((bare, group)) => (bare, Some(group)),
            None => (name, None),
        };
        let found = self
            .entries
            .iter()
            .find(|e| e.answers_to(bare) && group.is_none_or(|g| e.resource.group == g));
        match found {
            Some(entry) => Ok(entry),
            None => bail!(
                "the server doesn't have a resource type {name:?}; known kinds: {}",
                self.known()
            ),
        }
    }

    /// The kind of a manifest object, by `apiVersion` and `kind`.
    pub(crate) fn for_object(&self, api_version: &str, kind: &str) -> anyhow::Result<&Entry> {
        if api_version.is_empty() || kind.is_empty() {
            bail!(
                "apiVersion and kind are required; known kinds: {}",
                self.known()
            );
        }
        self.entries
            .iter()
            .find(|e| e.resource.api_version() == api_version && e.resource.kind == kind)
            .with_context(|| {
                format!(
                    "no kind {kind:?} is registered for version {api_version:?}; known kinds: {}",
                    self.known()
                )
            })
    }

    /// `apiVersion/Kind` of every served kind, for error messages.
    fn known(&self) -> String {
        let mut names: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{}/{}", e.resource.api_version(), e.resource.kind))
            .collect();
        names.sort();
        names.dedup();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        let mut catalog = Catalog::default();
        catalog.add_list(&json!({
            "groupVersion": "stead.dev/v1",
            "resources": [
                {"name": "processsets", "singularName": "processset", "kind": "ProcessSet",
                 "namespaced": true, "shortNames": ["ps"]},
                {"name": "processsets/status", "kind": "ProcessSet", "namespaced": true},
                {"name": "namespaces", "singularName": "namespace", "kind": "Namespace",
                 "namespaced": false, "shortNames": ["ns"]},
            ]
        }));
        catalog.add_list(&json!({
            "groupVersion": "example.com/v1",
            "resources": [{"name": "widgets", "singularName": "widget", "kind": "Widget",
                           "namespaced": true}]
        }));
        catalog
    }

    #[test]
    fn names_resolve_by_kind_plural_singular_short_name_and_group() {
        let catalog = catalog();
        for name in [
            "ProcessSet",
            "processsets",
            "processset",
            "ps",
            "ps.stead.dev",
        ] {
            let entry = catalog.resolve(name).map(|e| e.resource.plural.clone());
            assert_eq!(entry.ok().as_deref(), Some("processsets"), "{name}");
        }
        assert!(catalog.resolve("ps.example.com").is_err());
        let err = catalog.resolve("gizmo").err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("stead.dev/v1/ProcessSet")
                    && e.contains("example.com/v1/Widget")),
            "{err:?}"
        );
    }

    #[test]
    fn objects_resolve_by_api_version_and_kind() {
        let catalog = catalog();
        let entry = catalog.for_object("example.com/v1", "Widget");
        assert_eq!(
            entry.ok().map(Entry::qualified).as_deref(),
            Some("widget.example.com")
        );
        let err = catalog.for_object("example.com/v2", "Widget").err();
        assert!(
            err.is_some_and(|e| e.to_string().contains("known kinds")),
            "unknown versions list the known kinds"
        );
        assert!(catalog.resolve("processsets/status").is_err());
    }
}
