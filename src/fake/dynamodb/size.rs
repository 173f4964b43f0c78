//! Item sizes by DynamoDB's rules ("Item sizes and formats"): attribute names plus values; strings and binaries by
//! their bytes; numbers in digit pairs (`Number::size`); booleans and nulls one byte; lists and maps three bytes
//! plus one per element; sets the sum of their members.

use super::value::{Item, Value};

/// The largest item DynamoDB stores: 400 KB, of 1,024 bytes each.
pub const MAX_ITEM: usize = 400 * 1024;

pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(name, value)| attribute_size(name, value)).sum()
}

pub fn attribute_size(name: &str, value: &Value) -> usize {
    name.len() + value_size(value)
}

pub fn value_size(value: &Value) -> usize {
    match value {
        Value::S(s) => s.len(),
        Value::N(n) => n.size(),
        Value::B(b) => b.len(),
        Value::Ss(set) => set.iter().map(String::len).sum(),
        Value::Ns(set) => set.iter().map(|n| n.size()).sum(),
        Value::Bs(set) => set.iter().map(Vec::len).sum(),
        Value::L(list) => 3 + list.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        Value::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() + value_size(v)).sum::<usize>(),
        Value::Bool(_) | Value::Null => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::fake::dynamodb::number::Number;

    #[test]
    fn follows_the_documented_rules() {
        let item = Item::from([
            ("pk".to_owned(), Value::S("batch#1".into())),
            ("n".to_owned(), Value::N(Number::from_u64(12_345))),
            ("ok".to_owned(), Value::Bool(true)),
            ("ss".to_owned(), Value::Ss(BTreeSet::from(["ab".to_owned(), "cde".to_owned()]))),
            ("l".to_owned(), Value::L(vec![Value::Null, Value::S("xy".into())])),
            ("m".to_owned(), Value::M(BTreeMap::from([("k".to_owned(), Value::S("v".into()))]))),
        ]);
        // pk 2+7, n 1+4 (pairs 01 23 45, plus one), ok 2+1, ss 2+5, l 1+3+(1+1)+(1+2), m 1+3+(1+1+1)
        assert_eq!(item_size(&item), 9 + 5 + 3 + 7 + 9 + 7);
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            ".{0,20}".prop_map(Value::S),
            any::<u32>().prop_map(|n| Value::N(Number::from_u64(u64::from(n)))),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::L),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4).prop_map(Value::M),
            ]
        })
    }

    proptest! {
        /// A document costs its JSON-free content plus fixed overheads: never less than its leaves' bytes, and
        /// wrapping it in a list adds exactly the list's three bytes and the element's one.
        #[test]
        fn nesting_adds_exactly_its_overhead(value in value()) {
            let wrapped = Value::L(vec![value.clone()]);
            prop_assert_eq!(value_size(&wrapped), value_size(&value) + 4);
            let item = Item::from([("a".to_owned(), value.clone()), ("bb".to_owned(), wrapped)]);
            prop_assert_eq!(item_size(&item), 1 + value_size(&value) + 2 + value_size(&value) + 4);
        }
    }
}
