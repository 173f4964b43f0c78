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
mod tree;

use tree::{DirTree, ROOT};

use crate::model::path::{count_wildcards, is_wildcard};

pub use self::cost::{MonthFit, collapse_for_cost, fit_month_budget, month_share};

/// Invalidation paths each month that CloudFront does not charge for, across all of an account's distributions
/// (aws-facts.md A2, quoted from AWS's "Paying for file invalidation" page).
pub const FREE_PATHS_PER_MONTH: u64 = 1_000;

/// US dollars for each path beyond the free ones. aws-facts.md A2 has it from secondary sources only, unchecked
/// against aws.amazon.com/cloudfront/pricing: an estimate for reports, not a bill.
pub const DOLLARS_PER_PATH: f64 = 0.005;

/// What is left of an account's free paths in a month of `billed` paths.
pub fn free_paths_left(billed: u64) -> u64 {
    FREE_PATHS_PER_MONTH.saturating_sub(billed)
}

/// What an account's month of `billed` paths costs beyond its free paths, in US dollars (an estimate, as
/// [`DOLLARS_PER_PATH`] is).
pub fn month_dollars(billed: u64) -> f64 {
    billed.saturating_sub(FREE_PATHS_PER_MONTH) as f64 * DOLLARS_PER_PATH
}

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

#[cfg(test)]
mod tests;
