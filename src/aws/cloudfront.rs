//! `Cdn` on Amazon CloudFront.

use std::time::SystemTime;

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::config::retry::RetryConfig;
use aws_sdk_cloudfront::types::{InvalidationBatch, InvalidationList, Paths};

use super::error::{Failure, classify};
use super::roles::Clients;
use crate::model::role::Role;
use crate::model::{CallerReference, DistributionId, Target};
use crate::ports::cdn::{Cdn, CdnError, Invalidation, InvalidationDetail};
use crate::ports::edge::DomainLookup;

#[derive(Debug, Clone)]
pub struct CloudFront {
    clients: Clients,
}

impl CloudFront {
    /// Every distribution with the worker's own credentials.
    pub fn new(client: Client) -> Self {
        Self { clients: Clients::own(client) }
    }

    /// Each distribution with its role's client (docs/accounts.md).
    pub fn with_clients(clients: Clients) -> Self {
        Self { clients }
    }

    /// The distribution's own domain name (GetDistribution's `DomainName`), where the edge stage requests its
    /// objects when no `--edge-url` names another.
    pub async fn domain_name(&self, distribution: &DistributionId) -> Result<String, CdnError> {
        let (client, role) = self.clients.client(distribution).await;
        let output = client
            .get_distribution()
            .id(distribution.as_str())
            .send()
            .await
            .map_err(|e| cdn_error(classify(&e), role))?;
        let domain = output.distribution().map(|d| d.domain_name().to_owned());
        domain.ok_or_else(|| {
            CdnError::Other(format!("GetDistribution of {distribution} answered without a distribution"))
        })
    }

    pub fn domain_lookup(self) -> DomainLookup {
        DomainLookup::new(move |distribution| {
            let cloudfront = self.clone();
            Box::pin(async move { cloudfront.domain_name(&distribution).await })
        })
    }
}

/// `role`: the role the call was made as. Not being able to assume it is that distribution's missing credentials,
/// which wait and dead-letter as AccessDenied does, and name the role to fix.
fn cdn_error(failure: Failure, role: Option<&Role>) -> CdnError {
    let text = match (&failure, role) {
        (Failure::Credentials(text), Some(role)) => format!(
            "cannot assume role {} in account {} (check its trust policy{}): {text}",
            role.arn,
            role.arn.account(),
            if role.external_id.is_some() { " and external id" } else { "" }
        ),
        _ => failure.describe(),
    };
    match failure.code() {
        "TooManyInvalidationsInProgress" => CdnError::TooManyInProgress(text),
        // The tenant calls answer EntityNotFound for an unknown tenant.
        "NoSuchDistribution" | "EntityNotFound" => CdnError::NoSuchDistribution(text),
        "AccessDenied" => CdnError::AccessDenied(text),
        "InvalidArgument" | "MissingBody" | "InconsistentQuantities" => CdnError::InvalidArgument(text),
        "BatchTooLarge" => CdnError::BatchTooLarge(text),
        // Not a modelled error: it arrives as `Unhandled` and is only recognisable by its code (aws-facts.md A4).
        "InvalidationBatchAlreadyExists" => CdnError::BatchAlreadyExists(text),
        "NoSuchInvalidation" => CdnError::NoSuchInvalidation(text),
        "Throttling" => CdnError::Throttled(text),
        _ => match failure {
            Failure::Credentials(_) => CdnError::Credentials(text),
            _ if failure.is_throttling_or_server_fault() => CdnError::Unavailable(text),
            _ => CdnError::Other(text),
        },
    }
}

/// A tenant's invalidations are the distribution's calls with `…ForDistributionTenant`: the same batch and
/// answers, the tenant's id in place of the distribution's.
impl Cdn for CloudFront {
    async fn create_invalidation(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &CallerReference,
        paths: &[String],
    ) -> Result<Invalidation, CdnError> {
        let target = target.into();
        let (client, role) = self.clients.client(&target.distribution).await;
        let paths = Paths::builder()
            .quantity(paths.len() as i32)
            .set_items(Some(paths.to_vec()))
            .build()
            .map_err(|e| CdnError::Other(e.to_string()))?;
        let batch = InvalidationBatch::builder()
            .paths(paths)
            .caller_reference(caller_reference.as_str())
            .build()
            .map_err(|e| CdnError::Other(e.to_string()))?;
        // The worker's own retry owns CreateInvalidation: each refusal and throttle reaches it, and learning from
        // them needs every one (the SDK's standard mode would retry `Throttling` twice unseen).
        // CreateInvalidation's and the tenant variant's builders are distinct types with the same methods.
        macro_rules! send_once {
            ($builder:expr) => {
                $builder
                    .invalidation_batch(batch)
                    .customize()
                    .config_override(aws_sdk_cloudfront::Config::builder().retry_config(RetryConfig::disabled()))
                    .send()
                    .await
                    .map_err(|e| cdn_error(classify(&e), role))?
                    .invalidation
            };
        }
        let invalidation = match &target.tenant {
            None => send_once!(client.create_invalidation().distribution_id(target.distribution.as_str())),
            Some(tenant) => send_once!(client.create_invalidation_for_distribution_tenant().id(tenant.as_str())),
        };
        let invalidation = invalidation
            .ok_or_else(|| CdnError::Other("CreateInvalidation answered without an invalidation".into()))?;
        Ok(Invalidation { id: invalidation.id().to_owned(), status: invalidation.status().to_owned() })
    }

    async fn get_invalidation(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> Result<InvalidationDetail, CdnError> {
        let target = target.into();
        let (client, role) = self.clients.client(&target.distribution).await;
        let invalidation = match &target.tenant {
            None => {
                let get = client.get_invalidation().distribution_id(target.distribution.as_str()).id(id);
                get.send().await.map_err(|e| cdn_error(classify(&e), role))?.invalidation
            }
            Some(tenant) => {
                let get = client.get_invalidation_for_distribution_tenant().distribution_tenant_id(tenant.as_str());
                get.id(id).send().await.map_err(|e| cdn_error(classify(&e), role))?.invalidation
            }
        };
        let invalidation =
            invalidation.ok_or_else(|| CdnError::Other("GetInvalidation answered without an invalidation".into()))?;
        let batch = invalidation.invalidation_batch();
        Ok(InvalidationDetail {
            invalidation: Invalidation { id: invalidation.id().to_owned(), status: invalidation.status().to_owned() },
            caller_reference: batch.map(|b| b.caller_reference().to_owned()).unwrap_or_default(),
            paths: batch.and_then(|b| b.paths()).map(|p| p.items().to_vec()).unwrap_or_default(),
        })
    }

    async fn list_recent(
        &self,
        target: impl Into<Target> + Send,
        since: SystemTime,
    ) -> Result<Vec<Invalidation>, CdnError> {
        let target = target.into();
        let mut recent = Vec::new();
        let mut marker = None;
        loop {
            let Some(list) = self.list_page(&target, marker).await? else { return Ok(recent) };
            let items = list.items();
            let before = recent.len();
            recent.extend(
                items
                    .iter()
                    .map(|summary| Invalidation { id: summary.id().to_owned(), status: summary.status().to_owned() }),
            );
            // Most recent first: older pages matter only while this one reaches after `since` or shows one in
            // progress (invalidations complete within minutes, though not in the order they were made).
            let reaches_back = items
                .last()
                .is_none_or(|oldest| SystemTime::try_from(*oldest.create_time()).is_ok_and(|at| at < since));
            if (reaches_back && recent[before..].iter().all(Invalidation::is_completed)) || !list.is_truncated() {
                return Ok(recent);
            }
            marker = list.next_marker().map(str::to_owned);
        }
    }
}

impl CloudFront {
    /// One page of ListInvalidations (or ListInvalidationsForDistributionTenant), from `marker`.
    async fn list_page(&self, target: &Target, marker: Option<String>) -> Result<Option<InvalidationList>, CdnError> {
        let (client, role) = self.clients.client(&target.distribution).await;
        let list = match &target.tenant {
            None => {
                let list = client.list_invalidations().distribution_id(target.distribution.as_str());
                list.set_marker(marker).send().await.map_err(|e| cdn_error(classify(&e), role))?.invalidation_list
            }
            Some(tenant) => {
                let list = client.list_invalidations_for_distribution_tenant().id(tenant.as_str());
                list.set_marker(marker).send().await.map_err(|e| cdn_error(classify(&e), role))?.invalidation_list
            }
        };
        Ok(list)
    }
}
