//! Property tests: random and mutated documents never make the loader panic,
//! and the loader never accepts what the rules reject.
//!
//! Mutations start from the valid corpus documents (so they reach deep into
//! the schema) and change the tree: drop a key, rename a key, replace a
//! value, duplicate a list item, swap a mapping for a list. Each outcome is
//! cross-checked with two independent judges: the typed path
//! (`validate_message` on the decoded value) and the JSON Schema validator.

mod common;

use common::{Case, Kind, corpus, schema_expresses, schema_validator};
use pingora_config::{Report, load_str, v1, validate_message};
use pingora_config_rules::{Node, Value, parse_yaml};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Mutation {
    DropKey(usize),
    RenameKey(usize, String),
    Replace(usize, Scalar),
    DuplicateItem(usize),
    MapToList(usize),
}

#[derive(Debug, Clone)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        Just(Scalar::Null),
        any::<bool>().prop_map(Scalar::Bool),
        prop_oneof![Just(0i64), Just(1), Just(-1), Just(65536), Just(i64::from(u32::MAX) + 1), any::<i64>()]
            .prop_map(Scalar::Int),
        prop_oneof![Just(0.5f64), Just(-1.0), Just(1e300)].prop_map(Scalar::Float),
        prop_oneof![
            Just(String::new()),
            Just("x".to_owned()),
            Just("GET".to_owned()),
            Just("ROUND_ROBIN".to_owned()),
            Just("1.5s".to_owned()),
            Just("500ms".to_owned()),
            Just("10.0.0.0/8".to_owned()),
            Just("*.example.com".to_owned()),
            Just("/api/*".to_owned()),
            Just("(".to_owned()),
            "[a-zA-Z0-9_./:* -]{0,12}",
        ]
        .prop_map(Scalar::Str),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0usize..10_000;
    prop_oneof![
        at.clone().prop_map(Mutation::DropKey),
        (at.clone(), prop_oneof![Just("upstreamId".to_owned()), Just("id ".to_owned()), "[a-z_]{1,10}"])
            .prop_map(|(i, k)| Mutation::RenameKey(i, k)),
        (at.clone(), scalar()).prop_map(|(i, s)| Mutation::Replace(i, s)),
        at.clone().prop_map(Mutation::DuplicateItem),
        at.prop_map(Mutation::MapToList),
    ]
}

/// The n-th node (pre-order, modulo the node count) of the tree.
fn nth(root: &mut Node, n: usize) -> &mut Node {
    fn count(n: &Node) -> usize {
        1 + match &n.value {
            Value::Seq(items) => items.iter().map(count).sum(),
            Value::Map(entries) => entries.iter().map(|(_, _, v)| count(v)).sum(),
            _ => 0,
        }
    }
    let mut target = n % count(root);
    let mut node = root;
    loop {
        if target == 0 {
            return node;
        }
        target -= 1;
        let children: Vec<&mut Node> = match &mut node.value {
            Value::Seq(items) => items.iter_mut().collect(),
            Value::Map(entries) => entries.iter_mut().map(|(_, _, v)| v).collect(),
            _ => unreachable!("count said there are more nodes"),
        };
        let mut next = None;
        for child in children {
            let c = count(child);
            if target < c {
                next = Some(child);
                break;
            }
            target -= c;
        }
        node = next.expect("target lies in one child");
    }
}

fn apply(tree: &mut Node, m: &Mutation) {
    match m {
        Mutation::DropKey(i) => {
            if let Value::Map(entries) = &mut nth(tree, *i).value
                && !entries.is_empty()
            {
                entries.remove(i % entries.len());
            }
        }
        Mutation::RenameKey(i, k) => {
            if let Value::Map(entries) = &mut nth(tree, *i).value {
                let len = entries.len();
                if len > 0 && !entries.iter().any(|(e, _, _)| e == k) {
                    entries[i % len].0 = k.as_str().into();
                }
            }
        }
        Mutation::Replace(i, s) => {
            nth(tree, *i).value = match s {
                Scalar::Null => Value::Null,
                Scalar::Bool(b) => Value::Bool(*b),
                Scalar::Int(v) => Value::Int(i128::from(*v)),
                Scalar::Float(f) => Value::Float(*f),
                Scalar::Str(t) => Value::Str(t.as_str().into()),
            }
        }
        Mutation::DuplicateItem(i) => {
            if let Value::Seq(items) = &mut nth(tree, *i).value
                && let Some(first) = items.first().cloned()
            {
                items.push(first);
            }
        }
        Mutation::MapToList(i) => {
            let node = nth(tree, *i);
            if let Value::Map(entries) = &node.value {
                node.value = Value::Seq(entries.iter().map(|(_, _, v)| v.clone()).collect());
            }
        }
    }
}

fn load(kind: Kind, text: &str) -> Result<Box<dyn Fn() -> Result<(), Report>>, Report> {
    match kind {
        Kind::Config => {
            let (c, _) = load_str::<v1::Config>(text, "fuzz")?;
            Ok(Box::new(move || validate_message(&c, "decoded").map(|_| ())))
        }
        Kind::Bootstrap => {
            let (b, _) = load_str::<v1::Bootstrap>(text, "fuzz")?;
            Ok(Box::new(move || validate_message(&b, "decoded").map(|_| ())))
        }
    }
}

fn valid_cases() -> Vec<Case> {
    corpus().into_iter().filter(|c| c.valid).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_documents_are_judged_like_the_typed_path_and_the_schema(
        pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let cases = valid_cases();
        prop_assume!(!cases.is_empty());
        let case = &cases[pick.index(cases.len())];
        let mut tree = parse_yaml(&case.text).expect("valid corpus documents parse");
        for m in &mutations {
            apply(&mut tree, m);
        }
        let json = tree.to_json();
        let text = serde_json::to_string_pretty(&json).expect("serialises");
        let schema_ok = schema_validator(case.kind).is_valid(&json);
        match load(case.kind, &text) {
            Ok(typed) => {
                // Accepted: the decoded value passes the same rules, and the
                // independent schema validator accepts the document too.
                prop_assert!(typed().is_ok(), "accepted, but the decoded value fails validation:\n{text}\n{:?}", typed());
                prop_assert!(schema_ok, "the loader accepts what the JSON Schema rejects:\n{text}");
            }
            Err(report) => {
                let expressible = report.violations.iter().all(|v| schema_expresses(v.rule));
                prop_assert!(!(expressible && schema_ok), "the loader rejects what the JSON Schema accepts:\n{text}\n{report}");
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(text in "\\PC{0,400}") {
        let _ = load_str::<v1::Config>(&text, "fuzz");
        let _ = load_str::<v1::Bootstrap>(&text, "fuzz");
    }

    #[test]
    fn damaged_yaml_never_panics_and_always_says_where(
        pick in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        insert in "[\\[\\]{}:,&*!|>'\"#%@` \\t\\n-]{1,3}",
    ) {
        let cases = valid_cases();
        prop_assume!(!cases.is_empty());
        let case = &cases[pick.index(cases.len())];
        let chars: Vec<char> = case.text.chars().collect();
        let at = cut.index(chars.len().max(1));
        let text: String = chars[..at.min(chars.len())].iter().chain(insert.chars().collect::<Vec<_>>().iter()).chain(chars[at.min(chars.len())..].iter()).collect();
        if let Err(report) = load_str::<v1::Config>(&text, "fuzz") {
            prop_assert!(!report.violations.is_empty());
            for v in &report.violations {
                prop_assert!(v.pos.is_some(), "no position for {v}");
            }
        }
    }
}
