//! What a batch's record says of its check at the edge (issue #28): bounded, so a record stays small whatever the
//! batch held.

use std::time::SystemTime;

use crate::model::text::capped;

/// POPs and stale paths a record names, at most; the counts are complete.
pub const MAX_LISTED: usize = 10;
/// Bytes of one listed POP or stale path, at most (`text::capped`). With the counts and times, a verification
/// takes at most about 3.5 KB of its record (10 × 256 + 10 × 64 + 10 short fields).
pub const MAX_LISTED_PATH_BYTES: usize = 256;
pub const MAX_LISTED_POP_BYTES: usize = 64;

/// Where a batch's check stands. `Checking` and `Healing` are on the way; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeOutcome {
    /// Every path checked was fresh.
    Fresh,
    /// Some paths were stale: checked again once `--verify-grace` has passed since completion.
    Checking,
    /// Still stale after the grace: a new invalidation of the stale paths was sent (`healed_by`).
    Healing,
    /// Stale at first, fresh after the second invalidation.
    Healed,
    /// Still stale after the second invalidation (or a second invalidation's own check): reported, not looped.
    Stale,
    /// No path could be judged: no answer, redirects, server errors, or no plain path to request.
    Unverified,
    /// Warmed without verifying (`--warm` alone).
    NotVerified,
}

impl EdgeOutcome {
    const ALL: [Self; 7] =
        [Self::Fresh, Self::Checking, Self::Healing, Self::Healed, Self::Stale, Self::Unverified, Self::NotVerified];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Checking => "checking",
            Self::Healing => "healing",
            Self::Healed => "healed",
            Self::Stale => "stale",
            Self::Unverified => "unverified",
            Self::NotVerified => "not_verified",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|outcome| outcome.as_str() == raw)
    }

    /// No further check will change it.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Checking | Self::Healing)
    }

    /// Viewers were shown to get the new objects.
    pub fn is_proven(self) -> bool {
        matches!(self, Self::Fresh | Self::Healed)
    }
}

/// A batch's check at the edge as its record keeps it (`Batches::record_verification`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationRecord {
    pub outcome: EdgeOutcome,
    /// When the last answer came (or the record was written, if none did).
    pub at: SystemTime,
    /// Paths checked: fresh + stale + errors.
    pub checked: u32,
    pub fresh: u32,
    pub stale: u32,
    pub errors: u32,
    /// The POPs that answered, at most `MAX_LISTED`.
    pub pops: Vec<String>,
    /// The stale paths, at most `MAX_LISTED`, each capped.
    pub stale_paths: Vec<String>,
    /// The idempotency key of the message that invalidates the stale paths again.
    pub healed_by: Option<String>,
    /// With `--warm`: requests answered 2xx, and the others.
    pub warmed: Option<u32>,
    pub warm_failed: Option<u32>,
}

impl VerificationRecord {
    /// The record with its lists within their bounds.
    pub fn bounded(mut self) -> Self {
        self.pops = bounded(self.pops, MAX_LISTED_POP_BYTES);
        self.stale_paths = bounded(self.stale_paths, MAX_LISTED_PATH_BYTES);
        self.healed_by = self.healed_by.map(|key| capped(&key, MAX_LISTED_PATH_BYTES));
        self
    }
}

impl VerificationRecord {
    /// One line for people (audit, the status page): the outcome, the counts, when, where, what was stale.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{}: {}/{} fresh, {} stale, {} unanswered at {}",
            self.outcome.as_str(),
            self.fresh,
            self.checked,
            self.stale,
            self.errors,
            humantime::format_rfc3339_seconds(self.at)
        );
        if !self.pops.is_empty() {
            line.push_str(&format!("; POPs {}", self.pops.join(" ")));
        }
        if !self.stale_paths.is_empty() {
            line.push_str(&format!("; stale {}", self.stale_paths.join(" ")));
        }
        if let Some(key) = &self.healed_by {
            line.push_str(&format!("; invalidated again by message key {key}"));
        }
        if let (Some(warmed), Some(failed)) = (self.warmed, self.warm_failed) {
            line.push_str(&format!("; warmed {warmed}, {failed} failed"));
        }
        line
    }
}

fn bounded(texts: Vec<String>, max_bytes: usize) -> Vec<String> {
    texts.into_iter().take(MAX_LISTED).map(|text| capped(&text, max_bytes)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_cut_to_their_bounds_and_outcomes_round_trip() {
        let record = VerificationRecord {
            outcome: EdgeOutcome::Stale,
            at: SystemTime::UNIX_EPOCH,
            checked: 40,
            fresh: 0,
            stale: 40,
            errors: 0,
            pops: (0..40).map(|n| format!("POP{n}-{}", "X".repeat(100))).collect(),
            stale_paths: (0..40).map(|n| format!("/{n}/{}", "p".repeat(5_000))).collect(),
            healed_by: Some("k".repeat(1_000)),
            warmed: None,
            warm_failed: None,
        }
        .bounded();
        assert_eq!((record.pops.len(), record.stale_paths.len()), (MAX_LISTED, MAX_LISTED));
        assert!(record.pops.iter().all(|pop| pop.len() <= MAX_LISTED_POP_BYTES));
        assert!(record.stale_paths.iter().all(|path| path.len() <= MAX_LISTED_PATH_BYTES));
        assert!(record.healed_by.unwrap().len() <= MAX_LISTED_PATH_BYTES);
        assert_eq!(record.stale, 40, "the counts stay complete");
        for outcome in EdgeOutcome::ALL {
            assert_eq!(EdgeOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert!(!EdgeOutcome::Healing.is_final() && EdgeOutcome::Stale.is_final());
    }

    #[test]
    fn the_summary_says_outcome_counts_pops_and_what_was_stale() {
        let record = VerificationRecord {
            outcome: EdgeOutcome::Healing,
            at: SystemTime::UNIX_EPOCH,
            checked: 5,
            fresh: 4,
            stale: 1,
            errors: 0,
            pops: vec!["IAD89-C1".into(), "FRA56-P2".into()],
            stale_paths: vec!["/a.html".into()],
            healed_by: Some("heal-cfi-1".into()),
            warmed: Some(10),
            warm_failed: Some(0),
        };
        assert_eq!(
            record.summary(),
            "healing: 4/5 fresh, 1 stale, 0 unanswered at 1970-01-01T00:00:00Z; POPs IAD89-C1 FRA56-P2; stale /a.html; \
             invalidated again by message key heal-cfi-1; warmed 10, 0 failed"
        );
    }
}
