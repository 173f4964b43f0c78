//! Producers' idempotency keys: the first message to use a key within its period is batched, the others not.

use std::future::Future;
use std::time::SystemTime;

use super::LedgerError;
use crate::model::{DistributionId, MessageId, TenantId};

/// A producer's idempotency key as a message uses it. A key is scoped to its distribution, or to its tenant: two
/// teams may both use `deploy-42`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub distribution_id: DistributionId,
    pub tenant_id: Option<TenantId>,
    pub key: String,
    pub message_id: MessageId,
    /// `InvalidationRequest::content_digest` of what the message asks for.
    pub content: String,
}

/// A producer key's claim as stored: item `key#<distribution>#<key>` (`key#<distribution>/<tenant>#<key>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key: String,
    /// The message that holds the claim: the one that was batched; later ones with the key were dropped.
    pub message_id: MessageId,
    pub distribution_id: DistributionId,
    /// The tenant whose key it is; `None`: the whole distribution's.
    pub tenant_id: Option<TenantId>,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
}

/// Result of claiming a producer's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// First use of the key within its period (or a redelivery of the message that first used it).
    First,
    /// Another message used the key for the same paths and tags within its period.
    Duplicate { first_message_id: MessageId },
    /// Another message used the key for other paths or tags within its period: a producer error.
    Conflict { first_message_id: MessageId },
}

/// Contract: `claim_key` records that a message used a producer key in its distribution until `expires_at`; if
/// another message holds an unexpired claim of the key in that distribution it answers `Duplicate` when that
/// message asked for the same content and `Conflict` when not, and `First` otherwise (a repeated claim by the same
/// message included).
pub trait Keys: Send + Sync + 'static {
    fn claim_key(
        &self,
        key: &KeyUse,
        now: SystemTime,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<KeyClaim, LedgerError>> + Send;
}
