//! Discovery: which groups, versions and resources the API serves, in Kubernetes' shapes.
//!
//! ```text
//!  GET /apis                 ─► APIGroupList      (every group with a served version)
//!  GET /apis/<group>         ─► APIGroup
//!  GET /apis/<group>/<ver>   ─► APIResourceList   (plurals, kinds, scope, verbs, short names,
//!                                                  categories, subresources)
//!  GET /api                  ─► APIVersions       (the core group's versions)
//!  GET /api/v1               ─► APIResourceList   (core kinds, when any are registered)
//! ```
//!
//! Clients (the CLI, kubectl) resolve a kind name, plural or short name to its URL from
//! these lists; they change as CRDs are registered.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use stead_api::{Kind, KindVersion};

use super::RestApi;
use super::handlers::json_response;
use super::status::ApiError;

/// The verbs every collection serves.
const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Versions served per group, in registration order (first = preferred).
fn served_groups(api: &RestApi) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for kind in api.registry().kinds() {
        let versions = groups.entry(kind.group.clone()).or_default();
        for version in kind.served_versions() {
            if !versions.contains(&version.name) {
                versions.push(version.name.clone());
            }
        }
    }
    groups.retain(|_, versions| !versions.is_empty());
    groups
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = entries.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": entries, "preferredVersion": preferred})
}

/// One kind's entries in an APIResourceList: the collection and its subresources.
fn resource_entries(kind: &Kind, version: &KindVersion) -> Vec<Value> {
    let namespaced = kind.scope.is_namespaced();
    let mut main = json!({
        "name": kind.names.plural,
        "singularName": kind.names.singular,
        "namespaced": namespaced,
        "kind": kind.names.kind,
        "verbs": VERBS,
    });
    if !kind.names.short_names.is_empty() {
        main["shortNames"] = json!(kind.names.short_names);
    }
    if !kind.names.categories.is_empty() {
        main["categories"] = json!(kind.names.categories);
    }
    let mut entries = vec![main];
    if version.subresources.status {
        entries.push(json!({
            "name": format!("{}/status", kind.names.plural),
            "singularName": "",
            "namespaced": namespaced,
            "kind": kind.names.kind,
            "verbs": ["get", "patch", "update"],
        }));
    }
    entries
}

/// The APIResourceList of `group/version`, or `None` when nothing is served there.
fn resource_list(api: &RestApi, group: &str, version: &str) -> Option<Value> {
    let registry = api.registry();
    let mut resources = Vec::new();
    let mut found = false;
    for kind in registry.kinds().filter(|k| k.group == group) {
        if let Some(v) = kind.served_versions().find(|v| v.name == version) {
            found = true;
            resources.extend(resource_entries(kind, v));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    (found || (group.is_empty() && version == "v1")).then(|| {
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        })
    })
}

fn not_found(path: &str) -> ApiError {
    ApiError::path_not_found(path)
}

/// Answers a discovery path (`/apis`, `/apis/<g>`, `/apis/<g>/<v>`, `/api`, `/api/v1`), or
/// `None` when `path` is not one.
pub(crate) fn discover(api: &RestApi, path: &str) -> Option<Result<Response, ApiError>> {
    let trimmed = path.trim_end_matches('/');
    let answer = |value: Option<Value>| {
        Some(
            value
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(|| not_found(path)),
        )
    };
    if trimmed == "/api" {
        return answer(Some(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [],
        })));
    }
    if let Some(version) = trimmed.strip_prefix("/api/")
        && !version.contains('/')
    {
        return answer(resource_list(api, "", version));
    }
    if trimmed == "/apis" {
        let groups: Vec<Value> = served_groups(api)
            .iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, versions)| group_json(name, versions))
            .collect();
        return answer(Some(
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
        ));
    }
    let rest = trimmed.strip_prefix("/apis/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        [group] => {
            let groups = served_groups(api);
            answer(groups.get(*group).map(|versions| {
                let mut value = group_json(group, versions);
                value["kind"] = json!("APIGroup");
                value["apiVersion"] = json!("v1");
                value
            }))
        }
        [group, version] => answer(resource_list(api, group, version)),
        _ => None,
    }
}

/// `GET /version`: Kubernetes' version.Info. The minor version is the Kubernetes API level
/// whose shapes the server follows, so clients do not warn about skew.
pub(crate) async fn version() -> Response {
    let platform = format!("{}/{}", std::env::consts::OS, arch());
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "32",
            "gitVersion": format!("v1.32.0+stead-{}", env!("CARGO_PKG_VERSION")),
            "gitCommit": "",
            "gitTreeState": "",
            "buildDate": "",
            "goVersion": "",
            "compiler": "rustc",
            "platform": platform,
        }),
    )
}

/// The architecture as Go names it.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
