//! Which routes take an event type.
//!
//! A route's `types` are patterns: an exact type (`order.created`), `*` (every type), or a
//! trailing `prefix.*`, which matches every type that starts with `prefix.` followed by at least
//! one character (`order.*` matches `order.created` and `order.line.added`, not `order`).
//!
//! [`Matcher`] answers in route order and names each route at most once, however many of its
//! patterns match. It precomputes the answer for every exact type named in the file (one hash
//! lookup); other types are checked against the prefix and `*` routes only.

use std::{collections::HashMap, fmt};

use sluice_core::event::MAX_TYPE_CHARS;

/// One entry of a route's `types`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TypePattern {
    Exact(String),
    /// `*`.
    Any,
    /// `prefix.*`, stored as `prefix.` (with the dot).
    Prefix(String),
}

impl TypePattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let invalid = || format!("{pattern:?} is not a valid type pattern: use an exact type, \"*\", or \"prefix.*\"");
        if pattern == "*" {
            return Ok(Self::Any);
        }
        if let Some(prefix) = pattern.strip_suffix(".*") {
            if prefix.is_empty() || prefix.contains('*') {
                return Err(invalid());
            }
            return Ok(Self::Prefix(format!("{prefix}.")));
        }
        if pattern.is_empty() || pattern.contains('*') {
            return Err(invalid());
        }
        let chars = pattern.chars().count();
        if chars > MAX_TYPE_CHARS {
            return Err(format!(
                "{pattern:?} can never match: event types are at most {MAX_TYPE_CHARS} characters, this has {chars}"
            ));
        }
        Ok(Self::Exact(pattern.to_owned()))
    }

    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            Self::Exact(t) => t == event_type,
            Self::Any => true,
            Self::Prefix(prefix) => event_type.len() > prefix.len() && event_type.starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(t) => f.write_str(t),
            Self::Any => f.write_str("*"),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// The routes' patterns, compiled.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// For each exact type named in a route: every route that takes it, in route order.
    exact: HashMap<String, Vec<usize>>,
    /// Routes with `*` or prefix patterns, in route order, with those patterns.
    open: Vec<(usize, Vec<TypePattern>)>,
}

impl Matcher {
    /// `routes[i]` is route i's patterns.
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a [TypePattern]>) -> Self {
        let routes: Vec<&[TypePattern]> = routes.into_iter().collect();
        let open: Vec<(usize, Vec<TypePattern>)> = routes
            .iter()
            .enumerate()
            .filter_map(|(i, patterns)| {
                let open: Vec<TypePattern> =
                    patterns.iter().filter(|p| !matches!(p, TypePattern::Exact(_))).cloned().collect();
                (!open.is_empty()).then_some((i, open))
            })
            .collect();
        let mut exact = HashMap::new();
        for patterns in &routes {
            for pattern in *patterns {
                if let TypePattern::Exact(t) = pattern {
                    exact.entry(t.clone()).or_insert_with(|| {
                        routes
                            .iter()
                            .enumerate()
                            .filter(|(_, ps)| ps.iter().any(|p| p.matches(t)))
                            .map(|(i, _)| i)
                            .collect()
                    });
                }
            }
        }
        Self { exact, open }
    }

    /// The indexes of the routes that take `event_type`, in route order, each once.
    pub fn matching<'m>(&'m self, event_type: &'m str) -> Matching<'m> {
        match self.exact.get(event_type) {
            Some(routes) => Matching::Exact(routes.iter()),
            None => Matching::Open { open: self.open.iter(), event_type },
        }
    }
}

/// The iterator [`Matcher::matching`] returns.
#[derive(Debug, Clone)]
pub enum Matching<'m> {
    Exact(std::slice::Iter<'m, usize>),
    Open { open: std::slice::Iter<'m, (usize, Vec<TypePattern>)>, event_type: &'m str },
}

impl Iterator for Matching<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            Self::Exact(routes) => routes.next().copied(),
            Self::Open { open, event_type } => {
                open.find(|(_, patterns)| patterns.iter().any(|p| p.matches(event_type))).map(|(i, _)| *i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<TypePattern> {
        list.iter().map(|p| TypePattern::parse(p).unwrap_or_else(|e| panic!("{e}"))).collect()
    }

    #[test]
    fn patterns_parse_and_display_back() {
        assert_eq!(TypePattern::parse("*"), Ok(TypePattern::Any));
        assert_eq!(TypePattern::parse("order.*"), Ok(TypePattern::Prefix("order.".into())));
        assert_eq!(TypePattern::parse("order.created"), Ok(TypePattern::Exact("order.created".into())));
        for p in ["*", "order.*", "a.b.*", "order.created", "x"] {
            assert_eq!(TypePattern::parse(p).map(|p| p.to_string()).as_deref(), Ok(p));
        }
        for bad in ["", "order*", "*.created", ".*", "a.*.*", "a*.*", "**"] {
            assert_eq!(
                TypePattern::parse(bad),
                Err(format!("{bad:?} is not a valid type pattern: use an exact type, \"*\", or \"prefix.*\"")),
                "{bad}"
            );
        }
        assert!(TypePattern::parse(&"t".repeat(MAX_TYPE_CHARS)).is_ok());
        assert_eq!(
            TypePattern::parse(&"t".repeat(MAX_TYPE_CHARS + 1)).map(|_| ()),
            Err(format!(
                "\"{}\" can never match: event types are at most 128 characters, this has 129",
                "t".repeat(MAX_TYPE_CHARS + 1)
            ))
        );
    }

    #[test]
    fn globs_match_what_they_say() {
        let prefix = TypePattern::parse("order.*").expect("valid");
        assert!(prefix.matches("order.created"));
        assert!(prefix.matches("order.line.added"));
        assert!(!prefix.matches("order"));
        assert!(!prefix.matches("order."));
        assert!(!prefix.matches("orders.created"));
        assert!(!prefix.matches("x.order.created"));
        assert!(TypePattern::Any.matches("anything"));
        let exact = TypePattern::parse("order.created").expect("valid");
        assert!(exact.matches("order.created"));
        assert!(!exact.matches("order.created.v2"));
        assert!(!exact.matches("Order.created"));
    }

    #[test]
    fn matching_gives_each_route_once_in_route_order() {
        let routes = [
            patterns(&["order.created", "order.paid"]), // 0
            patterns(&["*"]),                           // 1
            patterns(&["order.*", "order.created"]),    // 2
            patterns(&["user.*"]),                      // 3
            patterns(&["order.line.*", "order.*"]),     // 4
            patterns(&["user.signed_up"]),              // 5
        ];
        let matcher = Matcher::new(routes.iter().map(Vec::as_slice));
        let matching = |t: &str| matcher.matching(t).collect::<Vec<_>>();
        assert_eq!(matching("order.created"), [0, 1, 2, 4]);
        assert_eq!(matching("order.paid"), [0, 1, 2, 4]);
        assert_eq!(matching("order.line.added"), [1, 2, 4]);
        assert_eq!(matching("order"), [1]);
        assert_eq!(matching("user.signed_up"), [1, 3, 5]);
        assert_eq!(matching("user.left"), [1, 3]);
        assert_eq!(matching("other"), [1]);

        let no_catch_all = Matcher::new([patterns(&["a"]).as_slice(), patterns(&["b.*"]).as_slice()]);
        assert_eq!(no_catch_all.matching("c").count(), 0);
        assert_eq!(no_catch_all.matching("a").collect::<Vec<_>>(), [0]);
        assert_eq!(no_catch_all.matching("b.c").collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn matching_agrees_with_checking_every_pattern() {
        use proptest::prelude::*;
        let pattern =
            prop_oneof![Just("*".to_owned()), "[ab]{1,2}(\\.[ab]{1,2}){0,2}", "[ab]{1,2}(\\.[ab]{1,2}){0,1}\\.\\*",];
        let routes = proptest::collection::vec(proptest::collection::vec(pattern, 1..4), 1..6);
        let types = proptest::collection::vec("[ab]{1,2}(\\.[ab]{1,2}){0,3}", 1..10);
        proptest!(|(routes in routes, types in types)| {
            let compiled: Vec<Vec<TypePattern>> = routes
                .iter()
                .map(|ps| ps.iter().map(|p| TypePattern::parse(p).expect("generated patterns are valid")).collect())
                .collect();
            let matcher = Matcher::new(compiled.iter().map(Vec::as_slice));
            for t in &types {
                let expected: Vec<usize> = compiled
                    .iter()
                    .enumerate()
                    .filter(|(_, ps)| ps.iter().any(|p| p.matches(t)))
                    .map(|(i, _)| i)
                    .collect();
                prop_assert_eq!(matcher.matching(t).collect::<Vec<_>>(), expected, "type {}", t);
            }
        });
    }
}
