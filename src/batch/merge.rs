//! The path set of one batch: exact duplicates collapse, and a wildcard swallows every path it covers.

use std::collections::BTreeSet;
use std::ops::Bound;

use crate::model::path::InvalidationPath;

/// Distinct paths of one batch, kept minimal: no member is covered by a wildcard member.
///
/// Wildcards are stored by prefix (`/img/` for `/img/*`). Because the wildcard set is an antichain under the
/// prefix order, the only wildcard that can cover a path `p` is the greatest prefix `<= p`: every string sorting
/// between a prefix `w` of `p` and `p` itself also starts with `w`. That makes the coverage test one B-tree lookup.
#[derive(Debug, Default, Clone)]
pub struct PathSet {
    exact: BTreeSet<String>,
    wildcard_prefixes: BTreeSet<String>,
}

/// What adding one path did to the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The path is new and now part of the set.
    New,
    /// The set already held it, or a wildcard in the set covers it.
    Covered,
}

impl PathSet {
    pub fn add(&mut self, path: &InvalidationPath) -> Added {
        match path.wildcard_prefix() {
            Some(prefix) => self.add_wildcard(prefix),
            None => self.add_exact(path.as_str()),
        }
    }

    /// Whether the set already invalidates `path`: the path itself, or a wildcard member covering it.
    pub fn covers(&self, path: &InvalidationPath) -> bool {
        match path.wildcard_prefix() {
            Some(prefix) => self.covering_wildcard(prefix).is_some(),
            None => self.covering_wildcard(path.as_str()).is_some() || self.exact.contains(path.as_str()),
        }
    }

    fn add_exact(&mut self, path: &str) -> Added {
        if self.covering_wildcard(path).is_some() || !self.exact.insert(path.to_owned()) {
            return Added::Covered;
        }
        Added::New
    }

    fn add_wildcard(&mut self, prefix: &str) -> Added {
        if self.covering_wildcard(prefix).is_some() {
            return Added::Covered;
        }
        remove_with_prefix(&mut self.exact, prefix);
        remove_with_prefix(&mut self.wildcard_prefixes, prefix);
        self.wildcard_prefixes.insert(prefix.to_owned());
        Added::New
    }

    fn covering_wildcard(&self, path: &str) -> Option<&str> {
        self.wildcard_prefixes
            .range::<str, _>((Bound::Unbounded, Bound::Included(path)))
            .next_back()
            .filter(|prefix| path.starts_with(prefix.as_str()))
            .map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard_prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn wildcard_count(&self) -> usize {
        self.wildcard_prefixes.len()
    }

    /// The paths to send to CloudFront, sorted.
    pub fn into_paths(self) -> Vec<String> {
        let mut paths: Vec<String> = self.exact.into_iter().collect();
        paths.extend(self.wildcard_prefixes.into_iter().map(|mut prefix| {
            prefix.push('*');
            prefix
        }));
        paths.sort_unstable();
        paths
    }
}

fn remove_with_prefix(set: &mut BTreeSet<String>, prefix: &str) {
    let covered: Vec<String> = set
        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(|member| member.starts_with(prefix))
        .cloned()
        .collect();
    for member in covered {
        set.remove(&member);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::path::{covering, is_covered_by};
    use proptest::prelude::*;

    fn path(raw: &str) -> InvalidationPath {
        InvalidationPath::parse(raw).unwrap()
    }

    fn set_of(raws: &[&str]) -> PathSet {
        let mut set = PathSet::default();
        for raw in raws {
            set.add(&path(raw));
        }
        set
    }

    #[test]
    fn removes_exact_duplicates() {
        let mut set = PathSet::default();
        assert_eq!(set.add(&path("/a")), Added::New);
        assert_eq!(set.add(&path("/a")), Added::Covered);
        assert_eq!(set.into_paths(), ["/a"]);
    }

    #[test]
    fn wildcard_covers_paths_added_before_and_after_it() {
        let set = set_of(&["/img/a.png", "/img/x/y", "/imgs", "/img/*", "/img/b.png", "/img/sub/*", "/other"]);
        assert_eq!(set.into_paths(), ["/img/*", "/imgs", "/other"]);
    }

    #[test]
    fn root_wildcard_covers_everything() {
        let set = set_of(&["/a", "/b/*", "/*", "/c"]);
        assert_eq!(set.wildcard_count(), 1);
        assert_eq!(set.into_paths(), ["/*"]);
    }

    #[test]
    fn wildcard_prefix_is_textual_not_per_segment() {
        // `/img*` covers `/images/a` in CloudFront too: a wildcard matches any characters, slashes included.
        let set = set_of(&["/images/a", "/img*"]);
        assert_eq!(set.into_paths(), ["/images/a", "/img*"]);
        let set = set_of(&["/img/a", "/img*"]);
        assert_eq!(set.into_paths(), ["/img*"]);
    }

    #[test]
    fn checks_coverage_against_submitted_paths() {
        let submitted = vec!["/img/*".to_owned(), "/index.html".to_owned()];
        assert!(is_covered_by("/img/a/b.png", &submitted));
        assert!(is_covered_by("/img/a*", &submitted));
        assert!(is_covered_by("/index.html", &submitted));
        assert!(!is_covered_by("/index.htm", &submitted));
        assert!(!is_covered_by("/im*", &submitted));
        assert_eq!(covering("/img/a/b.png", &submitted), Some("/img/*"));
        assert_eq!(covering("/index.html", &submitted), Some("/index.html"));
        assert_eq!(covering("/index.htm", &submitted), None);
    }

    fn arbitrary_path() -> impl Strategy<Value = InvalidationPath> {
        ("(/[ab]{0,2}){1,3}", any::<bool>()).prop_map(|(base, wildcard)| {
            let raw = if wildcard { format!("{base}*") } else { base };
            InvalidationPath::parse(&raw).unwrap()
        })
    }

    proptest! {
        /// Every added path stays invalidated, and the set never keeps a path that another member covers.
        #[test]
        fn merge_is_complete_and_minimal(paths in prop::collection::vec(arbitrary_path(), 0..40)) {
            let mut set = PathSet::default();
            for p in &paths {
                set.add(p);
            }
            let len = set.len();
            let wildcards = set.wildcard_count();
            let submitted = set.into_paths();
            prop_assert_eq!(submitted.len(), len);
            prop_assert_eq!(crate::model::path::count_wildcards(&submitted), wildcards);
            for p in &paths {
                prop_assert!(is_covered_by(p.as_str(), &submitted), "{} lost", p);
            }
            for (i, p) in submitted.iter().enumerate() {
                let others: Vec<String> =
                    submitted.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, o)| o.clone()).collect();
                prop_assert!(!is_covered_by(p, &others), "{} is redundant in {:?}", p, submitted);
            }
        }

        #[test]
        fn insertion_order_does_not_matter(paths in prop::collection::vec(arbitrary_path(), 0..30)) {
            let mut forward = PathSet::default();
            let mut backward = PathSet::default();
            paths.iter().for_each(|p| { forward.add(p); });
            paths.iter().rev().for_each(|p| { backward.add(p); });
            prop_assert_eq!(forward.into_paths(), backward.into_paths());
        }
    }
}
