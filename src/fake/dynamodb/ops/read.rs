//! GetItem, Query and Scan. A query reads one partition of the table or an index as a range of an ordered map; a
//! page stops at `Limit` items or at 1 MB read (counted before the filter, as DynamoDB counts), and then answers
//! LastEvaluatedKey: the table's key, and for an index the index's key too.

use std::collections::BTreeSet;
use std::ops::Bound;

use serde_json::{Value as Json, json};

use super::condition::{key_condition, names_in};
use super::{Expressions, State, choice, table_name};
use crate::fake::dynamodb::error::Refusal;
use crate::fake::dynamodb::expr::{self, Condition, Kind, Path, Step};
use crate::fake::dynamodb::table::{Edge, Index, PrimaryKey, SortBounds, Sorted, Table};
use crate::fake::dynamodb::value::{Item, KeyValue, Value, item_from_json, item_to_json};

/// DynamoDB's page size: 1 MB of items read.
pub const MAX_PAGE: usize = 1024 * 1024;

pub fn get(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    let name = table_name(request)?;
    let mut expressions = Expressions::new(request, &mut state.observed)?;
    let projection = expressions.projection()?;
    expressions.finish()?;
    let table = state.table(name)?;
    let key = table.key_of_request(&item_from_json(request.get("Key").unwrap_or(&Json::Null))?)?;
    Ok(match table.get(&key) {
        Some(item) => json!({ "Item": item_to_json(&project(item, projection.as_deref())) }),
        None => json!({}),
    })
}

/// The attributes `paths` name (all of them without a projection), nested paths keeping their structure.
pub fn project(item: &Item, paths: Option<&[Path]>) -> Item {
    let Some(paths) = paths else { return item.clone() };
    let mut projected = Item::new();
    for path in paths {
        if let Some(value) = expr::resolve(item, path) {
            place(&mut projected, &path.0, value.clone());
        }
    }
    projected
}

/// Puts `value` at `steps` in `map`, making the maps on the way (a list element is kept as a value of its list).
fn place(map: &mut Item, steps: &[Step], value: Value) {
    match steps {
        [Step::Key(name)] => {
            map.insert(name.clone(), value);
        }
        [Step::Key(name), Step::Index(_), ..] => {
            if let Value::L(list) = map.entry(name.clone()).or_insert_with(|| Value::L(Vec::new())) {
                list.push(value);
            }
        }
        [Step::Key(name), rest @ ..] => {
            if let Value::M(child) = map.entry(name.clone()).or_insert_with(|| Value::M(Item::new())) {
                place(child, rest, value);
            }
        }
        _ => {}
    }
}

/// What a page of a Query or Scan needs besides its table.
struct Page<'a> {
    index: Option<&'a Index>,
    filter: Option<Condition>,
    projection: Option<Vec<Path>>,
    limit: Option<usize>,
    count_only: bool,
}

pub fn query(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    read(state, request, true)
}

pub fn scan(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    read(state, request, false)
}

fn read(state: &mut State, request: &Json, is_query: bool) -> Result<Json, Refusal> {
    let name = table_name(request)?.to_owned();
    let mut expressions = Expressions::new(request, &mut state.observed)?;
    let key_condition_expression = if is_query {
        Some(expressions.condition("KeyConditionExpression", Kind::KeyCondition)?.ok_or_else(|| {
            Refusal::validation(
                "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.",
            )
        })?)
    } else {
        None
    };
    let filter = expressions.condition("FilterExpression", Kind::Filter)?;
    let projection = expressions.projection()?;
    expressions.finish()?;
    let count_only =
        choice(request, "Select", &["ALL_ATTRIBUTES", "COUNT", "ALL_PROJECTED_ATTRIBUTES", "SPECIFIC_ATTRIBUTES"])?
            == "COUNT";
    let limit = match request.get("Limit").and_then(Json::as_u64) {
        Some(0) => {
            return Err(Refusal::validation(
                "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1",
            ));
        }
        limit => limit.map(|l| l as usize),
    };
    let table = state.tables.get(&name).ok_or_else(Refusal::no_table)?;
    let index = request.get("IndexName").and_then(Json::as_str).map(|i| table.index(i)).transpose()?;
    if index.is_some() && request.get("ConsistentRead").and_then(Json::as_bool) == Some(true) {
        return Err(Refusal::validation("Consistent reads are not supported on global secondary indexes"));
    }
    let schema = index.map_or(&table.key, |i| &i.key);
    let key_names = [schema.hash.as_str(), schema.range.as_deref().unwrap_or("")];
    let partition = key_condition_expression.map(|c| key_condition(c, &key_names, table)).transpose()?;
    if let (true, Some(filter)) = (is_query, &filter) {
        let mut names = BTreeSet::new();
        names_in(filter, &mut names);
        if let Some(key) = key_names.iter().find(|k| names.contains(**k)) {
            return Err(Refusal::validation(format!(
                "Filter Expression can only contain non-primary key attributes: Primary key attribute: {key}"
            )));
        }
    }
    let start = request.get("ExclusiveStartKey").map(|key| start_key(table, index, key)).transpose()?;
    let forward = request.get("ScanIndexForward").and_then(Json::as_bool).unwrap_or(true);
    let keys = visit(table, index, partition.as_ref(), forward, start);
    let page = Page { index, filter, projection, limit, count_only };
    let (answer, read) = page.answer(table, keys)?;
    let what = index.map_or(&table.name, |index| &index.name).clone();
    state.observed.page_read(&what, read);
    Ok(answer)
}

/// The ExclusiveStartKey's place: its table key, and for an index its place in the index.
fn start_key(
    table: &Table,
    index: Option<&Index>,
    key: &Json,
) -> Result<(PrimaryKey, Option<(KeyValue, Sorted)>), Refusal> {
    let invalid = || {
        Refusal::validation("The provided starting key is invalid: The provided key element does not match the schema")
    };
    let item = item_from_json(key)?;
    let table_part: Item =
        item.iter().filter(|(n, _)| table.key.names().any(|k| k == *n)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let primary = table.key_of_request(&table_part).map_err(|_| invalid())?;
    let Some(index) = index else { return Ok((primary, None)) };
    let part = |name: &str| item.get(name).and_then(KeyValue::of).ok_or_else(invalid);
    let hash = part(&index.key.hash)?;
    let range = index.key.range.as_deref().map(part).transpose()?;
    Ok((primary.clone(), Some((hash, (range, Edge::Key(primary))))))
}

type Start = (PrimaryKey, Option<(KeyValue, Sorted)>);

/// The table keys a read visits, in order, from after `start`.
fn visit<'t>(
    table: &'t Table,
    index: Option<&'t Index>,
    partition: Option<&(KeyValue, SortBounds)>,
    forward: bool,
    start: Option<Start>,
) -> Box<dyn Iterator<Item = &'t PrimaryKey> + 't> {
    match (index, partition) {
        (Some(index), Some((hash, bounds))) => {
            let Some(entries) = index.partitions.get(hash) else { return Box::new(std::iter::empty()) };
            let after = start.and_then(|(_, at)| at).map(|(_, sorted)| sorted);
            let bounds = bounds.clone();
            let (lower, upper) = sorted_bounds(&bounds, after, forward);
            let keys = bounded(entries, lower, upper, forward)
                .skip_while({
                    let b = bounds.clone();
                    move |(range, _)| !b.admits(range.as_ref())
                })
                .take_while(move |(range, _)| bounds.admits(range.as_ref()))
                .filter_map(|(_, edge)| if let Edge::Key(key) = edge { Some(key) } else { None });
            Box::new(keys)
        }
        (Some(index), None) => {
            let after = start.and_then(|(_, at)| at);
            let all = index.partitions.iter().flat_map(|(hash, entries)| entries.iter().map(move |e| (hash, e)));
            let keys = all
                .skip_while(move |(hash, sorted)| after.as_ref().is_some_and(|(h, s)| (*hash, *sorted) <= (h, s)))
                .filter_map(|(_, (_, edge))| if let Edge::Key(key) = edge { Some(key) } else { None });
            Box::new(keys)
        }
        (None, Some((hash, bounds))) => {
            let lower = match (&start, forward) {
                (Some((key, _)), true) => Bound::Excluded(key.clone()),
                _ => Bound::Included((hash.clone(), None)),
            };
            let upper = match (&start, forward) {
                (Some((key, _)), false) => Bound::Excluded(key.clone()),
                _ => Bound::Unbounded,
            };
            let (skip, take, before, inside) = (bounds.clone(), bounds.clone(), hash.clone(), hash.clone());
            // A descending query of a table starts from the table's end and walks back to its partition: the
            // worker's table has no sort key, so that cost is not worth a partition map.
            let keys = bounded(&table.items, lower, upper, forward)
                .map(|(key, _)| key)
                .skip_while(move |k| (!forward && k.0 > before) || (k.0 == before && !skip.admits(k.1.as_ref())))
                .take_while(move |k| k.0 == inside && take.admits(k.1.as_ref()));
            Box::new(keys)
        }
        (None, None) => {
            let lower = start.map_or(Bound::Unbounded, |(key, _)| Bound::Excluded(key));
            Box::new(table.items.range((lower, Bound::Unbounded)).map(|(key, _)| key))
        }
    }
}

/// Bounds on an index partition's entries: the key condition's, narrowed by where the last page stopped.
fn sorted_bounds(bounds: &SortBounds, after: Option<Sorted>, forward: bool) -> (Bound<Sorted>, Bound<Sorted>) {
    let edge = |value: &KeyValue, edge| Bound::Included((Some(value.clone()), edge));
    let lower = match &bounds.lower {
        Bound::Included(v) => edge(v, Edge::Before),
        Bound::Excluded(v) => edge(v, Edge::After),
        Bound::Unbounded => Bound::Unbounded,
    };
    let upper = match &bounds.upper {
        Bound::Included(v) => edge(v, Edge::After),
        Bound::Excluded(v) => edge(v, Edge::Before),
        Bound::Unbounded => Bound::Unbounded,
    };
    match (after, forward) {
        (Some(after), true) => (Bound::Excluded(after), upper),
        (Some(after), false) => (lower, Bound::Excluded(after)),
        (None, _) => (lower, upper),
    }
}

/// A range of an ordered map or set, empty where the bounds cross (where `range` would panic).
fn bounded<'m, K: Ord + 'm, M: Ranged<'m, K> + 'm>(
    map: M,
    lower: Bound<K>,
    upper: Bound<K>,
    forward: bool,
) -> Box<dyn Iterator<Item = M::Item> + 'm> {
    let crossed = match (&lower, &upper) {
        (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) => {
            l > u || (l == u && !matches!((&lower, &upper), (Bound::Included(_), Bound::Included(_))))
        }
        _ => false,
    };
    if crossed {
        return Box::new(std::iter::empty());
    }
    map.ranged(lower, upper, forward)
}

trait Ranged<'m, K> {
    type Item;
    fn ranged(self, lower: Bound<K>, upper: Bound<K>, forward: bool) -> Box<dyn Iterator<Item = Self::Item> + 'm>;
}

impl<'m, K: Ord> Ranged<'m, K> for &'m BTreeSet<K> {
    type Item = &'m K;
    fn ranged(self, lower: Bound<K>, upper: Bound<K>, forward: bool) -> Box<dyn Iterator<Item = &'m K> + 'm> {
        let range = self.range((lower, upper));
        if forward { Box::new(range) } else { Box::new(range.rev()) }
    }
}

impl<'m, K: Ord, V> Ranged<'m, K> for &'m std::collections::BTreeMap<K, V> {
    type Item = (&'m K, &'m V);
    fn ranged(self, lower: Bound<K>, upper: Bound<K>, forward: bool) -> Box<dyn Iterator<Item = Self::Item> + 'm> {
        let range = self.range((lower, upper));
        if forward { Box::new(range) } else { Box::new(range.rev()) }
    }
}

impl Page<'_> {
    /// Reads `keys` until the limit or 1 MB; returns the answer and how many items were read.
    fn answer<'t>(
        &self,
        table: &'t Table,
        keys: Box<dyn Iterator<Item = &'t PrimaryKey> + 't>,
    ) -> Result<(Json, u64), Refusal> {
        let mut keys = keys.peekable();
        let (mut read, mut bytes) = (0usize, 0usize);
        let mut items = Vec::new();
        let mut last = None;
        while let Some(key) = keys.next() {
            let stored = &table.items[key];
            let item = match self.index {
                Some(index) => {
                    bytes += table.projected_size(index, &stored.item);
                    std::borrow::Cow::Owned(table.projected(index, &stored.item))
                }
                None => {
                    bytes += stored.size;
                    std::borrow::Cow::Borrowed(&stored.item)
                }
            };
            read += 1;
            let kept = match &self.filter {
                Some(filter) => expr::test(filter, &item, Kind::Filter)?,
                None => true,
            };
            if kept && !self.count_only {
                items.push(item_to_json(&project(&item, self.projection.as_deref())));
            } else if kept {
                items.push(Json::Null);
            }
            let limited = self.limit == Some(read);
            if limited || (bytes >= super::read::MAX_PAGE && keys.peek().is_some()) {
                last = Some(table.key_attributes(&item, self.index));
                break;
            }
        }
        let mut answer = json!({ "Count": items.len(), "ScannedCount": read });
        if !self.count_only {
            answer["Items"] = Json::Array(items);
        }
        if let Some(last) = last {
            answer["LastEvaluatedKey"] = item_to_json(&last);
        }
        Ok((answer, read as u64))
    }
}
