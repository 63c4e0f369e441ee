//! stead's resource model: typed objects with desired state (spec) and actual state (status).
//!
//! This crate is pure (no tokio, tonic or redb). It currently defines the storage key layout
//! that every resource uses; the object model grows here.

/// The etcd key under which a resource is stored:
/// `/registry/<group>/<plural>/<namespace>/<name>` (cluster-scoped kinds omit the namespace).
pub fn storage_key(group: &str, plural: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("/registry/{group}/{plural}/{ns}/{name}"),
        None => format!("/registry/{group}/{plural}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::storage_key;

    #[test]
    fn namespaced_and_cluster_scoped_keys_follow_the_registry_layout() {
        assert_eq!(
            storage_key("stead.dev", "processsets", Some("default"), "web"),
            "/registry/stead.dev/processsets/default/web"
        );
        assert_eq!(
            storage_key("stead.dev", "namespaces", None, "default"),
            "/registry/stead.dev/namespaces/default"
        );
    }
}
