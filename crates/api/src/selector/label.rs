//! Label selectors in Kubernetes' string syntax (`labelSelector=` query parameter, `-l`):
//!
//! | syntax           | matches when                                   |
//! |------------------|------------------------------------------------|
//! | `a=b`, `a==b`    | label `a` is `b`                               |
//! | `a!=b`           | label `a` is absent or not `b`                 |
//! | `a in (x,y)`     | label `a` is `x` or `y`                        |
//! | `a notin (x,y)`  | label `a` is absent or neither `x` nor `y`     |
//! | `a`, `!a`        | label `a` exists / does not exist              |
//! | `a>1`, `a<1`     | label `a` is an integer greater / less than 1  |
//!
//! Requirements are separated by `,` and must all hold; the empty selector matches everything.
//! Parsing sorts requirements by key, as Kubernetes does, so [`Selector`]'s `Display` is a
//! canonical form: parsing it again gives the same selector. The structured form used inside
//! specs (`matchLabels` / `matchExpressions`) is [`LabelSelector`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{names, null_as_default};

/// A label selector that could not be parsed or is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {input:?}: {message} (at character {position})")]
pub struct SelectorError {
    /// The whole selector text.
    pub input: String,
    /// 0-based character offset where the problem was found.
    pub position: usize,
    /// What was expected or wrong.
    pub message: String,
}

/// How a requirement compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `=`
    Equals,
    /// `==`
    DoubleEquals,
    /// `!=`
    NotEquals,
    /// `in (...)`
    In,
    /// `notin (...)`
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `>`
    GreaterThan,
    /// `<`
    LessThan,
}

/// One `key op values` term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// Comparison.
    pub operator: Operator,
    /// Values (one for `=`/`!=`/`>`/`<`, sorted and non-empty for `in`/`notin`, none for
    /// existence).
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let in_values = |v: &String| self.values.iter().any(|x| x == v);
        let number = |text: Option<&String>| text.and_then(|t| t.parse::<i64>().ok());
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(in_values)
            }
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(in_values),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan => {
                matches!((number(value), number(self.values.first())), (Some(v), Some(x)) if v > x)
            }
            Operator::LessThan => {
                matches!((number(value), number(self.values.first())), (Some(v), Some(x)) if v < x)
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map_or("", String::as_str);
        match self.operator {
            Operator::Equals => write!(f, "{}={first}", self.key),
            Operator::DoubleEquals => write!(f, "{}=={first}", self.key),
            Operator::NotEquals => write!(f, "{}!={first}", self.key),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{first}", self.key),
            Operator::LessThan => write!(f, "{}<{first}", self.key),
        }
    }
}

/// A parsed label selector: all requirements must hold.
///
/// ```
/// use std::collections::BTreeMap;
/// use stead_api::selector::Selector;
/// let sel: Selector = "tier in (web, api), env!=prod, !canary".parse().unwrap();
/// assert_eq!(sel.to_string(), "!canary,env!=prod,tier in (api,web)");
/// let labels = BTreeMap::from([("tier".to_owned(), "web".to_owned())]);
/// assert!(sel.matches(&labels));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Whether this selector has no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// A selector from requirements (validated like parsed ones).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Result<Self, SelectorError> {
        for r in &mut requirements {
            validate(r).map_err(|message| SelectorError {
                input: r.to_string(),
                position: 0,
                message,
            })?;
            if matches!(r.operator, Operator::In | Operator::NotIn) {
                r.values.sort();
                r.values.dedup();
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }

    /// Parses Kubernetes selector syntax (see the module docs).
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser {
            input,
            tokens: tokenize(input),
            pos: 0,
        };
        let mut requirements = Vec::new();
        if parser.peek().is_none() {
            return Ok(Selector::everything());
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                None => break,
                Some((_, Token::Comma)) => {}
                Some((at, t)) => {
                    return Err(
                        parser.error(at, format!("expected ',' or end of selector, found {t}"))
                    );
                }
            }
        }
        Selector::from_requirements(requirements).map_err(|e| SelectorError {
            input: input.to_owned(),
            ..e
        })
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

fn validate(r: &Requirement) -> Result<(), String> {
    if let Some(problem) = names::qualified_name(&r.key).into_iter().next() {
        return Err(format!("invalid label key {:?}: {problem}", r.key));
    }
    match r.operator {
        Operator::In | Operator::NotIn if r.values.is_empty() => {
            return Err("for 'in', 'notin' operators, values set can't be empty".to_owned());
        }
        Operator::Exists | Operator::DoesNotExist if !r.values.is_empty() => {
            return Err("values set must be empty for exists and does not exist".to_owned());
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if r.values.len() != 1 => {
            return Err("exact-match compatibility requires one single value".to_owned());
        }
        Operator::GreaterThan | Operator::LessThan => {
            if r.values.len() != 1 || r.values[0].parse::<i64>().is_err() {
                return Err(format!(
                    "for '<', '>' operators, the value must be an integer, got {:?}",
                    r.values
                ));
            }
            return Ok(());
        }
        _ => {}
    }
    for value in &r.values {
        if let Some(problem) = names::label_value(value).into_iter().next() {
            return Err(format!("invalid label value {value:?}: {problem}"));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "{s:?}"),
            Token::Not => f.write_str("'!'"),
            Token::Equals => f.write_str("'='"),
            Token::DoubleEquals => f.write_str("'=='"),
            Token::NotEquals => f.write_str("'!='"),
            Token::Greater => f.write_str("'>'"),
            Token::Less => f.write_str("'<'"),
            Token::Open => f.write_str("'('"),
            Token::Close => f.write_str("')'"),
            Token::Comma => f.write_str("','"),
        }
    }
}

/// Splits a selector into tokens with their character offsets.
fn tokenize(input: &str) -> Vec<(usize, Token)> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let special =
        |c: char| matches!(c, '!' | '=' | '(' | ')' | ',' | '>' | '<') || c.is_whitespace();
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (token, width) = match (c, next) {
            (c, _) if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ('!', Some('=')) => (Token::NotEquals, 2),
            ('=', Some('=')) => (Token::DoubleEquals, 2),
            ('!', _) => (Token::Not, 1),
            ('=', _) => (Token::Equals, 1),
            ('>', _) => (Token::Greater, 1),
            ('<', _) => (Token::Less, 1),
            ('(', _) => (Token::Open, 1),
            (')', _) => (Token::Close, 1),
            (',', _) => (Token::Comma, 1),
            _ => {
                let start = i;
                while i < chars.len() && !special(chars[i]) {
                    i += 1;
                }
                tokens.push((start, Token::Ident(chars[start..i].iter().collect())));
                continue;
            }
        };
        tokens.push((i, token));
        i += width;
    }
    tokens
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&(usize, Token)> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<(usize, Token)> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn end(&self) -> usize {
        self.input.chars().count()
    }

    fn error(&self, position: usize, message: String) -> SelectorError {
        SelectorError {
            input: self.input.to_owned(),
            position,
            message,
        }
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        match self.next() {
            Some((_, Token::Ident(key))) => Ok(key),
            Some((at, t)) => Err(self.error(at, format!("expected a label key, found {t}"))),
            None => Err(self.error(
                self.end(),
                "expected a label key, found end of selector".to_owned(),
            )),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if matches!(self.peek(), Some((_, Token::Not))) {
            self.pos += 1;
            let key = self.key()?;
            return Ok(Requirement {
                key,
                operator: Operator::DoesNotExist,
                values: Vec::new(),
            });
        }
        let key = self.key()?;
        let operator = match self.peek() {
            None | Some((_, Token::Comma)) => {
                return Ok(Requirement {
                    key,
                    operator: Operator::Exists,
                    values: Vec::new(),
                });
            }
            Some((_, Token::Equals)) => Operator::Equals,
            Some((_, Token::DoubleEquals)) => Operator::DoubleEquals,
            Some((_, Token::NotEquals)) => Operator::NotEquals,
            Some((_, Token::Greater)) => Operator::GreaterThan,
            Some((_, Token::Less)) => Operator::LessThan,
            Some((_, Token::Ident(word))) if word == "in" => Operator::In,
            Some((_, Token::Ident(word))) if word == "notin" => Operator::NotIn,
            Some((at, t)) => {
                let message = format!(
                    "expected one of '=', '==', '!=', 'in', 'notin', '>', '<' after {key:?}, found {t}"
                );
                return Err(self.error(*at, message));
            }
        };
        self.pos += 1;
        let values = if matches!(operator, Operator::In | Operator::NotIn) {
            self.value_set()?
        } else {
            match self.peek() {
                // `a=` selects the empty value.
                None | Some((_, Token::Comma)) => vec![String::new()],
                Some((_, Token::Ident(v))) => {
                    let v = v.clone();
                    self.pos += 1;
                    vec![v]
                }
                Some((at, t)) => {
                    return Err(self.error(*at, format!("expected a value, found {t}")));
                }
            }
        };
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Some((_, Token::Open)) => {}
            Some((at, t)) => return Err(self.error(at, format!("expected '(', found {t}"))),
            None => {
                return Err(
                    self.error(self.end(), "expected '(', found end of selector".to_owned())
                );
            }
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Some((_, Token::Close)) => {
                    if expect_value && !values.is_empty() {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                Some((_, Token::Comma)) if !expect_value => expect_value = true,
                Some((_, Token::Comma)) => values.push(String::new()),
                Some((_, Token::Ident(v))) if expect_value => {
                    values.push(v);
                    expect_value = false;
                }
                Some((at, t)) => {
                    return Err(self.error(at, format!("expected a value, ',' or ')', found {t}")));
                }
                None => {
                    return Err(
                        self.error(self.end(), "expected ')', found end of selector".to_owned())
                    );
                }
            }
        }
    }
}

/// The structured selector used in specs (`metav1.LabelSelector`): `matchLabels` and
/// `matchExpressions`, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must have exactly these values.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One entry of `matchExpressions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// The equivalent parsed selector (the empty structured selector matches everything).
    pub fn to_selector(&self) -> Result<Selector, SelectorError> {
        let mut requirements: Vec<Requirement> = self
            .match_labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        for expr in &self.match_expressions {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError {
                        input: expr.key.clone(),
                        position: 0,
                        message: format!(
                            "{other:?} is not a valid label selector operator: expected In, NotIn, Exists or DoesNotExist"
                        ),
                    });
                }
            };
            requirements.push(Requirement {
                key: expr.key.clone(),
                operator,
                values: expr.values.clone(),
            });
        }
        Selector::from_requirements(requirements)
    }
}

#[cfg(test)]
#[path = "label_tests.rs"]
mod tests;
