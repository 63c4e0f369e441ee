//! What a URL names: `/apis/<group>/<version>/[namespaces/<ns>/]<plural>[/<name>[/<sub>]]`
//! (or `/api/v1/...` for the core group, `""`) split and resolved against the kind registry.
//! `<sub>` is `status` or `scale`.

use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use stead_api::lifecycle::KindRules;
use stead_api::{GroupVersionResource, Kind, KindVersion, storage_prefix};

use super::status::{ApiError, Subject, unknown_resource};
use super::{CRD_GROUP, CRD_PLURAL, RestApi};

/// What a URL names: a kind (at a served version), maybe a namespace, name and `/status`
/// or `/scale`.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) kind: Kind,
    pub(crate) version: KindVersion,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) status: bool,
    pub(crate) scale: bool,
}

impl Target {
    pub(crate) fn api_version(&self) -> String {
        self.kind.gvk(&self.version.name).api_version()
    }

    pub(crate) fn subject(&self) -> Subject {
        Subject {
            group: self.kind.group.clone(),
            resource: self.kind.names.plural.clone(),
            name: self.name.clone().unwrap_or_default(),
        }
    }

    /// The key prefix of a collection (every namespace when none is named).
    pub(crate) fn prefix(&self) -> String {
        storage_prefix(
            &self.kind.group,
            &self.kind.names.plural,
            self.namespace.as_deref(),
        )
    }

    pub(crate) fn key(&self, name: &str) -> String {
        self.kind.storage_key(self.namespace.as_deref(), name)
    }

    pub(crate) fn rules(&self) -> KindRules {
        KindRules::of(&self.kind, &self.version)
    }

    /// Whether this is the built-in Namespace kind.
    pub(crate) fn is_namespace_kind(&self) -> bool {
        self.kind.group == stead_api::kinds::CORE_GROUP && self.kind.names.plural == "namespaces"
    }

    pub(crate) fn is_crd(&self) -> bool {
        self.kind.group == CRD_GROUP && self.kind.names.plural == CRD_PLURAL
    }
}

/// A subresource of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    None,
    Status,
    Scale,
}

/// `/apis/<group>/<version>/[namespaces/<ns>/]<plural>[/<name>[/<sub>]]`, split.
#[derive(Debug, PartialEq, Eq)]
struct ParsedPath<'a> {
    group: &'a str,
    version: &'a str,
    namespace: Option<&'a str>,
    plural: &'a str,
    name: Option<&'a str>,
    sub: Sub,
}

fn parse_path(path: &str) -> Option<ParsedPath<'_>> {
    let path = path.trim_end_matches('/');
    let segs: Vec<&str> = if let Some(rest) = path.strip_prefix("/apis/") {
        rest.split('/').collect()
    } else {
        // The core group: `/api/v1/...` is `/apis/<"">/v1/...`.
        let rest = path.strip_prefix("/api/")?;
        std::iter::once("").chain(rest.split('/')).collect()
    };
    let (group, version, tail) = match segs.as_slice() {
        [g, v, tail @ ..] if !tail.is_empty() => (*g, *v, tail),
        _ => return None,
    };
    let core = path.starts_with("/api/");
    if (!core && group.is_empty()) || version.is_empty() || tail.iter().any(|s| s.is_empty()) {
        return None;
    }
    let (namespace, tail) = match tail {
        // A Namespace's own status, not a namespaced resource named "status".
        ["namespaces", _, "status" | "finalize"] => (None, tail),
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(*ns), tail),
        _ => (None, tail),
    };
    let (plural, name, sub) = match tail {
        [plural] => (*plural, None, Sub::None),
        [plural, name] => (*plural, Some(*name), Sub::None),
        [plural, name, "status"] => (*plural, Some(*name), Sub::Status),
        [plural, name, "scale"] => (*plural, Some(*name), Sub::Scale),
        _ => return None,
    };
    Some(ParsedPath {
        group,
        version,
        namespace,
        plural,
        name,
        sub,
    })
}

/// Resolves a path against the registry, reloading stored CRDs once on a miss.
pub(crate) async fn resolve(api: &RestApi, path: &str) -> Result<Target, ApiError> {
    let parsed = parse_path(path).ok_or_else(|| not_found_path(path))?;
    let gvr = GroupVersionResource {
        group: parsed.group.to_owned(),
        version: parsed.version.to_owned(),
        resource: parsed.plural.to_owned(),
    };
    let lookup = |api: &RestApi| {
        api.registry()
            .lookup_resource(&gvr)
            .map(|(k, v)| (k.clone(), v.clone()))
    };
    let (kind, version) = match lookup(api) {
        Ok(found) => found,
        Err(_) => {
            api.load_crds().await?;
            lookup(api).map_err(|e| {
                unknown_resource(
                    &e,
                    &Subject {
                        group: gvr.group.clone(),
                        resource: gvr.resource.clone(),
                        name: parsed.name.unwrap_or_default().to_owned(),
                    },
                )
            })?
        }
    };
    let namespaced = kind.scope.is_namespaced();
    if (parsed.namespace.is_some() && !namespaced)
        || (namespaced && parsed.namespace.is_none() && parsed.name.is_some())
    {
        return Err(not_found_path(path));
    }
    if parsed.sub == Sub::Scale && version.subresources.scale.is_none() {
        return Err(not_found_path(path));
    }
    Ok(Target {
        kind,
        version,
        namespace: parsed.namespace.map(str::to_owned),
        name: parsed.name.map(str::to_owned),
        status: parsed.sub == Sub::Status,
        scale: parsed.sub == Sub::Scale,
    })
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::path_not_found(path)
}

/// Fallback for paths outside `/api/` and `/apis/`.
pub(crate) async fn not_found(uri: Uri) -> Response {
    not_found_path(uri.path()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_group_version_namespace_plural_name_and_status() {
        let p = parse_path("/apis/x.io/v1/namespaces/ns/widgets/a/status");
        assert_eq!(
            p,
            Some(ParsedPath {
                group: "x.io",
                version: "v1",
                namespace: Some("ns"),
                plural: "widgets",
                name: Some("a"),
                sub: Sub::Status,
            })
        );
        let ns = parse_path("/api/v1/namespaces/default");
        assert_eq!(
            ns.map(|p| (p.group, p.plural, p.name)),
            Some(("", "namespaces", Some("default")))
        );
        let ns_status = parse_path("/api/v1/namespaces/default/status");
        assert_eq!(
            ns_status.map(|p| (p.namespace, p.plural, p.sub)),
            Some((None, "namespaces", Sub::Status))
        );
        let events = parse_path("/api/v1/namespaces/a/events");
        assert_eq!(
            events.map(|p| (p.group, p.version, p.namespace, p.plural)),
            Some(("", "v1", Some("a"), "events"))
        );
        let scale = parse_path("/apis/x.io/v1/namespaces/ns/widgets/a/scale");
        assert_eq!(scale.map(|p| p.sub), Some(Sub::Scale));
        let all = parse_path("/apis/x.io/v1/widgets");
        assert_eq!(all.map(|p| (p.namespace, p.name)), Some((None, None)));
        for bad in [
            "/apis/x.io/v1",
            "/apis/x.io/v1/w/a/b",
            "/apis//v1/w",
            "/api/v1",
            "/api//pods",
            "/apis/x.io/v1/w/a/b/c",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }
}
