//! Applies an update expression to an item, as DynamoDB does: every SET value is computed from the item as it
//! was, then SET, REMOVE, ADD and DELETE write in turn. A nested path needs its parent to exist; ADD takes a number
//! or a set of the attribute's own type; a set emptied by DELETE is removed.

use std::collections::BTreeSet;

use super::{Path, SetValue, Step, Update, resolve};
use crate::fake::dynamodb::error::{Refusal, text};
use crate::fake::dynamodb::value::{Item, Value};

/// The item after `update`; `keys` are the attributes the update may not touch.
pub fn apply(update: &Update, item: &Item, keys: &[&str]) -> Result<Item, Refusal> {
    if let Some(key) = update.targets().map(Path::top).find(|top| keys.contains(top)) {
        return Err(Refusal::validation(format!(
            "One or more parameter values were invalid: Cannot update attribute {key}. This attribute is part of the key"
        )));
    }
    for (value, operator) in
        update.add.iter().map(|(_, v)| (v, "ADD")).chain(update.delete.iter().map(|(_, v)| (v, "DELETE")))
    {
        let allowed = if operator == "ADD" { value.is_set() || matches!(value, Value::N(_)) } else { value.is_set() };
        if !allowed {
            return Err(Refusal::validation(format!(
                "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: {operator}, \
                 operand type: {}, typeSet: ALLOWED_FOR_{operator}_OPERAND",
                long_type_name(value)
            )));
        }
    }
    let values = update.set.iter().map(|(_, value)| compute(value, item)).collect::<Result<Vec<_>, _>>()?;
    let mut updated = item.clone();
    for ((path, _), value) in update.set.iter().zip(values) {
        slot(&mut updated, path)?.put(Some(value));
    }
    // Removing list elements from the highest index down keeps the others where the expression named them.
    let mut removals: Vec<&Path> = update.remove.iter().collect();
    removals.sort_by(|a, b| b.cmp(a));
    for path in removals {
        remove(&mut updated, path)?;
    }
    for (path, value) in &update.add {
        let mut slot = slot(&mut updated, path)?;
        let added = match slot.take() {
            None => value.clone(),
            Some(Value::N(n)) if let Value::N(m) = value => Value::N(n.add(m)?),
            Some(current) => union(current, value)?,
        };
        slot.put(Some(added));
    }
    for (path, value) in &update.delete {
        let mut slot = slot(&mut updated, path)?;
        if let Some(current) = slot.take() {
            slot.put(difference(current, value)?);
        }
    }
    Ok(updated)
}

fn long_type_name(value: &Value) -> &'static str {
    match value {
        Value::S(_) => "STRING",
        Value::N(_) => "NUMBER",
        Value::B(_) => "BINARY",
        Value::Bool(_) => "BOOLEAN",
        Value::Null => "NULL",
        Value::L(_) => "LIST",
        Value::M(_) => "MAP",
        Value::Ss(_) => "STRING_SET",
        Value::Ns(_) => "NUMBER_SET",
        Value::Bs(_) => "BINARY_SET",
    }
}

fn compute(value: &SetValue, item: &Item) -> Result<Value, Refusal> {
    let incorrect = || Refusal::validation(text::INCORRECT_DATA_TYPE);
    Ok(match value {
        SetValue::Value(value) => value.clone(),
        SetValue::Path(path) => {
            resolve(item, path).cloned().ok_or_else(|| Refusal::validation(text::MISSING_OPERAND))?
        }
        SetValue::IfNotExists(path, fallback) => match resolve(item, path) {
            Some(value) => value.clone(),
            None => compute(fallback, item)?,
        },
        SetValue::ListAppend(a, b) => match (compute(a, item)?, compute(b, item)?) {
            (Value::L(mut a), Value::L(b)) => {
                a.extend(b);
                Value::L(a)
            }
            _ => return Err(incorrect()),
        },
        SetValue::Plus(a, b) | SetValue::Minus(a, b) => match (compute(a, item)?, compute(b, item)?) {
            (Value::N(a), Value::N(b)) if matches!(value, SetValue::Plus(..)) => Value::N(a.add(&b)?),
            (Value::N(a), Value::N(b)) => Value::N(a.add(&b.negated())?),
            _ => return Err(incorrect()),
        },
    })
}

fn union(current: Value, added: &Value) -> Result<Value, Refusal> {
    Ok(match (current, added) {
        (Value::Ss(mut a), Value::Ss(b)) => {
            a.extend(b.iter().cloned());
            Value::Ss(a)
        }
        (Value::Ns(mut a), Value::Ns(b)) => {
            a.extend(b.iter().copied());
            Value::Ns(a)
        }
        (Value::Bs(mut a), Value::Bs(b)) => {
            a.extend(b.iter().cloned());
            Value::Bs(a)
        }
        _ => return Err(Refusal::validation(text::INCORRECT_DATA_TYPE)),
    })
}

fn difference(current: Value, removed: &Value) -> Result<Option<Value>, Refusal> {
    fn without<T: Ord + Clone>(
        mut set: BTreeSet<T>,
        removed: &BTreeSet<T>,
        wrap: fn(BTreeSet<T>) -> Value,
    ) -> Option<Value> {
        set.retain(|member| !removed.contains(member));
        (!set.is_empty()).then(|| wrap(set))
    }
    Ok(match (current, removed) {
        (Value::Ss(a), Value::Ss(b)) => without(a, b, Value::Ss),
        (Value::Ns(a), Value::Ns(b)) => without(a, b, Value::Ns),
        (Value::Bs(a), Value::Bs(b)) => without(a, b, Value::Bs),
        _ => return Err(Refusal::validation(text::INCORRECT_DATA_TYPE)),
    })
}

/// Where `path` writes: its parent must exist (a map for a key, a list for an index).
fn slot<'a>(item: &'a mut Item, path: &Path) -> Result<Slot<'a>, Refusal> {
    let invalid = || Refusal::validation(text::INVALID_DOCUMENT_PATH);
    let (last, parents) = path.0.split_last().ok_or_else(invalid)?;
    let Some((Step::Key(first), rest)) = parents.split_first() else {
        let Step::Key(name) = last else { return Err(invalid()) };
        return Ok(Slot::Map(item, name.clone()));
    };
    let mut parent = item.get_mut(first).ok_or_else(invalid)?;
    for step in rest {
        parent = match (step, parent) {
            (Step::Key(key), Value::M(map)) => map.get_mut(key).ok_or_else(invalid)?,
            (Step::Index(index), Value::L(list)) => list.get_mut(*index).ok_or_else(invalid)?,
            _ => return Err(invalid()),
        };
    }
    match (last, parent) {
        (Step::Key(key), Value::M(map)) => Ok(Slot::Map(map, key.clone())),
        (Step::Index(index), Value::L(list)) => Ok(Slot::List(list, *index)),
        _ => Err(invalid()),
    }
}

fn remove(item: &mut Item, path: &Path) -> Result<(), Refusal> {
    slot(item, path)?.put(None);
    Ok(())
}

/// A place a value can be written to: a map's key, or a list's index (past the end appends).
enum Slot<'a> {
    Map(&'a mut Item, String),
    List(&'a mut Vec<Value>, usize),
}

impl Slot<'_> {
    fn take(&mut self) -> Option<Value> {
        match self {
            Self::Map(map, key) => map.remove(key.as_str()),
            Self::List(list, index) if *index < list.len() => Some(std::mem::replace(&mut list[*index], Value::Null)),
            Self::List(..) => None,
        }
    }

    /// Writes `value` there, or removes what is there (a list closes the gap).
    fn put(self, value: Option<Value>) {
        match (self, value) {
            (Self::Map(map, key), Some(value)) => {
                map.insert(key, value);
            }
            (Self::Map(map, key), None) => {
                map.remove(&key);
            }
            (Self::List(list, index), Some(value)) if index < list.len() => list[index] = value,
            (Self::List(list, _), Some(value)) => list.push(value),
            (Self::List(list, index), None) if index < list.len() => {
                list.remove(index);
            }
            (Self::List(..), None) => {}
        }
    }
}
