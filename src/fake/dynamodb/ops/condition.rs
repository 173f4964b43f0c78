//! What a Query's key condition and filter name: the partition and sort-key bounds it reads, and the attributes
//! a filter touches.

use std::collections::BTreeSet;
use std::ops::Bound;

use crate::fake::dynamodb::error::Refusal;
use crate::fake::dynamodb::expr::{Comparator, Condition, Operand, Step};
use crate::fake::dynamodb::table::{SortBounds, Table};
use crate::fake::dynamodb::value::{KeyValue, Value};

/// A query's partition and sort-key bounds, from its key condition.
pub(super) fn key_condition(
    condition: Condition,
    key: &[&str; 2],
    table: &Table,
) -> Result<(KeyValue, SortBounds), Refusal> {
    let parts = match condition {
        Condition::And(a, b) => vec![*a, *b],
        other => vec![other],
    };
    let invalid = |detail: &str| Refusal::validation(format!("Query key condition not supported{detail}"));
    let mut hash = None;
    let mut bounds = SortBounds::ALL;
    for part in parts {
        let (name, value) = match &part {
            Condition::Compare(Operand::Path(path), _, Operand::Value(value))
            | Condition::Between(Operand::Path(path), Operand::Value(value), _)
            | Condition::BeginsWith(Operand::Path(path), Operand::Value(value)) => (path, value),
            Condition::Or(..) => {
                return Err(Refusal::validation("Invalid operator used in KeyConditionExpression: OR"));
            }
            Condition::Not(..) => {
                return Err(Refusal::validation("Invalid operator used in KeyConditionExpression: NOT"));
            }
            _ => return Err(invalid("")),
        };
        let [Step::Key(name)] = name.0.as_slice() else { return Err(invalid("")) };
        let typed = |value: &Value| {
            KeyValue::of(value).filter(|_| table.types.get(name).is_some_and(|t| t == value.type_name())).ok_or_else(
                || Refusal::validation("One or more parameter values were invalid: Condition parameter type does not match schema type"),
            )
        };
        let value = typed(value)?;
        match part {
            Condition::Compare(_, Comparator::Eq, _) if name == key[0] && hash.is_none() => hash = Some(value),
            _ if name != key[1] => {
                return Err(Refusal::validation(format!("Query condition missed key schema element: {}", key[0])));
            }
            Condition::Compare(_, comparator, _) => {
                bounds = match comparator {
                    Comparator::Eq => SortBounds {
                        lower: Bound::Included(value.clone()),
                        upper: Bound::Included(value),
                        prefix: None,
                    },
                    Comparator::Lt => SortBounds { upper: Bound::Excluded(value), ..SortBounds::ALL },
                    Comparator::Le => SortBounds { upper: Bound::Included(value), ..SortBounds::ALL },
                    Comparator::Gt => SortBounds { lower: Bound::Excluded(value), ..SortBounds::ALL },
                    Comparator::Ge => SortBounds { lower: Bound::Included(value), ..SortBounds::ALL },
                    Comparator::Ne => {
                        return Err(Refusal::validation(
                            "Unsupported operator on KeyConditionExpression: operator: <>",
                        ));
                    }
                }
            }
            Condition::Between(_, _, Operand::Value(ref high)) => {
                bounds =
                    SortBounds { lower: Bound::Included(value), upper: Bound::Included(typed(high)?), prefix: None };
            }
            Condition::BeginsWith(..) => {
                bounds =
                    SortBounds { lower: Bound::Included(value.clone()), upper: Bound::Unbounded, prefix: Some(value) };
            }
            _ => return Err(invalid("")),
        }
    }
    let hash =
        hash.ok_or_else(|| Refusal::validation(format!("Query condition missed key schema element: {}", key[0])))?;
    Ok((hash, bounds))
}

/// Top-level attributes a filter names.
pub(super) fn names_in(condition: &Condition, names: &mut BTreeSet<String>) {
    let mut operand = |o: &Operand| {
        if let Operand::Path(path) | Operand::Size(path) = o {
            names.insert(path.top().to_owned());
        }
    };
    match condition {
        Condition::Compare(a, _, b) | Condition::BeginsWith(a, b) | Condition::Contains(a, b) => {
            operand(a);
            operand(b);
        }
        Condition::Between(a, b, c) => [a, b, c].into_iter().for_each(operand),
        Condition::In(a, options) => std::iter::once(a).chain(options).for_each(operand),
        Condition::Exists(path) | Condition::NotExists(path) | Condition::Type(path, _) => {
            names.insert(path.top().to_owned());
        }
        Condition::And(a, b) | Condition::Or(a, b) => {
            names_in(a, names);
            names_in(b, names);
        }
        Condition::Not(inner) => names_in(inner, names),
    }
}
