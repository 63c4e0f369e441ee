//! Multi-document YAML manifests (`stead apply -f`, `application/apply-patch+yaml` bodies).
//!
//! Parsing uses **serde-saphyr**: it is pure Rust with no `unsafe` (stead forbids unsafe code
//! and this keeps the whole YAML path memory-safe), it is fuzzed and bounds alias expansion
//! ("billion laughs") with a budget, and its errors carry exact line/column locations, which
//! is what users need to fix a manifest. Alternatives considered: `serde_yaml` is deprecated
//! and unmaintained; `yaml_serde` (its maintained continuation) is built on a C-to-Rust port
//! of libyaml full of `unsafe`; `serde_yml` has an unsoundness advisory.
//!
//! Behaviour:
//! - documents are separated by `---`; empty documents (nothing, only comments, or `null`)
//!   are skipped;
//! - every other document must be a mapping (an object);
//! - a Kubernetes `kind: List` document is expanded into its `items` by [`load_objects`];
//! - duplicate keys are an error (a silent "last one wins" hides typos);
//! - malformed YAML is reported as `file:line:column: message`;
//! - like Kubernetes' YAML decoder, `yes`/`no`/`on`/`off` are booleans, so quote such
//!   strings.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use crate::dynamic::DynamicObject;
use crate::json::type_name;

/// A manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// The text is not valid YAML (or not representable as JSON).
    #[error("{}", Located { source_name, line: *line, column: *column, message })]
    Syntax {
        /// File name (or `-` for standard input) for messages.
        source_name: String,
        /// 1-based line, 0 if unknown.
        line: u64,
        /// 1-based column, 0 if unknown.
        column: u64,
        /// What is wrong.
        message: String,
    },
    /// A document is a scalar or a sequence instead of an object.
    #[error(
        "{source_name}:{line}:1: document {document} must be a mapping (an object), got {found}"
    )]
    NotAnObject {
        /// File name for messages.
        source_name: String,
        /// First line of the document.
        line: u64,
        /// 1-based position among the non-empty documents.
        document: usize,
        /// JSON type found.
        found: &'static str,
    },
    /// A `kind: List` document has malformed `items`.
    #[error(
        "{source_name}:{line}:1: document {document} is a List whose items are not all objects"
    )]
    BadList {
        /// File name for messages.
        source_name: String,
        /// First line of the document.
        line: u64,
        /// 1-based position among the non-empty documents.
        document: usize,
    },
    /// A value could not be written as YAML.
    #[error("cannot write YAML: {message}")]
    Serialize {
        /// The serializer's explanation.
        message: String,
    },
}

struct Located<'a> {
    source_name: &'a str,
    line: u64,
    column: u64,
    message: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.source_name, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.source_name, self.line, self.column, self.message
            )
        }
    }
}

/// One non-empty document of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based position among the non-empty documents.
    pub number: usize,
    /// Line where the document's content starts.
    pub line: u64,
    /// The document as JSON.
    pub value: Value,
}

fn syntax_error(source_name: &str, err: &serde_saphyr::Error) -> YamlError {
    let location = err.location();
    let message: String = UserMessageFormatter
        .format_message(err)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    YamlError::Syntax {
        source_name: source_name.to_owned(),
        line: location.map_or(0, |l| l.line()),
        column: location.map_or(0, |l| l.column()),
        message,
    }
}

/// Parses every non-empty document of a YAML stream. `source_name` only labels errors.
///
/// ```
/// let docs = stead_api::yaml::load_documents("m.yaml", "a: 1\n---\n# nothing\n---\nb: 2\n").unwrap();
/// assert_eq!(docs.len(), 2);
/// assert_eq!((docs[1].number, docs[1].line), (2, 5));
/// let err = stead_api::yaml::load_documents("m.yaml", "a: [1\n").unwrap_err();
/// assert!(err.to_string().starts_with("m.yaml:1:4: "));
/// ```
pub fn load_documents(source_name: &str, text: &str) -> Result<Vec<Document>, YamlError> {
    let spanned: Vec<Spanned<Value>> =
        serde_saphyr::from_multiple(text).map_err(|e| syntax_error(source_name, &e))?;
    Ok(spanned
        .into_iter()
        .filter(|doc| !doc.value.is_null())
        .enumerate()
        .map(|(i, doc)| Document {
            number: i + 1,
            line: doc.referenced.line(),
            value: doc.value,
        })
        .collect())
}

/// Parses a manifest into objects: every document must be an object, and `kind: List`
/// documents are expanded into their `items`. Each object comes with its document.
pub fn load_objects(
    source_name: &str,
    text: &str,
) -> Result<Vec<(Document, DynamicObject)>, YamlError> {
    let mut out = Vec::new();
    for doc in load_documents(source_name, text)? {
        let object =
            DynamicObject::from_value(doc.value.clone()).map_err(|_| YamlError::NotAnObject {
                source_name: source_name.to_owned(),
                line: doc.line,
                document: doc.number,
                found: type_name(&doc.value),
            })?;
        let is_list = object.kind() == "List" && matches!(object.api_version(), "v1" | "");
        if !is_list {
            out.push((doc, object));
            continue;
        }
        let bad_list = || YamlError::BadList {
            source_name: source_name.to_owned(),
            line: doc.line,
            document: doc.number,
        };
        let items = object
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for item in items {
            let item = DynamicObject::from_value(item).map_err(|_| bad_list())?;
            out.push((doc.clone(), item));
        }
    }
    Ok(out)
}

/// Parses a single YAML document (e.g. an apply-patch body) into a type.
pub fn from_yaml<T: DeserializeOwned>(source_name: &str, text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str(text).map_err(|e| syntax_error(source_name, &e))
}

/// Writes a value as YAML (for `-o yaml`).
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError::Serialize {
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_are_split_and_empty_ones_skipped() {
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: A\n---\n\n---\n~\n---\nkind: B\nn: 1\n...\n";
        let docs = load_documents("x.yaml", text).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(usize, u64, Value)> = docs
            .into_iter()
            .map(|d| (d.number, d.line, d.value))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 4, json!({"apiVersion": "v1", "kind": "A"})),
                (2, 11, json!({"kind": "B", "n": 1}))
            ]
        );
        assert_eq!(load_documents("x", "").map(|d| d.len()), Ok(0));
    }

    #[test]
    fn malformed_yaml_reports_file_line_and_column() {
        let cases = [
            ("a: 1\n  b: 2\n", 2, 4),
            ("kind: A\n---\nx: [1, 2\n", 3, 4),
            ("a: 1\na: 2\n", 2, 1),
            ("a: \"unterminated\n", 1, 4),
            ("key: value\n- item\n", 2, 3),
        ];
        for (text, line, column) in cases {
            match load_documents("deploy/app.yaml", text) {
                Err(YamlError::Syntax {
                    source_name,
                    line: l,
                    column: c,
                    message,
                }) => {
                    assert_eq!(
                        (source_name.as_str(), l, c),
                        ("deploy/app.yaml", line, column),
                        "{text:?}: {message}"
                    );
                    assert!(
                        !message.is_empty() && !message.contains('\n'),
                        "{message:?}"
                    );
                    let shown = load_documents("deploy/app.yaml", text)
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    assert_eq!(
                        shown,
                        Err(format!("deploy/app.yaml:{line}:{column}: {message}"))
                    );
                }
                other => panic!("{text:?}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn duplicate_keys_are_named_in_the_error() {
        let err =
            load_documents("f", "spec:\n  replicas: 1\n  replicas: 2\n").map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|e| e.starts_with("f:3:3: ") && e.contains("replicas")),
            "{err:?}"
        );
    }

    #[test]
    fn scalars_follow_kubernetes_yaml_conventions() {
        let docs = load_documents(
            "f",
            "a: yes\nb: 'yes'\nc: 1.5\nd: null\ne: 0x10\nf: \"3\"\ng: 2024-01-01\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            docs[0].value,
            json!({"a": true, "b": "yes", "c": 1.5, "d": null, "e": 16, "f": "3", "g": "2024-01-01"})
        );
    }

    #[test]
    fn objects_must_be_mappings_and_lists_are_expanded() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: A\n- kind: B\n---\nkind: C\n";
        let objects = load_objects("m", text).unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<&str> = objects.iter().map(|(_, o)| o.kind()).collect();
        assert_eq!(kinds, ["A", "B", "C"]);
        assert_eq!(objects[2].0.number, 2);
        assert_eq!(
            load_objects("m", "kind: A\n---\n- 1\n- 2\n")
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err("m:3:1: document 2 must be a mapping (an object), got array".to_owned())
        );
        assert_eq!(
            load_objects("m", "kind: List\nitems: [1]\n")
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err("m:1:1: document 1 is a List whose items are not all objects".to_owned())
        );
    }

    #[test]
    fn a_crd_manifest_loads_and_registers() {
        let text = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: configfiles.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: configfiles
    singular: configfile
    kind: ConfigFile
    shortNames: [cf]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Path
      type: string
      jsonPath: .spec.path
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [path, content]
            properties:
              path: {type: string}
              content: {type: string}
              mode: {type: string, pattern: '^0[0-7]{3}$', default: "0644"}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;
        let objects = load_objects("crd.yaml", text).unwrap_or_else(|e| panic!("{e}"));
        let crd = crate::CustomResourceDefinition::from_value(&objects[0].1.to_value())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut registry = crate::KindRegistry::with_builtins().unwrap_or_else(|e| panic!("{e}"));
        let gk = registry
            .register_crd(&crd)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gk.to_string(), "ConfigFile.example.com");
        let object = load_objects("f.yaml", "apiVersion: example.com/v1\nkind: ConfigFile\nmetadata: {name: f, namespace: default}\nspec: {path: /tmp/x, content: hi, mode: '0999'}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = registry.validate(&object[0].1).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("spec.mode: \"0999\" does not match \"^0[0-7]{3}$\"".to_owned())
        );
    }

    #[test]
    fn values_round_trip_through_yaml_text() {
        let value = json!({"apiVersion": "v1", "metadata": {"labels": {"on": "yes"}}, "list": [1, "two", null]});
        let text = to_yaml(&value).unwrap_or_else(|e| panic!("{e}"));
        let back: Value = from_yaml("out", &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, value, "{text}");
    }
}
