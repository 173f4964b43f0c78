//! What the simulator records and reports: calls, creations, refusals, pages, and the report `GET /_sim/report`
//! shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::model::{CallerReference, DistributionId, Target, TenantId};
use crate::ports::budget::Allowance;
use crate::ports::cdn::{CdnError, Invalidation};

/// One CreateInvalidation call as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    /// The caller's access key id (`IN_PROCESS_ACCOUNT` through the port in process).
    pub account: String,
    pub distribution_id: DistributionId,
    pub tenant_id: Option<TenantId>,
    pub caller_reference: CallerReference,
    pub paths: Vec<String>,
    /// The invalidation it answered with, or the error.
    pub outcome: Result<Invalidation, CdnError>,
}

/// An invalidation the fake created (and CloudFront would have billed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    /// The creator's access key id: whose account the invalidation is billed to.
    pub account: String,
    pub distribution_id: DistributionId,
    /// The tenant invalidated, when it was a tenant's invalidation.
    pub tenant_id: Option<TenantId>,
    pub caller_reference: CallerReference,
    pub paths: Vec<String>,
    /// On tokio's clock.
    pub at: Instant,
}

impl Created {
    pub fn target(&self) -> Target {
        Target::new(self.distribution_id.clone(), self.tenant_id.clone())
    }
}

/// One status call as the fake received it: GetInvalidation (`id`: the invalidation's) or ListInvalidations
/// (`id`: the distribution's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCheck {
    pub id: String,
    /// On tokio's clock.
    pub at: Instant,
}

/// A refused CreateInvalidation, the worker's or anyone else's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub account: String,
    /// On tokio's clock.
    pub at: Instant,
    pub distribution_id: DistributionId,
    pub caller_reference: CallerReference,
    /// CloudFront's error code, as `CdnError::code` names it.
    pub code: &'static str,
}

/// An invalidation as GetInvalidation shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub created: Created,
    pub status: &'static str,
}

/// An invalidation as ListInvalidations shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: String,
    pub status: &'static str,
    pub at: Instant,
}

/// One page of ListInvalidations, most recent first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Summary>,
    /// The marker of the next page, if there is one.
    pub next_marker: Option<String>,
}

/// What the simulator saw, for tests to assert on and `GET /_sim/report` to show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Every caller's.
    pub all: Tally,
    /// The worker's alone (CallerReference `cfi-…`).
    pub worker: Tally,
    /// By distribution id, and by `<distribution>/<tenant>` for a tenant's invalidations.
    pub distributions: BTreeMap<String, DistributionReport>,
    /// By account (the callers' access key ids): what each was billed and refused.
    #[serde(default)]
    pub accounts: BTreeMap<String, Tally>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Distinct invalidations.
    pub created: usize,
    /// What CloudFront bills: their paths, a wildcard counting as one.
    pub paths_billed: usize,
    /// Refused CreateInvalidation calls by error code.
    pub rejections: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributionReport {
    pub in_progress: Allowance,
    /// The most in progress at once, paths and wildcards each at their own worst moment.
    pub peak: Allowance,
    /// The same, counting the worker's invalidations only.
    pub worker_peak: Allowance,
    /// What the worker's invalidations of the distribution bill: their paths, a wildcard counting as one.
    pub worker_paths_billed: usize,
}

impl Tally {
    pub(super) fn bill(&mut self, paths: &[String]) {
        self.created += 1;
        self.paths_billed += paths.len();
    }

    pub(super) fn refused(&mut self, code: &str) {
        *self.rejections.entry(code.to_owned()).or_default() += 1;
    }
}
