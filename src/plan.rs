//! The coalescing planner: what to submit instead when a distribution's backlog cannot clear within `--max-delay`
//! under its in-progress allowances.
//!
//! Why it exists: CloudFront lets one distribution have 3,000 non-wildcard paths and, counted separately, 15
//! wildcard paths in progress (aws-facts.md A1), and bills every path, a wildcard counting as one however many files
//! it clears (A2). One `/news/2026/*` can therefore stand in for 2,000 article paths: it frees the path allowance
//! for other work and is billed as one path instead of 2,000. Its price is that it also evicts cached files nobody
//! asked to invalidate, so the planner widens as little as it can.
//!
//! Segment safety: CloudFront's `*` matches any characters, `/` included, so `/a/b*` also clears `/a/bc/` and
//! `/a/b.old`. Every wildcard the planner creates is a whole directory (`/a/b/*`), so widening never spills into a
//! sibling whose name merely starts the same way. Wildcards the producers sent pass through unchanged, unless a
//! created directory wildcard covers them.
//!
//! How it chooses: paths that an input wildcard already covers drop out first. Then, greedily, one directory at a
//! time: while there are more wildcards than room, the one merging the most of them; then the one removing the most
//! of the paths still to be removed. Counting only what is still needed lets a directory that is just big enough tie
//! with a bigger one, and ties go to the deeper directory, then to the one using fewer wildcards. `/*` is considered
//! only when no other directory helps. Last, since a directory taken early may be needed only in part, or not at all,
//! once later ones removed more than was left to remove, chosen directories whose paths fit back in are dropped and
//! the others move down to a subdirectory while the plan still fits. A directory tree built from the sorted paths keeps each step linear in the number of directories.

use std::cmp::Reverse;

/// Invalidation paths each month that CloudFront does not charge for, across all of an account's distributions
/// (aws-facts.md A2, quoted from AWS's "Paying for file invalidation" page).
pub const FREE_PATHS_PER_MONTH: u64 = 1_000;

/// US dollars for each path beyond the free ones. aws-facts.md A2 has it from secondary sources only, unchecked
/// against aws.amazon.com/cloudfront/pricing: an estimate for reports, not a bill.
pub const DOLLARS_PER_PATH: f64 = 0.005;

/// Room left in a distribution's in-progress allowances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Non-wildcard paths; cache tags count here too.
    pub paths: usize,
    pub wildcards: usize,
}

/// What to submit instead of a backlog that does not fit its [`Room`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The paths to submit, sorted: every input path is covered by one of them.
    pub paths: Vec<String>,
    /// One entry per wildcard the planner created, sorted.
    pub replacements: Vec<Replacement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// Always a directory wildcard: `/a/b/*`, or `/*` as the last resort.
    pub wildcard: String,
    /// How many distinct input paths (wildcards included) it covers, for the log and the ledger.
    pub replaced: usize,
}

/// Replaces groups of paths by the narrowest directory wildcards (`/a/b/*`) that make the set fit `room`, preferring
/// the replacement that removes the most paths per wildcard used; escalates to `/*` only as a last resort. An input
/// that already fits comes back deduplicated and sorted, with no replacements.
///
/// Items that do not start with `/` (cache tags, `#…`) are never replaced and each takes one of `room.paths`.
/// `None` if nothing can make the set fit: more tags than `room.paths`, or too many paths with no wildcard room.
pub fn coalesce(paths: &[String], room: Room) -> Option<Plan> {
    let mut inputs: Vec<&str> = paths.iter().map(String::as_str).collect();
    inputs.sort_unstable();
    inputs.dedup();
    if Load::of(&inputs).fits(room) {
        return Some(Plan { paths: inputs.into_iter().map(str::to_owned).collect(), replacements: Vec::new() });
    }
    let items = Items::new(&inputs);
    let mut tree = DirTree::build(&items.groupable);
    let chosen = tree.choose(items.load(), room)?;
    Some(items.plan(&inputs, &chosen))
}

/// What submitting a batch costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Every path of the batch, a wildcard or a tag counting as one; the free allowance lowers `dollars`, not this.
    pub paths_billed: usize,
    /// At [`DOLLARS_PER_PATH`], after what is left of the account's [`FREE_PATHS_PER_MONTH`].
    pub dollars: f64,
}

/// The cost of submitting `paths`, given how many paths the account has already submitted this month.
pub fn cost(paths: &[String], already_billed_this_month: u64) -> Cost {
    let paths_billed = paths.len();
    let still_free = FREE_PATHS_PER_MONTH.saturating_sub(already_billed_this_month);
    let charged = (paths_billed as u64).saturating_sub(still_free);
    Cost { paths_billed, dollars: charged as f64 * DOLLARS_PER_PATH }
}

/// How many of each allowance a set of paths takes.
#[derive(Debug, Clone, Copy)]
struct Load {
    paths: usize,
    wildcards: usize,
}

impl Load {
    fn of(paths: &[&str]) -> Self {
        let wildcards = paths.iter().filter(|path| is_wildcard(path)).count();
        Self { paths: paths.len() - wildcards, wildcards }
    }

    fn fits(self, room: Room) -> bool {
        self.paths <= room.paths && self.wildcards <= room.wildcards
    }
}

/// Only paths (starting with `/`) can be grouped under a directory; a tag stays a single item.
fn is_groupable(item: &str) -> bool {
    item.starts_with('/')
}

fn is_wildcard(item: &str) -> bool {
    is_groupable(item) && item.ends_with('*')
}

/// A path that a directory wildcard may replace.
#[derive(Debug, Clone, Copy)]
struct Groupable<'a> {
    path: &'a str,
    wildcard: bool,
}

impl<'a> Groupable<'a> {
    /// What the path covers: itself, or for a wildcard everything starting with this.
    fn prefix(self) -> &'a str {
        if self.wildcard { &self.path[..self.path.len() - 1] } else { self.path }
    }

    /// The deepest directory whose wildcard covers the path. A query string is no directory even if it holds a `/`.
    fn dir(self) -> &'a str {
        let prefix = self.prefix();
        let before_query = prefix.split('?').next().unwrap_or(prefix);
        &prefix[..=before_query.rfind('/').unwrap_or(0)]
    }
}

/// The distinct inputs, minus every path a wildcard among them already covers.
struct Items<'a> {
    tags: Vec<&'a str>,
    /// Sorted by prefix.
    groupable: Vec<Groupable<'a>>,
}

impl<'a> Items<'a> {
    fn new(inputs: &[&'a str]) -> Self {
        let (groupable, tags): (Vec<&str>, Vec<&str>) = inputs.iter().copied().partition(|item| is_groupable(item));
        let mut groupable: Vec<Groupable> =
            groupable.into_iter().map(|path| Groupable { path, wildcard: path.ends_with('*') }).collect();
        // A wildcard sorts before an exact path with the same prefix (`/a*` before `/a`), so it is kept and covers it.
        groupable.sort_unstable_by(|a, b| a.prefix().cmp(b.prefix()).then(b.wildcard.cmp(&a.wildcard)));
        // In prefix order, whatever a kept wildcard covers follows it directly, so the last kept one is the only
        // one that can cover the next path.
        let mut covering: Option<&str> = None;
        groupable.retain(|item| {
            if covering.is_some_and(|prefix| item.prefix().starts_with(prefix)) {
                return false;
            }
            if item.wildcard {
                covering = Some(item.prefix());
            }
            true
        });
        Self { tags, groupable }
    }

    fn load(&self) -> Load {
        let wildcards = self.groupable.iter().filter(|item| item.wildcard).count();
        Load { paths: self.tags.len() + self.groupable.len() - wildcards, wildcards }
    }

    /// `chosen`: the directories to replace, sorted, none inside another.
    fn plan(&self, inputs: &[&str], chosen: &[&str]) -> Plan {
        let kept = self.groupable.iter().map(|item| item.path).filter(|path| !is_inside(chosen, path));
        let mut paths: Vec<String> = self.tags.iter().copied().chain(kept).map(str::to_owned).collect();
        paths.extend(chosen.iter().map(|dir| format!("{dir}*")));
        paths.sort_unstable();
        let replacements = chosen
            .iter()
            .map(|dir| Replacement { wildcard: format!("{dir}*"), replaced: count_starting_with(inputs, dir) })
            .collect();
        Plan { paths, replacements }
    }
}

/// Whether one of `dirs` (sorted, none inside another) holds `path`. Any directory sorting between a holder and
/// the path would lie inside the holder, so only the greatest one not after the path can hold it.
fn is_inside(dirs: &[&str], path: &str) -> bool {
    let after = dirs.partition_point(|dir| *dir <= path);
    dirs[..after].last().is_some_and(|dir| path.starts_with(dir))
}

fn count_starting_with(sorted: &[&str], prefix: &str) -> usize {
    let start = sorted.partition_point(|item| *item < prefix);
    sorted[start..].iter().take_while(|item| item.starts_with(prefix)).count()
}

const ROOT: usize = 0;

/// Every directory holding a path, with its ancestors: the candidates for a wildcard.
struct DirTree<'a> {
    /// In preorder, which is sorted order of `dir`, so a subtree is the range `i..nodes[i].end`.
    nodes: Vec<Node<'a>>,
}

#[derive(Debug)]
struct Node<'a> {
    /// Ends with `/`.
    dir: &'a str,
    parent: Option<usize>,
    end: usize,
    depth: usize,
    /// Paths in this subtree.
    held: Load,
    /// Of those, the ones not replaced yet; a chosen directory counts as one wildcard.
    left: Load,
    chosen: bool,
}

impl<'a> Node<'a> {
    fn new(dir: &'a str, parent: Option<usize>, depth: usize) -> Self {
        let none = Load { paths: 0, wildcards: 0 };
        Self { dir, parent, end: 0, depth, held: none, left: none, chosen: false }
    }

    /// Whether its wildcard would stand in for anything: otherwise it only widens.
    fn worth_a_wildcard(&self) -> bool {
        self.held.paths > 0 || self.held.wildcards > 1
    }
}

impl<'a> DirTree<'a> {
    fn build(groupable: &[Groupable<'a>]) -> Self {
        let mut by_dir: Vec<Groupable> = groupable.to_vec();
        by_dir.sort_unstable_by_key(|item| item.dir());
        let mut tree = Self { nodes: vec![Node::new("/", None, 0)] };
        // The previous directory's ancestors below the root, outermost first.
        let mut open: Vec<usize> = Vec::new();
        for item in by_dir {
            let node = tree.node_for(&mut open, item.dir());
            let held = &mut tree.nodes[node].held;
            if item.wildcard {
                held.wildcards += 1;
            } else {
                held.paths += 1;
            }
        }
        tree.sum_subtrees();
        tree
    }

    /// Directories arrive sorted, so the ones missing for `dir` come after every node so far: preorder holds.
    fn node_for(&mut self, open: &mut Vec<usize>, dir: &'a str) -> usize {
        while open.last().is_some_and(|&node| !dir.starts_with(self.nodes[node].dir)) {
            open.pop();
        }
        let mut leaf = open.last().copied().unwrap_or(ROOT);
        let known = self.nodes[leaf].dir.len();
        for (offset, _) in dir[known..].match_indices('/') {
            let depth = self.nodes[leaf].depth + 1;
            self.nodes.push(Node::new(&dir[..=known + offset], Some(leaf), depth));
            leaf = self.nodes.len() - 1;
            open.push(leaf);
        }
        leaf
    }

    /// Totals each subtree, with nothing replaced yet.
    fn sum_subtrees(&mut self) {
        for i in (0..self.nodes.len()).rev() {
            let node = &mut self.nodes[i];
            node.end = node.end.max(i + 1);
            node.left = node.held;
            let (end, held) = (node.end, node.held);
            if let Some(parent) = node.parent {
                let parent = &mut self.nodes[parent];
                parent.end = parent.end.max(end);
                parent.held.paths += held.paths;
                parent.held.wildcards += held.wildcards;
            }
        }
    }

    /// The directories to replace by wildcards, sorted; `None` if no choice makes `load` fit.
    fn choose(&mut self, mut load: Load, room: Room) -> Option<Vec<&'a str>> {
        while !load.fits(room) {
            let best = self.best(Need::of(load, room))?;
            load = self.replace(best, load);
        }
        let chosen: Vec<usize> = self.uncovered().filter(|&i| self.nodes[i].chosen).collect();
        Some(self.tighten(chosen, load, room).into_iter().map(|i| self.nodes[i].dir).collect())
    }

    /// Nodes not inside a chosen directory (a chosen one included), in sorted order.
    fn uncovered(&self) -> impl Iterator<Item = usize> + '_ {
        let mut next = ROOT;
        std::iter::from_fn(move || {
            let i = next;
            let node = self.nodes.get(i)?;
            next = if node.chosen { node.end } else { i + 1 };
            Some(i)
        })
    }

    fn best(&self, need: Need) -> Option<usize> {
        self.uncovered()
            .filter(|&i| i != ROOT)
            // The first of equals, the smallest directory, wins: the choice never depends on input order.
            .filter_map(|i| need.rank(&self.nodes[i]).map(|rank| (rank, Reverse(i))))
            .max()
            .map(|(_, Reverse(i))| i)
            .or_else(|| need.rank(&self.nodes[ROOT]).map(|_| ROOT))
    }

    fn replace(&mut self, i: usize, load: Load) -> Load {
        let Load { paths: removed, wildcards: absorbed } = self.nodes[i].left;
        let mut ancestor = self.nodes[i].parent;
        while let Some(a) = ancestor {
            let left = &mut self.nodes[a].left;
            left.paths -= removed;
            left.wildcards = left.wildcards - absorbed + 1;
            ancestor = self.nodes[a].parent;
        }
        let node = &mut self.nodes[i];
        (node.left, node.chosen) = (Load { paths: 0, wildcards: 1 }, true);
        Load { paths: load.paths - removed, wildcards: load.wildcards - absorbed + 1 }
    }

    /// A directory chosen early may be needed only in part, or not at all, once later ones removed more than was
    /// left to remove. So each chosen directory whose paths fit back in is dropped, and then each moves down to the
    /// subdirectory that removes the most while the plan, with the rest of the directory's paths back in, still fits.
    fn tighten(&self, chosen: Vec<usize>, mut load: Load, room: Room) -> Vec<usize> {
        let mut needed = Vec::with_capacity(chosen.len());
        for dir in chosen {
            let without = self.narrowed(load, dir, None);
            if without.fits(room) {
                load = without;
            } else {
                needed.push(dir);
            }
        }
        for dir in &mut needed {
            while let Some((sub, narrowed)) = self
                .subdirectories(*dir)
                .filter(|&sub| self.nodes[sub].worth_a_wildcard())
                .map(|sub| (sub, self.narrowed(load, *dir, Some(sub))))
                .filter(|(_, narrowed)| narrowed.fits(room))
                .max_by_key(|&(sub, _)| (self.nodes[sub].held.paths, Reverse(sub)))
            {
                (*dir, load) = (sub, narrowed);
            }
        }
        needed
    }

    fn subdirectories(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.nodes[i].end;
        let mut next = i + 1;
        std::iter::from_fn(move || {
            let sub = next;
            next = self.nodes.get(sub).filter(|_| sub < end)?.end;
            Some(sub)
        })
    }

    /// `load` with the wildcard of `sub`, or none, instead of that of `dir`, which holds `sub`.
    fn narrowed(&self, load: Load, dir: usize, sub: Option<usize>) -> Load {
        let outer = self.nodes[dir].held;
        let inner = sub.map_or(Load { paths: 0, wildcards: 1 }, |sub| self.nodes[sub].held);
        Load {
            paths: load.paths + outer.paths - inner.paths,
            wildcards: load.wildcards + outer.wildcards - inner.wildcards,
        }
    }
}

/// How far a load is from fitting its room.
#[derive(Debug, Clone, Copy)]
struct Need {
    paths: usize,
    wildcards: usize,
    spare_wildcards: usize,
}

/// Compared lexicographically, greater is better.
type Rank = (usize, usize, usize);

impl Need {
    fn of(load: Load, room: Room) -> Self {
        Self {
            paths: load.paths.saturating_sub(room.paths),
            wildcards: load.wildcards.saturating_sub(room.wildcards),
            spare_wildcards: room.wildcards.saturating_sub(load.wildcards),
        }
    }

    /// How well replacing everything under `node` by its directory wildcard serves this need; `None` if it does not
    /// help or the wildcard does not fit. Amounts count only up to what is needed, so that a directory just big
    /// enough ties with a bigger one and the deeper one wins.
    fn rank(self, node: &Node) -> Option<Rank> {
        let removed = node.left.paths.min(self.paths);
        let freed = node.left.wildcards.saturating_sub(1);
        if self.wildcards > 0 {
            return (freed > 0).then_some((freed.min(self.wildcards), removed, node.depth));
        }
        let fits = node.left.wildcards > 0 || self.spare_wildcards > 0;
        // Merging wildcards without removing paths only helps by making room for a new wildcard.
        let helps = removed > 0 || (freed > 0 && self.spare_wildcards == 0);
        (fits && helps).then_some((removed, node.depth, node.left.wildcards))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|path| (*path).to_owned()).collect()
    }

    fn room(paths: usize, wildcards: usize) -> Room {
        Room { paths, wildcards }
    }

    #[test]
    fn input_that_fits_comes_back_deduplicated_and_sorted() {
        let plan = coalesce(&strings(&["/b", "/a", "/b", "#tag", "/a/*"]), room(3, 1)).unwrap();
        assert_eq!(plan.paths, ["#tag", "/a", "/a/*", "/b"]);
        assert!(plan.replacements.is_empty());
    }

    #[test]
    fn replaces_the_deepest_directory_that_is_enough_not_the_root() {
        let mut paths: Vec<String> = (0..3_000).map(|n| format!("/a/x/{n}.html")).collect();
        paths.extend((0..10).map(|n| format!("/b/{n}.html")));
        let plan = coalesce(&paths, room(2_000, 1)).unwrap();
        assert_eq!(plan.replacements, [Replacement { wildcard: "/a/x/*".into(), replaced: 3_000 }]);
        assert_eq!(plan.paths.len(), 11);
        assert!(plan.paths.contains(&"/a/x/*".to_owned()) && plan.paths.contains(&"/b/9.html".to_owned()));
    }

    #[test]
    fn prefers_the_directory_removing_the_most_paths_per_wildcard() {
        // Two wildcards could clear /a/x/ and /a/y/ separately, but /a/ alone removes enough with one.
        let mut paths: Vec<String> = (0..600).map(|n| format!("/a/x/{n}")).collect();
        paths.extend((0..600).map(|n| format!("/a/y/{n}")));
        paths.extend((0..100).map(|n| format!("/b/{n}")));
        let plan = coalesce(&paths, room(400, 2)).unwrap();
        let wildcards: Vec<&str> = plan.replacements.iter().map(|r| r.wildcard.as_str()).collect();
        assert_eq!(wildcards, ["/a/*"]);
    }

    #[test]
    fn narrows_a_wildcard_that_later_choices_made_too_wide() {
        // /a/ (9 paths) is taken first, then /b/ removes more than was still needed: /a/x/ is enough.
        let mut paths: Vec<String> = (0..8).map(|n| format!("/a/x/{n}")).collect();
        paths.push("/a/f".into());
        paths.extend((0..5).map(|n| format!("/b/{n}")));
        let plan = coalesce(&paths, room(4, 2)).unwrap();
        assert_eq!(plan.paths, ["/a/f", "/a/x/*", "/b/*"]);
    }

    #[test]
    fn drops_a_wildcard_that_later_choices_made_unneeded() {
        // With no wildcard to spare, widening /b/w* to /b/ comes first; merging /a/ then frees one for /c/, which
        // removes enough alone, so /b/'s paths go back in.
        let mut paths = strings(&["/a/x/*", "/a/y/*", "/a/f", "/b/w*", "/b/1", "/b/2", "/b/3"]);
        paths.extend((0..10).map(|n| format!("/c/{n}")));
        let plan = coalesce(&paths, room(4, 3)).unwrap();
        assert_eq!(plan.paths, ["/a/*", "/b/1", "/b/2", "/b/3", "/b/w*", "/c/*"]);
    }

    #[test]
    fn never_creates_a_wildcard_that_crosses_a_segment() {
        let mut paths: Vec<String> = (0..5).map(|n| format!("/a/b{n}")).collect();
        paths.push("/a/bc/x".into());
        let plan = coalesce(&paths, room(1, 1)).unwrap();
        assert_eq!(plan.paths, ["/a/*"]);
    }

    #[test]
    fn groups_query_strings_by_the_directory_of_their_path() {
        let paths = strings(&["/img/a.jpg?w=1", "/img/a.jpg?w=2", "/img/b.jpg?next=/x/y", "/index.html"]);
        let plan = coalesce(&paths, room(1, 1)).unwrap();
        assert_eq!(plan.paths, ["/img/*", "/index.html"]);
        assert_eq!(plan.replacements, [Replacement { wildcard: "/img/*".into(), replaced: 3 }]);
    }

    #[test]
    fn tags_are_never_replaced() {
        let paths = strings(&["#a", "#b", "/x/1", "/x/2"]);
        assert_eq!(coalesce(&paths, room(2, 1)).unwrap().paths, ["#a", "#b", "/x/*"]);
        assert_eq!(coalesce(&paths, room(1, 15)), None);
    }

    #[test]
    fn escalates_to_the_root_only_when_nothing_else_fits() {
        let paths = strings(&["/a", "/b", "/c/1", "/c/2"]);
        let plan = coalesce(&paths, room(2, 1)).unwrap();
        assert_eq!(plan.paths, ["/a", "/b", "/c/*"]);
        let plan = coalesce(&paths, room(1, 1)).unwrap();
        assert_eq!(plan.paths, ["/*"]);
        assert_eq!(plan.replacements, [Replacement { wildcard: "/*".into(), replaced: 4 }]);
    }

    #[test]
    fn merges_wildcards_when_there_are_too_many() {
        let paths = strings(&["/a/x/1/*", "/a/x/2/*", "/a/y*", "/b/*", "/a/x/3"]);
        let plan = coalesce(&paths, room(10, 3)).unwrap();
        assert_eq!(plan.paths, ["/a/x/*", "/a/y*", "/b/*"]);
        assert_eq!(plan.replacements, [Replacement { wildcard: "/a/x/*".into(), replaced: 3 }]);
    }

    #[test]
    fn merging_wildcards_makes_room_for_a_new_one() {
        // /a/ has no paths left to remove, but merging its two wildcards frees one for /b/.
        let paths = strings(&["/a/x/*", "/a/y/*", "/b/1", "/b/2", "/b/3"]);
        let plan = coalesce(&paths, room(1, 2)).unwrap();
        assert_eq!(plan.paths, ["/a/*", "/b/*"]);
    }

    #[test]
    fn paths_an_input_wildcard_covers_need_no_new_wildcard() {
        let paths = strings(&["/a/*", "/a/1", "/a/2", "/b"]);
        let plan = coalesce(&paths, room(1, 1)).unwrap();
        assert_eq!(plan.paths, ["/a/*", "/b"]);
        assert!(plan.replacements.is_empty());
    }

    #[test]
    fn without_wildcard_room_only_a_set_that_fits_is_possible() {
        assert_eq!(coalesce(&strings(&["/a/1", "/a/2"]), room(1, 0)), None);
        assert_eq!(coalesce(&strings(&["/a/*"]), room(5, 0)), None);
        assert!(coalesce(&strings(&["/a/1", "/a/2"]), room(2, 0)).is_some());
    }

    #[test]
    fn odd_paths_do_not_panic() {
        let long = format!("/{}", "a/".repeat(1_999));
        let odd = strings(&["/", "//", "///*", "/?*", "/a?b/c", "", "*", "x", "/é/ü", &long, &format!("{long}*")]);
        for r in [room(0, 0), room(0, 1), room(2, 1), room(100, 15)] {
            let _ = coalesce(&odd, r);
        }
        assert_eq!(coalesce(&strings(&["/", "//", "///"]), room(0, 1)).unwrap().paths, ["/*"]);
        assert_eq!(coalesce(&strings(&["//a", "//b", "/c"]), room(1, 1)).unwrap().paths, ["//*", "/c"]);
    }

    #[test]
    fn cost_counts_every_path_once_and_charges_past_the_free_allowance() {
        let batch = strings(&["/a/*", "/b", "#tag"]);
        assert_eq!(cost(&batch, 0), Cost { paths_billed: 3, dollars: 0.0 });
        assert_eq!(cost(&batch, 998).dollars, DOLLARS_PER_PATH);
        assert_eq!(cost(&batch, 5_000).dollars, 3.0 * DOLLARS_PER_PATH);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        /// Few names, so paths share directories and prefixes (`/a`, `/ab`, `/a/`), query strings with a `/`,
        /// wildcards at any depth, some tags, a few paths at the top (only `/*` covers them), and big directories.
        fn item() -> impl Strategy<Value = String> {
            let query = prop::option::of("\\?[a/]{0,2}").prop_map(Option::unwrap_or_default);
            let star = prop::bool::weighted(0.15).prop_map(|wildcard| if wildcard { "*" } else { "" });
            let scattered = ("/[ab](/[ab.]{0,2}){1,3}", query.clone(), star.clone())
                .prop_map(|(path, query, star)| format!("{path}{query}{star}"));
            let top = ("/[ab.]{0,2}", query, star).prop_map(|(path, query, star)| format!("{path}{query}{star}"));
            let clustered = ("/[xy](/[pq])?/", "[a-z]{1,2}").prop_map(|(dir, file)| format!("{dir}{file}"));
            prop_oneof![6 => scattered, 1 => top, 6 => clustered, 1 => "#[a-c]"]
        }

        /// Room for up to all the paths, so that most sets need some, but not all, replaced.
        fn case() -> impl Strategy<Value = (Vec<String>, Room)> {
            prop::collection::vec(item(), 0..80).prop_flat_map(|paths| {
                let len = paths.len();
                (Just(paths), 0..=len, 0..6usize)
                    .prop_map(|(paths, paths_room, wildcards)| (paths, Room { paths: paths_room, wildcards }))
            })
        }

        fn distinct(paths: &[String]) -> Vec<String> {
            let mut paths = paths.to_vec();
            paths.sort();
            paths.dedup();
            paths
        }

        /// Rule 1, written independently of the planner: equal, or a wildcard whose prefix starts the input's.
        fn covers(output: &str, input: &str) -> bool {
            match output.strip_suffix('*').filter(|_| output.starts_with('/')) {
                Some(prefix) => input.strip_suffix('*').unwrap_or(input).starts_with(prefix),
                None => output == input,
            }
        }

        fn load(paths: &[String]) -> (usize, usize) {
            let wildcards = paths.iter().filter(|p| p.starts_with('/') && p.ends_with('*')).count();
            (paths.len() - wildcards, wildcards)
        }

        fn fits(paths: &[String], room: Room) -> bool {
            let (exact, wildcards) = load(paths);
            exact <= room.paths && wildcards <= room.wildcards
        }

        /// The distinct inputs no other input wildcard covers, by brute force.
        fn minimal(paths: &[String]) -> Vec<String> {
            let paths = distinct(paths);
            paths
                .iter()
                .filter(|p| !paths.iter().any(|w| w != *p && w.starts_with('/') && w.ends_with('*') && covers(w, p)))
                .cloned()
                .collect()
        }

        fn created(plan: &Plan, inputs: &[String]) -> Vec<String> {
            plan.paths.iter().filter(|p| !inputs.contains(p)).cloned().collect()
        }

        /// Whether some set of wildcards other than `/*` makes the input fit. Any such wildcard lies inside a
        /// top-level directory (`/a/`), and taking that directory instead removes at least as much, so it is
        /// enough to try sets of top-level directories: all that hold a wildcard (they cost none), then as many of
        /// the others as wildcard room allows, biggest first.
        fn fits_without_root(paths: &[String], room: Room) -> bool {
            let minimal = minimal(paths);
            let (mut exact, mut wildcards) = (0, 0);
            let mut top_level: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
            for item in &minimal {
                let is_wildcard = item.starts_with('/') && item.ends_with('*');
                let prefix = item.strip_suffix('*').filter(|_| is_wildcard).unwrap_or(item);
                let path = prefix.split('?').next().unwrap_or(prefix);
                match path.get(1..).and_then(|rest| rest.find('/')).filter(|_| item.starts_with('/')) {
                    Some(slash) => {
                        let counts = top_level.entry(&prefix[..slash + 2]).or_default();
                        if is_wildcard { counts.1 += 1 } else { counts.0 += 1 }
                    }
                    None if is_wildcard => wildcards += 1,
                    None => exact += 1,
                }
            }
            let mut without_wildcards = Vec::new();
            for (dir_exact, dir_wildcards) in top_level.into_values() {
                if dir_wildcards > 0 {
                    wildcards += 1;
                } else {
                    without_wildcards.push(dir_exact);
                }
            }
            without_wildcards.sort_unstable_by(|a, b| b.cmp(a));
            let replaced: usize = without_wildcards.iter().take(room.wildcards.saturating_sub(wildcards)).sum();
            exact += without_wildcards.iter().sum::<usize>() - replaced;
            wildcards <= room.wildcards && exact <= room.paths
        }

        /// The directory one level below `dir` that holds `path`, if `path` is not directly in `dir`.
        fn subdirectory<'a>(dir: &str, path: &'a str) -> Option<&'a str> {
            let before_query = path.strip_suffix('*').unwrap_or(path).split('?').next().unwrap_or(path);
            let slash = before_query.get(dir.len()..)?.find('/')?;
            Some(&path[..dir.len() + slash + 1])
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            /// Rule 1.
            #[test]
            fn every_input_is_covered((paths, room) in case()) {
                if let Some(plan) = coalesce(&paths, room) {
                    for input in &paths {
                        prop_assert!(plan.paths.iter().any(|o| covers(o, input)), "{} lost in {:?}", input, plan.paths);
                    }
                }
            }

            /// Rule 2.
            #[test]
            fn plan_fits_the_room((paths, room) in case()) {
                if let Some(plan) = coalesce(&paths, room) {
                    prop_assert!(fits(&plan.paths, room), "{:?} does not fit {:?}", plan.paths, room);
                }
            }

            /// Rules 3 and 5: new items are directory wildcards, each reported once with what it covers; nothing
            /// else is invented, so tags pass through.
            #[test]
            fn only_directory_wildcards_are_created((paths, room) in case()) {
                let inputs = distinct(&paths);
                if let Some(plan) = coalesce(&paths, room) {
                    let created = created(&plan, &inputs);
                    let reported: Vec<String> = plan.replacements.iter().map(|r| r.wildcard.clone()).collect();
                    prop_assert_eq!(&created, &reported);
                    for replacement in &plan.replacements {
                        prop_assert!(replacement.wildcard.ends_with("/*"), "{} crosses a segment", replacement.wildcard);
                        let covered = inputs.iter().filter(|input| covers(&replacement.wildcard, input)).count();
                        prop_assert_eq!(replacement.replaced, covered);
                    }
                    prop_assert!(plan.paths.windows(2).all(|w| w[0] < w[1]), "not sorted and distinct");
                }
            }

            /// Rule 4: a set that fits is left alone.
            #[test]
            fn input_that_fits_is_unchanged((paths, room) in case()) {
                let inputs = distinct(&paths);
                if fits(&inputs, room) {
                    prop_assert_eq!(coalesce(&paths, room), Some(Plan { paths: inputs, replacements: Vec::new() }));
                }
            }

            /// Rule 4: no wildcard is wider, or more numerous, than needed. Undoing any one replacement (bringing
            /// back what it covers) no longer fits, and `/*` is created only when nothing narrower fits.
            #[test]
            fn every_replacement_is_needed((paths, room) in case()) {
                let Some(plan) = coalesce(&paths, room) else { return Ok(()) };
                let minimal = minimal(&paths);
                for replacement in &plan.replacements {
                    let mut undone: Vec<String> =
                        plan.paths.iter().filter(|p| **p != replacement.wildcard).cloned().collect();
                    undone.extend(minimal.iter().filter(|input| covers(&replacement.wildcard, input)).cloned());
                    prop_assert!(!fits(&undone, room), "{} is not needed in {:?}", replacement.wildcard, plan.paths);
                }
                let root_created = plan.replacements.iter().any(|r| r.wildcard == "/*");
                prop_assert_eq!(root_created, !fits_without_root(&paths, room), "{:?}", plan.paths);
            }

            /// Rule 4: no created wildcard could be replaced by the wildcard of one of its subdirectories, the
            /// rest of its paths going back in, and still fit.
            #[test]
            fn no_subdirectory_would_do((paths, room) in case()) {
                let Some(plan) = coalesce(&paths, room) else { return Ok(()) };
                let minimal = minimal(&paths);
                for replacement in &plan.replacements {
                    let dir = &replacement.wildcard[..replacement.wildcard.len() - 1];
                    let under: Vec<&String> = minimal.iter().filter(|p| covers(&replacement.wildcard, p)).collect();
                    for subdir in under.iter().filter_map(|p| subdirectory(dir, p)) {
                        let narrower = format!("{subdir}*");
                        let mut instead: Vec<String> =
                            plan.paths.iter().filter(|p| **p != replacement.wildcard).cloned().collect();
                        instead.extend(under.iter().filter(|p| !covers(&narrower, p)).map(|p| (*p).clone()));
                        instead.push(narrower);
                        prop_assert!(!fits(&distinct(&instead), room), "{} would do for {}", subdir, replacement.wildcard);
                    }
                }
            }

            /// The planner fails only when nothing could fit: too many tags, or no wildcard room for a set that
            /// does not fit without one.
            #[test]
            fn gives_up_only_when_nothing_fits((paths, room) in case()) {
                let minimal = minimal(&paths);
                let tags = minimal.iter().filter(|p| !p.starts_with('/')).count();
                let possible = tags <= room.paths && (room.wildcards > 0 || fits(&minimal, room));
                prop_assert_eq!(coalesce(&paths, room).is_some(), possible);
            }

            /// Rule 6: the order of the input does not matter.
            #[test]
            fn is_deterministic(
                (paths, shuffled, room) in case().prop_flat_map(|(paths, room)| {
                    (Just(paths.clone()), Just(paths).prop_shuffle(), Just(room))
                })
            ) {
                prop_assert_eq!(coalesce(&paths, room), coalesce(&shuffled, room));
            }

            /// Rule 6: any strings at all, and any room.
            #[test]
            fn never_panics(paths in prop::collection::vec("\\PC{0,12}", 0..40), room_paths in 0..20usize, wildcards in 0..3usize) {
                let _ = coalesce(&paths, Room { paths: room_paths, wildcards });
                let _ = coalesce(&paths, Room { paths: usize::MAX, wildcards: usize::MAX });
            }

            /// Billing one batch after another is billing both together.
            #[test]
            fn cost_is_additive(a in 0..1_500usize, b in 0..1_500usize, before in 0..3_000u64) {
                let (first, second) = (vec![String::new(); a], vec![String::new(); b]);
                let together = cost(&[first.clone(), second.clone()].concat(), before);
                let apart = cost(&first, before).dollars + cost(&second, before + a as u64).dollars;
                prop_assert_eq!(together.paths_billed, a + b);
                prop_assert!((together.dollars - apart).abs() < 1e-9);
                prop_assert!(together.dollars <= (a + b) as f64 * DOLLARS_PER_PATH + 1e-9);
                if before + (a + b) as u64 <= FREE_PATHS_PER_MONTH {
                    prop_assert_eq!(together.dollars, 0.0);
                }
            }
        }
    }
}
