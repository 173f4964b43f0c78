//! One table: items in key order, each global secondary index as an ordered set of entries (sparse: an item
//! without the index's key attributes is not in it), running counts and sizes, and the expiry order for TTL.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::error::{Refusal, text};
use super::size::{attribute_size, item_size};
use super::value::{Item, KeyValue, Value};

/// `(partition key, sort key)`.
pub type PrimaryKey = (KeyValue, Option<KeyValue>);

const MAX_HASH_KEY: usize = 2_048;
const MAX_RANGE_KEY: usize = 1_024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    pub hash: String,
    pub range: Option<String>,
}

impl KeySchema {
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.hash.as_str()).chain(self.range.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    KeysOnly,
    Include(Vec<String>),
    All,
}

/// Orders an index's entries that share an index key by their table key, with room for bounds before and after.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Edge {
    Before,
    Key(PrimaryKey),
    After,
}

/// An index entry's place in its partition: sort key, then table key.
pub type Sorted = (Option<KeyValue>, Edge);

#[derive(Debug)]
pub struct Index {
    pub name: String,
    pub key: KeySchema,
    pub projection: Projection,
    /// Partition key to the partition's entries, in sort-key order.
    pub partitions: BTreeMap<KeyValue, BTreeSet<Sorted>>,
    pub items: usize,
    pub bytes: usize,
}

#[derive(Debug)]
pub struct Stored {
    pub item: Item,
    pub size: usize,
}

#[derive(Debug)]
pub struct Table {
    pub name: String,
    pub key: KeySchema,
    /// Attribute definitions: name to `S`, `N` or `B`.
    pub types: BTreeMap<String, String>,
    pub indexes: Vec<Index>,
    pub items: BTreeMap<PrimaryKey, Stored>,
    pub bytes: usize,
    pub ttl: Option<String>,
    /// With TTL on: (expiry in epoch seconds, key) of every item that has one.
    pub expiries: BTreeSet<(u64, PrimaryKey)>,
    pub created: f64,
}

fn key_length(attribute: &str, value: &KeyValue, range: bool) -> Result<(), Refusal> {
    if value.is_empty() {
        return Err(Refusal::validation(format!(
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an \
             empty string value. Key: {attribute}"
        )));
    }
    if range && value.len() > MAX_RANGE_KEY {
        return Err(Refusal::validation(format!(
            "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size \
             limit of {MAX_RANGE_KEY} bytes"
        )));
    }
    if !range && value.len() > MAX_HASH_KEY {
        return Err(Refusal::validation(format!(
            "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of\
             {MAX_HASH_KEY} bytes"
        )));
    }
    Ok(())
}

impl Index {
    pub fn new(name: String, key: KeySchema, projection: Projection) -> Self {
        Self { name, key, projection, partitions: BTreeMap::new(), items: 0, bytes: 0 }
    }

    fn entry(&self, item: &Item, primary: &PrimaryKey) -> Option<(KeyValue, Sorted)> {
        let hash = KeyValue::of(item.get(&self.key.hash)?)?;
        let range = match &self.key.range {
            Some(name) => Some(KeyValue::of(item.get(name)?)?),
            None => None,
        };
        Some((hash, (range, Edge::Key(primary.clone()))))
    }

    fn insert(&mut self, (hash, sorted): (KeyValue, Sorted), bytes: usize) {
        self.partitions.entry(hash).or_default().insert(sorted);
        self.items += 1;
        self.bytes += bytes;
    }

    fn remove(&mut self, (hash, sorted): (KeyValue, Sorted), bytes: usize) {
        if let Some(partition) = self.partitions.get_mut(&hash) {
            partition.remove(&sorted);
            if partition.is_empty() {
                self.partitions.remove(&hash);
            }
        }
        self.items -= 1;
        self.bytes -= bytes;
    }

    fn projects(&self, table_key: &KeySchema, attribute: &str) -> bool {
        table_key.names().chain(self.key.names()).any(|k| k == attribute)
            || match &self.projection {
                Projection::All => true,
                Projection::KeysOnly => false,
                Projection::Include(names) => names.iter().any(|n| n == attribute),
            }
    }
}

impl Table {
    pub fn new(name: String, key: KeySchema, types: BTreeMap<String, String>, created: f64) -> Self {
        Self {
            name,
            key,
            types,
            indexes: Vec::new(),
            items: BTreeMap::new(),
            bytes: 0,
            ttl: None,
            expiries: BTreeSet::new(),
            created,
        }
    }

    pub fn index(&self, name: &str) -> Result<&Index, Refusal> {
        self.indexes
            .iter()
            .find(|index| index.name == name)
            .ok_or_else(|| Refusal::validation(format!("The table does not have the specified index: {name}")))
    }

    /// The key of an item to write: every key attribute present, of its defined type, within its length.
    pub fn key_of_item(&self, item: &Item) -> Result<PrimaryKey, Refusal> {
        let part = |name: &str, range: bool| -> Result<KeyValue, Refusal> {
            let value = item.get(name).ok_or_else(|| {
                Refusal::validation(format!(
                    "One or more parameter values were invalid: Missing the key {name} in the item"
                ))
            })?;
            let key = self.typed(name, value).ok_or_else(|| {
                Refusal::validation(format!(
                    "One or more parameter values were invalid: Type mismatch for key {name} expected: {} actual: {}",
                    self.types.get(name).map_or("S", String::as_str),
                    value.type_name()
                ))
            })?;
            key_length(name, &key, range)?;
            Ok(key)
        };
        let hash = part(&self.key.hash, false)?;
        let range = self.key.range.as_deref().map(|name| part(name, true)).transpose()?;
        Ok((hash, range))
    }

    /// The key a request names: exactly the key attributes, of their types.
    pub fn key_of_request(&self, key: &Item) -> Result<PrimaryKey, Refusal> {
        let mismatch = || Refusal::validation(text::KEY_MISMATCH);
        if key.len() != self.key.names().count() {
            return Err(mismatch());
        }
        let part = |name: &str, range: bool| -> Result<KeyValue, Refusal> {
            let key = key.get(name).and_then(|v| self.typed(name, v)).ok_or_else(mismatch)?;
            key_length(name, &key, range)?;
            Ok(key)
        };
        Ok((part(&self.key.hash, false)?, self.key.range.as_deref().map(|name| part(name, true)).transpose()?))
    }

    fn typed(&self, name: &str, value: &Value) -> Option<KeyValue> {
        KeyValue::of(value).filter(|_| self.types.get(name).is_some_and(|t| t == value.type_name()))
    }

    /// A written item's index keys: of their defined types and within the key limits, where present.
    pub fn check_index_keys(&self, item: &Item) -> Result<(), Refusal> {
        for index in &self.indexes {
            for (name, range) in [(Some(&index.key.hash), false), (index.key.range.as_ref(), true)] {
                let Some(value) = name.and_then(|name| item.get(name)) else { continue };
                let name = name.map_or("", String::as_str);
                let Some(key) = self.typed(name, value) else {
                    return Err(Refusal::validation(format!(
                        "One or more parameter values were invalid: Type mismatch for Index Key {name} Expected: {} \
                         Actual: {} IndexName: {}",
                        self.types.get(name).map_or("S", String::as_str),
                        value.type_name(),
                        index.name
                    )));
                };
                if key.is_empty() {
                    return Err(Refusal::validation(format!(
                        "One or more parameter values are not valid. A value specified for a secondary index key is \
                         not supported. The AttributeValue for a key attribute cannot contain an empty string value. \
                         IndexName: {}, IndexKey: {name}",
                        index.name
                    )));
                }
                key_length(name, &key, range)?;
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &PrimaryKey) -> Option<&Item> {
        self.items.get(key).map(|stored| &stored.item)
    }

    /// The attributes of `item` that `index` holds, and their size.
    pub fn projected(&self, index: &Index, item: &Item) -> Item {
        item.iter().filter(|(name, _)| index.projects(&self.key, name)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn projected_size(&self, index: &Index, item: &Item) -> usize {
        item.iter().filter(|(name, _)| index.projects(&self.key, name)).map(|(k, v)| attribute_size(k, v)).sum()
    }

    /// Stores `item` under `key`, replacing what was there; returns the old item.
    pub fn put(&mut self, key: PrimaryKey, item: Item) -> Option<Item> {
        let old = self.delete(&key);
        let size = item_size(&item);
        for n in 0..self.indexes.len() {
            let index = &self.indexes[n];
            if let Some(entry) = index.entry(&item, &key) {
                let bytes = self.projected_size(index, &item);
                self.indexes[n].insert(entry, bytes);
            }
        }
        if let Some(expiry) = self.expiry(&item) {
            self.expiries.insert((expiry, key.clone()));
        }
        self.bytes += size;
        self.items.insert(key, Stored { item, size });
        old
    }

    pub fn delete(&mut self, key: &PrimaryKey) -> Option<Item> {
        let Stored { item, size } = self.items.remove(key)?;
        for n in 0..self.indexes.len() {
            let index = &self.indexes[n];
            if let Some(entry) = index.entry(&item, key) {
                let bytes = self.projected_size(index, &item);
                self.indexes[n].remove(entry, bytes);
            }
        }
        if let Some(expiry) = self.expiry(&item) {
            self.expiries.remove(&(expiry, key.clone()));
        }
        self.bytes -= size;
        Some(item)
    }

    /// When TTL may delete the item: its TTL attribute as epoch seconds, if it is a number.
    fn expiry(&self, item: &Item) -> Option<u64> {
        match item.get(self.ttl.as_ref()?)? {
            Value::N(n) if !n.is_negative() => n.to_string().split('.').next()?.parse().ok(),
            _ => None,
        }
    }

    /// Turns TTL on for `attribute`, indexing every item's expiry.
    pub fn enable_ttl(&mut self, attribute: String) {
        self.ttl = Some(attribute);
        let expiries: Vec<(u64, PrimaryKey)> =
            self.items.iter().filter_map(|(key, stored)| Some((self.expiry(&stored.item)?, key.clone()))).collect();
        self.expiries = expiries.into_iter().collect();
    }

    /// Deletes the items whose expiry is before `before` (epoch seconds); returns how many.
    pub fn expire(&mut self, before: u64) -> usize {
        let due: Vec<PrimaryKey> =
            self.expiries.range(..(before, (KeyValue::S(String::new()), None))).map(|(_, key)| key.clone()).collect();
        due.iter().filter(|key| self.delete(key).is_some()).count()
    }

    /// Adds an index and fills it from the items already stored.
    pub fn add_index(&mut self, mut index: Index) {
        for (key, stored) in &self.items {
            if let Some(entry) = index.entry(&stored.item, key) {
                let bytes = self.projected_size(&index, &stored.item);
                index.insert(entry, bytes);
            }
        }
        self.indexes.push(index);
    }

    /// The key attributes of an item as a query answers them in LastEvaluatedKey: the table's, and the index's.
    pub fn key_attributes(&self, item: &Item, index: Option<&Index>) -> Item {
        let names: Vec<&str> = self.key.names().chain(index.into_iter().flat_map(|i| i.key.names())).collect();
        item.iter().filter(|(name, _)| names.contains(&name.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Bounds on a partition's sort key, as a key condition gives them.
#[derive(Debug, Clone)]
pub struct SortBounds {
    pub lower: Bound<KeyValue>,
    pub upper: Bound<KeyValue>,
    /// `begins_with`: entries stop matching at the first that does not start with it.
    pub prefix: Option<KeyValue>,
}

impl SortBounds {
    pub const ALL: Self = Self { lower: Bound::Unbounded, upper: Bound::Unbounded, prefix: None };

    pub fn admits(&self, range: Option<&KeyValue>) -> bool {
        let Some(range) = range else {
            return matches!((&self.lower, &self.upper), (Bound::Unbounded, Bound::Unbounded));
        };
        let above = match &self.lower {
            Bound::Included(low) => range >= low,
            Bound::Excluded(low) => range > low,
            Bound::Unbounded => true,
        };
        let below = match &self.upper {
            Bound::Included(high) => range <= high,
            Bound::Excluded(high) => range < high,
            Bound::Unbounded => true,
        };
        let prefixed = match (&self.prefix, range) {
            (Some(KeyValue::S(p)), KeyValue::S(r)) => r.starts_with(p.as_str()),
            (Some(KeyValue::B(p)), KeyValue::B(r)) => r.starts_with(p),
            (Some(_), _) => false,
            (None, _) => true,
        };
        above && below && prefixed
    }
}
