//! Distributions' own domain names, for the edge stage: read with GetDistribution once a distribution, as a
//! distribution's domain never changes.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::DistributionId;
use crate::ports::edge::DomainLookup;

/// Distributions whose domain is kept: one read each a worker's lifetime, unless it serves more.
const MAX_KNOWN: usize = 10_000;

#[derive(Debug, Default)]
pub struct Domains {
    lookup: Option<DomainLookup>,
    known: Mutex<HashMap<DistributionId, String>>,
}

impl Domains {
    /// Without a lookup, no domain is known: distributions without `--edge-url` are not checked.
    pub fn new(lookup: Option<DomainLookup>) -> Self {
        Self { lookup, known: Mutex::default() }
    }

    /// The distribution's domain, or why it is not known (for the log).
    pub async fn domain(&self, distribution: &DistributionId) -> Result<String, String> {
        if let Some(domain) = self.known.lock().expect("never poisoned").get(distribution) {
            return Ok(domain.clone());
        }
        let lookup = self.lookup.as_ref().ok_or("no --edge-url for its distribution")?;
        let domain = lookup.domain(distribution).await.map_err(|e| format!("its domain could not be read: {e}"))?;
        let mut known = self.known.lock().expect("never poisoned");
        if known.len() >= MAX_KNOWN {
            known.clear();
        }
        known.insert(distribution.clone(), domain.clone());
        Ok(domain)
    }
}
