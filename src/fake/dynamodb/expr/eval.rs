//! Evaluates a condition against an item, as DynamoDB does: a path that does not resolve makes its comparison
//! false (and `<>` true), ordering compares only strings, numbers and binaries of one type, and a function given a
//! value of the wrong type is refused.

use std::cmp::Ordering;

use super::{Comparator, Condition, Kind, Operand, Path, Step};
use crate::fake::dynamodb::error::Refusal;
use crate::fake::dynamodb::number::Number;
use crate::fake::dynamodb::size::value_size;
use crate::fake::dynamodb::value::{Item, Value};

/// The value at `path` in `item`, if every step of it exists.
pub fn resolve<'a>(item: &'a Item, path: &Path) -> Option<&'a Value> {
    let mut steps = path.0.iter();
    let Some(Step::Key(first)) = steps.next() else { return None };
    let mut value = item.get(first)?;
    for step in steps {
        value = match (step, value) {
            (Step::Key(key), Value::M(map)) => map.get(key)?,
            (Step::Index(index), Value::L(list)) => list.get(*index)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Whether `condition` holds for `item` (an absent item has no attributes).
pub fn test(condition: &Condition, item: &Item, kind: Kind) -> Result<bool, Refusal> {
    let operand = |o: &Operand| operand(o, item, kind);
    Ok(match condition {
        Condition::And(a, b) => test(a, item, kind)? && test(b, item, kind)?,
        Condition::Or(a, b) => test(a, item, kind)? || test(b, item, kind)?,
        Condition::Not(inner) => !test(inner, item, kind)?,
        Condition::Exists(path) => resolve(item, path).is_some(),
        Condition::NotExists(path) => resolve(item, path).is_none(),
        Condition::Compare(left, comparator, right) => {
            compare(operand(left)?.as_ref(), *comparator, operand(right)?.as_ref())
        }
        Condition::Between(subject, low, high) => {
            let (subject, low, high) = (operand(subject)?, operand(low)?, operand(high)?);
            if let (Some(low), Some(high)) = (&low, &high)
                && order(low, high) == Some(Ordering::Greater)
            {
                return Err(kind.invalid(
                    "Invalid range boundaries: the lower bound must be less than or equal to the upper bound",
                ));
            }
            compare(subject.as_ref(), Comparator::Ge, low.as_ref())
                && compare(subject.as_ref(), Comparator::Le, high.as_ref())
        }
        Condition::In(subject, options) => {
            let subject = operand(subject)?;
            let mut found = false;
            for option in options {
                found |= compare(subject.as_ref(), Comparator::Eq, operand(option)?.as_ref());
            }
            found
        }
        Condition::Type(path, expected) => {
            let Some(Value::S(expected)) = operand(expected)? else {
                return Err(wrong_operand(kind, "attribute_type", "not S"));
            };
            const TYPES: [&str; 10] = ["S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M"];
            if !TYPES.contains(&expected.as_str()) {
                return Err(kind.invalid(format!(
                    "Invalid attribute type name found; type: {expected}, valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}"
                )));
            }
            resolve(item, path).is_some_and(|v| v.type_name() == expected)
        }
        Condition::BeginsWith(subject, prefix) => match (operand(subject)?, operand(prefix)?) {
            (Some(Value::S(s)), Some(Value::S(p))) => s.starts_with(&p),
            (Some(Value::B(s)), Some(Value::B(p))) => s.starts_with(&p),
            (_, Some(Value::S(_) | Value::B(_))) | (_, None) => false,
            (_, Some(other)) => return Err(wrong_operand(kind, "begins_with", other.type_name())),
        },
        Condition::Contains(subject, member) => match (operand(subject)?, operand(member)?) {
            (Some(Value::S(s)), Some(Value::S(m))) => s.contains(&m),
            (Some(Value::B(s)), Some(Value::B(m))) => s.windows(m.len().max(1)).any(|w| w == m.as_slice()),
            (Some(Value::Ss(set)), Some(Value::S(m))) => set.contains(&m),
            (Some(Value::Ns(set)), Some(Value::N(m))) => set.contains(&m),
            (Some(Value::Bs(set)), Some(Value::B(m))) => set.contains(&m),
            (Some(Value::L(list)), Some(m)) => list.contains(&m),
            _ => false,
        },
    })
}

fn wrong_operand(kind: Kind, function: &str, type_name: &str) -> Refusal {
    kind.invalid(format!(
        "Incorrect operand type for operator or function; operator or function: {function}, operand type: {type_name}"
    ))
}

/// An operand's value; `None` when its path does not resolve.
fn operand(operand: &Operand, item: &Item, kind: Kind) -> Result<Option<Value>, Refusal> {
    Ok(match operand {
        Operand::Value(value) => Some(value.clone()),
        Operand::Path(path) => resolve(item, path).cloned(),
        Operand::Size(path) => match resolve(item, path) {
            None => None,
            Some(Value::N(_) | Value::Bool(_) | Value::Null) => {
                let type_name = resolve(item, path).map_or("", Value::type_name);
                return Err(wrong_operand(kind, "size", type_name));
            }
            Some(value) => Some(Value::N(Number::from_u64(length(value) as u64))),
        },
    })
}

/// `size()`: bytes of a string or binary, members of a set, elements of a list or map.
fn length(value: &Value) -> usize {
    match value {
        Value::S(s) => s.len(),
        Value::B(b) => b.len(),
        Value::Ss(set) => set.len(),
        Value::Ns(set) => set.len(),
        Value::Bs(set) => set.len(),
        Value::L(list) => list.len(),
        Value::M(map) => map.len(),
        other => value_size(other),
    }
}

/// Strings, numbers and binaries of one type have an order; nothing else does.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::S(a), Value::S(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Value::N(a), Value::N(b)) => Some(a.cmp(b)),
        (Value::B(a), Value::B(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn compare(left: Option<&Value>, comparator: Comparator, right: Option<&Value>) -> bool {
    let (Some(left), Some(right)) = (left, right) else {
        return comparator == Comparator::Ne;
    };
    match comparator {
        Comparator::Eq => left == right,
        Comparator::Ne => left != right,
        Comparator::Lt => order(left, right) == Some(Ordering::Less),
        Comparator::Le => matches!(order(left, right), Some(Ordering::Less | Ordering::Equal)),
        Comparator::Gt => order(left, right) == Some(Ordering::Greater),
        Comparator::Ge => matches!(order(left, right), Some(Ordering::Greater | Ordering::Equal)),
    }
}
