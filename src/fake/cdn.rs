use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::faults::Faults;
use crate::model::{CallerReference, DistributionId};
use crate::ports::cdn::{Cdn, CdnError, Invalidation, InvalidationDetail};

/// One CreateInvalidation call as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    pub distribution_id: DistributionId,
    pub caller_reference: CallerReference,
    pub paths: Vec<String>,
    /// The invalidation it answered with, or the error.
    pub outcome: Result<Invalidation, CdnError>,
}

/// An invalidation the fake created (and CloudFront would have billed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    pub distribution_id: DistributionId,
    pub caller_reference: CallerReference,
    pub paths: Vec<String>,
    /// On tokio's clock.
    pub at: Instant,
}

/// One GetInvalidation call as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCheck {
    pub id: String,
    /// On tokio's clock.
    pub at: Instant,
}

/// CloudFront with its CallerReference semantics: a repeated reference with the same paths returns the first
/// invalidation, with other paths `InvalidationBatchAlreadyExists`. Unknown distributions are refused. An
/// invalidation is `InProgress` until the completion delay (zero unless set) has passed on tokio's clock since it
/// was created, then `Completed`.
#[derive(Debug, Default)]
pub struct FakeCdn {
    pub faults: Faults<CdnError>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// A set: a linear search of a thousand ids per call cost 5 % of the pipeline benchmark (benches/pipeline.rs).
    distributions: HashSet<DistributionId>,
    refused_fragments: Vec<String>,
    by_reference: HashMap<(DistributionId, CallerReference), Created>,
    calls: Vec<CreateCall>,
    completion_delay: Duration,
    status_checks: Vec<StatusCheck>,
}

impl State {
    fn status(&self, created: &Created) -> &'static str {
        if created.at.elapsed() >= self.completion_delay { "Completed" } else { "InProgress" }
    }
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

    /// Invalidations take this long to complete, as CloudFront's take seconds to minutes.
    pub fn complete_after(&self, delay: Duration) {
        self.state.lock().unwrap().completion_delay = delay;
    }

    /// Every GetInvalidation call received, in order.
    pub fn status_checks(&self) -> Vec<StatusCheck> {
        self.state.lock().unwrap().status_checks.clone()
    }

    /// Every call received, in order, failed ones included.
    pub fn calls(&self) -> Vec<CreateCall> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Distinct invalidations created (what CloudFront would bill), in creation order.
    pub fn created(&self) -> Vec<Created> {
        let mut created: Vec<Created> = self.state.lock().unwrap().by_reference.values().cloned().collect();
        created.sort_by(|a, b| a.id.cmp(&b.id));
        created
    }

    /// Distinct invalidations created, as (distribution, paths), in creation order.
    pub fn invalidations(&self) -> Vec<(DistributionId, Vec<String>)> {
        self.created().into_iter().map(|c| (c.distribution_id, c.paths)).collect()
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
        if !state.refused_fragments.is_empty()
            && paths.iter().any(|p| state.refused_fragments.iter().any(|f| p.contains(f.as_str())))
        {
            return Err(CdnError::InvalidArgument(
                "Your request contains one or more invalid invalidation paths.".into(),
            ));
        }
        let key = (distribution.clone(), reference.clone());
        let in_progress = |id: &str| Invalidation { id: id.to_owned(), status: "InProgress".into() };
        match state.by_reference.get(&key) {
            Some(first) if first.paths == paths => Ok(in_progress(&first.id)),
            Some(_) => Err(CdnError::BatchAlreadyExists(reference.to_string())),
            None => {
                let created = Created {
                    id: format!("I{:012}", state.by_reference.len() + 1),
                    distribution_id: distribution.clone(),
                    caller_reference: reference.clone(),
                    paths: paths.to_vec(),
                    at: Instant::now(),
                };
                let invalidation = in_progress(&created.id);
                state.by_reference.insert(key, created);
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

    async fn get_invalidation(&self, distribution: &DistributionId, id: &str) -> Result<InvalidationDetail, CdnError> {
        let mut state = self.state.lock().unwrap();
        state.status_checks.push(StatusCheck { id: id.to_owned(), at: Instant::now() });
        self.faults.take("get_invalidation")?;
        let created = state.by_reference.values().find(|c| c.id == id && &c.distribution_id == distribution);
        let created = created.ok_or_else(|| CdnError::NoSuchInvalidation(id.to_owned()))?;
        Ok(InvalidationDetail {
            invalidation: Invalidation { id: id.to_owned(), status: state.status(created).to_owned() },
            caller_reference: created.caller_reference.to_string(),
            paths: created.paths.clone(),
        })
    }

    async fn list_in_progress(&self, distribution: &DistributionId) -> Result<Vec<Invalidation>, CdnError> {
        self.faults.take("list_invalidations")?;
        let state = self.state.lock().unwrap();
        let mut in_progress: Vec<&Created> = state
            .by_reference
            .values()
            .filter(|c| &c.distribution_id == distribution && state.status(c) != "Completed")
            .collect();
        in_progress.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(in_progress.into_iter().map(|c| Invalidation { id: c.id.clone(), status: "InProgress".into() }).collect())
    }
}
