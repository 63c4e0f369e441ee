//! Tests of CustomResourceDefinition decoding, validation and compilation.

use super::*;
use serde_json::json;

fn base() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "processsets.stead.dev"},
        "spec": {
            "group": "stead.dev",
            "scope": "Namespaced",
            "names": {"plural": "processsets", "singular": "processset", "kind": "ProcessSet",
                      "listKind": "ProcessSetList", "shortNames": ["ps"], "categories": ["all"]},
            "conversion": {"strategy": "None"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["command"], "properties": {
                        "command": {"type": "string"},
                        "args": {"type": "array", "items": {"type": "string"}},
                        "replicas": {"type": "integer", "minimum": 0, "default": 1},
                        "port": {"x-kubernetes-int-or-string": true},
                        "env": {"type": "object", "additionalProperties": {"type": "string"}},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }},
                    "status": {"type": "object", "properties": {
                        "readyReplicas": {"type": "integer"},
                        "replicas": {"type": "integer"}
                    }}
                }}},
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [
                    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                ]
            }]
        }
    })
}

fn issues_of(crd: &Value) -> Vec<(String, String)> {
    let crd = CustomResourceDefinition::from_value(crd).unwrap_or_else(|e| panic!("{e}"));
    crd.validate()
        .into_iter()
        .map(|i| (i.path, i.rule))
        .collect()
}

#[test]
fn a_realistic_crd_becomes_a_servable_kind() {
    let crd = CustomResourceDefinition::from_value(&base()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(crd.validate(), Vec::new());
    let kind = crd.to_kind().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kind.group_kind().to_string(), "ProcessSet.stead.dev");
    assert_eq!(kind.scope, Scope::Namespaced);
    assert_eq!(kind.names.short_names, ["ps"]);
    assert_eq!(
        kind.source,
        KindSource::CustomResourceDefinition {
            name: "processsets.stead.dev".into()
        }
    );
    let v1 = kind
        .storage_version()
        .unwrap_or_else(|| panic!("storage version"));
    assert!(v1.subresources.status);
    assert_eq!(
        v1.subresources
            .scale
            .as_ref()
            .map(|s| s.spec_replicas_path.as_str()),
        Some(".spec.replicas")
    );
    assert_eq!(v1.printer_columns.len(), 2);
    let ok = json!({"spec": {"command": "sleep", "port": "http", "env": {"A": "b"}}});
    assert_eq!(v1.schema().validate(&ok), Ok(()));
    let bad = json!({"spec": {"command": "sleep", "replicas": -1}});
    assert_eq!(
        v1.schema().validate(&bad).map_err(|e| e.to_string()),
        Err("spec.replicas: -1 is less than the minimum of 0".to_owned())
    );
}

fn with(mut crd: Value, pointer: &str, value: Value) -> Value {
    if let Some(slot) = crd.pointer_mut(pointer) {
        *slot = value;
    } else if let Some((parent, key)) = pointer.rsplit_once('/')
        && let Some(Value::Object(map)) = crd.pointer_mut(parent)
    {
        map.insert(key.to_owned(), value);
    }
    crd
}

#[test]
fn invalid_crds_are_rejected_field_by_field() {
    let v0 = "/spec/versions/0";
    let schema = "/spec/versions/0/schema/openAPIV3Schema";
    let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (
            with(base(), "/metadata/name", json!("processes.stead.dev")),
            vec![("metadata.name", "crdName")],
        ),
        (
            with(
                with(base(), "/spec/group", json!("local")),
                "/metadata/name",
                json!("processsets.local"),
            ),
            vec![("spec.group", "crdGroup")],
        ),
        (
            with(
                with(base(), "/spec/group", json!("Stead.Dev")),
                "/metadata/name",
                json!("processsets.Stead.Dev"),
            ),
            vec![("spec.group", "dns1123Subdomain")],
        ),
        (
            with(base(), "/spec/names/kind", json!("")),
            vec![("spec.names.kind", "required")],
        ),
        (
            with(base(), "/spec/names/kind", json!("Process_Set")),
            vec![("spec.names.kind", "dns1035Label")],
        ),
        (
            with(base(), "/spec/names/listKind", json!("ProcessSet")),
            vec![("spec.names.listKind", "crdNames")],
        ),
        (
            with(base(), "/spec/names/shortNames", json!(["ps", "P S"])),
            vec![("spec.names.shortNames[1]", "dns1035Label")],
        ),
        (
            with(base(), "/spec/scope", json!("Global")),
            vec![("spec.scope", "enum")],
        ),
        (
            with(base(), "/spec/conversion", json!({"strategy": "Webhook"})),
            vec![("spec.conversion.strategy", "enum")],
        ),
        (
            with(base(), "/spec/versions", json!([])),
            vec![("spec.versions", "required")],
        ),
        (
            with(base(), &format!("{v0}/storage"), json!(false)),
            vec![("spec.versions", "storage")],
        ),
        (
            with(base(), &format!("{v0}/name"), json!("V1")),
            vec![("spec.versions[0].name", "dns1035Label")],
        ),
        (
            with(base(), &format!("{v0}/schema"), json!({})),
            vec![("spec.versions[0].schema.openAPIV3Schema", "required")],
        ),
        (
            with(base(), &format!("{schema}/type"), json!("array")),
            vec![
                ("spec.versions[0].schema.openAPIV3Schema.type", "structural"),
                (
                    "spec.versions[0].schema.openAPIV3Schema.items",
                    "structural",
                ),
            ],
        ),
        (
            with(
                base(),
                &format!("{schema}/properties/spec/properties/args"),
                json!({"type": "array"}),
            ),
            vec![(
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[args].items",
                "structural",
            )],
        ),
        (
            with(
                base(),
                &format!("{schema}/properties/spec/properties/nested"),
                json!({"properties": {"a": {"type": "string"}}}),
            ),
            vec![(
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[nested].type",
                "structural",
            )],
        ),
        (
            with(
                base(),
                &format!("{schema}/properties/spec/properties/ref"),
                json!({"$ref": "#/x"}),
            ),
            vec![(
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[ref].$ref",
                "forbidden",
            )],
        ),
        (
            with(
                base(),
                &format!("{schema}/properties/status/additionalProperties"),
                json!({"type": "string"}),
            ),
            vec![(
                "spec.versions[0].schema.openAPIV3Schema.properties[status].additionalProperties",
                "forbidden",
            )],
        ),
        (
            with(
                base(),
                &format!("{v0}/subresources/scale/specReplicasPath"),
                json!(".status.replicas"),
            ),
            vec![(
                "spec.versions[0].subresources.scale.specReplicasPath",
                "jsonPath",
            )],
        ),
        (
            with(
                base(),
                &format!("{v0}/additionalPrinterColumns/0/type"),
                json!("float"),
            ),
            vec![("spec.versions[0].additionalPrinterColumns[0].type", "enum")],
        ),
        (
            with(
                base(),
                &format!("{v0}/additionalPrinterColumns/0/jsonPath"),
                json!("status.ready"),
            ),
            vec![(
                "spec.versions[0].additionalPrinterColumns[0].jsonPath",
                "jsonPath",
            )],
        ),
        (with(base(), "/kind", json!("Crd")), vec![("kind", "const")]),
    ];
    for (crd, want) in cases {
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(p, r)| ((*p).to_owned(), (*r).to_owned()))
            .collect();
        assert_eq!(issues_of(&crd), want, "{}", crd["spec"]);
    }
}

#[test]
fn two_versions_with_the_same_name_or_two_storage_versions_are_rejected() {
    let mut crd = base();
    let v0 = crd["spec"]["versions"][0].clone();
    if let Some(list) = crd
        .pointer_mut("/spec/versions")
        .and_then(Value::as_array_mut)
    {
        list.push(v0);
    }
    let issues = issues_of(&crd);
    assert!(
        issues.contains(&("spec.versions".into(), "storage".into())),
        "{issues:?}"
    );
    assert!(
        issues.contains(&("spec.versions[1].name".into(), "unique".into())),
        "{issues:?}"
    );
}

#[test]
fn to_kind_reports_every_problem_in_one_error() {
    let crd = with(
        with(base(), "/spec/scope", json!("x")),
        "/spec/names/plural",
        json!(""),
    );
    let crd = CustomResourceDefinition::from_value(&crd).unwrap_or_else(|e| panic!("{e}"));
    let err = crd
        .to_kind()
        .map(|_| ())
        .map_err(|e| e.to_string())
        .expect_err("invalid");
    assert!(
        err.starts_with(
            "CustomResourceDefinition.apiextensions.k8s.io \"processsets.stead.dev\" is invalid: ["
        ),
        "{err}"
    );
    assert!(
        err.contains("spec.names.plural: required field is missing"),
        "{err}"
    );
    assert!(err.contains("spec.scope: unsupported value \"x\""), "{err}");
}

#[test]
fn malformed_crd_documents_fail_to_decode() {
    let err = CustomResourceDefinition::from_value(&with(base(), "/spec/versions", json!("v1")));
    assert!(matches!(err, Err(CrdError::Decode { .. })), "{err:?}");
    let minimal = CustomResourceDefinition::from_value(&json!({"metadata": {"name": "x"}}));
    assert!(
        minimal.is_ok(),
        "missing fields decode as empty and are reported by validate"
    );
}

#[test]
fn established_status_accepts_names_and_records_the_storage_version() {
    let crd = CustomResourceDefinition::from_value(&base()).unwrap_or_default();
    let status = crd.established_status(Timestamp::from_unix(5, 500));
    let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["NamesAccepted", "Established"]);
    assert_eq!(status.stored_versions, ["v1"]);
    assert_eq!(
        status.conditions[1].last_transition_time,
        Some(Timestamp::from_unix(5, 0))
    );
    assert_eq!(
        status.accepted_names.map(|n| n.list_kind),
        Some("ProcessSetList".to_owned())
    );
}

#[test]
fn the_crd_kind_itself_round_trips_as_json() {
    let crd = CustomResourceDefinition::from_value(&base()).unwrap_or_default();
    let back = serde_json::to_value(&crd).unwrap_or_default();
    assert_eq!(back, base());
}
