//! JSON Pointer (RFC 6901): `/spec/containers/0/name`, with `~1` for `/` and `~0` for `~` in
//! keys. Used by JSON patch and in error messages.

use std::fmt;

/// A malformed JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON pointer {pointer:?}: {reason}")]
pub struct PointerError {
    /// The rejected text.
    pub pointer: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// A parsed JSON pointer: the reference tokens, unescaped.
///
/// ```
/// use stead_api::patch::JsonPointer;
/// let p = JsonPointer::parse("/metadata/labels/app.kubernetes.io~1name").unwrap();
/// assert_eq!(p.tokens(), ["metadata", "labels", "app.kubernetes.io/name"]);
/// assert_eq!(p.to_string(), "/metadata/labels/app.kubernetes.io~1name");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct JsonPointer {
    tokens: Vec<String>,
}

impl JsonPointer {
    /// The pointer to the whole document (`""`).
    pub fn root() -> Self {
        JsonPointer::default()
    }

    /// A pointer from unescaped tokens.
    pub fn from_tokens<I: IntoIterator<Item = S>, S: Into<String>>(tokens: I) -> Self {
        JsonPointer {
            tokens: tokens.into_iter().map(Into::into).collect(),
        }
    }

    /// Parses `""` or `/token/token...`.
    pub fn parse(text: &str) -> Result<Self, PointerError> {
        let err = |reason| PointerError {
            pointer: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Ok(JsonPointer::root());
        }
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| err("must be empty or start with '/'"))?;
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => token.push('~'),
                        Some('1') => token.push('/'),
                        _ => return Err(err("'~' must be followed by '0' or '1'")),
                    }
                } else {
                    token.push(c);
                }
            }
            tokens.push(token);
        }
        Ok(JsonPointer { tokens })
    }

    /// The unescaped reference tokens.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Whether this is the root pointer.
    pub fn is_root(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The parent pointer and the last token, or `None` for the root.
    pub fn split_last(&self) -> Option<(JsonPointer, &str)> {
        let (last, parent) = self.tokens.split_last()?;
        Some((
            JsonPointer {
                tokens: parent.to_vec(),
            },
            last.as_str(),
        ))
    }

    /// This pointer extended by one token.
    #[must_use]
    pub fn child(&self, token: impl Into<String>) -> Self {
        let mut tokens = self.tokens.clone();
        tokens.push(token.into());
        JsonPointer { tokens }
    }

    /// Whether `other` points strictly inside the value this pointer names.
    pub fn is_proper_prefix_of(&self, other: &JsonPointer) -> bool {
        other.tokens.len() > self.tokens.len() && other.tokens.starts_with(&self.tokens)
    }
}

/// Escapes one reference token (`~` -> `~0`, `/` -> `~1`).
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for token in &self.tokens {
            write!(f, "/{}", escape_token(token))?;
        }
        Ok(())
    }
}

/// Parses an array index token: decimal digits without leading zeros.
pub(crate) fn parse_index(token: &str) -> Option<usize> {
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if valid { token.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pointers_unescape_tilde_and_slash() {
        let cases: [(&str, &[&str]); 7] = [
            ("", &[]),
            ("/", &[""]),
            ("/a/b", &["a", "b"]),
            ("/a~1b", &["a/b"]),
            ("/m~0n", &["m~n"]),
            ("/~01", &["~1"]),
            ("/a//b", &["a", "", "b"]),
        ];
        for (text, tokens) in cases {
            let p = JsonPointer::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.tokens(), tokens, "{text}");
            assert_eq!(p.to_string(), text);
        }
    }

    #[test]
    fn malformed_pointers_are_rejected() {
        let cases = [
            ("a/b", "must be empty or start with '/'"),
            ("/a~", "'~' must be followed by '0' or '1'"),
            ("/a~2", "'~' must be followed by '0' or '1'"),
        ];
        for (text, reason) in cases {
            assert_eq!(
                JsonPointer::parse(text),
                Err(PointerError {
                    pointer: text.into(),
                    reason
                })
            );
        }
    }

    #[test]
    fn array_indices_have_no_leading_zeros() {
        let cases = [
            ("0", Some(0)),
            ("10", Some(10)),
            ("01", None),
            ("-", None),
            ("", None),
            ("1a", None),
        ];
        for (token, want) in cases {
            assert_eq!(parse_index(token), want, "{token:?}");
        }
    }

    #[test]
    fn prefixes_and_parents_are_computed_on_tokens() {
        let a = JsonPointer::parse("/a").unwrap_or_default();
        let ab = JsonPointer::parse("/a/b").unwrap_or_default();
        let ax = JsonPointer::parse("/ax").unwrap_or_default();
        assert!(a.is_proper_prefix_of(&ab) && !ab.is_proper_prefix_of(&a));
        assert!(!a.is_proper_prefix_of(&a) && !a.is_proper_prefix_of(&ax));
        assert_eq!(
            ab.split_last().map(|(p, l)| (p.to_string(), l.to_owned())),
            Some(("/a".into(), "b".into()))
        );
        assert_eq!(a.child("c/d").to_string(), "/a/c~1d");
        assert!(JsonPointer::root().split_last().is_none());
    }

    proptest! {
        #[test]
        fn printing_then_parsing_a_pointer_gives_back_its_tokens(
            tokens in proptest::collection::vec("[a~/0-9]{0,4}", 0..5)
        ) {
            let pointer = JsonPointer::from_tokens(tokens.clone());
            let parsed = JsonPointer::parse(&pointer.to_string());
            prop_assert_eq!(parsed.map(|p| p.tokens().to_vec()), Ok(tokens));
        }
    }
}
