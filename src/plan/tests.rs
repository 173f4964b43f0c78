//! The planner's examples and properties.

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
