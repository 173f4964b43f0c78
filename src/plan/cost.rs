//! Coalescing for money rather than for quota room: `--coalesce cost` and `--monthly-path-budget`.
//!
//! CloudFront bills a directory wildcard as one path however many files it clears (aws-facts.md A2), so replacing
//! a directory's many changed files by `dir/*` cuts the bill at the price of cache misses on the files in it that
//! did not change. The cost policy does so only where the saving is worth it; the monthly budget does so as much
//! as it must to stay under the cap.

use super::{DirTree, Items, Plan, ROOT, Room, coalesce};

/// Replaces each directory whose wildcard would save at least `min_saving` billed paths (its distinct paths and
/// wildcards, less the one wildcard) by that wildcard, deepest directories first, while the batch holds at most
/// `wildcard_room` wildcards. A parent is judged on what its replaced subdirectories left: three subdirectory
/// wildcards and ten files under `/a/` make `/a/*` save twelve. `/*` is never chosen: clearing a whole
/// distribution is the overload planner's last resort, not a saving. `None` when no directory saves enough.
pub fn collapse_for_cost(paths: &[String], min_saving: usize, wildcard_room: usize) -> Option<Plan> {
    let mut inputs: Vec<&str> = paths.iter().map(String::as_str).collect();
    inputs.sort_unstable();
    inputs.dedup();
    let items = Items::new(&inputs);
    let mut tree = DirTree::build(&items.groupable);
    let mut load = items.load();
    // Preorder puts every directory after its parent, so walking it backwards sees subdirectories first.
    for i in (ROOT + 1..tree.nodes.len()).rev() {
        let left = tree.nodes[i].left;
        let saving = (left.paths + left.wildcards).saturating_sub(1);
        let wildcards_after = load.wildcards + 1 - left.wildcards;
        if saving >= min_saving.max(1) && wildcards_after <= wildcard_room {
            load = tree.replace(i, load);
        }
    }
    let chosen: Vec<&str> = tree.uncovered().filter(|&i| tree.nodes[i].chosen).map(|i| tree.nodes[i].dir).collect();
    (!chosen.is_empty()).then(|| items.plan(&inputs, &chosen))
}

/// What a batch may be under a monthly path budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonthFit {
    /// Its paths fit the batch's share of what is left.
    AsIs,
    /// Replaced by directory wildcards to fit.
    Coalesced(Plan),
    /// Nothing fits: the budget is spent, or the batch holds more cache tags than is left.
    Hold,
}

/// The most of what is left of a monthly budget that one batch may spend: half, rounded up. However many batches
/// come later, each then finds room for a few wildcards, until the budget is down to its last path.
pub fn month_share(left: u64) -> u64 {
    left.div_ceil(2)
}

/// Fits a batch's `paths` (deduplicated) into its share of the `left` paths of the month's budget, coalescing into
/// at most `wildcard_room` directory wildcards when it must; if its share cannot hold it even so, all of `left`
/// may be used before the batch is held.
pub fn fit_month_budget(paths: &[String], left: u64, wildcard_room: usize) -> MonthFit {
    let billed = paths.len() as u64;
    if billed <= month_share(left) {
        return MonthFit::AsIs;
    }
    [month_share(left), left]
        .into_iter()
        .filter(|&allowed| allowed > 0)
        .find_map(|allowed| {
            let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
            let wildcards = wildcard_room.min(allowed);
            coalesce(paths, Room { paths: allowed - wildcards, wildcards })
        })
        .map_or(
            MonthFit::Hold,
            |plan| if plan.replacements.is_empty() { MonthFit::AsIs } else { MonthFit::Coalesced(plan) },
        )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::path::is_covered_by;

    fn files(dir: &str, count: usize) -> Vec<String> {
        (0..count).map(|n| format!("{dir}{n}.html")).collect()
    }

    #[test]
    fn a_directory_is_collapsed_only_when_it_saves_enough() {
        let mut paths = files("/news/", 11);
        paths.extend(files("/blog/", 10));
        let plan = collapse_for_cost(&paths, 10, 15).unwrap();
        assert_eq!(plan.paths.len(), 11, "{:?}", plan.paths);
        assert!(plan.paths.contains(&"/news/*".to_owned()));
        assert!(plan.paths.iter().filter(|p| p.starts_with("/blog/")).count() == 10, "nine saved is not enough");
        assert_eq!(collapse_for_cost(&files("/blog/", 10), 10, 15), None);
    }

    #[test]
    fn a_parent_counts_what_its_collapsed_subdirectories_left() {
        let mut paths = Vec::new();
        for sub in ["a", "b", "c"] {
            paths.extend(files(&format!("/docs/{sub}/"), 12));
        }
        paths.extend(files("/docs/", 10));
        let plan = collapse_for_cost(&paths, 10, 15).unwrap();
        assert_eq!(plan.paths, ["/docs/*"]);
        assert_eq!(collapse_for_cost(&files("/", 500), 10, 15), None, "never /*");
    }

    #[test]
    fn the_cost_policy_stays_within_the_wildcard_room() {
        let paths: Vec<String> = (0..6).flat_map(|d| files(&format!("/d{d}/"), 20)).collect();
        let plan = collapse_for_cost(&paths, 10, 2).unwrap();
        assert_eq!(crate::model::path::count_wildcards(&plan.paths), 2);
        assert_eq!(plan.paths.len(), 2 + 4 * 20);
    }

    #[test]
    fn a_month_budget_is_spent_at_most_half_at_a_time_and_then_holds() {
        let paths: Vec<String> = (0..10).flat_map(|d| files(&format!("/d{d}/"), 100)).collect();
        assert_eq!(fit_month_budget(&files("/a/", 100), 300, 13), MonthFit::AsIs);
        let MonthFit::Coalesced(plan) = fit_month_budget(&paths, 300, 13) else { panic!("1,000 paths cannot fit 300") };
        assert!(plan.paths.len() <= 150, "{}", plan.paths.len());
        assert!(paths.iter().all(|p| is_covered_by(p, &plan.paths)));
        assert_eq!(fit_month_budget(&paths, 0, 13), MonthFit::Hold);
        assert_eq!(fit_month_budget(&["#a".into(), "#b".into()], 1, 13), MonthFit::Hold);
    }

    proptest! {
        #[test]
        fn every_path_stays_covered_and_the_bill_never_grows(
            dirs in proptest::collection::vec((0usize..4, 0usize..3, 1usize..30), 1..8),
            min_saving in 1usize..15,
            wildcard_room in 0usize..15,
            left in 0u64..200,
        ) {
            let paths: Vec<String> = dirs
                .iter()
                .flat_map(|&(a, b, count)| files(&format!("/s{a}/t{b}/"), count))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if let Some(plan) = collapse_for_cost(&paths, min_saving, wildcard_room) {
                prop_assert!(paths.iter().all(|p| is_covered_by(p, &plan.paths)));
                prop_assert!(plan.paths.len() + min_saving <= paths.len());
                prop_assert!(crate::model::path::count_wildcards(&plan.paths) <= wildcard_room);
                prop_assert!(!plan.paths.contains(&"/*".to_owned()));
            }
            match fit_month_budget(&paths, left, wildcard_room) {
                MonthFit::AsIs => prop_assert!(paths.len() as u64 <= left),
                MonthFit::Coalesced(plan) => {
                    prop_assert!(plan.paths.len() as u64 <= left);
                    prop_assert!(paths.iter().all(|p| is_covered_by(p, &plan.paths)));
                }
                MonthFit::Hold => prop_assert!(left == 0 || wildcard_room == 0),
            }
        }
    }
}
