//! OpenAPI v3 schemas (the dialect of CRDs' `openAPIV3Schema` and of Kubernetes' published
//! OpenAPI) and their translation to JSON Schema 2020-12 for the validator.
//!
//! ```text
//!  Rust kind ──schemars (openapi3, inline)──┐
//!                                           ├─► OpenAPI v3 schema ──to_json_schema──► jsonschema
//!  CRD spec.versions[].schema.openAPIV3Schema┘        │
//!                                                     └─► prune_unknown_fields / apply_defaults
//! ```
//!
//! Translation rules (Kubernetes extensions have no JSON Schema meaning, so they are rewritten):
//! - `nullable: true` adds `"null"` to `type` (and to `enum`, if present);
//! - `x-kubernetes-int-or-string: true` becomes `anyOf: [{type: integer}, {type: string}]`;
//! - `x-kubernetes-preserve-unknown-fields` only affects pruning; validation never rejects
//!   unknown fields (Kubernetes prunes them instead, see [`prune_unknown_fields`]);
//! - OpenAPI 3.0's boolean `exclusiveMinimum`/`exclusiveMaximum` become 2020-12's numeric form;
//! - the root `metadata` schema is replaced by `{type: object}`: metadata is checked by
//!   [`super::validate_metadata`] with Kubernetes' own rules, as the Kubernetes API server does;
//! - other `x-kubernetes-*` keys (list/map types, CEL `x-kubernetes-validations`) are dropped:
//!   CEL validation rules are not evaluated;
//! - `format` is an annotation only (JSON Schema 2020-12's default): `date-time`, `int32`, ...
//!   are not asserted.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::issues::{join_path, key_segment};

/// The OpenAPI v3 schema of a Rust type, with every subschema inlined (no `$ref`), which is the
/// shape a CRD's `openAPIV3Schema` has.
pub fn openapi_schema_for<T: JsonSchema>() -> Value {
    let mut settings = SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Value::Object(map) = &mut value {
        map.remove("$schema");
        map.remove("title");
    }
    simplify(&mut value);
    value
}

fn is_null_schema(schema: &Value) -> bool {
    schema.get("type") == Some(&json!("null")) || schema.get("enum") == Some(&json!([null]))
}

/// Rewrites schemars' shapes that Kubernetes' structural schemas do not use:
/// `anyOf: [T, null]` (an `Option` of an inlined enum or struct) becomes `T` with
/// `nullable: true`, and a `oneOf` of single-value enums (unit variants with docs) becomes
/// one `enum`.
fn simplify(node: &mut Value) {
    match node {
        Value::Array(items) => items.iter_mut().for_each(simplify),
        Value::Object(map) => {
            map.values_mut().for_each(simplify);
            if let Some(Value::Array(options)) = map.get("anyOf")
                && let [a, b] = options.as_slice()
            {
                let inner = match (is_null_schema(a), is_null_schema(b)) {
                    (true, false) => Some(b.clone()),
                    (false, true) => Some(a.clone()),
                    _ => None,
                };
                if let Some(Value::Object(inner)) = inner {
                    map.remove("anyOf");
                    for (k, v) in inner {
                        map.entry(k).or_insert(v);
                    }
                    map.insert("nullable".to_owned(), Value::Bool(true));
                }
            }
            if let Some(Value::Array(options)) = map.get("oneOf") {
                let single = |o: &Value| match o.get("enum") {
                    Some(Value::Array(values)) if values.len() == 1 => Some(values[0].clone()),
                    _ => None,
                };
                let values: Option<Vec<Value>> = options.iter().map(single).collect();
                let types: Vec<&Value> = options.iter().filter_map(|o| o.get("type")).collect();
                if let (Some(values), Some(first)) = (values, types.first())
                    && types.len() == options.len()
                    && types.iter().all(|t| t == first)
                {
                    let first = (*first).clone();
                    map.remove("oneOf");
                    map.insert("type".to_owned(), first);
                    map.insert("enum".to_owned(), Value::Array(values));
                }
            }
        }
        _ => {}
    }
}

fn is_true(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Translates an OpenAPI v3 schema to JSON Schema 2020-12 (see the module docs for the rules).
pub fn to_json_schema(openapi: &Value) -> Value {
    let mut out = translate(openapi);
    if let Some(props) = out.get_mut("properties").and_then(Value::as_object_mut)
        && props.contains_key("metadata")
    {
        props.insert("metadata".to_owned(), json!({"type": "object"}));
    }
    out
}

fn translate(node: &Value) -> Value {
    let Value::Object(schema) = node else {
        // Boolean schemas (and anything malformed) pass through unchanged.
        return node.clone();
    };
    let mut out = Map::new();
    for (key, value) in schema {
        match key.as_str() {
            "nullable" | "$schema" | "example" | "externalDocs" | "discriminator" | "xml" => {}
            k if k.starts_with("x-kubernetes-") => {}
            "properties" | "patternProperties" | "$defs" | "definitions" => {
                let children = value.as_object().map(|props| {
                    props
                        .iter()
                        .map(|(name, sub)| (name.clone(), translate(sub)))
                        .collect()
                });
                out.insert(
                    key.clone(),
                    children.map_or_else(|| value.clone(), Value::Object),
                );
            }
            "additionalProperties" | "items" | "not" | "additionalItems" | "contains" => {
                out.insert(key.clone(), translate(value));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let list = value.as_array().map(|l| l.iter().map(translate).collect());
                out.insert(
                    key.clone(),
                    list.map_or_else(|| value.clone(), Value::Array),
                );
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    for (flag, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        match out.get(flag) {
            Some(Value::Bool(true)) => {
                if let Some(limit) = out.remove(bound) {
                    out.insert(flag.to_owned(), limit);
                } else {
                    out.remove(flag);
                }
            }
            Some(Value::Bool(false)) => {
                out.remove(flag);
            }
            _ => {}
        }
    }
    if is_true(schema, "x-kubernetes-int-or-string") {
        out.remove("type");
        if !out.contains_key("anyOf") && !out.contains_key("oneOf") {
            out.insert(
                "anyOf".to_owned(),
                json!([{"type": "integer"}, {"type": "string"}]),
            );
        }
    }
    if is_true(schema, "nullable") {
        make_nullable(&mut out);
    }
    Value::Object(out)
}

fn make_nullable(out: &mut Map<String, Value>) {
    match out.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            out.insert("type".to_owned(), json!([t, "null"]));
        }
        Some(Value::Array(types)) if !types.iter().any(|t| t == "null") => {
            types.push(json!("null"))
        }
        _ => {}
    }
    if let Some(Value::Array(values)) = out.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
    if let Some(Value::Array(options)) = out.get_mut("anyOf")
        && !options
            .iter()
            .any(|o| o.get("type") == Some(&json!("null")))
    {
        options.push(json!({"type": "null"}));
    }
}

/// Removes fields the schema does not declare, like Kubernetes' structural pruning, and
/// returns their paths (`spec.replicaz`). The root's `apiVersion`, `kind` and `metadata` are
/// never pruned. A node keeps unknown fields when it says
/// `x-kubernetes-preserve-unknown-fields: true`, has `additionalProperties`, or has no
/// structure at all (`{}`, as schemars emits for `serde_json::Value`).
pub fn prune_unknown_fields(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    if let (Some(root), Value::Object(fields)) = (schema.as_object(), object) {
        let props = root.get("properties").and_then(Value::as_object);
        for (key, value) in fields.iter_mut() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(sub) = props.and_then(|p| p.get(key)) {
                prune(sub, value, key, &mut pruned);
            }
        }
        let unknown: Vec<String> = fields
            .keys()
            .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
            .filter(|k| !keeps_unknown(root) && props.is_none_or(|p| !p.contains_key(*k)))
            .cloned()
            .collect();
        for key in unknown {
            fields.remove(&key);
            pruned.push(key_segment("", &key));
        }
    }
    pruned.sort();
    pruned
}

/// Whether a schema node keeps fields it does not list.
fn keeps_unknown(schema: &Map<String, Value>) -> bool {
    is_true(schema, "x-kubernetes-preserve-unknown-fields")
        || is_true(schema, "x-kubernetes-embedded-resource")
        || schema
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
        || !(schema.contains_key("properties") || schema.contains_key("type"))
}

fn prune(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if is_true(schema, "x-kubernetes-int-or-string") {
        return;
    }
    match value {
        Value::Object(fields) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keep = keeps_unknown(schema);
            let mut unknown = Vec::new();
            for (key, child) in fields.iter_mut() {
                let child_path = key_segment(path, key);
                match props.and_then(|p| p.get(key)).or(additional) {
                    Some(sub) => prune(sub, child, &child_path, pruned),
                    None if keep => {}
                    None => unknown.push((key.clone(), child_path)),
                }
            }
            for (key, child_path) in unknown {
                fields.remove(&key);
                pruned.push(child_path);
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(
                        item_schema,
                        item,
                        &join_path(path, &format!("[{i}]")),
                        pruned,
                    );
                }
            }
        }
        _ => {}
    }
}

/// Fills in `default` values of properties that are absent, recursively, as Kubernetes'
/// structural defaulting does for CRDs (defaults apply inside objects and list items that
/// exist; a missing parent is not created unless it has a default itself).
pub fn apply_defaults(schema: &Value, object: &mut Value) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    match object {
        Value::Object(fields) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in props {
                    if key == "metadata" {
                        continue;
                    }
                    if let (false, Some(default)) = (fields.contains_key(key), sub.get("default")) {
                        fields.insert(key.clone(), default.clone());
                    }
                    if let Some(child) = fields.get_mut(key) {
                        apply_defaults(sub, child);
                    }
                }
            }
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let props = schema.get("properties").and_then(Value::as_object);
                for (key, child) in fields.iter_mut() {
                    if props.is_none_or(|p| !p.contains_key(key)) {
                        apply_defaults(additional, child);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_extensions_translate_to_json_schema() {
        let cases = [
            (
                json!({"type": "string", "nullable": true}),
                json!({"type": ["string", "null"]}),
            ),
            (
                json!({"type": "string", "enum": ["a"], "nullable": true}),
                json!({"type": ["string", "null"], "enum": ["a", null]}),
            ),
            (
                json!({"x-kubernetes-int-or-string": true}),
                json!({"anyOf": [{"type": "integer"}, {"type": "string"}]}),
            ),
            (
                json!({"x-kubernetes-int-or-string": true, "type": "string",
                       "anyOf": [{"type": "integer"}, {"type": "string"}]}),
                json!({"anyOf": [{"type": "integer"}, {"type": "string"}]}),
            ),
            (
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                json!({"type": "object"}),
            ),
            (
                json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true}),
                json!({"type": "integer", "exclusiveMinimum": 0}),
            ),
            (
                json!({"type": "integer", "maximum": 9, "exclusiveMaximum": false}),
                json!({"type": "integer", "maximum": 9}),
            ),
            (
                json!({"type": "array", "items": {"type": "string", "nullable": true},
                       "x-kubernetes-list-type": "set"}),
                json!({"type": "array", "items": {"type": ["string", "null"]}}),
            ),
        ];
        for (openapi, want) in cases {
            assert_eq!(to_json_schema(&openapi), want, "{openapi}");
        }
    }

    #[test]
    fn root_metadata_schema_is_left_to_the_metadata_rules() {
        let schema = json!({"type": "object", "properties": {
            "metadata": {"type": "object", "properties": {"name": {"maxLength": 3}}},
            "spec": {"type": "object", "properties": {"x": {"type": "string", "nullable": true}}}
        }});
        let out = to_json_schema(&schema);
        assert_eq!(out["properties"]["metadata"], json!({"type": "object"}));
        assert_eq!(
            out["properties"]["spec"]["properties"]["x"]["type"],
            json!(["string", "null"])
        );
    }

    fn crd_like_schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer", "default": 1},
                "mode": {"type": "string", "default": "fast"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                          "properties": {"known": {"type": "object",
                              "properties": {"a": {"type": "string"}}}}},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "port": {"type": "integer", "default": 80}}}},
                "port": {"x-kubernetes-int-or-string": true},
                "anything": {}
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
        }})
    }

    #[test]
    fn unknown_fields_are_pruned_and_reported_by_path() {
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "odd": 1},
            "spec": {
                "replicas": 2, "replicaz": 3,
                "labels": {"any": "thing"},
                "extra": {"free": {"deep": 1}, "known": {"a": "x", "b": "dropped"}},
                "items": [{"name": "a", "nmae": "typo"}],
                "port": "http", "anything": {"x": [1]}
            },
            "status": {"ready": true, "phase": "x"},
            "unknownTop": true
        });
        let pruned = prune_unknown_fields(&crd_like_schema(), &mut obj);
        assert_eq!(
            pruned,
            vec![
                "spec.extra.known.b",
                "spec.items[0].nmae",
                "spec.replicaz",
                "status.phase",
                "unknownTop",
            ]
        );
        assert_eq!(obj["metadata"]["odd"], json!(1));
        assert_eq!(obj["spec"]["extra"]["free"], json!({"deep": 1}));
        assert_eq!(obj["spec"]["anything"], json!({"x": [1]}));
    }

    #[test]
    fn defaults_fill_absent_fields_inside_existing_parents() {
        let mut obj = json!({"spec": {"mode": "slow", "items": [{"name": "a"}, {"port": 1}]}});
        apply_defaults(&crd_like_schema(), &mut obj);
        assert_eq!(obj["spec"]["replicas"], json!(1));
        assert_eq!(obj["spec"]["mode"], json!("slow"));
        assert_eq!(
            obj["spec"]["items"],
            json!([{"name": "a", "port": 80}, {"port": 1}])
        );
        assert!(
            obj.get("status").is_none(),
            "a parent without a default is not created"
        );
    }

    #[test]
    fn generated_schemas_are_inline_openapi_without_refs() {
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Inner {
            a: Option<String>,
        }
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Outer {
            inner: Inner,
            list: Vec<Inner>,
        }
        let schema = openapi_schema_for::<Outer>();
        let text = schema.to_string();
        assert!(
            !text.contains("$ref") && !text.contains("$schema"),
            "{text}"
        );
        assert_eq!(
            schema["properties"]["inner"]["properties"]["a"]["nullable"],
            json!(true)
        );
    }

    #[test]
    fn optional_enums_become_nullable_structural_enums() {
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        enum Phase {
            /// Documented variant.
            Up,
            /// Another.
            Down,
        }
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Status {
            /// The phase.
            phase: Option<Phase>,
        }
        let schema = openapi_schema_for::<Status>();
        let phase = &schema["properties"]["phase"];
        assert_eq!(phase["type"], json!("string"), "{phase}");
        assert_eq!(phase["enum"], json!(["Up", "Down"]));
        assert_eq!(phase["nullable"], json!(true));
        assert_eq!(phase["description"], json!("The phase."));
        assert!(phase.get("anyOf").is_none() && phase.get("oneOf").is_none());
    }
}
