//! [`FieldIssue`] and [`ValidationErrors`]: what is wrong with an object, field by field.
//!
//! Every check in the crate (schema, metadata, CRD, lifecycle) reports problems in this one
//! shape so the server can turn them into a Kubernetes `Status` with `details.causes`
//! (`field` = [`FieldIssue::path`], `reason` from [`FieldIssue::rule`]).

use std::fmt;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldIssue {
    /// Dotted path with list indices, e.g. `spec.containers[0].image`; empty for the whole
    /// object.
    pub path: String,
    /// The rule that failed: a JSON Schema keyword (`minimum`, `type`, `required`, ...) or a
    /// stead rule (`dns1123Subdomain`, `immutable`, `forbidden`, ...).
    pub rule: String,
    /// What is wrong, lowercase, e.g. `-1 is less than the minimum of 0`.
    pub message: String,
}

impl FieldIssue {
    /// An issue at `path` breaking `rule`.
    pub fn new(
        path: impl Into<String>,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FieldIssue {
            path: path.into(),
            rule: rule.into(),
            message: message.into(),
        }
    }

    /// The same issue nested under `prefix` (`metadata` + `name` -> `metadata.name`).
    #[must_use]
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = join_path(prefix, &self.path);
        self
    }
}

impl fmt::Display for FieldIssue {
    /// `path: message`, or just the message for the whole object.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Joins a dotted path and a child path (`a` + `b` -> `a.b`, `a` + `[0]` -> `a[0]`).
pub(crate) fn join_path(prefix: &str, child: &str) -> String {
    match (prefix.is_empty(), child.is_empty()) {
        (true, _) => child.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if child.starts_with('[') => format!("{prefix}{child}"),
        (false, false) => format!("{prefix}.{child}"),
    }
}

/// A dotted path segment for a map key; keys that are not plain identifiers are quoted
/// (`metadata.labels[app.kubernetes.io/name]`), as Kubernetes' field paths do.
pub(crate) fn key_segment(prefix: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$');
    if plain {
        join_path(prefix, key)
    } else {
        format!("{prefix}[{key}]")
    }
}

/// One or more field issues: the object is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.issues))]
pub struct ValidationErrors {
    /// Every problem found, in document order.
    pub issues: Vec<FieldIssue>,
}

fn render(issues: &[FieldIssue]) -> String {
    match issues {
        [] => "invalid object".to_owned(),
        [one] => one.to_string(),
        many => {
            let parts: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

impl ValidationErrors {
    /// Ok when there are no issues, the error otherwise.
    pub fn check(issues: Vec<FieldIssue>) -> Result<(), ValidationErrors> {
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors { issues })
        }
    }

    /// A single issue.
    pub fn single(issue: FieldIssue) -> Self {
        ValidationErrors {
            issues: vec![issue],
        }
    }
}

impl From<FieldIssue> for ValidationErrors {
    fn from(issue: FieldIssue) -> Self {
        ValidationErrors::single(issue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_print_path_then_message() {
        let issue = FieldIssue::new(
            "spec.replicas",
            "minimum",
            "-1 is less than the minimum of 0",
        );
        assert_eq!(
            issue.to_string(),
            "spec.replicas: -1 is less than the minimum of 0"
        );
        assert_eq!(
            FieldIssue::new("", "type", "not an object").to_string(),
            "not an object"
        );
        assert_eq!(
            FieldIssue::new("name", "required", "x")
                .under("metadata")
                .path,
            "metadata.name"
        );
    }

    #[test]
    fn paths_join_with_dots_and_brackets() {
        let cases = [
            ("", "a", "a"),
            ("a", "", "a"),
            ("a", "b", "a.b"),
            ("a", "[0]", "a[0]"),
        ];
        for (prefix, child, want) in cases {
            assert_eq!(join_path(prefix, child), want);
        }
        assert_eq!(key_segment("metadata.labels", "app"), "metadata.labels.app");
        assert_eq!(
            key_segment("metadata.labels", "app.kubernetes.io/name"),
            "metadata.labels[app.kubernetes.io/name]"
        );
    }

    #[test]
    fn several_issues_print_as_a_bracketed_list() {
        let errs = ValidationErrors {
            issues: vec![
                FieldIssue::new("a", "r", "x"),
                FieldIssue::new("b", "r", "y"),
            ],
        };
        assert_eq!(errs.to_string(), "[a: x, b: y]");
        assert!(ValidationErrors::check(Vec::new()).is_ok());
        assert_eq!(
            ValidationErrors::single(FieldIssue::new("a", "r", "x")).to_string(),
            "a: x"
        );
    }
}
