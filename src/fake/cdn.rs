use std::collections::HashMap;
use std::sync::Mutex;

use super::faults::Faults;
use crate::model::{CallerReference, DistributionId};
use crate::ports::cdn::{Cdn, CdnError, Invalidation};

/// One CreateInvalidation call as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    pub distribution_id: DistributionId,
    pub caller_reference: CallerReference,
    pub paths: Vec<String>,
    /// The invalidation it answered with, or the error.
    pub outcome: Result<Invalidation, CdnError>,
}

/// CloudFront with its CallerReference semantics: a repeated reference with the same paths returns the first
/// invalidation, with other paths `InvalidationBatchAlreadyExists`. Unknown distributions are refused.
#[derive(Debug, Default)]
pub struct FakeCdn {
    pub faults: Faults<CdnError>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    distributions: Vec<DistributionId>,
    refused_fragments: Vec<String>,
    by_reference: HashMap<(DistributionId, CallerReference), (Vec<String>, Invalidation)>,
    calls: Vec<CreateCall>,
}

impl FakeCdn {
    pub fn with_distributions<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let cdn = Self::default();
        cdn.state.lock().unwrap().distributions =
            ids.into_iter().map(|id| DistributionId::parse(id).expect("valid distribution id")).collect();
        cdn
    }

    /// Answers `InvalidArgument`, like CloudFront for a path it cannot take, to batches with a path containing
    /// `fragment`.
    pub fn refuse_paths_containing(&self, fragment: &str) {
        self.state.lock().unwrap().refused_fragments.push(fragment.to_owned());
    }

    /// Every call received, in order, failed ones included.
    pub fn calls(&self) -> Vec<CreateCall> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Distinct invalidations created (what CloudFront would bill), as (distribution, paths).
    pub fn invalidations(&self) -> Vec<(DistributionId, Vec<String>)> {
        let state = self.state.lock().unwrap();
        let mut created: Vec<_> =
            state.by_reference.iter().map(|((d, _), (p, i))| (i.id.clone(), d.clone(), p.clone())).collect();
        created.sort();
        created.into_iter().map(|(_, d, p)| (d, p)).collect()
    }

    fn answer(
        &self,
        distribution: &DistributionId,
        reference: &CallerReference,
        paths: &[String],
    ) -> Result<Invalidation, CdnError> {
        self.faults.take("create_invalidation")?;
        let mut state = self.state.lock().unwrap();
        if !state.distributions.contains(distribution) {
            return Err(CdnError::NoSuchDistribution(format!(
                "The specified distribution does not exist: {distribution}"
            )));
        }
        if paths.iter().any(|p| state.refused_fragments.iter().any(|f| p.contains(f.as_str()))) {
            return Err(CdnError::InvalidArgument(
                "Your request contains one or more invalid invalidation paths.".into(),
            ));
        }
        let next_id = format!("I{:012}", state.by_reference.len() + 1);
        let key = (distribution.clone(), reference.clone());
        match state.by_reference.get(&key) {
            Some((first_paths, invalidation)) if first_paths == paths => Ok(invalidation.clone()),
            Some(_) => Err(CdnError::BatchAlreadyExists(reference.to_string())),
            None => {
                let invalidation = Invalidation { id: next_id, status: "InProgress".into() };
                state.by_reference.insert(key, (paths.to_vec(), invalidation.clone()));
                Ok(invalidation)
            }
        }
    }
}

impl Cdn for FakeCdn {
    async fn create_invalidation(
        &self,
        distribution: &DistributionId,
        caller_reference: &CallerReference,
        paths: &[String],
    ) -> Result<Invalidation, CdnError> {
        let outcome = self.answer(distribution, caller_reference, paths);
        self.state.lock().unwrap().calls.push(CreateCall {
            distribution_id: distribution.clone(),
            caller_reference: caller_reference.clone(),
            paths: paths.to_vec(),
            outcome: outcome.clone(),
        });
        outcome
    }
}
