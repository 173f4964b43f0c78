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

mod cost;

use std::cmp::Reverse;

use crate::model::path::{count_wildcards, is_wildcard};

pub use self::cost::{MonthFit, collapse_for_cost, fit_month_budget, month_share};

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
        let wildcards = count_wildcards(paths);
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
            groupable.into_iter().map(|path| Groupable { path, wildcard: is_wildcard(path) }).collect();
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
mod tests;
