//! The parser against its own printer: any condition tree, written out with every placeholder it needs, parses
//! back to the same tree; and the evaluator against a few hand-checked answers.

use std::collections::HashMap;

use proptest::prelude::*;

use super::parse::reserved;
use super::*;
use crate::fake::dynamodb::number::Number;
use crate::fake::dynamodb::value::Item;

/// Writes `condition` as DynamoDB text, every name literal and every value a `:vN` placeholder.
fn print(condition: &Condition, values: &mut Vec<Value>) -> String {
    let operand = |operand: &Operand, values: &mut Vec<Value>| match operand {
        Operand::Path(path) => path_text(path),
        Operand::Size(path) => format!("size({})", path_text(path)),
        Operand::Value(value) => {
            values.push(value.clone());
            format!(":v{}", values.len() - 1)
        }
    };
    match condition {
        Condition::Compare(a, comparator, b) => {
            let symbol = match comparator {
                Comparator::Eq => "=",
                Comparator::Ne => "<>",
                Comparator::Lt => "<",
                Comparator::Le => "<=",
                Comparator::Gt => ">",
                Comparator::Ge => ">=",
            };
            format!("{} {symbol} {}", operand(a, values), operand(b, values))
        }
        Condition::Between(a, b, c) => {
            format!("{} BETWEEN {} AND {}", operand(a, values), operand(b, values), operand(c, values))
        }
        Condition::In(a, options) => {
            let first = operand(a, values);
            let options: Vec<String> = options.iter().map(|o| operand(o, values)).collect();
            format!("{first} IN ({})", options.join(", "))
        }
        Condition::And(a, b) => format!("({}) AND ({})", print(a, values), print(b, values)),
        Condition::Or(a, b) => format!("({}) or ({})", print(a, values), print(b, values)),
        Condition::Not(inner) => format!("NOT ({})", print(inner, values)),
        Condition::Exists(path) => format!("attribute_exists({})", path_text(path)),
        Condition::NotExists(path) => format!("attribute_not_exists({})", path_text(path)),
        Condition::Type(path, t) => format!("attribute_type({}, {})", path_text(path), operand(t, values)),
        Condition::BeginsWith(a, b) => format!("begins_with({}, {})", operand(a, values), operand(b, values)),
        Condition::Contains(a, b) => format!("contains({}, {})", operand(a, values), operand(b, values)),
    }
}

fn path_text(path: &Path) -> String {
    let mut text = String::new();
    for step in &path.0 {
        match step {
            Step::Key(name) if text.is_empty() => text.push_str(name),
            Step::Key(name) => text.push_str(&format!(".{name}")),
            Step::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

fn path() -> impl Strategy<Value = Path> {
    let name = "[a-z][a-z0-9_]{0,5}".prop_filter("not a reserved word", |n| !reserved(n));
    let step = prop_oneof![name.clone().prop_map(Step::Key), (0usize..20).prop_map(Step::Index)];
    (name, prop::collection::vec(step, 0..3))
        .prop_map(|(first, rest)| Path(std::iter::once(Step::Key(first)).chain(rest).collect()))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![".{0,8}".prop_map(Value::S), any::<u32>().prop_map(|n| Value::N(Number::from_u64(u64::from(n))))]
}

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![path().prop_map(Operand::Path), path().prop_map(Operand::Size), value().prop_map(Operand::Value)]
}

fn condition() -> impl Strategy<Value = Condition> {
    let comparator = prop_oneof![
        Just(Comparator::Eq),
        Just(Comparator::Ne),
        Just(Comparator::Lt),
        Just(Comparator::Le),
        Just(Comparator::Gt),
        Just(Comparator::Ge)
    ];
    let leaf = prop_oneof![
        (operand(), comparator, operand()).prop_map(|(a, c, b)| Condition::Compare(a, c, b)),
        (operand(), operand(), operand()).prop_map(|(a, b, c)| Condition::Between(a, b, c)),
        (operand(), prop::collection::vec(operand(), 1..4)).prop_map(|(a, o)| Condition::In(a, o)),
        path().prop_map(Condition::Exists),
        path().prop_map(Condition::NotExists),
        (path(), value()).prop_map(|(p, v)| Condition::Type(p, Operand::Value(v))),
        (operand(), operand()).prop_map(|(a, b)| Condition::BeginsWith(a, b)),
        (operand(), operand()).prop_map(|(a, b)| Condition::Contains(a, b)),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Condition::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Condition::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|c| Condition::Not(Box::new(c))),
        ]
    })
}

proptest! {
    #[test]
    fn printed_conditions_parse_back_to_the_same_tree(condition in condition()) {
        let mut values = Vec::new();
        let text = print(&condition, &mut values);
        prop_assume!(text.len() <= MAX_EXPRESSION);
        let values: HashMap<String, Value> = values.into_iter().enumerate().map(|(n, v)| (format!(":v{n}"), v)).collect();
        let mut placeholders = Placeholders::new(HashMap::new(), values);
        let parsed = parse_condition(&text, Kind::Condition, &mut placeholders);
        prop_assert_eq!(parsed, Ok(condition), "{}", text);
        prop_assert_eq!(placeholders.check_all_used(), Ok(()));
    }
}

#[test]
fn and_binds_tighter_than_or_and_not_tighter_than_both() {
    let item = Item::from([("a".to_owned(), Value::N(Number::from_u64(1)))]);
    let values = HashMap::from([
        (":one".to_owned(), Value::N(Number::from_u64(1))),
        (":two".to_owned(), Value::N(Number::from_u64(2))),
    ]);
    let holds = |text: &str| {
        let mut placeholders = Placeholders::new(HashMap::new(), values.clone());
        test(&parse_condition(text, Kind::Condition, &mut placeholders).unwrap(), &item, Kind::Condition).unwrap()
    };
    assert!(holds("a = :one OR a = :two AND a = :two"), "OR of (true, false)");
    assert!(!holds("NOT a = :one OR a = :two"), "(NOT true) OR false");
    assert!(holds("a BETWEEN :one AND :two AND attribute_not_exists(b)"));
    assert!(!holds("a > :one"), "1 > 1");
    assert!(holds("b <> :one"), "a missing attribute is not equal to anything");
    assert!(!holds("b < :two"), "nor ordered against it");
}
