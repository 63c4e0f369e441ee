//! The JSONPath subset used by `additionalPrinterColumns` and scale subresource paths:
//! `.spec.replicas`, `.metadata.labels['app.kubernetes.io/name']`, `.items[0].name`,
//! `.spec.list[*].name` (first match) and `.status.conditions[?(@.type=="Ready")].status`.

use serde_json::Value;

/// A JSONPath expression that is outside the supported subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSONPath {path:?}: {reason}")]
pub struct JsonPathError {
    /// The rejected expression.
    pub path: String,
    /// What is unsupported or malformed.
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    Wildcard,
    /// `[?(@.<field>=="<value>")]`: the first list item whose field equals the value.
    Filter {
        field: String,
        value: Value,
    },
}

/// A parsed path, evaluated against an object with [`JsonPath::find`].
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses an expression; it must start with `.` (braces `{...}` around it are accepted).
    pub fn parse(path: &str) -> Result<Self, JsonPathError> {
        let err = |reason| JsonPathError {
            path: path.to_owned(),
            reason,
        };
        let text = path.trim();
        let text = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(text);
        let text = text.strip_prefix('$').unwrap_or(text);
        if !text.starts_with('.') && !text.starts_with('[') {
            return Err(err("must start with '.'"));
        }
        let bytes = text.as_bytes();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < bytes.len() && bytes[end] != b'.' && bytes[end] != b'[' {
                        end += 1;
                    }
                    if end == start {
                        return Err(err("empty field name"));
                    }
                    steps.push(Step::Field(text[start..end].to_owned()));
                    i = end;
                }
                b'[' => {
                    let close = text[i..]
                        .find(']')
                        .map(|c| c + i)
                        .ok_or_else(|| err("unclosed '['"))?;
                    let inner = text[i + 1..close].trim();
                    // A filter may itself contain ']' only inside quotes; find the real end.
                    let (inner, close) = if inner.starts_with("?(") {
                        let end = text[i..]
                            .find(")]")
                            .map(|c| c + i)
                            .ok_or_else(|| err("unclosed filter"))?;
                        (text[i + 1..end + 1].trim(), end + 1)
                    } else {
                        (inner, close)
                    };
                    steps.push(
                        parse_bracket(inner)
                            .ok_or_else(|| err("unsupported bracket expression"))?,
                    );
                    i = close + 1;
                }
                _ => return Err(err("expected '.' or '['")),
            }
        }
        Ok(JsonPath { steps })
    }

    /// The first value the path selects, if any.
    pub fn find<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        find_from(&self.steps, root)
    }
}

fn parse_bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::Wildcard);
    }
    if let Ok(n) = inner.parse::<usize>() {
        return Some(Step::Index(n));
    }
    for quote in ['\'', '"'] {
        if let Some(name) = inner
            .strip_prefix(quote)
            .and_then(|s| s.strip_suffix(quote))
        {
            return Some(Step::Field(name.to_owned()));
        }
    }
    let cond = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    let (lhs, rhs) = cond.split_once("==")?;
    let field = lhs.trim().strip_prefix("@.")?.to_owned();
    let rhs = rhs.trim();
    let value = ['\'', '"']
        .iter()
        .find_map(|q| rhs.strip_prefix(*q).and_then(|s| s.strip_suffix(*q)))
        .map(Value::from)
        .or_else(|| serde_json::from_str(rhs).ok())?;
    Some(Step::Filter { field, value })
}

fn find_from<'a>(steps: &[Step], node: &'a Value) -> Option<&'a Value> {
    let Some((step, rest)) = steps.split_first() else {
        return Some(node);
    };
    match step {
        Step::Field(name) => find_from(rest, node.get(name)?),
        Step::Index(i) => find_from(rest, node.get(*i)?),
        Step::Wildcard => node
            .as_array()?
            .iter()
            .find_map(|item| find_from(rest, item)),
        Step::Filter { field, value } => node
            .as_array()?
            .iter()
            .filter(|item| item.get(field) == Some(value))
            .find_map(|item| find_from(rest, item)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn printer_column_paths_select_values() {
        let obj = json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": 3, "list": [{"name": "a"}, {"name": "b"}]},
            "status": {"conditions": [
                {"type": "Progressing", "status": "True"},
                {"type": "Ready", "status": "False"}]}
        });
        let cases = [
            (".spec.replicas", Some(json!(3))),
            ("{.spec.replicas}", Some(json!(3))),
            (
                ".metadata.labels['app.kubernetes.io/name']",
                Some(json!("web")),
            ),
            (".spec.list[1].name", Some(json!("b"))),
            (".spec.list[*].name", Some(json!("a"))),
            (
                ".status.conditions[?(@.type==\"Ready\")].status",
                Some(json!("False")),
            ),
            (".status.conditions[?(@.type=='Gone')].status", None),
            (".spec.missing", None),
            (".spec.list[9]", None),
        ];
        for (path, want) in cases {
            let parsed = JsonPath::parse(path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(parsed.find(&obj).cloned(), want, "{path}");
        }
    }

    #[test]
    fn malformed_paths_are_rejected_with_a_reason() {
        let cases = [
            ("spec.replicas", "must start with '.'"),
            (".spec..x", "empty field name"),
            (".spec[0", "unclosed '['"),
            (".spec[?(@.a>1)]", "unsupported bracket expression"),
        ];
        for (path, reason) in cases {
            assert_eq!(
                JsonPath::parse(path).map(|_| ()),
                Err(JsonPathError {
                    path: path.into(),
                    reason
                })
            );
        }
    }
}
