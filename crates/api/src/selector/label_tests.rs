//! Tests of label selector parsing, printing and matching.

use super::*;
use proptest::prelude::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn selectors_parse_to_their_canonical_form() {
    let cases = [
        ("", ""),
        ("  ", ""),
        ("a=b", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("a = b", "a=b"),
        ("a=", "a="),
        ("a", "a"),
        ("!a", "!a"),
        ("! a", "!a"),
        ("a in (y, x, x)", "a in (x,y)"),
        ("a notin (x)", "a notin (x)"),
        ("a in (x,)", "a in (,x)"),
        ("b=1,a in (x),!c", "a in (x),b=1,!c"),
        ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
        ("n>5,m<-1", "m<-1,n>5"),
        ("x in(a),y", "x in (a),y"),
    ];
    for (input, want) in cases {
        let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(sel.to_string(), want, "{input:?}");
    }
}

#[test]
fn malformed_selectors_say_what_was_expected_and_where() {
    let cases = [
        ("a in (x", 7, "expected ')', found end of selector"),
        ("a in x", 5, "expected '(', found \"x\""),
        (
            "a b",
            2,
            "expected one of '=', '==', '!=', 'in', 'notin', '>', '<' after \"a\", found \"b\"",
        ),
        ("=b", 0, "expected a label key, found '='"),
        ("a=b,", 4, "expected a label key, found end of selector"),
        ("a=b c", 4, "expected ',' or end of selector, found \"c\""),
        ("a=(b)", 2, "expected a value, found '('"),
        (
            "a in ()",
            0,
            "for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            "a>b",
            0,
            "for '<', '>' operators, the value must be an integer, got [\"b\"]",
        ),
        (
            "-a=b",
            0,
            "invalid label key \"-a\": name part must consist of alphanumeric characters",
        ),
        (
            "a=b@",
            0,
            "invalid label value \"b@\": a valid label must be an empty string or consist",
        ),
    ];
    for (input, position, message) in cases {
        let err = Selector::parse(input).expect_err(input);
        assert_eq!(err.position, position, "{input:?}: {err}");
        assert!(
            err.message.starts_with(message),
            "{input:?}: {}",
            err.message
        );
        assert_eq!(err.input, input);
    }
    assert_eq!(
        Selector::parse("a in (x").map_err(|e| e.to_string()),
        Err("invalid label selector \"a in (x\": expected ')', found end of selector (at character 7)".to_owned())
    );
}

#[test]
fn requirements_match_labels_like_kubernetes() {
    let web = labels(&[("app", "web"), ("tier", "front"), ("n", "10")]);
    let none = labels(&[]);
    let cases = [
        ("", true, true),
        ("app=web", true, false),
        ("app==web", true, false),
        ("app!=web", false, true),
        ("app!=db", true, true),
        ("app in (web,db)", true, false),
        ("app notin (web)", false, true),
        ("app notin (db)", true, true),
        ("app", true, false),
        ("!app", false, true),
        ("app=web,tier=back", false, false),
        ("n>5", true, false),
        ("n<5", false, false),
        ("app>1", false, false),
        ("missing=", false, false),
    ];
    for (input, on_web, on_none) in cases {
        let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (sel.matches(&web), sel.matches(&none)),
            (on_web, on_none),
            "{input:?}"
        );
    }
    let empty_value = Selector::parse("a=").unwrap_or_default();
    assert!(empty_value.matches(&labels(&[("a", "")])));
}

#[test]
fn structured_selectors_convert_to_parsed_ones() {
    let structured = LabelSelector {
        match_labels: labels(&[("app", "web")]),
        match_expressions: vec![
            LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: vec!["b".into(), "a".into()],
            },
            LabelSelectorRequirement {
                key: "canary".into(),
                operator: "DoesNotExist".into(),
                values: vec![],
            },
        ],
    };
    let sel = structured.to_selector().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sel.to_string(), "app=web,!canary,tier in (a,b)");
    assert!(
        LabelSelector::default()
            .to_selector()
            .is_ok_and(|s| s.is_empty())
    );
    let bad = LabelSelector {
        match_expressions: vec![LabelSelectorRequirement {
            key: "a".into(),
            operator: "Near".into(),
            values: vec![],
        }],
        ..LabelSelector::default()
    };
    assert!(bad.to_selector().is_err());
    let no_values = LabelSelector {
        match_expressions: vec![LabelSelectorRequirement {
            key: "a".into(),
            operator: "In".into(),
            values: vec![],
        }],
        ..LabelSelector::default()
    };
    assert!(no_values.to_selector().is_err());
    let json = serde_json::json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "x", "operator": "Exists"}]});
    let parsed: LabelSelector = serde_json::from_value(json.clone()).unwrap_or_default();
    assert_eq!(serde_json::to_value(&parsed).ok(), Some(json));
}

fn arb_requirement() -> impl Strategy<Value = Requirement> {
    let key = "([a-z]{1,3}\\.)?[a-z]{1,3}/?[a-zA-Z0-9]{1,4}"
        .prop_filter("valid key", |k| names::qualified_name(k).is_empty());
    let value = "[a-z0-9]([a-z0-9._-]{0,3}[a-z0-9])?";
    let values = proptest::collection::btree_set(value, 1..4)
        .prop_map(|s| s.into_iter().collect::<Vec<_>>());
    (
        key,
        prop_oneof![
            value.prop_map(|v| (Operator::Equals, vec![v])),
            value.prop_map(|v| (Operator::DoubleEquals, vec![v])),
            value.prop_map(|v| (Operator::NotEquals, vec![v])),
            values.clone().prop_map(|v| (Operator::In, v)),
            values.prop_map(|v| (Operator::NotIn, v)),
            Just((Operator::Exists, vec![])),
            Just((Operator::DoesNotExist, vec![])),
            (-99i64..99).prop_map(|n| (Operator::GreaterThan, vec![n.to_string()])),
            (-99i64..99).prop_map(|n| (Operator::LessThan, vec![n.to_string()])),
        ],
    )
        .prop_map(|(key, (operator, values))| Requirement {
            key,
            operator,
            values,
        })
}

proptest! {
    #[test]
    fn printing_a_selector_and_parsing_it_again_gives_the_same_selector(
        reqs in proptest::collection::vec(arb_requirement(), 0..5)
    ) {
        let sel = Selector::from_requirements(reqs);
        prop_assert!(sel.is_ok());
        let sel = sel.unwrap_or_default();
        let printed = sel.to_string();
        prop_assert_eq!(Selector::parse(&printed), Ok(sel.clone()), "{}", printed);
    }

    #[test]
    fn arbitrary_text_never_panics_the_parser(text in "[a-z!=(), <>in]{0,20}") {
        let _ = Selector::parse(&text);
    }
}
