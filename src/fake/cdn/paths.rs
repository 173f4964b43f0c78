//! CloudFront's path rules, as the simulator enforces them.

use super::SimConfig;
use crate::ports::cdn::CdnError;

/// CloudFront's longest path (aws-facts.md A3).
const MAX_PATH_LEN: usize = 4_000;

pub(super) fn check_paths(config: &SimConfig, refused_fragments: &[String], paths: &[String]) -> Result<(), CdnError> {
    let refused = |path: &String| {
        refused_fragments.iter().any(|fragment| path.contains(fragment.as_str()))
            || (config.validate_paths && !valid_path(path))
    };
    if paths.iter().any(refused) || (config.validate_paths && paths.is_empty()) {
        return Err(CdnError::InvalidArgument("Your request contains one or more invalid invalidation paths.".into()));
    }
    Ok(())
}

/// CloudFront's rules (aws-facts.md A3): a leading `/` (a cache tag starts with `#`), `*` only at the end.
fn valid_path(path: &str) -> bool {
    let before_wildcard = path.strip_suffix('*').unwrap_or(path);
    (path.starts_with('/') || path.starts_with('#')) && !before_wildcard.contains('*') && path.len() <= MAX_PATH_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudfront_path_rules() {
        for good in ["/", "/a/b.html", "/img/*", "/*", "#product:1", "/a?x=1*"] {
            assert!(valid_path(good), "{good}");
        }
        for bad in ["a.html", "", "/a*b", "/*/x", &format!("/{}", "x".repeat(MAX_PATH_LEN))] {
            assert!(!valid_path(bad), "{bad}");
        }
    }
}
