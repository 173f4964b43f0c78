//! Whether an edge answer came from a copy cached before the invalidation: the freshness rule.
//!
//! CloudFront says where each answer came from (`X-Cache`) and how long its copy has been cached (`Age`, whole
//! seconds, rounded down). A copy that was fetched from the origin for this answer (a miss) or revalidated with it
//! (a refresh hit) is fresh. A hit is fresh when its copy is younger than the invalidation: `Age` + 1 s at most the
//! time since the invalidation was created, the second covering `Age`'s rounding. When the origin is known
//! (`--origin-url`), the answer must also carry the origin's `ETag` (compared weakly: CloudFront weakens the ETag
//! of what it compresses), or its `Last-Modified` when the origin sends no ETag.

use std::time::Duration;

use crate::ports::edge::EdgeResponse;

/// What the origin says of the object now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginVersion {
    pub status: u16,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl From<&EdgeResponse> for OriginVersion {
    fn from(response: &EdgeResponse) -> Self {
        Self { status: response.status, etag: response.etag.clone(), last_modified: response.last_modified.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Fresh,
    Stale(Staleness),
    /// The answer cannot say: a redirect, a server error, no `X-Cache`, an origin without validators.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    /// A hit on a copy cached before the invalidation was created.
    CachedBefore { age_seconds: u64 },
    /// The edge's copy is not the origin's version.
    NotTheOrigins { edge: String, origin: String },
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CachedBefore { age_seconds } => {
                write!(f, "a hit on a copy cached {age_seconds} s ago, before the invalidation")
            }
            Self::NotTheOrigins { edge, origin } => write!(f, "the edge serves {edge}, the origin {origin}"),
        }
    }
}

/// Where an answer's copy came from, by `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Hit,
    RefreshHit,
    Miss,
}

fn source(x_cache: &str) -> Option<Source> {
    let kind = x_cache.split_whitespace().next()?;
    [("hit", Source::Hit), ("refreshhit", Source::RefreshHit), ("miss", Source::Miss)]
        .into_iter()
        .find(|(name, _)| kind.eq_ignore_ascii_case(name))
        .map(|(_, source)| source)
}

/// The verdict on one answer, `since_created` after the invalidation was created, against the origin's version
/// when it is known.
pub fn judge(edge: &EdgeResponse, since_created: Duration, origin: Option<&OriginVersion>) -> Verdict {
    if (300..400).contains(&edge.status) {
        let to = edge.location.as_deref().unwrap_or("nowhere");
        return Verdict::Unknown(format!("a {} redirect to {to}, not followed", edge.status));
    }
    if edge.status >= 500 {
        return Verdict::Unknown(format!("the edge answered {}", edge.status));
    }
    let x_cache = edge.x_cache.as_deref().unwrap_or_default();
    match (source(x_cache), edge.age) {
        (None, _) => {
            return Verdict::Unknown(format!("the answer does not say where it came from (X-Cache {x_cache:?})"));
        }
        (Some(Source::Hit), None) => return Verdict::Unknown("a hit without Age".into()),
        (Some(Source::Hit), Some(age_seconds)) if Duration::from_secs(age_seconds + 1) > since_created => {
            return Verdict::Stale(Staleness::CachedBefore { age_seconds });
        }
        _ => {}
    }
    match origin {
        None => Verdict::Fresh,
        Some(origin) => against_origin(edge, origin),
    }
}

fn against_origin(edge: &EdgeResponse, origin: &OriginVersion) -> Verdict {
    if edge.status != origin.status {
        return Verdict::Stale(Staleness::NotTheOrigins {
            edge: format!("status {}", edge.status),
            origin: format!("status {}", origin.status),
        });
    }
    if !(200..300).contains(&origin.status) {
        return Verdict::Fresh;
    }
    let (edge_value, origin_value, name) = match (&origin.etag, &origin.last_modified) {
        (Some(etag), _) => (edge.etag.as_deref().map(strong_part), strong_part(etag), "ETag"),
        (None, Some(modified)) => (edge.last_modified.as_deref(), modified.as_str(), "Last-Modified"),
        (None, None) => return Verdict::Unknown("the origin sends neither ETag nor Last-Modified".into()),
    };
    if edge_value == Some(origin_value) {
        return Verdict::Fresh;
    }
    Verdict::Stale(Staleness::NotTheOrigins {
        edge: format!("{name} {}", edge_value.unwrap_or("(none)")),
        origin: format!("{name} {origin_value}"),
    })
}

/// An ETag without its weak marker: RFC 9110's weak comparison.
fn strong_part(etag: &str) -> &str {
    etag.strip_prefix("W/").unwrap_or(etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn answer(x_cache: &str, age: Option<u64>) -> EdgeResponse {
        EdgeResponse {
            status: 200,
            x_cache: Some(x_cache.into()),
            age,
            etag: Some("\"v2\"".into()),
            last_modified: Some("Wed, 02 Dec 2026 10:00:00 GMT".into()),
            ..EdgeResponse::default()
        }
    }

    fn origin(etag: Option<&str>, last_modified: Option<&str>) -> OriginVersion {
        OriginVersion { status: 200, etag: etag.map(Into::into), last_modified: last_modified.map(Into::into) }
    }

    #[test]
    fn misses_and_refresh_hits_are_fresh_hits_by_their_age() {
        assert_eq!(judge(&answer("Miss from cloudfront", None), SECOND, None), Verdict::Fresh);
        assert_eq!(judge(&answer("RefreshHit from cloudfront", Some(900)), SECOND, None), Verdict::Fresh);
        assert_eq!(judge(&answer("Hit from cloudfront", Some(9)), 10 * SECOND, None), Verdict::Fresh);
        assert_eq!(
            judge(&answer("Hit from cloudfront", Some(10)), 10 * SECOND + SECOND / 2, None),
            Verdict::Stale(Staleness::CachedBefore { age_seconds: 10 }),
            "Age 10 may be a copy cached 10.9 s ago"
        );
        assert_eq!(
            judge(&answer("hit FROM CloudFront", Some(3_600)), 30 * SECOND, None),
            Verdict::Stale(Staleness::CachedBefore { age_seconds: 3_600 })
        );
    }

    #[test]
    fn answers_that_cannot_say_are_unknown() {
        let mut redirect = answer("Redirect from cloudfront", None);
        (redirect.status, redirect.location) = (301, Some("https://evil.com/".into()));
        assert_eq!(
            judge(&redirect, SECOND, None),
            Verdict::Unknown("a 301 redirect to https://evil.com/, not followed".into())
        );
        let mut failed = answer("Error from cloudfront", None);
        failed.status = 502;
        assert!(matches!(judge(&failed, SECOND, None), Verdict::Unknown(_)));
        assert!(matches!(judge(&answer("Error from cloudfront", None), SECOND, None), Verdict::Unknown(_)));
        let no_header = EdgeResponse { status: 200, ..EdgeResponse::default() };
        assert!(matches!(judge(&no_header, SECOND, None), Verdict::Unknown(_)));
        assert_eq!(
            judge(&answer("Hit from cloudfront", None), SECOND, None),
            Verdict::Unknown("a hit without Age".into())
        );
    }

    #[test]
    fn with_an_origin_the_etag_or_else_last_modified_must_match() {
        let miss = answer("Miss from cloudfront", None);
        assert_eq!(judge(&miss, SECOND, Some(&origin(Some("\"v2\""), None))), Verdict::Fresh);
        assert_eq!(judge(&miss, SECOND, Some(&origin(Some("W/\"v2\""), None))), Verdict::Fresh, "weakly equal");
        assert_eq!(
            judge(&miss, SECOND, Some(&origin(Some("\"v3\""), Some("Wed, 02 Dec 2026 10:00:00 GMT")))),
            Verdict::Stale(Staleness::NotTheOrigins { edge: "ETag \"v2\"".into(), origin: "ETag \"v3\"".into() }),
            "the ETag decides when the origin sends one"
        );
        assert_eq!(judge(&miss, SECOND, Some(&origin(None, Some("Wed, 02 Dec 2026 10:00:00 GMT")))), Verdict::Fresh);
        assert!(matches!(
            judge(&miss, SECOND, Some(&origin(None, Some("Thu, 03 Dec 2026 10:00:00 GMT")))),
            Verdict::Stale(Staleness::NotTheOrigins { .. })
        ));
        assert!(matches!(judge(&miss, SECOND, Some(&origin(None, None))), Verdict::Unknown(_)));
        let gone = OriginVersion { status: 404, ..OriginVersion::default() };
        assert!(matches!(judge(&miss, SECOND, Some(&gone)), Verdict::Stale(Staleness::NotTheOrigins { .. })));
        let mut edge_gone = miss.clone();
        edge_gone.status = 404;
        assert_eq!(judge(&edge_gone, SECOND, Some(&gone)), Verdict::Fresh, "both say it is gone");
    }

    proptest! {
        /// A hit is fresh exactly when its copy was certainly cached after the invalidation was created.
        #[test]
        fn a_hit_is_fresh_only_if_cached_after_the_creation(cached_ms in 0u64..100_000, created_ms in 0u64..100_000, now_extra in 0u64..100_000) {
            let now_ms = cached_ms.max(created_ms) + now_extra;
            let age_seconds = (now_ms - cached_ms) / 1_000;
            let since_created = Duration::from_millis(now_ms - created_ms);
            let verdict = judge(&answer("Hit from cloudfront", Some(age_seconds)), since_created, None);
            if verdict == Verdict::Fresh {
                prop_assert!(cached_ms > created_ms, "a copy cached at {cached_ms} ms, before the creation at {created_ms} ms");
            }
            if cached_ms >= created_ms + 1_000 {
                prop_assert_eq!(verdict, Verdict::Fresh, "cached a second or more after the creation");
            }
        }
    }
}
