//! Which of a batch's paths are requested from the edge.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::url::is_edge_path;

/// The paths of a batch that name one object each and can be requested safely (`url::edge_url`): no wildcards,
/// no cache tags; each once, in the batch's order.
pub fn plain_paths(paths: &[String]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    paths.iter().map(String::as_str).filter(|path| is_edge_path(path) && seen.insert(*path)).collect()
}

/// Up to `n` of the batch's plain paths: those with the smallest SHA-256 digests. Spread over the batch instead of
/// its first directory, and the same choice for the same paths in any order, so another worker, or a second look at
/// the batch, checks the same objects.
pub fn sample(paths: &[String], n: usize) -> Vec<&str> {
    let mut ranked: Vec<([u8; 32], &str)> =
        plain_paths(paths).into_iter().map(|path| (Sha256::digest(path.as_bytes()).into(), path)).collect();
    ranked.sort_unstable();
    ranked.into_iter().take(n).map(|(_, path)| path).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn paths(raw: &[&str]) -> Vec<String> {
        raw.iter().map(|path| (*path).to_owned()).collect()
    }

    #[test]
    fn wildcards_tags_and_unsafe_paths_are_never_sampled() {
        let batch = paths(&["/img/*", "#product-1", "/a.html", "/*", "/a.html", "//evil.com/x", "/b/../c", "/b.css"]);
        assert_eq!(plain_paths(&batch), ["/a.html", "/b.css"]);
        let mut chosen = sample(&batch, 5);
        chosen.sort_unstable();
        assert_eq!(chosen, ["/a.html", "/b.css"], "fewer plain paths than asked: all of them");
        assert!(sample(&paths(&["/img/*", "#t"]), 5).is_empty());
        assert!(sample(&batch, 0).is_empty());
    }

    proptest! {
        #[test]
        fn the_sample_is_at_most_n_distinct_plain_paths_whatever_the_order(
            raw in prop::collection::vec("/[a-c]{1,3}\\*?|#[a-c]{1,2}", 0..40),
            n in 0usize..8,
        ) {
            let batch: Vec<String> = raw.clone();
            let chosen = sample(&batch, n);
            let plain = plain_paths(&batch);
            prop_assert_eq!(chosen.len(), n.min(plain.len()));
            prop_assert!(chosen.iter().all(|path| plain.contains(path)));
            prop_assert_eq!(chosen.iter().collect::<BTreeSet<_>>().len(), chosen.len());

            let mut reversed = batch.clone();
            reversed.reverse();
            prop_assert_eq!(sample(&reversed, n), chosen.clone(), "the same choice in any order");
            prop_assert!(sample(&batch, n + 1).starts_with(&chosen), "a larger sample keeps the smaller one");
        }
    }
}
