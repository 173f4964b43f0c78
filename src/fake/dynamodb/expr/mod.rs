//! DynamoDB's expression language: condition and filter expressions, key conditions, update expressions and
//! projections, parsed into trees (`parse`), evaluated against items (`eval`), applied (`update`).
//!
//! Placeholders are resolved while parsing, so every `#name` and `:value` an expression uses is known, and what a
//! request defines but none of its expressions use is refused as DynamoDB refuses it.

mod eval;
mod lexer;
mod parse;
#[cfg(test)]
mod tests;
mod update;

use std::collections::{BTreeSet, HashMap};
use std::fmt;

pub use eval::{resolve, test};
pub use parse::{parse_condition, parse_projection, parse_update};
pub use update::apply;

use super::error::Refusal;
use super::value::Value;

/// DynamoDB's limit on any one expression string.
pub const MAX_EXPRESSION: usize = 4_096;

/// Which expression of a request, as DynamoDB names it in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Condition,
    Update,
    KeyCondition,
    Filter,
    Projection,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Condition => "ConditionExpression",
            Self::Update => "UpdateExpression",
            Self::KeyCondition => "KeyConditionExpression",
            Self::Filter => "FilterExpression",
            Self::Projection => "ProjectionExpression",
        }
    }

    pub fn invalid(self, detail: impl fmt::Display) -> Refusal {
        Refusal::validation(format!("Invalid {}: {detail}", self.name()))
    }
}

/// One step of a document path: an attribute or map key, or a list index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(pub Vec<Step>);

impl Path {
    /// The top-level attribute the path starts at.
    pub fn top(&self) -> &str {
        match self.0.first() {
            Some(Step::Key(name)) => name,
            _ => "",
        }
    }

    /// One path is the other, or inside it.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a == b)
    }
}

/// As DynamoDB lists a path in its messages: `[a, b, [2]]`.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<String> = self
            .0
            .iter()
            .map(|step| match step {
                Step::Key(name) => name.clone(),
                Step::Index(index) => format!("[{index}]"),
            })
            .collect();
        write!(f, "[{}]", steps.join(", "))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Path(Path),
    Value(Value),
    Size(Path),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Compare(Operand, Comparator, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Exists(Path),
    NotExists(Path),
    Type(Path, Operand),
    BeginsWith(Operand, Operand),
    Contains(Operand, Operand),
}

/// The right-hand side of a SET action.
#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    Path(Path),
    Value(Value),
    IfNotExists(Path, Box<SetValue>),
    ListAppend(Box<SetValue>, Box<SetValue>),
    Plus(Box<SetValue>, Box<SetValue>),
    Minus(Box<SetValue>, Box<SetValue>),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    pub set: Vec<(Path, SetValue)>,
    pub remove: Vec<Path>,
    pub add: Vec<(Path, Value)>,
    pub delete: Vec<(Path, Value)>,
}

impl Update {
    /// Every path the update writes, in clause order.
    pub fn targets(&self) -> impl Iterator<Item = &Path> {
        self.set
            .iter()
            .map(|(path, _)| path)
            .chain(&self.remove)
            .chain(self.add.iter().map(|(path, _)| path))
            .chain(self.delete.iter().map(|(path, _)| path))
    }
}

/// A request's ExpressionAttributeNames and ExpressionAttributeValues, and which of them its expressions used.
#[derive(Debug, Default)]
pub struct Placeholders {
    names: HashMap<String, String>,
    values: HashMap<String, Value>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

impl Placeholders {
    pub fn new(names: HashMap<String, String>, values: HashMap<String, Value>) -> Self {
        Self { names, values, ..Self::default() }
    }

    fn name(&mut self, placeholder: &str, kind: Kind) -> Result<String, Refusal> {
        let Some(name) = self.names.get(placeholder) else {
            return Err(kind.invalid(format!(
                "An expression attribute name used in the document path is not defined; attribute name: {placeholder}"
            )));
        };
        self.used_names.insert(placeholder.to_owned());
        Ok(name.clone())
    }

    fn value(&mut self, placeholder: &str, kind: Kind) -> Result<Value, Refusal> {
        let Some(value) = self.values.get(placeholder) else {
            return Err(kind.invalid(format!(
                "An expression attribute value used in expression is not defined; attribute value: {placeholder}"
            )));
        };
        self.used_values.insert(placeholder.to_owned());
        Ok(value.clone())
    }

    /// DynamoDB refuses a request that defines a name or value none of its expressions use.
    pub fn check_all_used(&self) -> Result<(), Refusal> {
        let unused = |defined: Vec<&String>, used: &BTreeSet<String>| {
            let mut unused: Vec<&str> =
                defined.into_iter().filter(|k| !used.contains(*k)).map(String::as_str).collect();
            unused.sort_unstable();
            unused.join(", ")
        };
        let names = unused(self.names.keys().collect(), &self.used_names);
        if !names.is_empty() {
            return Err(Refusal::validation(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{names}}}"
            )));
        }
        let values = unused(self.values.keys().collect(), &self.used_values);
        if !values.is_empty() {
            return Err(Refusal::validation(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{values}}}"
            )));
        }
        Ok(())
    }
}

/// Refuses an expression over DynamoDB's 4 KB limit, before reading it.
pub fn check_size(text: &str, kind: Kind) -> Result<(), Refusal> {
    if text.is_empty() {
        return Err(kind.invalid("The expression can not be empty;"));
    }
    if text.len() > MAX_EXPRESSION {
        return Err(kind.invalid(format!(
            "Expression size has exceeded the maximum allowed size; expression size: {}",
            text.len()
        )));
    }
    Ok(())
}
