//! [`prepare_create`]: server-set fields of a new object.

use crate::dynamic::DynamicObject;
use crate::meta::Timestamp;

use super::{KindRules, LifecycleError};

/// Source of server-generated identifiers (random in the server, predictable in tests).
pub trait IdGenerator {
    /// A new unique `metadata.uid`, e.g. a UUID.
    fn uid(&mut self) -> String;
    /// A suffix for `metadata.generateName`, e.g. five random lowercase alphanumerics.
    fn name_suffix(&mut self) -> String;
}

/// Prepares an object for creation: name from `generateName` if needed, a fresh `uid`,
/// `creationTimestamp = now` (whole seconds, like `metav1.Time`), `generation = 1`; clears
/// `resourceVersion`, deletion markers and, if the kind has a status subresource, `status`;
/// clears `namespace` for cluster-scoped kinds. Whatever the client sent for these fields is
/// replaced.
///
/// ```
/// use stead_api::lifecycle::{IdGenerator, KindRules, prepare_create};
/// use stead_api::{DynamicObject, NameRule, Scope, Timestamp};
/// struct Fixed;
/// impl IdGenerator for Fixed {
///     fn uid(&mut self) -> String { "uid-1".into() }
///     fn name_suffix(&mut self) -> String { "x7k2p".into() }
/// }
/// let rules = KindRules { scope: Scope::Namespaced, status_subresource: true,
///                         name_rule: NameRule::Dns1123Subdomain };
/// let obj = DynamicObject::from_value(serde_json::json!({
///     "apiVersion": "x.io/v1", "kind": "K",
///     "metadata": {"generateName": "web-", "namespace": "default"},
///     "status": {"ready": true}})).unwrap();
/// let created = prepare_create(obj, &rules, Timestamp::from_unix(0, 0), &mut Fixed).unwrap();
/// assert_eq!((created.name(), created.uid(), created.generation()), ("web-x7k2p", "uid-1", 1));
/// assert!(created.status().is_none());
/// ```
pub fn prepare_create(
    mut object: DynamicObject,
    rules: &KindRules,
    now: Timestamp,
    ids: &mut dyn IdGenerator,
) -> Result<DynamicObject, LifecycleError> {
    // Decoding the typed metadata first rejects malformed metadata before anything is set.
    let meta = object.metadata()?;
    if meta.name.is_empty() {
        if meta.generate_name.is_empty() {
            return Err(LifecycleError::MissingName);
        }
        let name = format!("{}{}", meta.generate_name, ids.name_suffix());
        object.set_meta_str("name", &name);
    }
    if !rules.scope.is_namespaced() {
        object.set_meta_str("namespace", "");
    }
    let uid = ids.uid();
    object.set_meta_str("uid", &uid);
    object.set_meta_str("creationTimestamp", &now.truncated_to_seconds().to_string());
    object.set_meta_str("resourceVersion", "");
    let meta = object.metadata_map_mut();
    meta.insert("generation".to_owned(), 1.into());
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    if rules.status_subresource {
        object.set_status(None);
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::test_support::*;
    use serde_json::json;

    struct Counter(u32);

    impl IdGenerator for Counter {
        fn uid(&mut self) -> String {
            self.0 += 1;
            format!("uid-{}", self.0)
        }

        fn name_suffix(&mut self) -> String {
            "abcde".to_owned()
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_unix(1_704_067_200, 999_000_000)
    }

    #[test]
    fn create_sets_identity_time_and_generation_and_drops_client_values() {
        let input = obj(json!({
            "apiVersion": "x.io/v1", "kind": "K",
            "metadata": {"name": "a", "namespace": "n", "uid": "client-uid", "resourceVersion": "99",
                         "generation": 7, "creationTimestamp": "2000-01-01T00:00:00Z",
                         "deletionTimestamp": "2000-01-01T00:00:00Z", "deletionGracePeriodSeconds": 30,
                         "labels": {"app": "a"}},
            "spec": {"replicas": 1}, "status": {"ready": true}
        }));
        let created = prepare_create(input, &NAMESPACED_WITH_STATUS, now(), &mut Counter(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            created.to_value(),
            json!({
                "apiVersion": "x.io/v1", "kind": "K",
                "metadata": {"name": "a", "namespace": "n", "uid": "uid-1", "generation": 1,
                             "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"app": "a"}},
                "spec": {"replicas": 1}
            })
        );
    }

    #[test]
    fn create_rules_depend_on_scope_and_status_subresource() {
        let input =
            || obj(json!({"metadata": {"name": "a", "namespace": "n"}, "status": {"s": 1}}));
        let cluster =
            prepare_create(input(), &CLUSTER_NO_STATUS, now(), &mut Counter(0)).unwrap_or_default();
        assert_eq!(
            cluster.namespace(),
            None,
            "cluster-scoped objects have no namespace"
        );
        assert_eq!(
            cluster.status(),
            Some(&json!({"s": 1})),
            "without /status, status is ordinary data"
        );
        let namespaced = prepare_create(input(), &NAMESPACED_WITH_STATUS, now(), &mut Counter(0))
            .unwrap_or_default();
        assert_eq!(
            (namespaced.namespace(), namespaced.status()),
            (Some("n"), None)
        );
    }

    #[test]
    fn names_come_from_generate_name_or_are_required() {
        let cases = [
            (
                json!({"metadata": {"generateName": "web-"}}),
                Ok("web-abcde".to_owned()),
            ),
            (
                json!({"metadata": {"name": "x", "generateName": "web-"}}),
                Ok("x".to_owned()),
            ),
            (json!({"metadata": {}}), Err(LifecycleError::MissingName)),
            (json!({}), Err(LifecycleError::MissingName)),
        ];
        for (input, want) in cases {
            let got = prepare_create(
                obj(input.clone()),
                &CLUSTER_NO_STATUS,
                now(),
                &mut Counter(0),
            )
            .map(|o| o.name().to_owned());
            assert_eq!(got, want, "{input}");
        }
        let malformed = prepare_create(
            obj(json!({"metadata": {"name": 5}})),
            &CLUSTER_NO_STATUS,
            now(),
            &mut Counter(0),
        );
        assert!(matches!(malformed, Err(LifecycleError::Object(_))));
    }
}
