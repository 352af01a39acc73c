//! The paths into an event's `data` a reader needs (the sinker's routes: `data.order_id`,
//! `data.items[0].sku`), as a trie ([`DataPaths`]), and `data` pruned to them
//! ([`DataPaths::prune`]).
//!
//! Invariant: a pruned `data` answers each of its paths as the whole `data` does (the same
//! value at the path's end, or the same absence), walking as routes walk (`Path::extract`: a
//! field of an object, an index of an array, nothing else). It holds:
//! - at a path's end, the value whole;
//! - on a path's way, an object with only the fields some path goes on into (each pruned), an
//!   array cut after the last index some path goes on into (those items pruned, the others
//!   null), and any other value as it is (no path goes further into it).

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// A step of a path into `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Field(&'a str),
    Index(usize),
}

/// The paths into `data` a reader needs. Empty: none (a pruned `data` is `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataPaths {
    /// `data` itself.
    root: Node,
}

/// A value some path reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Node {
    /// A path ends here: the value is needed whole (then `fields` and `indices` are empty).
    pub(crate) whole: bool,
    /// The fields paths go on into, sorted by [`by_length`].
    fields: Vec<(String, Node)>,
    /// The indices paths go on into, sorted.
    indices: Vec<(usize, Node)>,
}

impl DataPaths {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a path (no steps: `data` itself).
    pub fn add<'a>(&mut self, steps: impl IntoIterator<Item = Step<'a>>) {
        let mut node = &mut self.root;
        for step in steps {
            if node.whole {
                // A shorter path already needs all of it.
                return;
            }
            node = node.child(step);
        }
        *node = Node { whole: true, ..Node::default() };
    }

    /// Whether `data` itself is needed: pruning keeps it all.
    pub fn whole(&self) -> bool {
        self.root.whole
    }

    /// Prunes a whole `data` to these paths (see the module's invariant).
    pub fn prune(&self, data: &mut Map<String, Value>) {
        if !self.root.whole {
            *data = prune_map(std::mem::take(data), &self.root);
        }
    }

    pub(crate) fn root(&self) -> &Node {
        &self.root
    }
}

impl Node {
    /// The node of this field, when a path goes on into it.
    pub(crate) fn field(&self, name: &str) -> Option<&Node> {
        self.fields.binary_search_by(|(n, _)| by_length(n, name)).ok().map(|i| &self.fields[i].1)
    }

    /// The node of this index, when a path goes on into it.
    pub(crate) fn index(&self, index: usize) -> Option<&Node> {
        self.indices.binary_search_by_key(&index, |(i, _)| *i).ok().map(|i| &self.indices[i].1)
    }

    /// How many items of an array here a pruned `data` keeps: up to the last index a path
    /// goes on into.
    pub(crate) fn items_kept(&self) -> usize {
        self.indices.last().map_or(0, |(i, _)| i.saturating_add(1))
    }

    fn child(&mut self, step: Step<'_>) -> &mut Node {
        match step {
            Step::Field(name) => {
                let at = match self.fields.binary_search_by(|(n, _)| by_length(n, name)) {
                    Ok(at) => at,
                    Err(at) => {
                        self.fields.insert(at, (name.to_owned(), Node::default()));
                        at
                    }
                };
                &mut self.fields[at].1
            }
            Step::Index(index) => {
                let at = match self.indices.binary_search_by_key(&index, |(i, _)| *i) {
                    Ok(at) => at,
                    Err(at) => {
                        self.indices.insert(at, (index, Node::default()));
                        at
                    }
                };
                &mut self.indices[at].1
            }
        }
    }
}

/// Shorter names first, then by bytes: looking a key up mostly compares lengths (comparing
/// bytes is a call to `memcmp`, which was 10% of decoding a record whose 8 fields all matched).
fn by_length(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

fn prune_value(value: Value, node: &Node) -> Value {
    if node.whole {
        return value;
    }
    match value {
        Value::Object(map) => Value::Object(prune_map(map, node)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .take(node.items_kept())
                .enumerate()
                .map(|(i, item)| node.index(i).map_or(Value::Null, |child| prune_value(item, child)))
                .collect(),
        ),
        other => other,
    }
}

fn prune_map(map: Map<String, Value>, node: &Node) -> Map<String, Value> {
    map.into_iter()
        .filter_map(|(name, value)| node.field(&name).map(|child| (name, prune_value(value, child))))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(list: &[&[Step<'_>]]) -> DataPaths {
        let mut paths = DataPaths::new();
        for steps in list {
            paths.add(steps.iter().copied());
        }
        paths
    }

    fn pruned(data: Value, paths: &DataPaths) -> Value {
        let Value::Object(mut map) = data else { panic!("data is an object") };
        paths.prune(&mut map);
        Value::Object(map)
    }

    #[test]
    fn pruning_keeps_what_the_paths_reach() {
        use Step::{Field as F, Index as I};
        let data = json!({
            "id": 7,
            "skip": {"big": [1, 2, 3]},
            "customer": {"id": "c", "name": "n"},
            "items": [{"sku": "a", "qty": 1}, {"sku": "b"}, {"sku": "c"}, {"sku": "d"}],
            "odd key": {"x": 1},
            "scalar": "s",
            "short": [1],
        });
        let p = paths(&[
            &[F("id")],
            &[F("customer"), F("id")],
            &[F("items"), I(2), F("sku")],
            &[F("odd key")],
            &[F("scalar"), F("deeper")],
            &[F("short"), I(3)],
            &[F("absent"), F("x")],
        ]);
        assert_eq!(
            pruned(data, &p),
            json!({
                "id": 7,
                "customer": {"id": "c"},
                "items": [null, null, {"sku": "c"}],
                "odd key": {"x": 1},
                "scalar": "s",
                "short": [null],
            })
        );
    }

    #[test]
    fn a_shorter_path_takes_the_value_whole() {
        use Step::{Field as F, Index as I};
        let data = json!({"a": {"b": {"c": 1, "d": 2}, "e": [1, 2]}});
        for order in [[&[F("a"), F("b"), F("c")][..], &[F("a")][..]], [&[F("a")][..], &[F("a"), F("b"), F("c")][..]]] {
            assert_eq!(pruned(data.clone(), &paths(&order)), data);
        }
        let p = paths(&[&[F("a"), F("e"), I(1)], &[F("a"), F("e")]]);
        assert_eq!(pruned(data.clone(), &p), json!({"a": {"e": [1, 2]}}));
        assert!(!p.whole());
        let all = paths(&[&[F("a")], &[]]);
        assert!(all.whole());
        assert_eq!(pruned(data.clone(), &all), data);
        assert_eq!(pruned(data, &DataPaths::new()), json!({}));
    }

    #[test]
    fn a_node_lists_its_steps_sorted() {
        use Step::{Field as F, Index as I};
        let p = paths(&[&[F("bb")], &[F("b")], &[F("a"), I(5)], &[F("a"), I(1)], &[F("c"), F("x")]]);
        let root = p.root();
        assert!(root.field("b").is_some_and(|n| n.whole));
        assert!(root.field("zz").is_none());
        let a = root.field("a").expect("a");
        assert_eq!(a.items_kept(), 6);
        assert!(a.index(1).is_some() && a.index(5).is_some() && a.index(2).is_none());
        assert!(root.field("bb").is_some_and(|n| n.whole));
        assert_eq!(root.fields.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["a", "b", "c", "bb"]);
    }
}
