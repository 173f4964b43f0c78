//! What one invalidation is for: a distribution, or one tenant of a multi-tenant distribution. Batching,
//! deduplication, coverage, idempotency keys and batch records are per target.

use std::fmt;

use thiserror::Error;

use super::DistributionId;

/// CloudFront's tenant ids are `dt_` and about thirty alphanumerics; the margin keeps emulators working.
const MAX_TENANT_ID_LEN: usize = 64;
const TENANT_ID_PREFIX: &str = "dt_";
const MAX_TENANT_ID_SUFFIX_LEN: usize = MAX_TENANT_ID_LEN - TENANT_ID_PREFIX.len();

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "tenant id {0:?} is not valid: expected `dt_` and 1 to {MAX_TENANT_ID_SUFFIX_LEN} letters and digits, e.g. dt_2wjDZi3hD1ivOXf6rpZJOSNE1AB"
)]
pub struct InvalidTenantId(pub String);

/// A distribution tenant id such as `dt_2wjDZi3hD1ivOXf6rpZJOSNE1AB` (CloudFront SaaS Manager).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, InvalidTenantId> {
        let well_formed = raw.len() <= MAX_TENANT_ID_LEN
            && raw
                .strip_prefix(TENANT_ID_PREFIX)
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
        if well_formed { Ok(Self(raw.to_owned())) } else { Err(InvalidTenantId(raw.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A distribution as a whole (`tenant: None`), or one of its tenants.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub distribution: DistributionId,
    pub tenant: Option<TenantId>,
}

impl Target {
    pub fn new(distribution: DistributionId, tenant: Option<TenantId>) -> Self {
        Self { distribution, tenant }
    }

    pub fn tenant(distribution: DistributionId, tenant: TenantId) -> Self {
        Self { distribution, tenant: Some(tenant) }
    }

    /// The target its `Display` names: `E…` or `E…/dt_…`.
    pub fn parse(raw: &str) -> Option<Self> {
        let (distribution, tenant) = match raw.split_once('/') {
            Some((distribution, tenant)) => (distribution, Some(TenantId::parse(tenant).ok()?)),
            None => (raw, None),
        };
        Some(Self::new(DistributionId::parse(distribution).ok()?, tenant))
    }
}

impl From<DistributionId> for Target {
    fn from(distribution: DistributionId) -> Self {
        Self { distribution, tenant: None }
    }
}

impl From<&DistributionId> for Target {
    fn from(distribution: &DistributionId) -> Self {
        Self::from(distribution.clone())
    }
}

impl From<&Target> for Target {
    fn from(target: &Target) -> Self {
        target.clone()
    }
}

/// `E2QWRUHAPOMQZL` for a whole distribution, `E2QWRUHAPOMQZL/dt_…` for a tenant: one string for logs and keys.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            None => write!(f, "{}", self.distribution),
            Some(tenant) => write!(f, "{}/{tenant}", self.distribution),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_cloudfront_style_tenant_ids_only() {
        for good in ["dt_2wjDZi3hD1ivOXf6rpZJOSNE1AB", "dt_a", "dt_1"] {
            assert!(TenantId::parse(good).is_ok(), "{good}");
        }
        let too_long = format!("dt_{}", "a".repeat(MAX_TENANT_ID_LEN));
        for bad in ["", "dt_", "DT_abc", "abc", "dt_a-b", "dt_a b", "dt_ä", "E2QWRUHAPOMQZL", too_long.as_str()] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_target_names_its_tenant_after_the_distribution() {
        let distribution = DistributionId::parse("E1").unwrap();
        assert_eq!(Target::from(&distribution).to_string(), "E1");
        let tenant = Target::tenant(distribution, TenantId::parse("dt_abc").unwrap());
        assert_eq!(tenant.to_string(), "E1/dt_abc");
        assert_eq!(Target::parse("E1/dt_abc"), Some(tenant));
        assert_eq!(Target::parse("E1"), Some(Target::from(&DistributionId::parse("E1").unwrap())));
        assert_eq!(Target::parse("E1/x"), None);
    }
}
