//! A validated invalidation request, as every stage after intake sees it.

use super::DistributionId;
use crate::model::path::InvalidationPath;

/// A validated request: every path is already encoded for CloudFront.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidationRequest {
    pub distribution_id: DistributionId,
    /// Paths and `#tag` items, deduplicated.
    pub paths: Vec<InvalidationPath>,
    pub idempotency_key: Option<String>,
    pub requester: Option<String>,
}
