//! A validated invalidation request, as every stage after intake sees it.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{DistributionId, Target, TenantId};
use crate::model::path::InvalidationPath;

/// A validated request: every path is already encoded for CloudFront.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidationRequest {
    pub distribution_id: DistributionId,
    /// The tenant of a multi-tenant distribution to invalidate instead of the whole distribution.
    pub tenant_id: Option<TenantId>,
    /// Paths and `#tag` items, deduplicated.
    pub paths: Vec<InvalidationPath>,
    pub idempotency_key: Option<String>,
    pub requester: Option<String>,
    /// The longest its paths may wait in a window; zero for `"priority": "urgent"`, which seals the window at once.
    pub max_delay: Option<Duration>,
    /// Someone waits for its completion (`send --wait`): its invalidation is looked at every second.
    pub awaited: bool,
    /// When SQS says the message was sent (`SentTimestamp`), once intake received it: what an invalidation must
    /// have been created after to cover its paths (`coverage`).
    pub sent_at: Option<SystemTime>,
}

impl InvalidationRequest {
    /// What its paths are batched, deduplicated and invalidated for.
    pub fn target(&self) -> Target {
        Target::new(self.distribution_id.clone(), self.tenant_id.clone())
    }

    pub fn is_urgent(&self) -> bool {
        self.max_delay == Some(Duration::ZERO)
    }

    /// A digest of what the request asks for, its paths and tags in any order: two messages with one
    /// idempotency key must ask for the same thing, and the ledger compares this instead of whole path lists.
    pub fn content_digest(&self) -> String {
        let mut paths: Vec<&str> = self.paths.iter().map(InvalidationPath::as_str).collect();
        paths.sort_unstable();
        let mut hasher = Sha256::new();
        for path in paths {
            // A path never holds a raw control character, so a newline cannot join two paths into one.
            hasher.update(path.as_bytes());
            hasher.update(b"\n");
        }
        hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
    }
}
