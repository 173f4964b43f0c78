//! The types every stage shares: identifiers, paths, requests, a message's share of a batch and its
//! disposition. Pure data; no stage below it.

pub mod message;
pub mod path;
pub mod request;
pub mod role;
pub mod target;
pub mod text;

use std::fmt;

pub use self::target::{InvalidTenantId, Target, TenantId};

use thiserror::Error;

/// Longest distribution id we accept; CloudFront's are 13–14 characters, the margin keeps emulators working.
const MAX_DISTRIBUTION_ID_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "distribution id {0:?} is not valid: expected 1 to {MAX_DISTRIBUTION_ID_LEN} upper-case letters and digits, e.g. E2QWRUHAPOMQZL"
)]
pub struct InvalidDistributionId(pub String);

/// A CloudFront distribution id such as `E2QWRUHAPOMQZL`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DistributionId(String);

impl DistributionId {
    pub fn parse(raw: &str) -> Result<Self, InvalidDistributionId> {
        let well_formed = !raw.is_empty()
            && raw.len() <= MAX_DISTRIBUTION_ID_LEN
            && raw.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if well_formed { Ok(Self(raw.to_owned())) } else { Err(InvalidDistributionId(raw.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DistributionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SQS message id: stable across redeliveries, unlike the receipt handle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub String);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The CallerReference of one batch. It is minted once, when the batch is sealed, and written to the ledger before
/// CloudFront sees it, so every retry of that batch presents the same reference and CloudFront returns the
/// existing invalidation instead of billing a new one. Time-ordered (UUIDv7) so that two batches with the same
/// paths never share a reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallerReference(String);

impl CallerReference {
    pub fn mint() -> Self {
        Self(format!("cfi-{}", uuid::Uuid::now_v7()))
    }

    /// Rebuilds a reference read back from the ledger.
    pub fn from_recorded(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallerReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_cloudfront_style_ids_only() {
        assert!(DistributionId::parse("E2QWRUHAPOMQZL").is_ok());
        for bad in ["", "e2qwruhapomqzl", "E2QW-RUHA", "E2QW RUHA", &"E".repeat(33)] {
            assert!(DistributionId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn caller_references_are_unique() {
        assert_ne!(CallerReference::mint(), CallerReference::mint());
    }
}
