//! Field selectors (`fieldSelector=` query parameter): `metadata.name`,
//! `metadata.namespace` and the fields a kind declares selectable (e.g. an Event's
//! `involvedObject.uid`), with `=`, `==` or `!=`, comma-separated, all of which must hold.
//! Values may escape `\,`, `\=` and `\\` as in Kubernetes.

use std::fmt;
use std::str::FromStr;

use crate::dynamic::DynamicObject;

/// A field selector that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term is not `field op value`.
    #[error(
        "invalid field selector {term:?}: expected <field>=<value>, <field>==<value> or <field>!=<value>"
    )]
    Syntax {
        /// The malformed term.
        term: String,
    },
    /// The field cannot be selected on.
    #[error("field label not supported: {field} (supported: {supported})")]
    UnsupportedField {
        /// The requested field.
        field: String,
        /// The fields that are supported, comma-separated.
        supported: String,
    },
    /// A value ends with a lone `\` or escapes another character.
    #[error("invalid field selector value {value:?}: {reason}")]
    Escape {
        /// The raw value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A selectable field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// `metadata.name`
    Name,
    /// `metadata.namespace`
    Namespace,
    /// Another field the kind declares selectable, as a dotted path (`involvedObject.uid`).
    Path(String),
}

impl Field {
    /// The field's selector name.
    pub fn as_str(&self) -> &str {
        match self {
            Field::Name => "metadata.name",
            Field::Namespace => "metadata.namespace",
            Field::Path(path) => path,
        }
    }

    /// The field's value in an object: strings as they are, numbers and booleans as text,
    /// missing as empty (Kubernetes' field sets do the same).
    fn value_in(&self, object: &DynamicObject) -> String {
        match self {
            Field::Name => object.name().to_owned(),
            Field::Namespace => object.namespace().unwrap_or_default().to_owned(),
            Field::Path(path) => {
                let pointer = format!("/{}", path.replace('.', "/"));
                match object.pointer(&pointer) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                }
            }
        }
    }
}

/// One `field op value` term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The field.
    pub field: Field,
    /// `true` for `!=`.
    pub negated: bool,
    /// The (unescaped) value.
    pub value: String,
}

/// A parsed field selector.
///
/// ```
/// use stead_api::selector::FieldSelector;
/// let sel: FieldSelector = "metadata.name=web,metadata.namespace!=kube-system".parse().unwrap();
/// assert!(sel.matches("web", Some("default")));
/// assert!(!sel.matches("web", Some("kube-system")));
/// assert_eq!(sel.exact_name(), Some("web"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Whether this selector has no requirements.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, in the order written.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Parses `field=value,field!=value,...` over `metadata.name` and `metadata.namespace`.
    pub fn parse(input: &str) -> Result<Self, FieldSelectorError> {
        Self::parse_for(input, &[])
    }

    /// Parses a selector that may also name the `selectable` fields of a kind.
    pub fn parse_for(input: &str, selectable: &[String]) -> Result<Self, FieldSelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(input, ',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let syntax = || FieldSelectorError::Syntax {
                term: term.to_owned(),
            };
            let (field, negated, raw) = if let Some((f, v)) = split_once_unescaped(term, "!=") {
                (f, true, v)
            } else if let Some((f, v)) = split_once_unescaped(term, "==") {
                (f, false, v)
            } else if let Some((f, v)) = split_once_unescaped(term, "=") {
                (f, false, v)
            } else {
                return Err(syntax());
            };
            let field = match field.trim() {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                "" => return Err(syntax()),
                other if selectable.iter().any(|f| f == other) => Field::Path(other.to_owned()),
                other => {
                    let mut supported = vec!["metadata.name", "metadata.namespace"];
                    supported.extend(selectable.iter().map(String::as_str));
                    return Err(FieldSelectorError::UnsupportedField {
                        field: other.to_owned(),
                        supported: supported.join(", "),
                    });
                }
            };
            requirements.push(FieldRequirement {
                field,
                negated,
                value: unescape(raw.trim())?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether an object with this name and namespace is selected (other fields count as
    /// empty).
    pub fn matches(&self, name: &str, namespace: Option<&str>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = match &r.field {
                Field::Name => name,
                Field::Namespace => namespace.unwrap_or_default(),
                Field::Path(_) => "",
            };
            (actual == r.value) != r.negated
        })
    }

    /// Whether an object is selected.
    pub fn matches_object(&self, object: &DynamicObject) -> bool {
        self.requirements
            .iter()
            .all(|r| (r.field.value_in(object) == r.value) != r.negated)
    }

    /// The single name this selector requires (`metadata.name=x`), so a list or watch can be
    /// narrowed to one key.
    pub fn exact_name(&self) -> Option<&str> {
        self.exact(Field::Name)
    }

    /// The single namespace this selector requires, so a list can be narrowed to one prefix.
    pub fn exact_namespace(&self) -> Option<&str> {
        self.exact(Field::Namespace)
    }

    fn exact(&self, field: Field) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && !r.negated)
            .map(|r| r.value.as_str())
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                format!(
                    "{}{}{}",
                    r.field.as_str(),
                    if r.negated { "!=" } else { "=" },
                    escape_value(&r.value)
                )
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Escapes `\`, `,` and `=` in a value.
pub fn escape_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

fn unescape(raw: &str) -> Result<String, FieldSelectorError> {
    let err = |reason| FieldSelectorError::Escape {
        value: raw.to_owned(),
        reason,
    };
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(_) => return Err(err("only \\\\, \\, and \\= may be escaped")),
                None => return Err(err("ends with an unfinished escape")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Splits on `sep` where it is not escaped by a backslash.
fn split_unescaped(input: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == sep => {
                parts.push(&input[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

/// Splits at the first unescaped occurrence of `op`.
fn split_once_unescaped<'a>(term: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if term[i..].starts_with(op) {
            return Some((&term[..i], &term[i + op.len()..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn field_selectors_parse_and_match_name_and_namespace() {
        let cases = [
            ("", "web", Some("default"), true),
            ("metadata.name=web", "web", Some("default"), true),
            ("metadata.name==web", "api", Some("default"), false),
            ("metadata.name!=web", "api", None, true),
            ("metadata.namespace=default", "web", Some("default"), true),
            ("metadata.namespace=", "web", None, true),
            ("metadata.namespace!=", "web", None, false),
            (
                "metadata.name=web, metadata.namespace=prod",
                "web",
                Some("default"),
                false,
            ),
            ("metadata.name=a\\,b", "a,b", None, true),
        ];
        for (input, name, ns, want) in cases {
            let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.matches(name, ns), want, "{input:?} on {name}/{ns:?}");
        }
    }

    #[test]
    fn unsupported_fields_and_malformed_terms_are_rejected() {
        let cases = [
            (
                "spec.replicas=1",
                "field label not supported: spec.replicas (supported: metadata.name, metadata.namespace)",
            ),
            (
                "metadata.name",
                "invalid field selector \"metadata.name\": expected <field>=<value>, <field>==<value> or <field>!=<value>",
            ),
            (
                "=x",
                "invalid field selector \"=x\": expected <field>=<value>, <field>==<value> or <field>!=<value>",
            ),
            (
                "metadata.name=a\\b",
                "invalid field selector value \"a\\\\b\": only \\\\, \\, and \\= may be escaped",
            ),
            (
                "metadata.name=a\\",
                "invalid field selector value \"a\\\\\": ends with an unfinished escape",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                FieldSelector::parse(input).map_err(|e| e.to_string()),
                Err(want.to_owned()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn exact_name_and_namespace_narrow_a_query() {
        let sel =
            FieldSelector::parse("metadata.namespace=ns,metadata.name!=x").unwrap_or_default();
        assert_eq!(
            (sel.exact_name(), sel.exact_namespace()),
            (None, Some("ns"))
        );
        assert!(FieldSelector::everything().is_empty());
    }

    proptest! {
        #[test]
        fn printing_a_field_selector_and_parsing_it_again_gives_the_same_selector(
            terms in proptest::collection::vec((any::<bool>(), any::<bool>(), "[a-z,=\\\\!]{0,6}"), 0..4)
        ) {
            let requirements = terms
                .into_iter()
                .map(|(is_name, negated, value)| FieldRequirement {
                    field: if is_name { Field::Name } else { Field::Namespace },
                    negated,
                    value,
                })
                .collect();
            let sel = FieldSelector { requirements };
            prop_assert_eq!(FieldSelector::parse(&sel.to_string()), Ok(sel));
        }
    }
}
