//! Kubernetes naming rules: RFC 1123 subdomains and labels, qualified names and label values.
//!
//! Each check returns the list of problems (empty when the input is valid) worded like
//! Kubernetes' `k8s.io/apimachinery/pkg/util/validation`, so the messages users see match the
//! ones they know. Callers prefix them with the field path.

/// Longest RFC 1123 subdomain (object names, label-key prefixes, API groups).
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest RFC 1123 label (namespace names, plural resource names).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest name part of a qualified name and longest label value.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
     alphanumeric characters or '-', and must start and end with an alphanumeric character \
     (e.g. 'my-name', or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
     (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric \
     characters or '-', start with an alphabetic character, and end with an alphanumeric \
     character (e.g. 'my-name', or 'abc-123', regex used for validation is \
     '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and \
     must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or \
     '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character \
     (e.g. 'MyValue', or 'my_value', or '12345', regex used for validation is \
     '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn max_len_msg(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_lower_alnum_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            edge(first) && edge(last) && b.iter().all(|c| edge(c) || *c == b'-')
        }
        _ => false,
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Problems with `value` as an RFC 1123 label (at most 63 characters).
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_msg(DNS1123_LABEL_MAX_LENGTH));
    }
    if !is_lower_alnum_label(value) {
        errs.push(DNS1123_LABEL_MSG.to_owned());
    }
    errs
}

/// Problems with `value` as an RFC 1123 subdomain (at most 253 characters), the rule for
/// object names.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_msg(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !value.split('.').all(is_lower_alnum_label) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_owned());
    }
    errs
}

/// Problems with `value` as an RFC 1035 label (starts with a letter), the rule for version
/// names such as `v1beta1`.
pub fn dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_msg(DNS1123_LABEL_MAX_LENGTH));
    }
    let starts_with_letter = value.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if !starts_with_letter || !is_lower_alnum_label(value) {
        errs.push(DNS1035_LABEL_MSG.to_owned());
    }
    errs
}

/// Problems with `value` as a qualified name `[prefix/]name`: label and annotation keys,
/// finalizers.
pub fn qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let (prefix, name) = match value.split_once('/') {
        None => (None, value),
        Some((prefix, name)) => (Some(prefix), name),
    };
    if name.contains('/') {
        errs.push(format!("a qualified name {QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
        return errs;
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errs.push("prefix part must be non-empty".to_owned());
        } else {
            errs.extend(
                dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|e| format!("prefix part {e}")),
            );
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else {
        if name.len() > QUALIFIED_NAME_MAX_LENGTH {
            errs.push(format!(
                "name part {}",
                max_len_msg(QUALIFIED_NAME_MAX_LENGTH)
            ));
        }
        if !is_qualified_name_part(name) {
            errs.push(format!("name part {QUALIFIED_NAME_MSG}"));
        }
    }
    errs
}

/// Problems with `value` as a label value (may be empty).
pub fn label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(max_len_msg(QUALIFIED_NAME_MAX_LENGTH));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(LABEL_VALUE_MSG.to_owned());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_follow_the_rfc1123_subdomain_rule() {
        let long = "a".repeat(254);
        let cases: [(&str, bool); 10] = [
            ("web", true),
            ("web-1.example.com", true),
            ("0abc", true),
            ("Web", false),
            ("-web", false),
            ("web-", false),
            ("web..x", false),
            ("web_1", false),
            ("", false),
            (&long, false),
        ];
        for (name, ok) in cases {
            assert_eq!(dns1123_subdomain(name).is_empty(), ok, "{name:?}");
        }
        assert!(dns1123_subdomain("Bad")[0].starts_with("a lowercase RFC 1123 subdomain"));
        assert_eq!(
            dns1123_subdomain(&long)[0],
            "must be no more than 253 characters"
        );
    }

    #[test]
    fn labels_and_dns1035_labels_differ_on_a_leading_digit() {
        let cases = [
            ("default", true, true),
            ("kube-system", true, true),
            ("1abc", true, false),
            ("a.b", false, false),
            ("A", false, false),
            ("v1beta1", true, true),
        ];
        for (value, label, dns1035) in cases {
            assert_eq!(dns1123_label(value).is_empty(), label, "1123 {value:?}");
            assert_eq!(dns1035_label(value).is_empty(), dns1035, "1035 {value:?}");
        }
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn qualified_names_allow_a_subdomain_prefix() {
        let cases = [
            ("app", true),
            ("app.kubernetes.io/name", true),
            ("My_Key.1", true),
            ("stead.dev/stop-processes", true),
            ("/name", false),
            ("prefix/", false),
            ("a/b/c", false),
            ("Bad_Prefix/x", false),
            ("-x", false),
        ];
        for (key, ok) in cases {
            assert_eq!(
                qualified_name(key).is_empty(),
                ok,
                "{key:?}: {:?}",
                qualified_name(key)
            );
        }
        assert_eq!(
            qualified_name("a/").first().map(String::as_str),
            Some("name part must be non-empty")
        );
    }

    #[test]
    fn label_values_may_be_empty_but_not_malformed() {
        let long = "v".repeat(64);
        let cases: [(&str, bool); 6] = [
            ("", true),
            ("v1.2_3-x", true),
            ("x y", false),
            ("-x", false),
            ("x.", false),
            (&long, false),
        ];
        for (value, ok) in cases {
            assert_eq!(label_value(value).is_empty(), ok, "{value:?}");
        }
    }
}
