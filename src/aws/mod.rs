//! AWS SDK adapters for the ports, and the one place that loads the SDK configuration.

pub mod cloudfront;
pub mod dynamodb;
mod error;
pub mod events;
pub mod sqs;

use std::time::Duration;

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// The longest one attempt at a DynamoDB or CloudFront call may take. They answer in milliseconds (a
/// CreateInvalidation in a second or two); an attempt still unanswered after this is on a dead connection, and
/// retrying it beats holding a batch, or every held message's heartbeat, until TCP gives up minutes later.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Region, credentials and endpoint come from the standard AWS chain (`AWS_REGION`, `AWS_PROFILE`,
/// `AWS_ENDPOINT_URL`, instance and task roles), so the emulator is just another endpoint.
///
/// Every attempt is bounded by a timeout instead of the SDK's stalled-stream protection: our requests and answers
/// are a few kilobytes, which that protection cannot tell from a stall any better, and it costs CPU on each call.
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts(ATTEMPT_TIMEOUT))
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .load()
        .await
}

/// The SDK's own connect timeout, and `attempt` for each attempt of a call (a long-polling receive needs its
/// wait on top).
pub fn timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder().connect_timeout(Duration::from_millis(3_100)).operation_attempt_timeout(attempt).build()
}
