//! Small helpers over `serde_json::Value` shared by the patch, apply and validation modules.

use serde_json::{Map, Value};

/// The JSON type name of a value, for messages (`integer` for whole numbers).
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The value as an object, replacing it with `{}` first if it is anything else.
pub(crate) fn object_mut(value: &mut Value) -> &mut Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => {
            *other = Value::Object(Map::new());
            object_mut(other)
        }
    }
}

/// The child object under `key`, created (or replacing a non-object) if needed.
pub(crate) fn child_object_mut<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> &'a mut Map<String, Value> {
    object_mut(map.entry(key).or_insert_with(|| Value::Object(Map::new())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn non_objects_are_replaced_by_an_empty_object_when_written() {
        let mut v = json!(3);
        object_mut(&mut v).insert("a".into(), json!(1));
        assert_eq!(v, json!({"a": 1}));
        let mut m = Map::new();
        m.insert("x".into(), json!("s"));
        child_object_mut(&mut m, "x").insert("y".into(), json!(true));
        assert_eq!(Value::Object(m), json!({"x": {"y": true}}));
    }

    #[test]
    fn type_names_distinguish_integers_from_numbers() {
        assert_eq!(type_name(&json!(1)), "integer");
        assert_eq!(type_name(&json!(1.5)), "number");
    }
}
