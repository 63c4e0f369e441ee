//! Discovery: which groups, versions and resources the API serves, in Kubernetes' shapes.
//!
//! ```text
//!  GET /apis                 ─► APIGroupList      (every group with a served version)
//!  GET /apis/<group>         ─► APIGroup
//!  GET /apis/<group>/<ver>   ─► APIResourceList   (plurals, kinds, scope, verbs, short names,
//!                                                  categories, subresources)
//!  GET /api                  ─► APIVersions       (the core group's versions)
//!  GET /api/v1               ─► APIResourceList   (core kinds)
//! ```
//!
//! `/api` and `/apis` also answer aggregated discovery (`apidiscovery.k8s.io/v2`
//! `APIGroupDiscoveryList`: every group, version and resource in one response) when the
//! `Accept` header asks for it, as kubectl does; other clients get the lists above.
//!
//! Clients (the CLI, kubectl) resolve a kind name, plural or short name to its URL from
//! these lists; they change as CRDs are registered.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
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
    if version.subresources.scale.is_some() {
        entries.push(json!({
            "name": format!("{}/scale", kind.names.plural),
            "singularName": "",
            "namespaced": namespaced,
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
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

/// The media type of aggregated discovery.
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client accepts aggregated discovery (`apidiscovery.k8s.io/v2`).
fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"as=APIGroupDiscoveryList")
                && params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&"v=v2")
        })
}

/// `scope` as aggregated discovery spells it.
fn scope_name(kind: &Kind) -> &'static str {
    if kind.scope.is_namespaced() {
        "Namespaced"
    } else {
        "Cluster"
    }
}

/// One resource of aggregated discovery, with its subresources.
fn discovery_resource(kind: &Kind, version: &KindVersion) -> Value {
    let response_kind =
        json!({"group": kind.group, "version": version.name, "kind": kind.names.kind});
    let mut subresources = Vec::new();
    if version.subresources.status {
        subresources.push(
            json!({"subresource": "status", "responseKind": response_kind,
                                 "verbs": ["get", "patch", "update"]}),
        );
    }
    if version.subresources.scale.is_some() {
        subresources.push(json!({"subresource": "scale",
                                 "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                                 "verbs": ["get", "patch", "update"]}));
    }
    let mut resource = json!({
        "resource": kind.names.plural,
        "responseKind": response_kind,
        "scope": scope_name(kind),
        "singularResource": kind.names.singular,
        "verbs": VERBS,
    });
    if !kind.names.short_names.is_empty() {
        resource["shortNames"] = json!(kind.names.short_names);
    }
    if !kind.names.categories.is_empty() {
        resource["categories"] = json!(kind.names.categories);
    }
    if !subresources.is_empty() {
        resource["subresources"] = Value::Array(subresources);
    }
    resource
}

/// The APIGroupDiscoveryList of the core group (`core`) or of every named group.
fn aggregated(api: &RestApi, core: bool) -> Value {
    let groups = served_groups(api);
    let registry = api.registry();
    let items: Vec<Value> = groups
        .iter()
        .filter(|(name, _)| name.is_empty() == core)
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = registry
                        .kinds()
                        .filter(|k| &k.group == name)
                        .filter_map(|k| {
                            let v = k.served_versions().find(|v| &v.name == version)?;
                            Some(discovery_resource(k, v))
                        })
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": name}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// Answers a discovery path (`/apis`, `/apis/<g>`, `/apis/<g>/<v>`, `/api`, `/api/v1`), or
/// `None` when `path` is not one.
pub(crate) fn discover(
    api: &RestApi,
    path: &str,
    headers: &HeaderMap,
) -> Option<Result<Response, ApiError>> {
    let trimmed = path.trim_end_matches('/');
    if (trimmed == "/api" || trimmed == "/apis") && wants_aggregated(headers) {
        let body = aggregated(api, trimmed == "/api").to_string();
        return Some(Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, AGGREGATED)],
            body,
        )
            .into_response()));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_is_chosen_by_the_accept_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
                .parse()
                .expect("header"),
        );
        assert!(wants_aggregated(&headers));
        headers.insert(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
                .parse()
                .expect("header"),
        );
        assert!(!wants_aggregated(&headers), "only v2 is served");
        headers.insert(header::ACCEPT, "application/json".parse().expect("header"));
        assert!(!wants_aggregated(&headers));
    }

    #[test]
    fn discovery_resources_list_scope_subresources_and_response_kind() {
        let registry = stead_api::KindRegistry::with_builtins().unwrap_or_default();
        let Some(ns) = registry.kind("", "Namespace") else {
            panic!("no Namespace kind");
        };
        let resource = discovery_resource(ns, &ns.versions[0]);
        assert_eq!(resource["scope"], "Cluster");
        assert_eq!(resource["shortNames"], json!(["ns"]));
        assert_eq!(
            resource["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Namespace"})
        );
        assert_eq!(resource["subresources"][0]["subresource"], "status");
    }
}
