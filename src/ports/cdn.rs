//! CloudFront's invalidation API.

use std::future::Future;
use std::time::SystemTime;

use thiserror::Error;

use crate::model::{CallerReference, Target};

/// An invalidation as CloudFront reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidation {
    pub id: String,
    /// Opaque; `InProgress` and `Completed` are the values CloudFront documents.
    pub status: String,
}

impl Invalidation {
    /// CloudFront says `Completed`; emulators have been seen to say `COMPLETED`.
    pub fn is_completed(&self) -> bool {
        self.status.eq_ignore_ascii_case("completed")
    }
}

/// An invalidation with the batch it was created from, as GetInvalidation reports it: what it counts against the
/// distribution's in-progress quotas, and whose it is (the CallerReference of another tool or of a person in the
/// console is not one of ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidationDetail {
    pub invalidation: Invalidation,
    pub caller_reference: String,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CdnError {
    #[error("CloudFront throttled the request: {0}")]
    Throttled(String),
    #[error("too many invalidations in progress on the distribution: {0}")]
    TooManyInProgress(String),
    #[error("distribution does not exist: {0}; check the distribution_id producers send")]
    NoSuchDistribution(String),
    #[error("access to the distribution was denied: {0}; the worker's role needs cloudfront:CreateInvalidation on it")]
    AccessDenied(String),
    #[error("CloudFront refused the paths: {0}")]
    InvalidArgument(String),
    #[error("CloudFront refused the batch as too large: {0}")]
    BatchTooLarge(String),
    #[error("the CallerReference was already used for different paths: {0}")]
    BatchAlreadyExists(String),
    #[error("invalidation does not exist: {0}")]
    NoSuchInvalidation(String),
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    #[error("CloudFront is unavailable, will retry: {0}")]
    Unavailable(String),
    #[error("CloudFront request failed: {0}")]
    Other(String),
}

/// How soon a failed call may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// Transient: retry with a short backoff.
    Soon,
    /// The distribution's in-progress quota is used up: invalidations take seconds to minutes to complete.
    QuotaFreed,
    /// Retrying the same request cannot succeed.
    Never,
}

impl CdnError {
    pub fn retry_after(&self) -> RetryAfter {
        match self {
            Self::Throttled(_) | Self::Unavailable(_) => RetryAfter::Soon,
            Self::TooManyInProgress(_) => RetryAfter::QuotaFreed,
            _ => RetryAfter::Never,
        }
    }

    /// A short, stable name for logs, metrics and the ledger.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Throttled(_) => "Throttling",
            Self::TooManyInProgress(_) => "TooManyInvalidationsInProgress",
            Self::NoSuchDistribution(_) => "NoSuchDistribution",
            Self::AccessDenied(_) => "AccessDenied",
            Self::InvalidArgument(_) => "InvalidArgument",
            Self::BatchTooLarge(_) => "BatchTooLarge",
            Self::BatchAlreadyExists(_) => "InvalidationBatchAlreadyExists",
            Self::NoSuchInvalidation(_) => "NoSuchInvalidation",
            Self::Credentials(_) => "Credentials",
            Self::Unavailable(_) => "ServiceUnavailable",
            Self::Other(_) => "Other",
        }
    }
}

/// Contract (a target is a whole distribution, `&DistributionId` will do, or one tenant of a multi-tenant
/// distribution, through CloudFront's `…ForDistributionTenant` calls):
/// - `create_invalidation` submits `paths` (1..=3,000 encoded paths) for `target`. Presenting a
///   CallerReference again with the same paths returns the invalidation created the first time instead of
///   creating (and billing) another; the same reference with different paths fails with `BatchAlreadyExists`.
/// - `get_invalidation` reports an invalidation of `target` by its id, with its current status (`InProgress`
///   until it is `Completed`, compared case-insensitively), its CallerReference and paths; an unknown id fails
///   with `NoSuchInvalidation`.
/// - `list_recent` returns the target's invalidations with their status, whoever created them, most recent
///   first (ListInvalidations), paging until a page holds none in progress and reaches back before `since`: every
///   invalidation created since `since` is in the answer, and so are the others on the pages read. (A page with
///   none in progress does not prove that older ones have completed: completion times vary.)
/// - `list_in_progress` is `list_recent` without the completed ones.
pub trait Cdn: Send + Sync + 'static {
    fn create_invalidation(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &CallerReference,
        paths: &[String],
    ) -> impl Future<Output = Result<Invalidation, CdnError>> + Send;

    fn get_invalidation(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> impl Future<Output = Result<InvalidationDetail, CdnError>> + Send;

    fn list_recent(
        &self,
        target: impl Into<Target> + Send,
        since: SystemTime,
    ) -> impl Future<Output = Result<Vec<Invalidation>, CdnError>> + Send;

    fn list_in_progress(
        &self,
        target: impl Into<Target> + Send,
        since: SystemTime,
    ) -> impl Future<Output = Result<Vec<Invalidation>, CdnError>> + Send {
        async move {
            let mut recent = self.list_recent(target, since).await?;
            recent.retain(|invalidation| !invalidation.is_completed());
            Ok(recent)
        }
    }
}
