//! Attribute values as DynamoDB's JSON protocol writes them (`{"S": ..}`, `{"NS": [..]}`, `{"M": {..}}` …), read
//! with DynamoDB's checks: no empty set, no repeated set member, numbers in range.

use std::collections::{BTreeMap, BTreeSet};

use aws_smithy_types::base64;
use serde_json::{Map, Value as Json, json};

use super::error::Refusal;
use super::number::Number;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    S(String),
    N(Number),
    B(Vec<u8>),
    Ss(BTreeSet<String>),
    Ns(BTreeSet<Number>),
    Bs(BTreeSet<Vec<u8>>),
    L(Vec<Value>),
    M(BTreeMap<String, Value>),
    Bool(bool),
    Null,
}

pub type Item = BTreeMap<String, Value>;

const NESTING_LIMIT: usize = 32;

impl Value {
    /// The type descriptor: `S`, `NS`, `BOOL` …
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::S(_) => "S",
            Self::N(_) => "N",
            Self::B(_) => "B",
            Self::Ss(_) => "SS",
            Self::Ns(_) => "NS",
            Self::Bs(_) => "BS",
            Self::L(_) => "L",
            Self::M(_) => "M",
            Self::Bool(_) => "BOOL",
            Self::Null => "NULL",
        }
    }

    /// A string, number or binary set.
    pub fn is_set(&self) -> bool {
        matches!(self, Self::Ss(_) | Self::Ns(_) | Self::Bs(_))
    }

    pub fn from_json(json: &Json) -> Result<Self, Refusal> {
        Self::read(json, 0)
    }

    fn read(json: &Json, depth: usize) -> Result<Self, Refusal> {
        if depth > NESTING_LIMIT {
            return Err(Refusal::validation("Nesting Levels have exceeded supported limits"));
        }
        let Some((kind, inner)) = json.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()) else {
            return Err(Refusal::validation(
                "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes",
            ));
        };
        let malformed = || Refusal::new("SerializationException", format!("Unexpected value for {kind}"));
        let text = |v: &Json| v.as_str().map(str::to_owned).ok_or_else(malformed);
        let bytes = |v: &Json| base64::decode(v.as_str().ok_or_else(malformed)?).map_err(|_| malformed());
        let list = || inner.as_array().ok_or_else(malformed);
        Ok(match kind.as_str() {
            "S" => Self::S(text(inner)?),
            "N" => Self::N(Number::parse(inner.as_str().ok_or_else(malformed)?)?),
            "B" => Self::B(bytes(inner)?),
            "BOOL" => Self::Bool(inner.as_bool().ok_or_else(malformed)?),
            "NULL" if inner == &Json::Bool(true) => Self::Null,
            "SS" => Self::Ss(unique(list()?.iter().map(text).collect::<Result<_, _>>()?, "string", |s| s.clone())?),
            "NS" => {
                let members: Vec<String> = list()?.iter().map(text).collect::<Result<_, _>>()?;
                let numbers = members.iter().map(|m| Number::parse(m)).collect::<Result<Vec<_>, _>>()?;
                let set = unique(numbers, "number", |n| n.to_string())?;
                Self::Ns(set)
            }
            "BS" => {
                Self::Bs(unique(list()?.iter().map(bytes).collect::<Result<_, _>>()?, "binary", |b| base64::encode(b))?)
            }
            "L" => Self::L(list()?.iter().map(|v| Self::read(v, depth + 1)).collect::<Result<_, _>>()?),
            "M" => {
                let members = inner.as_object().ok_or_else(malformed)?;
                Self::M(
                    members
                        .iter()
                        .map(|(k, v)| Ok((k.clone(), Self::read(v, depth + 1)?)))
                        .collect::<Result<_, _>>()?,
                )
            }
            _ => return Err(malformed()),
        })
    }

    pub fn to_json(&self) -> Json {
        let texts = |set: &BTreeSet<String>| json!(set.iter().collect::<Vec<_>>());
        match self {
            Self::S(s) => json!({ "S": s }),
            Self::N(n) => json!({ "N": n.to_string() }),
            Self::B(b) => json!({ "B": base64::encode(b) }),
            Self::Ss(set) => json!({ "SS": texts(set) }),
            Self::Ns(set) => json!({ "NS": set.iter().map(Number::to_string).collect::<Vec<_>>() }),
            Self::Bs(set) => json!({ "BS": set.iter().map(base64::encode).collect::<Vec<_>>() }),
            Self::L(list) => json!({ "L": list.iter().map(Self::to_json).collect::<Vec<_>>() }),
            Self::M(map) => json!({ "M": item_to_json(map) }),
            Self::Bool(b) => json!({ "BOOL": b }),
            Self::Null => json!({ "NULL": true }),
        }
    }
}

/// A set from the request's members: DynamoDB refuses an empty set and a repeated member.
fn unique<T: Ord + Clone>(members: Vec<T>, kind: &str, show: impl Fn(&T) -> String) -> Result<BTreeSet<T>, Refusal> {
    if members.is_empty() {
        return Err(Refusal::validation(format!(
            "One or more parameter values were invalid: An {kind} set  may not be empty"
        )));
    }
    let set: BTreeSet<T> = members.iter().cloned().collect();
    if set.len() != members.len() {
        let shown: Vec<String> = members.iter().map(show).collect();
        return Err(Refusal::validation(format!(
            "One or more parameter values were invalid: Input collection [{}] contains duplicates.",
            shown.join(", ")
        )));
    }
    Ok(set)
}

pub fn item_from_json(json: &Json) -> Result<Item, Refusal> {
    let Some(object) = json.as_object() else {
        return Err(Refusal::new("SerializationException", "Unexpected value for an item"));
    };
    object.iter().map(|(name, value)| Ok((name.clone(), Value::from_json(value)?))).collect()
}

pub fn item_to_json(item: &Item) -> Json {
    Json::Object(item.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<Map<_, _>>())
}

/// A key attribute's value: a string, number or binary, ordered as DynamoDB sorts range keys (strings and binaries
/// by their bytes, numbers by value).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyValue {
    S(String),
    N(Number),
    B(Vec<u8>),
}

impl KeyValue {
    pub fn of(value: &Value) -> Option<Self> {
        match value {
            Value::S(s) => Some(Self::S(s.clone())),
            Value::N(n) => Some(Self::N(*n)),
            Value::B(b) => Some(Self::B(b.clone())),
            _ => None,
        }
    }

    pub fn value(&self) -> Value {
        match self {
            Self::S(s) => Value::S(s.clone()),
            Self::N(n) => Value::N(*n),
            Self::B(b) => Value::B(b.clone()),
        }
    }

    /// Bytes counted against the key length limits.
    pub fn len(&self) -> usize {
        match self {
            Self::S(s) => s.len(),
            Self::N(n) => n.size(),
            Self::B(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Self::S(s) => s.is_empty(),
            Self::B(b) => b.is_empty(),
            Self::N(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_empty_and_repeated_set_members() {
        let empty = Value::from_json(&json!({ "SS": [] })).unwrap_err();
        assert_eq!(empty.message, "One or more parameter values were invalid: An string set  may not be empty");
        let repeated = Value::from_json(&json!({ "SS": ["a", "b", "a"] })).unwrap_err();
        assert_eq!(
            repeated.message,
            "One or more parameter values were invalid: Input collection [a, b, a] contains duplicates."
        );
        assert!(Value::from_json(&json!({ "NS": ["1", "1.0"] })).is_err(), "one number written twice");
    }

    #[test]
    fn round_trips_every_type() {
        let json = json!({ "M": { "s": { "S": "x" }, "n": { "N": "1.5" }, "b": { "B": "AAE=" },
            "ss": { "SS": ["a"] }, "ns": { "NS": ["2"] }, "bs": { "BS": ["AA=="] },
            "l": { "L": [{ "NULL": true }, { "BOOL": false }] } } });
        assert_eq!(Value::from_json(&json).unwrap().to_json(), json);
    }
}
